//! Connectivity recovery (the NeuralGraph signal study): simulates a network of neurons of four
//! types coupled by a random matrix `W`, trains the Signal_Propagation graph network on the
//! recorded activity, and reports how well the learned `W` matches the true one.
//!
//! ```text
//! cargo run --release --example connectivity -- --config examples/configs/connectivity/signal_n100.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at LOG] [--quiet]
//! ```
//!
//! Exploration (the study's UCB tree search over configurations; see `dynlab::harness::explore`):
//!
//! ```text
//! cargo run --release --example connectivity -- --config examples/configs/connectivity/signal_n100.toml \
//!     --explore 8 --mutate training.lr_w=0.003,0.01,0.03 --mutate training.coeff_w_l1=0.0,1e-5 \
//!     [--ucb-c 1.414] [--set key=value ...]
//! ```
//!
//! runs 8 nodes, each a mutation of the node of highest UCB (score: connectivity R²), in run
//! folders `<name>-node<k>`, and writes `runs/<name>-explore/ucb_scores.txt` after each node.
//!
//! Configs: `signal_n100.toml` (100 neurons, minutes), `signal_fig2.toml` (the published Fig. 2:
//! 1000 neurons, 100k frames; its 1.25M iterations are days on a software device — cap them with
//! `--set training.iterations=N`). The run folder `runs/<name>/` gets the resolved config, the
//! recording (`data/chunk_<k>.safetensors`), `analysis.log`, `history.csv`/`history.parquet`,
//! `curves.png`, `connectivity.png` and `summary.toml` (connectivity R² and slope, rollout R²,
//! Pearson, cluster accuracy, times, launches per iteration).

use crate::algos::connectivity::{run, ConnectivityConfig};
use crate::data::HostRng;
use crate::harness::explore::{explore, Mutation};
use crate::harness::{load_config, parse_run_args, RunArgs, RunMode, RunOptions};
use std::path::PathBuf;

const USAGE: &str = "usage: connectivity --config FILE.toml [--set key=value ...] \
     [--resume | --overwrite] [--stop-at LOG] [--quiet] \
     [--explore NODES --mutate key=v1,v2[,...] ... [--ucb-c C]]";

/// The exploration's settings, taken out of the command line.
struct Exploration {
    nodes: usize,
    space: Vec<Mutation>,
    c: f64,
}

fn split_exploration(args: Vec<String>) -> Result<(Option<Exploration>, Vec<String>), String> {
    let (mut nodes, mut space, mut c, mut rest) = (None, Vec::new(), 1.414, Vec::new());
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--explore" => nodes = Some(value()?.parse().map_err(|e| format!("--explore: {e}"))?),
            "--mutate" => space.push(Mutation::parse(&value()?).map_err(|e| e.to_string())?),
            "--ucb-c" => c = value()?.parse().map_err(|e| format!("--ucb-c: {e}"))?,
            _ => rest.push(arg),
        }
    }
    Ok((nodes.map(|nodes| Exploration { nodes, space, c }), rest))
}

fn run_explore(args: RunArgs, e: Exploration) -> Result<(), String> {
    let (base, _) = load_config::<ConnectivityConfig>(&args.config, &args.overrides)
        .map_err(|e| e.to_string())?;
    let dir = PathBuf::from(&base.runs_dir).join(format!("{}-explore", base.name));
    let mut rng = HostRng::new(base.seed);
    let tree = explore(
        e.nodes,
        e.c,
        &e.space,
        &dir,
        |n| rng.below(n),
        |id, node| {
            let mut overrides = args.overrides.clone();
            overrides.extend(node.iter().cloned());
            overrides.push(format!("name=\"{}-node{id}\"", base.name));
            let (config, resolved) = load_config::<ConnectivityConfig>(&args.config, &overrides)?;
            let options = RunOptions {
                mode: RunMode::Overwrite,
                ..args.options
            };
            let o = run(&config, &resolved, options)?;
            let r2 = o.summary.get("connectivity_r2").map(|v| v.to_string());
            println!(
                "node {id} ({}): connectivity R² {}",
                node.join(" "),
                r2.as_deref().unwrap_or("?")
            );
            Ok(r2.and_then(|v| v.parse().ok()).unwrap_or(0.0))
        },
    )
    .map_err(|e| e.to_string())?;
    print!("{}", tree.report());
    println!("wrote {}", dir.join("ucb_scores.txt").display());
    Ok(())
}

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    let (exploration, rest) = split_exploration(args)?;
    let args = parse_run_args(rest, USAGE)?;
    if let Some(e) = exploration {
        return run_explore(args, e);
    }
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
        "embedding_clusters",
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
