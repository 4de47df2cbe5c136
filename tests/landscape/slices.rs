//! Filter-normalised directions and slices against direct evaluations of the loss.

use crate::small_classifier;
use dynlab::algos::landscape::slices::{parameter_values, set_parameters};
use dynlab::algos::landscape::{
    filter_normalize, interpolation, model_loss, random_direction, slice_1d, slice_2d,
    symmetric_grid, BiasDirection, LossEval,
};
use dynlab::models::{Module, ParamKind};
use dynlab::train::CrossEntropy;
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, device_test, host_f64, HostRng};

/// Norms of the slices of a row-major tensor of `shape` along `axis`.
fn filter_norms(values: &[f64], shape: &[usize], axis: usize) -> Vec<f64> {
    let count = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut norms = vec![0.0; count];
    for (flat, v) in values.iter().enumerate() {
        norms[(flat / inner) % count] += v * v;
    }
    norms.iter().map(|s| s.sqrt()).collect()
}

#[device_test]
fn filter_normalised_filters_have_the_weights_norms() {
    let d = device();
    let mut host = HostRng::new(2);
    let cases: [(&[usize], ParamKind, Option<usize>); 4] = [
        (&[5, 7], ParamKind::Weight, Some(1)),
        (&[6, 3, 3, 3], ParamKind::Weight, Some(0)),
        (&[9, 4], ParamKind::Embedding, Some(0)),
        (&[7], ParamKind::Bias, None),
    ];
    let make = |host: &mut HostRng, shape: &[usize]| {
        let n = shape.iter().product();
        Tensor::from_vec(host.vec(n, -2.0, 2.0), shape, &d).unwrap()
    };
    let weights: Vec<Tensor> = cases.iter().map(|c| make(&mut host, c.0)).collect();
    let raw: Vec<Tensor> = cases.iter().map(|c| make(&mut host, c.0)).collect();
    let kinds: Vec<ParamKind> = cases.iter().map(|c| c.1).collect();
    for bias in [BiasDirection::Zero, BiasDirection::Weight] {
        let dirs = filter_normalize(&raw, &weights, &kinds, bias).unwrap();
        for ((case, w), dir) in cases.iter().zip(&weights).zip(&dirs) {
            let (wv, dv) = (host_f64(w), host_f64(dir));
            match case.2 {
                Some(axis) => {
                    let want = filter_norms(&wv, case.0, axis);
                    let got = filter_norms(&dv, case.0, axis);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() < 1e-5 * w.max(1.0),
                            "{:?}: {g} vs {w}",
                            case.0
                        );
                    }
                    // Each filter keeps the raw direction's orientation.
                    let rv = host_f64(&raw[cases.iter().position(|c| c.0 == case.0).unwrap()]);
                    let dot: f64 = rv.iter().zip(&dv).map(|(a, b)| a * b).sum();
                    assert!(dot > 0.0);
                }
                None => match bias {
                    BiasDirection::Zero => assert!(dv.iter().all(|&x| x == 0.0)),
                    BiasDirection::Weight => assert_eq!(dv, wv),
                },
            }
        }
    }
    let e = filter_normalize(&raw[..1], &weights[1..2], &kinds[..1], BiasDirection::Zero)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("filter_normalize") && e.contains("[6, 3, 3, 3]"),
        "{e}"
    );
}

#[device_test]
fn slices_equal_direct_evaluations_and_leave_the_model_in_place() {
    let (mut model, batch) = small_classifier(&[4, 8, 3], 20, 5);
    let before = parameter_values(&model);
    let loss0 = model_loss(&model, &batch, &CrossEntropy)
        .unwrap()
        .value()
        .item()
        .unwrap() as f64;
    let mut rng = Rng::new(3);
    let d1 = random_direction(&model, &mut rng, BiasDirection::Zero).unwrap();
    let d2 = random_direction(&model, &mut rng, BiasDirection::Weight).unwrap();
    let eval = LossEval {
        batch: &batch,
        objective: &CrossEntropy,
        chunk: 7,
    };
    let alphas = symmetric_grid(1.0, 5).unwrap();
    assert_eq!(alphas[2], 0.0);
    let line = slice_1d(&mut model, &eval, &d1, &alphas).unwrap();
    assert!(
        (line.losses[2] - loss0).abs() < 1e-5 * (1.0 + loss0),
        "slice at 0 {}",
        line.losses[2]
    );
    let betas = [-0.5, 0.25, 0.75];
    let plane = slice_2d(&mut model, &eval, [&d1, &d2], &alphas, &betas).unwrap();
    assert_eq!(plane.losses.len(), alphas.len() * betas.len());
    for (j, b) in betas.iter().enumerate() {
        for (i, a) in alphas.iter().enumerate() {
            // Direct: set θ + αδ + βη and evaluate the whole batch at once.
            let point: Vec<Tensor> = before
                .iter()
                .zip(&d1)
                .zip(&d2)
                .map(|((p, x), y)| {
                    p.add(&x.mul_scalar(*a as f32).unwrap())
                        .unwrap()
                        .add(&y.mul_scalar(*b as f32).unwrap())
                        .unwrap()
                })
                .collect();
            let mut probe = model.clone();
            set_parameters(&mut probe, &point).unwrap();
            let want = model_loss(&probe, &batch, &CrossEntropy)
                .unwrap()
                .value()
                .item()
                .unwrap();
            let got = plane.losses[j * alphas.len() + i];
            assert!(
                (got - want as f64).abs() < 1e-4 * (1.0 + got.abs()),
                "({a}, {b}): {got} vs {want}"
            );
        }
    }
    for (p, q) in parameter_values(&model).iter().zip(&before) {
        assert_eq!(host_f64(p), host_f64(q), "the model moved");
    }
    let e = slice_1d(&mut model, &eval, &d1[1..], &alphas)
        .unwrap_err()
        .to_string();
    assert!(e.contains("slice_1d"), "{e}");
}

#[device_test]
fn interpolation_runs_between_two_checkpoints() {
    let (mut model, batch) = small_classifier(&[4, 6, 3], 12, 8);
    let (other, _) = small_classifier(&[4, 6, 3], 12, 9);
    let a = parameter_values(&model);
    let b = parameter_values(&other);
    let eval = LossEval {
        batch: &batch,
        objective: &CrossEntropy,
        chunk: 64,
    };
    let line = interpolation(&mut model, &eval, &a, &b, &[0.0, 0.5, 1.0]).unwrap();
    let at = |m: &dyn Module| {
        model_loss(m, &batch, &CrossEntropy)
            .unwrap()
            .value()
            .item()
            .unwrap() as f64
    };
    assert!((line.losses[0] - at(&model)).abs() < 1e-5);
    assert!((line.losses[2] - at(&other)).abs() < 1e-5);
    let mid: Vec<Tensor> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| x.add(y).unwrap().mul_scalar(0.5).unwrap())
        .collect();
    let mut half = model.clone();
    set_parameters(&mut half, &mid).unwrap();
    assert!((line.losses[1] - at(&half)).abs() < 1e-5);
    assert!(symmetric_grid(0.0, 5).is_err());
}
