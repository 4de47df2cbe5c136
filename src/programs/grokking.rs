//! Grokking on modular arithmetic (Power et al. 2022): train an MLP on part of the table of
//! `(a ∘ b) mod p`, watch it memorise the training pairs and, much later, generalise.
//!
//! ```text
//! cargo run --release --example grokking -- --config examples/configs/grokking_quick.toml \
//!     [--set key=value ...] [--resume [--extra-epochs N] | --overwrite] [--stop-at EPOCH] [--quiet]
//! ```
//!
//! `model.type` picks the MLP, the transformer or the routed network (`examples/configs/validate*.toml`,
//! `baseline.toml`, `transformer.toml`, `power2022.toml`, `routed.toml`). Results go to
//! `runs/<name>/`: `config.toml` (resolved), `history.csv` and `history.parquet` (one row per epoch,
//! the `[metrics]` columns null between their intervals), `checkpoint.safetensors`, `curves.png`,
//! `spectrum.png`, `routing.png` (routed network), `summary.toml`. `--set replicas=8`
//! trains seeds `seed … seed + 7` as one stacked model: one row per epoch and replica, and each
//! replica's history and curves in `replicas/<r>/`.

use crate::algos::grokking::{run, GrokkingConfig};
use crate::harness::{load_config, parse_run_args};

const USAGE: &str =
    "usage: grokking --config FILE.toml [--set key=value ...] [--resume [--extra-epochs N] | --overwrite] [--stop-at EPOCH] [--quiet]";

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    parse_run_args(args, USAGE).and_then(|args| {
        let (config, resolved) = load_config::<GrokkingConfig>(&args.config, &args.overrides)
            .map_err(|e| e.to_string())?;
        let o = run(&config, &resolved, args.options).map_err(|e| e.to_string())?;
        let last = |column: &str| o.history.last(column).unwrap_or(f64::NAN);
        let epoch = |e: Option<u64>| e.map_or("not reached".to_string(), |e| e.to_string());
        println!("run folder:        {}", o.run_dir.display());
        println!(
            "memorised (train acc >= {}): epoch {}",
            config.train.memorised_at,
            epoch(o.memorised_epoch)
        );
        println!(
            "grokked (test acc >= {}):   epoch {}",
            config.train.grokked_at,
            epoch(o.grokked_epoch)
        );
        if o.replica_phases.len() > 1 {
            for (r, (m, g)) in o.replica_phases.iter().enumerate() {
                let seed = config.seed + r as u64;
                println!(
                    "replica {r} (seed {seed}): memorised at epoch {}, grokked at epoch {}",
                    epoch(*m),
                    epoch(*g)
                );
            }
        }
        println!(
            "final epoch {}: train acc {:.4}, test acc {:.4}, test loss {:.4}{}",
            last("epoch"),
            last("train_acc"),
            last("test_acc"),
            last("test_loss"),
            if o.replica_phases.len() > 1 {
                " (last replica)"
            } else {
                ""
            }
        );
        println!(
            "wall time {:.1} s; this call ran {} epochs at {:.2} epochs/s",
            o.seconds, o.epochs_run, o.epochs_per_second
        );
        if let (Some(l), Some(s)) = (o.launches_per_step, o.syncs_per_step) {
            println!(
                "per training step: {l:.1} kernel launches, {s:.2} host syncs \
                 (evaluation, logging and checkpoints included)"
            );
        }
        Ok(())
    })
}
