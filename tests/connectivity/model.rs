//! The connectivity generators, the metrics on known inputs, and the Signal_Propagation model
//! against a host forward pass.

use dynlab::algos::connectivity::metrics::{
    cluster_accuracy, linear_fit, mean_pearson, rollout_r2, single_linkage,
};
use dynlab::algos::connectivity::simulate::{
    connectivity, effective_rank, lorentz_exponent, neuron_params, neuron_types,
};
use dynlab::algos::connectivity::{
    ConnectivityKind, ConnectivitySpec, MessagePassing, SignalPropagation, FIG2_TYPES,
};
use dynlab::data::HostRng;
use dynlab::models::{Ctx, Linear, Mlp, Module};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::reference::HostTensor;
use dynlab_test_support::{assert_close, device, device_test, random};

fn spec(kind: ConnectivityKind) -> ConnectivitySpec {
    ConnectivitySpec {
        kind,
        dale: None,
        filling: 1.0,
    }
}

#[test]
fn lorentz_connectivity_has_the_reference_statistics() {
    let n = 400;
    let w = connectivity(n, spec(ConnectivityKind::Lorentz), &mut HostRng::new(1));
    assert!((0..n).all(|i| w[i * n + i] == 0.0), "zero diagonal");
    let off: Vec<f64> = (0..n * n)
        .filter(|k| k / n != k % n)
        .map(|k| w[k] as f64 * (n as f64).powf(lorentz_exponent(n)))
        .collect();
    // P(|x| > 25) for a standard Cauchy: 1 − (2/π)·atan(25) = 0.02546.
    let zeros = off.iter().filter(|&&x| x == 0.0).count() as f64 / off.len() as f64;
    assert!(
        (zeros - 0.02546).abs() < 0.003,
        "truncated fraction {zeros}"
    );
    assert!(off.iter().all(|x| x.abs() <= 25.0));
    // The median of |x| of a standard Cauchy is 1 (of the kept values: tan(π/4 · 0.9745)).
    let mut kept: Vec<f64> = off.iter().filter(|&&x| x != 0.0).map(|x| x.abs()).collect();
    kept.sort_by(f64::total_cmp);
    let median = kept[kept.len() / 2];
    let want = (std::f64::consts::FRAC_PI_4 * (1.0 - 0.02546)).tan();
    assert!(
        (median - want).abs() < 0.03,
        "median |x| {median} (want {want})"
    );
    assert_eq!(lorentz_exponent(1000), 0.7);
    assert_eq!(lorentz_exponent(3000), 0.675);
    assert_eq!(lorentz_exponent(8000), 0.66);
}

#[test]
fn gaussian_dale_and_filling_follow_their_definitions() {
    let n = 300;
    let w = connectivity(n, spec(ConnectivityKind::Gaussian), &mut HostRng::new(2));
    let var = w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>() / (n * (n - 1)) as f64;
    assert!(
        (var * n as f64 - 1.0).abs() < 0.03,
        "variance × n = {}",
        var * n as f64
    );
    let dale = ConnectivitySpec {
        dale: Some(0.25),
        filling: 0.5,
        ..spec(ConnectivityKind::Gaussian)
    };
    let w = connectivity(n, dale, &mut HostRng::new(3));
    for (k, &x) in w.iter().enumerate() {
        let (i, j) = (k / n, k % n);
        if i == j {
            assert_eq!(x, 0.0);
        } else if j < 75 {
            assert!(x >= 0.0, "excitatory column {j}");
        } else {
            assert!(x <= 0.0, "inhibitory column {j}");
        }
    }
    let kept = w.iter().filter(|&&x| x != 0.0).count() as f64 / (n * n) as f64;
    assert!((kept - 0.5).abs() < 0.02, "filling {kept}");
    let low = connectivity(50, spec(ConnectivityKind::LowRank(2)), &mut HostRng::new(4));
    let a: Vec<f64> = low.iter().map(|&x| x as f64).collect();
    let s = dynlab::runtime::linalg::host::singular_values_f64(&a, 50, 50).unwrap();
    // Rank 2 up to the zeroed diagonal (a rank-50 perturbation of size ~1/√(r n)).
    assert!(s[2] < 0.25 * s[1], "singular values {:?}", &s[..4]);
}

#[test]
fn neuron_types_are_contiguous_blocks() {
    assert_eq!(neuron_types(10, 4), vec![0, 0, 1, 1, 2, 2, 3, 3, 3, 3]);
    let p = neuron_params(&[0, 3], &FIG2_TYPES);
    assert_eq!(p, vec![10.0, 10.0, 1.0, 2.0, 1.0, 2.0]);
}

#[test]
fn metrics_on_known_inputs() {
    let x = [1.0, 2.0, 3.0, 4.0];
    let fit = linear_fit(&x, &[3.0, 5.0, 7.0, 9.0]);
    assert!((fit.slope - 2.0).abs() < 1e-12 && (fit.intercept - 1.0).abs() < 1e-12);
    assert!((fit.r2 - 1.0).abs() < 1e-12);
    // y = (1, 3, 2, 4): slope 0.8, intercept 0.5, SS_res 1.8, SS_tot 5 ⇒ R² 0.64.
    let fit = linear_fit(&x, &[1.0, 3.0, 2.0, 4.0]);
    assert!((fit.slope - 0.8).abs() < 1e-12 && (fit.r2 - 0.64).abs() < 1e-12);
    // Two neurons over three frames: one traced exactly (r 1), one with r −0.5.
    let truth = [0.0, 1.0, 1.0, 0.0, 2.0, 2.0];
    let pred = [0.0, 2.0, 1.0, 1.0, 2.0, 0.0];
    assert!((mean_pearson(&truth, &pred, 2) - 0.25).abs() < 1e-12);
    let frames = [1.0, 2.0, 3.0, 4.0, 2.0, 4.0, 6.0, 8.0];
    assert!((rollout_r2(&frames, &frames, 4, 1) - 1.0).abs() < 1e-12);
    let exploded = [1.0, 2.0, 3.0, 4.0, f32::NAN, 0.0, 0.0, 0.0];
    assert!((rollout_r2(&frames, &exploded, 4, 1) - 0.5).abs() < 1e-12);
    let collapsed = [1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0];
    assert!((rollout_r2(&frames, &collapsed, 4, 1) - 0.5).abs() < 1e-12);
    assert_eq!(effective_rank(&[1.0, 8.0, 0.5, 0.5], 0.9), 2);
    assert_eq!(effective_rank(&[1.0, 8.0, 0.5, 0.5], 0.99), 4);
}

#[test]
fn cluster_accuracy_labels_types_by_median_cluster() {
    // Three tight groups; the third type is split between group 2 and a far point.
    let points = [
        0.0, 0.0, 0.01, 0.0, 0.0, 0.02, // type 0
        0.5, 0.5, 0.51, 0.5, // type 1
        1.0, 1.0, 1.0, 0.99, 0.0, 1.0, // type 2: two close, one far
    ];
    let types = [0, 0, 0, 1, 1, 2, 2, 2];
    let clusters = single_linkage(&points, 2, 0.1);
    assert_eq!(clusters, vec![0, 0, 0, 1, 1, 2, 2, 3]);
    // Type 2's median cluster id is 2: 7 of 8 neurons are correctly clustered.
    assert!((cluster_accuracy(&points, 2, &types) - 7.0 / 8.0).abs() < 1e-12);
}

/// `mlp(x)` on the host for rows `x [rows, in]`, ReLU between layers.
fn host_mlp(mlp: &Mlp, x: &[f64], inputs: usize) -> Vec<f64> {
    let mut h = x.to_vec();
    let mut width = inputs;
    let rows = x.len() / inputs;
    for (l, layer) in mlp.layers.iter().enumerate() {
        let out = layer.outputs();
        h = dense(layer, &h, rows, width);
        if l + 1 < mlp.layers.len() {
            h.iter_mut().for_each(|v| *v = v.max(0.0));
        }
        width = out;
    }
    h
}

fn dense(layer: &Linear, x: &[f64], rows: usize, width: usize) -> Vec<f64> {
    let w = host(layer.weight.value());
    let b = layer.bias.as_ref().map(|b| host(b.value()));
    let out = layer.outputs();
    (0..rows * out)
        .map(|k| {
            let (r, o) = (k / out, k % out);
            let s: f64 = (0..width).map(|i| x[r * width + i] * w[i * out + o]).sum();
            s + b.as_ref().map_or(0.0, |b| b[o])
        })
        .collect()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.contiguous()
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .into_iter()
        .map(f64::from)
        .collect()
}

#[device_test]
fn signal_propagation_matches_a_host_forward() {
    let (n, b) = (7, 3);
    let mut rng = Rng::new(9);
    let mut model =
        SignalPropagation::new(n, 8, 2, MessagePassing::Dense, &mut rng, &device()).unwrap();
    let mut hrng = dynlab_test_support::HostRng::new(10);
    let (a, ha) = random(&mut hrng, &[n, 2], -1.0, 1.0);
    model.a.set(a).unwrap();
    let (u, hu) = random(&mut hrng, &[b, n], -2.0, 2.0);
    let w = host(&model.dense_w().unwrap());
    let psi = host_mlp(&model.lin_edge, &hu.data, 1);
    let node_inputs: Vec<f64> = (0..b * n)
        .flat_map(|k| [hu.data[k], ha.data[(k % n) * 2], ha.data[(k % n) * 2 + 1]])
        .collect();
    let phi = host_mlp(&model.lin_phi, &node_inputs, 3);
    let want: Vec<f64> = (0..b * n)
        .map(|k| {
            let (f, i) = (k / n, k % n);
            phi[k]
                + (0..n)
                    .filter(|&j| j != i)
                    .map(|j| w[i * n + j] * psi[f * n + j])
                    .sum::<f64>()
        })
        .collect();
    assert!((0..n).all(|i| w[i * n + i] == 0.0), "zero diagonal");
    let pred = model
        .forward(&Var::constant(u.clone()), &mut Ctx::eval())
        .unwrap();
    let want = HostTensor::new(&[b, n], want);
    assert_close("dense forward", pred.value(), &want, 1e-4, 1e-4);

    // The sparse model with the same parameters gives the same predictions and gradients.
    let mut rng = Rng::new(9);
    let mut sparse =
        SignalPropagation::new(n, 8, 2, MessagePassing::Sparse, &mut rng, &device()).unwrap();
    sparse.a.set(model.a.value().clone()).unwrap();
    assert_eq!(host(&sparse.dense_w().unwrap()), w, "same initial W");
    let pred_sparse = sparse.forward(&Var::constant(u), &mut Ctx::eval()).unwrap();
    assert_close("sparse forward", pred_sparse.value(), &want, 1e-4, 1e-4);
    let grads_dense = pred
        .square()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let grads_sparse = pred_sparse
        .square()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    // The dense parameter holds Wᵀ: ∂W_ij is gd[j·n + i].
    let gd = host(grads_dense.tensor(model.w.var()).unwrap());
    let gs = host(grads_sparse.tensor(sparse.w.var()).unwrap());
    // Sparse gradient per edge (j → i, destination-major without self-loops) against dense ∂W_ij.
    let mut e = 0;
    for i in 0..n {
        assert_eq!(gd[i * n + i], 0.0, "no gradient on the diagonal");
        for j in (0..n).filter(|&j| j != i) {
            assert!((gs[e] - gd[j * n + i]).abs() < 1e-4 * (1.0 + gd[j * n + i].abs()));
            e += 1;
        }
    }
    let ga = host(grads_dense.tensor(model.a.var()).unwrap());
    let gas = host(grads_sparse.tensor(sparse.a.var()).unwrap());
    for (x, y) in ga.iter().zip(&gas) {
        assert!(
            (x - y).abs() < 1e-4 * (1.0 + x.abs()),
            "embedding gradients {x} vs {y}"
        );
    }
    let err = model
        .forward(
            &Var::constant(Tensor::zeros(&[2, n + 1], &device()).unwrap()),
            &mut Ctx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("SignalPropagation::forward") && err.contains("[B, 7]"),
        "{err}"
    );
}

mod neural_ode {
    use dynlab::algos::connectivity::ode::{odeint, odeint_adjoint, OdeMethod, OdeOptions};
    use dynlab::{Tensor, Var};
    use dynlab_test_support::{device, device_test, random, HostRng};
    use std::rc::Rc;

    fn options(method: OdeMethod) -> OdeOptions {
        OdeOptions {
            method,
            rtol: 1e-5,
            atol: 1e-6,
            state_clamp: None,
            max_steps: 1000,
        }
    }

    #[device_test]
    fn solvers_reach_their_order_on_exponential_decay() {
        // du/dt = −u from u0 = 1 over 10 intervals of 0.1: u(1) = e⁻¹.
        let want = (-1.0f64).exp();
        for (method, tol) in [
            (OdeMethod::Euler, 2e-2),
            (OdeMethod::Midpoint, 1e-3),
            (OdeMethod::Heun3, 1e-4),
            (OdeMethod::Rk4, 1e-5),
            (OdeMethod::Dopri5, 1e-5),
        ] {
            let u0 = Var::constant(Tensor::ones(&[1, 1], &device()).unwrap());
            let mut f = |u: &Var| u.neg();
            let end = odeint(&mut f, &u0, 10, 0.1, &options(method)).unwrap();
            let got = end.value().item().unwrap() as f64;
            assert!((got - want).abs() < tol, "{method:?}: {got} vs {want}");
        }
        // Euler is exactly (1 − h)^10.
        let u0 = Var::constant(Tensor::ones(&[1, 1], &device()).unwrap());
        let mut f = |u: &Var| u.neg();
        let euler = odeint(&mut f, &u0, 10, 0.1, &options(OdeMethod::Euler)).unwrap();
        assert!((euler.value().item().unwrap() as f64 - 0.9f64.powi(10)).abs() < 1e-6);
    }

    #[device_test]
    fn adjoint_gradients_match_backpropagation_through_the_solver() {
        let mut rng = HostRng::new(80);
        let (w, _) = random(&mut rng, &[3, 3], -1.0, 1.0);
        let (u0, _) = random(&mut rng, &[2, 3], -1.0, 1.0);
        let (r, _) = random(&mut rng, &[2, 3], -1.0, 1.0);
        for method in [OdeMethod::Rk4, OdeMethod::Dopri5] {
            let w = Var::param(w.clone());
            let u = Var::param(u0.clone());
            let wc = w.clone();
            let f = move |x: &Var| x.matmul(&wc)?.tanh();
            let o = options(method);
            let mut g = f.clone();
            let direct = odeint(&mut g, &u, 10, 0.05, &o).unwrap();
            let loss = direct
                .mul(&Var::constant(r.clone()))
                .unwrap()
                .sum_all()
                .unwrap();
            let grads = loss.backward().unwrap();
            let adjoint = odeint_adjoint(Rc::new(f), vec![w.clone()], &u, 10, 0.05, &o).unwrap();
            let host = |t: &Tensor| t.to_vec::<f32>().unwrap();
            let (a, b) = (host(direct.value()), host(adjoint.value()));
            assert!(
                a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
                "{method:?} forward"
            );
            let loss = adjoint
                .mul(&Var::constant(r.clone()))
                .unwrap()
                .sum_all()
                .unwrap();
            let adj = loss.backward().unwrap();
            for (name, v) in [("W", &w), ("u0", &u)] {
                let (x, y) = (host(grads.tensor(v).unwrap()), host(adj.tensor(v).unwrap()));
                let scale = x.iter().fold(0f32, |m, v| m.max(v.abs()));
                for (p, q) in x.iter().zip(&y) {
                    assert!(
                        (p - q).abs() < 1e-3 * scale.max(1.0),
                        "{method:?} ∂{name}: {p} vs {q}"
                    );
                }
            }
        }
    }
}

#[device_test]
fn activity_spectrum_finds_the_rank_of_the_frames() {
    use dynlab::algos::connectivity::simulate::activity_spectrum;
    use dynlab::algos::connectivity::Recording;
    // 300 frames of 6 neurons driven by two sources: u_t = a sin(t/7) + b cos(t/3).
    let (t_count, n) = (300, 6);
    let a = [1.0, -0.5, 0.3, 0.0, 2.0, 1.0];
    let b = [0.0, 1.0, 1.0, -1.0, 0.5, 0.2];
    let frames: Vec<f32> = (0..t_count)
        .flat_map(|t| {
            let (x, y) = ((t as f32 / 7.0).sin(), (t as f32 / 3.0).cos());
            (0..n).map(move |i| a[i] * x + b[i] * y)
        })
        .collect();
    let u = Tensor::from_vec(frames, &[t_count, n], &device()).unwrap();
    let recording = Recording {
        chunks: vec![(u.clone(), u)],
        frames: t_count,
        neurons: n,
        last: Tensor::zeros(&[n], &device()).unwrap(),
    };
    let spectrum = activity_spectrum(&recording).unwrap();
    assert_eq!(spectrum.len(), n);
    assert_eq!(effective_rank(&spectrum, 0.99), 2);
    assert!(
        spectrum.iter().filter(|&&v| v > 1e-8).count() == 2,
        "{spectrum:?}"
    );
}

#[test]
fn collapsed_embeddings_form_one_cluster_and_a_degenerate_accuracy() {
    use dynlab::algos::connectivity::metrics::embedding_clusters;
    // Embeddings at their initial ones: one cluster, and the published labelling calls every
    // neuron correct.
    let same = [1.0f32; 8];
    assert_eq!(embedding_clusters(&same, 2), vec![0; 4]);
    assert_eq!(cluster_accuracy(&same, 2, &[0, 1, 2, 3]), 1.0);
}
