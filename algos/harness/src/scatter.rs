//! A scatter plot of point pairs (learned against true values), optionally with the line `y = x`,
//! in one PNG. Written to a temporary file and renamed.

use crate::plot::register_font;
use dynlab_runtime::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// One scatter plot.
#[derive(Clone, Debug)]
pub struct Scatter {
    /// Caption.
    pub title: String,
    /// Horizontal axis label.
    pub x: String,
    /// Vertical axis label.
    pub y: String,
    /// The points `(x, y)`; non-finite points are left out.
    pub points: Vec<(f64, f64)>,
    /// Draw `y = x`.
    pub diagonal: bool,
}

/// Draws `scatter` into a PNG at `path`.
pub fn plot_scatter(path: impl AsRef<Path>, scatter: &Scatter) -> Result<()> {
    let path = path.as_ref();
    let finite: Vec<(f64, f64)> = scatter
        .points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(Error::value(
            "plot_scatter",
            format!("`{}`: no finite points", scatter.title),
            "at least one finite point",
        ));
    }
    register_font()?;
    let tmp = path.with_file_name(format!(".tmp-{}-scatter.png", std::process::id()));
    draw(&tmp, scatter, &finite).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("plot_scatter", path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("plot_scatter", path, e))
}

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

/// The range covering `values` with a 5% margin (a unit range around a single value).
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 };
    (lo - pad, hi + pad)
}

fn draw(path: &Path, s: &Scatter, points: &[(f64, f64)]) -> Draw {
    let root = BitMapBackend::new(path, (640, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let (x0, x1) = range(points.iter().map(|p| p.0));
    let (y0, y1) = range(points.iter().map(|p| p.1));
    let mut chart = ChartBuilder::on(&root)
        .caption(s.title.as_str(), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .x_desc(s.x.as_str())
        .y_desc(s.y.as_str())
        .draw()?;
    if s.diagonal {
        let (lo, hi) = (x0.max(y0), x1.min(y1));
        if lo < hi {
            chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], RED.stroke_width(1)))?;
        }
    }
    // Thousands of points (weights against their truth) as dots; a handful (a sweep) visible.
    let radius = if points.len() <= 100 { 4 } else { 1 };
    chart.draw_series(
        points
            .iter()
            .map(|&(x, y)| Circle::new((x, y), radius, BLACK.mix(0.5).filled())),
    )?;
    root.present()?;
    Ok(())
}
