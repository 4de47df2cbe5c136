use dynlab::algos::hybrid::LinUcb;
use dynlab_test_support::HostRng;

/// `θᵀx + α√(xᵀA⁻¹x)` with `A⁻¹` by Gauss–Jordan elimination (a different route than the
/// library's Cholesky solve).
fn host_score(contexts: &[(Vec<f64>, f64)], x: &[f64], alpha: f64) -> f64 {
    let d = x.len();
    let mut a = vec![vec![0.0; 2 * d]; d];
    for i in 0..d {
        a[i][i] = 1.0;
        a[i][d + i] = 1.0;
    }
    let mut b = vec![0.0; d];
    for (c, r) in contexts {
        for i in 0..d {
            for j in 0..d {
                a[i][j] += c[i] * c[j];
            }
            b[i] += r * c[i];
        }
    }
    for col in 0..d {
        let pivot = (col..d)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap();
        a.swap(col, pivot);
        let p = a[col][col];
        a[col].iter_mut().for_each(|v| *v /= p);
        for row in 0..d {
            if row != col {
                let f = a[row][col];
                let pivot_row = a[col].clone();
                a[row]
                    .iter_mut()
                    .zip(&pivot_row)
                    .for_each(|(v, w)| *v -= f * w);
            }
        }
    }
    let inv = |i: usize, j: usize| a[i][d + j];
    let theta: Vec<f64> = (0..d)
        .map(|i| (0..d).map(|j| inv(i, j) * b[j]).sum())
        .collect();
    let mean: f64 = theta.iter().zip(x).map(|(t, v)| t * v).sum();
    let quad: f64 = (0..d)
        .map(|i| (0..d).map(|j| x[i] * inv(i, j) * x[j]).sum::<f64>())
        .sum();
    mean + alpha * quad.sqrt()
}

fn context(rng: &mut HostRng) -> Vec<f64> {
    let mut x: Vec<f64> = rng.vec(3, -1.0, 1.0).into_iter().map(f64::from).collect();
    x.insert(0, 1.0);
    x
}

#[test]
fn scores_match_a_host_re_derivation() {
    let mut rng = HostRng::new(3);
    let mut bandit = LinUcb::new(3, 4, 0.7).unwrap();
    let mut played: Vec<Vec<(Vec<f64>, f64)>> = vec![Vec::new(); 3];
    for round in 0..40 {
        let x = context(&mut rng);
        let arm = round % 3;
        let r = f64::from(rng.uniform(-1.0, 2.0));
        bandit.update(arm, &x, r).unwrap();
        played[arm].push((x, r));
    }
    let x = context(&mut rng);
    let scores = bandit.scores(&x).unwrap();
    for arm in 0..3 {
        let want = host_score(&played[arm], &x, 0.7);
        assert!(
            (scores[arm] - want).abs() < 1e-9,
            "arm {arm}: {} vs {want}",
            scores[arm]
        );
    }
    let mut restored = LinUcb::new(3, 4, 0.7).unwrap();
    restored.load_values(&bandit.to_values()).unwrap();
    assert_eq!(restored, bandit);
}

/// Arm `a` pays `θ_aᵀx + noise`; arm 2 is best on average over the contexts drawn.
#[test]
fn picks_the_best_arm_of_a_synthetic_reward() {
    let thetas = [
        [0.2, 0.1, 0.0, -0.1],
        [0.4, -0.2, 0.1, 0.0],
        [0.8, 0.0, 0.1, 0.1],
    ];
    let mut rng = HostRng::new(11);
    let mut bandit = LinUcb::new(3, 4, 0.5).unwrap();
    let mut late_best = 0;
    for round in 0..400 {
        let x = context(&mut rng);
        let arm = bandit.choose(&x).unwrap();
        let mean: f64 = thetas[arm].iter().zip(&x).map(|(t, v)| t * v).sum();
        let reward = mean + 0.1 * f64::from(rng.uniform(-1.0, 1.0));
        bandit.update(arm, &x, reward).unwrap();
        if round >= 300 && arm == 2 {
            late_best += 1;
        }
    }
    assert!(
        late_best >= 95,
        "best arm played {late_best} of the last 100 rounds"
    );
}

#[test]
fn bad_input_is_an_error() {
    assert!(LinUcb::new(0, 4, 0.5).is_err());
    assert!(LinUcb::new(2, 4, -1.0).is_err());
    let mut b = LinUcb::new(2, 4, 0.5).unwrap();
    let e = b.update(5, &[1.0; 4], 0.0).unwrap_err().to_string();
    assert!(e.contains("LinUcb::update"), "{e}");
    assert!(b.update(0, &[1.0; 4], f64::NAN).is_err());
    assert!(b.scores(&[1.0; 3]).is_err());
}
