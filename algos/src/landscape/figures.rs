//! The landscape plots: the spectral density (log scale), 1-D slices, and 2-D slices as a contour
//! plot and a surface, as PNG files.

use super::hessian::SpectralDensity;
use super::slices::{Slice1d, Slice2d};
use dynlab_harness::{
    plot_contour, plot_history, plot_surface, Figure, Grid2d, History, Panel, Value,
};
use dynlab_runtime::{Error, Result};
use std::path::Path;

/// Iso-lines drawn on a contour plot.
const CONTOUR_LEVELS: usize = 12;

/// Densities below this fraction of the peak are drawn at it (the log axis would otherwise reach
/// down to the Gaussians' far tails).
const DENSITY_FLOOR: f64 = 1e-6;

/// The density `φ̂(λ)` against `λ`, log scale, with labelled vertical `markers` (e.g. known
/// eigenvalues), into a PNG at `path`.
pub fn plot_density(
    path: impl AsRef<Path>,
    title: &str,
    density: &SpectralDensity,
    markers: Vec<(String, f64)>,
) -> Result<()> {
    let peak = density.density.iter().copied().fold(0.0, f64::max);
    let mut history = History::default();
    for (t, f) in density.grid.iter().zip(&density.density) {
        let shown = f.max(DENSITY_FLOOR * peak);
        history.push_cells(&[
            ("eigenvalue", Value::F64(*t)),
            ("density", Value::F64(shown)),
        ])?;
    }
    let figure = Figure {
        title: title.to_string(),
        x: "eigenvalue".to_string(),
        log_x: false,
        panels: vec![Panel::new("spectral density (SLQ)", "density")
            .line("density", "φ̂(λ)")
            .log_y()],
        markers,
    };
    plot_history(path, &history, &figure)
}

/// 1-D slices sharing their coefficients, one line each, into a PNG at `path`.
pub fn plot_slices(
    path: impl AsRef<Path>,
    title: &str,
    x_label: &str,
    slices: &[(&str, &Slice1d)],
) -> Result<()> {
    let Some((_, first)) = slices.first() else {
        return Err(Error::value("plot_slices", "no slices", "at least one"));
    };
    if slices
        .iter()
        .any(|(_, s)| s.alphas != first.alphas || s.losses.len() != s.alphas.len())
    {
        return Err(Error::value(
            "plot_slices",
            "slices over different coefficients, or losses not one per coefficient",
            "one set of coefficients and a loss for each",
        ));
    }
    let mut history = History::default();
    for (i, a) in first.alphas.iter().enumerate() {
        let mut cells = vec![(x_label, Value::F64(*a))];
        cells.extend(slices.iter().map(|(l, s)| (*l, Value::F64(s.losses[i]))));
        history.push_cells(&cells)?;
    }
    let panel = slices
        .iter()
        .fold(Panel::new(title, "loss"), |p, (l, _)| p.line(l, l));
    let figure = Figure {
        title: title.to_string(),
        x: x_label.to_string(),
        log_x: false,
        panels: vec![panel],
        markers: Vec::new(),
    };
    plot_history(path, &history, &figure)
}

/// A 2-D slice as `<stem>_contour.png` and `<stem>_surface.png` in `dir`.
pub fn plot_slice_2d(dir: &Path, stem: &str, title: &str, slice: &Slice2d) -> Result<()> {
    let grid = Grid2d {
        title: title.to_string(),
        x_label: "α (direction 1)".to_string(),
        y_label: "β (direction 2)".to_string(),
        z_label: "loss".to_string(),
        xs: slice.alphas.clone(),
        ys: slice.betas.clone(),
        values: slice.losses.clone(),
    };
    plot_contour(
        dir.join(format!("{stem}_contour.png")),
        &grid,
        CONTOUR_LEVELS,
    )?;
    plot_surface(dir.join(format!("{stem}_surface.png")), &grid)
}
