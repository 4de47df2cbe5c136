//! The runs under a runs folder, one [`RunEntry`] each, and the index table over them.

use dynlab_harness::parquet::{from_parquet, to_parquet};
use dynlab_harness::{History, Value as Cell};
use dynlab_runtime::{write_atomic, Error, Result};
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// One run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEntry {
    /// `<group>/<name>`, or `<name>` outside a sweep: unique in the store.
    pub id: String,
    /// The run's folder name.
    pub name: String,
    /// The sweep it belongs to (its parent folder), or empty.
    pub group: String,
    /// The folder.
    pub dir: PathBuf,
    /// The resolved config, flattened to dotted keys, in file order.
    pub config: Vec<(String, Value)>,
    /// `summary.toml` flattened the same way (empty while the run is unfinished).
    pub summary: Vec<(String, Value)>,
}

impl RunEntry {
    /// The value of `key`: a config key (`optim.lr`), else a summary field (`grokked_epoch`).
    pub fn value(&self, key: &str) -> Option<&Value> {
        (self.config.iter())
            .chain(&self.summary)
            .find(|(k, _)| k == key)
            .map(|e| &e.1)
    }

    /// [`RunEntry::value`] as a number (`None` for text such as `not reached`).
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.value(key)? {
            Value::Integer(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            _ => None,
        }
    }

    /// Whether the run has run to its end: a summary that does not say `finished = false` (what
    /// a run stopped early with `--stop-at` writes).
    pub fn finished(&self) -> bool {
        let stopped = self
            .summary
            .iter()
            .any(|(k, v)| k == "finished" && v.as_bool() == Some(false));
        !self.summary.is_empty() && !stopped
    }

    /// Its history: `history.parquet` (exact types), or `history.csv` (types inferred) where a
    /// run has no Parquet file.
    pub fn history(&self) -> Result<History> {
        let parquet = self.dir.join("history.parquet");
        if parquet.is_file() {
            let bytes =
                std::fs::read(&parquet).map_err(|e| Error::io("RunEntry::history", &parquet, e))?;
            return from_parquet(&bytes, &parquet.display().to_string());
        }
        let path = self.dir.join("history.csv");
        let text =
            std::fs::read_to_string(&path).map_err(|e| Error::io("RunEntry::history", &path, e))?;
        History::from_csv_inferring_types(&text).map_err(|e| e.in_module(self.id.clone()))
    }

    /// Whether it has a history file.
    pub fn has_history(&self) -> bool {
        self.dir.join("history.parquet").is_file() || self.dir.join("history.csv").is_file()
    }
}

/// The runs of a runs folder.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    runs: Vec<RunEntry>,
    warnings: Vec<String>,
}

impl Store {
    /// Finds every run folder (one holding `config.toml`) in `root` and in its sub-folders (sweeps),
    /// sorted by id. A folder that cannot be read (a malformed `summary.toml`, say) is left out
    /// with a line in [`Store::warnings`]; only an unreadable `root` is an error.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        let mut found: Vec<Result<RunEntry>> = Vec::new();
        for dir in sub_dirs(&root)? {
            if dir.join("config.toml").is_file() {
                found.push(read_run(&dir, ""));
                continue;
            }
            let group = file_name(&dir);
            match sub_dirs(&dir) {
                Ok(subs) => found.extend(
                    (subs.iter())
                        .filter(|s| s.join("config.toml").is_file())
                        .map(|s| read_run(s, &group)),
                ),
                Err(e) => found.push(Err(e)),
            }
        }
        let (mut runs, mut warnings) = (Vec::new(), Vec::new());
        for f in found {
            match f {
                Ok(run) => runs.push(run),
                Err(e) => warnings.push(e.to_string()),
            }
        }
        runs.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Store {
            root,
            runs,
            warnings,
        })
    }

    /// The folders [`Store::open`] left out, and why.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The runs folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every run, by id.
    pub fn runs(&self) -> &[RunEntry] {
        &self.runs
    }

    /// The run with id `id`.
    pub fn run(&self, id: &str) -> Result<&RunEntry> {
        self.runs.iter().find(|r| r.id == id).ok_or_else(|| {
            Error::value(
                "Store::run",
                format!("run `{id}`"),
                format!("a run under {}", self.root.display()),
            )
        })
    }

    /// The runs of sweep `group` (`""`: the runs outside sweeps).
    pub fn group(&self, group: &str) -> Vec<&RunEntry> {
        self.runs.iter().filter(|r| r.group == group).collect()
    }

    /// The runs whose every `key=value` filter holds (`optim.lr=1e-3` matches 0.001: numbers
    /// compare as numbers, anything else as text).
    pub fn select(&self, filters: &[String]) -> Result<Vec<&RunEntry>> {
        let parsed: Vec<(&str, Value)> = filters
            .iter()
            .map(|f| {
                let (k, v) = f.split_once('=').ok_or_else(|| {
                    Error::value("Store::select", format!("filter `{f}`"), "key=value")
                })?;
                Ok((k.trim(), dynlab_harness::parse_value(v.trim())))
            })
            .collect::<Result<_>>()?;
        Ok(self
            .runs
            .iter()
            .filter(|r| {
                parsed
                    .iter()
                    .all(|(k, v)| r.value(k).is_some_and(|x| same(x, v)))
            })
            .collect())
    }

    /// The index: one row per run with `id`, `name`, `group`, every config key and every summary
    /// field (a field named like a config key gets the prefix `summary.`). A column is numeric
    /// when all its values are numbers or text such as `not reached` (null there), else text.
    pub fn index(&self) -> Result<History> {
        let mut columns: Vec<String> = Vec::new();
        let mut rows: Vec<Vec<(String, Value)>> = Vec::new();
        for r in &self.runs {
            let mut row = vec![
                ("id".to_string(), Value::String(r.id.clone())),
                ("name".to_string(), Value::String(r.name.clone())),
                ("group".to_string(), Value::String(r.group.clone())),
            ];
            row.extend(r.config.iter().filter(|(k, _)| k != "name").cloned());
            for (k, v) in &r.summary {
                let clash = row.iter().any(|(c, _)| c == k);
                row.push((
                    if clash {
                        format!("summary.{k}")
                    } else {
                        k.clone()
                    },
                    v.clone(),
                ));
            }
            for (k, _) in &row {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
            rows.push(row);
        }
        let numeric: Vec<bool> = columns
            .iter()
            .map(|c| {
                let values = rows.iter().filter_map(|r| r.iter().find(|(k, _)| k == c));
                let mut any_number = false;
                for (_, v) in values {
                    match v {
                        Value::Integer(_) | Value::Float(_) => any_number = true,
                        Value::String(_) => {}
                        _ => return false,
                    }
                }
                any_number
            })
            .collect();
        let mut h = History::default();
        for row in &rows {
            let cells: Vec<(&str, Cell)> = columns
                .iter()
                .zip(&numeric)
                .map(|(c, &num)| {
                    let v = row.iter().find(|(k, _)| k == c).map(|e| &e.1);
                    (c.as_str(), cell(v, num))
                })
                .collect();
            h.push_cells(&cells)?;
        }
        Ok(h)
    }

    /// Writes [`Store::index`] as `<root>/index.parquet` and `<root>/index.csv` (atomically) and
    /// returns the Parquet file's path.
    pub fn write_index(&self) -> Result<PathBuf> {
        let index = self.index()?;
        let parquet = self.root.join("index.parquet");
        write_atomic(&parquet, &to_parquet(&index))?;
        write_atomic(self.root.join("index.csv"), index.to_csv().as_bytes())?;
        Ok(parquet)
    }
}

fn cell(v: Option<&Value>, numeric: bool) -> Cell {
    match (v, numeric) {
        (None, _) => Cell::Null,
        (Some(Value::Integer(i)), true) => Cell::F64(*i as f64),
        (Some(Value::Float(f)), true) => Cell::F64(*f),
        (Some(_), true) => Cell::Null,
        (Some(Value::String(s)), false) => Cell::Text(s.clone()),
        (Some(v), false) => Cell::Text(v.to_string()),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    let num = |v: &Value| match v {
        Value::Integer(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        _ => None,
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
        _ => match (a, b) {
            (Value::String(x), Value::String(y)) => x == y,
            (x, y) => x.to_string() == y.to_string(),
        },
    }
}

fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io("Store::open", dir, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map_or(String::new(), |n| n.to_string_lossy().into_owned())
}

fn read_toml(path: &Path) -> Result<Table> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("Store::open", path, e))?;
    toml::from_str(&text).map_err(|e| Error::config(path.display().to_string(), e.to_string()))
}

fn read_run(dir: &Path, group: &str) -> Result<RunEntry> {
    let name = file_name(dir);
    let summary_path = dir.join("summary.toml");
    let summary = if summary_path.is_file() {
        flatten(&read_toml(&summary_path)?)
    } else {
        Vec::new()
    };
    Ok(RunEntry {
        id: if group.is_empty() {
            name.clone()
        } else {
            format!("{group}/{name}")
        },
        name,
        group: group.to_string(),
        dir: dir.to_path_buf(),
        config: flatten(&read_toml(&dir.join("config.toml"))?),
        summary,
    })
}

/// A table's values under dotted keys, in order.
pub(crate) fn flatten(table: &Table) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    flatten_into(table, "", &mut out);
    out
}

fn flatten_into(table: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        match v {
            Value::Table(t) => flatten_into(t, &format!("{prefix}{k}."), out),
            v => out.push((format!("{prefix}{k}"), v.clone())),
        }
    }
}
