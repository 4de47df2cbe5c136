//! A function on a 2-D grid (a loss landscape slice) drawn as a filled contour plot with labelled
//! iso-lines (marching squares) or as a 3-D surface, each in one PNG written to a temporary file
//! and renamed.

use crate::plot::register_font;
use dynlab_runtime::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// Values `values[j · xs.len() + i] = f(xs[i], ys[j])` on a grid.
#[derive(Clone, Debug)]
pub struct Grid2d {
    /// Caption.
    pub title: String,
    /// Horizontal axis label.
    pub x_label: String,
    /// Vertical axis label.
    pub y_label: String,
    /// Label of the values (the colour bar, the surface's height).
    pub z_label: String,
    /// Grid coordinates along x, ascending.
    pub xs: Vec<f64>,
    /// Grid coordinates along y, ascending.
    pub ys: Vec<f64>,
    /// The values, row-major over `(y, x)`.
    pub values: Vec<f64>,
}

impl Grid2d {
    fn check(&self, op: &'static str) -> Result<(f64, f64)> {
        let ascending = |v: &[f64]| v.len() >= 2 && v.windows(2).all(|w| w[0] < w[1]);
        if !ascending(&self.xs)
            || !ascending(&self.ys)
            || self.values.len() != self.xs.len() * self.ys.len()
        {
            return Err(Error::shape(
                op,
                format!(
                    "`{}`: {} x, {} y, {} values",
                    self.title,
                    self.xs.len(),
                    self.ys.len(),
                    self.values.len()
                ),
                "at least 2 ascending coordinates per axis and one value per grid point",
            ));
        }
        let finite = self.values.iter().copied().filter(|v| v.is_finite());
        let lo = finite.clone().fold(f64::INFINITY, f64::min);
        let hi = finite.fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return Err(Error::value(
                op,
                format!("`{}`: no finite value", self.title),
                "at least one finite value",
            ));
        }
        Ok((lo, hi.max(lo + 1e-12 * lo.abs().max(1.0))))
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.values[j * self.xs.len() + i]
    }
}

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

/// Sequential colour for `t` in [0, 1]: dark blue (low) through teal and yellow (high).
fn ramp(t: f64) -> RGBColor {
    const STOPS: [(f64, (f64, f64, f64)); 4] = [
        (0.0, (68.0, 1.0, 84.0)),
        (0.35, (49.0, 104.0, 142.0)),
        (0.7, (53.0, 183.0, 121.0)),
        (1.0, (253.0, 231.0, 37.0)),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let k = STOPS.iter().position(|s| s.0 >= t).unwrap_or(3).max(1);
    let ((t0, a), (t1, b)) = (STOPS[k - 1], STOPS[k]);
    let u = (t - t0) / (t1 - t0);
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

fn write_atomic(op: &'static str, path: &Path, draw: impl FnOnce(&Path) -> Draw) -> Result<()> {
    register_font()?;
    let tmp = path.with_file_name(format!(".tmp-{}-{op}.png", std::process::id()));
    draw(&tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(op, path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(op, path, e))
}

/// Draws `grid` as filled cells with `levels` iso-lines (evenly spaced between its extremes) into
/// a PNG at `path`.
pub fn plot_contour(path: impl AsRef<Path>, grid: &Grid2d, levels: usize) -> Result<()> {
    let range = grid.check("plot_contour")?;
    write_atomic("plot_contour", path.as_ref(), |p| {
        draw_contour(p, grid, range, levels)
    })
}

/// Draws `grid` as a 3-D surface into a PNG at `path`.
pub fn plot_surface(path: impl AsRef<Path>, grid: &Grid2d) -> Result<()> {
    let range = grid.check("plot_surface")?;
    write_atomic("plot_surface", path.as_ref(), |p| {
        draw_surface(p, grid, range)
    })
}

fn draw_contour(path: &Path, grid: &Grid2d, (lo, hi): (f64, f64), levels: usize) -> Draw {
    let root = BitMapBackend::new(path, (720, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (nx, ny) = (grid.xs.len(), grid.ys.len());
    let (x0, x1) = (grid.xs[0], grid.xs[nx - 1]);
    let (y0, y1) = (grid.ys[0], grid.ys[ny - 1]);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{} ({} {lo:.4} … {hi:.4})", grid.title, grid.z_label),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(grid.x_label.as_str())
        .y_desc(grid.y_label.as_str())
        .draw()?;
    let plotting = chart.plotting_area();
    let edge = |v: &[f64], i: usize| -> (f64, f64) {
        let lo = if i == 0 {
            v[0]
        } else {
            0.5 * (v[i - 1] + v[i])
        };
        let hi = if i + 1 == v.len() {
            v[i]
        } else {
            0.5 * (v[i] + v[i + 1])
        };
        (lo, hi)
    };
    for j in 0..ny {
        for i in 0..nx {
            let t = (grid.at(i, j) - lo) / (hi - lo);
            let ((a, b), (c, d)) = (edge(&grid.xs, i), edge(&grid.ys, j));
            plotting.draw(&Rectangle::new([(a, c), (b, d)], ramp(t).filled()))?;
        }
    }
    for k in 1..=levels {
        let level = lo + (hi - lo) * k as f64 / (levels + 1) as f64;
        for segment in iso_segments(grid, level) {
            plotting.draw(&PathElement::new(segment.to_vec(), BLACK.stroke_width(1)))?;
        }
    }
    root.present()?;
    Ok(())
}

/// The segments of the iso-line `f = level` by marching squares (each cell's crossings joined in
/// edge order; a saddle cell gets two segments).
fn iso_segments(grid: &Grid2d, level: f64) -> Vec<[(f64, f64); 2]> {
    let mut out = Vec::new();
    for j in 0..grid.ys.len() - 1 {
        for i in 0..grid.xs.len() - 1 {
            let corners = [(i, j), (i + 1, j), (i + 1, j + 1), (i, j + 1)];
            let mut crossings = Vec::with_capacity(4);
            for e in 0..4 {
                let (a, b) = (corners[e], corners[(e + 1) % 4]);
                let (va, vb) = (grid.at(a.0, a.1), grid.at(b.0, b.1));
                if !(va.is_finite() && vb.is_finite()) || (va < level) == (vb < level) {
                    continue;
                }
                let t = (level - va) / (vb - va);
                let x = grid.xs[a.0] + t * (grid.xs[b.0] - grid.xs[a.0]);
                let y = grid.ys[a.1] + t * (grid.ys[b.1] - grid.ys[a.1]);
                crossings.push((x, y));
            }
            for pair in crossings.chunks_exact(2) {
                out.push([pair[0], pair[1]]);
            }
        }
    }
    out
}

fn draw_surface(path: &Path, grid: &Grid2d, (lo, hi): (f64, f64)) -> Draw {
    let root = BitMapBackend::new(path, (760, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (nx, ny) = (grid.xs.len(), grid.ys.len());
    let mut chart = ChartBuilder::on(&root)
        .caption(grid.title.as_str(), ("sans-serif", 20))
        .margin(16)
        .build_cartesian_3d(
            grid.xs[0]..grid.xs[nx - 1],
            lo..hi,
            grid.ys[0]..grid.ys[ny - 1],
        )?;
    chart.with_projection(|mut p| {
        p.yaw = 0.6;
        p.pitch = 0.35;
        p.scale = 0.85;
        p.into_matrix()
    });
    chart
        .configure_axes()
        .light_grid_style(BLACK.mix(0.1))
        .max_light_lines(4)
        .draw()?;
    let value = |x: f64, y: f64| -> f64 {
        let i = grid.xs.iter().position(|&v| v == x).unwrap_or(0);
        let j = grid.ys.iter().position(|&v| v == y).unwrap_or(0);
        let v = grid.at(i, j);
        if v.is_finite() {
            v.min(hi)
        } else {
            hi
        }
    };
    let style = |v: &f64| ramp((v - lo) / (hi - lo)).mix(0.9).filled();
    chart.draw_series(
        SurfaceSeries::xoz(grid.xs.iter().copied(), grid.ys.iter().copied(), value)
            .style_func(&style),
    )?;
    root.present()?;
    Ok(())
}
