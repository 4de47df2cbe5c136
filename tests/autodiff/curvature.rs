//! Double backward against known Hessians, HVP of a 2-layer tanh MLP against finite differences of
//! an f64 gradient, and Hutchinson's trace estimate against the exact trace.

use dynlab::autodiff::{hutchinson_trace, hvp};
use dynlab::{grad, GradOptions, Tensor, Var};
use dynlab_test_support::reference::HostTensor;
use dynlab_test_support::*;

const CREATE: GradOptions = GradOptions {
    create_graph: true,
    retain_graph: false,
};

#[device_test]
fn second_derivative_of_cubic_sum() {
    let d = device();
    let x = Var::param(Tensor::from_slice(&[1.0f32, -2.0, 0.5], &[3], &d).unwrap());
    let loss = x.powf(3.0).unwrap().sum_all().unwrap();
    let g = grad(&loss, &[&x], CREATE).unwrap();
    assert_eq!(g[0].value().to_vec::<f32>().unwrap(), vec![3.0, 12.0, 0.75]);
    // d/dx Σ 3x² = 6x; third order: d/dx Σ 6x = 6.
    let h = grad(&g[0].sum_all().unwrap(), &[&x], CREATE).unwrap();
    assert_eq!(h[0].value().to_vec::<f32>().unwrap(), vec![6.0, -12.0, 3.0]);
    let t = grad(&h[0].sum_all().unwrap(), &[&x], Default::default()).unwrap();
    assert_eq!(t[0].value().to_vec::<f32>().unwrap(), vec![6.0; 3]);
}

#[device_test]
fn hvp_of_a_quadratic_form_is_two_a_v() {
    let mut rng = HostRng::new(110);
    let n = 6;
    let (m, hm) = random(&mut rng, &[n, n], -1.0, 1.0);
    let a = m.add(&m.transpose(0, 1).unwrap()).unwrap(); // symmetric
    let ha: Vec<f64> = (0..n * n)
        .map(|i| hm.data[i] + hm.data[(i % n) * n + i / n])
        .collect();
    let (x, _) = random(&mut rng, &[n, 1], -1.0, 1.0);
    let (v, hv) = random(&mut rng, &[n, 1], -1.0, 1.0);
    let a_var = Var::constant(a);
    let hv_dev = hvp(
        |p| {
            p[0].transpose(0, 1)?
                .matmul(&a_var.matmul(&p[0])?)?
                .sum_all()
        },
        &[x],
        &[v],
    )
    .unwrap();
    let want: Vec<f64> = (0..n)
        .map(|i| 2.0 * (0..n).map(|j| ha[i * n + j] * hv.data[j]).sum::<f64>())
        .collect();
    assert_close(
        "xᵀAx hvp",
        &hv_dev[0],
        &HostTensor::new(&[n, 1], want),
        1e-5,
        1e-5,
    );
}

#[device_test]
fn hvp_of_softmax_cross_entropy_matches_its_hessian() {
    let mut rng = HostRng::new(111);
    let (n, c) = (3, 4);
    let (z, hz) = random(&mut rng, &[n, c], -2.0, 2.0);
    let (v, hv) = random(&mut rng, &[n, c], -1.0, 1.0);
    let labels = Tensor::from_slice(&[1i32, 3, 0], &[n], &device()).unwrap();
    let got = hvp(|p| p[0].cross_entropy(&labels), &[z], &[v]).unwrap();
    // Per row: H = (diag(p) − p pᵀ) / N.
    let mut want = vec![0.0; n * c];
    for i in 0..n {
        let row = &hz.data[i * c..(i + 1) * c];
        let p = dynlab_test_support::reference::softmax(row);
        let pv: f64 = (0..c).map(|j| p[j] * hv.data[i * c + j]).sum();
        for j in 0..c {
            want[i * c + j] = (p[j] * hv.data[i * c + j] - p[j] * pv) / n as f64;
        }
    }
    assert_close(
        "cross-entropy hvp",
        &got[0],
        &HostTensor::new(&[n, c], want),
        1e-6,
        1e-4,
    );
}

/// The 2-layer tanh MLP `L = mean((tanh(x W1 + b1) W2 − y)²)` and its gradient, by hand in f64.
struct Mlp {
    x: Vec<f64>,
    y: Vec<f64>,
    n: usize,
    d: usize,
    h: usize,
}

impl Mlp {
    /// Gradient with respect to the flat parameters `[W1 (d×h), b1 (h), W2 (h×1)]`.
    fn grad(&self, theta: &[f64]) -> Vec<f64> {
        let (n, d, h) = (self.n, self.d, self.h);
        let (w1, b1, w2) = (
            &theta[..d * h],
            &theta[d * h..d * h + h],
            &theta[d * h + h..],
        );
        let mut g = vec![0.0; theta.len()];
        for s in 0..n {
            let x = &self.x[s * d..(s + 1) * d];
            let a: Vec<f64> = (0..h)
                .map(|j| ((0..d).map(|i| x[i] * w1[i * h + j]).sum::<f64>() + b1[j]).tanh())
                .collect();
            let out: f64 = (0..h).map(|j| a[j] * w2[j]).sum();
            let dout = 2.0 * (out - self.y[s]) / n as f64;
            for j in 0..h {
                g[d * h + h + j] += dout * a[j];
                let dz = dout * w2[j] * (1.0 - a[j] * a[j]);
                g[d * h + j] += dz;
                for i in 0..d {
                    g[i * h + j] += dz * x[i];
                }
            }
        }
        g
    }
}

#[device_test]
fn hvp_of_a_tanh_mlp_matches_finite_differences_of_the_f64_gradient() {
    let mut rng = HostRng::new(112);
    let (n, d, h) = (5, 3, 4);
    let (x, hx) = random(&mut rng, &[n, d], -1.0, 1.0);
    let (y, hy) = random(&mut rng, &[n, 1], -1.0, 1.0);
    let (w1, hw1) = random(&mut rng, &[d, h], -1.0, 1.0);
    let (b1, hb1) = random(&mut rng, &[h], -0.5, 0.5);
    let (w2, hw2) = random(&mut rng, &[h, 1], -1.0, 1.0);
    let (v1, hv1) = random(&mut rng, &[d, h], -1.0, 1.0);
    let (vb, hvb) = random(&mut rng, &[h], -1.0, 1.0);
    let (v2, hv2) = random(&mut rng, &[h, 1], -1.0, 1.0);
    let (xv, yv) = (Var::constant(x), Var::constant(y));
    let loss = |p: &[Var]| {
        xv.linear(&p[0], &p[1])?
            .tanh()?
            .matmul(&p[2])?
            .sub(&yv)?
            .square()?
            .mean_all()
    };
    let got = hvp(loss, &[w1, b1, w2], &[v1, vb, v2]).unwrap();

    let mlp = Mlp {
        x: hx.data,
        y: hy.data,
        n,
        d,
        h,
    };
    let theta: Vec<f64> = [hw1.data, hb1.data, hw2.data].concat();
    let dir: Vec<f64> = [hv1.data, hvb.data, hv2.data].concat();
    let eps = 1e-5;
    let shifted = |sign: f64| {
        mlp.grad(
            &theta
                .iter()
                .zip(&dir)
                .map(|(t, u)| t + sign * eps * u)
                .collect::<Vec<_>>(),
        )
    };
    let (gp, gm) = (shifted(1.0), shifted(-1.0));
    let fd: Vec<f64> = gp
        .iter()
        .zip(&gm)
        .map(|(a, b)| (a - b) / (2.0 * eps))
        .collect();
    let parts = [
        (0, d * h, vec![d, h]),
        (d * h, h, vec![h]),
        (d * h + h, h, vec![h, 1]),
    ];
    for ((start, len, shape), g) in parts.iter().zip(&got) {
        assert_close(
            "mlp hvp",
            g,
            &HostTensor::new(shape, fd[*start..start + len].to_vec()),
            2e-5,
            1e-3,
        );
    }
}

#[device_test]
fn hutchinson_converges_to_the_exact_trace() {
    let mut rng = HostRng::new(113);
    let (n, d, h) = (6, 3, 4);
    let (x, _) = random(&mut rng, &[n, d], -1.0, 1.0);
    let (y, _) = random(&mut rng, &[n, 1], -1.0, 1.0);
    let params: Vec<Tensor> = [vec![d, h], vec![h, 1]]
        .iter()
        .map(|s| random(&mut rng, s, -1.0, 1.0).0)
        .collect();
    let (xv, yv) = (Var::constant(x), Var::constant(y));
    let loss = |p: &[Var]| {
        xv.matmul(&p[0])?
            .tanh()?
            .matmul(&p[1])?
            .sub(&yv)?
            .square()?
            .mean_all()
    };
    // Exact trace: Σ_i e_iᵀ H e_i, one HVP per basis vector.
    let mut exact = 0.0f64;
    for (pi, p) in params.iter().enumerate() {
        for j in 0..p.numel() {
            let dirs: Vec<Tensor> = params
                .iter()
                .enumerate()
                .map(|(qi, q)| {
                    let mut e = vec![0.0f32; q.numel()];
                    if qi == pi {
                        e[j] = 1.0;
                    }
                    Tensor::from_slice(&e, q.shape(), q.device()).unwrap()
                })
                .collect();
            let hv = hvp(loss, &params, &dirs).unwrap();
            exact += hv[pi].to_vec::<f32>().unwrap()[j] as f64;
        }
    }
    let est = hutchinson_trace(loss, &params, 400, 7).unwrap();
    assert_eq!(est.samples, 400);
    assert!(est.std_error > 0.0 && est.mean.is_finite());
    assert!(
        (est.mean - exact).abs() < 4.0 * est.std_error + 1e-6,
        "Hutchinson {} ± {} vs exact {exact}",
        est.mean,
        est.std_error
    );
    let again = hutchinson_trace(loss, &params, 400, 7).unwrap();
    assert_eq!(est, again, "same seed, different estimate");
}

#[device_test]
fn hvp_rejects_mismatched_directions() {
    let p = Tensor::zeros(&[2], &device()).unwrap();
    let v = Tensor::zeros(&[3], &device()).unwrap();
    let msg = hvp(|x| x[0].sum_all(), &[p], &[v]).unwrap_err().to_string();
    assert!(
        msg.contains("hvp") && msg.contains("[[2]]") && msg.contains("[[3]]"),
        "{msg}"
    );
}
