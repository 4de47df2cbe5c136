use dynlab::algos::hybrid::{run_hybrid, HybridRunConfig};
use dynlab::harness::{parse_config, RunMode, RunOptions};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dynlab-hybrid-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// TMS 5-2 for 90 steps, one seed, a one-point sweep; small windows so episodes start early.
fn config(runs_dir: &std::path::Path, extra: &[&str]) -> (HybridRunConfig, String) {
    let text = format!(
        r#"
name = "tiny"
runs_dir = "{}"
seeds = [3]
steps = 90

[task]
kind = "tms"
features = 5
hidden = 2
probability = 0.05
batch = 256
eval_batch = 512

[optim]
method = "adamw"
lr = 5e-3
weight_decay = 0.01

[hybrid]
warmup_steps = 20
min_full_steps = 5
horizons = [5, 10]

[hybrid.dynamics]
members = 3
hidden = 8
window = 4

[sweep]
horizons = [5]
thresholds = [0.3]
seeds = [3]
"#,
        runs_dir.display()
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    parse_config(&text, "test", &overrides).unwrap()
}

fn options(mode: RunMode, stop_at: Option<u64>) -> RunOptions {
    RunOptions {
        mode,
        progress: false,
        stop_at,
        ..Default::default()
    }
}

#[test]
fn the_runner_compares_with_the_baseline_and_resumes_exactly() {
    let dir = scratch("full");
    let (c, resolved) = config(&dir, &[]);
    let o = run_hybrid(&c, &resolved, options(RunMode::New, None)).unwrap();
    let modes: Vec<&str> = o.results.iter().map(|r| r.mode.as_str()).collect();
    assert_eq!(modes, ["baseline", "hybrid", "sweep"]);
    let (base, hybrid) = (&o.results[0], &o.results[1]);
    assert_eq!((base.backward_passes, base.skipped), (90, 0.0));
    assert!(hybrid.backward_passes < 90, "{hybrid:?}");
    assert!((hybrid.skipped - (1.0 - hybrid.backward_passes as f64 / 90.0)).abs() < 1e-12);
    let change = (hybrid.train_loss - base.train_loss) / base.train_loss;
    assert!((hybrid.relative_loss_change - change).abs() < 1e-12);
    assert!(hybrid.train_loss.is_finite() && hybrid.test_loss.is_finite());
    assert!(base.test_accuracy.is_nan(), "regression has no accuracy");
    assert!(hybrid.dynamics_seconds > 0.0 && hybrid.dynamics_seconds < hybrid.seconds);
    for file in [
        "history.csv",
        "history.parquet",
        "sweep.csv",
        "losses.png",
        "sweep.png",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "missing {file}");
    }
    let sweep = std::fs::read_to_string(o.run_dir.join("sweep.csv")).unwrap();
    assert_eq!(
        sweep.lines().count(),
        3,
        "header, the hybrid run and one sweep point"
    );
    let summary: toml::Table = std::fs::read_to_string(o.run_dir.join("summary.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let mean = summary["hybrid_backward_passes_mean"].as_float().unwrap();
    assert_eq!(mean, hybrid.backward_passes as f64);
    for key in [
        "target_40pct_skipped_at_1pct_loss_met",
        "target_met_by_the_seed_mean",
        "baseline_train_loss_seed_spread",
    ] {
        assert!(summary.contains_key(key), "{key}");
    }
    // Each run's wall time is its own: together they fit in the experiment's.
    let own: f64 = o.results.iter().map(|r| r.seconds).sum();
    let total = summary["seconds"].as_float().unwrap();
    assert!(own <= total + 0.1, "runs {own} s, experiment {total} s");

    let dir = scratch("resumed");
    let (c, resolved) = config(&dir, &[]);
    run_hybrid(&c, &resolved, options(RunMode::New, Some(1))).err();
    let resumed = run_hybrid(&c, &resolved, options(RunMode::Resume, None)).unwrap();
    for (a, b) in resumed.results.iter().zip(&o.results) {
        assert_eq!(
            (a.backward_passes, a.train_loss, a.test_loss, a.rollbacks),
            (b.backward_passes, b.train_loss, b.test_loss, b.rollbacks),
            "{} differs after a resume",
            a.mode
        );
    }
}

#[test]
fn config_errors_name_the_key() {
    let dir = scratch("errors");
    for (set, key) in [
        ("sweep.seeds=[4]", "sweep.seeds"),
        ("seeds=[]", "seeds"),
        ("steps=10", "steps"),
        ("hybrid.horizons=[]", "hybrid.horizons"),
    ] {
        let (c, resolved) = config(&dir, &[set]);
        let e = run_hybrid(&c, &resolved, options(RunMode::New, None))
            .unwrap_err()
            .to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
    let text =
        "name = \"x\"\nseeds = [0]\nsteps = 100\n[task]\nkind = \"mnist\"\n[optim]\nlr = 0.1\n";
    let e = parse_config::<HybridRunConfig>(text, "test", &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("mnist") || e.contains("kind"), "{e}");
}

#[test]
fn a_classifier_reports_its_test_accuracy() {
    let dir = scratch("grokking");
    let text = format!(
        r#"
name = "grok"
runs_dir = "{}"
seeds = [1]
steps = 12

[task]
kind = "grokking"
p = 7
op = "add"
train_frac = 0.6
hidden = [16]

[optim]
method = "adamw"
lr = 1e-2
weight_decay = 1.0

[hybrid]
warmup_steps = 4
min_full_steps = 2
horizons = [3]

[hybrid.dynamics]
members = 2
hidden = 4
window = 3

[sweep]
horizons = [3]
thresholds = [0.3]
seeds = [1]
"#,
        dir.display()
    );
    let (config, resolved) = parse_config(&text, "test", &[]).unwrap();
    let outcome = run_hybrid(&config, &resolved, options(RunMode::New, None)).unwrap();
    for r in &outcome.results {
        assert!(
            (0.0..=1.0).contains(&r.test_accuracy),
            "{} accuracy {}",
            r.mode,
            r.test_accuracy
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
