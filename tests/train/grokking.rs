//! The grokking experiment end to end on a tiny problem: training accuracy reaches 100% first, test
//! accuracy exceeds 95% well after; and a run stopped and resumed logs the same history as one that
//! ran straight through.

use dynlab::algos::grokking::{run, GrokkingConfig, RunOptions};
use dynlab::algos::run::parse_config;
use dynlab::algos::train::{Checkpoint, History};

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

#[test]
fn tiny_config_memorises_then_groks() {
    let dir = runs_dir("grok");
    let (c, resolved) = config(&dir, "tiny", TINY, &[]);
    let o = run(&c, &resolved, RunOptions::default()).unwrap();
    let memorised = o.memorised_epoch.expect("training accuracy reached 99%");
    let grokked = o.grokked_epoch.expect("test accuracy reached 95%");
    let h = &o.history.records;
    let perfect = h
        .iter()
        .find(|r| r.train_acc == 1.0)
        .expect("training accuracy reached 100%")
        .epoch;
    let at_memorisation = h[memorised as usize - 1];
    assert!(
        at_memorisation.test_acc < 0.5,
        "test accuracy {} at memorisation",
        at_memorisation.test_acc
    );
    assert!(
        grokked >= 3 * perfect && grokked >= perfect + 200,
        "train 100% at {perfect}, test 95% at {grokked}"
    );
    assert!(
        h.last().unwrap().test_acc > 0.9,
        "test accuracy fell back after grokking"
    );
    assert!(h
        .iter()
        .all(|r| r.train_loss.is_finite() && r.test_loss.is_finite() && r.weight_norm.is_finite()));
    for file in [
        "config.toml",
        "history.csv",
        "checkpoint.safetensors",
        "curves.png",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "{file} written");
    }
    let csv = std::fs::read_to_string(o.run_dir.join("history.csv")).unwrap();
    // Bit-identical round trip (Debug output, since NaN marks epochs without diagnostics).
    assert_eq!(
        format!("{:?}", History::from_csv(&csv).unwrap()),
        format!("{:?}", o.history)
    );
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

#[test]
fn resuming_gives_the_same_history_as_running_straight() {
    let dir = runs_dir("resume");
    let (straight, text) = config(&dir, "straight", RESUMABLE, &[]);
    let full = run(&straight, &text, RunOptions::default())
        .unwrap()
        .history;
    assert_eq!(full.records.len(), 16);

    let (split, text) = config(&dir, "split", RESUMABLE, &[]);
    let stop_at_8 = RunOptions {
        stop_at: Some(8),
        ..Default::default()
    };
    let half = run(&split, &text, stop_at_8).unwrap();
    assert_eq!(half.history.records.len(), 8);
    let ck = Checkpoint::load(
        half.run_dir.join("checkpoint.safetensors"),
        &crate::common::device(),
    )
    .unwrap();
    // 73 training pairs in batches of 16: 5 steps per epoch.
    assert_eq!((ck.epoch, ck.optimizer_steps), (8, 8 * 5));
    let resumed = run(
        &split,
        &text,
        RunOptions {
            resume: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(resumed.epochs_run, 8);
    let strip = |h: &History| {
        h.records
            .iter()
            .map(|r| r.without_time())
            .collect::<Vec<_>>()
    };
    let (a, b) = (strip(&full), strip(&resumed.history));
    for (x, y) in a.iter().zip(&b) {
        // NaN (no diagnostics that epoch) compares unequal: compare the printed records.
        assert_eq!(format!("{x:?}"), format!("{y:?}"));
    }
    assert_eq!(a.len(), b.len());
    std::fs::remove_dir_all(&dir).unwrap();
}
