//! Sweeps: one TOML file names a base config, the program that runs it and grids over dotted config
//! keys; [`Sweep::load`] expands it into runs (each a `--set key=value` list and a name built from
//! the swept values, `p17_lr1e-3_wd1.0`), [`run_local`] runs them as worker processes on this
//! machine and [`slurm`] as a SLURM job array. Every run is a normal run folder
//! `<runs_dir>/<sweep>/<run>/`; a run whose `summary.toml` exists is done and skipped, one with a
//! checkpoint is resumed, so running a sweep again continues it.
//!
//! The file (`examples/sweeps/*.toml`):
//!
//! ```toml
//! name = "transformer_sweep"            # the sweep's folder: <runs_dir>/<name>/ (default: file stem)
//! program = "grokking"                  # `dynlab run <program>`
//! config = "../configs/transformer.toml"  # base config, relative to this file
//! runs_dir = "runs"                     # relative to the working directory (default "runs")
//!
//! [names]                               # short names of keys in run names (default: the last
//! "optim.weight_decay" = "wd"           # segment; weight_decay → wd, train_frac → frac built in)
//!
//! [global]                              # every experiment: a value sets, a list sweeps
//! data.train_frac = 0.5
//! seed = [0, 1, 2]                      # seeds are a dimension like any other key
//!
//! [experiments.small]                   # overrides [global]; may set program and config
//! data.p = [17, 31]
//! optim.lr = [3e-4, 1e-3]
//! ```
//!
//! A list is a dimension (the runs are the product of every dimension, the first key outermost);
//! to set a key to a fixed list write a one-element grid of it (`model.hidden = [[256, 256]]`).
//! Run names join `<short name><value>` of each dimension of more than one value, prefixed with
//! the experiment's name when the file has more than one experiment.

#![warn(missing_docs)]

mod local;
pub mod slurm;
mod spec;

pub use local::{run_local, LocalOptions, LocalReport};
pub use spec::{run_state, PlannedRun, Resolver, RunState, Sweep};
