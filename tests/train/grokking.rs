//! The grokking experiment end to end on a tiny problem: training accuracy reaches 100% first, test
//! accuracy exceeds 95% well after; and a run stopped and resumed logs the same history as one that
//! ran straight through.

use dynlab::algos::grokking::{run, GrokkingConfig};
use dynlab::harness::{parse_config, History, RunMode, RunOptions, Value};
use dynlab::models::Record;
use dynlab_test_support::device_test;

fn config(
    runs_dir: &std::path::Path,
    name: &str,
    body: &str,
    overrides: &[String],
) -> (GrokkingConfig, String) {
    let text = format!(
        "name = \"{name}\"\nruns_dir = \"{}\"\n{body}",
        runs_dir.display()
    );
    parse_config::<GrokkingConfig>(&text, name, overrides).unwrap()
}

fn runs_dir(test: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-runs-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// p = 23, 70% of the table, one hidden layer, AdamW with strong decay: memorises in ~50 epochs and
/// generalises hundreds of epochs later.
const TINY: &str = r#"
seed = 0
[data]
p = 23
train_frac = 0.7
[model]
hidden = [128]
[optim]
lr = 1e-2
weight_decay = 1.0
decay_on = "all"
[train]
epochs = 2500
checkpoint_every = 1000
diagnostics_every = 50
stop_after_grokking = 10
"#;

#[device_test]
fn tiny_config_memorises_then_groks() {
    let dir = runs_dir("grok");
    let (c, resolved) = config(&dir, "tiny", TINY, &[]);
    let o = run(&c, &resolved, RunOptions::default()).unwrap();
    let memorised = o.memorised_epoch.expect("training accuracy reached 99%");
    let grokked = o.grokked_epoch.expect("test accuracy reached 95%");
    let column = |name: &str| -> Vec<f64> {
        let cells = o.history.numbers(name).unwrap();
        cells.into_iter().map(|v| v.unwrap()).collect()
    };
    let (epochs, train_acc, test_acc) = (column("epoch"), column("train_acc"), column("test_acc"));
    let perfect_row = train_acc
        .iter()
        .position(|&a| a == 1.0)
        .expect("training accuracy reached 100%");
    let perfect = epochs[perfect_row] as u64;
    let at_memorisation = test_acc[memorised as usize - 1];
    assert!(
        at_memorisation < 0.5,
        "test accuracy {at_memorisation} at memorisation"
    );
    assert!(
        grokked >= 3 * perfect && grokked >= perfect + 200,
        "train 100% at {perfect}, test 95% at {grokked}"
    );
    assert!(
        *test_acc.last().unwrap() > 0.9,
        "test accuracy fell back after grokking"
    );
    for name in ["train_loss", "test_loss", "weight_norm"] {
        assert!(column(name).iter().all(|v| v.is_finite()), "{name}");
    }
    // Diagnostics every 50 epochs, null in between.
    let ratio = o.history.numbers("adam_moment_ratio").unwrap();
    for (row, v) in ratio.iter().enumerate() {
        assert_eq!(v.is_some(), (row + 1) % 50 == 0, "epoch {}", row + 1);
        assert!(v.is_none_or(|v| v.is_finite()));
    }
    for file in [
        "config.toml",
        "history.csv",
        "history.parquet",
        "checkpoint.safetensors",
        "curves.png",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "{file} written");
    }
    let csv = std::fs::read_to_string(o.run_dir.join("history.csv")).unwrap();
    // Bit-identical round trip.
    assert_eq!(
        History::from_csv(&csv, &o.history.types()).unwrap(),
        o.history
    );
    let parquet = std::fs::read(o.run_dir.join("history.parquet")).unwrap();
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let summary = std::fs::read_to_string(o.run_dir.join("summary.toml")).unwrap();
    for key in [
        "grokked_epoch",
        "git_revision",
        "device",
        "tuned_kernels",
        "batch_order",
    ] {
        assert!(summary.contains(key), "summary lacks {key}:\n{summary}");
    }
    let png = std::fs::read(o.run_dir.join("curves.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // A second run into the same folder must be asked for.
    let e = run(&c, &resolved, RunOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume") && e.contains("--overwrite"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

const RESUMABLE: &str = r#"
seed = 3
[data]
p = 11
train_frac = 0.6
op = "mul"
[model]
encoding = "embedding"
embed_dim = 8
hidden = [16]
[optim]
lr = 3e-3
weight_decay = 0.1
warmup_steps = 5
schedule = "cosine"
clip_norm = 1.0
[train]
epochs = 16
batch_size = 16
checkpoint_every = 3
diagnostics_every = 2
"#;

#[device_test]
fn resuming_gives_the_same_history_as_running_straight() {
    let dir = runs_dir("resume");
    let (straight, text) = config(&dir, "straight", RESUMABLE, &[]);
    let full = run(&straight, &text, RunOptions::default())
        .unwrap()
        .history;
    assert_eq!(full.rows(), 16);

    let (split, text) = config(&dir, "split", RESUMABLE, &[]);
    let stop_at_8 = RunOptions {
        stop_at: Some(8),
        ..Default::default()
    };
    let half = run(&split, &text, stop_at_8).unwrap();
    assert_eq!(half.history.rows(), 8);
    let ck = Record::load(
        half.run_dir.join("checkpoint.safetensors"),
        Some(&dynlab_test_support::device()),
    )
    .unwrap();
    // 73 training pairs in batches of 16: 5 steps per epoch.
    let steps: u64 = ck.value("experiment.trainer.optim.steps").unwrap();
    assert_eq!((ck.value::<u64>("units").unwrap(), steps), (8, 8 * 5));
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let resumed = run(&split, &text, resume).unwrap();
    assert_eq!(resumed.epochs_run, 8);
    // Everything but the wall time matches (printed, as NaN ≠ NaN: the last epoch's
    // update-to-decay ratio is 0/0 at learning rate 0); diagnostics are null on odd epochs.
    let without_time = |h: &History| {
        let columns = h.columns().iter().filter(|c| c.name != "seconds");
        format!("{:?}", columns.collect::<Vec<_>>())
    };
    assert_eq!(without_time(&full), without_time(&resumed.history));
    let diagnostics = full.column("adam_moment_ratio").unwrap();
    assert_eq!(diagnostics.values[0], Value::Null);
    assert!(matches!(diagnostics.values[1], Value::F32(v) if v.is_finite()));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Three seeds as stacked replicas: replica 0 repeats the single run of its seed, each replica has
/// its own rows, files, phases and summary entries, and a resumed replicated run repeats a straight
/// one.
#[device_test]
fn replicas_run_as_separate_seeds_in_one_run() {
    let dir = runs_dir("replicas");
    let (single, text) = config(&dir, "single", RESUMABLE, &[]);
    let one = run(&single, &text, RunOptions::default()).unwrap().history;
    let three = ["replicas=3".to_string()];
    let (stacked, text) = config(&dir, "stacked", RESUMABLE, &three);
    let o = run(&stacked, &text, RunOptions::default()).unwrap();
    assert_eq!(o.history.rows(), 3 * 16);
    assert_eq!(o.replica_phases.len(), 3);
    let first = o.history.rows_where("replica", 0.0);
    for name in [
        "train_loss",
        "train_acc",
        "test_acc",
        "grad_norm",
        "weight_norm",
    ] {
        let (a, b) = (first.numbers(name).unwrap(), one.numbers(name).unwrap());
        for (x, y) in a.iter().zip(&b) {
            let (x, y) = (x.unwrap(), y.unwrap());
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "{name}: {x} vs {y}"
            );
        }
    }
    let seeds: Vec<f64> = (0..3)
        .map(|r| {
            o.history
                .rows_where("replica", r as f64)
                .last("train_loss")
                .unwrap()
        })
        .collect();
    assert!(
        seeds[0] != seeds[1] && seeds[1] != seeds[2],
        "replicas differ: {seeds:?}"
    );
    for r in 0..3 {
        for file in ["history.csv", "history.parquet", "curves.png"] {
            let path = o.run_dir.join(format!("replicas/{r}/{file}"));
            assert!(path.is_file(), "{} written", path.display());
        }
    }
    let summary = std::fs::read_to_string(o.run_dir.join("summary.toml")).unwrap();
    assert!(summary.contains("replica_final_test_acc"), "{summary}");

    let (split, text) = config(&dir, "split", RESUMABLE, &three);
    let stop_at_7 = RunOptions {
        stop_at: Some(7),
        ..Default::default()
    };
    run(&split, &text, stop_at_7).unwrap();
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..Default::default()
    };
    let resumed = run(&split, &text, resume).unwrap().history;
    let without_time = |h: &History| {
        let columns = h.columns().iter().filter(|c| c.name != "seconds");
        format!("{:?}", columns.collect::<Vec<_>>())
    };
    assert_eq!(without_time(&o.history), without_time(&resumed));
    std::fs::remove_dir_all(&dir).unwrap();
}
