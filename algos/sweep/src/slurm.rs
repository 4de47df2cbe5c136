//! A sweep as a SLURM job array: [`write_script`] writes `<sweep>/slurm/array.sbatch` (one array
//! task per run, `--array=0-(N-1)%M`, logs in `<sweep>/slurm_logs/<job>_<task>.out`), each task
//! running `dynlab sweep FILE --index $SLURM_ARRAY_TASK_ID` (so a task skips a done run and resumes
//! a partial one, like the local runner); [`submit`] hands it to `sbatch` and appends the job id to
//! `<sweep>/slurm/jobs`; [`status`] reads each run's state from `squeue`, `sacct` (when the cluster
//! keeps accounting) and the run folders.

use crate::spec::{run_state, RunState, Sweep};
use dynlab_runtime::{write_atomic, Error, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The job array's resources.
#[derive(Clone, Debug, Default)]
pub struct SlurmOptions {
    /// `--partition` (absent: the cluster's default).
    pub partition: Option<String>,
    /// `--gpus-per-task` (absent: a CPU job; the runs use the default device, e.g. lavapipe).
    pub gpus_per_task: Option<u32>,
    /// `--cpus-per-task` (absent: 1).
    pub cpus_per_task: Option<u32>,
    /// At most this many tasks at once (`%M`; absent: no limit).
    pub max_parallel: Option<usize>,
    /// `--time` (absent: the partition's limit).
    pub time: Option<String>,
    /// The experiment the sweep was narrowed to (passed on to each task).
    pub experiment: Option<String>,
}

fn op_err(what: impl std::fmt::Display, path: &Path) -> Error {
    Error::io("dynlab sweep --slurm", path, what)
}

/// Writes the sbatch script for every run of `sweep` (tasks run the `dynlab` executable `exe`) and
/// returns its path.
pub fn write_script(sweep: &Sweep, exe: &Path, options: &SlurmOptions) -> Result<PathBuf> {
    let dir = sweep.dir.join("slurm");
    let logs =
        std::path::absolute(sweep.dir.join("slurm_logs")).map_err(|e| op_err(e, &sweep.dir))?;
    for d in [&dir, &logs] {
        std::fs::create_dir_all(d).map_err(|e| op_err(e, d))?;
    }
    let n = sweep.runs.len();
    if n == 0 {
        return Err(op_err("the sweep has no runs", &sweep.file));
    }
    let mut s = String::from("#!/bin/bash\n");
    let mut sb = |line: String| writeln!(s, "#SBATCH {line}").expect("String write");
    sb(format!("--job-name=dynlab-{}", sweep.name));
    let limit = options
        .max_parallel
        .map_or(String::new(), |m| format!("%{m}"));
    sb(format!("--array=0-{}{limit}", n - 1));
    sb(format!("--output={}/%A_%a.out", logs.display()));
    sb("--ntasks=1".into());
    sb(format!(
        "--cpus-per-task={}",
        options.cpus_per_task.unwrap_or(1)
    ));
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
        sh_quote(&sweep.file.display().to_string()),
        "--index".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
    ];
    if let Some(e) = &options.experiment {
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
    let jobs = sweep.dir.join("slurm").join("jobs");
    let mut text = std::fs::read_to_string(&jobs).unwrap_or_default();
    writeln!(text, "{id}").expect("String write");
    write_atomic(&jobs, text.as_bytes())?;
    Ok(id)
}

/// The job ids submitted for `sweep`, oldest first.
pub fn jobs(sweep: &Sweep) -> Vec<String> {
    let jobs = sweep.dir.join("slurm").join("jobs");
    std::fs::read_to_string(jobs)
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
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

/// Every run's state, using the newest submitted job.
pub fn status(sweep: &Sweep) -> Vec<RunStatus> {
    let states = jobs(sweep)
        .last()
        .map(|id| task_states(id))
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
