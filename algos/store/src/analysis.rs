//! What the grokking study computes over runs (the analysis layer of its store):
//!
//! - phases: the first epoch with train accuracy ≥ `memorised_at` (memorisation) and with test
//!   accuracy ≥ `grokked_at` (grokking), as the runs' summaries report them;
//! - the generalisation gap `train_acc − test_acc` and the loss ratio `test_loss / train_loss` per
//!   row;
//! - mean and sample standard deviation (n − 1, pandas' default) of a column from an epoch on (after
//!   grokking);
//! - histories aligned on their epochs, runs grouped by a hyperparameter, and the sweep table.

use crate::index::RunEntry;
use dynlab_harness::History;
use std::fmt::Write as _;

/// Memorisation and grokking epochs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Phases {
    /// First epoch with `train_acc ≥ memorised_at`.
    pub memorised: Option<u64>,
    /// First epoch with `test_acc ≥ grokked_at`.
    pub grokked: Option<u64>,
}

impl Phases {
    /// Epochs from memorisation to grokking.
    pub fn delay(&self) -> Option<u64> {
        Some(self.grokked?.saturating_sub(self.memorised?))
    }
}

/// The phases of a history (all its rows: take one replica first with
/// `History::rows_where("replica", r)`).
pub fn phases(h: &History, memorised_at: f64, grokked_at: f64) -> Phases {
    let epoch = |row: Option<usize>| h.cell("epoch", row?)?.as_f64().map(|e| e as u64);
    Phases {
        memorised: epoch(h.first_row_reaching("train_acc", memorised_at)),
        grokked: epoch(h.first_row_reaching("test_acc", grokked_at)),
    }
}

fn per_row(h: &History, a: &str, b: &str, f: impl Fn(f64, f64) -> f64) -> Vec<Option<f64>> {
    let (Some(x), Some(y)) = (h.numbers(a), h.numbers(b)) else {
        return vec![None; h.rows()];
    };
    x.into_iter()
        .zip(y)
        .map(|(x, y)| Some(f(x?, y?)).filter(|v| v.is_finite()))
        .collect()
}

/// `train_acc − test_acc` per row (null where either is).
pub fn generalisation_gap(h: &History) -> Vec<Option<f64>> {
    per_row(h, "train_acc", "test_acc", |a, b| a - b)
}

/// `test_loss / train_loss` per row (null where either is, or the ratio is not finite).
pub fn loss_ratio(h: &History) -> Vec<Option<f64>> {
    per_row(h, "test_loss", "train_loss", |a, b| a / b)
}

/// Mean and spread of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// The mean.
    pub mean: f64,
    /// The sample standard deviation (n − 1; 0 for one value).
    pub std: f64,
    /// How many values.
    pub n: usize,
}

/// [`Stats`] of finite values (`None` for none).
pub fn stats(values: impl IntoIterator<Item = f64>) -> Option<Stats> {
    let v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
    let std = if n > 1 {
        (ss / (n - 1) as f64).sqrt()
    } else {
        0.0
    };
    Some(Stats { mean, std, n })
}

/// [`Stats`] of `column` over the rows whose epoch is at least `from` (e.g. the grokking epoch).
pub fn stats_from_epoch(h: &History, column: &str, from: u64) -> Option<Stats> {
    let epochs = h.numbers("epoch")?;
    let values = h.numbers(column)?;
    stats(
        epochs
            .into_iter()
            .zip(values)
            .filter_map(|(e, v)| (e? >= from as f64).then_some(v?)),
    )
}

/// Histories on a common epoch axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Aligned {
    /// Every epoch any history has, ascending.
    pub epochs: Vec<u64>,
    /// Per history, its value of the column at each epoch (null where it has none).
    pub values: Vec<Vec<Option<f64>>>,
}

/// `column` of each history aligned on epochs (a history with several rows per epoch, e.g.
/// replicas, contributes its first).
pub fn align(histories: &[&History], column: &str) -> Aligned {
    let pairs: Vec<Vec<(u64, Option<f64>)>> = histories
        .iter()
        .map(|h| {
            let epochs = h.numbers("epoch").unwrap_or_default();
            let values = h
                .numbers(column)
                .unwrap_or_else(|| vec![None; epochs.len()]);
            epochs
                .into_iter()
                .zip(values)
                .filter_map(|(e, v)| Some((e? as u64, v)))
                .collect()
        })
        .collect();
    let mut epochs: Vec<u64> = pairs.iter().flatten().map(|p| p.0).collect();
    epochs.sort_unstable();
    epochs.dedup();
    let values = pairs
        .iter()
        .map(|p| {
            let mut at = std::collections::HashMap::new();
            for (e, v) in p {
                at.entry(*e).or_insert(*v);
            }
            epochs
                .iter()
                .map(|e| at.get(e).copied().flatten())
                .collect()
        })
        .collect();
    Aligned { epochs, values }
}

/// The runs grouped by their value of `key` (as text; runs without it under `-`): numeric values
/// first in ascending order, then the others in text order.
pub fn group_by<'a>(runs: &[&'a RunEntry], key: &str) -> Vec<(String, Vec<&'a RunEntry>)> {
    let mut groups: Vec<(String, Option<f64>, Vec<&'a RunEntry>)> = Vec::new();
    for r in runs {
        let label = r.value(key).map_or("-".to_string(), display);
        match groups.iter_mut().find(|g| g.0 == label) {
            Some(g) => g.2.push(r),
            None => groups.push((label, r.number(key), vec![r])),
        }
    }
    groups.sort_by(|a, b| match (a.1, b.1) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => a.0.cmp(&b.0),
    });
    groups.into_iter().map(|(l, _, r)| (l, r)).collect()
}

fn display(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A table of runs: the run, the config keys that differ between them, and result fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SweepTable {
    /// Column names.
    pub columns: Vec<String>,
    /// One row of cells per run.
    pub rows: Vec<Vec<String>>,
}

/// The summary fields the sweep table shows when the runs have them.
pub const RESULT_FIELDS: [&str; 5] = [
    "memorised_epoch",
    "grokked_epoch",
    "final_train_acc",
    "final_test_acc",
    "final_test_loss",
];

/// The table of `runs`: the run (its name, or its id when the runs come from several sweeps),
/// every config key whose value differs between them (except `runs_dir`), then `results` (e.g.
/// [`RESULT_FIELDS`]) that any run has.
pub fn sweep_table(runs: &[&RunEntry], results: &[&str]) -> SweepTable {
    let mut keys: Vec<String> = Vec::new();
    for r in runs {
        for (k, v) in &r.config {
            let varies = runs.iter().any(|o| o.value(k) != Some(v));
            if varies && k != "runs_dir" && k != "name" && !keys.contains(k) {
                keys.push(k.clone());
            }
        }
    }
    let results: Vec<&str> = results
        .iter()
        .copied()
        .filter(|f| runs.iter().any(|r| r.summary.iter().any(|(k, _)| k == f)))
        .collect();
    let one_group = runs.iter().all(|r| r.group == runs[0].group);
    let mut columns = vec!["run".to_string()];
    columns.extend(keys.iter().cloned());
    columns.extend(results.iter().map(|s| s.to_string()));
    let rows = runs
        .iter()
        .map(|r| {
            let mut row = vec![if one_group {
                r.name.clone()
            } else {
                r.id.clone()
            }];
            row.extend(
                keys.iter()
                    .map(|k| r.value(k).map_or(String::new(), display)),
            );
            row.extend(
                results
                    .iter()
                    .map(|k| r.value(k).map_or(String::new(), display)),
            );
            row
        })
        .collect();
    SweepTable { columns, rows }
}

impl SweepTable {
    /// As a Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.columns.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        s
    }

    /// As CSV (fields with commas or quotes quoted).
    pub fn csv(&self) -> String {
        let line = |cells: &[String]| -> String {
            let quoted: Vec<String> = cells
                .iter()
                .map(|c| {
                    if c.contains([',', '"', '\n']) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.clone()
                    }
                })
                .collect();
            quoted.join(",") + "\n"
        };
        let mut s = line(&self.columns);
        for row in &self.rows {
            s.push_str(&line(row));
        }
        s
    }
}
