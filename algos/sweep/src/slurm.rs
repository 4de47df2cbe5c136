//! A sweep as a SLURM job array. [`write_script`] freezes what the tasks read — a copy of the sweep
//! file with absolute paths and of each base config — in `<sweep>/slurm/<k>/` (`k`: 1 for the
//! first submission, then one more each time), so editing the files after submitting changes no
//! pending task, and writes `array.sbatch` there: one array task per run, `--array=0-(N-1)%M`,
//! logs in `<sweep>/slurm_logs/<job>_<task>.out`, each task running `dynlab sweep <frozen file>
//! --index $SLURM_ARRAY_TASK_ID` (so a task skips a done run and resumes a partial one, like the
//! local runner; the run's own output goes to `<sweep>/logs/<run>.log`). [`submit`] hands it to
//! `sbatch` and appends `<job id> <k> <experiment or ->` to `<sweep>/slurm/jobs`; [`status`] reads
//! each run's state from `squeue`, `sacct` (when the cluster keeps accounting) and the run folders.

use crate::spec::{run_state, RunState, Sweep};
use dynlab_runtime::{write_atomic, Error, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The job array's resources.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// `--partition` (absent: the cluster's default).
    pub partition: Option<String>,
    /// `--gpus-per-task` (`None`: a CPU job, whose runs use the default device, e.g. lavapipe).
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task`.
    pub cpus_per_task: u32,
    /// At most this many tasks at once (`%M`; absent: no limit).
    pub max_parallel: Option<usize>,
    /// `--time` (absent: the partition's limit).
    pub time: Option<String>,
}

impl Default for SlurmOptions {
    /// One GPU and one CPU per task, no limits.
    fn default() -> Self {
        SlurmOptions {
            partition: None,
            gpus_per_task: Some(1),
            cpus_per_task: 1,
            max_parallel: None,
            time: None,
        }
    }
}

fn op_err(what: impl std::fmt::Display, path: &Path) -> Error {
    Error::io("dynlab sweep --slurm", path, what)
}

/// A submission's folder, `<sweep>/slurm/<k>`.
fn submission_dir(sweep: &Sweep) -> PathBuf {
    sweep
        .dir
        .join("slurm")
        .join((jobs(sweep).len() + 1).to_string())
}

/// Writes the frozen sweep and the sbatch script for every run of `sweep` (tasks run the `dynlab`
/// executable `exe`) into the next submission folder and returns the script's path.
pub fn write_script(sweep: &Sweep, exe: &Path, options: &SlurmOptions) -> Result<PathBuf> {
    let n = sweep.runs.len();
    if n == 0 {
        return Err(op_err("the sweep has no runs", &sweep.file));
    }
    if options.max_parallel == Some(0)
        || options.gpus_per_task == Some(0)
        || options.cpus_per_task == 0
    {
        return Err(op_err(
            "--max-parallel, --gpus-per-task and --cpus-per-task must be at least 1",
            &sweep.file,
        ));
    }
    let dir = std::path::absolute(submission_dir(sweep)).map_err(|e| op_err(e, &sweep.dir))?;
    let logs =
        std::path::absolute(sweep.dir.join("slurm_logs")).map_err(|e| op_err(e, &sweep.dir))?;
    for d in [&dir, &logs] {
        std::fs::create_dir_all(d).map_err(|e| op_err(e, d))?;
    }
    let frozen = freeze(sweep, &dir)?;
    let mut s = String::from("#!/bin/bash\n");
    let mut sb = |line: String| writeln!(s, "#SBATCH {line}").expect("String write");
    sb(format!("--job-name=dynlab-{}", sweep.name));
    let limit = options
        .max_parallel
        .map_or(String::new(), |m| format!("%{m}"));
    sb(format!("--array=0-{}{limit}", n - 1));
    sb(format!("--output={}/%A_%a.out", logs.display()));
    sb("--ntasks=1".into());
    sb(format!("--cpus-per-task={}", options.cpus_per_task));
    if let Some(p) = &options.partition {
        sb(format!("--partition={p}"));
    }
    if let Some(g) = options.gpus_per_task {
        sb(format!("--gpus-per-task={g}"));
    }
    if let Some(t) = &options.time {
        sb(format!("--time={t}"));
    }
    let mut task = vec![
        sh_quote(&exe.display().to_string()),
        "sweep".into(),
        sh_quote(&frozen.display().to_string()),
        "--index".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
    ];
    if let Some(e) = &sweep.experiment {
        task.extend(["--experiment".into(), sh_quote(e)]);
    }
    let cwd = std::env::current_dir().map_err(|e| op_err(e, Path::new(".")))?;
    writeln!(s, "set -euo pipefail").expect("String write");
    writeln!(s, "cd {}", sh_quote(&cwd.display().to_string())).expect("String write");
    writeln!(s, "exec {}", task.join(" ")).expect("String write");
    let path = dir.join("array.sbatch");
    write_atomic(&path, s.as_bytes())?;
    Ok(path)
}

/// Writes the sweep file, frozen ([`crate::spec::frozen`]: absolute paths, its configs copied to
/// `dir/configs/`), as `dir/sweep.toml` and returns that path.
fn freeze(sweep: &Sweep, dir: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string(&sweep.file).map_err(|e| op_err(e, &sweep.file))?;
    let runs_dir = sweep.dir.parent().unwrap_or(Path::new("."));
    let runs_dir = std::path::absolute(runs_dir).map_err(|e| op_err(e, runs_dir))?;
    let mut copied = 0;
    let copy = |from: &Path| -> Result<PathBuf> {
        copied += 1;
        let name = from
            .file_name()
            .map_or("config.toml".into(), |n| n.to_string_lossy().into_owned());
        let to = dir.join("configs").join(format!("{copied}-{name}"));
        let bytes = std::fs::read(from).map_err(|e| op_err(e, from))?;
        write_atomic(&to, &bytes)?;
        Ok(to)
    };
    let frozen = crate::spec::frozen(&text, &sweep.file, &runs_dir, copy)?;
    let path = dir.join("sweep.toml");
    write_atomic(&path, frozen.as_bytes())?;
    Ok(path)
}

/// Submits `script` with `sbatch --parsable`, records the job id in `<sweep>/slurm/jobs` and
/// returns it.
pub fn submit(sweep: &Sweep, script: &Path) -> Result<String> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .arg(script)
        .output()
        .map_err(|e| op_err(format!("sbatch: {e}"), script))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        return Err(op_err(format!("sbatch failed: {}", msg.trim()), script));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(op_err(
            format!("sbatch printed `{}`, not a job id", stdout.trim()),
            script,
        ));
    }
    let folder = script
        .parent()
        .and_then(Path::file_name)
        .map_or("?".into(), |k| k.to_string_lossy().into_owned());
    let jobs = sweep.dir.join("slurm").join("jobs");
    let mut text = std::fs::read_to_string(&jobs).unwrap_or_default();
    let experiment = sweep.experiment.as_deref().unwrap_or("-");
    writeln!(text, "{id} {folder} {experiment}").expect("String write");
    write_atomic(&jobs, text.as_bytes())?;
    Ok(id)
}

/// The jobs submitted for `sweep`, oldest first: `(job id, submission folder, experiment or -)`.
pub fn jobs(sweep: &Sweep) -> Vec<(String, String, String)> {
    let jobs = sweep.dir.join("slurm").join("jobs");
    std::fs::read_to_string(jobs)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((
                w.next()?.to_string(),
                w.next()?.to_string(),
                w.next()?.to_string(),
            ))
        })
        .collect()
}

/// One run's state: from its folder, and from SLURM for the newest job's task of its index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunStatus {
    /// The run's index (its array task id).
    pub index: usize,
    /// The run's name.
    pub name: String,
    /// What its folder says.
    pub folder: RunState,
    /// SLURM's state of the task (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …), when known.
    pub slurm: Option<String>,
}

impl RunStatus {
    /// One word: the folder's `completed` wins; else SLURM's state in lower case; else
    /// `partial`/`not started`.
    pub fn state(&self) -> String {
        match (&self.folder, &self.slurm) {
            (RunState::Done, _) => "completed".into(),
            (_, Some(s)) => s.to_lowercase(),
            (RunState::Partial, None) => "partial".into(),
            (RunState::Empty | RunState::NotStarted, None) => "not started".into(),
        }
    }
}

/// Every run's state, using the newest job submitted for the same runs (the same `--experiment`).
pub fn status(sweep: &Sweep) -> Vec<RunStatus> {
    let experiment = sweep.experiment.as_deref().unwrap_or("-");
    let states = jobs(sweep)
        .iter()
        .rev()
        .find(|j| j.2 == experiment)
        .map(|j| task_states(&j.0))
        .unwrap_or_default();
    sweep
        .runs
        .iter()
        .map(|r| RunStatus {
            index: r.index,
            name: r.name.clone(),
            folder: run_state(&r.folder(sweep)),
            slurm: states.get(&r.index).cloned(),
        })
        .collect()
}

/// The states of job `id`'s array tasks: `sacct` where the cluster keeps accounting, then
/// `squeue -t all` (pending and running tasks, and finished ones for `MinJobAge` after they end),
/// which wins where both answer.
fn task_states(id: &str) -> HashMap<usize, String> {
    let mut states = HashMap::new();
    let sacct = ["-n", "-P", "-X", "-j", id, "-o", "JobID,State"];
    for line in command_lines("sacct", &sacct) {
        if let Some((job, state)) = line.split_once('|') {
            insert_task(&mut states, job, state);
        }
    }
    let squeue = ["-h", "-r", "-t", "all", "-j", id, "-o", "%i %T"];
    for line in command_lines("squeue", &squeue) {
        if let Some((job, state)) = line.split_once(' ') {
            insert_task(&mut states, job, state);
        }
    }
    states
}

/// Records `JOB_TASK state` (`123_4 COMPLETED`; a `CANCELLED by 0` keeps its first word).
fn insert_task(states: &mut HashMap<usize, String>, job: &str, state: &str) {
    let task = job.trim().split_once('_').and_then(|(_, t)| t.parse().ok());
    if let (Some(task), Some(word)) = (task, state.split_whitespace().next()) {
        states.insert(task, word.to_string());
    }
}

fn command_lines(program: &str, args: &[&str]) -> Vec<String> {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// `s` as one word of a POSIX shell command line (single-quoted unless it is plain).
pub fn sh_quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `status` as a table: index, run, state.
pub fn status_table(statuses: &[RunStatus]) -> String {
    let width = statuses
        .iter()
        .map(|s| s.name.len())
        .max()
        .unwrap_or(3)
        .max(3);
    let mut out = format!("{:>5}  {:<width$}  state\n", "index", "run");
    for s in statuses {
        writeln!(out, "{:>5}  {:<width$}  {}", s.index, s.name, s.state()).expect("String write");
    }
    out
}
