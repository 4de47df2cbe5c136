//! The grokking runner end to end: a history with nulls read back by a real DuckDB, and the
//! transformer memorising and then generalising.

use dynlab::algos::grokking::{run, GrokkingConfig};
use dynlab::harness::{parse_config, RunOptions};
use dynlab_test_support::device_test;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A fresh runs folder for `test`.
pub(crate) fn runs_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-grok-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The config `body` named `name`, its runs in `runs_dir`.
pub(crate) fn config(runs_dir: &Path, name: &str, body: &str) -> (GrokkingConfig, String) {
    let text = format!(
        "name = \"{name}\"\nruns_dir = \"{}\"\n{body}",
        runs_dir.display()
    );
    parse_config::<GrokkingConfig>(&text, name, &[]).unwrap()
}

/// `SELECT …` on the run's Parquet history through DuckDB's Python package (`.ci/run` installs
/// it), the single value printed.
fn duckdb(query: &str) -> String {
    let script = format!("import duckdb; print(duckdb.sql(\"\"\"{query}\"\"\").fetchall()[0][0])");
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs (DuckDB is read through its Python package)");
    assert!(
        out.status.success(),
        "DuckDB query failed (is the package installed? `python3 -m pip install duckdb`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const SMALL_MLP: &str = r#"
seed = 1
[data]
p = 7
train_frac = 0.6
[model]
hidden = [16]
[optim]
lr = 1e-2
weight_decay = 0.5
[train]
epochs = 24
checkpoint_every = 10
diagnostics_every = 0
[metrics]
smoothness_every = 5
jacobian_every = 4
input_hessian_every = 0
weight_curvature_every = 12
[loss]
lambda_spectral = 0.1
spectral_interval = 2
lambda_jacobian = 0.01
jacobian_interval = 3
"#;

#[device_test]
fn the_parquet_history_reads_back_in_duckdb_with_its_nulls() {
    let dir = runs_dir("duckdb");
    let (c, resolved) = config(&dir, "small", SMALL_MLP);
    let o = run(&c, &resolved, RunOptions::default()).unwrap();
    let file = o.run_dir.join("history.parquet");
    let from = format!("FROM '{}'", file.display());
    let summary = std::fs::read_to_string(o.run_dir.join("summary.toml")).unwrap();
    let best: f64 = summary
        .lines()
        .find_map(|l| l.strip_prefix("best_test_acc = "))
        .expect("summary has best_test_acc")
        .parse()
        .unwrap();
    let max: f64 = duckdb(&format!("SELECT max(test_acc) {from}"))
        .parse()
        .unwrap();
    assert_eq!(
        max as f32, best as f32,
        "DuckDB max(test_acc) vs the summary"
    );
    assert_eq!(duckdb(&format!("SELECT count(*) {from}")), "24");
    // Smoothness every 5 epochs (4 rows), the Jacobian every 4 (6), curvature every 12 (2),
    // the input Hessian never: null elsewhere.
    for (column, rows) in [
        ("smoothness", 4),
        ("jacobian_norm", 6),
        ("weight_hessian_trace", 2),
        ("fisher_trace", 2),
        ("input_hessian_trace", 0),
        ("spectral_penalty", 12),
        ("jacobian_penalty", 8),
        ("\"weight_norm.mlp.layers.0.weight\"", 2),
    ] {
        let count = duckdb(&format!("SELECT count({column}) {from}"));
        assert_eq!(count, rows.to_string(), "{column}");
    }
    let smooth: f64 = duckdb(&format!("SELECT smoothness {from} WHERE epoch = 20"))
        .parse()
        .unwrap();
    let ours = o.history.numbers("smoothness").unwrap()[19].unwrap();
    assert_eq!(smooth as f32, ours as f32);
    assert!((0.0..=1.0).contains(&smooth));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_grokking_config_plans_and_bad_keys_are_named() {
    use dynlab::algos::grokking::Network;
    use dynlab::harness::load_config;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/configs");
    for (file, network) in [
        ("validate.toml", "mlp"),
        ("validate_transformer.toml", "transformer"),
        ("baseline.toml", "mlp"),
        ("transformer.toml", "transformer"),
        ("power2022.toml", "transformer"),
        ("routed.toml", "routed"),
        ("grokking_quick.toml", "mlp"),
        ("grokking_full.toml", "mlp"),
    ] {
        let (c, _) = load_config::<GrokkingConfig>(&dir.join(file), &[]).unwrap();
        let plan = c.plan().unwrap_or_else(|e| panic!("{file}: {e}"));
        let kind = match plan.network {
            Network::Mlp => "mlp",
            Network::Transformer(_) => "transformer",
            Network::Routed(_) => "routed",
        };
        assert_eq!(kind, network, "{file}");
    }
    let (c, _) = load_config::<GrokkingConfig>(&dir.join("power2022.toml"), &[]).unwrap();
    assert_eq!(c.plan().unwrap().batch_size, Some(512));
    let base = std::fs::read_to_string(dir.join("validate_transformer.toml")).unwrap();
    for (set, key) in [
        ("model.type=\"cnn\"", "model.type"),
        ("model.n_heads=3", "model.n_heads"),
        ("model.activation=\"tanh\"", "model.activation"),
        ("replicas=2", "replicas"),
        ("loss.lambda_routing=0.1", "loss.lambda_routing"),
        ("metrics.jacobian_probes=0", "metrics.jacobian_probes"),
    ] {
        let (c, _) = parse_config::<GrokkingConfig>(&base, "bad", &[set.to_string()]).unwrap();
        let e = c.plan().unwrap_err().to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
}

/// (a + b) mod 13 with 70% of the table, a one-layer transformer of width 32 (2 heads, MLP 128),
/// AdamW lr 5e-3 and weight decay 3: memorises in ~100 epochs and generalises ~400 later.
const TINY_TRANSFORMER: &str = r#"
seed = 0
[data]
p = 13
train_frac = 0.7
[model]
type = "transformer"
d_model = 32
n_heads = 2
d_mlp = 128
[optim]
method = "adamw"
lr = 5e-3
weight_decay = 3.0
decay_on = "all"
betas = [0.9, 0.98]
warmup_steps = 10
[train]
epochs = 1500
checkpoint_every = 500
diagnostics_every = 0
stop_after_grokking = 5
[metrics]
smoothness_every = 100
jacobian_every = 100
input_hessian_every = 0
"#;

#[device_test]
fn a_small_transformer_memorises_then_generalises() {
    let dir = runs_dir("transformer");
    let (c, resolved) = config(&dir, "tiny-transformer", TINY_TRANSFORMER);
    let o = run(&c, &resolved, RunOptions::default()).unwrap();
    let column = |name: &str| -> Vec<f64> {
        let cells = o.history.numbers(name).unwrap();
        cells.into_iter().map(|v| v.unwrap()).collect()
    };
    let (train_acc, test_acc) = (column("train_acc"), column("test_acc"));
    let perfect = 1 + train_acc
        .iter()
        .position(|&a| a == 1.0)
        .expect("training accuracy reached 100%") as u64;
    let grokked = o.grokked_epoch.expect("test accuracy reached 95%");
    assert!(
        test_acc[perfect as usize - 1] < 0.5,
        "test accuracy {} when training accuracy reached 100%",
        test_acc[perfect as usize - 1]
    );
    assert!(
        grokked >= 3 * perfect && grokked >= perfect + 200,
        "train 100% at epoch {perfect}, test 95% at {grokked}"
    );
    for name in ["train_loss", "test_loss", "weight_norm", "repr_norm"] {
        assert!(column(name).iter().all(|v| v.is_finite()), "{name}");
    }
    let smooth = o.history.numbers("smoothness").unwrap();
    assert!(smooth.iter().flatten().all(|s| (0.0..=1.0).contains(s)));
    let due = column("epoch")
        .iter()
        .filter(|&&e| (e as u64).is_multiple_of(100))
        .count();
    assert_eq!(
        smooth.iter().flatten().count(),
        due,
        "smoothness every 100 epochs"
    );
    for file in [
        "curves.png",
        "spectrum.png",
        "history.parquet",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "{file}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
