//! The fused first-order kernels (activation backward passes, the cross-entropy gradient, the
//! correct-prediction count, Adam's statistics) and the batched read-back, against the f64
//! reference on broadcast, strided, empty and size-1 cases, outputs poisoned with NaN.

use dynlab::runtime::AdamStatsTensor;
use dynlab::Tensor;
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

type Backward = fn(&Tensor, &Tensor) -> dynlab::Result<Tensor>;

/// `d/dx GELU(x) = Φ(x) + x φ(x)`.
fn gelu_derivative(x: f64) -> f64 {
    let phi = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
    0.5 * (1.0 + r::erf(x / std::f64::consts::SQRT_2)) + x * phi
}

/// `d/dx ½x(1 + tanh u)`, `u = √(2/π)(x + 0.044715x³)`.
fn gelu_tanh_derivative(x: f64) -> f64 {
    let k = (2.0 / std::f64::consts::PI).sqrt();
    let t = (k * (x + 0.044715 * x * x * x)).tanh();
    0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x)
}

/// (name, op `self.op(grad)`, reference `(self, grad) ↦ value`, range of `self`, atol, rtol).
/// `tanh_backward` and `sigmoid_backward` take the activation's output as `self`. The GELU
/// tolerances are the forward ops' (lavapipe's `tanh` and `erf` are good to ~1e-6 absolute).
type BackwardCase = (
    &'static str,
    Backward,
    fn(f64, f64) -> f64,
    (f32, f32),
    f64,
    f64,
);

fn backward_cases() -> Vec<BackwardCase> {
    vec![
        (
            "gelu_backward",
            Tensor::gelu_backward,
            |x, g| g * gelu_derivative(x),
            (-6.0, 6.0),
            1e-6,
            1e-5,
        ),
        (
            "gelu_tanh_backward",
            Tensor::gelu_tanh_backward,
            |x, g| g * gelu_tanh_derivative(x),
            (-6.0, 6.0),
            1e-5,
            1e-5,
        ),
        (
            "tanh_backward",
            Tensor::tanh_backward,
            |y, g| g * (1.0 - y * y),
            (-1.0, 1.0),
            1e-6,
            1e-6,
        ),
        (
            "sigmoid_backward",
            Tensor::sigmoid_backward,
            |y, g| g * y * (1.0 - y),
            (0.0, 1.0),
            1e-6,
            1e-6,
        ),
        (
            "relu_backward",
            Tensor::relu_backward,
            |x, g| if x > 0.0 { g } else { 0.0 },
            (-2.0, 2.0),
            0.0,
            0.0,
        ),
    ]
}

/// Shapes of `self` and of the upstream gradient that broadcast (empty, scalar, size 1, odd).
const PAIRS: &[(&[usize], &[usize])] = &[
    (&[7], &[7]),
    (&[33, 5], &[33, 5]),
    (&[3, 1, 5], &[4, 1]),
    (&[], &[2, 3]),
    (&[0, 3], &[1, 3]),
    (&[1], &[1]),
    (&[3, 5, 40], &[5, 40]),
];

#[device_test]
fn activation_backward_kernels_match_the_derivative() {
    let mut rng = HostRng::new(41);
    for (name, op, reference, (lo, hi), atol, rtol) in backward_cases() {
        for (sx, sg) in PAIRS {
            for (layout, x, hx) in layouts(&mut rng, sx, lo, hi) {
                let g_shape = if layout.starts_with("transposed") {
                    x.shape().to_vec()
                } else {
                    sg.to_vec()
                };
                let (g, hg) = random(&mut rng, &g_shape, -2.0, 2.0);
                assert_close(
                    &format!("{name} {layout} with {g_shape:?}"),
                    &op(&x, &g).unwrap(),
                    &r::zip(&hx, &hg, reference),
                    atol,
                    rtol,
                );
            }
        }
    }
}

/// The fused kernels equal the unfused chains they replace (the derivative written as ops) to
/// within a couple of ulp, and a NaN input stays NaN (ReLU's mask passes no gradient at NaN).
#[device_test]
fn activation_backward_kernels_equal_their_unfused_chains() {
    let mut rng = HostRng::new(42);
    let (x, _) = random(&mut rng, &[9, 37], -5.0, 5.0);
    let (g, _) = random(&mut rng, &[9, 37], -2.0, 2.0);
    let y = x.tanh().unwrap();
    let unfused = y.square().unwrap().neg().unwrap().add_scalar(1.0).unwrap();
    let unfused = unfused.mul(&g).unwrap();
    // 1 − y² cancels where |y| → 1: its rounding error is an ulp of the terms (1 + y²)·|g|, not
    // of the difference, and a device that contracts it into one fma (CUDA) rounds once.
    let (yv, gv) = (y.to_vec::<f32>().unwrap(), g.to_vec::<f32>().unwrap());
    let terms: Vec<f32> = yv
        .iter()
        .zip(&gv)
        .map(|(y, g)| (1.0 + y * y) * g.abs())
        .collect();
    let fused = y.tanh_backward(&g).unwrap();
    assert_ulps_of_terms("tanh_backward", &fused, &unfused, &terms, 2);
    let s = x.sigmoid().unwrap();
    let unfused = s.neg().unwrap().add_scalar(1.0).unwrap().mul(&s).unwrap();
    let unfused = unfused.mul(&g).unwrap();
    assert_ulps(
        "sigmoid_backward",
        &s.sigmoid_backward(&g).unwrap(),
        &unfused,
        2,
    );
    let unfused = x.gt(&Tensor::zeros(&[], &device()).unwrap()).unwrap();
    let unfused = unfused.mul(&g).unwrap();
    assert_ulps("relu_backward", &x.relu_backward(&g).unwrap(), &unfused, 0);

    let nan = Tensor::from_slice(&[f32::NAN, 1.0, -1.0], &[3], &device()).unwrap();
    let ones = Tensor::ones(&[3], &device()).unwrap();
    assert_eq!(
        nan.relu_backward(&ones).unwrap().to_vec::<f32>().unwrap(),
        [0.0, 1.0, 0.0]
    );
    for (name, op, ..) in backward_cases().into_iter().take(2) {
        let out = op(&nan, &ones).unwrap().to_vec::<f32>().unwrap();
        assert!(out[0].is_nan(), "{name} of NaN: {out:?}");
    }
}

/// `|a − b|` in units of the last place of `b`, at most `ulps` everywhere; NaN only with NaN.
fn assert_ulps(what: &str, got: &Tensor, want: &Tensor, ulps: u32) {
    let zeros = vec![0.0; want.numel()];
    assert_ulps_of_terms(what, got, want, &zeros, ulps);
}

/// As [`assert_ulps`], with the unit the last place of `b` or of `terms` (the magnitude of the
/// terms a chain adds), whichever is larger.
fn assert_ulps_of_terms(what: &str, got: &Tensor, want: &Tensor, terms: &[f32], ulps: u32) {
    let (got, want) = (got.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        let ulp = f32::EPSILON * w.abs().max(terms[i]).max(f32::MIN_POSITIVE);
        assert!(
            (g.is_nan() && w.is_nan()) || (g - w).abs() <= ulps as f32 * ulp,
            "{what}[{i}]: fused {g}, unfused {w} (more than {ulps} ulp apart)"
        );
    }
}

/// Logits of `[n, c]` with small integer values (ties happen), labels in `0..c`.
fn logits_and_labels(rng: &mut HostRng, n: usize, c: usize) -> (Tensor, HostTensor, Vec<usize>) {
    let data: Vec<f32> = (0..n * c).map(|_| rng.below(4) as f32 - 1.5).collect();
    let labels: Vec<usize> = (0..n).map(|_| rng.below(c.max(1))).collect();
    let t = Tensor::from_slice(&data, &[n, c], &device()).unwrap();
    (t, HostTensor::from_f32(&[n, c], &data), labels)
}

fn label_tensor(labels: &[usize]) -> Tensor {
    let l: Vec<i32> = labels.iter().map(|&l| l as i32).collect();
    Tensor::from_slice(&l, &[labels.len()], &device()).unwrap()
}

#[device_test]
fn cross_entropy_backward_is_softmax_minus_onehot_times_grad() {
    let mut rng = HostRng::new(43);
    for (n, c) in [(5, 7), (1, 1), (0, 4), (33, 97), (3, 300)] {
        let (logits, h, labels) = logits_and_labels(&mut rng, n, c);
        let (grad, hg) = random(&mut rng, &[n], -2.0, 2.0);
        let mut want = Vec::with_capacity(n * c);
        for (i, &l) in labels.iter().enumerate() {
            let p = r::softmax(&h.data[i * c..(i + 1) * c]);
            want.extend(
                p.iter()
                    .enumerate()
                    .map(|(j, p)| (p - r::mask(j == l)) * hg.data[i]),
            );
        }
        let got = logits
            .cross_entropy_backward(&label_tensor(&labels), &grad)
            .unwrap();
        assert_close(
            &format!("cross_entropy_backward [{n}, {c}]"),
            &got,
            &HostTensor::new(&[n, c], want),
            1e-6,
            1e-5,
        );
        let strided = logits.transpose(0, 1).unwrap().transpose(0, 1).unwrap();
        let again = strided
            .cross_entropy_backward(&label_tensor(&labels), &grad)
            .unwrap();
        assert_eq!(again.to_vec::<f32>().unwrap(), got.to_vec::<f32>().unwrap());
    }
    let (logits, _, labels) = logits_and_labels(&mut rng, 4, 3);
    let err = logits
        .cross_entropy_backward(
            &label_tensor(&labels),
            &Tensor::zeros(&[3], &device()).unwrap(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross_entropy_backward") && err.contains("[3]"),
        "{err}"
    );
}

#[device_test]
fn correct_counts_first_maxima_at_the_label() {
    let mut rng = HostRng::new(44);
    for (n, c) in [(40, 5), (1, 1), (0, 3), (17, 97)] {
        let (logits, h, labels) = logits_and_labels(&mut rng, n, c);
        let want: Vec<f64> = labels
            .iter()
            .enumerate()
            .map(|(i, &l)| r::mask(r::argmax(&h.data[i * c..(i + 1) * c]) as usize == l))
            .collect();
        let got = logits.correct(&label_tensor(&labels)).unwrap();
        assert_close(
            &format!("correct [{n}, {c}]"),
            &got,
            &HostTensor::new(&[n], want),
            0.0,
            0.0,
        );
    }
    let nan = Tensor::from_slice(&[1.0, f32::NAN, 5.0, 2.0, 0.0, 1.0], &[2, 3], &device()).unwrap();
    let got = nan.correct(&label_tensor(&[1, 0])).unwrap();
    assert_eq!(
        got.to_vec::<f32>().unwrap(),
        [1.0, 1.0],
        "NaN counts as the maximum"
    );
}

/// Adam's statistics over parameters of several shapes (more than one launch chunk, an empty
/// parameter, with and without decay) against the host formula.
#[device_test]
fn adam_stats_match_the_host_formula() {
    let mut rng = HostRng::new(45);
    let shapes: &[&[usize]] = &[
        &[3, 4],
        &[0],
        &[7],
        &[1],
        &[5, 2],
        &[9],
        &[2, 2, 2],
        &[1, 1],
    ];
    let (lr, eps) = (3e-3f32, 1e-8f32);
    let mut host = [0.0f64, f64::MIN, 0.0, 0.0, 0.0];
    let mut tensors = Vec::new();
    for (k, shape) in shapes.iter().enumerate() {
        let (m, hm) = random(&mut rng, shape, -1.0, 1.0);
        let (v, hv) = random(&mut rng, shape, 1e-6, 1.0);
        let (p, hp) = random(&mut rng, shape, -2.0, 2.0);
        let (c1, c2) = (
            1.0 - 0.9f32.powi(k as i32 + 1),
            1.0 - 0.999f32.powi(k as i32 + 1),
        );
        let decay = if k % 2 == 0 { 0.1f32 } else { 0.0 };
        for i in 0..hm.data.len() {
            let d = (hv.data[i] / c2 as f64).sqrt() + eps as f64;
            let ratio = (hm.data[i] / c1 as f64).abs() / d;
            let step = lr as f64 / d;
            host[0] += step;
            host[1] = host[1].max(step);
            host[2] += ratio;
            if decay > 0.0 {
                host[3] += (lr as f64 * ratio).powi(2);
            }
            host[4] += (lr as f64 * decay as f64 * hp.data[i]).powi(2);
        }
        tensors.push((m, v, p, c1, c2, decay));
    }
    let items: Vec<AdamStatsTensor> = tensors
        .iter()
        .map(|(m, v, param, c1, c2, decay)| AdamStatsTensor {
            m,
            v,
            param,
            c1: *c1,
            c2: *c2,
            decay: *decay,
        })
        .collect();
    let partials = Tensor::adam_stats(&items, lr, eps, &[])
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_eq!(partials.len() % 5, 0);
    let column = |j: usize| partials.iter().skip(j).step_by(5).map(|&x| x as f64);
    let got = [
        column(0).sum::<f64>(),
        column(1).fold(f64::MIN, f64::max),
        column(2).sum::<f64>(),
        column(3).sum::<f64>(),
        column(4).sum::<f64>(),
    ];
    for (j, (g, w)) in got.iter().zip(&host).enumerate() {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs() + 1e-12,
            "statistic {j}: {g} vs {w}"
        );
    }
    assert!(Tensor::adam_stats(&[], lr, eps, &[]).is_err());
}

/// `read_many` returns what one read per tensor returns (views made contiguous), with one sync.
#[device_test]
fn read_many_reads_every_tensor_with_one_sync() {
    let device = private_device();
    let mut rng = HostRng::new(46);
    let a = Tensor::from_slice(&rng.vec(24, -1.0, 1.0), &[4, 6], &device).unwrap();
    let b = a.transpose(0, 1).unwrap();
    let c = Tensor::zeros(&[0], &device).unwrap();
    let d = a.narrow(1, 2, 3).unwrap();
    let want: Vec<Vec<f32>> = [&a, &b, &c, &d]
        .iter()
        .map(|t| t.to_vec().unwrap())
        .collect();
    let before = device.stats();
    let got = Tensor::read_many(&[&a, &b, &c, &d]).unwrap();
    assert_eq!(device.stats().since(&before).syncs, 1);
    assert_eq!(got, want);
    assert!(Tensor::read_many(&[]).unwrap().is_empty());
    let ints = Tensor::from_slice(&[1i32], &[1], &device).unwrap();
    let err = Tensor::read_many(&[&a, &ints]).unwrap_err().to_string();
    assert!(err.contains("read_many"), "{err}");
}

/// Mean cross-entropy and accuracy per group of rows, and the gradient of the means, against the
/// host; NaN rows, empty batches and bad groupings.
#[device_test]
fn cross_entropy_means_per_group_match_the_host() {
    let mut rng = HostRng::new(47);
    for (groups, n, c) in [(1, 37, 5), (3, 11, 97), (1, 1, 1), (4, 300, 3)] {
        let (logits, h, labels) = logits_and_labels(&mut rng, groups * n, c);
        let t = label_tensor(&labels);
        let losses = r::cross_entropy(&h, &labels);
        let mut want = vec![0.0; 2 * groups];
        for g in 0..groups {
            let rows = g * n..(g + 1) * n;
            want[g] = losses[rows.clone()].iter().sum::<f64>() / n as f64;
            let hits =
                rows.filter(|&i| r::argmax(&h.data[i * c..(i + 1) * c]) as usize == labels[i]);
            want[groups + g] = hits.count() as f64 / n as f64;
        }
        let got = logits.cross_entropy_mean(&t, groups).unwrap();
        let what = format!("cross_entropy_mean {groups} × [{n}, {c}]");
        assert_close(
            &what,
            &got,
            &HostTensor::new(&[2, groups], want),
            1e-6,
            1e-5,
        );

        let (grad, hg) = random(&mut rng, &[groups], -2.0, 2.0);
        let mut want = Vec::with_capacity(groups * n * c);
        for (i, &l) in labels.iter().enumerate() {
            let p = r::softmax(&h.data[i * c..(i + 1) * c]);
            let g = hg.data[i / n] / n as f64;
            want.extend(p.iter().enumerate().map(|(j, p)| (p - r::mask(j == l)) * g));
        }
        let got = logits
            .cross_entropy_mean_backward(&t, &grad, groups)
            .unwrap();
        let want = HostTensor::new(&[groups * n, c], want);
        assert_close(&format!("{what} backward"), &got, &want, 1e-7, 1e-5);
    }
    let empty = Tensor::zeros(&[0, 4], &device()).unwrap();
    let none = Tensor::from_slice(&[0i32; 0], &[0], &device()).unwrap();
    let got = empty
        .cross_entropy_mean(&none, 1)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        got.iter().all(|v| v.is_nan()),
        "the mean of no rows: {got:?}"
    );
    let nan = Tensor::from_slice(&[f32::NAN, 0.0, 1.0, 2.0], &[2, 2], &device()).unwrap();
    let got = nan.cross_entropy_mean(&label_tensor(&[1, 1]), 1).unwrap();
    let got = got.to_vec::<f32>().unwrap();
    assert!(got[0].is_nan() && got[1] == 0.5, "a NaN row: {got:?}");
    let (logits, _, labels) = logits_and_labels(&mut rng, 6, 3);
    let err = logits
        .cross_entropy_mean(&label_tensor(&labels), 4)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cross_entropy_mean") && err.contains("6 rows"),
        "{err}"
    );
}

/// The mean row norm per group against the host, on a strided view; NaN for empty groups.
#[device_test]
fn mean_row_norms_per_group_match_the_host() {
    let mut rng = HostRng::new(48);
    for (groups, n, d) in [(1, 370, 128), (5, 7, 3), (2, 1, 1)] {
        let (x, h) = random(&mut rng, &[d, groups * n], -2.0, 2.0);
        let x = x.transpose(0, 1).unwrap();
        let want: Vec<f64> = (0..groups)
            .map(|g| {
                let norms = (g * n..(g + 1) * n).map(|i| {
                    (0..d)
                        .map(|j| h.data[j * groups * n + i].powi(2))
                        .sum::<f64>()
                        .sqrt()
                });
                norms.sum::<f64>() / n as f64
            })
            .collect();
        let shape: &[usize] = if groups == 1 { &[] } else { &[groups] };
        let got = x.mean_row_norm(groups).unwrap();
        let what = format!("mean_row_norm {groups} × [{n}, {d}]");
        assert_close(&what, &got, &HostTensor::new(shape, want), 1e-6, 1e-5);
    }
    let empty = Tensor::zeros(&[0, 3], &device()).unwrap();
    assert!(empty.mean_row_norm(1).unwrap().item().unwrap().is_nan());
    let err = Tensor::zeros(&[5, 3], &device())
        .unwrap()
        .mean_row_norm(2)
        .unwrap_err();
    assert!(err.to_string().contains("mean_row_norm"), "{err}");
}
