//! The supervised runner with `[landscape]`: measurements at the start of every second task and at
//! the end, the trajectory columns on every row, the figures, and a resumed run that reproduces
//! the uninterrupted one.

use dynlab::algos::continual::{run, SupervisedConfig};
use dynlab::harness::{parse_config, RunMode, RunOptions};
use dynlab_test_support::device_test;

fn scratch(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-landscape-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(runs_dir: &std::path::Path) -> (SupervisedConfig, String) {
    let text = format!(
        r#"
name = "landscape-ci"
seed = 5
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
num_features = 16
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

[landscape]
every_tasks = 2
rows = 64
top_k = 2
lanczos_steps = 8
density_probes = 1
density_steps = 6
grid = 3
trajectory = true
sharpness_steps = 4
jacobian_examples = 3
"#,
        runs_dir.display()
    );
    parse_config(&text, "test", &[]).unwrap()
}

fn options(mode: RunMode, stop_at: Option<u64>) -> RunOptions {
    RunOptions {
        mode,
        progress: false,
        stop_at,
        ..Default::default()
    }
}

const COLUMNS: [&str; 12] = [
    "jacobian_effective_rank",
    "jacobian_numerical_rank",
    "interpolation_barrier",
    "landscape_task",
    "hessian_top1",
    "hessian_top2",
    "hessian_trace",
    "landscape_loss",
    "gradient_lipschitz",
    "effective_lr",
    "sharpness",
    "two_over_lr",
];

#[device_test]
fn landscape_measurements_every_two_tasks_and_resume_exactly() {
    let dir = scratch("whole");
    let (c, resolved) = config(&dir);
    let whole = run(&c, &resolved, options(RunMode::New, None)).unwrap();
    let h = &whole.history;
    // 3 tasks of 13 steps, rows every 10 steps: task 0 starts in row 0, task 2 in row 2 (step
    // 27); the end measurement goes to the summary.
    assert_eq!(h.rows(), 4);
    let tasks = h.numbers("landscape_task").unwrap();
    assert_eq!(tasks, [Some(0.0), None, Some(2.0), None]);
    let top1 = h.numbers("hessian_top1").unwrap();
    let top2 = h.numbers("hessian_top2").unwrap();
    for row in [0, 2] {
        let (a, b) = (top1[row].unwrap(), top2[row].unwrap());
        assert!(
            a.is_finite() && b.is_finite() && a >= b,
            "row {row}: {a}, {b}"
        );
        assert!(
            a > 0.0,
            "the top eigenvalue of a cross-entropy Hessian is positive: {a}"
        );
        let numerical = h.numbers("jacobian_numerical_rank").unwrap()[row].unwrap();
        let effective = h.numbers("jacobian_effective_rank").unwrap()[row].unwrap();
        // 16 features of 64 inputs: at most 16.
        assert!((1.0..=16.0).contains(&numerical), "row {row}: {numerical}");
        assert!(
            effective > 0.0 && effective <= numerical + 1e-9,
            "row {row}: {effective}"
        );
    }
    let barrier = h.numbers("interpolation_barrier").unwrap();
    assert_eq!(barrier[0], None, "no previous measurement at the first");
    assert!(
        barrier[2].is_some_and(|b| b.is_finite() && b >= -1e-6),
        "{barrier:?}"
    );
    for row in 0..4 {
        for name in ["gradient_lipschitz", "effective_lr", "sharpness"] {
            let v = h.numbers(name).unwrap()[row].unwrap();
            assert!(v.is_finite() && v > 0.0, "{name} = {v} at row {row}");
        }
        assert_eq!(
            h.numbers("two_over_lr").unwrap()[row],
            Some(2.0 / 0.05f32 as f64)
        );
    }
    let run_dir = &whole.run_dir;
    for file in [
        "landscape.png",
        "trajectory.png",
        "landscape/task_0_contour.png",
        "landscape/task_0_surface.png",
        "landscape/task_0_slices.png",
        "landscape/task_0_density.png",
        "landscape/task_2_contour.png",
        "landscape/end_surface.png",
        "landscape/task_2_interpolation.png",
        "landscape/end_interpolation.png",
    ] {
        assert!(run_dir.join(file).is_file(), "missing {file}");
    }
    let summary = std::fs::read_to_string(run_dir.join("summary.toml")).unwrap();
    for key in [
        "mean_hvp_seconds",
        "hessian_top1",
        "end_hessian_top1",
        "end_interpolation_barrier",
    ] {
        assert!(summary.contains(key), "no {key} in the summary");
    }

    let dir = scratch("resumed");
    let (c, resolved) = config(&dir);
    run(&c, &resolved, options(RunMode::New, Some(2))).unwrap();
    let resumed = run(&c, &resolved, options(RunMode::Resume, None)).unwrap();
    for name in COLUMNS {
        assert_eq!(
            resumed.history.numbers(name),
            h.numbers(name),
            "{name} differs after a resume"
        );
    }
    let end = |dir: &std::path::Path| {
        let text = std::fs::read_to_string(dir.join("summary.toml")).unwrap();
        let table: toml::Table = text.parse().unwrap();
        table["end_hessian_top1"].as_float().unwrap()
    };
    assert_eq!(end(&resumed.run_dir), end(run_dir));
}

#[test]
fn landscape_config_errors_name_the_key() {
    let dir = scratch("errors");
    for (set, key) in [
        ("landscape.lanczos_steps=1", "landscape.lanczos_steps"),
        ("landscape.grid=1", "landscape.grid"),
        (
            "landscape.bias_direction=\"all\"",
            "landscape.bias_direction",
        ),
        ("landscape.span=0.0", "landscape.span"),
        ("evaluation.rank_every=20", "evaluation.rank_every"),
    ] {
        let (base, _) = config(&dir);
        let text = toml::to_string(&base).unwrap();
        let (c, _): (SupervisedConfig, String) =
            parse_config(&text, "test", &[set.to_string()]).unwrap();
        let e = c.plan().unwrap_err().to_string();
        assert!(e.contains(key), "{set}: {e}");
    }
}
