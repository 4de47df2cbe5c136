//! The bit-flipping benchmark end to end on a short stream: continual backprop ends below backprop
//! (fixed seeds), each learner's binned error is the mean of its seeds' with the right standard
//! error, a stopped run resumes to the straight run's history, and bad configs name their key.

use super::scratch;
use dynlab::algos::continual::{run_bit_flipping, BitFlippingConfig};
use dynlab::harness::{parse_config, RunMode, RunOptions};
use dynlab_test_support::device_test;

/// A short stream on which backprop loses plasticity: step size 0.03 (3× the paper's), the
/// flipping bits changed every 200 examples (50× as often), and CBP replacing units 10× as fast
/// (ρ 1e-3, maturity 50). Probed in release over 12 seeds, mean squared error per 1000 examples:
/// BP rose from 1.23 to 1.48–1.57 over 10,000 examples, CBP ended at 1.12–1.31.
fn config_text(runs_dir: &std::path::Path, examples: usize) -> String {
    format!(
        r#"
name = "bit-flipping-ci"
seed = 0
seeds = 12
runs_dir = "{}"

[problem]
flip_every = 200
examples = {examples}

[net]
hidden = 5

[[learners]]
name = "bp"
kind = "backprop"
lr = 0.03

[[learners]]
name = "cbp"
kind = "cbp"
lr = 0.03

[learners.cbp]
replacement_rate = 1e-3
maturity = 50

[logging]
bin = 2000
checkpoint_every = 2
"#,
        runs_dir.display()
    )
}

fn options() -> RunOptions {
    RunOptions {
        mode: RunMode::New,
        progress: false,
        ..Default::default()
    }
}

#[device_test]
fn continual_backprop_ends_below_backprop_on_a_short_stream() {
    let dir = scratch("bit-flipping");
    let (config, resolved): (BitFlippingConfig, String) =
        parse_config(&config_text(&dir, 10000), "test", &[]).unwrap();
    let o = run_bit_flipping(&config, &resolved, options()).unwrap();
    let h = &o.history;
    assert_eq!(h.rows(), 5);
    let seeds = config.seeds;
    for learner in ["bp", "cbp"] {
        for row in 0..h.rows() {
            let per_seed: Vec<f64> = (0..seeds)
                .map(|s| h.numbers(&format!("{learner}_s{s}")).unwrap()[row].unwrap())
                .collect();
            assert!(per_seed.iter().all(|e| e.is_finite() && *e >= 0.0));
            let mean = per_seed.iter().sum::<f64>() / seeds as f64;
            let var = per_seed.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (seeds - 1) as f64;
            let se = (var / seeds as f64).sqrt();
            let logged = h.numbers(&format!("{learner}_error")).unwrap()[row].unwrap();
            let logged_se = h.numbers(&format!("{learner}_se")).unwrap()[row].unwrap();
            assert!(
                (logged - mean).abs() <= 1e-9 * mean.max(1.0),
                "{learner} row {row}"
            );
            assert!(
                (logged_se - se).abs() <= 1e-9 * se.max(1.0),
                "{learner} row {row}"
            );
        }
    }
    let last = |name: &str| {
        o.last_bin_error
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| *e)
            .unwrap()
    };
    let (bp, cbp) = (last("bp"), last("cbp"));
    assert!(cbp < bp, "last bin: cbp {cbp:.4}, bp {bp:.4}");
    assert!(o.run_dir.join("bit_flipping.png").is_file());
}

#[device_test]
fn a_stopped_bit_flipping_run_resumes_to_the_straight_runs_history() {
    let dir = scratch("bit-flipping-resume");
    let text = config_text(&dir, 800).replace("bin = 2000", "bin = 200");
    let (config, resolved): (BitFlippingConfig, String) = parse_config(&text, "test", &[]).unwrap();
    let straight = run_bit_flipping(&config, &resolved, options()).unwrap();
    let mut halves = config.clone();
    halves.name = "bit-flipping-ci-resumed".into();
    let first = RunOptions {
        stop_at: Some(2),
        ..options()
    };
    assert_eq!(
        run_bit_flipping(&halves, &resolved, first)
            .unwrap()
            .history
            .rows(),
        2
    );
    let resume = RunOptions {
        mode: RunMode::Resume,
        ..options()
    };
    let resumed = run_bit_flipping(&halves, &resolved, resume)
        .unwrap()
        .history;
    let h = &straight.history;
    assert_eq!(resumed.rows(), 4);
    for column in h.columns().iter().filter(|c| c.name != "seconds") {
        assert_eq!(
            resumed.numbers(&column.name),
            h.numbers(&column.name),
            "{} after resuming",
            column.name
        );
    }
}

#[test]
fn bad_bit_flipping_configs_name_the_key() {
    let dir = scratch("bit-flipping-errors");
    let base = config_text(&dir, 10000);
    let error = |overrides: &[&str]| {
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let (config, _): (BitFlippingConfig, String) =
            parse_config(&base, "test", &overrides).unwrap();
        config.validate().unwrap_err().to_string()
    };
    assert!(error(&["problem.examples=10100"]).contains("problem.examples"));
    assert!(error(&["problem.flip=\"two\""]).contains("problem.flip"));
    assert!(error(&["logging.bin=3000"]).contains("logging.bin"));
    assert!(error(&["net.activation=\"relux\""]).contains("net.activation"));
    let (config, _): (BitFlippingConfig, String) =
        parse_config(&base.replace("\"cbp\"\nlr", "\"cbq\"\nlr"), "test", &[]).unwrap();
    let e = config.validate().unwrap_err().to_string();
    assert!(e.contains("learners[1]") && e.contains("cbq"), "{e}");
}
