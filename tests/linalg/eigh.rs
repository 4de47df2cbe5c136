//! eigh: residual ‖AV − VΛ‖/‖A‖, orthogonality ‖VᵀV − I‖ and eigenvalues against faer (f64).

use dynlab::runtime::linalg::host::eigh_f64;
use dynlab::runtime::linalg::{host_fallbacks, EighOptions, EighPath, FallbackReason};
use dynlab::Tensor;
use dynlab_test_support::{device, device_test, HostRng};

/// Default options, but the device path even on a CPU device (the kernels are what is tested).
pub fn on_device() -> EighOptions {
    EighOptions {
        host_on_cpu_device: false,
        ..Default::default()
    }
}

/// Row-major products on the host in f64.
fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            for j in 0..n {
                c[i * n + j] += a[i * n + k] * b[k * n + j];
            }
        }
    }
    c
}

fn fro(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Checks one decomposition of the symmetric `a` (row-major n×n) and returns its path.
pub fn check(what: &str, a: &[f64], n: usize, options: EighOptions, tol: f64) -> EighPath {
    // Compare against the matrix the device sees (rounded to f32).
    let a: Vec<f64> = a.iter().map(|&x| x as f32 as f64).collect();
    let a = &a[..];
    let t = Tensor::from_vec(a.iter().map(|&x| x as f32).collect(), &[n, n], &device()).unwrap();
    let e = t.eigh(options).unwrap();
    let lam: Vec<f64> = e
        .values
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    let v: Vec<f64> = e
        .vectors
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect();
    assert!(
        lam.iter().chain(&v).all(|x| x.is_finite()),
        "{what}: NaN in the result"
    );
    assert!(
        lam.windows(2).all(|w| w[0] <= w[1]),
        "{what}: not ascending"
    );
    let scale = fro(a).max(1e-30);
    let av = matmul(a, &v, n);
    let vl: Vec<f64> = (0..n * n).map(|i| v[i] * lam[i % n]).collect();
    let residual = fro(&av.iter().zip(&vl).map(|(x, y)| x - y).collect::<Vec<_>>()) / scale;
    let vt: Vec<f64> = (0..n * n).map(|i| v[(i % n) * n + i / n]).collect();
    let vtv = matmul(&vt, &v, n);
    let orth = fro(&(0..n * n)
        .map(|i| vtv[i] - if i / n == i % n { 1.0 } else { 0.0 })
        .collect::<Vec<_>>());
    let (want, _) = eigh_f64(a, n).unwrap();
    let agree = lam
        .iter()
        .zip(&want)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
        / scale;
    assert!(
        residual <= tol,
        "{what}: residual {residual:.2e} > {tol:.0e} ({:?})",
        e.path
    );
    assert!(
        orth <= tol * (n as f64).sqrt().max(1.0),
        "{what}: ‖VᵀV − I‖ {orth:.2e} ({:?})",
        e.path
    );
    assert!(
        agree <= tol,
        "{what}: eigenvalues differ from faer by {agree:.2e}·‖A‖ ({:?})",
        e.path
    );
    e.path
}

pub fn random_symmetric(rng: &mut HostRng, n: usize) -> Vec<f64> {
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let x = rng.uniform(-1.0, 1.0) as f64;
            a[i * n + j] = x;
            a[j * n + i] = x;
        }
    }
    a
}

#[device_test]
fn random_symmetric_matrices_on_the_device() {
    let mut rng = HostRng::new(21);
    for n in [1, 2, 3, 7, 16, 33, 64, 128, 256] {
        let a = random_symmetric(&mut rng, n);
        let no_cond = EighOptions {
            cond_threshold: f64::INFINITY,
            ..on_device()
        };
        let path = check(&format!("random n={n}"), &a, n, no_cond, 5e-5);
        assert!(matches!(path, EighPath::Device { .. }), "n={n}: {path:?}");
    }
}

/// `Q diag(λ) Qᵀ` with `Q` the eigenvectors of a random symmetric matrix (f64).
pub fn with_spectrum(rng: &mut HostRng, lambda: &[f64]) -> Vec<f64> {
    let n = lambda.len();
    let (_, q) = eigh_f64(&random_symmetric(rng, n), n).unwrap();
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n)
                .map(|k| q[i * n + k] * lambda[k] * q[j * n + k])
                .sum();
        }
    }
    a
}

#[device_test]
fn adversarial_spectra_never_give_nan() {
    let mut rng = HostRng::new(22);
    let device_only = on_device();
    let repeated: Vec<f64> = [1.0, 1.0, 1.0, 2.0, 2.0, -3.0, -3.0, 0.5].to_vec();
    check(
        "repeated",
        &with_spectrum(&mut rng, &repeated),
        8,
        device_only,
        2e-5,
    );
    let clustered: Vec<f64> = (0..12).map(|i| 1.0 + 1e-7 * i as f64).collect();
    check(
        "clustered 1e-7",
        &with_spectrum(&mut rng, &clustered),
        12,
        device_only,
        2e-5,
    );
    let n = 20;
    let mut near_identity = random_symmetric(&mut rng, n);
    for (i, x) in near_identity.iter_mut().enumerate() {
        *x = if i / n == i % n { 1.0 } else { 0.0 } + 1e-6 * *x;
    }
    check(
        "identity + 1e-6 noise",
        &near_identity,
        n,
        device_only,
        2e-5,
    );
    let zero = vec![0.0; 9];
    assert_eq!(
        check("zero", &zero, 3, device_only, 0.0),
        EighPath::Device { sweeps: 0 }
    );
    check("1x1", &[-4.5], 1, device_only, 0.0);

    let before = host_fallbacks();
    // Rank-deficient Gram matrix XᵀX, X of rank 3 in 10 dimensions: singular, so the host solves it.
    let x: Vec<f64> = (0..30).map(|_| rng.uniform(-1.0, 1.0) as f64).collect();
    let gram: Vec<f64> = (0..100)
        .map(|ij| {
            (0..3)
                .map(|r| x[r * 10 + ij / 10] * x[r * 10 + ij % 10])
                .sum()
        })
        .collect();
    let path = check("rank-deficient Gram", &gram, 10, device_only, 2e-6);
    assert!(
        matches!(path, EighPath::Host(FallbackReason::IllConditioned { .. })),
        "{path:?}"
    );
    let cond: Vec<f64> = (0..16)
        .map(|i| 10f64.powf(-8.0 * i as f64 / 15.0))
        .collect();
    let path = check(
        "condition 1e8",
        &with_spectrum(&mut rng, &cond),
        16,
        device_only,
        2e-6,
    );
    assert!(
        matches!(path, EighPath::Host(FallbackReason::IllConditioned { .. })),
        "{path:?}"
    );
    let too_big = EighOptions {
        max_device_n: 4,
        ..on_device()
    };
    let path = check(
        "over max_device_n",
        &random_symmetric(&mut rng, 6),
        6,
        too_big,
        2e-6,
    );
    assert_eq!(path, EighPath::Host(FallbackReason::TooLarge { n: 6 }));
    let stingy = EighOptions {
        max_sweeps: 1,
        cond_threshold: f64::INFINITY,
        ..on_device()
    };
    let path = check(
        "one sweep allowed",
        &random_symmetric(&mut rng, 24),
        24,
        stingy,
        2e-6,
    );
    assert!(
        matches!(
            path,
            EighPath::Host(FallbackReason::NotConverged { sweeps: 1, .. })
        ),
        "{path:?}"
    );
    assert!(host_fallbacks() >= before + 4);
}

#[device_test]
fn batched_matrices_match_one_at_a_time() {
    let mut rng = HostRng::new(23);
    let (b, n) = (3, 9);
    let mats: Vec<Vec<f64>> = (0..b).map(|_| random_symmetric(&mut rng, n)).collect();
    let flat: Vec<f32> = mats.iter().flatten().map(|&x| x as f32).collect();
    let t = Tensor::from_vec(flat, &[b, 1, n, n], &device()).unwrap();
    let e = t.eigh(on_device()).unwrap();
    assert!(matches!(e.path, EighPath::Device { .. }));
    assert_eq!(
        (e.values.shape(), e.vectors.shape()),
        (&[b, 1, n][..], &[b, 1, n, n][..])
    );
    let values = e.values.to_vec::<f32>().unwrap();
    for (k, m) in mats.iter().enumerate() {
        let (want, _) = eigh_f64(m, n).unwrap();
        for (g, w) in values[k * n..(k + 1) * n].iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() < 2e-5 * fro(m),
                "batch {k}: {g} vs {w}"
            );
        }
    }
    let empty = Tensor::zeros(&[0, 4, 4], &device())
        .unwrap()
        .eigh(EighOptions::default())
        .unwrap();
    assert_eq!(empty.values.shape(), &[0, 4]);
}

#[device_test]
fn options_and_bad_input() {
    let d = device();
    let a = Tensor::from_slice(&[2.0f32, 1.0, 0.0, 2.0], &[2, 2], &d).unwrap();
    let e = a.eigh(EighOptions::default()).unwrap_err().to_string();
    assert!(e.contains("symmetric") && e.contains("symmetrize"), "{e}");
    let sym = a
        .eigh(EighOptions {
            symmetrize: true,
            ridge: 0.5,
            ..Default::default()
        })
        .unwrap();
    // (A + Aᵀ)/2 = [[2, .5], [.5, 2]] has eigenvalues 1.5 and 2.5; the ridge adds 0.5.
    let v = sym.values.to_vec::<f32>().unwrap();
    assert!(
        (v[0] - 2.0).abs() < 1e-6 && (v[1] - 3.0).abs() < 1e-6,
        "{v:?}"
    );
    let nan = Tensor::from_slice(&[1.0f32, f32::NAN, f32::NAN, 1.0], &[2, 2], &d).unwrap();
    let e = nan.eigh(EighOptions::default()).unwrap_err().to_string();
    assert!(e.contains("NaN"), "{e}");
    let inf = Tensor::from_slice(&[1.0f32, 0.0, 0.0, f32::INFINITY], &[2, 2], &d).unwrap();
    assert!(inf.eigh(EighOptions::default()).is_err());
    let e = Tensor::zeros(&[2, 3], &d)
        .unwrap()
        .eigh(EighOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[2, 3]") && e.contains("square"), "{e}");
}

#[device_test]
fn cpu_devices_use_the_host_solver_by_default() {
    let a = Tensor::from_slice(&[2.0f32, 1.0, 1.0, 2.0], &[2, 2], &device()).unwrap();
    let e = a.eigh(EighOptions::default()).unwrap();
    let want = if device().is_cpu() {
        EighPath::Host(FallbackReason::CpuDevice)
    } else {
        EighPath::Device { sweeps: 1 }
    };
    assert_eq!(e.path, want);
    let v = e.values.to_vec::<f32>().unwrap();
    assert!(
        (v[0] - 1.0).abs() < 1e-6 && (v[1] - 3.0).abs() < 1e-6,
        "{v:?}"
    );
}
