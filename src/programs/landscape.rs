//! The deep linear network's landscape and Hessian spectrum against the closed form: gradient
//! descent from a small balanced start to the global minimum, with sharpness against `2/η` along
//! the way, then the dense Hessian, Lanczos, stochastic Lanczos quadrature and slices along the
//! top eigenvectors at the point reached.
//!
//! ```text
//! cargo run --release --example landscape -- --config examples/configs/landscape_deep_linear.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at ROW] [--quiet]
//! ```
//!
//! Results go to `runs/<name>/`: `training.png`, `spectrum.png` (SLQ density with the closed-form
//! eigenvalues marked), `eigen_slices.png`, `eigen_plane_contour.png`, `eigen_plane_surface.png`,
//! `history.csv`/`.parquet`, `summary.toml`. The plasticity landscapes run through the supervised
//! runner's `[landscape]` section (`examples/configs/landscape_plasticity.toml`).

use crate::algos::landscape::{run_deep_linear, DeepLinearConfig};
use crate::harness::{load_config, parse_run_args};

const USAGE: &str = "usage: landscape --config FILE.toml [--set key=value ...] [--resume | --overwrite] [--stop-at ROW] [--quiet]";

fn list(values: &[f64]) -> String {
    let v: Vec<String> = values.iter().map(|x| format!("{x:.5}")).collect();
    format!("[{}]", v.join(", "))
}

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    parse_run_args(args, USAGE).and_then(|args| {
        let (config, resolved) = load_config::<DeepLinearConfig>(&args.config, &args.overrides)
            .map_err(|e| e.to_string())?;
        let o = run_deep_linear(&config, &resolved, args.options).map_err(|e| e.to_string())?;
        let k = o.lanczos.len();
        println!("run folder: {}", o.run_dir.display());
        println!("final loss {:.3e}", o.final_loss);
        println!(
            "closed-form top {k}: {}",
            list(&o.closed_form[..k.min(o.closed_form.len())])
        );
        println!(
            "dense Hessian top {k}: {}",
            list(&o.dense[..k.min(o.dense.len())])
        );
        println!("Lanczos top {k}: {}", list(&o.lanczos));
        let worst = o
            .dense
            .iter()
            .zip(&o.closed_form)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        println!(
            "largest |dense − closed form| over all {} eigenvalues: {worst:.3e}",
            o.dense.len()
        );
        println!(
            "trace: closed form {:.5}, SLQ {:.5} ± {:.5}",
            o.closed_form.iter().sum::<f64>(),
            o.slq_trace.0,
            o.slq_trace.1
        );
        Ok(())
    })
}
