//! Gradient checks of every differentiable op with the test support's checker: for
//! `L(x) = Σ f(x) ⊙ r` with a fixed random `r`, the autodiff gradient must match central
//! differences of the f64 reference `f`.

use dynlab::{Tensor, Var};
use dynlab_test_support::reference::{self as r, HostTensor};
use dynlab_test_support::*;

type DevFn = Box<dyn Fn(&[Var]) -> dynlab::Result<Var>>;
type RefFn = Box<dyn Fn(&[HostTensor]) -> HostTensor>;

struct Case {
    name: &'static str,
    shapes: Vec<Vec<usize>>,
    range: (f32, f32),
    dev: DevFn,
    reference: RefFn,
}

fn case(
    name: &'static str,
    shapes: &[&[usize]],
    range: (f32, f32),
    dev: impl Fn(&[Var]) -> dynlab::Result<Var> + 'static,
    reference: impl Fn(&[HostTensor]) -> HostTensor + 'static,
) -> Case {
    Case {
        name,
        shapes: shapes.iter().map(|s| s.to_vec()).collect(),
        range,
        dev: Box::new(dev),
        reference: Box::new(reference),
    }
}

fn check(c: &Case, rng: &mut HostRng) {
    let inputs: Vec<(Tensor, HostTensor)> = c
        .shapes
        .iter()
        .map(|s| random(rng, s, c.range.0, c.range.1))
        .collect();
    check_gradients(c.name, inputs, &*c.dev, &*c.reference, rng);
}

fn unary(
    name: &'static str,
    range: (f32, f32),
    dev: fn(&Var) -> dynlab::Result<Var>,
    f: fn(f64) -> f64,
) -> Case {
    case(
        name,
        &[&[3, 5]],
        range,
        move |v| dev(&v[0]),
        move |h| r::map(&h[0], f),
    )
}

fn binary(
    name: &'static str,
    shapes: &[&[usize]],
    range: (f32, f32),
    dev: fn(&Var, &Var) -> dynlab::Result<Var>,
    f: fn(f64, f64) -> f64,
) -> Case {
    case(
        name,
        shapes,
        range,
        move |v| dev(&v[0], &v[1]),
        move |h| r::zip(&h[0], &h[1], f),
    )
}

fn elementwise_cases() -> Vec<Case> {
    let bcast: &[&[usize]] = &[&[4, 1, 3], &[2, 3]];
    vec![
        unary("neg", (-2.0, 2.0), Var::neg, |x| -x),
        unary("exp", (-2.0, 2.0), Var::exp, f64::exp),
        unary("log", (0.5, 3.0), Var::log, f64::ln),
        unary("log1p", (-0.5, 3.0), Var::log1p, f64::ln_1p),
        unary("sqrt", (0.5, 3.0), Var::sqrt, f64::sqrt),
        unary("square", (-2.0, 2.0), Var::square, |x| x * x),
        unary("rsqrt", (0.5, 3.0), Var::rsqrt, |x| 1.0 / x.sqrt()),
        unary("recip", (0.5, 3.0), Var::recip, |x| 1.0 / x),
        unary("abs", (0.1, 2.0), Var::abs, f64::abs),
        unary("tanh", (-2.0, 2.0), Var::tanh, f64::tanh),
        unary("sigmoid", (-3.0, 3.0), Var::sigmoid, r::sigmoid),
        unary("sin", (-3.0, 3.0), Var::sin, f64::sin),
        unary("cos", (-3.0, 3.0), Var::cos, f64::cos),
        unary("erf", (-2.0, 2.0), Var::erf, r::erf),
        unary("gelu", (-3.0, 3.0), Var::gelu, r::gelu),
        unary("gelu_tanh", (-3.0, 3.0), Var::gelu_tanh, r::gelu_tanh),
        // Kinks kept away from the sample points: inputs in [0.1, 2] or shifted below.
        unary("relu", (0.1, 2.0), Var::relu, |x| x.max(0.0)),
        case(
            "relu negative side",
            &[&[3, 5]],
            (0.1, 2.0),
            |v| v[0].neg()?.relu(),
            |h| r::map(&h[0], |x| (-x).max(0.0)),
        ),
        case(
            "leaky_relu",
            &[&[3, 5]],
            (0.1, 2.0),
            |v| v[0].add_scalar(-1.0)?.leaky_relu(0.1),
            |h| {
                r::map(&h[0], |x| {
                    if x - 1.0 < 0.0 {
                        0.1f32 as f64 * (x - 1.0)
                    } else {
                        x - 1.0
                    }
                })
            },
        ),
        case(
            "powf",
            &[&[3, 5]],
            (0.5, 2.0),
            |v| v[0].powf(2.5),
            |h| r::map(&h[0], |x| x.powf(2.5)),
        ),
        case(
            "clamp",
            &[&[3, 5]],
            (-2.0, 2.0),
            |v| v[0].clamp(-1.0, 1.0),
            |h| r::map(&h[0], |x| x.clamp(-1.0, 1.0)),
        ),
        case(
            "scalar ops",
            &[&[3, 5]],
            (0.5, 2.0),
            |v| {
                v[0].add_scalar(1.0)?
                    .mul_scalar(3.0)?
                    .div_scalar(2.0)?
                    .rsub_scalar(1.0)
            },
            |h| r::map(&h[0], |x| 1.0 - (x + 1.0) * 3.0 / 2.0),
        ),
        binary("add broadcast", bcast, (-1.0, 1.0), Var::add, |a, b| a + b),
        binary("sub broadcast", bcast, (-1.0, 1.0), Var::sub, |a, b| a - b),
        binary("mul broadcast", bcast, (-1.0, 1.0), Var::mul, |a, b| a * b),
        binary("div broadcast", bcast, (0.5, 2.0), Var::div, |a, b| a / b),
        binary("pow", &[&[3, 4], &[3, 4]], (0.5, 2.0), Var::pow, f64::powf),
        binary(
            "maximum",
            &[&[3, 4], &[4]],
            (-1.0, 1.0),
            Var::maximum,
            f64::max,
        ),
        binary(
            "minimum",
            &[&[3, 4], &[3, 4]],
            (-1.0, 1.0),
            Var::minimum,
            f64::min,
        ),
        case(
            "reuse x*x + x",
            &[&[6]],
            (-1.0, 1.0),
            |v| v[0].mul(&v[0])?.add(&v[0]),
            |h| r::map(&h[0], |x| x * x + x),
        ),
    ]
}

#[device_test]
fn elementwise_gradients_match_finite_differences() {
    let mut rng = HostRng::new(100);
    for c in elementwise_cases() {
        check(&c, &mut rng);
    }
}

fn reduce_cases() -> Vec<Case> {
    vec![
        case(
            "sum axis",
            &[&[3, 4, 2]],
            (-1.0, 1.0),
            |v| v[0].sum(1, false),
            |h| r::reduce(&h[0], 1, false, r::sum),
        ),
        case(
            "sum keepdim negative axis",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].sum(-1, true),
            |h| r::reduce(&h[0], 1, true, r::sum),
        ),
        case(
            "sum_all",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].sum_all(),
            |h| HostTensor::new(&[], vec![r::sum(&h[0].data)]),
        ),
        case(
            "mean",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].mean(0, false),
            |h| r::reduce(&h[0], 0, false, r::mean),
        ),
        case(
            "mean_all",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].mean_all(),
            |h| HostTensor::new(&[], vec![r::mean(&h[0].data)]),
        ),
        case(
            "var unbiased",
            &[&[3, 5]],
            (-1.0, 1.0),
            |v| v[0].var(1, true, false),
            |h| r::reduce(&h[0], 1, false, |x| r::var(x, true)),
        ),
        case(
            "max",
            &[&[4, 5]],
            (-1.0, 1.0),
            |v| v[0].max(1, false),
            |h| r::reduce(&h[0], 1, false, r::max),
        ),
        case(
            "min keepdim",
            &[&[4, 5]],
            (-1.0, 1.0),
            |v| v[0].min(0, true),
            |h| r::reduce(&h[0], 0, true, r::min),
        ),
        case(
            "norm 2",
            &[&[3, 5]],
            (0.1, 1.0),
            |v| v[0].norm(2.0, 1, false),
            |h| r::reduce(&h[0], 1, false, |x| r::norm(x, 2.0)),
        ),
        case(
            "norm 3",
            &[&[3, 5]],
            (0.1, 1.0),
            |v| v[0].norm(3.0, 0, false),
            |h| r::reduce(&h[0], 0, false, |x| r::norm(x, 3.0)),
        ),
        case(
            "logsumexp",
            &[&[3, 5]],
            (-2.0, 2.0),
            |v| v[0].logsumexp(1, false),
            |h| r::reduce(&h[0], 1, false, r::logsumexp),
        ),
        case(
            "softmax",
            &[&[3, 5]],
            (-2.0, 2.0),
            |v| v[0].softmax(1),
            |h| r::along(&h[0], 1, r::softmax),
        ),
        case(
            "softmax axis 0",
            &[&[3, 5]],
            (-2.0, 2.0),
            |v| v[0].softmax(0),
            |h| r::along(&h[0], 0, r::softmax),
        ),
        case(
            "log_softmax",
            &[&[3, 5]],
            (-2.0, 2.0),
            |v| v[0].log_softmax(-1),
            |h| r::along(&h[0], 1, r::log_softmax),
        ),
    ]
}

#[device_test]
fn reduction_and_softmax_gradients_match_finite_differences() {
    let mut rng = HostRng::new(101);
    for c in reduce_cases() {
        check(&c, &mut rng);
    }
}

#[device_test]
fn cross_entropy_gradient_matches_finite_differences() {
    let mut rng = HostRng::new(102);
    let labels = [2usize, 0, 4, 4];
    let lab = Tensor::from_slice(&labels.map(|l| l as i32), &[4], &device()).unwrap();
    let c = case(
        "cross_entropy",
        &[&[4, 5]],
        (-2.0, 2.0),
        move |v| v[0].cross_entropy(&lab),
        move |h| {
            HostTensor::new(
                &[],
                vec![r::cross_entropy(&h[0], &labels).iter().sum::<f64>() / 4.0],
            )
        },
    );
    check(&c, &mut rng);
}

fn view_cases() -> Vec<Case> {
    vec![
        case(
            "reshape",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].reshape(&[2, 6])?.mul(&v[0].reshape(&[2, 6])?),
            |h| HostTensor::new(&[2, 6], h[0].data.iter().map(|x| x * x).collect()),
        ),
        case(
            "permute",
            &[&[2, 3, 4]],
            (-1.0, 1.0),
            |v| v[0].permute(&[2, 0, 1]),
            |h| r::permute(&h[0], &[2, 0, 1]),
        ),
        case(
            "transpose",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].transpose(0, 1),
            |h| r::permute(&h[0], &[1, 0]),
        ),
        case(
            "expand",
            &[&[3, 1]],
            (-1.0, 1.0),
            |v| v[0].expand(&[2, 3, 4]),
            |h| r::zip(&h[0], &HostTensor::new(&[2, 3, 4], vec![0.0; 24]), |a, _| a),
        ),
        case(
            "unsqueeze squeeze",
            &[&[3, 4]],
            (-1.0, 1.0),
            |v| v[0].unsqueeze(1)?.squeeze(1)?.square(),
            |h| r::map(&h[0], |x| x * x),
        ),
        case(
            "narrow",
            &[&[5, 3]],
            (-1.0, 1.0),
            |v| v[0].narrow(0, 1, 3),
            |h| r::slice(&h[0], 0, 1, 4, 1),
        ),
        case(
            "cat",
            &[&[2, 3], &[4, 3]],
            (-1.0, 1.0),
            |v| Var::cat(&[&v[0], &v[1]], 0),
            |h| r::cat(&[&h[0], &h[1]], 0),
        ),
        case(
            "stack",
            &[&[2, 3], &[2, 3]],
            (-1.0, 1.0),
            |v| Var::stack(&[&v[0], &v[1]], 1),
            |h| {
                let u = |x: &HostTensor| HostTensor::new(&[2, 1, 3], x.data.clone());
                r::cat(&[&u(&h[0]), &u(&h[1])], 1)
            },
        ),
    ]
}

#[device_test]
fn view_gradients_match_finite_differences() {
    let mut rng = HostRng::new(103);
    for c in view_cases() {
        check(&c, &mut rng);
    }
}

#[device_test]
fn indexing_gradients_match_finite_differences() {
    let mut rng = HostRng::new(104);
    let d = device();
    let idx_vals = [2usize, 0, 2, 1, 0, 0];
    let idx = Tensor::from_slice(&idx_vals.map(|v| v as i32), &[3, 2], &d).unwrap();
    let hidx = HostTensor::new(&[3, 2], idx_vals.iter().map(|&v| v as f64).collect());
    let (i1, h1) = (idx.clone(), hidx.clone());
    check(
        &case(
            "gather with repeats",
            &[&[3, 2]],
            (-1.0, 1.0),
            move |v| v[0].gather(0, &i1),
            move |h| r::gather(&h[0], 0, &h1),
        ),
        &mut rng,
    );
    let sel = Tensor::from_slice(&[1i32, 1, 0], &[3], &d).unwrap();
    check(
        &case(
            "index_select",
            &[&[2, 4]],
            (-1.0, 1.0),
            move |v| v[0].index_select(0, &sel),
            |h| {
                let row = |i: usize| r::slice(&h[0], 0, i, i + 1, 1);
                r::cat(&[&row(1), &row(1), &row(0)], 0)
            },
        ),
        &mut rng,
    );
    let (i2, h2) = (idx.clone(), hidx.clone());
    check(
        &case(
            "scatter_add",
            &[&[3, 2], &[3, 2]],
            (-1.0, 1.0),
            move |v| v[0].scatter_add(0, &i2, &v[1]),
            move |h| r::scatter_add(&h[0], 0, &h2, &h[1]),
        ),
        &mut rng,
    );
    let m = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 0.0], &[3, 2], &d).unwrap();
    let hm = HostTensor::from_f32(&[3, 2], &[1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    let (m1, hm1) = (m.clone(), hm.clone());
    check(
        &case(
            "where",
            &[&[3, 2], &[2]],
            (-1.0, 1.0),
            move |v| Var::where_(&m1, &v[0], &v[1]),
            move |h| r::where_(&hm1, &h[0], &h[1]),
        ),
        &mut rng,
    );
    check(
        &case(
            "masked_fill",
            &[&[3, 2]],
            (-1.0, 1.0),
            move |v| v[0].masked_fill(&m, 5.0),
            move |h| r::where_(&hm, &HostTensor::new(&[], vec![5.0]), &h[0]),
        ),
        &mut rng,
    );
}

#[device_test]
fn matmul_and_linear_gradients_match_finite_differences() {
    let mut rng = HostRng::new(105);
    check(
        &case(
            "matmul",
            &[&[3, 4], &[4, 5]],
            (-1.0, 1.0),
            |v| v[0].matmul(&v[1]),
            |h| r::matmul(&h[0], &h[1]),
        ),
        &mut rng,
    );
    check(
        &case(
            "batched broadcast matmul",
            &[&[2, 3, 4], &[4, 2]],
            (-1.0, 1.0),
            |v| v[0].matmul(&v[1]),
            |h| r::matmul(&h[0], &h[1]),
        ),
        &mut rng,
    );
    // Operands broadcast over leading batch dimensions (their gradients folded into one
    // product), with kept batch dimensions, and a size-1 batch dimension (summed back).
    for (name, a, b) in [
        (
            "left operand broadcast over images",
            &[2, 3, 4][..],
            &[3, 2, 4, 5][..],
        ),
        (
            "right operand broadcast over images",
            &[3, 2, 3, 4],
            &[2, 4, 5],
        ),
        (
            "left operand broadcast, no kept batch",
            &[3, 4],
            &[2, 2, 4, 5],
        ),
        ("size-1 batch dimension", &[1, 3, 4], &[2, 4, 5]),
    ] {
        check(
            &case(
                name,
                &[a, b],
                (-1.0, 1.0),
                |v| v[0].matmul(&v[1]),
                |h| r::matmul(&h[0], &h[1]),
            ),
            &mut rng,
        );
    }
    check(
        &case(
            "linear over a batch of sequences",
            &[&[2, 3, 4], &[4, 5], &[5]],
            (-1.0, 1.0),
            |v| v[0].linear(&v[1], &v[2]),
            |h| r::zip(&r::matmul(&h[0], &h[1]), &h[2], |a, b| a + b),
        ),
        &mut rng,
    );
    check(
        &case(
            "matmul transposed operand",
            &[&[4, 3], &[4, 5]],
            (-1.0, 1.0),
            |v| v[0].transpose(0, 1)?.matmul(&v[1]),
            |h| r::matmul(&r::permute(&h[0], &[1, 0]), &h[1]),
        ),
        &mut rng,
    );
    check(
        &case(
            "linear",
            &[&[3, 4], &[4, 5], &[5]],
            (-1.0, 1.0),
            |v| v[0].linear(&v[1], &v[2]),
            |h| r::zip(&r::matmul(&h[0], &h[1]), &h[2], |a, b| a + b),
        ),
        &mut rng,
    );
}

#[device_test]
fn gradients_of_unused_and_constant_inputs() {
    let d = device();
    let x = Var::param(Tensor::ones(&[3], &d).unwrap());
    let unused = Var::param(Tensor::ones(&[2], &d).unwrap());
    let c = Var::constant(Tensor::full(&[3], 2.0, &d).unwrap());
    let loss = x.mul(&c).unwrap().sum_all().unwrap();
    let g = dynlab::grad(&loss, &[&x, &unused], Default::default()).unwrap();
    assert_eq!(g[0].value().to_vec::<f32>().unwrap(), vec![2.0; 3]);
    assert_eq!(g[1].value().to_vec::<f32>().unwrap(), vec![0.0; 2]);
    let not_scalar = x.mul_scalar(2.0).unwrap();
    let msg = not_scalar.backward().err().unwrap().to_string();
    assert!(msg.contains("scalar output"), "{msg}");
    let constant_loss = c.sum_all().unwrap();
    assert!(constant_loss
        .backward()
        .err()
        .unwrap()
        .to_string()
        .contains("does not depend"));
    let detached = x.detach().sum_all().unwrap();
    assert!(!detached.requires_grad());
    let inside = dynlab::no_grad(|| x.square().unwrap());
    assert!(!inside.requires_grad());
    let once = x.square().unwrap().sum_all().unwrap();
    once.backward().unwrap();
    assert!(once
        .backward()
        .err()
        .unwrap()
        .to_string()
        .contains("retain_graph"));
}
