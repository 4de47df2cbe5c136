//! Stochastic Parameter Decomposition (Bushnaq et al. 2025) of the paper's toy models: trains the
//! target, decomposes it into rank-one subcomponents, and reports how well they match the target's
//! features.
//!
//! ```text
//! cargo run --release --example spd -- --experiments tms_5-2,tms_40-10 [--set key=value ...] \
//!     [--resume | --overwrite] [--stop-at LOG] [--quiet]
//! cargo run --release --example spd -- --config examples/configs/spd/tms_5-2.toml [...]
//! ```
//!
//! Experiments: `tms_5-2`, `tms_5-2-id`, `tms_40-10`, `tms_40-10-id`, `resid_mlp1`, `resid_mlp2`,
//! `resid_mlp3` (configs in `examples/configs/spd/`). Each run folder `runs/spd-<name>/` gets the
//! resolved config, `history.csv`/`history.parquet` (one row per log interval), the checkpoint,
//! `curves.png`, `weights.png`, `top_components.png`, `ci_one_hot.png`, `ci_vs_input.png` and
//! `summary.toml` (MMCS, ML2R, CI-L0 and live subcomponents per layer, steps/s).

use crate::algos::spd::{run, SpdConfig};
use crate::harness::{load_config, parse_run_args};

const USAGE: &str =
    "usage: spd (--experiments NAME[,NAME...] | --config FILE.toml) [--set key=value ...] \
     [--resume | --overwrite] [--stop-at LOG] [--quiet]";
const CONFIGS: &str = "examples/configs/spd";

/// The config files the command line names, and the other arguments.
fn split_experiments(args: Vec<String>) -> Result<(Vec<String>, Vec<String>), String> {
    let mut rest = Vec::new();
    let mut configs = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if arg == "--experiments" {
            let list = it
                .next()
                .ok_or(format!("--experiments needs a value\n{USAGE}"))?;
            configs.extend(
                list.split(',')
                    .map(|n| format!("{CONFIGS}/{}.toml", n.trim())),
            );
        } else {
            rest.push(arg);
        }
    }
    Ok((configs, rest))
}

fn run_one(args: Vec<String>) -> Result<(), String> {
    let args = parse_run_args(args, USAGE)?;
    let (config, resolved) =
        load_config::<SpdConfig>(&args.config, &args.overrides).map_err(|e| e.to_string())?;
    let o = run(&config, &resolved, args.options).map_err(|e| e.to_string())?;
    println!("{}: run folder {}", config.name, o.run_dir.display());
    let get = |k: &str| o.summary.get(k).map(|v| v.to_string());
    if let (Some(mmcs), Some(ml2r)) = (get("mmcs"), get("ml2r")) {
        println!("  first layer: MMCS {mmcs}, ML2R {ml2r}");
    }
    for (key, value) in o.summary.entries() {
        if ["live.", "ci_l0.", "one_component_features.", "represented"]
            .iter()
            .any(|p| key.starts_with(p))
        {
            println!("  {key} = {value}");
        }
    }
    println!(
        "  wall time {:.1} s; this call ran {:.1} SPD steps/s",
        o.seconds, o.steps_per_second
    );
    Ok(())
}

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    split_experiments(args).and_then(|(configs, rest)| {
        if configs.is_empty() {
            return run_one(rest);
        }
        for config in configs {
            let mut args = rest.clone();
            args.extend(["--config".to_string(), config]);
            run_one(args)?;
        }
        Ok(())
    })
}
