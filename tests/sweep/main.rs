//! Sweeps: the grid expansion against a plain nested loop, the study's two sweep files, bad sweep
//! files naming the key, and the `dynlab` binary running tiny grokking sweeps (dry run, two
//! workers, skip-if-done, resume of a partial run, `--start-from`, `--index`, Ctrl-C), every shipped
//! config resolving for its program; `slurm` submits one to a real SLURM cluster.

mod slurm;

use dynlab::programs::program;
use dynlab::sweep::{PlannedRun, Sweep};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn resolver(p: &str, config: &Path, overrides: &[String]) -> dynlab::Result<String> {
    (program(p)?.resolve)(config, overrides)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(file: &str, only: Option<&str>) -> Sweep {
    Sweep::load(&repo().join(file), only, &resolver).unwrap()
}

/// A fresh folder for `test`.
pub(crate) fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-sweep-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Parses sweep text written to `dir/sweep.toml`.
fn parse(dir: &Path, text: &str, only: Option<&str>) -> dynlab::Result<Sweep> {
    let file = dir.join("sweep.toml");
    std::fs::write(&file, text).unwrap();
    Sweep::load(&file, only, &resolver)
}

fn value(run: &PlannedRun, key: &str) -> String {
    let found = run.overrides.iter().find(|(k, _)| k == key);
    found.map_or_else(
        || panic!("{} has no `{key}`", run.name),
        |(_, v)| v.to_string(),
    )
}

#[test]
fn the_transformer_sweep_is_p_by_lr_by_wd_in_the_studys_order() {
    let s = load("examples/sweeps/transformer_sweep.toml", None);
    assert_eq!(s.runs.len(), 18);
    let mut want = Vec::new();
    for p in ["17", "113"] {
        for lr in ["3e-4", "1e-3", "3e-3"] {
            for wd in ["0.5", "1.0", "2.0"] {
                want.push(format!("p{p}_lr{lr}_wd{wd}"));
            }
        }
    }
    let names: Vec<&str> = s.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, want);
    for (i, r) in s.runs.iter().enumerate() {
        assert_eq!(r.index, i);
        assert_eq!(r.program, "grokking");
        assert!(
            r.config.ends_with("examples/configs/transformer.toml"),
            "{:?}",
            r.config
        );
        assert_eq!(value(r, "data.train_frac"), "0.5");
        assert_eq!(value(r, "model.n_layers"), "2");
        assert_eq!(value(r, "data.p"), if i < 9 { "17" } else { "113" });
    }
    assert_eq!(value(&s.runs[4], "optim.lr"), "0.001");
    assert_eq!(value(&s.runs[4], "optim.weight_decay"), "1.0");
    assert!(s.dir.ends_with("runs/transformer_sweep"));
}

#[test]
fn the_weight_decay_sweep_is_five_runs_at_p113_with_30_percent_training() {
    let s = load("examples/sweeps/weight_decay_sweep.toml", None);
    let names: Vec<&str> = s.runs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["wd0.5", "wd0.75", "wd1.0", "wd1.25", "wd1.5"]);
    for r in &s.runs {
        assert_eq!(value(r, "data.p"), "113");
        assert_eq!(value(r, "data.train_frac"), "0.3");
        assert_eq!(value(r, "optim.lr"), "0.0003");
    }
}

const TWO_EXPERIMENTS: &str = r#"
name = "two"
program = "grokking"
config = "CONFIG"
[names]
"optim.lr" = "eta"
[global]
data.p = 13
optim.lr = [1e-3, 3e-2]
optim.weight_decay = 0.5
seed = [0, 1, 2]
[experiments.wide]
model.hidden = [[64]]
[experiments.sizes]
data.p = [7, 11]
optim.weight_decay = [0.1, 1.0]
"#;

fn two_experiments() -> String {
    let config = repo().join("examples/configs/validate.toml");
    TWO_EXPERIMENTS.replace("CONFIG", &config.display().to_string())
}

/// The expansion against a plain nested loop: experiments in file order, dimensions in order of
/// first appearance (an experiment's key replacing a global one keeps the global's place), the
/// first outermost; fixed values before swept ones.
#[test]
fn experiments_override_global_and_expand_like_nested_loops() {
    let dir = scratch("expand");
    let s = parse(&dir, &two_experiments(), None).unwrap();
    let mut want: Vec<(String, Vec<(&str, String)>)> = Vec::new();
    for lr in ["0.001", "0.03"] {
        for seed in ["0", "1", "2"] {
            let name = format!(
                "wide_eta{}_seed{seed}",
                if lr == "0.001" { "1e-3" } else { "0.03" }
            );
            let sets = vec![
                ("data.p", "13".to_string()),
                ("optim.weight_decay", "0.5".to_string()),
                ("optim.lr", lr.to_string()),
                ("seed", seed.to_string()),
                ("model.hidden", "[64]".to_string()),
            ];
            want.push((name, sets));
        }
    }
    for p in ["7", "11"] {
        for lr in ["0.001", "0.03"] {
            for wd in ["0.1", "1.0"] {
                for seed in ["0", "1", "2"] {
                    let eta = if lr == "0.001" { "1e-3" } else { "0.03" };
                    let name = format!("sizes_p{p}_eta{eta}_wd{wd}_seed{seed}");
                    let sets = vec![
                        ("data.p", p.to_string()),
                        ("optim.lr", lr.to_string()),
                        ("optim.weight_decay", wd.to_string()),
                        ("seed", seed.to_string()),
                    ];
                    want.push((name, sets));
                }
            }
        }
    }
    assert_eq!(s.runs.len(), want.len());
    for (r, (name, sets)) in s.runs.iter().zip(&want) {
        assert_eq!(&r.name, name);
        let mut got: Vec<(&str, String)> = r
            .overrides
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_string()))
            .collect();
        let mut sets = sets.clone();
        got.sort();
        sets.sort();
        assert_eq!(got, sets, "{name}");
        assert_eq!(
            r.experiment,
            if name.starts_with("wide") {
                "wide"
            } else {
                "sizes"
            }
        );
    }
    let wide = parse(&dir, &two_experiments(), Some("sizes")).unwrap();
    assert_eq!(wide.runs.len(), 24);
    assert_eq!(wide.runs[0].index, 0);
    let err = parse(&dir, &two_experiments(), Some("tall"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no experiment `tall`") && err.contains("wide, sizes"),
        "{err}"
    );
}

/// A sweep of `body` on top of the MLP validation config.
fn with_body(dir: &Path, body: &str) -> dynlab::Result<Sweep> {
    let config = repo().join("examples/configs/validate.toml");
    let text = format!(
        "program = \"grokking\"\nconfig = \"{}\"\n{body}",
        config.display()
    );
    parse(dir, &text, None)
}

fn error_of(dir: &Path, body: &str) -> String {
    match with_body(dir, body) {
        Ok(s) => panic!("`{body}` was accepted: {} runs", s.runs.len()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_sweep_files_give_errors_naming_the_key() {
    let dir = scratch("errors");
    let cases = [
        ("[global]\noptim.lrr = [1e-3, 1e-2]", "optim.lrr"),
        ("[global]\noptim.lr = []", "optim.lr` is an empty list"),
        ("[global]\ndata.p = [7, \"big\"]", "data.p"),
        ("[global]\ndata.p = 7.5", "key `data.p` = 7.5: expected an integer"),
        ("[global]\noptim.lr = [\"fast\"]", "key `optim.lr` = \"fast\""),
        ("[global]\nmodel.hidden.width = 3", "model.hidden"),
        ("[experiments.a]\ntrain.epochs = -3", "train.epochs"),
        ("epochs = 3", "unknown key `epochs` at the top"),
        ("[names]\n\"optim.lr\" = 3", "[names] `optim.lr`"),
        ("[names]\n\"optim.lr\" = \"x\"\n\"optim.weight_decay\" = \"x\"\n[global]\noptim.lr = [1e-3, 1e-2]\noptim.weight_decay = [1.0, 2.0]\ndata.p = [7, 11]", ""),
        ("[global]\noptim.lr = [1e-3, 1e-3]", "two runs are named `lr1e-3`"),
    ];
    for (body, needle) in cases {
        if needle.is_empty() {
            // Distinct values under one short name still give distinct names.
            assert_eq!(with_body(&dir, body).unwrap().runs.len(), 8);
            continue;
        }
        let e = error_of(&dir, body);
        assert!(
            e.contains(needle),
            "`{body}`: the error `{e}` does not contain `{needle}`"
        );
        assert!(e.contains("sweep.toml"), "the error names the file: {e}");
    }
    let e = parse(&dir, "config = \"x.toml\"\n[global]\nseed = [1, 2]", None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `program`"), "{e}");
}

fn dynlab(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dynlab"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the dynlab binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn check(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what} failed: {}\n{}",
        stdout(o),
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(o)
}

/// A 4-run sweep of a tiny MLP (p = 7, a few epochs a second), runs in `dir/runs/tiny/`.
pub(crate) fn tiny_sweep(dir: &Path, epochs: u64) -> PathBuf {
    let config = repo().join("examples/configs/validate.toml");
    let text = format!(
        r#"name = "tiny"
program = "grokking"
config = "{}"
runs_dir = "{}"
[global]
data.p = 7
model.hidden = [[16]]
train.epochs = {epochs}
train.checkpoint_every = 5
metrics.smoothness_every = 10
metrics.jacobian_every = 10
metrics.input_hessian_every = 0
metrics.weight_curvature_every = 0
optim.lr = [3e-3, 1e-2]
seed = [0, 1]
"#,
        config.display(),
        dir.join("runs").display()
    );
    let file = dir.join("tiny.toml");
    std::fs::write(&file, text).unwrap();
    file
}

const RUNS: [&str; 4] = [
    "lr3e-3_seed0",
    "lr3e-3_seed1",
    "lr0.01_seed0",
    "lr0.01_seed1",
];

fn assert_complete(run: &Path, epochs: u64) {
    for f in [
        "config.toml",
        "history.csv",
        "history.parquet",
        "summary.toml",
        "checkpoint.safetensors",
        "curves.png",
    ] {
        assert!(run.join(f).is_file(), "{} has no {f}", run.display());
    }
    let history = std::fs::read_to_string(run.join("history.csv")).unwrap();
    assert_eq!(
        history.lines().count() as u64,
        epochs + 1,
        "{}",
        run.display()
    );
    let summary = std::fs::read_to_string(run.join("summary.toml")).unwrap();
    assert!(summary.contains(&format!("epochs = {epochs}")), "{summary}");
}

#[test]
fn dry_run_prints_every_command_and_runs_nothing() {
    let dir = scratch("dry");
    let file = tiny_sweep(&dir, 30);
    let out = check(
        &dynlab(&dir, &["sweep", file.to_str().unwrap(), "--dry-run"]),
        "dry run",
    );
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(lines.len(), 4, "{out}");
    for (i, (line, name)) in lines.iter().zip(RUNS).enumerate() {
        assert!(
            line.starts_with(&format!(
                "[{i}] {name} (NotStarted): dynlab run grokking --config "
            )),
            "{line}"
        );
        assert!(line.contains(&format!("--set 'name=\"{name}\"'")), "{line}");
    }
    assert!(
        !dir.join("runs").exists(),
        "a dry run created the runs folder"
    );
}

#[test]
fn two_workers_run_four_runs_then_a_rerun_skips_them() {
    let dir = scratch("workers");
    let file = tiny_sweep(&dir, 30);
    let f = file.to_str().unwrap();
    let out = check(&dynlab(&dir, &["sweep", f, "--workers", "2"]), "the sweep");
    assert!(out.contains("4 finished, 0 skipped"), "{out}");
    for name in RUNS {
        assert_complete(&dir.join("runs/tiny").join(name), 30);
        assert!(dir
            .join("runs/tiny/logs")
            .join(format!("{name}.log"))
            .is_file());
    }
    let again = check(&dynlab(&dir, &["sweep", f, "--workers", "2"]), "the rerun");
    assert!(again.contains("0 finished, 4 skipped"), "{again}");
    let status = check(&dynlab(&dir, &["sweep", "status", f]), "status");
    assert_eq!(status.matches("completed").count(), 4, "{status}");
    // The sweep file edited after the runs: their folders hold another config, so none is
    // skipped as done or resumed; each is refused, naming the key.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("data.p = 7", "data.p = 5")).unwrap();
    let stale = dynlab(&dir, &["sweep", f]);
    let out = stdout(&stale);
    assert!(!stale.status.success(), "{out}");
    assert_eq!(
        out.matches(
            "its folder holds another config (`data.p` is 7 in the folder, 5 in the sweep)"
        )
        .count(),
        4,
        "{out}"
    );
}

#[test]
fn start_from_index_and_a_partial_run_resumed() {
    let dir = scratch("resume");
    let file = tiny_sweep(&dir, 30);
    let f = file.to_str().unwrap();
    // Run 1 stopped at epoch 10 (checkpointed, no summary), as an interrupted run leaves it.
    let plan = check(&dynlab(&dir, &["sweep", f, "--dry-run"]), "dry run");
    let line = plan.lines().find(|l| l.starts_with("[1] ")).unwrap();
    let command: Vec<String> = shell_words(line.split_once(": dynlab ").unwrap().1);
    let mut partial: Vec<&str> = command.iter().map(String::as_str).collect();
    partial.extend(["--stop-at", "10"]);
    check(&dynlab(&dir, &partial), "the partial run");
    let run1 = dir.join("runs/tiny").join(RUNS[1]);
    let summary = std::fs::read_to_string(run1.join("summary.toml")).unwrap();
    assert!(summary.contains("finished = false"), "{summary}");
    let plan = check(&dynlab(&dir, &["sweep", f, "--dry-run"]), "dry run");
    assert!(
        plan.contains(&format!("[1] {} (Partial)", RUNS[1])) && plan.contains("--resume"),
        "{plan}"
    );

    let out = check(
        &dynlab(&dir, &["sweep", f, "--start-from", "1", "--workers", "2"]),
        "from 1",
    );
    assert!(out.contains("3 finished"), "{out}");
    assert!(
        !dir.join("runs/tiny").join(RUNS[0]).exists(),
        "run 0 ran despite --start-from 1"
    );
    for name in &RUNS[1..] {
        assert_complete(&dir.join("runs/tiny").join(name), 30);
    }
    let log = std::fs::read_to_string(dir.join("runs/tiny/logs").join(format!("{}.log", RUNS[1])))
        .unwrap();
    assert!(
        log.contains("this call ran 20 epochs"),
        "run 1 was not resumed from epoch 10: {log}"
    );

    let out = check(&dynlab(&dir, &["sweep", f, "--index", "0"]), "index 0");
    assert!(out.contains("1 finished, 0 skipped"), "{out}");
    assert_complete(&dir.join("runs/tiny").join(RUNS[0]), 30);
    let bad = dynlab(&dir, &["sweep", f, "--index", "4"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("run index 4"));
}

/// Splits a printed command line (words, single-quoted words).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut any) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '\'' => (quoted, any) = (!quoted, true),
            ' ' if !quoted => {
                if any || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                any = false;
            }
            c => word.push(c),
        }
    }
    if any || !word.is_empty() {
        words.push(word);
    }
    words
}

/// A sweep process that gets SIGINT, and SIGKILL if the test ends first (a failed assertion must
/// not leave a sweep of million-epoch runs behind).
struct Interrupted(std::process::Child);

impl Interrupted {
    fn interrupt(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) on the sweep process, which is our child.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
        self.0.wait().unwrap()
    }
}

impl Drop for Interrupted {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            // SAFETY: as above; its workers get SIGINT from it and stop.
            unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.0.wait();
        }
    }
}

#[test]
fn ctrl_c_stops_the_workers_and_keeps_their_checkpoints() {
    let dir = scratch("interrupt");
    let file = tiny_sweep(&dir, 1_000_000);
    let child = Command::new(env!("CARGO_BIN_EXE_dynlab"))
        .current_dir(&dir)
        .args(["sweep", file.to_str().unwrap(), "--workers", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Interrupted(child);
    let checkpoints = || {
        RUNS[..2].iter().all(|n| {
            dir.join("runs/tiny")
                .join(n)
                .join("checkpoint.safetensors")
                .is_file()
        })
    };
    let start = std::time::Instant::now();
    while !checkpoints() {
        assert!(
            start.elapsed().as_secs() < 120,
            "no checkpoints after 120 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let status = child.interrupt();
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(!status.success(), "an interrupted sweep reports failure");
    assert!(
        out.contains("0 finished, 0 skipped (done before), 0 failed, 2 stopped"),
        "{out}"
    );
    for n in &RUNS[..2] {
        let run = dir.join("runs/tiny").join(n);
        assert!(run.join("checkpoint.safetensors").is_file() && !run.join("summary.toml").exists());
        assert!(run.join("config.toml").is_file());
        let log =
            std::fs::read_to_string(dir.join("runs/tiny/logs").join(format!("{n}.log"))).unwrap();
        assert!(
            log.contains("epochs; checkpointed") && log.contains("continue with --resume"),
            "{log}"
        );
    }
    assert!(
        !dir.join("runs/tiny").join(RUNS[2]).exists(),
        "a run started after the interrupt"
    );
    let plan = check(
        &dynlab(&dir, &["sweep", file.to_str().unwrap(), "--dry-run"]),
        "plan",
    );
    assert_eq!(plan.matches("(Partial)").count(), 2, "{plan}");
}

#[test]
fn every_command_answers_help_and_bad_commands_fail_naming_them() {
    let dir = scratch("help");
    for args in [
        &["help"][..],
        &["sweep", "--help"],
        &["runs", "--help"],
        &["serve", "--help"],
        &["report", "--help"],
        &["run", "--help"],
        &["run", "grokking", "--help"],
    ] {
        let out = check(&dynlab(&dir, args), &args.join(" "));
        assert!(
            out.contains("usage:"),
            "`dynlab {}` printed {out}",
            args.join(" ")
        );
    }
    let programs = check(&dynlab(&dir, &["programs"]), "programs");
    for p in dynlab::programs::PROGRAMS {
        assert!(programs.contains(p.name), "{programs}");
    }
    let file = tiny_sweep(&dir, 30);
    let f = file.to_str().unwrap();
    for (args, needle) in [
        (&["fly"][..], "unknown command `fly`"),
        (&["run", "nope"], "no program `nope`"),
        (
            &["sweep", f, "--wrokers", "2"],
            "unknown option `--wrokers`",
        ),
        (&["sweep", f, "--workers", "two"], "--workers two"),
        (&["sweep", "missing.toml"], "missing.toml"),
    ] {
        let out = dynlab(&dir, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "`{}`: {err}",
            args.join(" ")
        );
    }
}

/// `--slurm --dry-run` writes the frozen sweep the tasks read; it expands to the same runs (names,
/// order, overrides, configs) as the file it was made from, wherever it is read from.
#[test]
fn a_slurm_submission_freezes_a_sweep_that_expands_to_the_same_runs() {
    let dir = scratch("freeze");
    let two = dir.join("two.toml");
    std::fs::write(&two, two_experiments()).unwrap();
    let transformer = repo().join("examples/sweeps/transformer_sweep.toml");
    for file in [two, transformer] {
        let f = file.to_str().unwrap();
        let out = check(
            &dynlab(&dir, &["sweep", f, "--slurm", "--cpu", "--dry-run"]),
            "--slurm --dry-run",
        );
        let script = out
            .lines()
            .find_map(|l| l.strip_prefix("wrote "))
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        let script = dir.join(script);
        let frozen = script.with_file_name("sweep.toml");
        let original = Sweep::load(&file, None, &resolver).unwrap();
        let copy = Sweep::load(&frozen, None, &resolver).unwrap();
        assert_eq!(copy.name, original.name);
        assert_eq!(
            copy.dir,
            std::path::absolute(dir.join(&original.dir)).unwrap()
        );
        assert_eq!(copy.runs.len(), original.runs.len());
        for (a, b) in copy.runs.iter().zip(&original.runs) {
            assert_eq!(
                (&a.name, &a.experiment, &a.overrides),
                (&b.name, &b.experiment, &b.overrides)
            );
            assert_ne!(a.config, b.config, "the frozen sweep reads a copy");
            assert_eq!(
                std::fs::read(&a.config).unwrap(),
                std::fs::read(&b.config).unwrap()
            );
        }
        let jobs = dir.join(&original.dir).join("slurm/jobs");
        assert!(!jobs.exists(), "a dry run recorded a job");
    }
}

/// The program each shipped config is for, by path under `examples/configs/` (a folder's prefix
/// covers its files).
const SHIPPED_CONFIGS: &[(&str, &str)] = &[
    ("baseline.toml", "grokking"),
    ("grokking_full.toml", "grokking"),
    ("grokking_quick.toml", "grokking"),
    ("power2022.toml", "grokking"),
    ("routed.toml", "grokking"),
    ("transformer.toml", "grokking"),
    ("validate.toml", "grokking"),
    ("validate_transformer.toml", "grokking"),
    ("bit_flipping", "bit_flipping"),
    ("plasticity_", "supervised"),
    ("landscape_plasticity.toml", "supervised"),
    ("landscape_norm.toml", "supervised"),
    ("landscape_convnet.toml", "supervised"),
    ("landscape_deep_linear.toml", "landscape"),
    ("spd/", "spd"),
    ("connectivity/", "connectivity"),
    ("hybrid/", "hybrid"),
];

fn toml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

/// Every config in `examples/configs/` resolves (no unknown key, every value of its type) for the
/// program it is for, so a sweep or a README command over it does not fail at its first line.
#[test]
fn every_shipped_config_resolves_for_its_program() {
    let root = repo().join("examples/configs");
    let mut files = Vec::new();
    toml_files(&root, &mut files);
    assert!(files.len() >= 20, "{} configs found", files.len());
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy();
        let rel = rel.replace('\\', "/");
        let (_, p) = SHIPPED_CONFIGS
            .iter()
            .find(|(prefix, _)| rel.starts_with(prefix))
            .unwrap_or_else(|| panic!("{rel}: add it to SHIPPED_CONFIGS with its program"));
        if let Err(e) = resolver(p, &file, &[]) {
            panic!("{rel} does not resolve for `{p}`: {e}");
        }
    }
}
