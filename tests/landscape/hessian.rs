//! Lanczos top eigenvalues and SLQ against the dense Hessian; the deep linear closed form.

use crate::{eigenvalues_desc, small_classifier};
use dynlab::algos::landscape::deep_linear::target_singular_values;
use dynlab::algos::landscape::{
    closed_form_spectrum, lanczos, spectral_density, top_eigen, whitened_data, DeepLinear,
    DensityOptions, HessianOperator, TopEigenOptions,
};
use dynlab::train::{CrossEntropy, Mse};
use dynlab_test_support::{device, device_test, HostRng};

fn relative(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

#[device_test]
fn lanczos_top_eigenvalues_equal_the_dense_hessians() {
    let (model, batch) = small_classifier(&[5, 10, 4], 24, 3);
    let op = HessianOperator::of_model(&model, &batch, &CrossEntropy).unwrap();
    let n = op.dim();
    assert_eq!(n, 5 * 10 + 10 + 10 * 4 + 4);
    assert!(n < 300);
    let dense = op.dense().unwrap();
    let want = eigenvalues_desc(&dense, n);
    for steps in [n, 48] {
        let top = top_eigen(
            &op,
            TopEigenOptions {
                k: 4,
                steps,
                vectors: true,
                seed: 7,
            },
        )
        .unwrap();
        for (i, (got, want)) in top.values.iter().zip(&want).enumerate() {
            assert!(
                relative(*got, *want) < 1e-4,
                "{steps} steps: λ_{i} = {got} against the dense {want}"
            );
        }
        // The Ritz vectors are eigenvectors: H u ≈ θ u.
        let vectors = top.vectors.unwrap();
        for (theta, u) in top.values.iter().zip(&vectors) {
            let hu = dynlab::algos::landscape::hessian::flatten(&op.apply(u).unwrap()).unwrap();
            let u = dynlab::algos::landscape::hessian::flatten(u).unwrap();
            let unit: f64 = u.iter().map(|x| x * x).sum::<f64>().sqrt();
            assert!((unit - 1.0).abs() < 1e-4, "a Ritz vector of norm {unit}");
            let residual: f64 = hu
                .iter()
                .zip(&u)
                .map(|(a, b)| (a - theta * b).powi(2))
                .sum::<f64>()
                .sqrt();
            assert!(residual < 1e-3 * want[0], "‖Hu − θu‖ = {residual}");
        }
    }
}

#[device_test]
fn lanczos_basis_is_orthonormal_and_tridiagonalises_h() {
    let (model, batch) = small_classifier(&[4, 6, 3], 12, 11);
    let op = HessianOperator::of_model(&model, &batch, &CrossEntropy).unwrap();
    let n = op.dim();
    let dense = op.dense().unwrap();
    let mut host = HostRng::new(5);
    let start: Vec<f64> = host.vec(n, -1.0, 1.0).iter().map(|&x| x as f64).collect();
    let run = lanczos(&op, &start, 12).unwrap();
    let m = run.alphas.len();
    assert_eq!(m, 12);
    for i in 0..m {
        for j in 0..m {
            let q: f64 = run.basis[i]
                .iter()
                .zip(&run.basis[j])
                .map(|(a, b)| a * b)
                .sum();
            let want = if i == j { 1.0 } else { 0.0 };
            assert!((q - want).abs() < 1e-9, "q_{i}·q_{j} = {q}");
            // q_iᵀ H q_j is T's entry.
            let hq: Vec<f64> = (0..n)
                .map(|r| (0..n).map(|c| dense[r * n + c] * run.basis[j][c]).sum())
                .collect();
            let t: f64 = run.basis[i].iter().zip(&hq).map(|(a, b)| a * b).sum();
            let want = match i.abs_diff(j) {
                0 => run.alphas[i],
                1 => run.betas[i.min(j)],
                _ => 0.0,
            };
            assert!((t - want).abs() < 1e-4, "T[{i},{j}] = {t}, want {want}");
        }
    }
}

#[device_test]
fn slq_density_integrates_to_one_and_its_first_moment_is_the_trace() {
    let (model, batch) = small_classifier(&[5, 10, 4], 24, 3);
    let op = HessianOperator::of_model(&model, &batch, &CrossEntropy).unwrap();
    let n = op.dim();
    let dense = op.dense().unwrap();
    let trace: f64 = (0..n).map(|i| dense[i * n + i]).sum();
    let density = spectral_density(
        &op,
        DensityOptions {
            probes: 12,
            steps: 30,
            grid: 2048,
            sigma_fraction: 0.01,
            seed: 4,
        },
    )
    .unwrap();
    assert!(density.density.iter().all(|f| f.is_finite() && *f >= 0.0));
    let integral = density.integral();
    assert!((integral - 1.0).abs() < 1e-3, "∫ φ̂ = {integral}");
    for w in &density.weights {
        let total: f64 = w.iter().sum();
        assert!(
            (total - 1.0).abs() < 1e-9,
            "quadrature weights sum to {total}"
        );
    }
    // The grid's first moment agrees with the quadrature's.
    let grid_mean: f64 = density
        .grid
        .windows(2)
        .zip(density.density.windows(2))
        .map(|(t, f)| 0.5 * (t[1] - t[0]) * (t[0] * f[0] + t[1] * f[1]))
        .sum();
    assert!((grid_mean - density.moment(1)).abs() < 1e-3 * (1.0 + grid_mean.abs()));
    let estimate = density.trace();
    assert!(
        (estimate.mean - trace).abs() < 4.0 * estimate.std_error + 1e-3 * trace.abs(),
        "SLQ trace {} ± {} against the exact {trace}",
        estimate.mean,
        estimate.std_error
    );
    // The top node of a 30-step run sits at the top eigenvalue.
    let top = eigenvalues_desc(&dense, n)[0];
    let node_max = density
        .nodes
        .iter()
        .flatten()
        .copied()
        .fold(f64::MIN, f64::max);
    assert!(
        relative(node_max, top) < 1e-3,
        "top node {node_max}, λ_max {top}"
    );
}

#[device_test]
fn deep_linear_hessian_matches_the_closed_form() {
    let d = device();
    let width = 3;
    let depth = 3;
    let a = [1.5, -0.4, 0.3, 0.2, 0.9, -0.5, -0.6, 0.1, 0.7];
    let model = DeepLinear::balanced(&a, width, depth, &d).unwrap();
    let batch = whitened_data(&a, width, &d).unwrap();
    let op = HessianOperator::of_model(&model, &batch, &Mse).unwrap();
    let n = op.dim();
    assert_eq!(n, depth * width * width);
    // At the minimum: zero loss, zero gradient.
    let g = dynlab::algos::landscape::hessian::flatten(&op.gradient()).unwrap();
    assert!(g.iter().all(|x| x.abs() < 1e-5), "gradient {g:?}");
    let s = target_singular_values(&a, width).unwrap();
    let want = closed_form_spectrum(&s, depth).unwrap();
    assert!(closed_form_spectrum(&s, 0).is_err());
    assert_eq!(want.len(), n);
    let got = eigenvalues_desc(&op.dense().unwrap(), n);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() < 1e-4 * want[0],
            "λ_{i}: dense {g}, closed form {w}"
        );
    }
    // Lanczos finds the distinct values (repeated ones once from one start).
    let top = top_eigen(
        &op,
        TopEigenOptions {
            k: 3,
            steps: n,
            vectors: false,
            seed: 2,
        },
    )
    .unwrap();
    assert!(relative(top.values[0], want[0]) < 1e-4);
    for v in &top.values {
        let nearest = want
            .iter()
            .map(|w| relative(*v, *w))
            .fold(f64::MAX, f64::min);
        assert!(
            nearest < 1e-4,
            "Ritz value {v} is no closed-form eigenvalue"
        );
    }
    // Depth 1: a quadratic, every eigenvalue 2/d.
    let one = DeepLinear::balanced(&a, width, 1, &d).unwrap();
    let op = HessianOperator::of_model(&one, &batch, &Mse).unwrap();
    let got = eigenvalues_desc(&op.dense().unwrap(), op.dim());
    assert!(
        got.iter().all(|v| (v - 2.0 / width as f64).abs() < 1e-5),
        "{got:?}"
    );
}

#[device_test]
fn bad_requests_are_named_errors() {
    let (model, batch) = small_classifier(&[3, 4, 2], 6, 1);
    let op = HessianOperator::of_model(&model, &batch, &CrossEntropy).unwrap();
    let k_too_big = TopEigenOptions {
        k: 5,
        steps: 4,
        vectors: false,
        seed: 0,
    };
    let e = top_eigen(&op, k_too_big).unwrap_err().to_string();
    assert!(e.contains("top_eigen") && e.contains("k = 5"), "{e}");
    let e = lanczos(&op, &[0.0; 3], 4).unwrap_err().to_string();
    assert!(e.contains("lanczos") && e.contains("3 values"), "{e}");
    let zero = vec![0.0; op.dim()];
    let e = lanczos(&op, &zero, 4).unwrap_err().to_string();
    assert!(e.contains("norm 0"), "{e}");
    let no_probes = DensityOptions {
        probes: 0,
        ..DensityOptions::default()
    };
    assert!(spectral_density(&op, no_probes).is_err());
}
