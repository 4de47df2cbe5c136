//! Typed optimizer state: slots reachable by (parameter, slot), `reset_units` zeroing exactly the
//! chosen rows or columns of every slot (moments, momentum, per-element step counts), and a
//! checkpoint of the state that round-trips by name.

use dynlab::autodiff::Grads;
use dynlab::models::{Ctx, Init, Linear, Module, Record, Stateful};
use dynlab::optim::{Method, Optimizer, ParamGroup, ParamState};
use dynlab::{Rng, Tensor, Var};
use dynlab_test_support::{device, device_test, HostRng};

const ADAM: Method = Method::Adam {
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-8,
    decoupled: true,
};

/// A linear layer `3 → 4` and gradients of a random quadratic loss on random data.
fn layer_and_grads(layer: &Linear, seed: u64) -> Grads {
    let mut host = HostRng::new(seed);
    let x = Tensor::from_slice(&host.vec(5 * 3, -1.0, 1.0), &[5, 3], &device()).unwrap();
    let y = layer.forward(&Var::constant(x), &mut Ctx::train()).unwrap();
    y.square().unwrap().sum_all().unwrap().backward().unwrap()
}

fn trained(method: Method, element_steps: bool, steps: u64) -> (Linear, Optimizer) {
    let mut layer =
        Linear::new(3, 4, true, Init::XavierUniform, &mut Rng::new(1), &device()).unwrap();
    let mut opt = Optimizer::new(method, ParamGroup::standard(0.01)).unwrap();
    if element_steps {
        opt = opt.with_element_steps().unwrap();
    }
    for s in 0..steps {
        let grads = layer_and_grads(&layer, s);
        opt.step(&mut layer, &grads, 0.1, 1.0).unwrap();
    }
    (layer, opt)
}

fn values(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

#[device_test]
fn slots_are_reachable_by_parameter_and_name() {
    let (_, opt) = trained(ADAM, true, 2);
    for param in ["weight", "bias"] {
        let Some(ParamState::Adam(s)) = opt.state(param) else {
            panic!("{param} has Adam state");
        };
        assert_eq!(s.step, 2);
        assert_eq!(values(opt.slot(param, "m").unwrap()), values(&s.m));
        assert_eq!(
            values(opt.slot(param, "steps").unwrap()),
            vec![2.0; s.m.numel()]
        );
    }
    assert!(opt.slot("weight", "momentum").is_none() && opt.slot("head", "m").is_none());
    let sgd = Method::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
    };
    let (_, opt) = trained(sgd, false, 1);
    assert_eq!(opt.slot("weight", "momentum").unwrap().shape(), &[3, 4]);
    assert!(Optimizer::new(sgd, vec![])
        .unwrap()
        .with_element_steps()
        .is_err());
}

#[device_test]
fn reset_units_zeroes_exactly_the_chosen_rows_and_columns() {
    let (mut layer, mut opt) = trained(ADAM, true, 3);
    let before: Vec<(String, Vec<f32>)> = ["weight", "bias"]
        .iter()
        .flat_map(|p| {
            let state = opt.state(p).unwrap();
            let slots = state.slots().into_iter();
            slots
                .map(|(slot, t)| (format!("{p}.{slot}"), values(t)))
                .collect::<Vec<_>>()
        })
        .collect();
    // Units 0 and 2 of the layer: columns of W [3, 4] and entries of b [4].
    opt.reset_units("weight", 1, &[0, 2]).unwrap();
    opt.reset_units("bias", 0, &[2, 0]).unwrap();
    for (name, old) in &before {
        let (param, slot) = name.split_once('.').unwrap();
        let new = values(opt.slot(param, slot).unwrap());
        for (i, (&o, &n)) in old.iter().zip(&new).enumerate() {
            let unit = i % 4;
            let want = if unit == 0 || unit == 2 { 0.0 } else { o };
            assert_eq!(n, want, "{name}[{i}]");
        }
        assert!(old.iter().all(|&v| v != 0.0), "{name} was non-zero before");
    }
    // Reset elements restart their bias correction: one more step counts 1 there, 4 elsewhere.
    let grads = layer_and_grads(&layer, 9);
    opt.step(&mut layer, &grads, 0.1, 1.0).unwrap();
    let counts = values(opt.slot("weight", "steps").unwrap());
    let want: Vec<f32> = (0..12)
        .map(|i| if i % 4 == 0 || i % 4 == 2 { 1.0 } else { 4.0 })
        .collect();
    assert_eq!(counts, want);
    // SGD momentum rows.
    let sgd = Method::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
    };
    let (_, mut opt) = trained(sgd, false, 2);
    let old = values(opt.slot("weight", "momentum").unwrap());
    opt.reset_units("weight", 0, &[1]).unwrap();
    let new = values(opt.slot("weight", "momentum").unwrap());
    for (i, (o, n)) in old.iter().zip(&new).enumerate() {
        assert_eq!(*n, if i / 4 == 1 { 0.0 } else { *o }, "momentum[{i}]");
    }
    // Errors name the parameter; no state yet means nothing to reset.
    let e = opt.reset_units("weight", 2, &[0]).unwrap_err().to_string();
    assert!(
        e.contains("reset_units") && e.contains("`weight`") && e.contains("axis 2"),
        "{e}"
    );
    let e = opt.reset_units("weight", 1, &[4]).unwrap_err().to_string();
    assert!(e.contains("index 4") && e.contains("below 4"), "{e}");
    opt.reset_units("not.a.param", 0, &[0]).unwrap();
}

#[device_test]
fn optimizer_state_round_trips_through_a_checkpoint_by_name() {
    let dir = std::env::temp_dir().join(format!("dynlab-optim-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("optim.safetensors");
    let (mut layer, opt) = trained(ADAM, true, 3);
    opt.save_state().unwrap().save(&path).unwrap();
    let record = Record::load(&path, Some(&device())).unwrap();
    let names: Vec<&String> = record.tensors.keys().collect();
    assert_eq!(
        names,
        [
            "bias.m",
            "bias.steps",
            "bias.v",
            "weight.m",
            "weight.steps",
            "weight.v"
        ]
    );
    let mut restored = Optimizer::new(ADAM, ParamGroup::standard(0.01))
        .unwrap()
        .with_element_steps()
        .unwrap();
    restored.load_state(&record).unwrap();
    assert_eq!(restored.steps(), 3);
    for (name, state) in opt.states() {
        let other = restored.state(name).unwrap();
        assert_eq!(state.step(), other.step(), "{name}");
        for ((slot, t), (slot2, t2)) in state.slots().into_iter().zip(other.slots()) {
            assert_eq!((slot, values(t)), (slot2, values(t2)), "{name}");
        }
    }
    // The restored optimizer continues exactly as the original.
    let mut layer2 = layer.clone();
    let mut opt = opt;
    let grads = layer_and_grads(&layer, 4);
    opt.step(&mut layer, &grads, 0.1, 1.0).unwrap();
    let grads = layer_and_grads(&layer2, 4);
    restored.step(&mut layer2, &grads, 0.1, 1.0).unwrap();
    assert_eq!(values(layer.weight.value()), values(layer2.weight.value()));
    // State of another kind is an error that names what it expected.
    let mut plain = Optimizer::new(ADAM, vec![]).unwrap();
    let e = plain.load_state(&record).unwrap_err().to_string();
    assert!(e.contains("per-element steps"), "{e}");
    let sgd = Method::Sgd {
        momentum: 0.5,
        dampening: 0.0,
        nesterov: false,
    };
    let e = Optimizer::new(sgd, vec![])
        .unwrap()
        .load_state(&record)
        .unwrap_err()
        .to_string();
    assert!(e.contains("bias.m"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
