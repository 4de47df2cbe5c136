//! The plasticity suite: the supervised runner end to end on the shipped digits (rank tracking
//! over permuted tasks, every metric column present and finite, dead units equal to a host
//! recount from the checkpointed model), the unit counts and rank dynamics against host
//! recounts, and the runner's config errors.

mod bit_flipping;
mod gnt;
mod rank_restoring;

use dynlab::algos::continual::measure::hidden_features;
use dynlab::algos::continual::{probe_inputs, run, SupervisedConfig};
use dynlab::algos::metrics::{rank_dynamics, unit_stats};
use dynlab::harness::{parse_config, RunMode, RunOptions, Value};
use dynlab::models::{build_model, Activation, Module, Record};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, random, HostRng};

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-plasticity-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config_text(runs_dir: &std::path::Path) -> String {
    format!(
        r#"
name = "rank-ci"
seed = 3
runs_dir = "{}"

[data]
dataset = "digits"
flatten = true
stream = "permuted_inputs"
tasks = 3
examples_per_task = 200

[net]
model = "deep_ffnn"
input_size = 64
num_features = 24
num_hidden_layers = 2
num_outputs = 10
init = "kaiming"

[learner]
batch_size = 16

[learner.optim]
method = "sgd"
lr = 0.05

[evaluation]
rank_every = 10
probe_size = 64
"#,
        runs_dir.display()
    )
}

/// Every column a measurement writes for a network with `layers` hidden layers.
fn expected_columns(layers: usize) -> Vec<String> {
    let mut names: Vec<String> = [
        "step",
        "task",
        "lr",
        "train_loss",
        "train_acc",
        "test_loss",
        "test_acc",
        "grad_norm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for i in 0..layers {
        for m in [
            "effective_rank",
            "approximate_rank",
            "abs_approximate_rank",
            "matrix_rank",
            "numerical_rank",
            "rank_at_energy",
            "nuclear_norm",
            "dead",
            "dormant",
            "saturated",
            "feature_norm",
        ] {
            names.push(format!("l{i}_{m}"));
        }
    }
    for r in ["effective_rank", "approximate_rank"] {
        for d in ["drop_gini", "decay_centroid", "normalized_aurc"] {
            names.push(format!("{r}_{d}"));
        }
    }
    for l in 0..=layers {
        names.push(format!("weight_norm.layers.{l}.weight"));
    }
    names
}

#[device_test]
fn rank_tracking_on_permuted_digits_logs_every_metric_and_counts_dead_units() {
    let dir = scratch("rank");
    let text = config_text(&dir);
    let (config, resolved): (SupervisedConfig, String) = parse_config(&text, "test", &[]).unwrap();
    let options = RunOptions {
        mode: RunMode::New,
        progress: false,
        ..Default::default()
    };
    let o = run(&config, &resolved, options).unwrap();
    let h = &o.history;
    // 3 tasks of ⌈200/16⌉ = 13 steps: 39 steps, measured every 10 → 4 rows.
    assert_eq!(h.rows(), 4);
    assert_eq!(h.last("step"), Some(39.0));
    let tasks: Vec<f64> = (0..4)
        .map(|r| h.cell("task", r).and_then(Value::as_f64).unwrap())
        .collect();
    assert_eq!(tasks, [0.0, 1.0, 2.0, 2.0]);
    for name in expected_columns(2) {
        let column = h
            .numbers(&name)
            .unwrap_or_else(|| panic!("no column {name}"));
        for (row, v) in column.iter().enumerate() {
            let v = v.unwrap_or_else(|| panic!("{name} null at row {row}"));
            assert!(v.is_finite(), "{name} = {v} at row {row}");
        }
    }
    assert_eq!(o.task_test_acc.len(), 3);
    for file in [
        "history.csv",
        "history.parquet",
        "accuracy.png",
        "ranks.png",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "{file}");
    }
    // The last row's dead units, recounted on the host from the checkpointed model on the
    // probe batch of the last task.
    let d = device();
    let plan = config.plan().unwrap();
    let mut model = build_model(&config.net.model, &plan.model, &mut Rng::new(0), &d).unwrap();
    let record = Record::load(o.run_dir.join("checkpoint.safetensors"), Some(&d)).unwrap();
    record
        .part("experiment")
        .part("trainer")
        .part("model")
        .restore_module(&mut model)
        .unwrap();
    let probe = probe_inputs(&config, 2, &d).unwrap();
    assert_eq!(probe.shape(), &[64, 64]);
    let features = hidden_features(&model, &probe).unwrap();
    assert_eq!(features.len(), 2);
    for (i, (_, f)) in features.iter().enumerate() {
        let units = f.shape()[1];
        let v = f.to_vec::<f32>().unwrap();
        let dead = (0..units)
            .filter(|&u| v.iter().skip(u).step_by(units).all(|&x| x == 0.0))
            .count();
        assert_eq!(
            h.last(&format!("l{i}_dead")),
            Some(dead as f64),
            "layer {i}"
        );
    }
    // Resuming a finished run continues exactly: nothing left to run, the same history.
    let again = run(
        &config,
        &resolved,
        RunOptions {
            mode: RunMode::Resume,
            ..options
        },
    )
    .unwrap();
    assert_eq!(again.history.rows(), 4);
    // A run stopped after 2 measurements and resumed logs the straight run's history.
    let mut halves = config.clone();
    halves.name = "rank-ci-resumed".into();
    let first = RunOptions {
        stop_at: Some(2),
        ..options
    };
    assert_eq!(run(&halves, &resolved, first).unwrap().history.rows(), 2);
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..options
    };
    let resumed = run(&halves, &resolved, resume).unwrap().history;
    for column in h.columns().iter().filter(|c| c.name != "seconds") {
        assert_eq!(
            resumed.numbers(&column.name),
            h.numbers(&column.name),
            "{} after resuming",
            column.name
        );
    }
}

#[device_test]
fn unit_counts_match_a_host_recount() {
    let mut rng = HostRng::new(5);
    let (samples, units) = (50, 7);
    let (_, h) = random(&mut rng, &[samples, units], -1.0, 1.0);
    let mut v: Vec<f32> = h.data.iter().map(|&x| x as f32).collect();
    // Unit 0 dead; unit 1 active on exactly one sample (2% of 50: not dormant); unit 2 never
    // positive but not zero (dormant, not dead); unit 3 at 0.995 or 0.001 (a saturated sigmoid).
    for s in 0..samples {
        v[s * units] = 0.0;
        v[s * units + 1] = if s == 7 { 0.5 } else { 0.0 };
        v[s * units + 2] = -0.3;
        v[s * units + 3] = if s % 2 == 0 { 0.995 } else { 0.001 };
    }
    let x = Tensor::from_slice(&v, &[samples, units], &device()).unwrap();
    let column = |u: usize| -> Vec<f32> { (0..samples).map(|s| v[s * units + u]).collect() };
    for activation in [Activation::Relu, Activation::Sigmoid, Activation::Tanh] {
        let stats = unit_stats(&x, activation).unwrap();
        let dead = (0..units)
            .filter(|&u| column(u).iter().all(|&a| a == 0.0))
            .count();
        let dormant = (0..units)
            .filter(|&u| {
                let active = column(u).iter().filter(|&&a| a > 0.0).count();
                (active as f64) < 0.01 * samples as f64
            })
            .count();
        let saturated = (0..units)
            .filter(|&u| column(u).iter().all(|&a| activation.is_saturated(a as f64)))
            .count();
        let norm = (0..samples)
            .map(|s| {
                (0..units)
                    .map(|u| (v[s * units + u] as f64).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .sum::<f64>()
            / samples as f64;
        assert_eq!(
            (stats.dead, stats.dormant, stats.saturated),
            (dead, dormant, saturated),
            "{activation:?}"
        );
        assert!((stats.feature_norm - norm).abs() < 1e-5, "{activation:?}");
    }
    assert_eq!(unit_stats(&x, Activation::Relu).unwrap().dead, 1);
    assert_eq!(unit_stats(&x, Activation::Relu).unwrap().dormant, 2);
    // For a sigmoid, values below 0.01 count as saturated too: units 0, 2 and 3.
    assert_eq!(unit_stats(&x, Activation::Sigmoid).unwrap().saturated, 3);
    let e = unit_stats(
        &Tensor::zeros(&[0, 3], &device()).unwrap(),
        Activation::Relu,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("unit_stats"), "{e}");
}

#[test]
fn rank_dynamics_of_known_rank_curves() {
    // Ranks 8 → 4 → 4 → 1: drops 0.5, 0, 0.75.
    let d = rank_dynamics(&[8.0, 4.0, 4.0, 1.0]);
    assert_eq!(d.drops, vec![0.5, 0.0, 0.75]);
    // Sorted drops 0, 0.5, 0.75 (n = 3, Σ = 1.25): Σ (2i − n − 1) d_(i) = −2·0 + 0·0.5 + 2·0.75.
    assert!((d.gini - 1.5 / (3.0 * 1.25)).abs() < 1e-12);
    assert!((d.centroid - (4.0 + 8.0 + 3.0) / 17.0).abs() < 1e-12);
    // Trapezoids 6 + 4 + 2.5 over 8 · 3.
    assert!((d.normalized_aurc - 12.5 / 24.0).abs() < 1e-12);
    let flat = rank_dynamics(&[5.0, 5.0, 5.0]);
    assert_eq!((flat.gini, flat.normalized_aurc), (0.0, 1.0));
    let rising = rank_dynamics(&[2.0, 4.0]);
    assert_eq!((rising.drops[0], rising.gini), (-1.0, 0.0));
    let one = rank_dynamics(&[3.0]);
    assert_eq!((one.centroid, one.normalized_aurc), (0.0, 1.0));
}

#[test]
fn config_errors_name_the_key() {
    let dir = scratch("errors");
    let base = config_text(&dir);
    let plan_error = |overrides: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let (config, _): (SupervisedConfig, String) =
            parse_config(&base, "test", &overrides).unwrap();
        config.plan().unwrap_err().to_string()
    };
    let e = plan_error(&["data.stream=\"shuffled\""]);
    assert!(
        e.contains("data.stream") && e.contains("permuted_inputs"),
        "{e}"
    );
    let e = plan_error(&["data.stream=\"none\""]);
    assert!(e.contains("data.tasks"), "{e}");
    let e = plan_error(&["data.dataset=\"idx\""]);
    assert!(e.contains("data.path"), "{e}");
    let e = plan_error(&["learner.kind=\"cbq\""]);
    assert!(e.contains("learner") && e.contains("backprop"), "{e}");
    let e = plan_error(&["learner.kind=\"rr_cbp2\"", "net.model=\"convnet\""]);
    assert!(
        e.contains("learner.kind") && e.contains("rank restoring"),
        "{e}"
    );
    let e = plan_error(&["evaluation.rank_every=0"]);
    assert!(e.contains("evaluation"), "{e}");
    let bad_key =
        parse_config::<SupervisedConfig>(&base, "test", &["data.stream_kind=\"x\"".to_string()]);
    assert!(bad_key.is_err());
}

/// `reset_head` zeroes the output layer at each task start and nothing else: with a step size so
/// small that steps change no weight by more than 1e-20, a run over two tasks ends with the head at (almost) zero and
/// every other parameter at its initial value; without it the head keeps its initial value too.
#[device_test]
fn reset_head_zeroes_the_output_layer_at_task_starts() {
    let dir = scratch("reset-head");
    let base = config_text(&dir)
        .replace("tasks = 3", "tasks = 2")
        .replace("examples_per_task = 200", "examples_per_task = 32")
        .replace("lr = 0.05", "lr = 1e-30")
        .replace("rank_every = 10", "rank_every = 2");
    let d = device();
    for reset in [true, false] {
        let overrides = vec![
            format!("learner.reset_head={reset}"),
            format!("name=\"reset-head-{reset}\""),
        ];
        let (config, resolved): (SupervisedConfig, String) =
            parse_config(&base, "test", &overrides).unwrap();
        let options = RunOptions {
            mode: RunMode::New,
            progress: false,
            ..Default::default()
        };
        let o = run(&config, &resolved, options).unwrap();
        let plan = config.plan().unwrap();
        let init = build_model(&config.net.model, &plan.model, &mut Rng::new(3), &d).unwrap();
        let mut trained =
            build_model(&config.net.model, &plan.model, &mut Rng::new(0), &d).unwrap();
        Record::load(o.run_dir.join("checkpoint.safetensors"), Some(&d))
            .unwrap()
            .part("experiment")
            .part("trainer")
            .part("model")
            .restore_module(&mut trained)
            .unwrap();
        for ((name, p0), (_, p1)) in init.params().iter().zip(trained.params()) {
            let (v0, v1) = (
                p0.value().to_vec::<f32>().unwrap(),
                p1.value().to_vec::<f32>().unwrap(),
            );
            if reset && name.starts_with("layers.2.") {
                assert!(v1.iter().all(|v| v.abs() < 1e-20), "{name} not reset");
                assert!(name.ends_with("bias") || v0.iter().any(|v| v.abs() > 1e-3));
            } else {
                let same = v0
                    .iter()
                    .zip(&v1)
                    .all(|(a, b)| (a - b).abs() <= 1e-20 + 1e-6 * a.abs());
                assert!(same, "{name} changed (reset_head {reset})");
            }
        }
    }
}
