//! The deep linear experiment end to end from the balanced minimum (its spectrum is the closed
//! form), and every landscape config of `examples/configs` planned.

use dynlab::algos::continual::SupervisedConfig;
use dynlab::algos::landscape::{run_deep_linear, DeepLinearConfig};
use dynlab::harness::{load_config, parse_config, RunMode, RunOptions};
use dynlab_test_support::device_test;

#[device_test]
fn deep_linear_experiment_at_the_minimum_reproduces_the_closed_form() {
    let dir = std::env::temp_dir().join(format!("dynlab-deep-linear-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!(
        r#"
name = "deep-linear-ci"
seed = 2
runs_dir = "{}"
width = 3
depth = 2
start = "minimum"
lr = 0.1
steps = 4
log_every = 2
top_k = 3
lanczos_steps = 18
density_probes = 4
density_steps = 10
grid = 5
span = 0.5
"#,
        dir.display()
    );
    let (config, resolved): (DeepLinearConfig, String) = parse_config(&text, "test", &[]).unwrap();
    let options = RunOptions {
        mode: RunMode::New,
        progress: false,
        ..Default::default()
    };
    let o = run_deep_linear(&config, &resolved, options).unwrap();
    assert!(o.final_loss < 1e-9, "the minimum's loss {}", o.final_loss);
    assert_eq!(o.dense.len(), 18);
    for (d, c) in o.dense.iter().zip(&o.closed_form) {
        assert!(
            (d - c).abs() < 1e-4 * o.closed_form[0],
            "dense {d}, closed form {c}"
        );
    }
    assert!((o.lanczos[0] - o.closed_form[0]).abs() < 1e-4 * o.closed_form[0]);
    let trace: f64 = o.closed_form.iter().sum();
    assert!((o.slq_trace.0 - trace).abs() < 4.0 * o.slq_trace.1 + 1e-3 * trace);
    for file in [
        "training.png",
        "spectrum.png",
        "eigen_slices.png",
        "eigen_plane_contour.png",
        "eigen_plane_surface.png",
        "summary.toml",
    ] {
        assert!(o.run_dir.join(file).is_file(), "missing {file}");
    }
}

#[test]
fn landscape_configs_plan() {
    for name in [
        "landscape_plasticity",
        "landscape_norm",
        "landscape_convnet",
    ] {
        let path = format!("examples/configs/{name}.toml");
        let (c, _): (SupervisedConfig, String) = load_config(&path, &[]).unwrap();
        c.plan().unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(c.landscape.every_tasks > 0, "{path}");
    }
    let (c, _): (DeepLinearConfig, String) =
        load_config("examples/configs/landscape_deep_linear.toml", &[]).unwrap();
    c.check().unwrap();
    let (bad, _): (DeepLinearConfig, String) = load_config(
        "examples/configs/landscape_deep_linear.toml",
        &["start=\"identity\"".to_string()],
    )
    .unwrap();
    let e = bad.check().unwrap_err().to_string();
    assert!(e.contains("start"), "{e}");
}
