//! Loss and accuracy curves against epoch (log x), train and test, with the epochs where training
//! accuracy and test accuracy crossed their thresholds marked — the picture of grokking.

use crate::train::History;
use dynlab_runtime::{Error, Result};
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, ttf_noto_sans::REGULAR)
            .is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| Error::io("plot_curves", "Noto Sans", "the embedded font did not load"))
}

/// Draws `history` into a PNG at `path` (written to a temporary file, then renamed). `markers` are
/// labelled vertical lines (e.g. memorisation and grokking epochs).
pub fn plot_curves(
    path: impl AsRef<Path>,
    title: &str,
    history: &History,
    markers: &[(&str, u64)],
) -> Result<()> {
    let path = path.as_ref();
    register_font()?;
    let tmp = path.with_file_name(format!(".tmp-{}.png", std::process::id()));
    draw(&tmp, title, history, markers).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io("plot_curves", path, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("plot_curves", path, e))
}

type Draw = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(path: &Path, title: &str, history: &History, markers: &[(&str, u64)]) -> Draw {
    let r = &history.records;
    if r.is_empty() {
        return Err("no epochs to plot".into());
    }
    let root = BitMapBackend::new(path, (1400, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 26))?;
    let (left, right) = root.split_horizontally(700);
    let x_max = (r.last().expect("non-empty").epoch as f64).max(2.0);
    let series = |f: fn(&crate::train::EpochRecord) -> f32| -> Vec<(f64, f64)> {
        r.iter()
            .filter(|e| f(e).is_finite())
            .map(|e| (e.epoch as f64, f(e) as f64))
            .collect()
    };
    let losses = [series(|e| e.train_loss), series(|e| e.test_loss)];
    let (lo, hi) = losses
        .iter()
        .flatten()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    let (lo, hi) = (lo.max(1e-7), hi.max(lo.max(1e-7) * 10.0));
    let mut loss = ChartBuilder::on(&left)
        .caption("cross-entropy", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..x_max).log_scale(), (lo..hi).log_scale())?;
    loss.configure_mesh()
        .x_desc("epoch")
        .y_desc("loss")
        .draw()?;
    let mut acc = ChartBuilder::on(&right)
        .caption("accuracy", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d((1f64..x_max).log_scale(), 0f64..1.02)?;
    acc.configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
        .draw()?;
    let accs = [series(|e| e.train_acc), series(|e| e.test_acc)];
    for (i, (name, color)) in [("train", BLUE), ("test", RED)].into_iter().enumerate() {
        loss.draw_series(LineSeries::new(losses[i].clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        acc.draw_series(LineSeries::new(accs[i].clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    let marker_colors = [
        RGBColor(90, 90, 90),
        RGBColor(0, 140, 60),
        RGBColor(150, 0, 150),
    ];
    for (k, &(label, epoch)) in markers.iter().enumerate() {
        let x = (epoch as f64).max(1.0);
        let color = marker_colors[k % marker_colors.len()];
        acc.draw_series(LineSeries::new(
            vec![(x, 0.0), (x, 1.02)],
            color.stroke_width(1),
        ))?
        .label(format!("{label} at epoch {epoch}"))
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    loss.configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    acc.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .draw()?;
    root.present()?;
    Ok(())
}
