//! One generic driver for every experiment (as SPD's codebase has one `run_experiment`): an
//! [`Experiment`] says how to run one unit of work (an epoch, a task, a log interval) and what its
//! state is; [`run_experiment`] does the rest — the run folder (new, resume, overwrite), the
//! resolved config, the progress bar, the history with a `seconds` column (wall time across
//! resumes), checkpoints every few units and at the end, `history.csv`/`history.parquet`, the
//! experiment's plots and `summary.toml` with provenance, the rate and `finished` (false when the
//! call stopped before the last unit, at `--stop-at`). Ctrl-C stops after the unit in progress with
//! a checkpoint (a second Ctrl-C ends the process at once).

use crate::history::{History, Value};
use crate::interrupt;
use crate::progress::Progress;
use crate::run::{RunDir, RunMode};
use crate::summary::Summary;
use dynlab_models::{Record, Stateful};
use dynlab_runtime::{Device, Error, Result};
use std::path::PathBuf;
use std::time::Instant;

/// How to run: what to do with an existing folder, whether to show progress, and where to stop.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// New, resume or overwrite.
    pub mode: RunMode,
    /// Progress bar (or periodic lines when not on a terminal).
    pub progress: bool,
    /// Stop this call after this unit (checkpointed; resuming continues), e.g. to fit a job's
    /// time slot. The experiment still plans for all its units.
    pub stop_at: Option<u64>,
    /// With [`RunMode::Resume`]: run this many units past the checkpoint, beyond the config's last
    /// unit if need be and even when the experiment says it is finished (schedules hold their
    /// final value past the planned end).
    pub extra_units: Option<u64>,
}

/// An experiment the harness can run (see the module docs).
pub trait Experiment {
    /// The device it runs on (named in the summary; `None` for work on the host only).
    fn device(&self) -> Option<&Device>;

    /// Units of work in the whole run.
    fn units(&self) -> u64;

    /// What a unit is called in progress lines (`epochs`).
    fn unit_name(&self) -> &str {
        "epochs"
    }

    /// Checkpoint after every this many units.
    fn checkpoint_every(&self) -> u64;

    /// Runs unit `unit` (1-based), appends its row to `history` and returns a short status line.
    fn run_unit(&mut self, unit: u64, history: &mut History) -> Result<String>;

    /// Whether to stop before the next unit (an early-stopping rule over the history so far).
    fn finished(&self, _history: &History) -> bool {
        false
    }

    /// Everything needed to continue exactly (model, optimizer, RNG, counters).
    fn save(&self) -> Result<Record>;

    /// Restores what [`Experiment::save`] wrote.
    fn restore(&mut self, record: &Record) -> Result<()>;

    /// After the last unit: plots into the run folder and the experiment's summary entries.
    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()>;

    /// The seeds the run used, by name (recorded in the summary).
    fn seeds(&self) -> Vec<(&'static str, u64)>;

    /// Training steps taken so far (the summary reports launches and syncs per step).
    fn steps(&self) -> u64 {
        0
    }
}

/// What a call of [`run_experiment`] did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The whole history (across resumes).
    pub history: History,
    /// The summary written.
    pub summary: Summary,
    /// Units run by this call.
    pub units_run: u64,
    /// Their rate.
    pub units_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
    /// Kernel launches per training step in this call (`None` without a device or steps).
    pub launches_per_step: Option<f64>,
    /// Host synchronisations per training step in this call.
    pub syncs_per_step: Option<f64>,
}

/// Runs (or resumes) `experiment` in `<runs_dir>/<name>`, starting from the empty `history` (its
/// schema) and saving `resolved_config` as the run's `config.toml`.
pub fn run_experiment(
    experiment: &mut dyn Experiment,
    runs_dir: &str,
    name: &str,
    resolved_config: &str,
    mut history: History,
    options: RunOptions,
) -> Result<Outcome> {
    if let (Some(extra), false) = (options.extra_units, options.mode == RunMode::Resume) {
        return Err(Error::value(
            "run_experiment",
            format!("{extra} extra units without --resume"),
            "extra units only when resuming a run",
        ));
    }
    let run = RunDir::open(runs_dir, name, options.mode)?;
    let (mut unit, mut seconds_before) = (0u64, 0.0f64);
    if options.mode == RunMode::Resume {
        let record = run.load_checkpoint(experiment.device())?;
        experiment.restore(&record.part("experiment"))?;
        history.load_state(&record.part("history"))?;
        unit = record.value("units")?;
        seconds_before = record.value("seconds")?;
    }
    run.write("config.toml", resolved_config.as_bytes())?;
    let started = Instant::now();
    let (stats_before, steps_before) = (experiment.device().map(Device::stats), experiment.steps());
    let elapsed = |started: &Instant| seconds_before + started.elapsed().as_secs_f64();
    let save = |experiment: &dyn Experiment, history: &History, unit: u64, seconds: f64| {
        let record = Record::default()
            .with_value("units", unit)
            .with_value("seconds", seconds)
            .nest("history", history.save_state()?)
            .nest("experiment", experiment.save()?);
        run.save_checkpoint(&record)?;
        run.write_history(history)
    };
    let (first_unit, planned) = (unit, experiment.units());
    let (total, last) = match options.extra_units {
        Some(extra) => (planned.max(unit + extra), unit + extra),
        None => (planned, planned.min(options.stop_at.unwrap_or(u64::MAX))),
    };
    let may_finish = options.extra_units.is_none();
    let unit_name = experiment.unit_name().to_string();
    let mut progress = Progress::new(total, unit, &unit_name, options.progress);
    let interrupt = interrupt::install();
    while unit < last && !(may_finish && experiment.finished(&history)) {
        if interrupt::requested() {
            progress.finish();
            save(experiment, &history, unit, elapsed(&started))?;
            return Err(Error::io(
                "run_experiment",
                run.path(),
                format!(
                    "interrupted after {unit} {unit_name}; checkpointed: continue with --resume"
                ),
            ));
        }
        unit += 1;
        let rows_before = history.rows();
        let status = experiment.run_unit(unit, &mut history)?;
        if history.rows() == rows_before {
            return Err(Error::value(
                "run_experiment",
                format!("unit {unit} without a history row"),
                "Experiment::run_unit to push a row (or one per replica) per unit",
            ));
        }
        history.set_from(rows_before, "seconds", Value::F64(elapsed(&started)))?;
        let rate = (unit - first_unit) as f64 / started.elapsed().as_secs_f64();
        progress.update(unit, format!("{status} {rate:.1} {unit_name}/s"));
        if unit % experiment.checkpoint_every().max(1) == 0 {
            save(experiment, &history, unit, elapsed(&started))?;
        }
    }
    progress.finish();
    drop(interrupt);
    let complete = unit >= total || (may_finish && experiment.finished(&history));
    let steps = experiment.steps() - steps_before;
    let per_step = match (experiment.device(), stats_before) {
        (Some(device), Some(before)) if steps > 0 => {
            let used = device.stats().since(&before);
            let per = |v: u64| v as f64 / steps as f64;
            Some((per(used.launches), per(used.syncs)))
        }
        _ => None,
    };
    save(experiment, &history, unit, elapsed(&started))?;
    let mut summary = Summary::default();
    experiment.finish(&run, &history, &mut summary)?;
    let this_call = started.elapsed().as_secs_f64();
    let seconds = seconds_before + this_call;
    summary.set(&unit_name, unit as i64);
    summary.set("finished", complete);
    summary.set("seconds", (seconds * 10.0).round() / 10.0);
    summary.set(
        &format!("{unit_name}_per_second"),
        (unit as f64 / seconds.max(1e-9) * 100.0).round() / 100.0,
    );
    if let Some((launches, syncs)) = per_step {
        summary.set("launches_per_step", (launches * 10.0).round() / 10.0);
        summary.set("syncs_per_step", (syncs * 100.0).round() / 100.0);
    }
    summary.set_provenance(experiment.device(), &experiment.seeds());
    summary.write(&run)?;
    Ok(Outcome {
        run_dir: run.path().to_path_buf(),
        units_run: unit - first_unit,
        units_per_second: (unit - first_unit) as f64 / this_call.max(1e-9),
        seconds,
        launches_per_step: per_step.map(|p| p.0),
        syncs_per_step: per_step.map(|p| p.1),
        history,
        summary,
    })
}
