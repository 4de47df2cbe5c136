//! The `dynlab` command line: one entry point for every experiment program, sweeps (local workers
//! or a SLURM job array), the run store and the run browser. `dynlab help` lists the commands,
//! `dynlab <command> --help` explains one.

use crate::programs::{program, PROGRAMS};
use crate::store::{analysis, web, Store};
use crate::sweep::slurm::{self, SlurmOptions};
use crate::sweep::{run_local, LocalOptions, Sweep};
use std::io::Write;
use std::path::{Path, PathBuf};

const USAGE: &str = "usage: dynlab <command> [options]

commands:
  run <program> --config F [--set key=value ...]   run one experiment (`dynlab programs` lists them)
  programs                                          the experiment programs
  sweep F [options]                                 run a sweep file's runs here or on SLURM
  sweep status F [--experiment NAME]                each run's state (run folders, squeue/sacct)
  runs RUNS [--group G] [--where key=value ...]     the runs folder as a table (--csv), its index
  serve RUNS [--port N]                             a browser over the runs on 127.0.0.1
  report RUNS [-o F.html]                           the same browser as one self-contained HTML file

`dynlab <command> --help` explains a command.";

const SWEEP_USAGE: &str =
    "usage: dynlab sweep F [--dry-run] [--experiment NAME] [--start-from K | --index K]
                    [--workers N] [--devices D1,D2,...]
       dynlab sweep F --slurm [--partition P] [--gpus-per-task G | --cpu] [--cpus-per-task C]
                    [--max-parallel M] [--time T] [--experiment NAME] [--dry-run]
       dynlab sweep status F [--experiment NAME]

Expands the sweep file F (format: the docs of dynlab::sweep; examples/sweeps/) into runs and runs
them: every run is `dynlab run <program> --config <base> --set ...` in its own folder
<runs_dir>/<sweep>/<run>/, log in <runs_dir>/<sweep>/logs/<run>.log. A run whose summary.toml
exists is skipped and a partial one resumed, so the same command continues a sweep. Ctrl-C stops
the workers cleanly (their last checkpoints stay).

  --dry-run          print the runs and their commands (with --slurm: write the script only)
  --experiment NAME  only the runs of [experiments.NAME]
  --start-from K     the runs from index K on
  --index K          only run K (what each SLURM array task runs)
  --workers N        N runs at once on this machine (default 1)
  --devices LIST     DYNLAB_DEVICE of each worker, round robin (e.g. cuda:0,cuda:1)
  --slurm            freeze the sweep file and its configs in <sweep>/slurm/<k>/ with array.sbatch
                     (one array task per run, logs in <sweep>/slurm_logs/<job>_<task>.out), submit it
                     with sbatch and record the job id in <sweep>/slurm/jobs
  --gpus-per-task G  GPUs per task (default 1); --cpu asks for none
  --max-parallel M   at most M array tasks at once (--array=0-(N-1)%M)

Without --devices the workers share the default device (DYNLAB_DEVICE or the best adapter).";

const RUNS_USAGE: &str =
    "usage: dynlab runs RUNS [--group G] [--where key=value ...] [--csv] [--index]

The runs under the folder RUNS (and its sweep folders) as a table: the run, the config keys that
differ between the runs shown, and the grokking results. --csv prints CSV instead of Markdown;
--index also writes RUNS/index.parquet and RUNS/index.csv (one row per run: every config key and
summary field), which DuckDB queries: duckdb -c \"SELECT * FROM 'RUNS/index.parquet'\".";

const SERVE_USAGE: &str = "usage: dynlab serve RUNS [--port N]

Serves a browser over the runs under RUNS on http://127.0.0.1:N/ (default 8050; 0 picks a free
port): choose runs (grouped by sweep) and compare their training curves, curvature, model
properties and Adam dynamics. Nothing is fetched from the network.";

const REPORT_USAGE: &str = "usage: dynlab report RUNS [-o F.html] [--max-rows N]

Writes the browser of `dynlab serve` with every run's data inside it as one HTML file (default
RUNS/report.html), each history thinned to at most N evenly spaced rows (default 2000).";

type CliResult = std::result::Result<(), String>;

/// Runs the command line `args` (without the program name).
pub fn run(args: Vec<String>) -> CliResult {
    let mut args = args.into_iter();
    let command = args.next().unwrap_or_else(|| "help".into());
    let rest: Vec<String> = args.collect();
    match command.as_str() {
        "run" => run_program(rest),
        "programs" => {
            for p in PROGRAMS {
                println!("{:<14} {}", p.name, p.about);
            }
            Ok(())
        }
        "sweep" => sweep(rest),
        "runs" => runs(rest),
        "serve" => serve(rest),
        "report" => report(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

fn run_program(args: Vec<String>) -> CliResult {
    let mut args = args.into_iter();
    let name = match args.next() {
        None => return Err(format!("run needs a program\n{USAGE}")),
        Some(h) if h == "--help" || h == "-h" => {
            println!("usage: dynlab run <program> --config F [--set key=value ...] [--resume | --overwrite] [--stop-at UNIT] [--quiet]\nprograms: `dynlab programs`; each program's options: dynlab run <program> --help");
            return Ok(());
        }
        Some(n) => n,
    };
    program(&name)
        .map_err(|e| e.to_string())?
        .run(args.collect())
}

/// A command line's flags: `--flag value` pairs and bare switches, with the positional arguments.
struct Flags {
    positional: Vec<String>,
    values: Vec<(String, String)>,
    switches: Vec<String>,
}

impl Flags {
    fn parse(
        args: Vec<String>,
        switches: &[&str],
        valued: &[&str],
        usage: &str,
    ) -> Result<Flags, String> {
        let mut f = Flags {
            positional: Vec::new(),
            values: Vec::new(),
            switches: Vec::new(),
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            if a == "--help" || a == "-h" {
                return Err(usage.to_string());
            } else if switches.contains(&a.as_str()) {
                f.switches.push(a);
            } else if valued.contains(&a.as_str()) {
                let v = it
                    .next()
                    .ok_or_else(|| format!("{a} needs a value\n{usage}"))?;
                f.values.push((a, v));
            } else if a.starts_with('-') {
                return Err(format!("unknown option `{a}`\n{usage}"));
            } else {
                f.positional.push(a);
            }
        }
        Ok(f)
    }

    fn has(&self, switch: &str) -> bool {
        self.switches.iter().any(|s| s == switch)
    }

    fn value(&self, flag: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, flag: &str) -> Vec<String> {
        self.values
            .iter()
            .filter(|(f, _)| f == flag)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn number<T: std::str::FromStr>(&self, flag: &str) -> Result<Option<T>, String>
    where
        T::Err: std::fmt::Display,
    {
        self.value(flag)
            .map(|v| v.parse().map_err(|e| format!("{flag} {v}: {e}")))
            .transpose()
    }

    fn one_path(&self, usage: &str) -> Result<PathBuf, String> {
        match self.positional.as_slice() {
            [p] => Ok(PathBuf::from(p)),
            [] => Err(format!("missing the path\n{usage}")),
            more => Err(format!(
                "one path expected, got {}\n{usage}",
                more.join(" ")
            )),
        }
    }
}

/// `--help` answers with the usage on standard output and success.
fn help_or(result: Result<Flags, String>, usage: &str) -> Result<Option<Flags>, String> {
    match result {
        Err(e) if e == usage => {
            println!("{usage}");
            Ok(None)
        }
        other => other.map(Some),
    }
}

fn resolver(program_name: &str, config: &Path, overrides: &[String]) -> crate::Result<String> {
    (program(program_name)?.resolve)(config, overrides)
}

fn current_exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the dynlab executable: {e}"))
}

fn sweep(args: Vec<String>) -> CliResult {
    let status = args.first().is_some_and(|a| a == "status");
    let args = if status { args[1..].to_vec() } else { args };
    let switches = ["--dry-run", "--slurm", "--cpu"];
    let valued = [
        "--experiment",
        "--start-from",
        "--index",
        "--workers",
        "--devices",
        "--partition",
        "--gpus-per-task",
        "--cpus-per-task",
        "--max-parallel",
        "--time",
    ];
    let Some(f) = help_or(
        Flags::parse(args, &switches, &valued, SWEEP_USAGE),
        SWEEP_USAGE,
    )?
    else {
        return Ok(());
    };
    let file = f.one_path(SWEEP_USAGE)?;
    let slurm_only = [
        "--slurm",
        "--cpu",
        "--partition",
        "--gpus-per-task",
        "--cpus-per-task",
        "--max-parallel",
        "--time",
    ];
    let local_only = ["--start-from", "--index", "--workers", "--devices"];
    let given = |names: &[&str]| -> Option<String> {
        names
            .iter()
            .find(|n| f.has(n) || f.value(n).is_some())
            .map(|n| n.to_string())
    };
    let misplaced = if status {
        given(&slurm_only)
            .or_else(|| given(&local_only))
            .or_else(|| given(&["--dry-run"]))
    } else if f.has("--slurm") {
        given(&local_only)
    } else {
        given(&slurm_only[1..])
    };
    if let Some(flag) = misplaced {
        let what = if status {
            "sweep status"
        } else if f.has("--slurm") {
            "--slurm"
        } else {
            "a local sweep (without --slurm)"
        };
        return Err(format!("{flag} does not apply to {what}\n{SWEEP_USAGE}"));
    }
    let experiment = f.value("--experiment");
    let sweep = Sweep::load(&file, experiment, &resolver).map_err(|e| e.to_string())?;
    if status {
        print!("{}", slurm::status_table(&slurm::status(&sweep)));
        return Ok(());
    }
    if f.has("--slurm") {
        return sweep_slurm(&sweep, &f);
    }
    if f.has("--dry-run") {
        print_plan(&sweep);
        return Ok(());
    }
    let devices = f
        .value("--devices")
        .map(|d| d.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let options = LocalOptions {
        workers: f.number("--workers")?.unwrap_or(1),
        start_from: f.number("--start-from")?.unwrap_or(0),
        index: f.number("--index")?,
        devices,
    };
    let (n, dir) = (sweep.runs.len(), sweep.dir.display());
    match options.index {
        Some(k) => println!("sweep {}: run {k} of {n} (0-based) into {dir}", sweep.name),
        None => println!(
            "sweep {}: {n} runs into {dir} ({} worker{})",
            sweep.name,
            options.workers.max(1),
            if options.workers > 1 { "s" } else { "" }
        ),
    }
    run_local(&sweep, &current_exe()?, &options)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn print_plan(sweep: &Sweep) {
    println!(
        "sweep {}: {} runs into {}",
        sweep.name,
        sweep.runs.len(),
        sweep.dir.display()
    );
    for r in &sweep.runs {
        let state = match r.stale(sweep) {
            Some(difference) => format!("Stale: {difference}"),
            None => format!("{:?}", crate::sweep::run_state(&r.folder(sweep))),
        };
        let command: Vec<String> = r
            .command(sweep)
            .iter()
            .map(|a| slurm::sh_quote(a))
            .collect();
        println!(
            "[{}] {} ({}): dynlab {}",
            r.index,
            r.name,
            state,
            command.join(" ")
        );
    }
}

fn sweep_slurm(sweep: &Sweep, f: &Flags) -> CliResult {
    if f.has("--cpu") && f.value("--gpus-per-task").is_some() {
        return Err(format!(
            "--cpu and --gpus-per-task exclude each other\n{SWEEP_USAGE}"
        ));
    }
    let gpus = f.number("--gpus-per-task")?.unwrap_or(1);
    let options = SlurmOptions {
        partition: f.value("--partition").map(str::to_string),
        gpus_per_task: (!f.has("--cpu")).then_some(gpus),
        cpus_per_task: f.number("--cpus-per-task")?.unwrap_or(1),
        max_parallel: f.number("--max-parallel")?,
        time: f.value("--time").map(str::to_string),
    };
    let script =
        slurm::write_script(sweep, &current_exe()?, &options).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({} array tasks)",
        script.display(),
        sweep.runs.len()
    );
    if f.has("--dry-run") {
        return Ok(());
    }
    let id = slurm::submit(sweep, &script).map_err(|e| e.to_string())?;
    println!(
        "submitted job {id}; logs in {}/slurm_logs/",
        sweep.dir.display()
    );
    println!("state: dynlab sweep status {}", sweep.file.display());
    Ok(())
}

fn runs(args: Vec<String>) -> CliResult {
    let valued = ["--group", "--where"];
    let Some(f) = help_or(
        Flags::parse(args, &["--csv", "--index"], &valued, RUNS_USAGE),
        RUNS_USAGE,
    )?
    else {
        return Ok(());
    };
    let root = f.one_path(RUNS_USAGE)?;
    let store = Store::open(&root).map_err(|e| e.to_string())?;
    store
        .warnings()
        .iter()
        .for_each(|w| eprintln!("skipped: {w}"));
    let mut selected = store.select(&f.all("--where")).map_err(|e| e.to_string())?;
    if let Some(g) = f.value("--group") {
        selected.retain(|r| r.group == g);
    }
    let table = analysis::sweep_table(&selected, &analysis::RESULT_FIELDS);
    print!(
        "{}",
        if f.has("--csv") {
            table.csv()
        } else {
            table.markdown()
        }
    );
    if f.has("--index") {
        let path = store.write_index().map_err(|e| e.to_string())?;
        eprintln!("wrote {} ({} runs)", path.display(), store.runs().len());
    }
    Ok(())
}

fn serve(args: Vec<String>) -> CliResult {
    let Some(f) = help_or(
        Flags::parse(args, &[], &["--port"], SERVE_USAGE),
        SERVE_USAGE,
    )?
    else {
        return Ok(());
    };
    let root = f.one_path(SERVE_USAGE)?;
    let port = f.number("--port")?.unwrap_or(8050);
    web::serve(&root, port, |addr| {
        println!(
            "serving {} on http://{addr}/ (Ctrl-C stops)",
            root.display()
        );
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| e.to_string())
}

fn report(args: Vec<String>) -> CliResult {
    let valued = ["-o", "--max-rows"];
    let Some(f) = help_or(Flags::parse(args, &[], &valued, REPORT_USAGE), REPORT_USAGE)? else {
        return Ok(());
    };
    let root = f.one_path(REPORT_USAGE)?;
    let out = f
        .value("-o")
        .map_or_else(|| web::default_report_path(&root), PathBuf::from);
    let store = Store::open(&root).map_err(|e| e.to_string())?;
    store
        .warnings()
        .iter()
        .for_each(|w| eprintln!("skipped: {w}"));
    let max_rows = f.number("--max-rows")?.unwrap_or(2000);
    if max_rows < 2 {
        return Err(format!(
            "--max-rows {max_rows}: at least 2 (the first and the last row)"
        ));
    }
    web::write_report(&store, &out, max_rows).map_err(|e| e.to_string())?;
    println!("wrote {} ({} runs)", out.display(), store.runs().len());
    Ok(())
}
