//! The experiment store: every run folder under a runs folder (`<runs>/<run>/` and, for sweeps,
//! `<runs>/<sweep>/<run>/`) as one row — its name, its sweep group, every config value flattened
//! to a dotted column (`optim.lr`), the summary's fields — with [`Store::write_index`] writing that
//! table as `index.parquet` (and `index.csv`) beside the runs; each run's `history.parquet` loads
//! as a [`History`](dynlab_harness::History). [`analysis`] has what the grokking study computes over
//! histories (phases, generalisation gap, loss ratio, statistics after grokking, alignment by
//! epoch, grouping, the sweep table). [`web`] serves a browser to compare runs' curves and writes
//! the same page as one self-contained HTML report.
//!
//! SQL over the same files is DuckDB's job:
//!
//! ```text
//! duckdb -c "SELECT name, \"optim.lr\", grokked_epoch FROM 'runs/index.parquet' ORDER BY grokked_epoch"
//! duckdb -c "SELECT filename, max(test_acc) FROM read_parquet('runs/my_sweep/*/history.parquet',
//!            union_by_name = true, filename = true) GROUP BY filename"
//! ```

#![warn(missing_docs)]

pub mod analysis;
mod index;
pub mod web;

pub use index::{RunEntry, Store};
