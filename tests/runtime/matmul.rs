//! Matrix products against the f64 reference: every kernel, odd and prime sizes, every transpose
//! combination, broadcast batches, views, the α/β/bias epilogue, in-place accumulation, f16/bf16.

use dynlab::runtime::{with_matmul_kernel, MatmulOptions, CANDIDATES};
use dynlab::{DType, Tensor};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

/// f32 accumulation over K terms of size <= 1: error ~ K · eps.
fn tol(k: usize) -> f64 {
    1e-6 * (k as f64 + 1.0)
}

/// `[rows, cols]` stored either row-major or as the transpose of a `[cols, rows]` tensor.
fn operand(rng: &mut HostRng, rows: usize, cols: usize, transposed: bool) -> (Tensor, HostTensor) {
    if transposed {
        let (t, h) = random(rng, &[cols, rows], -1.0, 1.0);
        (t.transpose(0, 1).unwrap(), r::permute(&h, &[1, 0]))
    } else {
        random(rng, &[rows, cols], -1.0, 1.0)
    }
}

#[device_test]
fn every_kernel_matches_reference_on_odd_sizes_and_transposes() {
    let mut rng = HostRng::new(40);
    let sizes = [
        (1, 1, 1),
        (1, 7, 3),
        (5, 1, 9),
        (13, 17, 1),
        (31, 29, 37),
        (31, 29, 36),
        (64, 64, 64),
        (97, 65, 130),
        (257, 3, 71),
    ];
    for kernel in CANDIDATES {
        with_matmul_kernel(kernel, || {
            for &(m, k, n) in &sizes {
                for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                    let (a, ha) = operand(&mut rng, m, k, ta);
                    let (b, hb) = operand(&mut rng, k, n, tb);
                    let what = format!("{kernel:?} {m}x{k}x{n} transposed ({ta}, {tb})");
                    assert_close(
                        &what,
                        &a.matmul(&b).unwrap(),
                        &r::matmul(&ha, &hb),
                        tol(k),
                        1e-5,
                    );
                }
            }
        });
    }
}

#[device_test]
fn tuned_choice_matches_reference_on_random_sizes() {
    let mut rng = HostRng::new(41);
    for _ in 0..6 {
        let (m, k, n) = (1 + rng.below(300), 1 + rng.below(300), 1 + rng.below(300));
        let (a, ha) = random(&mut rng, &[m, k], -1.0, 1.0);
        let (b, hb) = random(&mut rng, &[k, n], -1.0, 1.0);
        assert_close(
            &format!("tuned {m}x{k}x{n}"),
            &a.matmul(&b).unwrap(),
            &r::matmul(&ha, &hb),
            tol(k),
            1e-5,
        );
    }
}

#[device_test]
fn batches_broadcast_and_views_work() {
    let mut rng = HostRng::new(42);
    for kernel in [CANDIDATES[0], CANDIDATES[1], CANDIDATES[3], CANDIDATES[7]] {
        with_matmul_kernel(kernel, || {
            let (a, ha) = random(&mut rng, &[2, 3, 5, 7], -1.0, 1.0);
            let (b, hb) = random(&mut rng, &[3, 7, 4], -1.0, 1.0);
            assert_close(
                &format!("{kernel:?} broadcast batch"),
                &a.matmul(&b).unwrap(),
                &r::matmul(&ha, &hb),
                tol(7),
                1e-5,
            );
            let (w, hw) = random(&mut rng, &[7, 6], -1.0, 1.0);
            assert_close(
                &format!("{kernel:?} batch times matrix"),
                &a.matmul(&w).unwrap(),
                &r::matmul(&ha, &hw),
                tol(7),
                1e-5,
            );
            // A narrowed, batch-transposed view.
            let view = a.narrow(3, 1, 5).unwrap().transpose(0, 1).unwrap();
            let hview = r::permute(&r::slice(&ha, 3, 1, 6, 1), &[1, 0, 2, 3]);
            let (c, hc) = random(&mut rng, &[5, 2], -1.0, 1.0);
            assert_close(
                &format!("{kernel:?} view"),
                &view.matmul(&c).unwrap(),
                &r::matmul(&hview, &hc),
                tol(5),
                1e-5,
            );
            let empty = Tensor::zeros(&[0, 7], &device()).unwrap();
            assert_eq!(empty.matmul(&w).unwrap().shape(), &[0, 6]);
            let zero_k = Tensor::zeros(&[3, 0], &device())
                .unwrap()
                .matmul(&Tensor::zeros(&[0, 2], &device()).unwrap())
                .unwrap();
            assert_eq!(zero_k.to_vec::<f32>().unwrap(), vec![0.0; 6]);
        });
    }
}

#[device_test]
fn epilogue_and_in_place_accumulation() {
    let mut rng = HostRng::new(43);
    for kernel in [CANDIDATES[0], CANDIDATES[2], CANDIDATES[3]] {
        with_matmul_kernel(kernel, || {
            let (a, ha) = random(&mut rng, &[9, 11], -1.0, 1.0);
            let (b, hb) = random(&mut rng, &[11, 8], -1.0, 1.0);
            let (c, hc) = random(&mut rng, &[9, 8], -1.0, 1.0);
            let (bias, hbias) = random(&mut rng, &[8], -1.0, 1.0);
            let opts = MatmulOptions {
                alpha: 0.5,
                beta: -2.0,
                accumulate: Some(&c),
                bias: Some(&bias),
            };
            let ab = r::matmul(&ha, &hb);
            let want = r::zip(
                &r::zip(
                    &r::map(&ab, |x| 0.5 * x),
                    &r::map(&hc, |x| -2.0 * x),
                    |x, y| x + y,
                ),
                &hbias,
                |x, y| x + y,
            );
            assert_close(
                &format!("{kernel:?} epilogue"),
                &a.matmul_with(&b, opts).unwrap(),
                &want,
                tol(11),
                1e-5,
            );
            // Gradient-style accumulation: acc = 1.0 * a b + 1.0 * acc, twice, in place.
            let mut acc = Tensor::zeros(&[9, 8], &device()).unwrap();
            acc.addmm_(&a, &b, 1.0, 1.0).unwrap();
            acc.addmm_(&a, &b, 1.0, 1.0).unwrap();
            assert_close(
                &format!("{kernel:?} addmm_ twice"),
                &acc,
                &r::map(&ab, |x| 2.0 * x),
                tol(22),
                1e-5,
            );
            // A shared buffer is not overwritten: the other handle keeps its values.
            let shared = acc.clone();
            acc.addmm_(&a, &b, 1.0, 0.0).unwrap();
            assert_close(
                &format!("{kernel:?} shared buffer untouched"),
                &shared,
                &r::map(&ab, |x| 2.0 * x),
                tol(22),
                1e-5,
            );
            assert_close(
                &format!("{kernel:?} addmm_ beta 0"),
                &acc,
                &ab,
                tol(11),
                1e-5,
            );
        });
    }
}

#[device_test]
fn half_precision_inputs_accumulate_in_f32() {
    let d = device();
    let mut rng = HostRng::new(44);
    let (a, ha) = random(&mut rng, &[33, 70], -1.0, 1.0);
    let (b, hb) = random(&mut rng, &[70, 20], -1.0, 1.0);
    for dtype in [DType::F16, DType::BF16] {
        if !d.supports(dtype) {
            assert!(
                a.to_dtype(dtype).is_err(),
                "{dtype} cast should fail where unsupported"
            );
            continue;
        }
        // Round the reference inputs the same way so only accumulation error remains.
        let (a16, b16) = (a.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
        let round = |t: &Tensor, shape: &[usize]| {
            HostTensor::from_f32(
                shape,
                &t.to_dtype(DType::F32).unwrap().to_vec::<f32>().unwrap(),
            )
        };
        let want = r::matmul(&round(&a16, &ha.shape), &round(&b16, &hb.shape));
        for kernel in [CANDIDATES[0], CANDIDATES[1], CANDIDATES[3], CANDIDATES[7]] {
            with_matmul_kernel(kernel, || {
                let got = a16.matmul(&b16).unwrap();
                assert_eq!(got.dtype(), DType::F32);
                assert_close(&format!("{dtype} {kernel:?}"), &got, &want, tol(70), 1e-5);
            });
        }
    }
}

#[device_test]
fn bad_shapes_are_named() {
    let d = device();
    let a = Tensor::zeros(&[2, 3], &d).unwrap();
    let msg = a
        .matmul(&Tensor::zeros(&[4, 5], &d).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Tensor::matmul")
            && msg.contains("[2, 3]")
            && msg.contains("[4, 5]")
            && msg.contains("inner"),
        "{msg}"
    );
    let msg = a
        .matmul(&Tensor::zeros(&[3], &d).unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("rank >= 2"), "{msg}");
    let msg = Tensor::zeros(&[2, 2, 3], &d)
        .unwrap()
        .matmul(&Tensor::zeros(&[3, 3, 1], &d).unwrap())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("broadcast"), "{msg}");
    let bias = Tensor::zeros(&[4], &d).unwrap();
    let msg = a
        .matmul_with(
            &Tensor::zeros(&[3, 5], &d).unwrap(),
            MatmulOptions {
                bias: Some(&bias),
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bias [4]") && msg.contains("[5]"), "{msg}");
    let ints = Tensor::from_slice(&[1i32; 6], &[2, 3], &d).unwrap();
    assert!(ints
        .matmul(&a.transpose(0, 1).unwrap())
        .unwrap_err()
        .to_string()
        .contains("dtype"));
    let mut wrong = Tensor::zeros(&[3, 3], &d).unwrap();
    assert!(wrong
        .addmm_(&a, &Tensor::zeros(&[3, 5], &d).unwrap(), 1.0, 1.0)
        .unwrap_err()
        .to_string()
        .contains("[2, 5]"));
}
