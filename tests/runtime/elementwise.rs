//! Elementwise kernels against the f64 reference, on every layout and shape case of the test support.

use dynlab::Tensor;
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

type DevOp = fn(&Tensor) -> dynlab::Result<Tensor>;

/// (name, device op, reference, input range, atol, rtol). Tolerances: f32 rounding of the result
/// plus the device's transcendental accuracy (lavapipe's exp/log/tanh/erf are within a few ulp).
/// (name, device op, reference, input range, atol, rtol).
type UnaryCase = (&'static str, DevOp, fn(f64) -> f64, (f32, f32), f64, f64);

fn unary_cases() -> Vec<UnaryCase> {
    vec![
        ("neg", Tensor::neg, |x| -x, (-5.0, 5.0), 0.0, 0.0),
        ("abs", Tensor::abs, f64::abs, (-5.0, 5.0), 0.0, 0.0),
        ("exp", Tensor::exp, f64::exp, (-10.0, 10.0), 1e-6, 2e-6),
        ("log", Tensor::log, f64::ln, (0.01, 100.0), 2e-6, 2e-6),
        ("log1p", Tensor::log1p, f64::ln_1p, (-0.9, 10.0), 2e-6, 2e-6),
        ("sqrt", Tensor::sqrt, f64::sqrt, (0.0, 100.0), 1e-6, 1e-6),
        (
            "rsqrt",
            Tensor::rsqrt,
            |x| 1.0 / x.sqrt(),
            (0.01, 100.0),
            1e-6,
            2e-6,
        ),
        ("recip", Tensor::recip, |x| 1.0 / x, (0.1, 10.0), 1e-6, 1e-6),
        ("square", Tensor::square, |x| x * x, (-5.0, 5.0), 1e-6, 1e-6),
        ("relu", Tensor::relu, |x| x.max(0.0), (-5.0, 5.0), 0.0, 0.0),
        ("erf", Tensor::erf, r::erf, (-4.0, 4.0), 1e-6, 1e-5),
        ("gelu", Tensor::gelu, r::gelu, (-6.0, 6.0), 1e-5, 1e-5),
        (
            "gelu_tanh",
            Tensor::gelu_tanh,
            r::gelu_tanh,
            (-6.0, 6.0),
            1e-5,
            1e-5,
        ),
        (
            "sigmoid",
            Tensor::sigmoid,
            r::sigmoid,
            (-20.0, 20.0),
            1e-6,
            1e-5,
        ),
        ("tanh", Tensor::tanh, f64::tanh, (-6.0, 6.0), 2e-6, 1e-5),
        ("sin", Tensor::sin, f64::sin, (-6.0, 6.0), 2e-6, 1e-5),
        ("cos", Tensor::cos, f64::cos, (-6.0, 6.0), 2e-6, 1e-5),
        ("sign", Tensor::sign, r::sign, (-5.0, 5.0), 0.0, 0.0),
    ]
}

#[device_test]
fn unary_ops_match_reference_on_all_layouts() {
    let mut rng = HostRng::new(1);
    for (name, op, reference, (lo, hi), atol, rtol) in unary_cases() {
        for shape in SHAPES {
            for (layout, t, h) in layouts(&mut rng, shape, lo, hi) {
                let got = op(&t).unwrap();
                assert_close(
                    &format!("{name} {layout}"),
                    &got,
                    &r::map(&h, reference),
                    atol,
                    rtol,
                );
            }
        }
    }
}

#[device_test]
fn parameterised_unary_ops_match_reference() {
    let mut rng = HostRng::new(2);
    for shape in SHAPES {
        for (layout, t, h) in layouts(&mut rng, shape, 0.1, 4.0) {
            let w = |name: &str| format!("{name} {layout}");
            let neg = t.neg().unwrap();
            let hn = r::map(&h, |x| -x);
            assert_close(
                &w("leaky_relu"),
                &neg.leaky_relu(0.1).unwrap(),
                &r::map(&hn, |x| if x < 0.0 { 0.1f32 as f64 * x } else { x }),
                1e-7,
                1e-6,
            );
            assert_close(
                &w("clamp"),
                &t.clamp(1.0, 2.0).unwrap(),
                &r::map(&h, |x| x.clamp(1.0, 2.0)),
                0.0,
                0.0,
            );
            assert_close(
                &w("powf"),
                &t.powf(1.7).unwrap(),
                &r::map(&h, |x| x.powf(1.7f32 as f64)),
                1e-6,
                1e-5,
            );
            assert_close(
                &w("scalar_pow"),
                &t.scalar_pow(1.5).unwrap(),
                &r::map(&h, |x| 1.5f64.powf(x)),
                1e-6,
                1e-5,
            );
            assert_close(
                &w("add_scalar"),
                &t.add_scalar(0.25).unwrap(),
                &r::map(&h, |x| x + 0.25),
                1e-6,
                1e-7,
            );
            assert_close(
                &w("sub_scalar"),
                &t.sub_scalar(0.25).unwrap(),
                &r::map(&h, |x| x - 0.25),
                1e-6,
                1e-7,
            );
            assert_close(
                &w("mul_scalar"),
                &t.mul_scalar(-3.0).unwrap(),
                &r::map(&h, |x| x * -3.0),
                1e-6,
                1e-7,
            );
            assert_close(
                &w("div_scalar"),
                &t.div_scalar(4.0).unwrap(),
                &r::map(&h, |x| x / 4.0),
                1e-7,
                1e-7,
            );
            assert_close(
                &w("rsub_scalar"),
                &t.rsub_scalar(1.0).unwrap(),
                &r::map(&h, |x| 1.0 - x),
                1e-6,
                1e-7,
            );
            assert_close(
                &w("rdiv_scalar"),
                &t.rdiv_scalar(2.0).unwrap(),
                &r::map(&h, |x| 2.0 / x),
                1e-6,
                1e-6,
            );
            assert_close(
                &w("maximum_scalar"),
                &t.maximum_scalar(2.0).unwrap(),
                &r::map(&h, |x| x.max(2.0)),
                0.0,
                0.0,
            );
            assert_close(
                &w("minimum_scalar"),
                &t.minimum_scalar(2.0).unwrap(),
                &r::map(&h, |x| x.min(2.0)),
                0.0,
                0.0,
            );
            assert_close(
                &w("lt_scalar"),
                &t.lt_scalar(2.0).unwrap(),
                &r::map(&h, |x| r::mask(x < 2.0)),
                0.0,
                0.0,
            );
            assert_close(
                &w("ge_scalar"),
                &t.ge_scalar(2.0).unwrap(),
                &r::map(&h, |x| r::mask(x >= 2.0)),
                0.0,
                0.0,
            );
        }
    }
}

type BinOp = fn(&Tensor, &Tensor) -> dynlab::Result<Tensor>;

/// (name, device op, reference, atol, rtol).
type BinaryCase = (&'static str, BinOp, fn(f64, f64) -> f64, f64, f64);

fn binary_cases() -> Vec<BinaryCase> {
    vec![
        ("add", Tensor::add, |a, b| a + b, 1e-6, 1e-7),
        ("sub", Tensor::sub, |a, b| a - b, 1e-6, 1e-7),
        ("mul", Tensor::mul, |a, b| a * b, 1e-6, 1e-7),
        ("div", Tensor::div, |a, b| a / b, 1e-6, 1e-6),
        ("pow", Tensor::pow, f64::powf, 1e-6, 1e-5),
        ("maximum", Tensor::maximum, r::maximum, 0.0, 0.0),
        ("minimum", Tensor::minimum, r::minimum, 0.0, 0.0),
        ("eq", Tensor::eq, |a, b| r::mask(a == b), 0.0, 0.0),
        ("ne", Tensor::ne, |a, b| r::mask(a != b), 0.0, 0.0),
        ("lt", Tensor::lt, |a, b| r::mask(a < b), 0.0, 0.0),
        ("le", Tensor::le, |a, b| r::mask(a <= b), 0.0, 0.0),
        ("gt", Tensor::gt, |a, b| r::mask(a > b), 0.0, 0.0),
        ("ge", Tensor::ge, |a, b| r::mask(a >= b), 0.0, 0.0),
    ]
}

/// Pairs of shapes that broadcast, including empty, scalar and size-1 dimensions.
const PAIRS: &[(&[usize], &[usize])] = &[
    (&[7], &[7]),
    (&[33, 5], &[33, 5]),
    (&[3, 1, 5], &[4, 1]),
    (&[], &[2, 3]),
    (&[6, 1], &[1, 9]),
    (&[0, 3], &[1, 3]),
    (&[1], &[1]),
    (&[2, 3, 4], &[4]),
    // A last dimension of at least 32, with and without a broadcast row.
    (&[3, 5, 40], &[5, 40]),
    (&[2, 3, 33], &[3, 1]),
];

/// `x [N, C, ...] + bias [C]` for planes of 1, 3 (no vector loads), 4 and 36 pixels, rank 2 to 4, an
/// empty batch; strided input; wrong bias shapes are errors. Tolerance: one f32 rounding of sums
/// below 4.
#[device_test]
fn add_channel_bias_matches_broadcast_add() {
    let mut rng = HostRng::new(11);
    for shape in [
        &[5, 3][..],
        &[2, 4, 3],
        &[3, 2, 2, 2],
        &[2, 5, 6, 6],
        &[0, 3, 4],
    ] {
        let (x, hx) = random(&mut rng, shape, -2.0, 2.0);
        let (b, hb) = random(&mut rng, &[shape[1]], -2.0, 2.0);
        let mut channel = vec![1; shape.len()];
        channel[1] = shape[1];
        let hb = HostTensor::new(&channel, hb.data);
        let want = r::zip(&hx, &hb, |a, b| a + b);
        assert_close(
            &format!("{shape:?}"),
            &x.add_channel_bias(&b).unwrap(),
            &want,
            1e-6,
            0.0,
        );
    }
    let (x, hx) = random(&mut rng, &[4, 3], -2.0, 2.0);
    let (b, hb) = random(&mut rng, &[4], -2.0, 2.0);
    let got = x.transpose(0, 1).unwrap().add_channel_bias(&b).unwrap();
    let want = r::zip(
        &r::permute(&hx, &[1, 0]),
        &HostTensor::new(&[1, 4], hb.data),
        |a, b| a + b,
    );
    assert_close("transposed", &got, &want, 1e-6, 0.0);
    let err = x.add_channel_bias(&b).unwrap_err().to_string();
    assert!(
        err.contains("add_channel_bias") && err.contains("[4]"),
        "{err}"
    );
    let (v, _) = random(&mut rng, &[3], -2.0, 2.0);
    assert!(v.add_channel_bias(&v).is_err());
}

#[device_test]
fn binary_ops_broadcast_and_match_reference() {
    let mut rng = HostRng::new(3);
    for (name, op, reference, atol, rtol) in binary_cases() {
        for (sa, sb) in PAIRS {
            for (la, a, ha) in layouts(&mut rng, sa, 0.5, 2.0) {
                // A transposed `a` has its shape reversed; pair it with a same-shaped `b` instead.
                let b_shape = if la.starts_with("transposed") {
                    a.shape().to_vec()
                } else {
                    sb.to_vec()
                };
                let (b, hb) = random(&mut rng, &b_shape, 0.5, 2.0);
                let got = op(&a, &b).unwrap();
                assert_close(
                    &format!("{name} {la} with {b_shape:?}"),
                    &got,
                    &r::zip(&ha, &hb, reference),
                    atol,
                    rtol,
                );
                let self_cmp = op(&a, &a).unwrap();
                assert_close(
                    &format!("{name} {la} with itself"),
                    &self_cmp,
                    &r::zip(&ha, &ha, reference),
                    atol,
                    rtol,
                );
            }
        }
    }
}

#[device_test]
fn where_and_masked_fill_broadcast() {
    let mut rng = HostRng::new(4);
    let (x, hx) = random(&mut rng, &[4, 5], -1.0, 1.0);
    let (y, hy) = random(&mut rng, &[5], -1.0, 1.0);
    let cond = x.gt_scalar(0.0).unwrap();
    let hc = r::map(&hx, |v| r::mask(v > 0.0));
    assert_close(
        "where_",
        &Tensor::where_(&cond, &x, &y).unwrap(),
        &r::where_(&hc, &hx, &hy),
        0.0,
        0.0,
    );
    let row_mask = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.0], &[5], &device()).unwrap();
    let hm = HostTensor::from_f32(&[5], &[1.0, 0.0, 0.0, 1.0, 0.0]);
    let filled = HostTensor::new(&[], vec![-7.0]);
    assert_close(
        "masked_fill",
        &x.masked_fill(&row_mask, -7.0).unwrap(),
        &r::where_(&hm, &filled, &hx),
        0.0,
        0.0,
    );
    let empty = Tensor::zeros(&[0, 5], &device()).unwrap();
    assert_eq!(
        Tensor::where_(&empty, &x.narrow(0, 0, 0).unwrap(), &y)
            .unwrap()
            .shape(),
        &[0, 5]
    );
}

#[device_test]
fn nan_propagates_through_relu_clamp_and_extrema() {
    let d = device();
    let x = Tensor::from_slice(&[f32::NAN, 1.0, -1.0], &[3], &d).unwrap();
    for (name, t) in [
        ("relu", x.relu().unwrap()),
        ("clamp", x.clamp(-0.5, 0.5).unwrap()),
        ("sign", x.sign().unwrap()),
        ("maximum", x.maximum(&x.neg().unwrap()).unwrap()),
        ("minimum_scalar", x.minimum_scalar(0.0).unwrap()),
    ] {
        let v = t.to_vec::<f32>().unwrap();
        assert!(v[0].is_nan(), "{name} turned NaN into {}", v[0]);
        assert!(
            !v[1].is_nan() && !v[2].is_nan(),
            "{name} produced NaN from finite input: {v:?}"
        );
    }
}

#[device_test]
fn large_tensor_uses_two_dimensional_grid() {
    // 17M elements need more than 65535 cubes of 256 units.
    let n = (1 << 24) + 5;
    let x = Tensor::full(&[n], 1.5, &device()).unwrap();
    let y = x.add_scalar(1.0).unwrap().narrow(0, 0, n).unwrap();
    let v = y.to_vec::<f32>().unwrap();
    assert!(
        v.iter().all(|&e| e == 2.5),
        "some element of the 2-D grid was not written"
    );
}
