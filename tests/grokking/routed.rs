//! `RoutedNetwork` against a plain f64 host network (logits, routing weights, every gradient), the
//! routing regularisers against host formulas, and the entropy regulariser lowering the routing
//! entropy of a short run.

use super::study::{config, runs_dir};
use dynlab::algos::grokking::routing::{routing_entropy, RoutingRegulariser};
use dynlab::algos::grokking::run;
use dynlab::harness::RunOptions;
use dynlab::models::{Ctx, Module, RoutedNetwork, RoutedShape};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::reference::{gelu, layer_norm, softmax, HostTensor};
use dynlab_test_support::{check_output_gradients, device, device_test, host_f64, HostRng};
use std::collections::BTreeMap;

/// `x [rows, k] · W [k, n] + b` in f64.
fn affine(x: &[f64], rows: usize, w: &HostTensor, b: &HostTensor) -> Vec<f64> {
    let (k, n) = (w.shape[0], w.shape[1]);
    (0..rows * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            b.data[c]
                + (0..k)
                    .map(|j| x[r * k + j] * w.data[j * n + c])
                    .sum::<f64>()
        })
        .collect()
}

/// Logits `[N, p]` and routing weights `[N, L, H]` in f64 from the parameters by name.
fn host_routed(
    s: &RoutedShape,
    params: &BTreeMap<String, HostTensor>,
    x: &[f64],
    n: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (d, heads) = (s.d, s.n_heads);
    let lin = |name: &str, x: &[f64], rows: usize| {
        affine(
            x,
            rows,
            &params[&format!("{name}.weight")],
            &params[&format!("{name}.bias")],
        )
    };
    let mut h = lin("embed", x, n);
    let mut state = lin("state_init", &h, n);
    let mut routing = vec![0.0; n * s.n_layers * heads];
    for l in 0..s.n_layers {
        let name = |part: &str| format!("layers.{l}.{part}");
        let a = lin(&name("state_proj"), &state, n);
        let b = lin(&name("residual_proj"), &h, n);
        let mixed: Vec<f64> = a.iter().zip(&b).map(|(a, b)| gelu(a + b)).collect();
        let gate = lin(&name("gate"), &mixed, n);
        let up: Vec<f64> = lin(&name("up"), &h, n).into_iter().map(gelu).collect();
        let down = lin(&name("down"), &up, n);
        let mut summed = h.clone();
        for r in 0..n {
            let w = softmax(&gate[r * heads..(r + 1) * heads]);
            for k in 0..heads {
                routing[(r * s.n_layers + l) * heads + k] = w[k];
                for j in 0..d {
                    summed[r * d + j] += w[k] * down[r * heads * d + k * d + j];
                }
            }
        }
        let g = &params[&name("norm.gamma")];
        let beta = &params[&name("norm.beta")];
        h = layer_norm(&HostTensor::new(&[n, d], summed), Some((g, beta)), 1e-5).data;
        let joined: Vec<f64> = (0..n)
            .flat_map(|r| [&state[r * d..(r + 1) * d], &h[r * d..(r + 1) * d]].concat())
            .collect();
        state = lin(&name("state_update"), &joined, n);
    }
    (lin("output_head", &h, n), routing)
}

fn shape() -> RoutedShape {
    RoutedShape {
        p: 5,
        d: 6,
        n_layers: 2,
        n_heads: 3,
    }
}

#[device_test]
fn forward_routing_and_gradients_match_the_host_network() {
    let s = shape();
    let mut rng = Rng::new(8);
    let mut host = HostRng::new(8);
    let mut m = RoutedNetwork::new(s, &mut rng, &device()).unwrap();
    for (_, p) in m.params_mut() {
        let dims = p.value().shape().to_vec();
        let values = host.vec(dims.iter().product(), -0.7, 0.7);
        p.set(Tensor::from_slice(&values, &dims, &device()).unwrap())
            .unwrap();
    }
    let n = 6;
    let pairs: Vec<i32> = (0..2 * n).map(|_| host.below(5) as i32).collect();
    let pairs = Tensor::from_slice(&pairs, &[n, 2], &device()).unwrap();
    let x = m.encode_pairs(&pairs).unwrap();
    let xh = host_f64(&x);
    let (logits, routing) = m
        .forward_with_routing(&Var::constant(x.clone()), &mut Ctx::eval())
        .unwrap();
    assert_eq!(routing.shape(), &[n, 2, 3]);
    let named: BTreeMap<String, HostTensor> = m
        .params()
        .into_iter()
        .map(|(k, p)| (k, HostTensor::new(p.value().shape(), host_f64(p.value()))))
        .collect();
    let (_, want_routing) = host_routed(&s, &named, &xh, n);
    for (g, w) in host_f64(routing.value()).iter().zip(&want_routing) {
        assert!((g - w).abs() < 1e-5, "routing {g} vs {w}");
    }
    // The last layer's state update feeds nothing: it gets no gradient and is left out.
    let unused = "layers.1.state_update";
    let params: Vec<(String, Var)> = m
        .params()
        .into_iter()
        .filter(|(k, _)| !k.starts_with(unused))
        .map(|(k, p)| (k, p.var().clone()))
        .collect();
    assert_eq!(params.len(), named.len() - 2);
    let vars: Vec<Var> = params.iter().map(|(_, v)| v.clone()).collect();
    let hosts: Vec<HostTensor> = params.iter().map(|(k, _)| named[k].clone()).collect();
    let reference = |hs: &[HostTensor]| {
        let mut by_name = named.clone();
        for ((k, _), h) in params.iter().zip(hs) {
            by_name.insert(k.clone(), h.clone());
        }
        HostTensor::new(&[n, 5], host_routed(&s, &by_name, &xh, n).0)
    };
    check_output_gradients(
        "RoutedNetwork",
        &vars,
        hosts,
        &logits,
        &reference,
        &mut host,
    );
    let e = m
        .forward(
            &Var::constant(Tensor::zeros(&[2, 9], &device()).unwrap()),
            &mut Ctx::eval(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("RoutedNetwork::forward") && e.contains("[N, 10]"),
        "{e}"
    );
}

#[device_test]
fn regularisers_match_their_formulas() {
    let mut host = HostRng::new(21);
    let (n, l, h) = (5, 2, 4);
    let logits = host.vec(n * l * h, -2.0, 2.0);
    let w: Vec<f64> = logits
        .chunks(h)
        .flat_map(|row| softmax(&row.iter().map(|&v| v as f64).collect::<Vec<_>>()))
        .collect();
    let wt =
        Tensor::from_vec(w.iter().map(|&v| v as f32).collect(), &[n, l, h], &device()).unwrap();
    let rows: Vec<&[f64]> = w.chunks(h).collect();
    let mean =
        |f: &dyn Fn(&[f64]) -> f64| rows.iter().map(|r| f(r)).sum::<f64>() / rows.len() as f64;
    let entropy = mean(&|r| -r.iter().map(|v| v * v.ln()).sum::<f64>());
    let sparsity = mean(&|r| 1.0 - r.iter().cloned().fold(f64::MIN, f64::max));
    let gini = mean(&|r| {
        let spread: f64 = r
            .iter()
            .flat_map(|a| r.iter().map(move |b| (a - b).abs()))
            .sum();
        1.0 - spread / (2.0 * h as f64 * r.iter().sum::<f64>())
    });
    let mut consistency = 0.0;
    for layer in 0..l {
        for k in 0..h {
            let at = |r: usize| w[(r * l + layer) * h + k];
            let m = (0..n).map(at).sum::<f64>() / n as f64;
            consistency += (0..n).map(|r| (at(r) - m).powi(2)).sum::<f64>();
        }
    }
    consistency /= (n * l) as f64;
    let var = Var::constant(wt);
    for (kind, want) in [
        (RoutingRegulariser::Entropy, entropy),
        (RoutingRegulariser::Sparsity, sparsity),
        (RoutingRegulariser::Gini, gini),
        (RoutingRegulariser::Consistency, consistency),
    ] {
        let got = kind.value(&var).unwrap().value().item().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{kind:?}: {got} vs {want}");
    }
    let got = routing_entropy(&var).unwrap().value().item().unwrap() as f64;
    assert!((got - entropy).abs() < 1e-5);
    assert_eq!(
        RoutingRegulariser::parse("gini"),
        Some(RoutingRegulariser::Gini)
    );
    assert_eq!(RoutingRegulariser::parse("l1"), None);
    let bad = Var::constant(Tensor::zeros(&[3, 4], &device()).unwrap());
    let e = RoutingRegulariser::Entropy
        .value(&bad)
        .unwrap_err()
        .to_string();
    assert!(e.contains("[N, L, H]"), "{e}");
}

const ROUTED: &str = r#"
seed = 2
[data]
p = 7
train_frac = 0.6
[model]
type = "routed"
d_model = 16
n_layers = 2
n_heads = 4
[optim]
lr = 3e-3
weight_decay = 0.1
[train]
epochs = 60
checkpoint_every = 60
diagnostics_every = 0
[metrics]
smoothness_every = 30
jacobian_every = 30
input_hessian_every = 30
"#;

fn routed_run(name: &str, lambda: f32) -> (f64, std::path::PathBuf) {
    let dir = runs_dir(&format!("routed-{name}"));
    let body = format!("{ROUTED}[loss]\nlambda_routing = {lambda}\n");
    let (c, resolved) = config(&dir, name, &body);
    let o = run(&c, &resolved, RunOptions::default()).unwrap();
    let entropy = o.history.numbers("routing_entropy").unwrap();
    let last: Vec<f64> = entropy.iter().rev().take(5).map(|v| v.unwrap()).collect();
    (last.iter().sum::<f64>() / last.len() as f64, o.run_dir)
}

#[device_test]
fn the_entropy_regulariser_lowers_the_routing_entropy() {
    let (plain, dir) = routed_run("plain", 0.0);
    let (regularised, reg_dir) = routed_run("entropy", 0.5);
    let uniform = (4f64).ln();
    assert!(plain <= uniform + 1e-6 && plain > 0.0, "{plain}");
    assert!(
        regularised < 0.8 * plain,
        "entropy with the regulariser {regularised} vs without {plain}"
    );
    for file in ["routing.png", "spectrum.png", "curves.png"] {
        assert!(reg_dir.join(file).is_file(), "{file}");
    }
    let summary = std::fs::read_to_string(reg_dir.join("summary.toml")).unwrap();
    assert!(summary.contains("head_utilisation") && summary.contains("final_smoothness"));
    for d in [dir, reg_dir] {
        std::fs::remove_dir_all(d.parent().unwrap()).unwrap();
    }
}

#[device_test]
fn representations_are_the_inputs_of_the_output_layers() {
    use dynlab::models::{BaselineMlp, Init, PairEncoding};
    let mut rng = Rng::new(9);
    let pairs = Tensor::from_slice(&[1i32, 2, 3, 4, 0, 0], &[3, 2], &device()).unwrap();
    let routed = RoutedNetwork::new(shape(), &mut rng, &device()).unwrap();
    let x = routed.encode_pairs(&pairs).unwrap();
    let h = routed.representation(&x).unwrap();
    let w = routed.output_head.weight.var();
    let b = routed.output_head.bias.as_ref().unwrap().var();
    let e = routed.eval_tap(&x, "nope").unwrap_err().to_string();
    assert!(e.contains("`nope`") && e.contains("features"), "{e}");
    let logits = routed.forward(&Var::constant(x), &mut Ctx::eval()).unwrap();
    let again = h.linear(w, b).unwrap();
    for (a, c) in host_f64(logits.value()).iter().zip(host_f64(again.value())) {
        assert!((a - c).abs() < 1e-5);
    }
    let mlp = BaselineMlp::new(
        5,
        PairEncoding::OneHot,
        &[7],
        Init::KaimingUniform,
        &mut rng,
        &device(),
    )
    .unwrap();
    let x = mlp.encode_pairs(&pairs).unwrap();
    assert_eq!(mlp.representation(&x).unwrap().shape(), &[3, 7]);
}
