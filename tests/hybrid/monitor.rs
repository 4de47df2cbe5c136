use dynlab::algos::hybrid::{DivergenceMonitor, MonitorConfig, Signal, StepSignals};

fn full(loss: f64, grad: f64) -> StepSignals {
    StepSignals {
        loss,
        grad_norm: Some(grad),
        predicted_loss: None,
    }
}

fn predicted(loss: f64, expected: Option<f64>) -> StepSignals {
    StepSignals {
        loss,
        grad_norm: None,
        predicted_loss: expected,
    }
}

/// A monitor after `n` warm-up steps of a slowly falling, slightly noisy loss with gradient norm
/// about 1.
fn warmed(n: usize) -> DivergenceMonitor {
    let mut m = DivergenceMonitor::new(MonitorConfig::default(), n);
    for t in 0..n {
        let wiggle = if t % 3 == 0 { 0.01 } else { 0.0 };
        let s = full(1.0 - 0.002 * t as f64 + wiggle, 1.0 + wiggle);
        assert_eq!(m.observe(s, false), None, "step {t}");
    }
    m
}

#[test]
fn loss_statistics_follow_the_host_ema() {
    let losses: Vec<f64> = (0..30)
        .map(|t| 2.0 / (1.0 + 0.1 * t as f64) + 0.01 * (t % 4) as f64)
        .collect();
    let mut m = DivergenceMonitor::new(MonitorConfig::default(), 30);
    let (mut mean, mut var) = (losses[0], 0.0);
    for (t, &l) in losses.iter().enumerate() {
        assert_eq!(m.observe(full(l, 1.0), false), None);
        if t > 0 {
            let dev = l - mean;
            mean += 0.1 * dev;
            var = 0.9 * (var + 0.1 * dev * dev);
        }
    }
    let (got_mean, got_std) = m.loss_stats();
    assert!((got_mean - mean).abs() < 1e-12 && (got_std - var.sqrt()).abs() < 1e-12);
    assert!((m.baseline().unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn each_signal_fires_on_its_fault() {
    let mut m = warmed(20);
    let (mean, std) = m.loss_stats();
    assert_eq!(
        m.observe(full(f64::NAN, 1.0), false),
        Some(Signal::NonFinite)
    );
    assert_eq!(
        m.observe(full(1.0, f64::INFINITY), false),
        Some(Signal::NonFinite)
    );
    assert_eq!(
        m.observe(full(mean + 2.3 * std, 1.0), false),
        Some(Signal::LossSpike)
    );
    assert_eq!(m.observe(full(mean + 2.1 * std, 1.0), false), None);
    assert_eq!(
        m.observe(full(0.95, 10.5), false),
        Some(Signal::GradExplode)
    );
    assert_eq!(m.observe(full(0.95, 9.0), false), None);
    assert_eq!(
        m.observe(full(0.95, 0.009), false),
        Some(Signal::GradVanish)
    );
    // The vanishing level becomes the baseline: told once per 100× drop.
    assert_eq!(m.baseline(), Some(0.009));
    assert_eq!(m.observe(full(0.95, 0.008), false), None);
    assert_eq!(
        m.observe(full(0.95, 0.00008), false),
        Some(Signal::GradVanish)
    );
    let mut m = warmed(20);
    assert_eq!(
        m.observe(predicted(0.95, Some(0.75)), true),
        Some(Signal::PredictionError)
    );
    assert_eq!(m.observe(predicted(0.95, Some(0.85)), false), None);
}

#[test]
fn a_spike_does_not_enter_the_statistics() {
    let mut m = warmed(20);
    let before = m.loss_stats();
    assert_eq!(m.observe(full(50.0, 1.0), false), Some(Signal::LossSpike));
    assert_eq!(m.loss_stats(), before);
    assert_eq!(m.observe(full(50.0, 1.0), false), Some(Signal::LossSpike));
}

#[test]
fn oscillation_counts_sign_changes_on_predicted_steps() {
    let config = MonitorConfig {
        oscillation_window: 6,
        ..MonitorConfig::default()
    };
    let mut m = DivergenceMonitor::new(config, 4);
    let zigzag = |t: usize| 1.0 + if t.is_multiple_of(2) { 0.01 } else { -0.01 };
    for t in 0..8 {
        assert_eq!(m.observe(full(zigzag(t), 1.0), false), None);
    }
    assert_eq!(m.sign_change_rate(), 1.0);
    // A full step is not tested for oscillation; a predicted one is.
    assert_eq!(m.observe(full(zigzag(8), 1.0), false), None);
    assert_eq!(
        m.observe(predicted(zigzag(9), None), true),
        Some(Signal::Oscillation)
    );
    // A monotone stretch clears it.
    let mut calm = DivergenceMonitor::new(
        MonitorConfig {
            oscillation_window: 6,
            ..MonitorConfig::default()
        },
        4,
    );
    for t in 0..8 {
        assert_eq!(calm.observe(full(1.0 - 0.01 * t as f64, 1.0), false), None);
    }
    assert_eq!(calm.observe(predicted(0.91, None), true), None);
    assert_eq!(calm.sign_change_rate(), 0.0);
}

#[test]
fn the_spike_test_waits_for_the_warm_up() {
    let mut m = DivergenceMonitor::new(MonitorConfig::default(), 10);
    assert_eq!(m.observe(full(1.0, 1.0), false), None);
    assert_eq!(m.observe(full(5.0, 1.0), false), None);
    assert!(m.baseline().is_none());
}

#[test]
fn config_errors_name_the_key() {
    let bad = MonitorConfig {
        divergence_sigma: -1.0,
        ..MonitorConfig::default()
    };
    let e = bad.check().unwrap_err().to_string();
    assert!(e.contains("hybrid.monitor.divergence_sigma"), "{e}");
}

#[test]
fn a_relative_floor_keeps_small_rises_of_a_converged_loss_quiet() {
    // A loss settled at 1.0 with 1e-5 wiggles: the plain rule flags a 0.1% rise, a floor of 1%
    // flags only rises above 2.2%.
    let settle = |floor: f64| {
        let config = MonitorConfig {
            min_relative_sigma: floor,
            ..MonitorConfig::default()
        };
        let mut m = DivergenceMonitor::new(config, 10);
        for t in 0..20 {
            let l = 1.0 + if t % 2 == 0 { 1e-5 } else { -1e-5 };
            assert_eq!(m.observe(full(l, 1.0), false), None, "step {t}");
        }
        m
    };
    assert_eq!(
        settle(0.0).observe(full(1.001, 1.0), false),
        Some(Signal::LossSpike)
    );
    let mut floored = settle(0.01);
    assert_eq!(floored.observe(full(1.001, 1.0), false), None);
    assert_eq!(floored.observe(full(1.02, 1.0), false), None);
    assert_eq!(
        floored.observe(full(1.03, 1.0), false),
        Some(Signal::LossSpike)
    );
    let bad = MonitorConfig {
        min_relative_sigma: -0.1,
        ..MonitorConfig::default()
    };
    let e = bad.check().unwrap_err().to_string();
    assert!(e.contains("hybrid.monitor.min_relative_sigma"), "{e}");
}
