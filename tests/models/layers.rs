//! Layers against f64 references, initialisation statistics, parameter names, state dicts
//! (safetensors round trip and errors), and optimizer parameter groups.

use dynlab::models::{
    load_safetensors, save_safetensors, Activation, BaselineMlp, Ctx, Embedding, Init, LayerNorm,
    Linear, Mlp, Module, PairEncoding, Stateful,
};
use dynlab::optim::{Method, Optimizer, ParamGroup};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::{device, device_test, HostRng};
use std::collections::{BTreeMap, HashMap};

fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("dynlab-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[device_test]
fn linear_matches_reference_with_and_without_bias() {
    let mut rng = Rng::new(1);
    let mut host = HostRng::new(1);
    for (n, i, o, bias) in [
        (5, 3, 7, true),
        (1, 1, 1, false),
        (33, 17, 9, true),
        (0, 4, 2, true),
    ] {
        let mut layer = Linear::new(i, o, bias, Init::XavierUniform, &mut rng, &device()).unwrap();
        if let Some(b) = layer.bias.as_mut() {
            b.set(Tensor::from_slice(&host.vec(o, -1.0, 1.0), &[o], &device()).unwrap())
                .unwrap();
        }
        let x = host.vec(n * i, -1.0, 1.0);
        let x_var = Var::constant(Tensor::from_slice(&x, &[n, i], &device()).unwrap());
        let y = layer.forward(&x_var, &mut Ctx::eval()).unwrap();
        let w = layer.weight.value().to_vec::<f32>().unwrap();
        let b = layer
            .bias
            .as_ref()
            .map(|b| b.value().to_vec::<f32>().unwrap());
        let got = y.value().to_vec::<f32>().unwrap();
        assert_eq!(y.shape(), &[n, o]);
        for r in 0..n {
            for c in 0..o {
                let want: f64 = (0..i)
                    .map(|k| x[r * i + k] as f64 * w[k * o + c] as f64)
                    .sum::<f64>()
                    + b.as_ref().map_or(0.0, |b| b[c] as f64);
                assert!(
                    (got[r * o + c] as f64 - want).abs() < 1e-5,
                    "linear {n}x{i}x{o} ({r},{c})"
                );
            }
        }
    }
    let layer = Linear::new(3, 2, true, Init::LecunNormal, &mut rng, &device()).unwrap();
    let bad = Var::constant(Tensor::zeros(&[4, 5], &device()).unwrap());
    let e = layer
        .forward(&bad, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("Linear::forward") && e.contains("[4, 5]") && e.contains("[..., 3]"),
        "{e}"
    );
}

#[device_test]
fn initialisations_have_their_standard_deviation() {
    let (fan_in, fan_out) = (200, 300);
    let mut rng = Rng::new(2);
    for init in [
        Init::KaimingUniform,
        Init::KaimingNormal,
        Init::XavierUniform,
        Init::XavierNormal,
        Init::LecunUniform,
        Init::LecunNormal,
    ] {
        let w = init
            .sample(&[fan_in, fan_out], fan_in, fan_out, &mut rng, &device())
            .unwrap();
        let v = w.to_vec::<f32>().unwrap();
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let std = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        let want = init.std(fan_in, fan_out) as f64;
        // 60000 samples: the sample std is within ~0.6% of σ (1σ); allow 3%.
        assert!(
            (std - want).abs() < 0.03 * want,
            "{init:?}: std {std} vs {want}"
        );
        assert!(mean.abs() < 0.03 * want, "{init:?}: mean {mean}");
    }
}

fn layer_norm_f64(x: &[f64], dim: usize, gamma: &[f64], beta: &[f64], eps: f64) -> Vec<f64> {
    x.chunks(dim)
        .flat_map(|row| {
            let mu = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / dim as f64;
            row.iter()
                .enumerate()
                .map(move |(j, v)| (v - mu) / (var + eps).sqrt() * gamma[j] + beta[j])
                .collect::<Vec<_>>()
        })
        .collect()
}

#[device_test]
fn layer_norm_forward_and_gradient_match_reference() {
    let mut host = HostRng::new(3);
    let (rows, dim, eps) = (3, 5, 1e-5);
    let mut ln = LayerNorm::new(dim, eps as f32, &device()).unwrap();
    let g: Vec<f32> = host.vec(dim, 0.5, 1.5);
    let b: Vec<f32> = host.vec(dim, -0.5, 0.5);
    ln.affine
        .gamma
        .set(Tensor::from_slice(&g, &[dim], &device()).unwrap())
        .unwrap();
    ln.affine
        .beta
        .set(Tensor::from_slice(&b, &[dim], &device()).unwrap())
        .unwrap();
    let x: Vec<f32> = host.vec(rows * dim, -2.0, 2.0);
    let r: Vec<f32> = host.vec(rows * dim, -1.0, 1.0);
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (x64, g64, b64, r64) = (to64(&x), to64(&g), to64(&b), to64(&r));
    let xv = Var::param(Tensor::from_slice(&x, &[rows, dim], &device()).unwrap());
    let y = ln.forward(&xv, &mut Ctx::train()).unwrap();
    let want = layer_norm_f64(&x64, dim, &g64, &b64, eps);
    for (got, want) in y.value().to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!(
            (*got as f64 - want).abs() < 1e-4,
            "layer norm {got} vs {want}"
        );
    }
    // d/dx Σ r ⊙ LN(x) against central differences of the f64 reference.
    let rt = Var::constant(Tensor::from_slice(&r, &[rows, dim], &device()).unwrap());
    let grads = y.mul(&rt).unwrap().sum_all().unwrap().backward().unwrap();
    let gx = grads.tensor(&xv).unwrap().to_vec::<f32>().unwrap();
    let gg = grads
        .tensor(ln.affine.gamma.var())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let objective = |x: &[f64], g: &[f64]| -> f64 {
        layer_norm_f64(x, dim, g, &b64, eps)
            .iter()
            .zip(&r64)
            .map(|(a, b)| a * b)
            .sum()
    };
    let h = 1e-6;
    for i in 0..rows * dim {
        let (mut up, mut down) = (x64.clone(), x64.clone());
        up[i] += h;
        down[i] -= h;
        let fd = (objective(&up, &g64) - objective(&down, &g64)) / (2.0 * h);
        assert!(
            (gx[i] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
            "dL/dx[{i}] {} vs {fd}",
            gx[i]
        );
    }
    for j in 0..dim {
        let (mut up, mut down) = (g64.clone(), g64.clone());
        up[j] += h;
        down[j] -= h;
        let fd = (objective(&x64, &up) - objective(&x64, &down)) / (2.0 * h);
        assert!(
            (gg[j] as f64 - fd).abs() < 2e-3 * (1.0 + fd.abs()),
            "dL/dγ[{j}] {} vs {fd}",
            gg[j]
        );
    }
}

#[device_test]
fn embedding_looks_up_rows_and_rejects_float_indices() {
    let mut rng = Rng::new(4);
    let e = Embedding::new(6, 3, &mut rng, &device()).unwrap();
    let idx = Tensor::from_slice(&[5i32, 0, 2, 5], &[2, 2], &device()).unwrap();
    let out = e.forward(&Var::constant(idx), &mut Ctx::eval()).unwrap();
    assert_eq!(out.shape(), &[2, 2, 3]);
    let w = e.weight.value().to_vec::<f32>().unwrap();
    let got = out.value().to_vec::<f32>().unwrap();
    for (k, &i) in [5usize, 0, 2, 5].iter().enumerate() {
        assert_eq!(&got[3 * k..3 * k + 3], &w[3 * i..3 * i + 3]);
    }
    let bad = Tensor::zeros(&[2], &device()).unwrap();
    let run = |t: Tensor| e.forward(&Var::constant(t), &mut Ctx::eval());
    assert!(run(bad).unwrap_err().to_string().contains("i32"));
    let out_of_range = Tensor::from_slice(&[6i32], &[1], &device()).unwrap();
    assert!(run(out_of_range).is_err());
}

#[device_test]
fn parameter_names_follow_the_module_tree() {
    let mut rng = Rng::new(5);
    let m = BaselineMlp::new(
        7,
        PairEncoding::Embedding(4),
        &[8, 6],
        Init::KaimingUniform,
        &mut rng,
        &device(),
    )
    .unwrap();
    let names: Vec<String> = m.params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "embedding.weight",
            "mlp.layers.0.weight",
            "mlp.layers.0.bias",
            "mlp.layers.1.weight",
            "mlp.layers.1.bias",
            "mlp.layers.2.weight",
            "mlp.layers.2.bias"
        ]
    );
    assert_eq!(
        m.num_params(),
        7 * 4 + (8 * 8 + 8) + (8 * 6 + 6) + (6 * 7 + 7)
    );
    let pairs = Tensor::from_slice(&[1i32, 2, 6, 0, 3, 3], &[3, 2], &device()).unwrap();
    let mut ctx = Ctx::eval().with_taps(&["mlp.features"]);
    let encoded = Var::constant(m.encode_pairs(&pairs).unwrap());
    let logits = m.forward(&encoded, &mut ctx).unwrap();
    let hidden = ctx.tapped("mlp.features").unwrap();
    assert_eq!((logits.shape(), hidden.shape()), (&[3, 7][..], &[3, 6][..]));
    let onehot = BaselineMlp::new(
        7,
        PairEncoding::OneHot,
        &[5],
        Init::KaimingUniform,
        &mut rng,
        &device(),
    )
    .unwrap();
    let x = onehot.encode_pairs(&pairs).unwrap();
    assert_eq!(x.shape(), &[3, 14]);
    let row0 = x.to_vec::<f32>().unwrap()[..14].to_vec();
    let mut want = vec![0.0; 14];
    want[1] = 1.0;
    want[7 + 2] = 1.0;
    assert_eq!(row0, want);
    let e = onehot
        .forward(&Var::constant(pairs), &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("encode_pairs"), "{e}");
}

#[device_test]
fn state_dict_round_trips_through_safetensors() {
    let dir = tmp_dir("state");
    let mut rng = Rng::new(6);
    let a = Mlp::new(
        &[3, 5, 2],
        Activation::Relu,
        Init::KaimingNormal,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let mut b = Mlp::new(
        &[3, 5, 2],
        Activation::Relu,
        Init::KaimingNormal,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let path = dir.join("mlp.safetensors");
    let meta = BTreeMap::from([("epoch".to_string(), "12".to_string())]);
    save_safetensors(&path, &a.state_dict(), &meta).unwrap();
    let file = load_safetensors(&path, &device()).unwrap();
    assert_eq!(file.metadata, meta);
    b.load_state_dict(&file.tensors).unwrap();
    for ((na, pa), (nb, pb)) in a.params().into_iter().zip(b.params()) {
        assert_eq!(na, nb);
        assert_eq!(
            pa.value().to_vec::<f32>().unwrap(),
            pb.value().to_vec::<f32>().unwrap(),
            "{na}"
        );
    }
    // No temporary file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");

    let mut missing: HashMap<String, Tensor> = file.tensors.clone();
    missing.remove("layers.1.bias");
    let e = b.load_state_dict(&missing).unwrap_err().to_string();
    assert!(e.contains("layers.1.bias"), "{e}");
    let mut extra = file.tensors.clone();
    extra.insert(
        "head.weight".into(),
        Tensor::zeros(&[1], &device()).unwrap(),
    );
    let e = b.load_state_dict(&extra).unwrap_err().to_string();
    assert!(e.contains("head.weight"), "{e}");
    let mut wrong = file.tensors.clone();
    wrong.insert(
        "layers.0.weight".into(),
        Tensor::zeros(&[5, 3], &device()).unwrap(),
    );
    let e = b.load_state_dict(&wrong).unwrap_err().to_string();
    assert!(e.contains("layers.0.weight") && e.contains("[5, 3]"), "{e}");
    let e = load_safetensors(dir.join("absent.safetensors"), &device())
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.safetensors"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[device_test]
fn parameter_groups_decay_weights_only() {
    let mut rng = Rng::new(7);
    let mut layer = Linear::new(3, 2, true, Init::XavierNormal, &mut rng, &device()).unwrap();
    layer
        .bias
        .as_mut()
        .unwrap()
        .set(Tensor::ones(&[2], &device()).unwrap())
        .unwrap();
    let w0 = layer.weight.value().to_vec::<f32>().unwrap();
    let method = Method::Adam {
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        decoupled: true,
    };
    let mut opt = Optimizer::new(method, ParamGroup::standard(0.5)).unwrap();
    // A loss with zero gradient: only the decoupled decay moves the parameters.
    let x = Var::constant(Tensor::zeros(&[4, 3], &device()).unwrap());
    let loss = layer
        .forward(&x, &mut Ctx::train())
        .unwrap()
        .mul_scalar(0.0)
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    opt.step(&mut layer, &grads, 0.1, 1.0).unwrap();
    let w1 = layer.weight.value().to_vec::<f32>().unwrap();
    for (a, b) in w0.iter().zip(&w1) {
        assert!((b - a * 0.95).abs() < 1e-6, "weight {a} → {b}");
    }
    assert_eq!(
        layer
            .bias
            .as_ref()
            .unwrap()
            .value()
            .to_vec::<f32>()
            .unwrap(),
        vec![1.0, 1.0]
    );
    assert_eq!(opt.steps(), 1);
    let record = opt.save_state().unwrap();
    let names: Vec<&String> = record.tensors.keys().collect();
    assert_eq!(names, ["bias.m", "bias.v", "weight.m", "weight.v"]);
    assert!(Optimizer::new(
        Method::Adam {
            beta1: 1.0,
            beta2: 0.9,
            eps: 1e-8,
            decoupled: false
        },
        vec![]
    )
    .is_err());
}

#[device_test]
fn batch_norm_trains_on_batch_statistics_and_evaluates_on_running_ones() {
    use dynlab::models::BatchNorm;
    let mut host = HostRng::new(8);
    for shape in [vec![6, 3], vec![2, 3, 4, 5]] {
        let n: usize = shape.iter().product();
        let data = host.vec(n, -2.0, 3.0);
        let x = Var::param(Tensor::from_slice(&data, &shape, &device()).unwrap());
        let bn = BatchNorm::new(3, 0.1, 1e-5, &device()).unwrap();
        let y = bn.forward(&x, &mut Ctx::train()).unwrap();
        // Per channel: the f64 batch mean and biased variance.
        let (c, inner) = (
            3,
            if shape.len() == 4 {
                shape[2] * shape[3]
            } else {
                1
            },
        );
        let channel_of = |i: usize| (i / inner) % c;
        let mut stats = vec![(0.0f64, 0.0f64, 0usize); c];
        for (i, &v) in data.iter().enumerate() {
            let s = &mut stats[channel_of(i)];
            s.0 += v as f64;
            s.2 += 1;
        }
        let means: Vec<f64> = stats.iter().map(|s| s.0 / s.2 as f64).collect();
        for (i, &v) in data.iter().enumerate() {
            stats[channel_of(i)].1 += (v as f64 - means[channel_of(i)]).powi(2);
        }
        let got = y.value().to_vec::<f32>().unwrap();
        for (i, &v) in data.iter().enumerate() {
            let ch = channel_of(i);
            let var = stats[ch].1 / stats[ch].2 as f64;
            let want = (v as f64 - means[ch]) / (var + 1e-5).sqrt();
            assert!(
                (got[i] as f64 - want).abs() < 1e-4,
                "{shape:?} element {i}: {} vs {want}",
                got[i]
            );
        }
        let rm = bn.running_mean.get().to_vec::<f32>().unwrap();
        let rv = bn.running_var.get().to_vec::<f32>().unwrap();
        for ch in 0..c {
            let unbiased = stats[ch].1 / (stats[ch].2 - 1) as f64;
            assert!((rm[ch] as f64 - 0.1 * means[ch]).abs() < 1e-5);
            assert!((rv[ch] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-4);
        }
        // Gradients reach the input and both affine parameters.
        let grads = y.square().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(grads.tensor(&x).is_some() && grads.tensor(bn.affine.gamma.var()).is_some());
        let input = Var::constant(Tensor::from_slice(&data, &shape, &device()).unwrap());
        let e = bn.forward(&input, &mut Ctx::eval()).unwrap();
        let got = e.value().to_vec::<f32>().unwrap();
        for (i, &v) in data.iter().enumerate() {
            let ch = channel_of(i);
            let want = (v as f64 - rm[ch] as f64) / (rv[ch] as f64 + 1e-5).sqrt();
            assert!(
                (got[i] as f64 - want).abs() < 1e-4,
                "eval {shape:?} element {i}"
            );
        }
    }
    let bn = BatchNorm::new(3, 0.1, 1e-5, &device()).unwrap();
    let run = |shape: &[usize]| {
        let x = Var::constant(Tensor::zeros(shape, &device()).unwrap());
        bn.forward(&x, &mut Ctx::train()).unwrap_err().to_string()
    };
    let e = run(&[4, 5]);
    assert!(e.contains("[N, 3]"), "{e}");
    let e = run(&[1, 3]);
    assert!(e.contains("more than one value"), "{e}");
}

#[device_test]
fn weight_norm_has_unit_direction_and_the_initial_weight() {
    use dynlab::models::{weight_norm, weight_norm_init};
    let mut host = HostRng::new(9);
    let v = Var::param(Tensor::from_slice(&host.vec(12, -1.0, 1.0), &[4, 3], &device()).unwrap());
    let g0 = weight_norm_init(&v, 1).unwrap();
    assert_eq!(g0.shape(), &[1, 3]);
    let w = weight_norm(&v, &g0, 1).unwrap();
    let (wv, vv) = (
        w.value().to_vec::<f32>().unwrap(),
        v.value().to_vec::<f32>().unwrap(),
    );
    assert!(wv.iter().zip(&vv).all(|(a, b)| (a - b).abs() < 1e-6));
    let g = Var::param(Tensor::from_slice(&[2.0f32, 0.5, 3.0], &[1, 3], &device()).unwrap());
    let w = weight_norm(&v, &g, 1).unwrap();
    let norms = w
        .value()
        .norm(2.0, 0, false)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    for (n, want) in norms.iter().zip([2.0, 0.5, 3.0]) {
        assert!((n - want).abs() < 1e-5, "{n} vs {want}");
    }
    // The direction's gradient is orthogonal to v (scaling v does not change w).
    let r =
        Var::constant(Tensor::from_slice(&host.vec(12, -1.0, 1.0), &[4, 3], &device()).unwrap());
    let grads = w.mul(&r).unwrap().sum_all().unwrap().backward().unwrap();
    let gv = grads.tensor(&v).unwrap().to_vec::<f32>().unwrap();
    for col in 0..3 {
        let dot: f32 = (0..4)
            .map(|row| gv[row * 3 + col] * vv[row * 3 + col])
            .sum();
        assert!(dot.abs() < 1e-5, "column {col}: {dot}");
    }
    assert!(weight_norm(&v, &g, 0).is_err());
}
