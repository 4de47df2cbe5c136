//! The sweep file and its expansion into runs (format in the crate docs).

use dynlab_runtime::{Error, Result};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Reads a program's config file, applies `key=value` overrides and returns the resolved TOML:
/// how a sweep checks its keys and values before anything runs.
pub type Resolver<'a> = &'a dyn Fn(&str, &Path, &[String]) -> Result<String>;

/// An expanded sweep.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// The sweep's name (its folder under the runs folder).
    pub name: String,
    /// The sweep file, absolute.
    pub file: PathBuf,
    /// `<runs_dir>/<name>`: the run folders, `logs/`, `slurm/` and `slurm_logs/`.
    pub dir: PathBuf,
    /// The runs, in order.
    pub runs: Vec<PlannedRun>,
    /// The experiment the runs were narrowed to (`--experiment`), if any.
    pub experiment: Option<String>,
}

/// One run of a sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// Its position in the sweep (0-based; SLURM array task ids are these).
    pub index: usize,
    /// The experiment table it comes from (`global` when the file has none).
    pub experiment: String,
    /// The program that runs it.
    pub program: String,
    /// The base config file, absolute.
    pub config: PathBuf,
    /// The run's name and folder name.
    pub name: String,
    /// The overrides, dotted key and value, in order (fixed values, then the swept ones).
    pub overrides: Vec<(String, Value)>,
    /// The run's resolved config (every default filled in), as the program will write it.
    pub resolved: String,
}

/// How far a run has got, from its folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// No folder.
    NotStarted,
    /// A folder without a checkpoint (stopped before its first one): started again from scratch.
    Empty,
    /// A checkpoint and no summary: resumed.
    Partial,
    /// `summary.toml` exists: skipped.
    Done,
}

/// The state of the run folder `dir`: done when its summary says `finished = true` (or, written
/// before that field existed, has none), partial with a checkpoint (a run stopped early with
/// `--stop-at` has a summary with `finished = false`).
pub fn run_state(dir: &Path) -> RunState {
    let summary = std::fs::read_to_string(dir.join("summary.toml")).ok();
    let finished = summary.as_deref().and_then(|s| {
        let table: Table = toml::from_str(s).ok()?;
        Some(
            table
                .get("finished")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        )
    });
    if finished == Some(true) {
        RunState::Done
    } else if dir.join("checkpoint.safetensors").is_file() {
        RunState::Partial
    } else if dir.exists() {
        RunState::Empty
    } else {
        RunState::NotStarted
    }
}

impl PlannedRun {
    /// When its folder holds a config that differs from this run's (a sweep file or base config
    /// edited after the run started, or two sweeps of one name): the first key that differs.
    /// `runs_dir` and `name` are not compared.
    pub fn stale(&self, sweep: &Sweep) -> Option<String> {
        let text = std::fs::read_to_string(self.folder(sweep).join("config.toml")).ok()?;
        let parse = |t: &str| -> Vec<(String, Value)> {
            let table: Table = toml::from_str(t).unwrap_or_default();
            let mut out = Vec::new();
            flatten_into(&table, "", &mut out);
            out.retain(|(k, _)| k != "runs_dir" && k != "name");
            out
        };
        let (had, wants) = (parse(&text), parse(&self.resolved));
        let value = |entries: &[(String, Value)], k: &str| {
            entries
                .iter()
                .find(|(e, _)| e == k)
                .map_or("nothing".to_string(), |(_, v)| v.to_string())
        };
        let keys = had.iter().chain(&wants).map(|(k, _)| k);
        keys.into_iter()
            .find(|k| value(&had, k) != value(&wants, k))
            .map(|k| {
                format!(
                    "`{k}` is {} in the folder, {} in the sweep",
                    value(&had, k),
                    value(&wants, k)
                )
            })
    }

    /// Its folder.
    pub fn folder(&self, sweep: &Sweep) -> PathBuf {
        sweep.dir.join(&self.name)
    }

    /// The `--set` arguments: the overrides, then the run's folder (`runs_dir`, `name`).
    pub fn set_args(&self, sweep: &Sweep) -> Vec<String> {
        let mut sets: Vec<String> = self
            .overrides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        sets.push(format!(
            "runs_dir={}",
            quote(&sweep.dir.display().to_string())
        ));
        sets.push(format!("name={}", quote(&self.name)));
        sets
    }

    /// The arguments of `dynlab` that run it from its current state (`run <program> --config …
    /// --set … [--resume | --overwrite] --quiet`).
    pub fn command(&self, sweep: &Sweep) -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            self.program.clone(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        for set in self.set_args(sweep) {
            args.extend(["--set".to_string(), set]);
        }
        match run_state(&self.folder(sweep)) {
            RunState::Partial => args.push("--resume".into()),
            RunState::Empty => args.push("--overwrite".into()),
            RunState::NotStarted | RunState::Done => {}
        }
        args.push("--quiet".into());
        args
    }
}

fn quote(s: &str) -> String {
    Value::String(s.to_string()).to_string()
}

const TOP_KEYS: [&str; 7] = [
    "name",
    "program",
    "config",
    "runs_dir",
    "names",
    "global",
    "experiments",
];

/// One `[experiments.<name>]` table (or the implicit one of a file without any).
struct ExperimentTable {
    name: String,
    program: Option<String>,
    config: Option<String>,
    entries: Vec<(String, Value)>,
}

/// The parts of a sweep file before expansion.
struct SweepFile {
    name: String,
    runs_dir: PathBuf,
    names: Table,
    global: Vec<(String, Value)>,
    experiments: Vec<ExperimentTable>,
    program: Option<String>,
    config: Option<String>,
}

impl Sweep {
    /// Reads and expands the sweep file `file`, keeping only experiment `only` when given, and
    /// checks every run's config with `resolve` (unknown keys, values of the wrong type).
    pub fn load(file: &Path, only: Option<&str>, resolve: Resolver) -> Result<Sweep> {
        let text = std::fs::read_to_string(file).map_err(|e| Error::io("Sweep::load", file, e))?;
        let file = std::path::absolute(file).map_err(|e| Error::io("Sweep::load", file, e))?;
        Sweep::parse(&text, &file, only, resolve)
    }

    /// [`Sweep::load`] of sweep text; `file` names it in errors and anchors relative config paths.
    pub fn parse(text: &str, file: &Path, only: Option<&str>, resolve: Resolver) -> Result<Sweep> {
        let source = file.display().to_string();
        let sweep = parse_file(text, &source, file)?;
        let base = file.parent().unwrap_or(Path::new("."));
        let dir = sweep.runs_dir.join(&sweep.name);
        let mut runs = Vec::new();
        let many = sweep.experiments.len() > 1;
        for table in &sweep.experiments {
            let experiment = &table.name;
            if only.is_some_and(|o| o != experiment) {
                continue;
            }
            let err =
                |m: String| Error::config(&source, format!("[experiments.{experiment}]: {m}"));
            let program = (table.program.clone())
                .or_else(|| sweep.program.clone())
                .ok_or_else(|| err("no `program` (set it at the top or in the table)".into()))?;
            let config = (table.config.clone())
                .or_else(|| sweep.config.clone())
                .ok_or_else(|| err("no `config` (set it at the top or in the table)".into()))?;
            let config = normalise(&base.join(config));
            let merged = merge(&sweep.global, &table.entries);
            let prefix = many.then_some(experiment.as_str());
            for (overrides, name) in expand(&merged, &sweep.names, prefix) {
                runs.push(PlannedRun {
                    index: runs.len(),
                    experiment: experiment.clone(),
                    program: program.clone(),
                    config: config.clone(),
                    name,
                    overrides,
                    resolved: String::new(),
                });
            }
        }
        if let Some(o) = only {
            if runs.is_empty() {
                let names: Vec<&str> = sweep.experiments.iter().map(|e| e.name.as_str()).collect();
                return Err(Error::config(
                    &source,
                    format!("no experiment `{o}`; the file has {}", names.join(", ")),
                ));
            }
        }
        check_names_unique(&runs, &source)?;
        let mut sweep = Sweep {
            name: sweep.name,
            file: file.to_path_buf(),
            dir,
            runs,
            experiment: only.map(str::to_string),
        };
        sweep.check(resolve, &source)?;
        Ok(sweep)
    }

    /// Resolves every run's config (kept in [`PlannedRun::resolved`]); on failure names the run
    /// and the key whose value fails.
    fn check(&mut self, resolve: Resolver, source: &str) -> Result<()> {
        let mut bases: HashMap<(String, PathBuf), Table> = HashMap::new();
        let sets: Vec<Vec<String>> = self.runs.iter().map(|r| r.set_args(self)).collect();
        for (run, sets) in self.runs.iter_mut().zip(sets) {
            let base_key = (run.program.clone(), run.config.clone());
            if let std::collections::hash_map::Entry::Vacant(slot) = bases.entry(base_key.clone()) {
                let base = (resolve)(&run.program, &run.config, &[]).map_err(|e| {
                    Error::config(source, format!("run `{}`: base config: {e}", run.name))
                })?;
                let table =
                    toml::from_str(&base).map_err(|e| Error::config(source, e.to_string()))?;
                slot.insert(table);
            }
            for (key, value) in &run.overrides {
                check_type(&bases[&base_key], key, value).map_err(|m| Error::config(source, m))?;
            }
            run.resolved = (resolve)(&run.program, &run.config, &sets)
                .map_err(|e| blame(run, resolve, source, &e))?;
        }
        Ok(())
    }
}

/// The error of a run whose overrides do not resolve, naming the first key that fails alone.
fn blame(run: &PlannedRun, resolve: Resolver, source: &str, error: &Error) -> Error {
    for (key, value) in &run.overrides {
        let set = [format!("{key}={value}")];
        if let Err(e) = (resolve)(&run.program, &run.config, &set) {
            return Error::config(source, format!("key `{key}` = {value}: {}", e.root_cause()));
        }
    }
    Error::config(
        source,
        format!("run `{}`: {}", run.name, error.root_cause()),
    )
}

/// The sweep file `text` (at `file`) rewritten to expand to the same runs from anywhere: `name` and
/// `runs_dir` spelled out, each `config` replaced by `copy(its absolute path)`, and every key
/// flattened to one quoted dotted key (`"data.p" = [17, 113]`), so the dimensions keep the order
/// they had (TOML writers put a table's plain values before its sub-tables).
pub(crate) fn frozen(
    text: &str,
    file: &Path,
    runs_dir: &Path,
    mut copy: impl FnMut(&Path) -> Result<PathBuf>,
) -> Result<String> {
    let source = file.display().to_string();
    let f = parse_file(text, &source, file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let mut config = |c: &str| -> Result<Value> {
        let path = copy(&normalise(&base.join(c)))?;
        Ok(Value::String(path.display().to_string()))
    };
    let mut out = Table::new();
    out.insert("name".into(), Value::String(f.name.clone()));
    if let Some(p) = &f.program {
        out.insert("program".into(), Value::String(p.clone()));
    }
    if let Some(c) = &f.config {
        out.insert("config".into(), config(c)?);
    }
    out.insert(
        "runs_dir".into(),
        Value::String(runs_dir.display().to_string()),
    );
    if !f.names.is_empty() {
        out.insert("names".into(), Value::Table(f.names.clone()));
    }
    out.insert(
        "global".into(),
        Value::Table(f.global.iter().cloned().collect()),
    );
    let implicit = matches!(f.experiments.as_slice(), [e] if e.name == "global" && e.entries.is_empty()
        && e.program.is_none() && e.config.is_none());
    if !implicit {
        let mut experiments = Table::new();
        for e in &f.experiments {
            let mut t = Table::new();
            if let Some(p) = &e.program {
                t.insert("program".into(), Value::String(p.clone()));
            }
            if let Some(c) = &e.config {
                t.insert("config".into(), config(c)?);
            }
            t.extend(e.entries.iter().cloned());
            experiments.insert(e.name.clone(), Value::Table(t));
        }
        out.insert("experiments".into(), Value::Table(experiments));
    }
    toml::to_string_pretty(&out).map_err(|e| Error::config(&source, e.to_string()))
}

fn parse_file(text: &str, source: &str, file: &Path) -> Result<SweepFile> {
    let err = |m: String| Error::config(source, m);
    let mut table: Table = toml::from_str(text).map_err(|e| err(e.to_string()))?;
    if let Some(key) = table.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        return Err(err(format!(
            "unknown key `{key}` at the top (expected {}; grids go in [global] or [experiments.<name>])",
            TOP_KEYS.join(", ")
        )));
    }
    let string = |t: &mut Table, key: &str, at: &str| -> Result<Option<String>> {
        match t.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(err(format!("{at}`{key}` = {v}: expected a string"))),
        }
    };
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned());
    let name = string(&mut table, "name", "")?
        .or(stem)
        .unwrap_or_else(|| "sweep".into());
    let runs_dir =
        PathBuf::from(string(&mut table, "runs_dir", "")?.unwrap_or_else(|| "runs".into()));
    let program = string(&mut table, "program", "")?;
    let config = string(&mut table, "config", "")?;
    let mut sub = |key: &str| -> Result<Table> {
        match table.remove(key) {
            None => Ok(Table::new()),
            Some(Value::Table(t)) => Ok(t),
            Some(v) => Err(err(format!("`{key}` = {v}: expected a table [{key}]"))),
        }
    };
    let names = sub("names")?;
    if let Some((k, v)) = names.iter().find(|(_, v)| !v.is_str()) {
        return Err(err(format!("[names] `{k}` = {v}: expected a string")));
    }
    let global = flatten(&sub("global")?, "[global] ", source)?;
    let mut experiments = Vec::new();
    for (exp, value) in sub("experiments")? {
        let at = format!("[experiments.{exp}] ");
        let Value::Table(mut t) = value else {
            return Err(err(format!("{at}expected a table")));
        };
        let program = string(&mut t, "program", &at)?;
        let config = string(&mut t, "config", &at)?;
        let entries = flatten(&t, &at, source)?;
        experiments.push(ExperimentTable {
            name: exp,
            program,
            config,
            entries,
        });
    }
    if experiments.is_empty() {
        experiments.push(ExperimentTable {
            name: "global".into(),
            program: None,
            config: None,
            entries: Vec::new(),
        });
    }
    Ok(SweepFile {
        name,
        runs_dir,
        names,
        global,
        experiments,
        program,
        config,
    })
}

/// Dotted keys and values of a table of (possibly nested) config keys; lists must not be empty.
fn flatten(table: &Table, at: &str, source: &str) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    flatten_into(table, "", &mut out);
    if let Some((k, _)) = out
        .iter()
        .find(|(_, v)| v.as_array().is_some_and(|a| a.is_empty()))
    {
        return Err(Error::config(
            source,
            format!("{at}`{k}` is an empty list: a swept key needs at least one value"),
        ));
    }
    Ok(out)
}

fn flatten_into(table: &Table, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in table {
        let key = format!("{prefix}{k}");
        match v {
            Value::Table(t) => flatten_into(t, &format!("{key}."), out),
            v => out.push((key, v.clone())),
        }
    }
}

/// `global` with `experiment`'s entries replacing equal keys in place and the rest appended.
fn merge(global: &[(String, Value)], experiment: &[(String, Value)]) -> Vec<(String, Value)> {
    let mut merged = global.to_vec();
    for (k, v) in experiment {
        match merged.iter_mut().find(|(g, _)| g == k) {
            Some(slot) => slot.1 = v.clone(),
            None => merged.push((k.clone(), v.clone())),
        }
    }
    merged
}

/// Every combination of the list-valued entries (the first outermost), each as its overrides
/// (fixed entries first, then the swept ones) and its run name.
fn expand(
    entries: &[(String, Value)],
    names: &Table,
    prefix: Option<&str>,
) -> Vec<(Vec<(String, Value)>, String)> {
    let fixed: Vec<(String, Value)> = entries
        .iter()
        .filter(|(_, v)| !v.is_array())
        .cloned()
        .collect();
    let dims: Vec<(&String, &Vec<Value>)> = entries
        .iter()
        .filter_map(|(k, v)| v.as_array().map(|a| (k, a)))
        .collect();
    let mut combos: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (key, values) in &dims {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push(((*key).clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|swept| {
            let mut parts: Vec<String> = prefix.map(str::to_string).into_iter().collect();
            parts.extend(
                swept
                    .iter()
                    .zip(&dims)
                    .filter(|(_, (_, values))| values.len() > 1)
                    .map(|((k, v), _)| format!("{}{}", short_name(k, names), name_value(v))),
            );
            let name = if parts.is_empty() {
                prefix.unwrap_or("run").to_string()
            } else {
                parts.join("_")
            };
            let mut overrides = fixed.clone();
            overrides.extend(swept);
            (overrides, name)
        })
        .collect()
}

/// The short name of `key` in run names: `[names]`, else a built-in abbreviation, else its last
/// segment.
fn short_name(key: &str, names: &Table) -> String {
    if let Some(Value::String(s)) = names.get(key) {
        return s.clone();
    }
    let last = key.rsplit('.').next().unwrap_or(key);
    match last {
        "weight_decay" => "wd",
        "train_frac" => "frac",
        other => other,
    }
    .to_string()
}

/// A value as it appears in a run name: `17`, `0.5`, `1.0`, `1e-3`, `adamw`, `256x256`.
fn name_value(v: &Value) -> String {
    match v {
        Value::Float(f) if *f != 0.0 && (f.abs() < 1e-2 || f.abs() >= 1e4) => format!("{f:e}"),
        Value::Float(f) => format!("{f:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        Value::String(s) => s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect(),
        Value::Array(a) => a.iter().map(name_value).collect::<Vec<_>>().join("x"),
        other => other.to_string(),
    }
}

/// `path` with `.` and `dir/..` taken out (lexically: no links followed).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn check_names_unique(runs: &[PlannedRun], source: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    match runs.iter().find(|r| !seen.insert(r.name.as_str())) {
        Some(r) => Err(Error::config(
            source,
            format!(
                "two runs are named `{}`: give the swept keys distinct [names]",
                r.name
            ),
        )),
        None => Ok(()),
    }
}

/// Checks that `key` exists in the resolved base config (when the base config has it: keys whose
/// default is "unset" are checked by resolving) and that `value` has the base value's type.
fn check_type(base: &Table, key: &str, value: &Value) -> std::result::Result<(), String> {
    let mut node = base;
    let parts: Vec<&str> = key.split('.').collect();
    let (last, parents) = parts.split_last().expect("split gives one part");
    for p in parents {
        match node.get(*p) {
            Some(Value::Table(t)) => node = t,
            Some(v) => {
                return Err(format!(
                    "key `{key}`: `{p}` is a value ({v}), not a section"
                ))
            }
            None => return Ok(()),
        }
    }
    let Some(existing) = node.get(*last) else {
        return Ok(());
    };
    let compatible = match (existing, value) {
        (Value::Float(_), Value::Integer(_)) => true,
        (Value::Array(_), Value::Array(_)) => true,
        (a, b) => a.type_str() == b.type_str(),
    };
    if compatible {
        Ok(())
    } else {
        Err(format!(
            "key `{key}` = {value}: expected {} like the base config's {existing}",
            article(existing.type_str())
        ))
    }
}

fn article(t: &str) -> String {
    match t {
        "integer" | "array" => format!("an {t}"),
        t => format!("a {t}"),
    }
}
