use dynlab::algos::hybrid::{DynamicsConfig, DynamicsModel};
use dynlab_test_support::{device, HostRng};

/// `x_t = sin(ω t + φ)`, `ω ∈ [0.3, 0.9]`: the next value needs the frequency, read off the history.
fn sine(rng: &mut HostRng, len: usize) -> Vec<f64> {
    let omega = f64::from(rng.uniform(0.3, 0.9));
    let phase = f64::from(rng.uniform(0.0, std::f32::consts::TAU));
    (0..len).map(|t| (omega * t as f64 + phase).sin()).collect()
}

#[test]
fn the_ensemble_learns_a_trajectory_family() {
    let config = DynamicsConfig {
        members: 3,
        hidden: 16,
        window: 8,
        batch: 16,
        learn_iters: 25,
        lr: 1e-2,
        ..DynamicsConfig::default()
    };
    let mut model = DynamicsModel::new(config, 1, 1, 21, &device()).unwrap();
    let mut rng = HostRng::new(22);
    assert!(!model.ready() && model.learn().unwrap().is_none());
    for _ in 0..40 {
        let x = sine(&mut rng, 20);
        for t in 0..19 {
            model.push(vec![x[t]], vec![x[t + 1]]).unwrap();
        }
        model.break_sequence();
    }
    let mut losses = Vec::new();
    for _ in 0..12 {
        losses.push(model.learn().unwrap().unwrap());
    }
    assert_eq!(model.updates(), 300);
    let (mut err, mut persistence) = (0.0, 0.0);
    let held_out = 30;
    for _ in 0..held_out {
        let x = sine(&mut rng, 9);
        let recent: Vec<Vec<f64>> = x[..8].iter().map(|v| vec![*v]).collect();
        let p = model.predict(&recent).unwrap();
        assert!(p.spread[0].is_finite() && p.spread[0] >= 0.0);
        err += (p.mean[0] - x[8]).powi(2);
        persistence += (x[7] - x[8]).powi(2);
    }
    let (mse, base) = (err / held_out as f64, persistence / held_out as f64);
    eprintln!("training losses {losses:?}; held-out MSE {mse:.4} vs persistence {base:.4}");
    assert!(
        mse < 0.02 && mse < 0.25 * base,
        "held-out MSE {mse} (persistence {base})"
    );
}

#[test]
fn bad_input_is_an_error() {
    let mut model = DynamicsModel::new(DynamicsConfig::default(), 3, 2, 1, &device()).unwrap();
    let e = model
        .push(vec![0.0; 2], vec![0.0; 2])
        .unwrap_err()
        .to_string();
    assert!(e.contains("DynamicsModel::push"), "{e}");
    assert!(model.predict(&[]).is_err());
    // Non-finite samples are skipped, not learned.
    model.push(vec![f64::NAN; 3], vec![0.0; 2]).unwrap();
    assert_eq!(model.samples(), 0);
    let bad = DynamicsConfig {
        window: 0,
        ..DynamicsConfig::default()
    };
    let e = DynamicsModel::new(bad, 3, 2, 1, &device())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("hybrid.dynamics.window"), "{e}");
}
