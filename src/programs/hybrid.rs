//! Hybrid predictive training against a baseline of full steps: for each seed the same task, seed,
//! batches and number of optimizer-trajectory steps, once with every step full and once with the
//! hybrid trainer (phases Warmup → Full → Predict → Correct, a GRU ensemble predicting the
//! dynamics, roll-backs on divergence), then an optional sweep of fixed horizons × confidence
//! thresholds.
//!
//! ```text
//! cargo run --release --example hybrid -- --config examples/configs/hybrid/tms.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at RUN] [--quiet]
//! ```
//!
//! Results go to `runs/<name>/`: `history.csv`/`.parquet` (every step of every run), `sweep.csv`
//! (skipped fraction and relative final-loss change of every hybrid run), `losses.png`,
//! `sweep.png` and `summary.toml`.

use crate::algos::hybrid::{run_hybrid, HybridRunConfig, RunResult};
use crate::harness::{load_config, parse_run_args};

const USAGE: &str = "usage: hybrid --config FILE.toml [--set key=value ...] [--resume | --overwrite] [--stop-at RUN] [--quiet]";

fn line(r: &RunResult) -> String {
    let setting = match r.mode.as_str() {
        "baseline" => "-".to_string(),
        _ => format!("h≤{} τ={}", r.max_horizon, r.threshold),
    };
    format!(
        "{:<8} {:>4} {:<12} {:>8} {:>7.1}% {:>8.1} {:>8.1} {:>11.4e} {:>+8.2}% {:>11.4e} {:>8.3} {:>5} {:>4}",
        r.mode,
        r.seed,
        setting,
        r.backward_passes,
        100.0 * r.skipped,
        r.seconds,
        r.dynamics_seconds,
        r.train_loss,
        100.0 * r.relative_loss_change,
        r.test_loss,
        r.test_accuracy,
        r.divergence_events,
        r.rollbacks
    )
}

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    parse_run_args(args, USAGE).and_then(|args| {
        let (config, resolved) = load_config::<HybridRunConfig>(&args.config, &args.overrides)
            .map_err(|e| e.to_string())?;
        let outcome = run_hybrid(&config, &resolved, args.options).map_err(|e| e.to_string())?;
        println!("run folder: {}", outcome.run_dir.display());
        println!(
            "{:<8} {:>4} {:<12} {:>8} {:>8} {:>8} {:>8} {:>11} {:>9} {:>11} {:>8} {:>5} {:>4}",
            "mode",
            "seed",
            "setting",
            "backward",
            "skipped",
            "wall s",
            "dyn s",
            "train loss",
            "Δ loss",
            "test loss",
            "test acc",
            "sig",
            "rb"
        );
        for r in &outcome.results {
            println!("{}", line(r));
        }
        Ok(())
    })
}
