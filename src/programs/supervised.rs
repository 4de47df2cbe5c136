//! The loss-of-plasticity studies' supervised runner: a registered model trained over a task
//! stream, with the rank of every layer's features, dead and dormant units and weight norms
//! tracked on a fixed probe batch.
//!
//! ```text
//! cargo run --release --example supervised -- --config examples/configs/plasticity_rank_tracking.toml \
//!     [--set key=value ...] [--resume | --overwrite] [--stop-at MEASUREMENT] [--quiet]
//! ```
//!
//! Results go to `runs/<name>/`: `config.toml` (resolved), `history.csv` and `history.parquet` (one
//! row per measurement, layer metrics as columns `l<i>_<measure>`), `checkpoint.safetensors`,
//! `accuracy.png`, `ranks.png`, `summary.toml`; with a `[landscape]` section also `landscape.png`,
//! `trajectory.png` and `landscape/<task>_{density,slices,contour,surface}.png`
//! (`examples/configs/landscape_plasticity.toml`).

use crate::algos::continual::{run, SupervisedConfig};
use crate::harness::{load_config, parse_run_args, Value};

const USAGE: &str = "usage: supervised --config FILE.toml [--set key=value ...] [--resume | --overwrite] [--stop-at MEASUREMENT] [--quiet]";

/// Runs the program on its command-line arguments (without the program name).
pub fn main(args: Vec<String>) -> Result<(), String> {
    parse_run_args(args, USAGE).and_then(|args| {
        let (config, resolved) = load_config::<SupervisedConfig>(&args.config, &args.overrides)
            .map_err(|e| e.to_string())?;
        let o = run(&config, &resolved, args.options).map_err(|e| e.to_string())?;
        println!("run folder: {}", o.run_dir.display());
        let accs: Vec<String> = o.task_test_acc.iter().map(|a| format!("{a:.3}")).collect();
        println!(
            "test accuracy at the end of each task: [{}]",
            accs.join(", ")
        );
        let layers = (0..)
            .take_while(|i| o.history.column(&format!("l{i}_effective_rank")).is_some())
            .map(|i| {
                let last = |m: &str| o.history.last(&format!("l{i}_{m}")).unwrap_or(f64::NAN);
                format!(
                    "layer {i}: effective rank {:.1}, dead {}, dormant {}",
                    last("effective_rank"),
                    last("dead"),
                    last("dormant")
                )
            })
            .collect::<Vec<_>>();
        for line in layers {
            println!("{line}");
        }
        let h = &o.history;
        if let Some(tasks) = h.numbers("landscape_task") {
            for (row, task) in tasks.iter().enumerate() {
                let Some(task) = task else { continue };
                let top: Vec<String> = (1..)
                    .map_while(|i| h.numbers(&format!("hessian_top{i}")))
                    .filter_map(|c| c[row])
                    .map(|v| format!("{v:.4}"))
                    .collect();
                let cell = |name: &str| h.cell(name, row).and_then(Value::as_f64);
                println!(
                    "landscape at step {} (task {task}): top Hessian eigenvalues [{}], loss {:.4},                      {:.3} s per HVP, {:.2} s per Lanczos run",
                    cell("step").unwrap_or(f64::NAN),
                    top.join(", "),
                    cell("landscape_loss").unwrap_or(f64::NAN),
                    cell("hvp_seconds").unwrap_or(f64::NAN),
                    cell("lanczos_seconds").unwrap_or(f64::NAN),
                );
            }
        }
        if let Some(end) = &o.landscape_end {
            let cells: Vec<String> = end.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
            println!("landscape at the end of the run: {}", cells.join(", "));
        }
        println!(
            "wall time {:.1} s; this call ran {:.1} training steps/s (measurements included)",
            o.seconds, o.steps_per_second
        );
        if let (Some(l), Some(s)) = (o.launches_per_step, o.syncs_per_step) {
            println!(
                "per training step: {l:.1} kernel launches, {s:.2} host syncs \
                 (measurements and checkpoints included)"
            );
        }
        Ok(())
    })
}
