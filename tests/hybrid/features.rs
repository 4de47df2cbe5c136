use dynlab::algos::hybrid::features::targets;
use dynlab::algos::hybrid::{StateEncoder, StepRecord, FEATURES, MAX_GROUPS};

fn record(loss: f64, updates: [f64; 2], predicted: bool) -> StepRecord {
    StepRecord {
        loss,
        grad_norm: (!predicted).then_some(2.0 * loss),
        group_grad_norms: (!predicted).then(|| vec![loss, 3.0 * loss]),
        update_norms: updates.to_vec(),
        lr: 0.1,
        predicted,
    }
}

#[test]
fn features_follow_the_recorded_steps() {
    let mut e = StateEncoder::new(2).unwrap();
    assert_eq!(e.features(), vec![0.0; FEATURES]);
    let losses = [1.0, 0.8, 0.7, 0.65, 0.5];
    for (t, &l) in losses.iter().enumerate() {
        e.push(&record(l, [0.1 * (t + 1) as f64, 0.2], t == 4))
            .unwrap();
    }
    let f = e.features();
    assert_eq!(f.len(), FEATURES);
    let ln = |x: f64| x.ln();
    let deltas: Vec<f64> = losses.windows(2).map(|w| ln(w[1]) - ln(w[0])).collect();
    assert!((f[0] - ln(0.5)).abs() < 1e-12);
    let mut ema = ln(1.0);
    for &l in &losses[1..] {
        ema = 0.9 * ema + 0.1 * ln(l);
    }
    assert!((f[1] - (ema - ln(0.5))).abs() < 1e-12);
    assert!((f[3] - deltas[3]).abs() < 1e-12, "slope over 1 step");
    assert!(
        (f[4] - (deltas[2] + deltas[3]) / 2.0).abs() < 1e-12,
        "slope over 2 steps"
    );
    assert!(
        (f[5] - deltas.iter().sum::<f64>() / 4.0).abs() < 1e-12,
        "slope over 4 steps"
    );
    assert!(
        (f[10] - ln(2.0 * 0.65)).abs() < 1e-12,
        "global gradient norm of the last full step"
    );
    assert!((f[11] - ln(0.1)).abs() < 1e-12);
    assert!((f[12] - 6f64.ln()).abs() < 1e-12);
    assert!(
        (f[13] - 0.1).abs() < 1e-12 && f[14] == 1.0,
        "one predicted step"
    );
    assert!((f[15] - 0.0).abs() < 1e-12, "at the lowest loss");
    // per group: gradient of the last full step, update of the last step, their changes
    assert!((f[16 + 4] - ln(3.0 * 0.65)).abs() < 1e-12);
    assert!((f[16] - ln(0.65)).abs() < 1e-12 && (f[19] - (ln(0.65) - ln(0.7))).abs() < 1e-12);
    assert!((f[17] - ln(0.5)).abs() < 1e-12 && (f[18] - (ln(0.5) - ln(0.4))).abs() < 1e-12);
    assert_eq!(
        &f[16 + 4 * 2..],
        &vec![0.0; FEATURES - 24][..],
        "unused group slots"
    );
    assert!((e.loss_slope(2) - f[4]).abs() < 1e-15);
}

#[test]
fn targets_are_log_ratios() {
    let t = targets(
        &record(1.0, [0.2, 0.4], false),
        &record(0.5, [0.1, 0.4], false),
    );
    let want = [0.5f64.ln(), 0.5f64.ln(), 0.0];
    for (g, w) in t.iter().zip(want) {
        assert!((g - w).abs() < 1e-12);
    }
}

#[test]
fn group_counts_are_checked() {
    assert!(StateEncoder::new(0).is_err());
    assert!(StateEncoder::new(MAX_GROUPS + 1).is_err());
    let mut e = StateEncoder::new(3).unwrap();
    let err = e
        .push(&record(1.0, [0.1, 0.1], false))
        .unwrap_err()
        .to_string();
    assert!(err.contains("StateEncoder::push"), "{err}");
}
