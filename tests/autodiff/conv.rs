//! Convolution and pooling: forward against the f64 reference (odd, non-square images; 1x1, 3x3,
//! 5x5 kernels; stride 2; padding; dilation; groups) and gradients against central differences, plus
//! a second-order check and clear errors for bad shapes.

use dynlab::runtime::Conv2dOptions;
use dynlab::{Tensor, Var};
use dynlab_test_support::reference::{self as r, HostTensor, Window2d};
use dynlab_test_support::*;

struct ConvCase {
    x: [usize; 4],
    w: [usize; 4],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
}

const CASES: &[ConvCase] = &[
    ConvCase {
        x: [2, 3, 7, 5],
        w: [4, 3, 3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    },
    ConvCase {
        x: [1, 2, 9, 6],
        w: [3, 2, 5, 5],
        stride: [2, 2],
        padding: [2, 1],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
    ConvCase {
        x: [2, 4, 5, 7],
        w: [6, 2, 3, 1],
        stride: [2, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 2,
        bias: true,
    },
    ConvCase {
        x: [1, 3, 4, 4],
        w: [5, 3, 1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    },
    ConvCase {
        x: [1, 2, 8, 7],
        w: [2, 1, 3, 2],
        stride: [1, 2],
        padding: [1, 0],
        dilation: [2, 2],
        groups: 2,
        bias: false,
    },
];

fn options(c: &ConvCase) -> Conv2dOptions {
    Conv2dOptions {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
        groups: c.groups,
    }
}

fn window(c: &ConvCase) -> Window2d {
    Window2d {
        stride: c.stride,
        padding: c.padding,
        dilation: c.dilation,
    }
}

#[device_test]
fn conv2d_forward_and_gradients_match_reference() {
    let mut rng = HostRng::new(200);
    for (k, c) in CASES.iter().enumerate() {
        let mut inputs = vec![
            random(&mut rng, &c.x, -1.0, 1.0),
            random(&mut rng, &c.w, -1.0, 1.0),
        ];
        if c.bias {
            inputs.push(random(&mut rng, &[c.w[0]], -1.0, 1.0));
        }
        let (opts, win, groups) = (options(c), window(c), c.groups);
        // The tensor-level op agrees with the tape's.
        let plain = inputs[0]
            .0
            .conv2d(&inputs[1].0, inputs.get(2).map(|b| &b.0), opts)
            .unwrap();
        assert_close(
            &format!("case {k} Tensor::conv2d"),
            &plain,
            &r::conv2d(
                &inputs[0].1,
                &inputs[1].1,
                inputs.get(2).map(|b| &b.1),
                win,
                groups,
            ),
            1e-5,
            1e-4,
        );
        check_gradients(
            &format!("conv2d case {k}"),
            inputs,
            &|v| v[0].conv2d(&v[1], v.get(2), opts),
            &|h| r::conv2d(&h[0], &h[1], h.get(2), win, groups),
            &mut rng,
        );
    }
}

/// A batch convolved in chunks of images (what `conv2d` does when the columns exceed a buffer),
/// with a last chunk smaller than the others, against the reference with gradients.
#[device_test]
fn conv2d_in_chunks_matches_reference() {
    let mut rng = HostRng::new(201);
    let c = &CASES[0];
    let x = [5, c.x[1], c.x[2], c.x[3]];
    let inputs = vec![
        random(&mut rng, &x, -1.0, 1.0),
        random(&mut rng, &c.w, -1.0, 1.0),
        random(&mut rng, &[c.w[0]], -1.0, 1.0),
    ];
    let (opts, win) = (options(c), window(c));
    for images in [1, 2, 5, 9] {
        check_gradients(
            &format!("conv2d in chunks of {images}"),
            inputs.clone(),
            &|v| v[0].conv2d_in_chunks(&v[1], v.get(2), opts, images),
            &|h| r::conv2d(&h[0], &h[1], h.get(2), win, 1),
            &mut rng,
        );
    }
}

/// Both product algorithms on every case above plus shapes that fill several channel and pixel tiles
/// partially (`O/G` of 20 and 5, `Ho·Wo` from 1 to 143 across cubes of 32 units × 4 pixels).
#[device_test]
fn conv2d_algorithms_match_reference() {
    use dynlab::runtime::{with_conv_algorithm, ConvAlgorithm};
    let mut rng = HostRng::new(203);
    let extra = [
        ConvCase {
            x: [2, 3, 13, 11],
            w: [20, 3, 3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 1,
            bias: true,
        },
        ConvCase {
            x: [1, 4, 3, 3],
            w: [10, 2, 3, 3],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 2,
            bias: false,
        },
        ConvCase {
            x: [3, 2, 17, 9],
            w: [17, 2, 5, 3],
            stride: [2, 1],
            padding: [2, 0],
            dilation: [1, 2],
            groups: 1,
            bias: true,
        },
    ];
    for (k, c) in CASES.iter().chain(&extra).enumerate() {
        let (x, hx) = random(&mut rng, &c.x, -1.0, 1.0);
        let (w, hw) = random(&mut rng, &c.w, -1.0, 1.0);
        let (b, hb) = random(&mut rng, &[c.w[0]], -1.0, 1.0);
        let bias = c.bias.then_some(&b);
        let want = r::conv2d(&hx, &hw, c.bias.then_some(&hb), window(c), c.groups);
        for algorithm in [ConvAlgorithm::Im2col, ConvAlgorithm::Implicit] {
            let got = with_conv_algorithm(algorithm, || x.conv2d(&w, bias, options(c)).unwrap());
            assert_close(&format!("case {k} {algorithm:?}"), &got, &want, 1e-5, 1e-4);
        }
    }
}

#[device_test]
fn pooling_forward_and_gradients_match_reference() {
    let mut rng = HostRng::new(201);
    // (input shape, kernel, stride, padding)
    type PoolCase = ([usize; 4], [usize; 2], [usize; 2], [usize; 2]);
    let cases: &[PoolCase] = &[
        ([2, 3, 6, 5], [2, 2], [2, 2], [0, 0]),
        ([1, 2, 7, 9], [3, 3], [2, 2], [1, 1]),
        ([1, 1, 5, 4], [3, 2], [1, 1], [1, 0]),
        ([2, 2, 1, 3], [1, 3], [1, 2], [0, 1]),
    ];
    for &(shape, kernel, stride, padding) in cases {
        let opts = Conv2dOptions {
            stride,
            padding,
            ..Default::default()
        };
        let win = Window2d {
            stride,
            padding,
            dilation: [1, 1],
        };
        for max in [true, false] {
            check_gradients(
                &format!(
                    "{} pool {shape:?} k{kernel:?} s{stride:?} p{padding:?}",
                    if max { "max" } else { "avg" }
                ),
                vec![random(&mut rng, &shape, -1.0, 1.0)],
                &|v| {
                    if max {
                        v[0].max_pool2d(kernel, opts)
                    } else {
                        v[0].avg_pool2d(kernel, opts)
                    }
                },
                &|h| r::pool2d(&h[0], kernel, win, max),
                &mut rng,
            );
        }
    }
    let (x, hx) = random(&mut rng, &[2, 3, 4, 5], -1.0, 1.0);
    let want = r::reduce(&r::reduce(&hx, 3, true, r::mean), 2, true, r::mean);
    assert_close(
        "adaptive_avg_pool2d_1x1",
        &x.adaptive_avg_pool2d_1x1().unwrap(),
        &want,
        1e-6,
        1e-5,
    );
}

#[device_test]
fn conv_and_pool_second_derivatives_exist() {
    use dynlab::{grad, GradOptions};
    let mut rng = HostRng::new(202);
    let (x, _) = random(&mut rng, &[1, 2, 5, 5], -1.0, 1.0);
    let (w, _) = random(&mut rng, &[2, 2, 3, 3], -1.0, 1.0);
    let (x, w) = (Var::param(x), Var::param(w));
    let opts = Conv2dOptions {
        padding: [1, 1],
        ..Default::default()
    };
    // L = Σ maxpool(conv(x, w))²: d/dx of Σ (∂L/∂w) must be computable and finite.
    let y = x
        .conv2d(&w, None, opts)
        .unwrap()
        .max_pool2d(
            [2, 2],
            Conv2dOptions {
                stride: [2, 2],
                ..Default::default()
            },
        )
        .unwrap();
    let loss = y.square().unwrap().sum_all().unwrap();
    let with_graph = GradOptions {
        create_graph: true,
        ..Default::default()
    };
    let gw = grad(&loss, &[&w], with_graph).unwrap();
    let second = gw[0].sum_all().unwrap().backward().unwrap();
    let gx = second.tensor(&x).unwrap().to_vec::<f32>().unwrap();
    assert!(gx.iter().all(|v| v.is_finite()) && gx.iter().any(|v| *v != 0.0));
}

#[device_test]
fn bad_convolutions_are_errors() {
    let d = device();
    let x = Tensor::zeros(&[1, 3, 4, 4], &d).unwrap();
    let cases = [
        (
            Tensor::zeros(&[2, 2, 3, 3], &d).unwrap(),
            Conv2dOptions::default(),
            "weight [O, 3, KH, KW]",
        ),
        (
            Tensor::zeros(&[2, 3, 5, 5], &d).unwrap(),
            Conv2dOptions::default(),
            "dilated kernel extent 5",
        ),
        (
            Tensor::zeros(&[3, 1, 1, 1], &d).unwrap(),
            Conv2dOptions {
                groups: 3,
                ..Default::default()
            },
            "",
        ),
        (
            Tensor::zeros(&[2, 3, 1, 1], &d).unwrap(),
            Conv2dOptions {
                stride: [0, 1],
                ..Default::default()
            },
            "positive",
        ),
        (
            Tensor::zeros(&[4, 1, 1, 1], &d).unwrap(),
            Conv2dOptions {
                groups: 2,
                ..Default::default()
            },
            "divisible",
        ),
    ];
    for (w, o, needle) in cases {
        match x.conv2d(&w, None, o) {
            Ok(_) => assert!(needle.is_empty(), "{o:?} should fail"),
            Err(e) => assert!(
                !needle.is_empty() && e.to_string().contains(needle),
                "{o:?}: {e}"
            ),
        }
    }
    let e = Tensor::zeros(&[3, 4, 4], &d)
        .unwrap()
        .max_pool2d([2, 2], Conv2dOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[N, C, H, W]"), "{e}");
    let e = x
        .max_pool2d(
            [2, 2],
            Conv2dOptions {
                padding: [2, 0],
                ..Default::default()
            },
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("half the kernel"), "{e}");
}

/// `softmax(Q Kᵀ/√d + M) V` per (batch, head) on the host.
pub(crate) fn attention_ref(
    q: &HostTensor,
    k: &HostTensor,
    v: &HostTensor,
    causal: bool,
) -> HostTensor {
    let r = q.shape.len();
    let (t, d, s, e) = (
        q.shape[r - 2],
        q.shape[r - 1],
        k.shape[r - 2],
        v.shape[r - 1],
    );
    let heads: usize = q.shape[..r - 2].iter().product();
    let mut out = Vec::with_capacity(heads * t * e);
    for h in 0..heads {
        for i in 0..t {
            let scores: Vec<f64> = (0..s)
                .map(|j| {
                    if causal && j > i {
                        f64::NEG_INFINITY
                    } else {
                        (0..d)
                            .map(|c| q.data[(h * t + i) * d + c] * k.data[(h * s + j) * d + c])
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    }
                })
                .collect();
            let p = r::softmax(&scores);
            for c in 0..e {
                out.push((0..s).map(|j| p[j] * v.data[(h * s + j) * e + c]).sum());
            }
        }
    }
    let mut shape = q.shape[..r - 1].to_vec();
    shape.push(e);
    HostTensor::new(&shape, out)
}

#[device_test]
fn materialised_attention_matches_reference_with_gradients() {
    let mut rng = HostRng::new(203);
    for (shape_q, s, causal) in [
        ([2, 3, 5, 4], 5, true),
        ([1, 2, 7, 3], 6, false),
        ([1, 1, 1, 2], 1, true),
    ] {
        let [b, h, t, d] = shape_q;
        let inputs = vec![
            random(&mut rng, &[b, h, t, d], -1.0, 1.0),
            random(&mut rng, &[b, h, s, d], -1.0, 1.0),
            random(&mut rng, &[b, h, s, 3], -1.0, 1.0),
        ];
        check_gradients(
            &format!("attention q {shape_q:?} s {s} causal {causal}"),
            inputs,
            &|v| v[0].attention(&v[1], &v[2], causal, None),
            &|x| attention_ref(&x[0], &x[1], &x[2], causal),
            &mut rng,
        );
    }
    let q = Var::constant(Tensor::zeros(&[2, 4, 3], &device()).unwrap());
    let k = Var::constant(Tensor::zeros(&[2, 4, 5], &device()).unwrap());
    assert!(q
        .attention(&k, &k, false, None)
        .unwrap_err()
        .to_string()
        .contains("q [..., T, d]"));
}
