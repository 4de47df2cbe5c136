//! The module contract: taps return the activations they name (an MLP and a conv net, against f64
//! references), `visit`/`find` reach every layer by path, errors raised inside a module name its
//! path, replacements run instead of a submodule, stochastic layers draw from the context's RNG,
//! and buffers (BatchNorm's running statistics) travel with the state dict.

use dynlab::models::{
    Activation, BatchNorm, Conv2d, ConvNet, ConvNetShape, Ctx, Dropout, Init, Linear, Mlp, Module,
};
use dynlab::{Error, Rng, Tensor, Var};
use dynlab_test_support::reference::{self as r, HostTensor, Window2d};
use dynlab_test_support::{assert_close, device, device_test, random, HostRng};

fn host(t: &Tensor) -> HostTensor {
    HostTensor::from_f32(t.shape(), &t.to_vec::<f32>().unwrap())
}

/// `x W + b` in f64 for a [`Linear`] (`W` stored `[in, out]`).
fn linear_f64(x: &HostTensor, layer: &Linear) -> HostTensor {
    let y = r::matmul(x, &host(layer.weight.value()));
    let b = host(layer.bias.as_ref().unwrap().value());
    r::zip(&y, &b, |a, b| a + b)
}

fn relu(x: &HostTensor) -> HostTensor {
    r::map(x, |v| v.max(0.0))
}

#[device_test]
fn mlp_taps_are_its_layer_outputs_and_hidden_activations() {
    let mut rng = Rng::new(1);
    let mlp = Mlp::new(
        &[4, 6, 5, 3],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let (x, hx) = random(&mut HostRng::new(1), &[7, 4], -1.0, 1.0);
    let mut ctx = Ctx::eval().with_all_taps();
    let out = mlp.forward(&Var::constant(x), &mut ctx).unwrap();
    let names: Vec<&str> = ctx.taps().keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["features", "hidden.0", "hidden.1", "layers.0", "layers.1", "layers.2"]
    );
    let z0 = linear_f64(&hx, &mlp.layers[0]);
    let h0 = relu(&z0);
    let h1 = relu(&linear_f64(&h0, &mlp.layers[1]));
    let y = linear_f64(&h1, &mlp.layers[2]);
    let tap = |name: &str| ctx.tapped(name).unwrap().value().clone();
    assert_close("layers.0", &tap("layers.0"), &z0, 1e-5, 1e-4);
    assert_close("hidden.0", &tap("hidden.0"), &h0, 1e-5, 1e-4);
    assert_close("hidden.1", &tap("hidden.1"), &h1, 1e-5, 1e-4);
    assert_close("features", &tap("features"), &h1, 1e-5, 1e-4);
    assert_close("layers.2", &tap("layers.2"), &y, 1e-5, 1e-4);
    assert_close("output", out.value(), &y, 1e-5, 1e-4);
    // Only what is asked for is captured; taps stay on the tape (gradients flow through them).
    let x = Var::constant(Tensor::ones(&[2, 4], &device()).unwrap());
    let mut ctx = Ctx::train().with_taps(&["hidden.1"]);
    mlp.forward(&x, &mut ctx).unwrap();
    assert_eq!(ctx.taps().len(), 1);
    let h = ctx.tapped("hidden.1").unwrap();
    let grads = h.sum_all().unwrap().backward().unwrap();
    assert!(grads.tensor(mlp.layers[0].weight.var()).is_some());
    assert!(grads.tensor(mlp.layers[2].weight.var()).is_none());
}

fn small_convnet(rng: &mut Rng) -> ConvNet {
    let shape = ConvNetShape {
        channels: [2, 3, 4, 5],
        image: [25, 24],
        hidden: [6, 7],
        classes: 3,
    };
    ConvNet::new(shape, Activation::Relu, rng, &device()).unwrap()
}

#[device_test]
fn convnet_taps_are_the_reference_features() {
    let mut rng = Rng::new(2);
    let net = small_convnet(&mut rng);
    let (x, hx) = random(&mut HostRng::new(2), &[2, 2, 25, 24], -1.0, 1.0);
    let mut ctx = Ctx::eval().with_all_taps();
    let out = net.forward(&Var::constant(x), &mut ctx).unwrap();
    let conv = |x: &HostTensor, c: &Conv2d| {
        let win = Window2d {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
        };
        let b = host(c.bias.as_ref().unwrap().value());
        r::conv2d(x, &host(c.weight.value()), Some(&b), win, 1)
    };
    let pool = |x: &HostTensor| {
        let win = Window2d {
            stride: [2, 2],
            padding: [0, 0],
            dilation: [1, 1],
        };
        r::pool2d(x, [2, 2], win, true)
    };
    let layer = |path: &str| net.find(path).unwrap();
    let conv_at = |path| layer(path).downcast_ref::<Conv2d>().unwrap();
    let linear_at = |path| layer(path).downcast_ref::<Linear>().unwrap();
    let z1 = conv(&hx, conv_at("conv1"));
    let p1 = pool(&relu(&z1));
    let p2 = pool(&relu(&conv(&p1, conv_at("conv2"))));
    let p3 = pool(&relu(&conv(&p2, conv_at("conv3"))));
    let flat = HostTensor::new(&[2, p3.numel() / 2], p3.data.clone());
    let f1 = relu(&linear_f64(&flat, linear_at("fc1")));
    let f2 = relu(&linear_f64(&f1, linear_at("fc2")));
    let y = linear_f64(&f2, linear_at("fc3"));
    let tap = |name: &str| ctx.tapped(name).unwrap().value().clone();
    assert_eq!(p3.shape, [2, 5, 1, 1]);
    assert_close("conv1", &tap("conv1"), &z1, 1e-5, 1e-4);
    for (name, want) in [
        ("hidden.0", &p1),
        ("hidden.1", &p2),
        ("hidden.2", &flat),
        ("hidden.3", &f1),
        ("hidden.4", &f2),
        ("features", &f2),
    ] {
        assert_close(name, &tap(name), want, 1e-5, 1e-4);
    }
    assert_close("output", out.value(), &y, 1e-5, 1e-4);
    // The reference at 32 × 32: 512 flattened features, and its parameter count.
    let full = ConvNet::new(
        ConvNetShape::reference(10),
        Activation::Relu,
        &mut rng,
        &device(),
    )
    .unwrap();
    assert_eq!(full.fc1.inputs(), 512);
    let convs = (3 * 32 * 25 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128);
    let dense = (512 * 128 + 128) + (128 * 128 + 128) + (128 * 10 + 10);
    assert_eq!(full.num_params(), convs + dense);
}

#[device_test]
fn visit_and_find_reach_every_layer_by_path() {
    let mut rng = Rng::new(3);
    let mut net = small_convnet(&mut rng);
    let mut paths = Vec::new();
    net.visit(&mut |path, _| paths.push(path.to_string()));
    assert_eq!(paths, ["", "conv1", "conv2", "conv3", "fc1", "fc2", "fc3"]);
    for path in &paths[4..] {
        let layer = net.find(path).and_then(|m| m.downcast_ref::<Linear>());
        assert!(layer.is_some(), "{path} is a Linear");
    }
    // A layer and its successor, found by path (what unit replacement needs).
    let fc1 = net.find("fc1").unwrap().downcast_ref::<Linear>().unwrap();
    let fc2 = net.find("fc2").unwrap().downcast_ref::<Linear>().unwrap();
    assert_eq!(fc1.outputs(), fc2.inputs());
    assert!(net.find("fc4").is_none() && net.find("fc1.weight").is_none());
    let fc2 = net
        .find_mut("fc2")
        .unwrap()
        .downcast_mut::<Linear>()
        .unwrap();
    fc2.weight
        .set(Tensor::zeros(&[6, 7], &device()).unwrap())
        .unwrap();
    let fc2 = net.find("fc2").unwrap().downcast_ref::<Linear>().unwrap();
    let w = fc2.weight.value().to_vec::<f32>().unwrap();
    assert!(w.iter().all(|&v| v == 0.0));
    // Nested paths with dotted child names.
    let mlp = Mlp::new(
        &[2, 3, 3, 1],
        Activation::Tanh,
        Init::LecunNormal,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let mut paths = Vec::new();
    mlp.visit(&mut |path, m| paths.push((path.to_string(), m.params().len())));
    assert_eq!(
        paths,
        [
            ("".into(), 6),
            ("layers.0".into(), 2),
            ("layers.1".into(), 2),
            ("layers.2".into(), 2)
        ]
    );
    let l1 = mlp
        .find("layers.1")
        .unwrap()
        .downcast_ref::<Linear>()
        .unwrap();
    assert_eq!((l1.inputs(), l1.outputs()), (3, 3));
    assert!(mlp.find("layers").is_none() && mlp.find("layers.3").is_none());
}

#[device_test]
fn errors_inside_a_module_name_its_path() {
    let mut rng = Rng::new(4);
    let net = small_convnet(&mut rng);
    // 32 × 32 images flatten to more features than fc1 takes.
    let x = Var::constant(Tensor::zeros(&[1, 2, 32, 32], &device()).unwrap());
    let e = net
        .forward(&x, &mut Ctx::eval().labelled("convnet"))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("convnet.fc1: Linear::forward"), "{text}");
    assert!(matches!(e, Error::InModule { ref path, .. } if path == "convnet.fc1"));
    assert!(matches!(e.root_cause(), Error::Shape { .. }));
    // Without a label the path is relative to the model; nested models give the full path.
    let mlp = Mlp::new(
        &[3, 2],
        Activation::Relu,
        Init::XavierUniform,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let bad = Var::constant(Tensor::zeros(&[2, 4], &device()).unwrap());
    let e = mlp.forward(&bad, &mut Ctx::eval()).unwrap_err().to_string();
    assert!(
        e.starts_with("layers.0: Linear::forward") && e.contains("[2, 4]"),
        "{e}"
    );
}

#[device_test]
fn a_replacement_runs_instead_of_the_module_at_its_path() {
    let mut rng = Rng::new(5);
    let mlp = Mlp::new(
        &[3, 4, 2],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &device(),
    )
    .unwrap();
    let x = Var::constant(Tensor::ones(&[5, 3], &device()).unwrap());
    let plain = mlp.forward(&x, &mut Ctx::eval()).unwrap();
    // Replace the first layer by twice itself: the replacement gets the module it stands in for.
    let mut ctx = Ctx::eval()
        .with_taps(&["layers.0"])
        .with_replacement("layers.0", |m, x, ctx| m.forward(x, ctx)?.mul_scalar(2.0));
    let replaced = mlp.forward(&x, &mut ctx).unwrap();
    let z = mlp.layers[0].forward(&x, &mut Ctx::eval()).unwrap();
    let tapped = ctx
        .tapped("layers.0")
        .unwrap()
        .value()
        .to_vec::<f32>()
        .unwrap();
    let twice: Vec<f32> = z
        .value()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| 2.0 * v)
        .collect();
    assert_eq!(tapped, twice);
    let h = Var::constant(Tensor::from_vec(twice, &[5, 4], &device()).unwrap())
        .relu()
        .unwrap();
    let want = mlp.layers[1].forward(&h, &mut Ctx::eval()).unwrap();
    assert_eq!(
        replaced.value().to_vec::<f32>().unwrap(),
        want.value().to_vec::<f32>().unwrap()
    );
    assert_ne!(
        replaced.value().to_vec::<f32>().unwrap(),
        plain.value().to_vec::<f32>().unwrap()
    );
}

#[device_test]
fn stochastic_layers_draw_from_the_context_rng() {
    let drop = Dropout::new(0.5).unwrap();
    let x = Var::constant(Tensor::ones(&[64, 32], &device()).unwrap());
    let e = drop.forward(&x, &mut Ctx::train()).unwrap_err().to_string();
    assert!(
        e.contains("without an RNG") && e.contains("Ctx::with_rng"),
        "{e}"
    );
    let eval = drop.forward(&x, &mut Ctx::eval()).unwrap();
    assert_eq!(eval.value().to_vec::<f32>().unwrap(), vec![1.0; 64 * 32]);
    let run = |seed| {
        let mut rng = Rng::new(seed);
        let y = drop
            .forward(&x, &mut Ctx::train().with_rng(&mut rng))
            .unwrap();
        y.value().to_vec::<f32>().unwrap()
    };
    let (a, b, c) = (run(7), run(7), run(8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|&v| v == 0.0 || v == 2.0));
    let kept = a.iter().filter(|&&v| v == 2.0).count() as f64 / a.len() as f64;
    assert!((kept - 0.5).abs() < 0.05, "kept {kept}");
    assert!(Dropout::new(1.0).is_err());
}

#[device_test]
fn batch_norm_statistics_update_in_training_and_travel_in_the_state_dict() {
    let bn = BatchNorm::new(3, 0.1, 1e-5, &device()).unwrap();
    let x = Var::constant(
        Tensor::from_vec((0..12).map(|v| v as f32).collect(), &[4, 3], &device()).unwrap(),
    );
    bn.forward(&x, &mut Ctx::eval()).unwrap();
    assert_eq!(bn.running_mean.get().to_vec::<f32>().unwrap(), vec![0.0; 3]);
    bn.forward(&x, &mut Ctx::train()).unwrap();
    let mean = bn.running_mean.get().to_vec::<f32>().unwrap();
    for (got, want) in mean.iter().zip([0.45, 0.55, 0.65]) {
        assert!((got - want).abs() < 1e-6, "{mean:?}");
    }
    let names: Vec<String> = bn.state_dict().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["gamma", "beta", "running_mean", "running_var"]);
    let mut other = BatchNorm::new(3, 0.1, 1e-5, &device()).unwrap();
    other
        .load_state_dict(&bn.state_dict().into_iter().collect())
        .unwrap();
    assert_eq!(other.running_mean.get().to_vec::<f32>().unwrap(), mean);
    let bad = [(
        "running_var".to_string(),
        Tensor::zeros(&[4], &device()).unwrap(),
    )];
    let mut state: std::collections::HashMap<_, _> = bn.state_dict().into_iter().collect();
    state.extend(bad);
    let e = other.load_state_dict(&state).unwrap_err().to_string();
    assert!(e.contains("running_var") && e.contains("[4]"), "{e}");
}
