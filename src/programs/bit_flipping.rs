//! The slowly-changing regression (bit-flipping) benchmark of loss of plasticity: backprop, BP +
//! L2, Shrink & Perturb and continual backprop, every learner over several seeds, all trained as
//! replicas of one stacked 20 → 5 → 1 network.
//!
//! ```text
//! cargo run --release --example bit_flipping -- --config examples/configs/bit_flipping.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at BIN] [--quiet]
//! ```
//!
//! Results go to `runs/<name>/`: `config.toml` (resolved), `history.csv` and `history.parquet` (one
//! row per bin: per learner the mean squared error over seeds, its standard error and each seed's),
//! `checkpoint.safetensors`, `bit_flipping.png`, `summary.toml`.

use crate::algos::continual::{run_bit_flipping, BitFlippingConfig};
use crate::harness::{load_config, parse_run_args};

const USAGE: &str = "usage: bit_flipping --config FILE.toml [--set key=value ...] [--resume | --overwrite] [--stop-at BIN] [--quiet]";

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    parse_run_args(args, USAGE).and_then(|args| {
        let (config, resolved) = load_config::<BitFlippingConfig>(&args.config, &args.overrides)
            .map_err(|e| e.to_string())?;
        let o = run_bit_flipping(&config, &resolved, args.options).map_err(|e| e.to_string())?;
        println!("run folder: {}", o.run_dir.display());
        for (name, error) in &o.last_bin_error {
            println!("{name}: squared error over the last bin {error:.4} (mean over seeds)");
        }
        println!(
            "this call ran {:.1} optimizer steps/s ({} replicas per step)",
            o.steps_per_second,
            config.learners.len() * config.seeds
        );
        if let Some(l) = o.launches_per_step {
            println!("per step: {l:.1} kernel launches");
        }
        Ok(())
    })
}
