//! `GrokTransformer` against a plain f64 host transformer: the forward pass (causal attention per
//! head, pre-norm blocks, the last position through the final LayerNorm), every parameter's
//! gradient, tied embeddings, the embedding entry points, and bad input.

use dynlab::models::{Activation, Ctx, GrokTransformer, GrokTransformerShape, Module};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::reference::{gelu, layer_norm, matmul, softmax, HostTensor};
use dynlab_test_support::{check_output_gradients, device, device_test, host_f64, HostRng};
use std::collections::BTreeMap;

fn shape(p: usize, n_layers: usize, activation: Activation, tie: bool) -> GrokTransformerShape {
    GrokTransformerShape {
        p,
        d_model: 8,
        n_layers,
        n_heads: 2,
        d_mlp: 12,
        activation,
        tie_embeddings: tie,
    }
}

/// `x [rows, k] · w [k, n] + b`.
fn affine(x: &HostTensor, w: &HostTensor, b: Option<&HostTensor>) -> HostTensor {
    let mut y = matmul(x, w);
    if let Some(b) = b {
        let n = b.data.len();
        for (i, v) in y.data.iter_mut().enumerate() {
            *v += b.data[i % n];
        }
    }
    y
}

/// The transformer in f64 from its parameters by name, on token sequences `[N, 4]`.
fn host_transformer(
    s: &GrokTransformerShape,
    params: &BTreeMap<String, HostTensor>,
    tokens: &[usize],
) -> HostTensor {
    let (d, t, h) = (s.d_model, 4, s.n_heads);
    let n = tokens.len() / t;
    let dh = d / h;
    let get = |name: &str| &params[name];
    let (emb, pos) = (get("token_embedding.weight"), get("position_embedding"));
    let mut x: Vec<f64> = (0..n * t * d)
        .map(|i| {
            let (row, j) = (i / d, i % d);
            emb.data[tokens[row] * d + j] + pos.data[(row % t) * d + j]
        })
        .collect();
    for l in 0..s.n_layers {
        let w = |name: &str| get(&format!("blocks.{l}.{name}"));
        let ln = |x: &[f64], which: &str| {
            let xt = HostTensor::new(&[n * t, d], x.to_vec());
            let (g, b) = (w(&format!("{which}.gamma")), w(&format!("{which}.beta")));
            layer_norm(&xt, Some((g, b)), 1e-5)
        };
        let normed = ln(&x, "ln1");
        let proj = |name: &str| {
            affine(
                &normed,
                w(&format!("{name}.weight")),
                Some(w(&format!("{name}.bias"))),
            )
        };
        let (q, k, v) = (proj("q"), proj("k"), proj("v"));
        let mut attended = vec![0.0; n * t * d];
        for b in 0..n {
            for head in 0..h {
                for i in 0..t {
                    let at = |m: &HostTensor, pos: usize, c: usize| {
                        m.data[(b * t + pos) * d + head * dh + c]
                    };
                    let scores: Vec<f64> = (0..=i)
                        .map(|j| {
                            (0..dh).map(|c| at(&q, i, c) * at(&k, j, c)).sum::<f64>()
                                / (dh as f64).sqrt()
                        })
                        .collect();
                    let weights = softmax(&scores);
                    for c in 0..dh {
                        attended[(b * t + i) * d + head * dh + c] =
                            (0..=i).map(|j| weights[j] * at(&v, j, c)).sum();
                    }
                }
            }
        }
        let attended = HostTensor::new(&[n * t, d], attended);
        let out = affine(&attended, w("out.weight"), Some(w("out.bias")));
        for (xi, o) in x.iter_mut().zip(&out.data) {
            *xi += o;
        }
        let normed = ln(&x, "ln2");
        let mut hidden = affine(&normed, w("mlp_in.weight"), Some(w("mlp_in.bias")));
        for v in hidden.data.iter_mut() {
            *v = match s.activation {
                Activation::Relu => v.max(0.0),
                _ => gelu(*v),
            };
        }
        let out = affine(&hidden, w("mlp_out.weight"), Some(w("mlp_out.bias")));
        for (xi, o) in x.iter_mut().zip(&out.data) {
            *xi += o;
        }
    }
    let last: Vec<f64> = (0..n)
        .flat_map(|b| x[(b * t + t - 1) * d..(b * t + t) * d].to_vec())
        .collect();
    let hidden = layer_norm(
        &HostTensor::new(&[n, d], last),
        Some((get("ln_f.gamma"), get("ln_f.beta"))),
        1e-5,
    );
    match params.get("unembed.weight") {
        Some(u) => matmul(&hidden, u),
        None => {
            let table = HostTensor::new(&[s.p, d], emb.data[..s.p * d].to_vec());
            let transposed = (0..d * s.p)
                .map(|i| table.data[(i % s.p) * d + i / s.p])
                .collect();
            matmul(&hidden, &HostTensor::new(&[d, s.p], transposed))
        }
    }
}

fn host_params(m: &GrokTransformer) -> BTreeMap<String, HostTensor> {
    m.params()
        .into_iter()
        .map(|(name, p)| {
            (
                name,
                HostTensor::new(p.value().shape(), host_f64(p.value())),
            )
        })
        .collect()
}

/// Random parameters of moderate size (LayerNorm scales away from 1, biases away from 0).
fn randomise(m: &mut GrokTransformer, rng: &mut HostRng) {
    for (_, p) in m.params_mut() {
        let shape = p.value().shape().to_vec();
        let values = rng.vec(shape.iter().product(), -0.8, 0.8);
        p.set(Tensor::from_slice(&values, &shape, &device()).unwrap())
            .unwrap();
    }
}

fn sample_pairs(p: usize, n: usize, rng: &mut HostRng) -> (Tensor, Vec<usize>) {
    let pairs: Vec<i32> = (0..2 * n).map(|_| rng.below(p) as i32).collect();
    let tokens: Vec<usize> = pairs
        .chunks(2)
        .flat_map(|ab| [ab[0] as usize, p, ab[1] as usize, p + 1])
        .collect();
    (
        Tensor::from_slice(&pairs, &[n, 2], &device()).unwrap(),
        tokens,
    )
}

#[device_test]
fn forward_and_gradients_match_the_host_transformer() {
    let mut rng = Rng::new(3);
    let mut host = HostRng::new(3);
    for (layers, activation, tie) in [
        (1, Activation::Relu, false),
        (2, Activation::Gelu, false),
        (2, Activation::Gelu, true),
    ] {
        let s = shape(5, layers, activation, tie);
        let mut m = GrokTransformer::new(s, &mut rng, &device()).unwrap();
        randomise(&mut m, &mut host);
        let (pairs, tokens) = sample_pairs(5, 7, &mut host);
        let input = Var::constant(GrokTransformer::tokens(&pairs, 5).unwrap());
        let out = m.forward(&input, &mut Ctx::eval()).unwrap();
        assert_eq!(out.shape(), &[7, 5]);
        let names: Vec<String> = m.params().into_iter().map(|(n, _)| n).collect();
        let vars: Vec<Var> = m.params().iter().map(|(_, p)| p.var().clone()).collect();
        let hosts: Vec<HostTensor> = names.iter().map(|n| host_params(&m)[n].clone()).collect();
        let reference = |hs: &[HostTensor]| {
            let named = names.iter().cloned().zip(hs.iter().cloned()).collect();
            host_transformer(&s, &named, &tokens)
        };
        let what = format!("GrokTransformer {layers} layers {activation:?} tied {tie}");
        check_output_gradients(&what, &vars, hosts, &out, &reference, &mut host);
    }
}

#[device_test]
fn tying_removes_exactly_p_times_d_model_parameters() {
    let mut rng = Rng::new(1);
    let full = |tie| GrokTransformerShape {
        p: 113,
        d_model: 128,
        n_layers: 1,
        n_heads: 4,
        d_mlp: 512,
        activation: Activation::Relu,
        tie_embeddings: tie,
    };
    let untied = GrokTransformer::new(full(false), &mut rng, &device()).unwrap();
    let tied = GrokTransformer::new(full(true), &mut rng, &device()).unwrap();
    assert_eq!(untied.num_params() - tied.num_params(), 113 * 128);
    assert_eq!(untied.num_params() - tied.num_params(), 14_464);
    let d = 128;
    let block = 4 * (d * d + d) + 2 * 2 * d + (d * 512 + 512) + (512 * d + d);
    assert_eq!(
        untied.num_params(),
        115 * d + 4 * d + block + 2 * d + d * 113
    );
}

#[device_test]
fn embeddings_and_representation_are_the_forward_pass_in_parts() {
    let mut rng = Rng::new(2);
    let mut host = HostRng::new(2);
    let s = shape(7, 2, Activation::Gelu, false);
    let m = GrokTransformer::new(s, &mut rng, &device()).unwrap();
    let (pairs, _) = sample_pairs(7, 5, &mut host);
    let tokens = GrokTransformer::tokens(&pairs, 7).unwrap();
    let mut ctx = Ctx::eval().with_taps(&["features", "hidden.0", "hidden.1"]);
    let logits = m.forward(&Var::constant(tokens.clone()), &mut ctx).unwrap();
    let e = m.embeddings(&tokens, &mut Ctx::eval()).unwrap();
    assert_eq!(e.shape(), &[5, 4, 8]);
    let again = m.forward_from_embeddings(&e, &mut Ctx::eval()).unwrap();
    assert_eq!(
        logits.value().to_vec::<f32>().unwrap(),
        again.value().to_vec::<f32>().unwrap()
    );
    let rep = m.representation(&tokens).unwrap();
    assert_eq!(rep.shape(), &[5, 8]);
    assert_eq!(
        rep.value().to_vec::<f32>().unwrap(),
        ctx.tapped("features")
            .unwrap()
            .value()
            .to_vec::<f32>()
            .unwrap()
    );
    assert_eq!(ctx.tapped("hidden.0").unwrap().shape(), &[5, 4, 8]);
    assert_eq!(ctx.tapped("hidden.1").unwrap().shape(), &[5, 1, 8]);
}

#[device_test]
fn bad_shapes_and_tokens_are_errors() {
    let mut rng = Rng::new(4);
    let bad = GrokTransformerShape {
        n_heads: 3,
        ..shape(5, 1, Activation::Relu, false)
    };
    let e = GrokTransformer::new(bad, &mut rng, &device()).unwrap_err();
    assert!(e.to_string().contains("n_heads dividing d_model"), "{e}");
    let tanh = shape(5, 1, Activation::Tanh, false);
    assert!(GrokTransformer::new(tanh, &mut rng, &device()).is_err());
    let m =
        GrokTransformer::new(shape(5, 1, Activation::Relu, false), &mut rng, &device()).unwrap();
    let floats = Var::constant(Tensor::zeros(&[3, 4], &device()).unwrap());
    let e = m
        .forward(&floats, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("GrokTransformer::embeddings") && e.contains("[N, 4]"),
        "{e}"
    );
    let out_of_vocabulary = Tensor::from_slice(&[0i32, 5, 1, 9], &[1, 4], &device()).unwrap();
    assert!(m
        .forward(&Var::constant(out_of_vocabulary), &mut Ctx::eval())
        .is_err());
    let pairs = Tensor::zeros(&[2, 3], &device()).unwrap();
    let e = GrokTransformer::tokens(&pairs, 5).unwrap_err().to_string();
    assert!(e.contains("GrokTransformer::tokens"), "{e}");
    let wrong_width = Var::constant(Tensor::zeros(&[2, 4, 6], &device()).unwrap());
    let e = m
        .forward_from_embeddings(&wrong_width, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("[N, 4, 8]"), "{e}");
}
