//! The input Jacobian against f64 central differences of a host copy of the network; partial
//! Jacobians against the full one; the rank of the Jacobian of a network that ignores inputs.

use dynlab::algos::landscape::{
    input_jacobian, jacobian_ranks, JacobianCols, JacobianPlan, JacobianRows,
};
use dynlab::models::{Activation, Ctx, Init, Mlp, Module};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::{device, device_test, host_f64, HostRng};

/// The host f64 forward of a tanh MLP with weights `[in, out]` and biases.
fn host_forward(layers: &[(Vec<f64>, Vec<f64>, usize, usize)], x: &[f64]) -> Vec<f64> {
    let mut h = x.to_vec();
    for (l, (w, b, inputs, outputs)) in layers.iter().enumerate() {
        let mut out = b.clone();
        for (i, hi) in h.iter().enumerate().take(*inputs) {
            for (o, v) in out.iter_mut().enumerate().take(*outputs) {
                *v += hi * w[i * outputs + o];
            }
        }
        if l + 1 < layers.len() {
            out.iter_mut().for_each(|v| *v = v.tanh());
        }
        h = out;
    }
    h
}

#[device_test]
fn input_jacobian_equals_f64_finite_differences() {
    let d = device();
    let dims = [6, 9, 5];
    let model = Mlp::new(
        &dims,
        Activation::Tanh,
        Init::XavierUniform,
        true,
        &mut Rng::new(4),
        &d,
    )
    .unwrap();
    let layers: Vec<_> = model
        .layers
        .iter()
        .map(|l| {
            let b = host_f64(l.bias.as_ref().unwrap().value());
            (host_f64(l.weight.value()), b, l.inputs(), l.outputs())
        })
        .collect();
    let n = 3;
    let x = HostRng::new(6).vec(n * dims[0], -1.0, 1.0);
    let xt = Tensor::from_vec(x.clone(), &[n, dims[0]], &d).unwrap();
    let f = |v: &Var| model.forward(v, &mut Ctx::eval());
    let plan = JacobianPlan {
        rows_per_pass: 2,
        ..JacobianPlan::default()
    };
    let jac = input_jacobian(f, &xt, &plan).unwrap();
    assert_eq!(jac.shape(), [n, 5, 6]);
    let got = host_f64(&jac);
    let h = 1e-6;
    for e in 0..n {
        let base: Vec<f64> = x[e * 6..(e + 1) * 6].iter().map(|&v| v as f64).collect();
        for c in 0..6 {
            let (mut up, mut down) = (base.clone(), base.clone());
            up[c] += h;
            down[c] -= h;
            let (fu, fd) = (host_forward(&layers, &up), host_forward(&layers, &down));
            for r in 0..5 {
                let want = (fu[r] - fd[r]) / (2.0 * h);
                let g = got[(e * 5 + r) * 6 + c];
                assert!(
                    (g - want).abs() < 1e-5,
                    "J[{e}][{r},{c}] = {g}, differences {want}"
                );
            }
        }
    }
    // Partial Jacobians are the full one's columns and projections.
    let subset = JacobianPlan {
        cols: JacobianCols::Subset(vec![4, 1]),
        ..JacobianPlan::default()
    };
    let part = host_f64(&input_jacobian(f, &xt, &subset).unwrap());
    for e in 0..n {
        for r in 0..5 {
            for (k, c) in [4, 1].iter().enumerate() {
                let want = got[(e * 5 + r) * 6 + c];
                assert!((part[(e * 5 + r) * 2 + k] - want).abs() < 1e-6);
            }
        }
    }
    let projected = JacobianPlan {
        rows: JacobianRows::Projection { k: 3, seed: 1 },
        cols: JacobianCols::Projection { k: 2, seed: 2 },
        rows_per_pass: 16,
    };
    let pj = input_jacobian(f, &xt, &projected).unwrap();
    assert_eq!(pj.shape(), [n, 3, 2]);
    let u = Tensor::rand_normal(&[3, 5], 0.0, 1.0 / 3f32.sqrt(), &mut Rng::new(1), &d).unwrap();
    let p = Tensor::rand_normal(&[6, 2], 0.0, 1.0 / 2f32.sqrt(), &mut Rng::new(2), &d).unwrap();
    let want = host_f64(&u.matmul(&jac).unwrap().matmul(&p).unwrap());
    for (g, w) in host_f64(&pj).iter().zip(&want) {
        assert!((g - w).abs() < 1e-5, "{g} vs {w}");
    }
    let e = input_jacobian(
        f,
        &xt,
        &JacobianPlan {
            cols: JacobianCols::Subset(vec![6]),
            ..JacobianPlan::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("input_jacobian") && e.contains("0..6"), "{e}");
}

#[device_test]
fn jacobian_rank_counts_the_inputs_a_network_sees() {
    let d = device();
    // A linear map through a rank-2 bottleneck: every J_n = W₁W₂ has rank 2.
    let mut model = Mlp::new(
        &[5, 2, 4],
        Activation::Tanh,
        Init::XavierUniform,
        false,
        &mut Rng::new(3),
        &d,
    )
    .unwrap();
    let w = model.layers[0].weight.value().mul_scalar(1e-3).unwrap();
    model.layers[0].weight.set(w).unwrap();
    let x = Tensor::zeros(&[2, 5], &d).unwrap();
    let f = |v: &Var| model.forward(v, &mut Ctx::eval());
    let jac = input_jacobian(f, &x, &JacobianPlan::default()).unwrap();
    let ranks = jacobian_ranks(&jac).unwrap();
    assert_eq!(ranks.len(), 2);
    for r in &ranks {
        assert_eq!(r.numerical_rank, 2, "{:?}", r.singular_values);
        assert_eq!(r.singular_values.len(), 4);
    }
}
