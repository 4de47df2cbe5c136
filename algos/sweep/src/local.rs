//! Running a sweep's runs as worker processes on this machine: `workers` `dynlab run` processes at
//! once, each with its own run folder, log (`<sweep>/logs/<run>.log`) and device (`devices`, round
//! robin). Done runs are skipped and partial ones resumed. Ctrl-C (SIGINT) or SIGTERM stops
//! launching, passes SIGINT to the running workers (their process groups: each was started in its
//! own, so a terminal's Ctrl-C reaches only this process) and waits for them; the run folders
//! keep their last checkpoint (every write is atomic), so the same command continues the sweep.

use crate::spec::{run_state, PlannedRun, RunState, Sweep};
use dynlab_runtime::{Error, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

struct Worker {
    child: Child,
    run: PlannedRun,
    started: Instant,
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
/// stopped), with the report's counts.
pub fn run_local(sweep: &Sweep, exe: &Path, options: &LocalOptions) -> Result<LocalReport> {
    let logs = sweep.dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| Error::io("dynlab sweep", &logs, e))?;
    install_signal_handlers();
    let total = sweep.runs.len();
    let mut report = LocalReport::default();
    let mut queue = selected(sweep, options)?.into_iter();
    let mut workers: Vec<Option<Worker>> = (0..options.workers.max(1)).map(|_| None).collect();
    loop {
        let stopping = INTERRUPTED.load(Ordering::SeqCst);
        for (slot, worker) in workers.iter_mut().enumerate() {
            if let Some(w) = worker {
                if let Some(status) = w
                    .child
                    .try_wait()
                    .map_err(|e| Error::io("dynlab sweep", exe, e))?
                {
                    let w = worker.take().expect("checked");
                    finish(w, status.success(), stopping, &logs, &mut report, total);
                }
            }
            while worker.is_none() && !stopping {
                let Some(run) = queue.next() else { break };
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
        if workers.iter().all(Option::is_none) && (stopping || queue.len() == 0) {
            break;
        }
        if stopping {
            for w in workers.iter().flatten() {
                // SAFETY: kill(2) on the worker's own process group.
                unsafe { libc::kill(-(w.child.id() as libc::pid_t), libc::SIGINT) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    conclude(report, INTERRUPTED.swap(false, Ordering::SeqCst))
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

fn conclude(report: LocalReport, interrupted: bool) -> Result<LocalReport> {
    let counts = format!(
        "{} finished, {} skipped (done before), {} failed, {} stopped",
        report.finished.len(),
        report.skipped.len(),
        report.failed.len(),
        report.interrupted.len()
    );
    println!("sweep: {counts}");
    if interrupted {
        return Err(Error::value(
            "dynlab sweep",
            format!("an interrupt ({counts})"),
            "to run to the end; run the same command again to continue",
        ));
    }
    if !report.failed.is_empty() {
        let names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
        return Err(Error::value(
            "dynlab sweep",
            format!(
                "failed runs {} ({counts}; logs in <sweep>/logs/)",
                names.join(", ")
            ),
            "every run to finish",
        ));
    }
    Ok(report)
}
