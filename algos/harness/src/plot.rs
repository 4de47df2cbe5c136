//! Plots from any history: panels side by side, each drawing some columns against one x column
//! (linear or log axes), with labelled vertical markers (e.g. the epochs where a run memorised and
//! generalised). PNG through plotters with an embedded font, written to a temporary file and
//! renamed.

use crate::history::History;
use dynlab_runtime::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// One panel: some columns of the history against the figure's x column.
#[derive(Clone, Debug)]
pub struct Panel {
    /// Caption.
    pub title: String,
    /// The y-axis label.
    pub y_label: String,
    /// `(column, legend label)` per line.
    pub series: Vec<(String, String)>,
    /// Logarithmic y axis (non-positive values are left out).
    pub log_y: bool,
}

impl Panel {
    /// A panel titled `title` with y label `y_label` and no lines yet.
    pub fn new(title: &str, y_label: &str) -> Panel {
        Panel {
            title: title.to_string(),
            y_label: y_label.to_string(),
            series: Vec::new(),
            log_y: false,
        }
    }

    /// Adds the column `column`, labelled `label`.
    pub fn line(mut self, column: &str, label: &str) -> Panel {
        self.series.push((column.to_string(), label.to_string()));
        self
    }

    /// A logarithmic y axis.
    pub fn log_y(mut self) -> Panel {
        self.log_y = true;
        self
    }
}

/// A figure: a title, the x column and its scale, and its panels.
#[derive(Clone, Debug)]
pub struct Figure {
    /// Title over all panels.
    pub title: String,
    /// The column along x.
    pub x: String,
    /// Logarithmic x axis.
    pub log_x: bool,
    /// The panels, left to right.
    pub panels: Vec<Panel>,
    /// `(label, x)` vertical markers, drawn on every panel.
    pub markers: Vec<(String, f64)>,
}

const PANEL_SIZE: (u32, u32) = (700, 560);

pub(crate) fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, ttf_noto_sans::REGULAR)
            .is_ok()
    });
    ok.then_some(()).ok_or_else(|| {
        Error::io(
            "plot_history",
            "Noto Sans",
            "the embedded font did not load",
        )
    })
}

/// Draws `figure` from `history` into a PNG at `path` (temporary file, then rename).
pub fn plot_history(path: impl AsRef<Path>, history: &History, figure: &Figure) -> Result<()> {
    let path = path.as_ref();
    register_font()?;
    let tmp = path.with_file_name(format!(".tmp-{}.png", std::process::id()));
    draw(&tmp, history, figure).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("plot_history", path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("plot_history", path, e))
}

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

/// `(x, y)` points of column `y` against column `x`, rows where both are finite (and positive on
/// log axes).
fn points(history: &History, x: &str, y: &str, log_x: bool, log_y: bool) -> Vec<(f64, f64)> {
    let (Some(xs), Some(ys)) = (history.numbers(x), history.numbers(y)) else {
        return Vec::new();
    };
    let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
    xs.into_iter()
        .zip(ys)
        .filter_map(|(x, y)| Some((x?, y?)))
        .filter(|&(x, y)| ok(x, log_x) && ok(y, log_y))
        .collect()
}

fn draw(path: &Path, history: &History, figure: &Figure) -> Draw {
    if figure.panels.is_empty() {
        return Err("a figure without panels".into());
    }
    let width = PANEL_SIZE.0 * figure.panels.len() as u32;
    let root = BitMapBackend::new(path, (width, PANEL_SIZE.1)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(&figure.title, ("sans-serif", 26))?;
    let areas = root.split_evenly((1, figure.panels.len()));
    for (panel, area) in figure.panels.iter().zip(&areas) {
        draw_panel(area, history, figure, panel)?;
    }
    root.present()?;
    Ok(())
}

/// `[lo, hi]` of the values, widened to a usable axis range.
fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return if log { (1e-3, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo, hi.max(lo * 10.0))
    } else {
        let pad = ((hi - lo) * 0.02).max(1e-6);
        (lo - pad, hi + pad)
    }
}

const COLORS: [RGBColor; 6] = [
    BLUE,
    RED,
    RGBColor(0, 140, 60),
    MAGENTA,
    RGBColor(230, 140, 0),
    CYAN,
];
const MARKER_COLORS: [RGBColor; 3] = [
    RGBColor(90, 90, 90),
    RGBColor(0, 140, 60),
    RGBColor(150, 0, 150),
];

/// A compact axis label: plain for moderate magnitudes, scientific for tiny and huge ones.
fn tick(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn draw_panel(
    area: &DrawingArea<BitMapBackend, Shift>,
    history: &History,
    figure: &Figure,
    panel: &Panel,
) -> Draw {
    let series: Vec<Vec<(f64, f64)>> = panel
        .series
        .iter()
        .map(|(column, _)| points(history, &figure.x, column, figure.log_x, panel.log_y))
        .collect();
    let all = || series.iter().flatten();
    let (x_lo, x_hi) = range(all().map(|p| p.0), figure.log_x);
    let (y_lo, y_hi) = range(all().map(|p| p.1), panel.log_y);
    let mut chart = ChartBuilder::on(area);
    chart
        .caption(&panel.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    macro_rules! finish {
        ($chart:expr) => {{
            let mut c = $chart;
            c.configure_mesh()
                .x_desc(figure.x.as_str())
                .y_desc(panel.y_label.as_str())
                .x_label_formatter(&|v: &f64| tick(*v))
                .y_label_formatter(&|v: &f64| tick(*v))
                .draw()?;
            for (i, ((_, label), points)) in panel.series.iter().zip(&series).enumerate() {
                let color = COLORS[i % COLORS.len()];
                c.draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            for (k, (label, x)) in figure.markers.iter().enumerate() {
                let color = MARKER_COLORS[k % MARKER_COLORS.len()];
                c.draw_series(LineSeries::new(
                    vec![(*x, y_lo), (*x, y_hi)],
                    color.stroke_width(1),
                ))?
                .label(label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            }
            c.configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.8))
                .draw()?;
        }};
    }
    match (figure.log_x, panel.log_y) {
        (true, true) => {
            finish!(chart.build_cartesian_2d((x_lo..x_hi).log_scale(), (y_lo..y_hi).log_scale())?)
        }
        (true, false) => finish!(chart.build_cartesian_2d((x_lo..x_hi).log_scale(), y_lo..y_hi)?),
        (false, true) => finish!(chart.build_cartesian_2d(x_lo..x_hi, (y_lo..y_hi).log_scale())?),
        (false, false) => finish!(chart.build_cartesian_2d(x_lo..x_hi, y_lo..y_hi)?),
    }
    Ok(())
}
