//! Matrices drawn as heatmaps, side by side in one PNG: a diverging colour scale (blue below 0,
//! white at 0, red above) symmetric around 0 per panel, or a sequential one (white to dark blue)
//! for non-negative data such as causal importances. Written to a temporary file and renamed.

use crate::plot::register_font;
use dynlab_runtime::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// One matrix to draw.
#[derive(Clone, Debug)]
pub struct Heatmap {
    /// Caption.
    pub title: String,
    /// Row count.
    pub rows: usize,
    /// Column count.
    pub cols: usize,
    /// `rows × cols` values, row-major.
    pub values: Vec<f64>,
    /// The label of the vertical axis (rows, top to bottom).
    pub row_label: String,
    /// The label of the horizontal axis (columns).
    pub col_label: String,
}

const PANEL: (u32, u32) = (520, 520);

/// Draws `maps` left to right under `title` into a PNG at `path`.
pub fn plot_heatmaps(path: impl AsRef<Path>, title: &str, maps: &[Heatmap]) -> Result<()> {
    let path = path.as_ref();
    for m in maps {
        if m.values.len() != m.rows * m.cols || m.rows == 0 || m.cols == 0 {
            return Err(Error::shape(
                "plot_heatmaps",
                format!(
                    "`{}`: {} values for {} × {}",
                    m.title,
                    m.values.len(),
                    m.rows,
                    m.cols
                ),
                "rows × cols values, both positive",
            ));
        }
    }
    if maps.is_empty() {
        return Err(Error::value("plot_heatmaps", "no matrices", "at least one"));
    }
    register_font()?;
    let tmp = path.with_file_name(format!(".tmp-{}-heat.png", std::process::id()));
    draw(&tmp, title, maps).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("plot_heatmaps", path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("plot_heatmaps", path, e))
}

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

/// The colour of `v` on a scale reaching `scale` (diverging when `signed`).
fn color(v: f64, scale: f64, signed: bool) -> RGBColor {
    let t = (v / scale).clamp(-1.0, 1.0);
    let mix = |a: f64, b: f64, t: f64| (a + (b - a) * t).round() as u8;
    if signed && t < 0.0 {
        let t = -t;
        RGBColor(
            mix(255.0, 33.0, t),
            mix(255.0, 102.0, t),
            mix(255.0, 172.0, t),
        )
    } else if signed {
        RGBColor(
            mix(255.0, 178.0, t),
            mix(255.0, 24.0, t),
            mix(255.0, 43.0, t),
        )
    } else {
        let t = t.max(0.0);
        RGBColor(
            mix(255.0, 8.0, t),
            mix(255.0, 48.0, t),
            mix(255.0, 107.0, t),
        )
    }
}

fn draw(path: &Path, title: &str, maps: &[Heatmap]) -> Draw {
    let width = PANEL.0 * maps.len() as u32;
    let root = BitMapBackend::new(path, (width, PANEL.1)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 24))?;
    for (m, area) in maps.iter().zip(root.split_evenly((1, maps.len()))) {
        let signed = m.values.iter().any(|&v| v < 0.0);
        let scale = m
            .values
            .iter()
            .fold(0.0f64, |a, &v| a.max(v.abs()))
            .max(1e-12);
        let mut chart = ChartBuilder::on(&area)
            .caption(
                format!("{} (|max| {scale:.3})", m.title),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(36)
            .y_label_area_size(46)
            .build_cartesian_2d(0.0..m.cols as f64, 0.0..m.rows as f64)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_desc(m.col_label.as_str())
            .y_desc(m.row_label.as_str())
            .draw()?;
        let plotting = chart.plotting_area();
        for r in 0..m.rows {
            for c in 0..m.cols {
                let v = m.values[r * m.cols + c];
                let fill = color(v, scale, signed).filled();
                let (x, y) = (c as f64, (m.rows - 1 - r) as f64);
                plotting.draw(&Rectangle::new([(x, y), (x + 1.0, y + 1.0)], fill))?;
            }
        }
    }
    root.present()?;
    Ok(())
}
