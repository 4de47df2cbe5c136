//! SVD and singular values against faer; PSD functions; Σ-projector; spectral radius; rank measures.

use crate::eigh::{on_device, random_symmetric, with_spectrum};
use dynlab::algos::metrics::{rank_measures, RankMeasures};
use dynlab::runtime::linalg::host::singular_values_f64;
use dynlab::runtime::linalg::{EighOptions, EighPath, FallbackReason};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, host_f64 as host, HostRng};

fn tensor(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), shape, &device()).unwrap()
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// ‖A − U S Vᵀ‖, ‖UᵀU − I‖, ‖VᵀV − I‖ and the singular values against faer.
fn check_svd(what: &str, a: &Tensor, tol: f64) -> EighPath {
    let (m, n) = (a.shape()[0], a.shape()[1]);
    let svd = a.svd(on_device()).unwrap();
    let k = m.min(n);
    assert_eq!(
        (svd.u.shape(), svd.s.shape(), svd.v.shape()),
        (&[m, k][..], &[k][..], &[n, k][..])
    );
    let recon = svd
        .u
        .mul(&svd.s)
        .unwrap()
        .matmul(&svd.v.transpose(0, 1).unwrap())
        .unwrap();
    let ha = host(a);
    let scale = ha.iter().map(|x| x.abs()).fold(1e-30, f64::max);
    assert!(
        max_abs_diff(&host(&recon), &ha) <= tol * scale,
        "{what}: reconstruction"
    );
    for (name, f) in [("U", &svd.u), ("V", &svd.v)] {
        let gram = host(&f.transpose(0, 1).unwrap().matmul(f).unwrap());
        let eye: Vec<f64> = (0..k * k)
            .map(|i| if i / k == i % k { 1.0 } else { 0.0 })
            .collect();
        assert!(
            max_abs_diff(&gram, &eye) <= tol * 10.0,
            "{what}: {name} not orthonormal"
        );
    }
    let want = singular_values_f64(&ha, m, n).unwrap();
    assert!(
        max_abs_diff(&host(&svd.s), &want) <= tol * want[0].max(1e-30),
        "{what}: singular values"
    );
    let (s, _) = a.singular_values(on_device()).unwrap();
    assert!(
        max_abs_diff(&host(&s), &want) <= tol * want[0].max(1e-30),
        "{what}: singular_values"
    );
    svd.path
}

#[device_test]
fn svd_reconstructs_and_falls_back_on_rank_deficiency() {
    let mut rng = HostRng::new(31);
    for (m, n) in [(7, 3), (3, 7), (40, 40), (64, 17), (1, 5)] {
        let a = tensor(
            &rng.vec(m * n, -1.0, 1.0)
                .iter()
                .map(|&x| x as f64)
                .collect::<Vec<_>>(),
            &[m, n],
        );
        check_svd(&format!("{m}x{n}"), &a, 1e-4);
    }
    // Rank 2 in 6 x 5: singular, so the host computes the SVD of A itself.
    let l = rng.vec(12, -1.0, 1.0);
    let r = rng.vec(10, -1.0, 1.0);
    let low: Vec<f64> = (0..30)
        .map(|ij| {
            (0..2)
                .map(|k| l[ij / 5 * 2 + k] as f64 * r[k * 5 + ij % 5] as f64)
                .sum()
        })
        .collect();
    let path = check_svd("rank 2", &tensor(&low, &[6, 5]), 1e-5);
    assert!(
        matches!(path, EighPath::Host(FallbackReason::IllConditioned { .. })),
        "{path:?}"
    );
    let nan = Tensor::from_slice(&[f32::NAN, 1.0], &[1, 2], &device()).unwrap();
    assert!(nan
        .svd(EighOptions::default())
        .unwrap_err()
        .to_string()
        .contains("NaN"));
    assert!(Tensor::zeros(&[2, 2, 2], &device())
        .unwrap()
        .svd(EighOptions::default())
        .is_err());
}

#[device_test]
fn psd_functions_and_the_sigma_projector() {
    let mut rng = HostRng::new(32);
    let spectrum = [4.0, 2.0, 1.0, 0.5, 0.25];
    let sigma = tensor(&with_spectrum(&mut rng, &spectrum), &[5, 5]);
    let root = sigma.sqrtm_psd().unwrap();
    assert!(max_abs_diff(&host(&root.matmul(&root).unwrap()), &host(&sigma)) < 1e-4);
    let inv_root = sigma.inv_sqrtm_psd(1e-6).unwrap();
    let whitened = host(&inv_root.matmul(&sigma).unwrap().matmul(&inv_root).unwrap());
    let eye: Vec<f64> = (0..25)
        .map(|i| if i / 5 == i % 5 { 1.0 } else { 0.0 })
        .collect();
    assert!(max_abs_diff(&whitened, &eye) < 1e-4);
    assert!(sigma.inv_sqrtm_psd(0.0).is_err());

    let v = tensor(
        &rng.vec(10, -1.0, 1.0)
            .iter()
            .map(|&x| x as f64)
            .collect::<Vec<_>>(),
        &[5, 2],
    );
    let p = v.sigma_projector(&sigma, 1e-6).unwrap();
    assert!(
        max_abs_diff(&host(&p.matmul(&p).unwrap()), &host(&p)) < 1e-4,
        "P² = P"
    );
    assert!(
        max_abs_diff(&host(&p.matmul(&v).unwrap()), &host(&v)) < 1e-4,
        "P V = V"
    );
    let eye_t = Tensor::eye(5, &device()).unwrap();
    let residual = v
        .transpose(0, 1)
        .unwrap()
        .matmul(&sigma)
        .unwrap()
        .matmul(&eye_t.sub(&p).unwrap())
        .unwrap();
    assert!(
        host(&residual).iter().all(|x| x.abs() < 1e-4),
        "Vᵀ Σ (I − P) = 0"
    );
    let x = tensor(&[1.0, 0.0, -1.0, 2.0, 0.5], &[1, 5]);
    let got = host(&x.sigma_norm(&sigma).unwrap())[0];
    let (hx, hs) = (host(&x), host(&sigma));
    let want = (0..25)
        .map(|ij| hx[ij / 5] * hs[ij] * hx[ij % 5])
        .sum::<f64>()
        .sqrt();
    assert!((got - want).abs() < 1e-4 * want, "{got} vs {want}");
    assert!(v
        .sigma_projector(&Tensor::eye(4, &device()).unwrap(), 1e-6)
        .is_err());
}

#[device_test]
fn spectral_radius_exact_and_by_power_iteration() {
    let mut rng = HostRng::new(33);
    // Eigenvalues ±2i, 1.5, −0.5 hidden by a random similarity: ρ = 2.
    let block = [
        0.0, -2.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0, 0.0, 0.0, 0.0, -0.5,
    ];
    let s = random_symmetric(&mut rng, 4);
    let s: Vec<f64> = (0..16)
        .map(|i| s[i] + if i / 4 == i % 4 { 3.0 } else { 0.0 })
        .collect();
    let st = tensor(&s, &[4, 4]);
    let s_inv = st.eigh(on_device()).unwrap();
    let inv = s_inv
        .vectors
        .mul(&s_inv.values.recip().unwrap())
        .unwrap()
        .matmul(&s_inv.vectors.transpose(0, 1).unwrap())
        .unwrap();
    let a = st
        .matmul(&tensor(&block, &[4, 4]))
        .unwrap()
        .matmul(&inv)
        .unwrap();
    let exact = a.spectral_radius().unwrap();
    assert!((exact - 2.0).abs() < 1e-4, "{exact}");
    let estimate = a.spectral_radius_power(400, &mut Rng::new(1)).unwrap();
    assert!((estimate - 2.0).abs() < 0.02 * 2.0, "{estimate}");
    assert_eq!(
        Tensor::zeros(&[3, 3], &device())
            .unwrap()
            .spectral_radius()
            .unwrap(),
        0.0
    );
    assert!(Tensor::zeros(&[3, 2], &device())
        .unwrap()
        .spectral_radius()
        .is_err());
}

#[device_test]
fn rank_measures_of_known_spectra() {
    let r = RankMeasures::from_singular_values(
        &[1.0, 3.0, 0.0, 2.0, 0.0],
        1e-6,
        EighPath::Device { sweeps: 0 },
    );
    assert_eq!(r.singular_values, vec![3.0, 2.0, 1.0, 0.0, 0.0]);
    let p = [0.5f64, 1.0 / 3.0, 1.0 / 6.0];
    let erank = (-p.iter().map(|p| p * p.ln()).sum::<f64>()).exp();
    // The studies' ε = 10⁻⁸·s_1 moves the effective rank by ~10⁻⁸.
    assert!((r.effective_rank - erank).abs() < 1e-7);
    assert_eq!((r.sigma_threshold_rank, r.nuclear_norm), (3, 6.0));
    let tail = RankMeasures::from_singular_values(
        &[1.0, 0.02, 0.01, 0.009],
        1e-6,
        EighPath::Device { sweeps: 0 },
    );
    assert_eq!((tail.sigma_threshold_rank, tail.numerical_rank), (3, 4));
    assert_eq!(
        (
            r.approximate_rank,
            r.cumulative_sigma_rank,
            r.numerical_rank
        ),
        (3, 3, 3)
    );
    assert_eq!(r.rank_at_energy(50.0).unwrap(), 1);
    assert_eq!(r.rank_at_energy(90.0).unwrap(), 2);
    assert!(r.rank_at_energy(0.0).is_err());
    let flat = RankMeasures::from_singular_values(&[2.0; 6], 1e-6, EighPath::Device { sweeps: 0 });
    assert!((flat.effective_rank - 6.0).abs() < 1e-7);
    let zero = RankMeasures::from_singular_values(&[0.0; 3], 1e-6, EighPath::Device { sweeps: 0 });
    assert_eq!(
        (
            zero.effective_rank,
            zero.approximate_rank,
            zero.numerical_rank
        ),
        (0.0, 0, 0)
    );

    // Features with singular values 3, 2, 1 (then zeros) built from orthonormal factors.
    let mut rng = HostRng::new(34);
    let (_, q) =
        dynlab::runtime::linalg::host::eigh_f64(&random_symmetric(&mut rng, 8), 8).unwrap();
    let (_, w) =
        dynlab::runtime::linalg::host::eigh_f64(&random_symmetric(&mut rng, 5), 5).unwrap();
    let s = [3.0, 2.0, 1.0];
    let x: Vec<f64> = (0..40)
        .map(|ij| {
            (0..3)
                .map(|k| q[ij / 5 * 8 + k] * s[k] * w[ij % 5 * 5 + k])
                .sum()
        })
        .collect();
    let m = rank_measures(&tensor(&x, &[8, 5]), false, on_device()).unwrap();
    assert_eq!(
        (
            m.approximate_rank,
            m.cumulative_sigma_rank,
            m.numerical_rank
        ),
        (3, 3, 3)
    );
    assert!(
        (m.effective_rank - erank).abs() < 1e-4,
        "{}",
        m.effective_rank
    );
    assert!(m.singular_values.iter().all(|v| v.is_finite()));
}
