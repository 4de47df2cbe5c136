//! Running a sweep's runs as worker processes on this machine: `workers` `dynlab run` processes at
//! once, each with its own run folder, log (`<sweep>/logs/<run>.log`) and device (`devices`, round
//! robin; without `devices` they share the default device). Done runs are skipped and partial ones
//! resumed. Ctrl-C (SIGINT) or SIGTERM stops launching and passes SIGINT to the running workers
//! (their process groups: each was started in its own, so a terminal's Ctrl-C reaches only this
//! process); each checkpoints after its unit in progress and exits, and the sweep waits for them.
//! A second Ctrl-C, or a worker still running two minutes later, gets SIGKILL (its last checkpoint
//! stays: every write is atomic). The same command continues the sweep.

use crate::spec::{run_state, PlannedRun, RunState, Sweep};
use dynlab_runtime::{Error, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How to run a sweep locally.
#[derive(Clone, Debug, Default)]
pub struct LocalOptions {
    /// Processes at once (at least 1).
    pub workers: usize,
    /// Skip the runs before this index.
    pub start_from: usize,
    /// Run only the run of this index.
    pub index: Option<usize>,
    /// `DYNLAB_DEVICE` of each worker, round robin (empty: inherit).
    pub devices: Vec<String>,
}

/// What [`run_local`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalReport {
    /// Runs that ran to their summary in this call.
    pub finished: Vec<String>,
    /// Runs skipped because their summary existed.
    pub skipped: Vec<String>,
    /// Runs whose process failed, with their log.
    pub failed: Vec<(String, PathBuf)>,
    /// Runs stopped by an interrupt (resumable).
    pub interrupted: Vec<String>,
}

/// SIGINT/SIGTERM received so far.
static SIGNALS: AtomicUsize = AtomicUsize::new(0);

/// How long a worker may take to checkpoint after its SIGINT before it is killed.
const GRACE: Duration = Duration::from_secs(120);

extern "C" fn on_signal(_: libc::c_int) {
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

fn install_signal_handlers() {
    SIGNALS.store(0, Ordering::SeqCst);
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only adds to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

struct Worker {
    child: Child,
    run: PlannedRun,
    started: Instant,
    /// When it was sent SIGINT.
    stopped_at: Option<Instant>,
}

impl Worker {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on the worker's own process group.
        unsafe { libc::kill(-(self.child.id() as libc::pid_t), signal) };
    }

    /// SIGINT the first time (the run checkpoints after its unit in progress and exits); SIGKILL
    /// after [`GRACE`] or when `hurry` (a second Ctrl-C).
    fn stop(&mut self, hurry: bool) {
        match self.stopped_at {
            None => {
                self.signal(libc::SIGINT);
                self.stopped_at = Some(Instant::now());
            }
            Some(t) if hurry || t.elapsed() > GRACE => self.signal(libc::SIGKILL),
            Some(_) => {}
        }
    }
}

/// The runs `options` select, in order.
fn selected<'a>(sweep: &'a Sweep, options: &LocalOptions) -> Result<Vec<&'a PlannedRun>> {
    let n = sweep.runs.len();
    match options.index {
        Some(i) if i >= n => Err(Error::value(
            "dynlab sweep",
            format!("run index {i}"),
            format!("an index below {n} (the sweep has {n} runs)"),
        )),
        Some(i) => Ok(vec![&sweep.runs[i]]),
        None if options.start_from >= n && n > 0 => Err(Error::value(
            "dynlab sweep",
            format!("--start-from {}", options.start_from),
            format!("an index below {n}"),
        )),
        None => Ok(sweep.runs[options.start_from..].iter().collect()),
    }
}

/// Runs the selected runs of `sweep` with the `dynlab` executable `exe`, printing a line as each
/// starts and ends. Errors when a run failed or the sweep was interrupted (after every worker has
/// stopped), with the report's counts; on any other error the running workers are stopped first.
pub fn run_local(sweep: &Sweep, exe: &Path, options: &LocalOptions) -> Result<LocalReport> {
    let logs = sweep.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io("dynlab sweep", &logs, e))?;
    let queue = selected(sweep, options)?;
    install_signal_handlers();
    let mut report = LocalReport::default();
    let mut workers: Vec<Option<Worker>> = (0..options.workers.max(1)).map(|_| None).collect();
    if let Err(e) = drive(sweep, exe, options, queue, &mut workers, &mut report) {
        stop_all(&mut workers);
        return Err(e);
    }
    conclude(report, SIGNALS.swap(0, Ordering::SeqCst) > 0, &sweep.dir)
}

/// The worker loop: fills free slots from `queue` until it is empty and every worker has ended,
/// or, after a signal, until every worker has stopped.
fn drive(
    sweep: &Sweep,
    exe: &Path,
    options: &LocalOptions,
    queue: Vec<&PlannedRun>,
    workers: &mut [Option<Worker>],
    report: &mut LocalReport,
) -> Result<()> {
    let (total, logs) = (sweep.runs.len(), sweep.dir.join("logs"));
    let mut queue = queue.into_iter();
    loop {
        let signals = SIGNALS.load(Ordering::SeqCst);
        for (slot, worker) in workers.iter_mut().enumerate() {
            if let Some(w) = worker {
                let ended = w
                    .child
                    .try_wait()
                    .map_err(|e| Error::io("dynlab sweep", exe, e))?;
                if let Some(status) = ended {
                    let w = worker.take().expect("checked");
                    finish(w, status.success(), signals > 0, &logs, report, total);
                }
            }
            while worker.is_none() && SIGNALS.load(Ordering::SeqCst) == 0 {
                let Some(run) = queue.next() else { break };
                if let Some(difference) = run.stale(sweep) {
                    println!(
                        "[{}/{total}] {}: not run: its folder holds another config ({difference}); \
                         delete the folder or rename the sweep",
                        run.index + 1,
                        run.name
                    );
                    report
                        .failed
                        .push((run.name.clone(), run.folder(sweep).join("config.toml")));
                    continue;
                }
                if run_state(&run.folder(sweep)) == RunState::Done {
                    println!(
                        "[{}/{total}] {}: done before, skipped",
                        run.index + 1,
                        run.name
                    );
                    report.skipped.push(run.name.clone());
                    continue;
                }
                let device = options.devices.get(slot % options.devices.len().max(1));
                *worker = Some(spawn(sweep, run, exe, &logs, device)?);
                println!(
                    "[{}/{total}] {}: started (worker {slot})",
                    run.index + 1,
                    run.name
                );
            }
        }
        let idle = workers.iter().all(Option::is_none);
        if idle && (signals > 0 || queue.len() == 0) {
            return Ok(());
        }
        if signals > 0 {
            workers
                .iter_mut()
                .flatten()
                .for_each(|w| w.stop(signals > 1));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops every running worker (SIGINT, SIGKILL after [`GRACE`]) and waits for it.
fn stop_all(workers: &mut [Option<Worker>]) {
    for w in workers.iter_mut().filter_map(Option::take) {
        let mut w = w;
        loop {
            w.stop(false);
            if !matches!(w.child.try_wait(), Ok(None)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn spawn(
    sweep: &Sweep,
    run: &PlannedRun,
    exe: &Path,
    logs: &Path,
    device: Option<&String>,
) -> Result<Worker> {
    let log_path = logs.join(format!("{}.log", run.name));
    let log =
        std::fs::File::create(&log_path).map_err(|e| Error::io("dynlab sweep", &log_path, e))?;
    let err = log
        .try_clone()
        .map_err(|e| Error::io("dynlab sweep", &log_path, e))?;
    let mut command = Command::new(exe);
    command
        .args(run.command(sweep))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    if let Some(d) = device {
        command.env("DYNLAB_DEVICE", d);
    }
    let child = command
        .spawn()
        .map_err(|e| Error::io("dynlab sweep", exe, e))?;
    Ok(Worker {
        child,
        run: run.clone(),
        started: Instant::now(),
        stopped_at: None,
    })
}

fn finish(
    w: Worker,
    ok: bool,
    stopping: bool,
    logs: &Path,
    report: &mut LocalReport,
    total: usize,
) {
    let (i, name) = (w.run.index + 1, w.run.name.clone());
    let secs = w.started.elapsed().as_secs_f64();
    let log = logs.join(format!("{name}.log"));
    if ok {
        println!("[{i}/{total}] {name}: finished in {secs:.1} s");
        report.finished.push(name);
    } else if stopping {
        println!("[{i}/{total}] {name}: stopped after {secs:.1} s (resumable)");
        report.interrupted.push(name);
    } else {
        println!(
            "[{i}/{total}] {name}: failed after {secs:.1} s; log {}",
            log.display()
        );
        report.failed.push((name, log));
    }
}

fn conclude(report: LocalReport, interrupted: bool, dir: &Path) -> Result<LocalReport> {
    let counts = format!(
        "{} finished, {} skipped (done before), {} failed, {} stopped",
        report.finished.len(),
        report.skipped.len(),
        report.failed.len(),
        report.interrupted.len()
    );
    println!("sweep: {counts}");
    if interrupted {
        let message = format!("interrupted ({counts}); run the same command again to continue");
        return Err(Error::io("dynlab sweep", dir, message));
    }
    if !report.failed.is_empty() {
        let names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
        let message = format!(
            "runs {} failed ({counts}); their logs are in logs/",
            names.join(", ")
        );
        return Err(Error::io("dynlab sweep", dir, message));
    }
    Ok(report)
}
