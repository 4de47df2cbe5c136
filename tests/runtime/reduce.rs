//! Reductions and the softmax family against the f64 reference, along every axis, with keepdim,
//! over short rows (one unit per row) and long rows (one cube per row), on strided views.

use dynlab::{DType, Tensor};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

/// Shapes with rows of 1 to 2000 elements, strided and not.
const SHAPES: &[&[usize]] = &[&[1], &[37, 13], &[5, 300, 3], &[2000], &[3, 1, 4]];

/// Every row-kernel launch shape: the device's own choice, one unit per row, and cubes of 1, 64
/// and 256 units (sizes that do and do not divide the rows).
const ROW_KERNELS: &[Option<Option<u32>>] = &[
    None,
    Some(None),
    Some(Some(1)),
    Some(Some(64)),
    Some(Some(256)),
];

/// Runs `f` under each launch shape, naming it for the failure message.
fn each_row_kernel(f: impl Fn(&str)) {
    for &kernel in ROW_KERNELS {
        let label = format!("row kernel {kernel:?}");
        match kernel {
            None => f(&label),
            Some(block) => dynlab::runtime::with_row_kernel(block, || f(&label)).unwrap(),
        }
    }
}

fn sum_tol(len: usize) -> f64 {
    // f32 accumulation: error grows like n·eps·max|x| in the worst case; inputs are in [-2, 2].
    2e-6 * len as f64 + 1e-6
}

#[device_test]
fn axis_reductions_match_reference() {
    each_row_kernel(axis_reductions_under);
}

fn axis_reductions_under(kernel: &str) {
    let mut rng = HostRng::new(10);
    for shape in SHAPES {
        for (layout, t, h) in layouts(&mut rng, shape, -2.0, 2.0) {
            for axis in 0..shape.len() {
                let n = t.shape()[axis];
                for keepdim in [false, true] {
                    let w = |name: &str| {
                        format!("{name} axis {axis} keepdim {keepdim} {layout} {kernel}")
                    };
                    let a = axis as isize;
                    assert_close(
                        &w("sum"),
                        &t.sum(a, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::sum),
                        sum_tol(n),
                        1e-6,
                    );
                    assert_close(
                        &w("mean"),
                        &t.mean(a, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::mean),
                        sum_tol(n) / n as f64,
                        1e-6,
                    );
                    assert_close(
                        &w("max"),
                        &t.max(a, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::max),
                        0.0,
                        0.0,
                    );
                    assert_close(
                        &w("min"),
                        &t.min(a, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::min),
                        0.0,
                        0.0,
                    );
                    let am = t.argmax(a, keepdim).unwrap();
                    assert_eq!(am.dtype(), DType::I32);
                    assert_close(
                        &w("argmax"),
                        &am.to_dtype(DType::F32).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::argmax),
                        0.0,
                        0.0,
                    );
                    assert_close(
                        &w("argmin"),
                        &t.argmin(a, keepdim).unwrap().to_dtype(DType::F32).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::argmin),
                        0.0,
                        0.0,
                    );
                    assert_close(
                        &w("var"),
                        &t.var(a, true, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, |v| r::var(v, true)),
                        1e-5,
                        1e-4,
                    );
                    assert_close(
                        &w("var biased"),
                        &t.var(a, false, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, |v| r::var(v, false)),
                        1e-5,
                        1e-4,
                    );
                    assert_close(
                        &w("logsumexp"),
                        &t.logsumexp(a, keepdim).unwrap(),
                        &r::reduce(&h, axis, keepdim, r::logsumexp),
                        1e-5,
                        1e-5,
                    );
                    for p in [1.0, 2.0, 3.0, 0.0, f32::INFINITY, f32::NEG_INFINITY] {
                        assert_close(
                            &w(&format!("norm {p}")),
                            &t.norm(p, a, keepdim).unwrap(),
                            &r::reduce(&h, axis, keepdim, |v| r::norm(v, p as f64)),
                            sum_tol(n),
                            1e-5,
                        );
                    }
                }
            }
        }
    }
}

#[device_test]
fn whole_tensor_reductions_match_reference() {
    each_row_kernel(whole_tensor_under);
}

fn whole_tensor_under(kernel: &str) {
    let mut rng = HostRng::new(11);
    for shape in [&[0usize][..], &[], &[7], &[33, 5], &[70, 60], &[3, 9000]] {
        for (layout, t, h) in layouts(&mut rng, shape, -2.0, 2.0) {
            let flat = HostTensor::new(&[h.numel()], h.data.clone());
            let all = |f: fn(&[f64]) -> f64| r::reduce(&flat, 0, false, f);
            let n = h.numel();
            let w = |name: &str| format!("{name} {layout} {kernel}");
            assert_close(
                &w("sum_all"),
                &t.sum_all().unwrap(),
                &all(r::sum),
                sum_tol(n),
                1e-6,
            );
            assert_close(
                &w("mean_all"),
                &t.mean_all().unwrap(),
                &all(r::mean),
                1e-6,
                1e-5,
            );
            assert_close(
                &w("norm_all"),
                &t.norm_all(2.0).unwrap(),
                &all(|v| r::norm(v, 2.0)),
                1e-5,
                1e-5,
            );
            if n > 0 {
                assert_close(&w("max_all"), &t.max_all().unwrap(), &all(r::max), 0.0, 0.0);
                assert_close(&w("min_all"), &t.min_all().unwrap(), &all(r::min), 0.0, 0.0);
                assert_close(
                    &w("argmax_all"),
                    &t.argmax_all().unwrap().to_dtype(DType::F32).unwrap(),
                    &all(r::argmax),
                    0.0,
                    0.0,
                );
                assert_close(
                    &w("argmin_all"),
                    &t.argmin_all().unwrap().to_dtype(DType::F32).unwrap(),
                    &all(r::argmin),
                    0.0,
                    0.0,
                );
                assert_close(
                    &w("var_all"),
                    &t.var_all(true).unwrap(),
                    &all(|v| r::var(v, true)),
                    1e-5,
                    1e-4,
                );
            }
        }
    }
}

#[device_test]
fn reductions_handle_nan_ties_and_empty_axes() {
    let d = device();
    let x = Tensor::from_slice(&[1.0f32, f32::NAN, 3.0, 3.0, -1.0, -1.0], &[2, 3], &d).unwrap();
    let h = HostTensor::from_f32(&[2, 3], &[1.0, f32::NAN, 3.0, 3.0, -1.0, -1.0]);
    assert_close(
        "max with NaN",
        &x.max(1, false).unwrap(),
        &r::reduce(&h, 1, false, r::max),
        0.0,
        0.0,
    );
    assert_close(
        "argmax NaN and ties",
        &x.argmax(1, false).unwrap().to_dtype(DType::F32).unwrap(),
        &r::reduce(&h, 1, false, r::argmax),
        0.0,
        0.0,
    );
    assert_close(
        "argmin ties",
        &x.argmin(1, false).unwrap().to_dtype(DType::F32).unwrap(),
        &r::reduce(&h, 1, false, r::argmin),
        0.0,
        0.0,
    );
    assert_close(
        "sum with NaN",
        &x.sum(1, false).unwrap(),
        &r::reduce(&h, 1, false, r::sum),
        0.0,
        1e-6,
    );
    let empty = Tensor::zeros(&[3, 0], &d).unwrap();
    assert_eq!(
        empty.sum(1, false).unwrap().to_vec::<f32>().unwrap(),
        vec![0.0; 3]
    );
    let err = empty.max(1, false).unwrap_err().to_string();
    assert!(
        err.contains("Tensor::max") && err.contains("empty axis"),
        "{err}"
    );
    assert_eq!(empty.sum(0, true).unwrap().shape(), &[1, 0]);
}

#[device_test]
fn softmax_family_matches_reference_along_every_axis() {
    each_row_kernel(softmax_family_under);
}

fn softmax_family_under(kernel: &str) {
    let mut rng = HostRng::new(12);
    for shape in [&[1usize][..], &[4, 9], &[3, 200, 2], &[2, 1500], &[0, 5]] {
        for (layout, t, h) in layouts(&mut rng, shape, -30.0, 30.0) {
            for axis in 0..shape.len() {
                let w = |name: &str| format!("{name} axis {axis} {layout} {kernel}");
                assert_close(
                    &w("softmax"),
                    &t.softmax(axis as isize).unwrap(),
                    &r::along(&h, axis, r::softmax),
                    1e-6,
                    1e-4,
                );
                assert_close(
                    &w("log_softmax"),
                    &t.log_softmax(-(shape.len() as isize) + axis as isize)
                        .unwrap(),
                    &r::along(&h, axis, r::log_softmax),
                    1e-4,
                    1e-5,
                );
            }
        }
    }
}

#[device_test]
fn softmax_is_stable_for_huge_and_infinite_logits() {
    let d = device();
    let x =
        Tensor::from_slice(&[1000.0f32, 1001.0, 999.0, f32::NEG_INFINITY], &[1, 4], &d).unwrap();
    let h = HostTensor::from_f32(&[1, 4], &[1000.0, 1001.0, 999.0, f32::NEG_INFINITY]);
    assert_close(
        "softmax huge",
        &x.softmax(1).unwrap(),
        &r::along(&h, 1, r::softmax),
        1e-6,
        1e-5,
    );
    assert_close(
        "logsumexp huge",
        &x.logsumexp(1, false).unwrap(),
        &r::reduce(&h, 1, false, r::logsumexp),
        1e-4,
        1e-6,
    );
    let all_neg_inf = Tensor::full(&[2, 3], f32::NEG_INFINITY, &d).unwrap();
    assert_eq!(
        all_neg_inf
            .logsumexp(1, false)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        vec![f32::NEG_INFINITY; 2]
    );
}

#[device_test]
fn cross_entropy_matches_reference() {
    each_row_kernel(cross_entropy_under);
}

fn cross_entropy_under(kernel: &str) {
    let mut rng = HostRng::new(13);
    for (n, c) in [(1, 1), (5, 3), (17, 10), (4, 1300)] {
        let (logits, h) = random(&mut rng, &[n, c], -8.0, 8.0);
        let labels: Vec<usize> = (0..n).map(|_| rng.below(c)).collect();
        let lab = Tensor::from_slice(
            &labels.iter().map(|&l| l as i32).collect::<Vec<_>>(),
            &[n],
            &device(),
        )
        .unwrap();
        let want = r::cross_entropy(&h, &labels);
        assert_close(
            &format!("cross_entropy per sample {kernel}"),
            &logits.cross_entropy_per_sample(&lab).unwrap(),
            &HostTensor::new(&[n], want.clone()),
            1e-5,
            1e-5,
        );
        let mean = want.iter().sum::<f64>() / n as f64;
        assert_close(
            &format!("cross_entropy mean {kernel}"),
            &logits.cross_entropy(&lab).unwrap(),
            &HostTensor::new(&[], vec![mean]),
            1e-5,
            1e-5,
        );
    }
    let logits = Tensor::zeros(&[2, 3], &device()).unwrap();
    let bad = Tensor::from_slice(&[0i32, 3], &[2], &device()).unwrap();
    let err = logits.cross_entropy(&bad).unwrap_err().to_string();
    assert!(
        err.contains("cross_entropy") && err.contains("index 3") && err.contains("0..3"),
        "{err}"
    );
    let wrong_rows = Tensor::from_slice(&[0i32], &[1], &device()).unwrap();
    assert!(logits
        .cross_entropy(&wrong_rows)
        .unwrap_err()
        .to_string()
        .contains("labels [N]"));
    let float_labels = Tensor::zeros(&[2], &device()).unwrap();
    assert!(logits
        .cross_entropy(&float_labels)
        .unwrap_err()
        .to_string()
        .contains("i32"));
}
