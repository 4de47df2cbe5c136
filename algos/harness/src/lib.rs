//! The run harness of dynlab: what every experiment needs around its training loop, so that a study
//! is a short file. A run folder ([`RunDir`]: new, resume or overwrite) with the resolved TOML config
//! (`--set key=value` overrides, [`load_config`]), an atomic checkpoint of every stateful part, a
//! [`History`] whose schema is declared once ([`history_row!`]) and that is written as CSV and
//! Parquet (DuckDB and pandas read it), plots of any history ([`plot_history`]), progress, and a
//! [`Summary`] with the git revision, the device, the tuners' kernel choices and the seeds. The
//! generic driver is [`run_experiment`].
//!
//! The plotting, progress-bar and config crates are dependencies of this crate only: nothing below
//! the harness (optimizers, the training step, models) pulls them in.

#![warn(missing_docs)]

mod cli;
mod config;
mod experiment;
pub mod explore;
mod heatmap;
mod history;
mod interrupt;
pub mod parquet;
mod plot;
mod progress;
mod run;
mod scatter;
mod summary;
mod surface;

pub use cli::{parse_run_args, RunArgs};
pub use config::{load_config, parse_config, parse_value};
pub use experiment::{run_experiment, Experiment, Outcome, RunOptions};
pub use heatmap::{plot_heatmaps, Heatmap};
pub use history::{Column, ColumnType, ColumnValue, History, Row, Value};
pub use plot::{plot_history, Figure, Panel};
pub use progress::Progress;
pub use run::{RunDir, RunMode, REPLICA};
pub use scatter::{plot_scatter, Scatter};
pub use summary::{git_revision, Summary};
pub use surface::{plot_contour, plot_surface, Grid2d};
