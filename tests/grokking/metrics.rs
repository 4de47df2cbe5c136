//! The study's metrics against brute-force f64 host computations: spectral smoothness against a
//! direct 2-D DFT (hard, soft, the cutoff mask as numpy's `fftfreq`), the Jacobian norm and the
//! input-Hessian trace of a one-hidden-layer GELU MLP against its analytic Jacobian and Hessian,
//! and the Hutchinson weight-Hessian trace against the exact trace `Σ eᵢᵀ H eᵢ`.

use dynlab::algos::grokking::metrics::{
    input_hessian_trace, jacobian_norm, jacobian_norm_along, low_frequency_mask, output_image,
    power_spectrum, spectral_smoothness, spectral_smoothness_soft, weight_curvature,
};
use dynlab::autodiff::hvp;
use dynlab::models::{Activation, Ctx, Init, Mlp, Module};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::reference::{erf, softmax};
use dynlab_test_support::{device, device_test, host_f64, HostRng};
use std::f64::consts::PI;

/// `Σ P[low] / (Σ P + 1e-8)` of a `p × p` image by the direct DFT sum.
fn host_smoothness(image: &[f64], p: usize, cutoff: usize) -> f64 {
    let freq = |k: usize| {
        if k <= (p - 1) / 2 {
            k as f64 / p as f64
        } else {
            (k as f64 - p as f64) / p as f64
        }
    };
    let (mut low, mut total) = (0.0, 0.0);
    for u in 0..p {
        for v in 0..p {
            let (mut re, mut im) = (0.0, 0.0);
            for x in 0..p {
                for y in 0..p {
                    let angle = -2.0 * PI * ((u * x) as f64 + (v * y) as f64) / p as f64;
                    re += image[x * p + y] * angle.cos();
                    im += image[x * p + y] * angle.sin();
                }
            }
            let power = re * re + im * im;
            total += power;
            if (freq(u).powi(2) + freq(v).powi(2)).sqrt() <= cutoff as f64 / p as f64 + 1e-12 {
                low += power;
            }
        }
    }
    low / (total + 1e-8)
}

/// `Σ_c c · softmax(z)_c`: the soft image's pixel.
fn expected_class(logits: &[f64]) -> f64 {
    softmax(logits)
        .iter()
        .enumerate()
        .map(|(c, w)| c as f64 * w)
        .sum()
}

#[device_test]
fn smoothness_matches_the_direct_dft() {
    let mut host = HostRng::new(9);
    for (p, cutoff) in [(5, 1), (7, 1), (11, 2), (13, 3), (2, 0)] {
        let logits = host.vec(p * p * p, -2.0, 2.0);
        let grid = Tensor::from_slice(&logits, &[p * p, p], &device()).unwrap();
        let rows: Vec<Vec<f64>> = logits
            .chunks(p)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect();
        let argmax =
            |r: &Vec<f64>| (0..p).fold(0, |best, c| if r[c] > r[best] { c } else { best }) as f64;
        let hard: Vec<f64> = rows.iter().map(argmax).collect();
        let soft: Vec<f64> = rows.iter().map(|r| expected_class(r)).collect();
        let got = spectral_smoothness(&grid, cutoff).unwrap();
        let want = host_smoothness(&hard, p, cutoff);
        assert!((got - want).abs() < 1e-5, "hard p {p}: {got} vs {want}");
        let got = spectral_smoothness_soft(&Var::constant(grid.clone()), cutoff).unwrap();
        let got = got.value().item().unwrap() as f64;
        let want = host_smoothness(&soft, p, cutoff);
        assert!((got - want).abs() < 1e-5, "soft p {p}: {got} vs {want}");
        let image = output_image(&Var::constant(grid), true).unwrap();
        assert_eq!(host_f64(image.value()), hard);
    }
    // numpy: fftfreq(5) = [0, .2, .4, -.4, -.2]; K = 1 keeps (0,0), (0,±1), (±1,0).
    let mask = low_frequency_mask(5, 1);
    let kept: Vec<usize> = (0..25).filter(|&i| mask[i] == 1.0).collect();
    assert_eq!(kept, [0, 1, 4, 5, 20]);
    // A constant image has all its power at frequency 0.
    let constant = Var::constant(Tensor::full(&[6, 6], 2.0, &device()).unwrap());
    let power = host_f64(power_spectrum(&constant).unwrap().value());
    assert!((power[0] - (36.0f64 * 2.0).powi(2)).abs() < 1e-1);
    assert!(power[1..].iter().all(|w| w.abs() < 1e-3));
    let e = spectral_smoothness(&Tensor::zeros(&[10, 3], &device()).unwrap(), 1).unwrap_err();
    assert!(e.to_string().contains("[p², p]"), "{e}");
}

/// A one-hidden-layer GELU MLP `x W₁ + b₁ → gelu → · W₂ + b₂` with its parameters on the host.
struct TinyMlp {
    mlp: Mlp,
    w1: Vec<f64>,
    b1: Vec<f64>,
    w2: Vec<f64>,
    dims: (usize, usize, usize),
}

fn tiny_mlp(dims: (usize, usize, usize), seed: u64) -> TinyMlp {
    let mut rng = Rng::new(seed);
    let (i, h, o) = dims;
    let mlp = Mlp::new(
        &[i, h, o],
        Activation::Gelu,
        Init::XavierNormal,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let mut host = HostRng::new(seed);
    let mut mlp = mlp;
    for (_, p) in mlp.params_mut() {
        let shape = p.value().shape().to_vec();
        let values = host.vec(shape.iter().product(), -1.0, 1.0);
        p.set(Tensor::from_slice(&values, &shape, &device()).unwrap())
            .unwrap();
    }
    let value = |p: &dynlab::models::Param| host_f64(p.value());
    TinyMlp {
        w1: value(&mlp.layers[0].weight),
        b1: value(mlp.layers[0].bias.as_ref().unwrap()),
        w2: value(&mlp.layers[1].weight),
        mlp,
        dims,
    }
}

fn phi(z: f64) -> f64 {
    (-z * z / 2.0).exp() / (2.0 * PI).sqrt()
}

impl TinyMlp {
    fn pre(&self, x: &[f64]) -> Vec<f64> {
        let (i, h, _) = self.dims;
        (0..h)
            .map(|k| self.b1[k] + (0..i).map(|a| x[a] * self.w1[a * h + k]).sum::<f64>())
            .collect()
    }

    /// `‖J‖²_F` of one example.
    fn jacobian_sq(&self, x: &[f64]) -> f64 {
        let (i, h, o) = self.dims;
        let z = self.pre(x);
        let slope: Vec<f64> = z
            .iter()
            .map(|&z| 0.5 * (1.0 + erf(z / 2f64.sqrt())) + z * phi(z))
            .collect();
        let mut total = 0.0;
        for c in 0..o {
            for a in 0..i {
                let j: f64 = (0..h)
                    .map(|k| self.w2[k * o + c] * slope[k] * self.w1[a * h + k])
                    .sum();
                total += j * j;
            }
        }
        total
    }

    /// `tr ∇²_x y_c` of one example.
    fn hessian_trace(&self, x: &[f64], c: usize) -> f64 {
        let (i, h, o) = self.dims;
        let z = self.pre(x);
        (0..h)
            .map(|k| {
                let curvature = phi(z[k]) * (2.0 - z[k] * z[k]);
                let col: f64 = (0..i).map(|a| self.w1[a * h + k].powi(2)).sum();
                self.w2[k * o + c] * curvature * col
            })
            .sum()
    }
}

#[device_test]
fn jacobian_norm_is_the_frobenius_norm_of_the_jacobian() {
    let (i, o, n) = (6, 4, 5);
    let m = tiny_mlp((i, 7, o), 11);
    let mut host = HostRng::new(11);
    let x = host.vec(n * i, -1.0, 1.0);
    let xt = Tensor::from_slice(&x, &[n, i], &device()).unwrap();
    let rows: Vec<Vec<f64>> = x
        .chunks(i)
        .map(|r| r.iter().map(|&v| v as f64).collect())
        .collect();
    let want = rows.iter().map(|r| m.jacobian_sq(r)).sum::<f64>() / n as f64;
    let f = |x: &Var| m.mlp.forward(x, &mut Ctx::eval());
    // The output basis as directions: exactly ‖J‖²_F.
    let basis: Vec<f32> = (0..o * n * o)
        .map(|idx| f32::from(idx / (n * o) == idx % o))
        .collect();
    let basis = Tensor::from_vec(basis, &[o, n, o], &device()).unwrap();
    let got = jacobian_norm_along(f, &xt, &basis).unwrap();
    assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
    // Random unit directions: an unbiased estimate.
    let got = jacobian_norm(f, &xt, 400, o, &mut Rng::new(5)).unwrap();
    assert!((got - want).abs() < 0.1 * want, "{got} vs {want}");
    let e = jacobian_norm_along(f, &xt, &Tensor::zeros(&[2, n, o + 1], &device()).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("directions"), "{e}");
}

#[device_test]
fn input_hessian_trace_estimates_the_top_logit_trace() {
    let (i, o, n) = (5, 3, 4);
    let m = tiny_mlp((i, 6, o), 12);
    let mut host = HostRng::new(12);
    let x = host.vec(n * i, -1.0, 1.0);
    let xt = Tensor::from_slice(&x, &[n, i], &device()).unwrap();
    let f = |x: &Var| m.mlp.forward(x, &mut Ctx::eval());
    let logits = host_f64(f(&Var::constant(xt.clone())).unwrap().value());
    let want = x
        .chunks(i)
        .enumerate()
        .map(|(r, row)| {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let top = (0..o).fold(0, |b, c| {
                if logits[r * o + c] > logits[r * o + b] {
                    c
                } else {
                    b
                }
            });
            m.hessian_trace(&row, top)
        })
        .sum::<f64>()
        / n as f64;
    let est = input_hessian_trace(f, &xt, 300, 7).unwrap();
    assert_eq!(est.samples, 300);
    assert!(est.std_error > 0.0);
    assert!(
        (est.mean - want).abs() <= 4.0 * est.std_error + 1e-5,
        "{} ± {} vs {want}",
        est.mean,
        est.std_error
    );
}

#[device_test]
fn weight_hessian_trace_is_within_three_standard_errors_of_the_exact_trace() {
    let (i, h, o, n) = (6, 8, 5, 9);
    let m = tiny_mlp((i, h, o), 13);
    assert!(m.mlp.num_params() < 300);
    let mut host = HostRng::new(13);
    let x = Tensor::from_slice(&host.vec(n * i, -1.0, 1.0), &[n, i], &device()).unwrap();
    let labels: Vec<i32> = (0..n).map(|_| host.below(o) as i32).collect();
    let labels = Tensor::from_slice(&labels, &[n], &device()).unwrap();
    let params = m.mlp.params();
    let values: Vec<Tensor> = params.iter().map(|(_, p)| p.value().clone()).collect();
    // The same loss as a function of fresh leaves (weight, bias of each layer, in `params` order).
    let loss_at = |vars: &[Var]| {
        let hidden = x_var(&x).linear(&vars[0], &vars[1])?.gelu()?;
        hidden.linear(&vars[2], &vars[3])?.cross_entropy(&labels)
    };
    let mut exact = 0.0;
    for (k, t) in values.iter().enumerate() {
        for e in 0..t.numel() {
            let dirs: Vec<Tensor> = values
                .iter()
                .enumerate()
                .map(|(j, u)| {
                    let mut d = vec![0.0f32; u.numel()];
                    if j == k {
                        d[e] = 1.0;
                    }
                    Tensor::from_vec(d, u.shape(), &device()).unwrap()
                })
                .collect();
            let hv = hvp(loss_at, &values, &dirs).unwrap();
            exact += hv[k].to_vec::<f32>().unwrap()[e] as f64;
        }
    }
    let vars: Vec<&Var> = params.iter().map(|(_, p)| p.var()).collect();
    let logits = m.mlp.forward(&x_var(&x), &mut Ctx::eval()).unwrap();
    let loss = logits.cross_entropy(&labels).unwrap();
    let (norm, est) = weight_curvature(&loss, &vars, 64, 3).unwrap();
    let grads = loss.backward().unwrap();
    let want_norm: f64 = vars
        .iter()
        .map(|v| {
            host_f64(grads.tensor(v).unwrap())
                .iter()
                .map(|g| g * g)
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt();
    assert!(
        (norm - want_norm).abs() < 1e-5 * want_norm.max(1.0),
        "{norm} vs {want_norm}"
    );
    assert!(
        (est.mean - exact).abs() <= 3.0 * est.std_error,
        "Hutchinson {} ± {} vs exact {exact}",
        est.mean,
        est.std_error
    );
}

fn x_var(x: &Tensor) -> Var {
    Var::constant(x.clone())
}

#[device_test]
fn soft_smoothness_has_exact_gradients() {
    use dynlab_test_support::reference::HostTensor;
    use dynlab_test_support::{check_gradients, random};
    let mut host = HostRng::new(31);
    for (p, cutoff) in [(5, 1), (7, 2)] {
        let (logits, logits_host) = random(&mut host, &[p * p, p], -1.5, 1.5);
        let reference = |hs: &[HostTensor]| {
            let image: Vec<f64> = hs[0].data.chunks(p).map(expected_class).collect();
            HostTensor::new(&[], vec![host_smoothness(&image, p, cutoff)])
        };
        check_gradients(
            &format!("smoothness_soft p {p}"),
            vec![(logits, logits_host)],
            &|v: &[Var]| spectral_smoothness_soft(&v[0], cutoff),
            &reference,
            &mut host,
        );
    }
}

#[device_test]
fn the_jacobian_penalty_is_the_jacobian_norm_and_differentiates_through_it() {
    use dynlab::algos::grokking::penalty::JacobianPenalty;
    use dynlab::models::{BaselineMlp, PairEncoding};
    let mut rng = Rng::new(17);
    let mut m = BaselineMlp::new(
        5,
        PairEncoding::OneHot,
        &[6],
        Init::XavierNormal,
        &mut rng,
        &device(),
    )
    .unwrap();
    let pairs = Tensor::from_slice(&[0i32, 1, 2, 3, 4, 4, 1, 0], &[4, 2], &device()).unwrap();
    let samples = m.encode_pairs(&pairs).unwrap();
    let penalty = JacobianPenalty {
        samples: samples.clone(),
        outputs: 5,
        lambda: 1.0,
        every: 1,
        seed: 0,
    };
    let directions =
        dynlab::algos::grokking::metrics::unit_directions(1, 4, 5, &mut Rng::new(2), &device())
            .unwrap();
    let v = directions.squeeze(0).unwrap();
    let value = penalty.value_along(&m, &v).unwrap();
    let f = |x: &Var| m.mlp.forward(x, &mut Ctx::eval());
    let want = jacobian_norm_along(f, &samples, &directions).unwrap();
    let got = value.value().item().unwrap() as f64;
    assert!((got - want).abs() < 1e-4 * want.max(1.0), "{got} vs {want}");
    // d(penalty)/dW₁[0, 0] against a central difference of the penalty itself.
    let grads = value.backward().unwrap();
    let w = m.mlp.layers[0].weight.value().clone();
    let analytic = grads
        .tensor(m.mlp.layers[0].weight.var())
        .unwrap()
        .to_vec::<f32>()
        .unwrap()[0] as f64;
    let h = 1e-2f32;
    let mut at = |delta: f32| {
        let mut shifted = w.to_vec::<f32>().unwrap();
        shifted[0] += delta;
        m.mlp.layers[0]
            .weight
            .set(Tensor::from_vec(shifted, w.shape(), &device()).unwrap())
            .unwrap();
        penalty.value_along(&m, &v).unwrap().value().item().unwrap() as f64
    };
    let numeric = (at(h) - at(-h)) / (2.0 * h as f64);
    assert!(
        (analytic - numeric).abs() < 0.02 * numeric.abs().max(0.05),
        "{analytic} vs {numeric}"
    );
}
