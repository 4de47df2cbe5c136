//! Connectivity recovery (the NeuralGraph signal study): simulates a network of neurons of four
//! types coupled by a random matrix `W`, trains the Signal_Propagation graph network on the
//! recorded activity, and reports how well the learned `W` matches the true one.
//!
//! ```text
//! cargo run --release --example connectivity -- --config examples/configs/connectivity/signal_n100.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at LOG] [--quiet]
//! ```
//!
//! Configs: `signal_n100.toml` (100 neurons, minutes), `signal_fig2.toml` (the published Fig. 2:
//! 1000 neurons, 100k frames; its 1.25M iterations are days on a software device — cap them with
//! `--set training.iterations=N`). The run folder `runs/<name>/` gets the resolved config, the
//! recording (`data/chunk_<k>.safetensors`), `analysis.log`, `history.csv`/`history.parquet`,
//! `curves.png`, `connectivity.png` and `summary.toml` (connectivity R² and slope, rollout R²,
//! Pearson, cluster accuracy, times, launches per iteration).

use dynlab::algos::connectivity::{run, ConnectivityConfig};
use dynlab::harness::{load_config, parse_run_args};

const USAGE: &str = "usage: connectivity --config FILE.toml [--set key=value ...] \
     [--resume | --overwrite] [--stop-at LOG] [--quiet]";

fn main_result() -> Result<(), String> {
    let args = parse_run_args(std::env::args().skip(1).collect::<Vec<_>>(), USAGE)?;
    let (config, resolved) = load_config::<ConnectivityConfig>(&args.config, &args.overrides)
        .map_err(|e| e.to_string())?;
    let o = run(&config, &resolved, args.options).map_err(|e| e.to_string())?;
    println!("{}: run folder {}", config.name, o.run_dir.display());
    for key in [
        "connectivity_r2",
        "connectivity_slope",
        "rollout_r2",
        "rollout_pearson",
        "cluster_accuracy",
        "iterations",
        "simulation_seconds",
        "training_seconds",
    ] {
        if let Some(v) = o.summary.get(key) {
            println!("  {key} = {v}");
        }
    }
    println!(
        "  this call ran {:.1} iterations/s",
        o.iterations_per_second
    );
    Ok(())
}

fn main() {
    if let Err(e) = main_result() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
