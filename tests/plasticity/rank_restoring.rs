//! Rank-restoring generation (RR-CBP2) against its definition, in f64 on the host: new weights are
//! Σ-orthogonal to the kept units (`‖VᵀΣw‖ ≤ 1e-4·‖w‖_Σ`) and to each other, have unit Σ-norm,
//! raise `rank(W Σ Wᵀ)` by one each until saturation (then take the least-covered direction); the
//! energy budget allocates exactly its formula's `q`; biases centre the new units; the
//! eigendecomposition ladder reaches each rung on a matrix built to need it and never returns NaN;
//! and the hook generates such units in a training loop.

use dynlab::algos::continual::gnt::{FreshInit, GenerateAndTest, GntConfig, LayerUnits};
use dynlab::algos::continual::rank_restoring::{
    chi0, generate, spectrum, RrConfig, Rung, Spectrum,
};
use dynlab::data::HostRng as DrawRng;
use dynlab::models::{Activation, Init, Mlp, Module};
use dynlab::optim::{Method, Optimizer, ParamGroup};
use dynlab::runtime::linalg::host::eigh_f64;
use dynlab::runtime::UnitUtility;
use dynlab::train::{Hook, LogView, Metrics};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, HostRng};

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigma_dot(s: &Spectrum, a: &[f64], b: &[f64]) -> f64 {
    dot(a, &s.times(b))
}

/// A covariance `AᵀA / m` of `m` random rows (rank `min(m, d)`).
fn covariance(d: usize, m: usize, rng: &mut HostRng) -> Vec<f64> {
    let a: Vec<f64> = (0..m * d)
        .map(|_| f64::from(rng.uniform(-1.0, 1.0)))
        .collect();
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            s[i * d + j] = (0..m).map(|r| a[r * d + i] * a[r * d + j]).sum::<f64>() / m as f64;
        }
    }
    s
}

fn vectors(count: usize, d: usize, rng: &mut HostRng) -> Vec<Vec<f64>> {
    (0..count)
        .map(|_| (0..d).map(|_| f64::from(rng.uniform(-1.0, 1.0))).collect())
        .collect()
}

/// Rank of the Gram matrix `W Σ Wᵀ` of `ws` (eigenvalues above `1e-8·max`).
fn sigma_rank(s: &Spectrum, ws: &[Vec<f64>]) -> usize {
    let k = ws.len();
    let gram: Vec<f64> = (0..k * k)
        .map(|ij| sigma_dot(s, &ws[ij / k], &ws[ij % k]))
        .collect();
    let (values, _) = eigh_f64(&gram, k).unwrap();
    let top = values.iter().cloned().fold(0.0, f64::max);
    values.iter().filter(|&&v| v > 1e-8 * top).count()
}

fn unit_config(energy_budget: bool) -> RrConfig {
    RrConfig::new(Activation::Relu, energy_budget)
}

#[device_test]
fn new_units_are_sigma_orthogonal_and_restore_rank_until_saturation() {
    let d = 6;
    let mut rng = HostRng::new(1);
    let s = spectrum(&covariance(d, 40, &mut rng), d, 1e-4, &device());
    assert!(matches!(s.rung, Rung::Device | Rung::Host), "{:?}", s.rung);
    let kept = vectors(3, d, &mut rng);
    let mean = vec![0.25; d];
    let mut draws = DrawRng::new(2);
    let g = generate(&s, &kept, 2, 8, &mean, &unit_config(false), &mut draws);
    assert_eq!((g.weights.len(), g.fallbacks), (2, 0));
    let mut all = kept.clone();
    for (k, w) in g.weights.iter().enumerate() {
        let w_norm = sigma_dot(&s, w, w).sqrt();
        assert!((w_norm - 1.0).abs() < 1e-9, "unit Σ-norm, got {w_norm}");
        let leak: f64 = kept
            .iter()
            .map(|v| sigma_dot(&s, v, w).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!(leak <= 1e-4 * w_norm, "‖VᵀΣw‖ = {leak}");
        assert!(
            (g.biases[k] + dot(&mean, w)).abs() < 1e-12,
            "b = −mean(H)·w"
        );
        all.push(w.clone());
        assert_eq!(
            sigma_rank(&s, &all),
            3 + k + 1,
            "rank after {} new units",
            k + 1
        );
    }
    assert!(
        sigma_dot(&s, &g.weights[0], &g.weights[1]).abs() < 1e-9,
        "new units Σ-orthogonal"
    );
    // Saturation: 6 kept units span R⁶; every new unit falls back to the least-covered direction.
    let full = vectors(6, d, &mut rng);
    let g = generate(&s, &full, 2, 8, &mean, &unit_config(false), &mut draws);
    assert_eq!(g.fallbacks, 2);
    for w in &g.weights {
        assert!(w.iter().all(|x| x.is_finite()));
        assert!((sigma_dot(&s, w, w).sqrt() - 1.0).abs() < 1e-9);
    }
    let mut all = full.clone();
    all.extend(g.weights.iter().cloned());
    assert_eq!(sigma_rank(&s, &all), 6);
}

/// The energy budget: `q_tar = (tr Σ / d) / χ₀`, `Q_res = max(N q_tar − Σ_kept wᵀΣw, 0)`, each new
/// unit `min(q_tar, Q_res / remaining)` under budget and `min(q_tar, τ λ_min)` over it.
#[device_test]
fn the_energy_budget_allocates_the_formulas_q() {
    let d = 5;
    let mut rng = HostRng::new(3);
    let s = spectrum(&covariance(d, 30, &mut rng), d, 1e-4, &device());
    let config = unit_config(true);
    assert_eq!(config.chi0, chi0(Activation::Relu));
    let q_tar = s.trace() / d as f64 / 0.5;
    let mean = vec![0.0; d];
    for (scale, units) in [(0.05, 10), (0.9, 6), (30.0, 4)] {
        let kept: Vec<Vec<f64>> = vectors(3, d, &mut rng)
            .into_iter()
            .map(|v| v.iter().map(|x| x * scale).collect())
            .collect();
        let used: f64 = kept.iter().map(|v| sigma_dot(&s, v, v)).sum();
        let mut residual = (units as f64 * q_tar - used).max(0.0);
        let lambda_min = s.values[0];
        let count = 3;
        let want: Vec<f64> = (0..count)
            .map(|made| {
                if residual > 0.0 {
                    let q = q_tar.min(residual / (count - made) as f64);
                    residual -= q;
                    q
                } else {
                    q_tar.min(1e-2 * lambda_min)
                }
            })
            .collect();
        let g = generate(
            &s,
            &kept,
            count,
            units,
            &mean,
            &config,
            &mut DrawRng::new(4),
        );
        for (k, w) in g.weights.iter().enumerate() {
            let q = sigma_dot(&s, w, w);
            assert!(
                (q - want[k]).abs() <= 1e-9 * want[k].max(1e-12),
                "scale {scale}: q {q} vs {}",
                want[k]
            );
            assert!((g.energies[k] - want[k]).abs() <= 1e-12 * want[k].max(1.0));
        }
        assert!((g.energy_ratio - used / (units as f64 * q_tar)).abs() < 1e-12);
    }
}

/// Each rung on a matrix that needs it: a well-conditioned matrix with clustered eigenvalues takes
/// the first (`Tensor::eigh`), a rank-one matrix of large norm the larger ridge, a matrix with NaN
/// and Inf entries the diagonal approximation; every rung's spectrum is finite and floored.
#[device_test]
fn the_eigendecomposition_ladder_reaches_each_rung_and_never_returns_nan() {
    let d = 4;
    let mut clustered = vec![0.0; d * d];
    for i in 0..d {
        clustered[i * d + i] = 1.0 + 1e-7 * i as f64;
    }
    clustered[1] = 1e-8;
    clustered[d] = 1e-8;
    let v = [0.5, -0.5, 0.5, 0.5];
    let rank_one: Vec<f64> = (0..d * d).map(|ij| 1e5 * v[ij / d] * v[ij % d]).collect();
    let mut broken = clustered.clone();
    broken[0] = f64::NAN;
    broken[2 * d + 2] = f64::INFINITY;
    for (name, m, want) in [
        ("clustered", &clustered, None),
        ("rank one", &rank_one, Some(Rung::LargerRidge)),
        ("NaN and Inf", &broken, Some(Rung::Diagonal)),
    ] {
        let s = spectrum(m, d, 1e-4, &device());
        match want {
            Some(rung) => assert_eq!(s.rung, rung, "{name}"),
            None => assert!(
                matches!(s.rung, Rung::Device | Rung::Host),
                "{name}: {:?}",
                s.rung
            ),
        }
        assert!(
            s.values.iter().all(|x| x.is_finite() && *x >= 1e-6),
            "{name}: {:?}",
            s.values
        );
        assert!(s.vectors.iter().all(|x| x.is_finite()), "{name}");
        let w = s.inv_sqrt_times(&[1.0, 2.0, 3.0, 4.0]);
        assert!(w.iter().all(|x| x.is_finite()), "{name}");
    }
    // The rank-one matrix's larger-ridge spectrum reproduces it: E Λ Eᵀ x ≈ (S + ρ'I) x.
    let s = spectrum(&rank_one, d, 1e-4, &device());
    let x = [1.0, 0.0, -1.0, 2.0];
    let got = s.times(&x);
    let ridge = 1e-4 + 1e-6 * (1e5 + d as f64 * 1e-4) / d as f64;
    for i in 0..d {
        let want: f64 = (0..d).map(|j| rank_one[i * d + j] * x[j]).sum::<f64>() + ridge * x[i];
        assert!(
            (got[i] - want).abs() < 1e-6 * 1e5,
            "row {i}: {} vs {want}",
            got[i]
        );
    }
}

/// The hook with rank restoring on an 8 → 4 → 1 MLP: the covariance is the EMA of `HᵀH/m`, and the
/// units it replaces get weights Σ-orthogonal to the kept units (Σ as the ladder sees it) and
/// biases `−mean(H)·w`.
#[device_test]
fn the_hook_generates_rank_restoring_units() {
    let d = device();
    let (inputs, n, batch) = (8, 4, 12);
    let mut rng = Rng::new(3);
    let mut model = Mlp::new(
        &[inputs, n, 1],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &d,
    )
    .unwrap();
    let sgd = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let mut optimizer = Optimizer::new(sgd, ParamGroup::all(0.0)).unwrap();
    let rr = RrConfig::new(Activation::Relu, false);
    let config = GntConfig {
        replacement_rate: 0.15,
        decay: 0.9,
        maturity: 3,
        utility: UnitUtility::Contribution,
        accumulate: true,
        bias_transfer: true,
        init: FreshInit::Default,
        rank_restoring: Some(rr),
        seed: 4,
    };
    let mut gnt = GenerateAndTest::new(config, LayerUnits::stack(1)).unwrap();
    let mut host = HostRng::new(6);
    let mut sigma = vec![0.0f64; inputs * inputs];
    let mut checked = 0;
    for _ in 0..12 {
        let x: Vec<f32> = host.vec(batch * inputs, -1.0, 1.0);
        let h: Vec<f32> = host.vec(batch * n, 0.0, 1.0);
        let x_t = Tensor::from_slice(&x, &[batch, inputs], &d).unwrap();
        let h_t = Tensor::from_slice(&h, &[batch, n], &d).unwrap();
        for i in 0..inputs {
            for j in 0..inputs {
                let g: f64 = (0..batch)
                    .map(|b| f64::from(x[b * inputs + i]) * f64::from(x[b * inputs + j]))
                    .sum();
                sigma[i * inputs + j] = 0.99 * sigma[i * inputs + j] + 0.01 * g / batch as f64;
            }
        }
        let features = |tap: &str| {
            Ok(if tap == "input" {
                x_t.clone()
            } else {
                h_t.clone()
            })
        };
        gnt.generate_and_test(&mut model, &mut optimizer, &features)
            .unwrap();
        let device_sigma = gnt.covariance(0).unwrap().to_vec::<f32>().unwrap();
        for (a, b) in device_sigma.iter().zip(&sigma) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "Σ: {a} vs {b}");
        }
        let ages = gnt.ages(0);
        let new: Vec<usize> = (0..n).filter(|&j| ages[j] == 0).collect();
        if new.is_empty() {
            continue;
        }
        let s = spectrum(&sigma, inputs, 1e-4, &d);
        let params = model.params();
        let w = params[0].1.value().to_vec::<f32>().unwrap();
        let b = params[1].1.value().to_vec::<f32>().unwrap();
        let column =
            |j: usize| -> Vec<f64> { (0..inputs).map(|i| f64::from(w[i * n + j])).collect() };
        let mean: Vec<f64> = (0..inputs)
            .map(|i| {
                (0..batch)
                    .map(|r| f64::from(x[r * inputs + i]))
                    .sum::<f64>()
                    / batch as f64
            })
            .collect();
        for &j in &new {
            let wj = column(j);
            let norm = sigma_dot(&s, &wj, &wj).sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "unit Σ-norm {norm}");
            for k in (0..n).filter(|k| !new.contains(k)) {
                let leak = sigma_dot(&s, &column(k), &wj).abs();
                assert!(
                    leak <= 1e-3 * norm * sigma_dot(&s, &column(k), &column(k)).sqrt(),
                    "unit {j} vs kept {k}: {leak}"
                );
            }
            assert!(
                (f64::from(b[j]) + dot(&mean, &wj)).abs() < 1e-4,
                "bias of unit {j}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} units generated");
    // The log's spectrum of the units' feature Gram Wᵀ Σ W against the host's.
    let mut metrics = Metrics::for_replicas(1);
    let mut view = LogView {
        model: &mut model,
        optimizer: &mut optimizer,
        metrics: &mut metrics,
        lr: 0.1,
        index: 1,
    };
    gnt.on_log(&mut view).unwrap();
    let logged = metrics.read().unwrap();
    let params = model.params();
    let w: Vec<f64> = params[0]
        .1
        .value()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect();
    let gram: Vec<f64> = (0..n * n)
        .map(|k| {
            let (a, b) = (k / n, k % n);
            (0..inputs)
                .flat_map(|i| (0..inputs).map(move |j| (i, j)))
                .map(|(i, j)| w[i * n + a] * sigma[i * inputs + j] * w[j * n + b])
                .sum()
        })
        .collect();
    let (eigenvalues, _) = eigh_f64(&gram, n).unwrap();
    let rank = eigenvalues
        .iter()
        .filter(|&&v| v > n as f64 * f64::from(f32::EPSILON) * eigenvalues[n - 1])
        .count();
    assert_eq!(logged["rr_gram_rank_l0"], rank as f32);
    let lambda_min = f64::from(logged["rr_gram_lambda_min_l0"]);
    assert!(
        (lambda_min - eigenvalues[0]).abs() <= 1e-4 * eigenvalues[n - 1],
        "λ_min {lambda_min} vs {}",
        eigenvalues[0]
    );
}

/// RR-CBP v1: replaced units' outgoing rows are centred micro-seeds of norm 10⁻⁴ (kept rows
/// untouched), their input weights meet the energy budget, and the owed fraction is 0 after a step
/// that replaced.
#[device_test]
fn rr_cbp_v1_seeds_outgoing_weights_and_resets_the_owed_fraction() {
    let d = device();
    let (inputs, n, outputs, batch) = (6, 5, 3, 10);
    let mut rng = Rng::new(8);
    let mut model = Mlp::new(
        &[inputs, n, outputs],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &d,
    )
    .unwrap();
    let sgd = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let mut optimizer = Optimizer::new(sgd, ParamGroup::all(0.0)).unwrap();
    let config = GntConfig {
        replacement_rate: 0.3,
        decay: 0.9,
        maturity: 2,
        utility: UnitUtility::Contribution,
        accumulate: true,
        bias_transfer: true,
        init: FreshInit::Default,
        rank_restoring: Some(RrConfig::v1(Activation::Relu)),
        seed: 2,
    };
    let mut gnt = GenerateAndTest::new(config, LayerUnits::stack(1)).unwrap();
    let mut host = HostRng::new(9);
    let mut seeded = 0;
    for _ in 0..10 {
        let x =
            Tensor::from_slice(&host.vec(batch * inputs, -1.0, 1.0), &[batch, inputs], &d).unwrap();
        let h = Tensor::from_slice(&host.vec(batch * n, 0.0, 1.0), &[batch, n], &d).unwrap();
        let before = model.params()[2].1.value().to_vec::<f32>().unwrap();
        let features = |tap: &str| Ok(if tap == "input" { x.clone() } else { h.clone() });
        gnt.generate_and_test(&mut model, &mut optimizer, &features)
            .unwrap();
        let after = model.params()[2].1.value().to_vec::<f32>().unwrap();
        let ages = gnt.ages(0);
        for j in 0..n {
            let row: Vec<f64> = (0..outputs)
                .map(|o| f64::from(after[j * outputs + o]))
                .collect();
            if ages[j] == 0 {
                let norm = row.iter().map(|v| v * v).sum::<f64>().sqrt();
                let mean = row.iter().sum::<f64>() / outputs as f64;
                assert!((norm - 1e-4).abs() < 1e-8, "seed norm {norm}");
                assert!(mean.abs() < 1e-9, "seed mean {mean}");
                seeded += 1;
            } else {
                assert_eq!(
                    &after[j * outputs..(j + 1) * outputs],
                    &before[j * outputs..(j + 1) * outputs]
                );
            }
        }
        if ages.contains(&0) {
            let owed: String = gnt.save_state().unwrap().value("l0.owed").unwrap();
            assert_eq!(
                owed.parse::<f64>().unwrap(),
                0.0,
                "owed after a replacement"
            );
        }
    }
    assert!(seeded >= 2, "only {seeded} units replaced");
}
