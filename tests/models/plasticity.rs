//! The plasticity studies' layers and models: each layer's forward and gradients against an f64
//! host reference of its definition, the orthogonal initialisation, every registered model's
//! parameter count against the reference implementation's, the variants' structure, and the
//! registry's errors.

use dynlab::models::{
    build_model, orthogonal, orthogonality_penalty, Activation, ConvNet, ConvNetOptions,
    ConvNetShape, ConvNetVariant, Ctx, DeepFfnn, DeepFfnnOptions, FfnnInit, FfnnVariant,
    ModelParams, Module, NormConv2d, NormalizedWeightsLinear, Param, ParamValue, ResNet,
    ResNetOptions, SvdConv2d, SvdLinear, Vgg, VggOptions, WeightNormForm, MODEL_NAMES,
};
use dynlab::runtime::Conv2dOptions;
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::reference::{self as r, HostTensor, Window2d};
use dynlab_test_support::{check_output_gradients, device, device_test, random, HostRng};

fn host(t: &Tensor) -> HostTensor {
    HostTensor::from_f32(t.shape(), &t.to_vec::<f32>().unwrap())
}

/// Sets `p` to values drawn from `[lo, hi]` (initialisations are tested separately; the
/// references must see values away from the kinks of `|·|`).
fn randomise(p: &mut Param, rng: &mut HostRng, lo: f32, hi: f32) {
    let (t, _) = random(rng, p.value().shape(), lo, hi);
    p.set(t).unwrap();
}

/// `A^T` of a matrix.
fn transpose(a: &HostTensor) -> HostTensor {
    let (m, n) = (a.shape[0], a.shape[1]);
    let data = (0..n)
        .flat_map(|j| (0..m).map(move |i| (i, j)))
        .map(|(i, j)| a.data[i * n + j])
        .collect();
    HostTensor::new(&[n, m], data)
}

/// `x W + b` with `W` `[in, out]`.
fn affine(x: &HostTensor, w: &HostTensor, b: &HostTensor) -> HostTensor {
    r::zip(&r::matmul(x, w), b, |a, b| a + b)
}

/// Per output column `j` of `w [in, out]`: `f(Σ_i w_ij²)`.
fn column_sq_sums(w: &HostTensor) -> Vec<f64> {
    let (rows, cols) = (w.shape[0], w.shape[1]);
    (0..cols)
        .map(|j| (0..rows).map(|i| w.data[i * cols + j].powi(2)).sum())
        .collect()
}

fn scale_columns(w: &HostTensor, s: impl Fn(usize) -> f64) -> HostTensor {
    let cols = w.shape[1];
    let data = w.data.iter().enumerate().map(|(k, v)| v * s(k % cols));
    HostTensor::new(&w.shape, data.collect())
}

#[device_test]
fn normalized_weights_linear_forms_match_their_definitions() {
    let mut rng = Rng::new(11);
    let mut host_rng = HostRng::new(11);
    let (n, i, o, k) = (4, 5, 3, 1.3f64);
    for form in [
        WeightNormForm::SingleRescale,
        WeightNormForm::PerChannel,
        WeightNormForm::BatchNormed,
    ] {
        let mut layer =
            NormalizedWeightsLinear::new(i, o, true, form, k as f32, &mut rng, &device()).unwrap();
        randomise(&mut layer.weight, &mut host_rng, -1.0, 1.0);
        randomise(&mut layer.scale, &mut host_rng, 0.5, 1.5);
        randomise(layer.bias.as_mut().unwrap(), &mut host_rng, -0.5, 0.5);
        let (x, hx) = random(&mut host_rng, &[n, i], 0.0, 2.0);
        let xv = Var::param(x);
        let out = layer.forward(&xv, &mut Ctx::train()).unwrap();
        // The batch-normed form's EMA saw this batch before the product: m = 0.99 + 0.01·mean(x).
        let m = 0.99 + 0.01 * hx.data.iter().sum::<f64>() / hx.numel() as f64;
        let got_m = layer.input_mean.get().to_vec::<f32>().unwrap()[0] as f64;
        if form == WeightNormForm::BatchNormed {
            assert!((got_m - m).abs() < 1e-6, "EMA {got_m} vs {m}");
        } else {
            assert_eq!(got_m, 1.0, "{form:?} does not track its inputs");
        }
        let reference = move |h: &[HostTensor]| {
            let (x, w, g, b) = (&h[0], &h[1], &h[2], &h[3]);
            let sq = column_sq_sums(w);
            let root_in = (i as f64).sqrt();
            let w_eff = match form {
                WeightNormForm::SingleRescale => scale_columns(w, |j| {
                    g.data[0] * k / root_in / (sq[j] / i as f64 + 1e-8).sqrt()
                }),
                WeightNormForm::PerChannel => {
                    scale_columns(w, |j| g.data[j] * k / (sq[j] + 1e-8).sqrt())
                }
                WeightNormForm::BatchNormed => scale_columns(w, |j| g.data[j] * k / root_in / m),
            };
            affine(x, &w_eff, b)
        };
        let params = [
            layer.weight.var().clone(),
            layer.scale.var().clone(),
            layer.bias.as_ref().unwrap().var().clone(),
        ];
        let vars = [vec![xv.clone()], params.to_vec()].concat();
        let hosts = vars.iter().map(|v| host(v.value())).collect();
        check_output_gradients(
            &format!("{form:?}"),
            &vars,
            hosts,
            &out,
            &reference,
            &mut host_rng,
        );
    }
    let layer = NormalizedWeightsLinear::new(
        3,
        2,
        false,
        WeightNormForm::PerChannel,
        1.0,
        &mut rng,
        &device(),
    )
    .unwrap();
    let bad = Var::constant(Tensor::zeros(&[2, 4], &device()).unwrap());
    let e = layer
        .forward(&bad, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("NormalizedWeightsLinear::forward") && e.contains("[2, 4]"),
        "{e}"
    );
}

fn window(padding: usize) -> Window2d {
    Window2d {
        stride: [1, 1],
        padding: [padding, padding],
        dilation: [1, 1],
    }
}

#[device_test]
fn norm_conv2d_matches_its_definition() {
    let mut rng = Rng::new(12);
    let mut host_rng = HostRng::new(12);
    let (c, o, kh, kw, k) = (2, 3, 3, 2, 1.7f64);
    for fan_in_correction in [true, false] {
        let options = Conv2dOptions {
            padding: [1, 1],
            ..Default::default()
        };
        let mut layer = NormConv2d::new(
            c,
            o,
            [kh, kw],
            options,
            true,
            k as f32,
            fan_in_correction,
            &mut rng,
            &device(),
        )
        .unwrap();
        assert_eq!(layer.scale.value().to_vec::<f32>().unwrap(), vec![1.0; o]);
        assert_eq!(
            layer
                .bias
                .as_ref()
                .unwrap()
                .value()
                .to_vec::<f32>()
                .unwrap(),
            vec![0.0; o]
        );
        randomise(&mut layer.scale, &mut host_rng, 0.5, 1.5);
        randomise(layer.bias.as_mut().unwrap(), &mut host_rng, -0.5, 0.5);
        let (x, _) = random(&mut host_rng, &[2, c, 4, 5], -1.0, 1.0);
        let xv = Var::param(x);
        let out = layer.forward(&xv, &mut Ctx::train()).unwrap();
        let fan_in = if fan_in_correction { c * kh * kw } else { 1 };
        let correction = k / (fan_in as f64).sqrt();
        let reference = move |h: &[HostTensor]| {
            let (x, w, s, b) = (&h[0], &h[1], &h[2], &h[3]);
            let per = c * kh * kw;
            let data = w.data.iter().enumerate().map(|(idx, v)| {
                let ch = idx / per;
                let norm = w.data[ch * per..(ch + 1) * per]
                    .iter()
                    .map(|a| a * a)
                    .sum::<f64>()
                    .sqrt();
                v / (norm + 1e-8) * s.data[ch] * correction
            });
            let w_eff = HostTensor::new(&w.shape, data.collect());
            r::conv2d(x, &w_eff, Some(b), window(1), 1)
        };
        let vars = vec![
            xv.clone(),
            layer.weight.var().clone(),
            layer.scale.var().clone(),
            layer.bias.as_ref().unwrap().var().clone(),
        ];
        let hosts = vars.iter().map(|v| host(v.value())).collect();
        check_output_gradients("NormConv2d", &vars, hosts, &out, &reference, &mut host_rng);
    }
}

/// `N diag(|σ|) C · scale`.
fn svd_product(n: &HostTensor, sigma: &HostTensor, c: &HostTensor, scale: f64) -> HostTensor {
    let r = sigma.numel();
    let ns = HostTensor::new(
        &n.shape,
        n.data
            .iter()
            .enumerate()
            .map(|(idx, v)| v * sigma.data[idx % r].abs() * scale)
            .collect(),
    );
    r::matmul(&ns, c)
}

#[device_test]
fn svd_layers_match_their_definitions_and_start_orthonormal() {
    let mut rng = Rng::new(13);
    let mut host_rng = HostRng::new(13);
    let (i, o, k) = (5, 3, 1.4f64);
    let mut linear = SvdLinear::new(i, o, true, k as f32, false, &mut rng, &device()).unwrap();
    let shapes: Vec<Vec<usize>> = linear
        .params()
        .iter()
        .map(|(_, p)| p.value().shape().to_vec())
        .collect();
    assert_eq!(shapes, [vec![3, 3], vec![3], vec![3, 5], vec![3]]);
    // At initialisation NᵀN = I and CCᵀ = I: the penalty is 0 up to f32 rounding.
    let penalty = orthogonality_penalty(&linear, 1.0).unwrap().unwrap();
    assert!(penalty.value().item().unwrap().abs() < 1e-12);
    // Σ ~ N(1, 0.1) before randomising (three draws lie within 6σ).
    for s in linear.factors.sigma.value().to_vec::<f32>().unwrap() {
        assert!((s - 1.0).abs() < 0.6, "Σ {s}");
    }
    randomise(&mut linear.factors.sigma, &mut host_rng, 0.2, 1.0);
    let sign: Vec<f32> = linear.factors.sigma.value().to_vec::<f32>().unwrap();
    let flipped: Vec<f32> = sign
        .iter()
        .enumerate()
        .map(|(j, s)| if j == 1 { -s } else { *s })
        .collect();
    linear
        .factors
        .sigma
        .set(Tensor::from_slice(&flipped, &[3], &device()).unwrap())
        .unwrap();
    randomise(linear.bias.as_mut().unwrap(), &mut host_rng, -0.5, 0.5);
    let (x, _) = random(&mut host_rng, &[4, i], -1.0, 1.0);
    let xv = Var::param(x);
    let out = linear.forward(&xv, &mut Ctx::train()).unwrap();
    let reference = move |h: &[HostTensor]| {
        let w = svd_product(&h[1], &h[2], &h[3], k);
        affine(&h[0], &transpose(&w), &h[4])
    };
    let f = &linear.factors;
    let vars = vec![
        xv.clone(),
        f.n.var().clone(),
        f.sigma.var().clone(),
        f.c.var().clone(),
        linear.bias.as_ref().unwrap().var().clone(),
    ];
    let hosts = vars.iter().map(|v| host(v.value())).collect();
    check_output_gradients("SvdLinear", &vars, hosts, &out, &reference, &mut host_rng);

    let (c, o, kh) = (2, 4, 2);
    let mut conv = SvdConv2d::new(
        c,
        o,
        [kh, kh],
        Conv2dOptions::default(),
        true,
        k as f32,
        false,
        &mut rng,
        &device(),
    )
    .unwrap();
    randomise(&mut conv.factors.sigma, &mut host_rng, 0.2, 1.0);
    randomise(conv.bias.as_mut().unwrap(), &mut host_rng, -0.5, 0.5);
    let (x, _) = random(&mut host_rng, &[2, c, 3, 4], -1.0, 1.0);
    let xv = Var::param(x);
    let out = conv.forward(&xv, &mut Ctx::train()).unwrap();
    let scale = k * o as f64 / (c * kh * kh) as f64;
    let reference = move |h: &[HostTensor]| {
        let filters = svd_product(&h[1], &h[2], &h[3], scale);
        let filters = HostTensor::new(&[o, c, kh, kh], filters.data);
        r::conv2d(&h[0], &filters, Some(&h[4]), window(0), 1)
    };
    let f = &conv.factors;
    let vars = vec![
        xv.clone(),
        f.n.var().clone(),
        f.sigma.var().clone(),
        f.c.var().clone(),
        conv.bias.as_ref().unwrap().var().clone(),
    ];
    let hosts: Vec<HostTensor> = vars.iter().map(|v| host(v.value())).collect();
    // The penalty λ Σ [mse(NᵀN, I) + mse(CCᵀ, I)] over both layers, against the host.
    let mse_eye = |g: &HostTensor| {
        let d = g.shape[0];
        let sq: f64 = (0..d * d)
            .map(|idx| (g.data[idx] - f64::from(u8::from(idx / d == idx % d))).powi(2))
            .sum();
        sq / (d * d) as f64
    };
    let gram_terms = |n: &HostTensor, c: &HostTensor| {
        mse_eye(&r::matmul(&transpose(n), n)) + mse_eye(&r::matmul(c, &transpose(c)))
    };
    let lf = &linear.factors;
    let want = 1e-4
        * (gram_terms(&hosts[1], &hosts[3]) + gram_terms(&host(lf.n.value()), &host(lf.c.value())));
    let pair = PairOfLayers(linear.clone(), conv.clone());
    let got = orthogonality_penalty(&pair, 1e-4)
        .unwrap()
        .unwrap()
        .value()
        .item()
        .unwrap() as f64;
    assert!(
        (got - want).abs() < 1e-6 * (1.0 + want.abs()),
        "penalty {got} vs {want}"
    );
    check_output_gradients("SvdConv2d", &vars, hosts, &out, &reference, &mut host_rng);
}

/// Two layers in one module, for the penalty's sum over layers.
struct PairOfLayers(SvdLinear, SvdConv2d);

impl Module for PairOfLayers {
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> dynlab::Result<Var> {
        Ok(x.clone())
    }
    fn parts(&self) -> dynlab::models::Parts<'_> {
        dynlab::models::Parts::default()
            .child("a", &self.0)
            .child("b", &self.1)
    }
}

#[device_test]
fn orthogonal_init_has_orthonormal_columns_or_rows() {
    let mut rng = Rng::new(14);
    for (rows, cols) in [(7, 3), (3, 7), (4, 4), (1, 5), (5, 1)] {
        let q = host(&orthogonal(rows, cols, &mut rng, &device()).unwrap());
        let gram = if rows >= cols {
            r::matmul(&transpose(&q), &q)
        } else {
            r::matmul(&q, &transpose(&q))
        };
        let d = gram.shape[0];
        for a in 0..d {
            for b in 0..d {
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((gram.data[a * d + b] - want).abs() < 1e-5, "{rows}x{cols}");
            }
        }
    }
}

fn convnet_params(classes: i64) -> ModelParams {
    ModelParams::default().with("classes", ParamValue::Int(classes))
}

/// Parameter counts of the reference implementations at their defaults (32 × 32 × 3 inputs, 10
/// classes; 784 → 2 × 2000 → 10), worked out from their layer definitions.
#[device_test]
fn registered_models_have_the_reference_parameter_counts() {
    let mut rng = Rng::new(15);
    let conv_w = 3 * 32 * 25 + 32 * 64 * 9 + 64 * 128 * 9;
    let conv_b = 32 + 64 + 128;
    let fc_w = 512 * 128 + 128 * 128 + 128 * 10;
    let fc_b = 128 + 128 + 10;
    let plain = conv_w + conv_b + fc_w + fc_b;
    // SVD factors: N (O × r), Σ (r), C (r × fan), r = min(O, fan).
    let svd = |o: usize, fan: usize| {
        let r = o.min(fan);
        o * r + r + r * fan
    };
    let conv_svd = svd(32, 75) + svd(64, 288) + svd(128, 576) + conv_b;
    let fc_svd = svd(128, 512) + svd(128, 128) + svd(10, 128) + fc_b;
    let ln = |f: usize| 2 * f;
    let expected = [
        ("convnet", plain),
        // One scale per output channel in NormConv2d, one scalar per NormalizedWeightsLinear.
        ("convnet_norm", plain + (32 + 64 + 128) + 3),
        ("convnet_svd", conv_svd + fc_svd),
        ("convnet_fc_layer_norm", plain + ln(128) * 2),
        (
            "convnet_conv_and_fc_layer_norm",
            plain + ln(32 * 28 * 28) + ln(64 * 12 * 12) + ln(128 * 4 * 4) + ln(128) * 2,
        ),
        (
            "convnet_batch_norm",
            plain + 2 * (32 + 64 + 128) + 2 * 2 * 128,
        ),
    ];
    for (name, count) in expected {
        let model = build_model(name, &convnet_params(10), &mut rng, &device()).unwrap();
        assert_eq!(model.num_params(), count, "{name}");
        let x = Var::constant(Tensor::zeros(&[2, 3, 32, 32], &device()).unwrap());
        let y = model.forward(&x, &mut Ctx::train()).unwrap();
        assert_eq!(y.shape(), &[2, 10], "{name}");
    }
    let ffnn = 784 * 2000 + 2000 + 2000 * 2000 + 2000 + 2000 * 10 + 10;
    for (name, extra) in [
        ("deep_ffnn", 0),
        ("deep_ffnn_weight_norm_single_rescale", 2),
        ("deep_ffnn_weight_norm_multi_channel_rescale", 2 * 2000),
        ("deep_ffnn_weight_batch_norm", 2 * 2000),
        ("ffnn_normal_bn", 2 * 2 * 2000),
    ] {
        let model = build_model(name, &ModelParams::default(), &mut rng, &device()).unwrap();
        assert_eq!(model.num_params(), ffnn + extra, "{name}");
    }
    assert_eq!(MODEL_NAMES.len(), 16);
}

#[device_test]
fn registry_errors_name_the_model_and_the_parameter() {
    let mut rng = Rng::new(16);
    let d = device();
    let err = |name: &str, p: ModelParams| {
        build_model(name, &p, &mut Rng::new(0), &d)
            .unwrap_err()
            .to_string()
    };
    let e = err("resnet_99", ModelParams::default());
    assert!(e.contains("resnet_99") && e.contains("convnet_norm"), "{e}");
    let e = err("convnet", ModelParams::default());
    assert!(e.contains("convnet") && e.contains("`classes`"), "{e}");
    let p = ModelParams::default().with("num_feature", ParamValue::Int(3));
    let e = err("deep_ffnn", p);
    assert!(e.contains("unknown parameter `num_feature`"), "{e}");
    let p = ModelParams::default().with("num_features", ParamValue::Str("wide".into()));
    let e = err("deep_ffnn", p);
    assert!(e.contains("num_features") && e.contains("integer"), "{e}");
    let p = convnet_params(2).with("activation", ParamValue::Str("sin".into()));
    let e = err("convnet", p);
    assert!(e.contains("activation") && e.contains("relu"), "{e}");
    let p = convnet_params(2).with("image_size", ParamValue::Int(20));
    let e = err("convnet", p);
    assert!(e.contains("ConvNet::new") && e.contains("24"), "{e}");
    let _ = &mut rng;
}

/// The variants put their layers where the reference does: the normalisation layers before the
/// activation, the taps after it, and every layer reachable by path as its concrete type.
#[device_test]
fn convnet_variants_place_their_layers_as_the_reference() {
    let mut rng = Rng::new(17);
    let mut host_rng = HostRng::new(17);
    let shape = ConvNetShape {
        channels: [2, 3, 4, 5],
        image: [24, 25],
        hidden: [6, 7],
        classes: 3,
    };
    let (x, _) = random(&mut host_rng, &[4, 2, 24, 25], -1.0, 1.0);
    let x = Var::constant(x);
    for variant in [
        ConvNetVariant::Norm,
        ConvNetVariant::Svd,
        ConvNetVariant::FcLayerNorm,
        ConvNetVariant::ConvAndFcLayerNorm,
        ConvNetVariant::BatchNorm,
    ] {
        let options = ConvNetOptions::new(variant, Activation::Relu);
        let net = ConvNet::with_options(shape, options, &mut rng, &device()).unwrap();
        let mut ctx = Ctx::train().with_all_taps();
        let y = net.forward(&x, &mut ctx).unwrap();
        assert_eq!(y.shape(), &[4, 3]);
        for (tap, shape) in [
            ("hidden.0", vec![4, 3, 10, 10]),
            ("hidden.2", vec![4, 5]),
            ("features", vec![4, 7]),
        ] {
            let t = ctx
                .tapped(tap)
                .unwrap_or_else(|| panic!("{variant:?} tap {tap}"));
            assert_eq!(t.shape(), &shape[..], "{variant:?} {tap}");
        }
        let mut paths = Vec::new();
        net.visit(&mut |p, _| paths.push(p.to_string()));
        let norms = match variant {
            ConvNetVariant::FcLayerNorm => vec!["fc_norms.0", "fc_norms.1"],
            ConvNetVariant::ConvAndFcLayerNorm | ConvNetVariant::BatchNorm => vec![
                "conv_norms.0",
                "conv_norms.1",
                "conv_norms.2",
                "fc_norms.0",
                "fc_norms.1",
            ],
            _ => vec![],
        };
        let want: Vec<&str> = ["", "conv1", "conv2", "conv3", "fc1", "fc2", "fc3"]
            .into_iter()
            .chain(norms)
            .collect();
        assert_eq!(paths, want, "{variant:?}");
        let fc1 = net.find("fc1").unwrap();
        let concrete = match variant {
            ConvNetVariant::Norm => fc1.downcast_ref::<NormalizedWeightsLinear>().is_some(),
            ConvNetVariant::Svd => fc1.downcast_ref::<SvdLinear>().is_some(),
            _ => fc1.downcast_ref::<dynlab::models::Linear>().is_some(),
        };
        assert!(concrete, "{variant:?}: fc1 downcasts to its layer type");
        // Pre-activation normalisation: with batch norm in training mode, each conv1 channel of
        // the normalised map has mean 0 over the batch, so after ReLU some units are 0 and some
        // positive in every channel.
        if variant == ConvNetVariant::BatchNorm {
            let z = ctx
                .tapped("conv_norms.0")
                .unwrap()
                .value()
                .to_vec::<f32>()
                .unwrap();
            let per = 20 * 21;
            for ch in 0..3 {
                let mean: f64 = (0..4)
                    .flat_map(|n| {
                        let start = (n * 3 + ch) * per;
                        z[start..start + per].to_vec()
                    })
                    .map(f64::from)
                    .sum::<f64>()
                    / (4 * per) as f64;
                assert!(mean.abs() < 1e-4, "channel {ch} mean {mean}");
            }
        }
    }
}

#[device_test]
fn deep_ffnn_variants_match_a_host_forward() {
    let mut rng = Rng::new(18);
    let mut host_rng = HostRng::new(18);
    let base = DeepFfnnOptions {
        inputs: 6,
        width: 5,
        hidden_layers: 2,
        outputs: 3,
        activation: Activation::Tanh,
        init: FfnnInit::Kaiming,
        variant: FfnnVariant::Plain,
        k: 1.5,
    };
    let (x, hx) = random(&mut host_rng, &[4, 6], -1.0, 1.0);
    let xv = Var::constant(x);
    let tanh = |t: &HostTensor| r::map(t, f64::tanh);
    for variant in [
        FfnnVariant::Plain,
        FfnnVariant::WeightNorm(WeightNormForm::PerChannel),
    ] {
        let net = DeepFfnn::new(DeepFfnnOptions { variant, ..base }, &mut rng, &device()).unwrap();
        let mut ctx = Ctx::eval().with_all_taps();
        let y = net.forward(&xv, &mut ctx).unwrap();
        let mut h = hx.clone();
        for (i, layer) in net.layers.iter().enumerate() {
            let m = layer.module();
            let (w, b) = match m.downcast_ref::<NormalizedWeightsLinear>() {
                Some(l) => (
                    host(l.effective_weight().unwrap().value()),
                    host(l.bias.as_ref().unwrap().value()),
                ),
                None => {
                    let l = m.downcast_ref::<dynlab::models::Linear>().unwrap();
                    (
                        host(l.weight.value()),
                        host(l.bias.as_ref().unwrap().value()),
                    )
                }
            };
            assert!(b.data.iter().all(|&v| v == 0.0), "biases start at 0");
            h = affine(&h, &w, &b);
            if i < 2 {
                h = tanh(&h);
                let tap = ctx.tapped(&format!("hidden.{i}")).unwrap();
                dynlab_test_support::assert_close("hidden", tap.value(), &h, 1e-5, 1e-4);
            }
        }
        dynlab_test_support::assert_close(&format!("{variant:?}"), y.value(), &h, 1e-5, 1e-4);
    }
    // Xavier-normal with the activation's gain: tanh 5/3, over a wide layer.
    let wide = DeepFfnnOptions {
        inputs: 400,
        width: 300,
        hidden_layers: 1,
        init: FfnnInit::Xavier,
        ..base
    };
    let net = DeepFfnn::new(wide, &mut rng, &device()).unwrap();
    let w = net.layers[0]
        .module()
        .downcast_ref::<dynlab::models::Linear>()
        .unwrap();
    let v = w.weight.value().to_vec::<f32>().unwrap();
    let std = (v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let want = 5.0 / 3.0 * (2.0f64 / 700.0).sqrt();
    assert!((std - want).abs() < 0.03 * want, "std {std} vs {want}");
}

fn win(stride: usize, padding: usize) -> Window2d {
    Window2d {
        stride: [stride, stride],
        padding: [padding, padding],
        dilation: [1, 1],
    }
}

fn relu_h(x: &HostTensor) -> HostTensor {
    r::map(x, |v| v.max(0.0))
}

/// A layer's filters (and bias) as the host sees them, whatever its type.
fn conv_weights(m: &dyn Module) -> (HostTensor, Option<HostTensor>) {
    if let Some(c) = m.downcast_ref::<dynlab::models::Conv2d>() {
        let b = c.bias.as_ref().map(|b| host(b.value()));
        return (host(c.weight.value()), b);
    }
    let c = m.downcast_ref::<NormConv2d>().unwrap();
    let b = c.bias.as_ref().map(|b| host(b.value()));
    (host(c.effective_weight().unwrap().value()), b)
}

fn dense_weights(m: &dyn Module) -> (HostTensor, HostTensor) {
    if let Some(l) = m.downcast_ref::<dynlab::models::Linear>() {
        return (
            host(l.weight.value()),
            host(l.bias.as_ref().unwrap().value()),
        );
    }
    let l = m.downcast_ref::<NormalizedWeightsLinear>().unwrap();
    (
        host(l.effective_weight().unwrap().value()),
        host(l.bias.as_ref().unwrap().value()),
    )
}

/// Batch norm in evaluation mode at its initial state (running mean 0, variance 1, γ 1, β 0).
fn bn_eval(x: &HostTensor) -> HostTensor {
    r::map(x, |v| v / (1.0f64 + 1e-5).sqrt())
}

/// The tiny ResNet's forward in evaluation mode on the host, layer by layer from the model's own
/// parameters.
fn resnet_host(net: &ResNet, x: &HostTensor) -> HostTensor {
    let conv_at = |path: &str, x: &HostTensor, stride: usize, padding: usize| {
        let (w, b) = conv_weights(net.find(path).unwrap());
        r::conv2d(x, &w, b.as_ref(), win(stride, padding), 1)
    };
    let mut h = relu_h(&bn_eval(&conv_at("conv1", x, 2, 3)));
    h = r::pool2d(&h, [3, 3], win(2, 1), true);
    for stage in 1..=4 {
        for block in 0..2 {
            let p = format!("layer{stage}.{block}");
            let stride = if stage > 1 && block == 0 { 2 } else { 1 };
            let a = relu_h(&bn_eval(&conv_at(&format!("{p}.conv1"), &h, stride, 1)));
            let a = bn_eval(&conv_at(&format!("{p}.conv2"), &a, 1, 1));
            let shortcut = if net.find(&format!("{p}.downsample.0")).is_some() {
                bn_eval(&conv_at(&format!("{p}.downsample.0"), &h, stride, 0))
            } else {
                h.clone()
            };
            h = relu_h(&r::zip(&a, &shortcut, |u, v| u + v));
        }
    }
    let [n, c] = [h.shape[0], h.shape[1]];
    let plane = h.shape[2] * h.shape[3];
    let pooled: Vec<f64> = h
        .data
        .chunks(plane)
        .map(|p| p.iter().sum::<f64>() / plane as f64)
        .collect();
    let (w, b) = dense_weights(net.find("fc").unwrap());
    affine(&HostTensor::new(&[n, c], pooled), &w, &b)
}

#[device_test]
fn resnet_matches_a_host_forward_and_the_reference_parameter_counts() {
    let mut rng = Rng::new(19);
    let mut host_rng = HostRng::new(19);
    let (x, hx) = random(&mut host_rng, &[2, 3, 20, 18], -1.0, 1.0);
    for normalized in [false, true] {
        let options = ResNetOptions {
            in_channels: 3,
            base_width: 2,
            classes: 3,
            normalized,
            activation: Activation::Relu,
        };
        let net = ResNet::new(options, &mut rng, &device()).unwrap();
        let mut ctx = Ctx::eval().with_all_taps();
        let y = net.forward(&Var::constant(x.clone()), &mut ctx).unwrap();
        dynlab_test_support::assert_close(
            &format!("resnet (normalized {normalized})"),
            y.value(),
            &resnet_host(&net, &hx),
            1e-5,
            1e-4,
        );
        assert_eq!(ctx.tapped("features").unwrap().shape(), &[2, 16]);
        assert_eq!(ctx.tapped("hidden.4").unwrap().shape(), &[2, 16, 1, 1]);
        // Training mode runs (batch statistics) and every parameter gets a gradient.
        let y = net
            .forward(&Var::constant(x.clone()), &mut Ctx::train())
            .unwrap();
        let grads = y.square().unwrap().sum_all().unwrap().backward().unwrap();
        for (name, p) in net.params() {
            assert!(grads.tensor(p.var()).is_some(), "no gradient for {name}");
        }
    }
    // torchvision's resnet18 has 11,689,512 parameters with 1000 classes; with 10: 11,181,642.
    let resnet18 = 11_689_512 - (512 * 1000 + 1000) + (512 * 10 + 10);
    let counts = [
        ("resnet_custom", resnet18),
        // One scale per output channel of each of the 20 convolutions, one scalar for the head.
        ("resnet_normalized_conv", resnet18 + 4800 + 1),
        ("full_rank_resnet_custom", resnet18 + 4800 + 1),
    ];
    for (name, count) in counts {
        let p = ModelParams::default().with("classes", ParamValue::Int(10));
        let model = build_model(name, &p, &mut rng, &device()).unwrap();
        assert_eq!(model.num_params(), count, "{name}");
    }
}

/// The tiny VGG's forward in evaluation mode (no dropout) on the host.
fn vgg_host(net: &Vgg, x: &HostTensor) -> HostTensor {
    let mut h = x.clone();
    let mut index = 0;
    for count in [2, 2, 3, 3, 3] {
        for _ in 0..count {
            let (w, b) = conv_weights(net.find(&format!("features.{index}")).unwrap());
            h = relu_h(&r::conv2d(&h, &w, b.as_ref(), win(1, 1), 1));
            index += 1;
        }
        h = r::pool2d(&h, [2, 2], win(2, 0), true);
    }
    // 1 × 1 maps: the adaptive pool repeats each value 7 × 7 times.
    let [n, c] = [h.shape[0], h.shape[1]];
    let flat: Vec<f64> = h
        .data
        .iter()
        .flat_map(|&v| std::iter::repeat_n(v, 49))
        .collect();
    let mut h = HostTensor::new(&[n, c * 49], flat);
    for i in 0..3 {
        let (w, b) = dense_weights(net.find(&format!("classifier.{i}")).unwrap());
        h = affine(&h, &w, &b);
        if i < 2 {
            h = relu_h(&h);
        }
    }
    h
}

#[device_test]
fn vgg_matches_a_host_forward_and_the_reference_parameter_counts() {
    let mut rng = Rng::new(20);
    let mut host_rng = HostRng::new(20);
    let (x, hx) = random(&mut host_rng, &[2, 3, 32, 32], -1.0, 1.0);
    for normalized in [false, true] {
        let options = VggOptions {
            in_channels: 3,
            widths: [2, 3, 4, 5, 5],
            hidden: 6,
            classes: 3,
            normalized,
            dropout: 0.5,
            pooled_side: 7,
        };
        let net = Vgg::new(options, &mut rng, &device()).unwrap();
        let y = net
            .forward(&Var::constant(x.clone()), &mut Ctx::eval())
            .unwrap();
        dynlab_test_support::assert_close(
            &format!("vgg (normalized {normalized})"),
            y.value(),
            &vgg_host(&net, &hx),
            1e-5,
            1e-4,
        );
        // 48 × 48 ends at 1 × 1 too; 64 × 64 ends at 2 × 2, which the adaptive pool cannot
        // reproduce exactly: an error naming the shape.
        let bad = Var::constant(Tensor::zeros(&[1, 3, 64, 64], &device()).unwrap());
        let e = net.forward(&bad, &mut Ctx::eval()).unwrap_err().to_string();
        assert!(
            e.contains("Vgg::forward") && e.contains("[1, 5, 2, 2]"),
            "{e}"
        );
    }
    // torchvision's vgg16 has 138,357,544 parameters with 1000 classes; with 10: 134,301,514.
    // Its 25088 × 4096 layer exceeds wgpu's 128 MiB per buffer: on wgpu that is a DeviceLimit
    // error, and the 32 × 32 form (a 512 × 4096 first layer) is counted instead.
    let vgg16 = 138_357_544 - (4096 * 1000 + 1000) + (4096 * 10 + 10);
    let vgg16_32 = vgg16 - (25088 - 512) * 4096;
    let conv_channels = 2 * 64 + 2 * 128 + 3 * 256 + 3 * 512 + 3 * 512;
    let on_wgpu = device().name().starts_with("wgpu");
    for (name, count) in [
        ("vgg_custom", vgg16),
        ("vgg_custom_norm", vgg16 + conv_channels + 3),
    ] {
        let full = ModelParams::default().with("classes", ParamValue::Int(10));
        match build_model(name, &full, &mut rng, &device()) {
            Ok(model) => assert_eq!(model.num_params(), count, "{name}"),
            Err(e) => assert!(on_wgpu && e.to_string().contains("134217728 bytes"), "{e}"),
        }
        let small = full.clone().with("pooled_side", ParamValue::Int(1));
        let model = build_model(name, &small, &mut rng, &device()).unwrap();
        assert_eq!(
            model.num_params(),
            count - (vgg16 - vgg16_32),
            "{name} (32 × 32 form)"
        );
    }
}

/// Batch norm in training mode at γ = 1, β = 0: per channel over every axis but 1.
fn bn_train(x: &HostTensor) -> HostTensor {
    let c = x.shape[1];
    let inner: usize = x.shape[2..].iter().product();
    let count = x.numel() / c;
    let channel = |idx: usize| idx / inner % c;
    let mut mean = vec![0.0; c];
    for (idx, v) in x.data.iter().enumerate() {
        mean[channel(idx)] += v / count as f64;
    }
    let mut var = vec![0.0; c];
    for (idx, v) in x.data.iter().enumerate() {
        var[channel(idx)] += (v - mean[channel(idx)]).powi(2) / count as f64;
    }
    let data = x.data.iter().enumerate().map(|(idx, v)| {
        let ch = channel(idx);
        (v - mean[ch]) / (var[ch] + 1e-5).sqrt()
    });
    HostTensor::new(&x.shape, data.collect())
}

/// Layer norm over everything but the batch axis, γ = 1, β = 0.
fn ln_all(x: &HostTensor) -> HostTensor {
    let n = x.shape[0];
    let flat = HostTensor::new(&[n, x.numel() / n], x.data.clone());
    HostTensor::new(&x.shape, r::layer_norm(&flat, None, 1e-5).data)
}

fn any_conv(m: &dyn Module) -> (HostTensor, Option<HostTensor>) {
    match m.downcast_ref::<SvdConv2d>() {
        Some(c) => (
            host(c.effective_weight().unwrap().value()),
            c.bias.as_ref().map(|b| host(b.value())),
        ),
        None => conv_weights(m),
    }
}

fn any_dense(m: &dyn Module) -> (HostTensor, HostTensor) {
    match m.downcast_ref::<SvdLinear>() {
        Some(l) => {
            let w = host(l.factors.product(l.k).unwrap().value());
            (transpose(&w), host(l.bias.as_ref().unwrap().value()))
        }
        None => dense_weights(m),
    }
}

/// A ConvNet variant's forward in training mode on the host, from the model's own layers.
fn convnet_host(net: &ConvNet, variant: ConvNetVariant, x: &HostTensor) -> HostTensor {
    let norm = |h: &HostTensor| match variant {
        ConvNetVariant::BatchNorm => bn_train(h),
        ConvNetVariant::ConvAndFcLayerNorm => ln_all(h),
        _ => h.clone(),
    };
    let fc_norm = |h: &HostTensor| match variant {
        ConvNetVariant::BatchNorm => bn_train(h),
        ConvNetVariant::FcLayerNorm | ConvNetVariant::ConvAndFcLayerNorm => ln_all(h),
        _ => h.clone(),
    };
    let mut h = x.clone();
    for name in ["conv1", "conv2", "conv3"] {
        let (w, b) = any_conv(net.find(name).unwrap());
        let z = norm(&r::conv2d(&h, &w, b.as_ref(), win(1, 0), 1));
        h = r::pool2d(&relu_h(&z), [2, 2], win(2, 0), true);
    }
    let n = h.shape[0];
    h = HostTensor::new(&[n, h.numel() / n], h.data);
    for name in ["fc1", "fc2"] {
        let (w, b) = any_dense(net.find(name).unwrap());
        h = relu_h(&fc_norm(&affine(&h, &w, &b)));
    }
    let (w, b) = any_dense(net.find("fc3").unwrap());
    affine(&h, &w, &b)
}

#[device_test]
fn convnet_variants_match_a_host_forward() {
    let mut rng = Rng::new(21);
    let mut host_rng = HostRng::new(21);
    let shape = ConvNetShape {
        channels: [2, 3, 4, 5],
        image: [24, 26],
        hidden: [6, 7],
        classes: 3,
    };
    let (x, hx) = random(&mut host_rng, &[3, 2, 24, 26], -1.0, 1.0);
    for variant in [
        ConvNetVariant::Norm,
        ConvNetVariant::Svd,
        ConvNetVariant::FcLayerNorm,
        ConvNetVariant::ConvAndFcLayerNorm,
        ConvNetVariant::BatchNorm,
    ] {
        let options = ConvNetOptions::new(variant, Activation::Relu);
        let net = ConvNet::with_options(shape, options, &mut rng, &device()).unwrap();
        let y = net
            .forward(&Var::constant(x.clone()), &mut Ctx::train())
            .unwrap();
        dynlab_test_support::assert_close(
            &format!("{variant:?}"),
            y.value(),
            &convnet_host(&net, variant, &hx),
            1e-4,
            1e-3,
        );
    }
}

/// `L(θ) = Σ model(x) ⊙ r` for the parameters `theta` (set in a clone of `model`).
fn weighted_output<M: Module + Clone>(
    model: &M,
    theta: &[Tensor],
    x: &Tensor,
    r: &Tensor,
    train: bool,
) -> f64 {
    let mut m = model.clone();
    for ((_, p), t) in m.params_mut().into_iter().zip(theta) {
        p.set(t.clone()).unwrap();
    }
    let mut ctx = if train { Ctx::train() } else { Ctx::eval() };
    let y = m.forward(&Var::constant(x.clone()), &mut ctx).unwrap();
    y.value().mul(r).unwrap().sum_all().unwrap().item().unwrap() as f64
}

/// The gradient of `Σ model(x) ⊙ r` over all parameters, projected on a random direction `d`
/// (each parameter's part scaled to its RMS), against the central difference
/// `(L(θ + εd) − L(θ − εd)) / 2ε` on the device.
fn check_model_gradient<M: Module + Clone>(name: &str, model: &M, input: &[usize], train: bool) {
    let mut host_rng = HostRng::new(99);
    let (x, _) = random(&mut host_rng, input, -1.0, 1.0);
    let out_shape = {
        let mut ctx = if train { Ctx::train() } else { Ctx::eval() };
        let y = model
            .clone()
            .forward(&Var::constant(x.clone()), &mut ctx)
            .unwrap();
        y.shape().to_vec()
    };
    let (r, _) = random(&mut host_rng, &out_shape, -1.0, 1.0);
    let theta: Vec<Tensor> = model
        .params()
        .iter()
        .map(|(_, p)| p.value().clone())
        .collect();
    let directions: Vec<Tensor> = theta
        .iter()
        .map(|t| {
            let v = t.to_vec::<f32>().unwrap();
            let rms = (v.iter().map(|a| a * a).sum::<f32>() / v.len().max(1) as f32).sqrt();
            let (d, _) = random(&mut host_rng, t.shape(), -1.0, 1.0);
            d.mul_scalar(rms.max(1e-3)).unwrap()
        })
        .collect();
    let mut ctx = if train { Ctx::train() } else { Ctx::eval() };
    let y = model.forward(&Var::constant(x.clone()), &mut ctx).unwrap();
    let grads = y
        .mul(&Var::constant(r.clone()))
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let analytic: f64 = model
        .params()
        .iter()
        .zip(&directions)
        .map(|((pname, p), d)| {
            let g = grads
                .tensor(p.var())
                .unwrap_or_else(|| panic!("{name}: no gradient for {pname}"));
            g.mul(d).unwrap().sum_all().unwrap().item().unwrap() as f64
        })
        .sum();
    let eps = 1e-3f32;
    let shifted = |sign: f32| -> Vec<Tensor> {
        theta
            .iter()
            .zip(&directions)
            .map(|(t, d)| t.add(&d.mul_scalar(sign * eps).unwrap()).unwrap())
            .collect()
    };
    let plus = weighted_output(model, &shifted(1.0), &x, &r, train);
    let minus = weighted_output(model, &shifted(-1.0), &x, &r, train);
    let numeric = (plus - minus) / (2.0 * eps as f64);
    assert!(
        (analytic - numeric).abs() <= 2e-2 * numeric.abs().max(analytic.abs()) + 1e-3,
        "{name}: directional derivative {analytic} vs central difference {numeric}"
    );
}

#[device_test]
fn every_model_family_has_exact_parameter_gradients() {
    let mut rng = Rng::new(22);
    let d = device();
    let shape = ConvNetShape {
        channels: [2, 3, 4, 5],
        image: [24, 24],
        hidden: [6, 7],
        classes: 3,
    };
    for variant in [
        ConvNetVariant::Plain,
        ConvNetVariant::Norm,
        ConvNetVariant::Svd,
        ConvNetVariant::FcLayerNorm,
        ConvNetVariant::ConvAndFcLayerNorm,
        ConvNetVariant::BatchNorm,
    ] {
        let options = ConvNetOptions::new(variant, Activation::Tanh);
        let net = ConvNet::with_options(shape, options, &mut rng, &d).unwrap();
        check_model_gradient(&format!("{variant:?}"), &net, &[3, 2, 24, 24], true);
    }
    for variant in [
        FfnnVariant::Plain,
        FfnnVariant::WeightNorm(WeightNormForm::SingleRescale),
        FfnnVariant::WeightNorm(WeightNormForm::PerChannel),
        FfnnVariant::WeightNorm(WeightNormForm::BatchNormed),
        FfnnVariant::BatchNorm,
    ] {
        let options = DeepFfnnOptions {
            inputs: 5,
            width: 4,
            hidden_layers: 2,
            outputs: 3,
            activation: Activation::Tanh,
            init: FfnnInit::Xavier,
            variant,
            k: 1.4,
        };
        let net = DeepFfnn::new(options, &mut rng, &d).unwrap();
        // The batch-normed weights' EMA moves with every training forward: checked in eval mode.
        let train = variant != FfnnVariant::WeightNorm(WeightNormForm::BatchNormed);
        check_model_gradient(&format!("{variant:?}"), &net, &[4, 5], train);
    }
    let vgg = VggOptions {
        in_channels: 2,
        widths: [2, 2, 3, 3, 3],
        hidden: 4,
        classes: 3,
        normalized: true,
        dropout: 0.0,
        pooled_side: 1,
    };
    let net = Vgg::new(vgg, &mut rng, &d).unwrap();
    check_model_gradient("vgg_custom_norm", &net, &[2, 2, 32, 32], true);
    for normalized in [false, true] {
        let options = ResNetOptions {
            in_channels: 2,
            base_width: 2,
            classes: 3,
            normalized,
            activation: Activation::Tanh,
        };
        let net = ResNet::new(options, &mut rng, &d).unwrap();
        check_model_gradient(
            &format!("resnet (normalized {normalized})"),
            &net,
            &[3, 2, 18, 18],
            true,
        );
    }
}
