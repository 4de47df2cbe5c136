//! `summary.toml`: what a run found (the experiment's entries) and where its numbers come from —
//! the git revision of the library, the device, the kernels the tuners chose, the seeds, the wall
//! time and the rate.

use crate::history::Value as HistoryValue;
use crate::run::RunDir;
use dynlab_runtime::{tuned_choices, Device, Error, Result};
use std::process::Command;
use toml::{Table, Value};

/// The entries of `summary.toml`, in insertion order of sections.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    table: Table,
}

impl Summary {
    /// Sets `key` to `value` (a number, string, bool or array of them).
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.table.insert(key.to_string(), value.into());
    }

    /// Sets `key` to a history cell: single-precision floats are written in their shortest decimal
    /// form (`0.9874213`, not the f64 expansion of the f32); null is left out.
    pub fn set_cell(&mut self, key: &str, cell: &HistoryValue) {
        let value = match cell {
            HistoryValue::U64(v) => Value::Integer(*v as i64),
            HistoryValue::F32(v) => Value::Float(v.to_string().parse().unwrap_or(f64::NAN)),
            HistoryValue::F64(v) => Value::Float(*v),
            HistoryValue::Text(t) => Value::String(t.clone()),
            HistoryValue::Null => return,
        };
        self.set(key, value);
    }

    /// Sets `key` to `value`, or to the string `not reached` when there is none.
    pub fn set_or_not_reached(&mut self, key: &str, value: Option<impl Into<Value>>) {
        match value {
            Some(v) => self.set(key, v),
            None => self.set(key, "not reached"),
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.table.get(key)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.table.iter()
    }

    /// Adds the provenance section `[run]`: library revision, device, tuned kernels, seeds.
    pub fn set_provenance(&mut self, device: Option<&Device>, seeds: &[(&str, u64)]) {
        let mut run = Table::new();
        run.insert("git_revision".into(), git_revision().into());
        run.insert("device".into(), device.map_or("none", Device::name).into());
        let kernels: Vec<Value> = tuned_choices().into_iter().map(Value::from).collect();
        run.insert("tuned_kernels".into(), Value::Array(kernels));
        let seeds: Table = seeds
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Integer(*v as i64)))
            .collect();
        run.insert("seeds".into(), Value::Table(seeds));
        self.table.insert("run".into(), Value::Table(run));
    }

    /// The summary as TOML text.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(&self.table)
            .map_err(|e| Error::config("summary.toml", e.to_string()))
    }

    /// Writes `summary.toml` into the run folder.
    pub fn write(&self, run: &RunDir) -> Result<()> {
        run.write("summary.toml", self.to_toml()?.as_bytes())
    }
}

/// The revision of the library's source tree (`<hash>`, `<hash>-dirty` with uncommitted changes),
/// or `unknown` outside a git checkout.
pub fn git_revision() -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match (git(&["rev-parse", "HEAD"]), git(&["status", "--porcelain"])) {
        (Some(rev), Some(status)) if !status.is_empty() => format!("{rev}-dirty"),
        (Some(rev), _) => rev,
        _ => "unknown".into(),
    }
}
