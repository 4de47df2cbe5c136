//! Stacked replicas train exactly as the separate runs they stand for: per-replica seeds, learning
//! rates and weight decays, each replica clipped by its own norm, shared or per-replica batches,
//! for MLPs, TMS and a model of Embedding + LayerNorm + Linear; and what cannot be stacked is an
//! error.

use dynlab::models::{
    Activation, ConvNet, ConvNetShape, Ctx, Embedding, Init, LayerNorm, Linear, Mlp, Module, Parts,
    PartsMut, Replicas, Tms,
};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup, ReplicaScale};
use dynlab::train::{Batch, CrossEntropy, Dataset, FeatureNorm, Loader, Mse, Trainer, WeightNorm};
use dynlab::{Device, Rng, Tensor, Var};
use dynlab_test_support::{device, device_test, HostRng};
use std::collections::BTreeMap;

/// Largest `|a − b| / max(1, |b|)` over two models' parameters (same paths).
fn max_difference(a: &dyn Module, b: &dyn Module) -> f32 {
    let (pa, pb) = (a.params(), b.params());
    assert_eq!(pa.len(), pb.len());
    let mut worst = 0.0f32;
    for ((na, x), (nb, y)) in pa.iter().zip(&pb) {
        assert_eq!(na, nb);
        assert_eq!(x.value().shape(), y.value().shape(), "{na}");
        let (x, y) = (
            x.value().to_vec::<f32>().unwrap(),
            y.value().to_vec::<f32>().unwrap(),
        );
        for (u, v) in x.iter().zip(&y) {
            assert!(u.is_finite(), "{na}: {u}");
            worst = worst.max((u - v).abs() / v.abs().max(1.0));
        }
    }
    worst
}

/// The metrics of two logs agree to f32 rounding (sums run in other orders with replicas).
fn assert_logs_match(what: &str, got: &BTreeMap<String, f32>, want: &BTreeMap<String, f32>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}"
    );
    for (k, w) in want {
        let g = got[k];
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what} {k}: replica {g}, separate run {w}"
        );
    }
}

fn adamw() -> Method {
    Method::Adam {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-8,
        decoupled: true,
    }
}

/// AdamW at `lr`, decay `wd` on weights, clipping at 0.5; logs weight and feature norms.
fn mlp_trainer<M: Module>(model: M, lr: f32, wd: f32) -> Trainer<M> {
    let optimizer = Optimizer::new(adamw(), ParamGroup::standard(0.1 * wd)).unwrap();
    Trainer::new(
        model,
        optimizer,
        LrSchedule::constant(3e-2 * lr),
        CrossEntropy,
    )
    .with_clip_norm(Some(0.5))
    .with_hook(WeightNorm)
    .with_hook(FeatureNorm {
        tap: "features".into(),
        name: "feature_norm".into(),
    })
}

/// SGD with Nesterov momentum and decay, MSE.
fn tms_trainer<M: Module>(model: M) -> Trainer<M> {
    let sgd = Method::Sgd {
        momentum: 0.9,
        dampening: 0.0,
        nesterov: true,
    };
    let optimizer = Optimizer::new(sgd, ParamGroup::all(0.01)).unwrap();
    Trainer::new(model, optimizer, LrSchedule::constant(0.1), Mse)
}

/// Adam with L2 decay, cross-entropy.
fn tagger_trainer<M: Module>(model: M) -> Trainer<M> {
    let adam = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: false,
    };
    let optimizer = Optimizer::new(adam, ParamGroup::all(1e-3)).unwrap();
    Trainer::new(model, optimizer, LrSchedule::constant(1e-2), CrossEntropy)
}

/// Three MLPs of different seeds, learning rates and decays, trained with clipping on a shared
/// batch: each replica's parameters and logged metrics equal its own run's.
#[device_test]
fn mlp_replicas_equal_separate_runs() {
    let d = device();
    let mut host = HostRng::new(1);
    let x = Tensor::from_slice(&host.vec(24 * 6, -1.0, 1.0), &[24, 6], &d).unwrap();
    let labels: Vec<i32> = (0..24).map(|_| host.below(3) as i32).collect();
    let y = Tensor::from_slice(&labels, &[24], &d).unwrap();
    let data = Dataset::new(x, y).unwrap();
    let scales = [(1.0, 1.0), (0.5, 0.0), (2.0, 3.0)];
    let mlp = |seed: u64| {
        let mut rng = Rng::new(seed);
        let dims = [6, 16, 16, 3];
        Mlp::new(
            &dims,
            Activation::Gelu,
            Init::KaimingUniform,
            true,
            &mut rng,
            &d,
        )
        .unwrap()
    };
    let stacked = Replicas::stack((0..3).map(mlp).collect()).unwrap();
    let multipliers = scales
        .iter()
        .map(|&(lr, weight_decay)| ReplicaScale { lr, weight_decay })
        .collect();
    let mut together = mlp_trainer(stacked, 1.0, 1.0);
    together.optimizer = together
        .optimizer
        .clone()
        .with_replicas(multipliers)
        .unwrap();
    let mut loader = Loader::new(data.clone(), Some(8)).unwrap().with_replicas(3);
    let mut rng = Rng::new(9);
    together.epoch(&mut loader, &mut rng).unwrap();
    let logs = together.log_replicas().unwrap();
    assert_eq!(logs.len(), 3);

    for (r, &(lr, wd)) in scales.iter().enumerate() {
        let mut alone = mlp_trainer(mlp(r as u64), lr, wd);
        let mut loader = Loader::new(data.clone(), Some(8)).unwrap();
        let mut rng = Rng::new(9);
        alone.epoch(&mut loader, &mut rng).unwrap();
        let log = alone.log().unwrap();
        let replica = together.model.replica(r).unwrap();
        let diff = max_difference(&replica, &alone.model);
        assert!(diff <= 1e-6, "replica {r}: parameters differ by {diff:e}");
        assert_logs_match(&format!("replica {r}"), &logs[r], &log);
        assert!(logs[r]["loss"].is_finite() && logs[r]["grad_norm"] > 0.0);
    }
    assert!(
        together.log().is_err(),
        "log() of replicas names log_replicas"
    );
}

/// TMS replicas with SGD momentum on a different batch each (stacked along the replica axis).
#[device_test]
fn tms_replicas_on_their_own_batches_equal_separate_runs() {
    let d = device();
    let replicas = 4;
    let tms = |seed: u64| Tms::new(5, 2, &mut Rng::new(seed), &d).unwrap();
    let batch = |seed: u64| {
        let mut rng = Rng::new(100 + seed);
        let x = Tensor::rand_uniform(&[16, 5], 0.0, 1.0, &mut rng, &d).unwrap();
        Batch {
            inputs: x.clone(),
            targets: x,
        }
    };
    let stacked = Replicas::stack((0..replicas).map(tms).collect()).unwrap();
    let mut together = tms_trainer(stacked);
    let batches: Vec<Batch> = (0..replicas).map(batch).collect();
    let stack = |f: fn(&Batch) -> &Tensor| {
        Tensor::stack(&batches.iter().map(f).collect::<Vec<_>>(), 0).unwrap()
    };
    let joint = Batch {
        inputs: stack(|b| &b.inputs),
        targets: stack(|b| &b.targets),
    };
    let mut rng = Rng::new(0);
    for _ in 0..5 {
        together.step(&joint, &mut rng).unwrap();
    }
    let logs = together.log_replicas().unwrap();
    for r in 0..replicas {
        let mut alone = tms_trainer(tms(r));
        for _ in 0..5 {
            alone.step(&batches[r as usize], &mut rng).unwrap();
        }
        let replica = together.model.replica(r as usize).unwrap();
        let diff = max_difference(&replica, &alone.model);
        assert!(diff <= 1e-6, "replica {r}: parameters differ by {diff:e}");
        assert_logs_match(
            &format!("replica {r}"),
            &logs[r as usize],
            &alone.log().unwrap(),
        );
    }
}

/// Embedding → LayerNorm → Linear over token pairs.
#[derive(Clone, Debug)]
struct Tagger {
    embedding: Embedding,
    norm: LayerNorm,
    head: Linear,
}

impl Tagger {
    fn new(seed: u64, device: &Device) -> Tagger {
        let mut rng = Rng::new(seed);
        let mut norm = LayerNorm::new(4, 1e-5, device).unwrap();
        let gamma = Tensor::rand_uniform(&[4], 0.5, 1.5, &mut rng, device).unwrap();
        norm.affine.gamma.set(gamma).unwrap();
        Tagger {
            embedding: Embedding::new(7, 4, &mut rng, device).unwrap(),
            norm,
            head: Linear::new(4, 3, true, Init::KaimingUniform, &mut rng, device).unwrap(),
        }
    }
}

impl Module for Tagger {
    fn forward(&self, tokens: &Var, ctx: &mut Ctx) -> dynlab::Result<Var> {
        let e = ctx.call("embedding", &self.embedding, tokens)?;
        let h = ctx.call("norm", &self.norm, &e)?;
        ctx.call("head", &self.head, &h)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("embedding", &self.embedding)
            .child("norm", &self.norm)
            .child("head", &self.head)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("embedding", &mut self.embedding)
            .child("norm", &mut self.norm)
            .child("head", &mut self.head)
    }
}

/// Embedding, LayerNorm and Linear replicas: outputs, losses and Adam steps equal the separate
/// models'.
#[device_test]
fn embedding_and_layer_norm_replicas_equal_separate_models() {
    let d = device();
    let tokens: Vec<i32> = (0..10).map(|i| i * 3 % 7).collect();
    let labels: Vec<i32> = (0..10).map(|i| i % 3).collect();
    let batch = Batch {
        inputs: Tensor::from_slice(&tokens, &[10], &d).unwrap(),
        targets: Tensor::from_slice(&labels, &[10], &d).unwrap(),
    };
    let stacked = Replicas::stack(vec![Tagger::new(0, &d), Tagger::new(1, &d)]).unwrap();
    let mut together = tagger_trainer(stacked);
    let shared = batch.for_replicas(2).unwrap();
    let mut rng = Rng::new(0);
    let before = together.evaluate_replicas(&shared).unwrap();
    for _ in 0..3 {
        together.step(&shared, &mut rng).unwrap();
    }
    for (r, initial) in before.iter().enumerate() {
        let mut alone = tagger_trainer(Tagger::new(r as u64, &d));
        assert_logs_match("before training", initial, &alone.evaluate(&batch).unwrap());
        for _ in 0..3 {
            alone.step(&batch, &mut rng).unwrap();
        }
        let replica = together.model.replica(r).unwrap();
        let diff = max_difference(&replica, &alone.model);
        assert!(diff <= 1e-6, "replica {r}: parameters differ by {diff:e}");
    }
}

/// Models with layers that cannot run stacked, mismatched models and inputs without the replica
/// axis are errors that say so.
#[device_test]
fn what_cannot_be_stacked_is_an_error() {
    let d = device();
    let mut rng = Rng::new(0);
    let shape = ConvNetShape {
        channels: [1, 2, 2, 2],
        image: [24, 24],
        hidden: [4, 4],
        classes: 2,
    };
    let conv = ConvNet::new(shape, Activation::Relu, &mut rng, &d).unwrap();
    let err = Replicas::stack(vec![conv.clone(), conv])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Replicas::stack") && err.contains("replicable"),
        "{err}"
    );
    let a = Mlp::new(
        &[3, 4, 2],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &d,
    );
    let b = Mlp::new(
        &[3, 5, 2],
        Activation::Relu,
        Init::KaimingUniform,
        true,
        &mut rng,
        &d,
    );
    let err = Replicas::stack(vec![a.unwrap(), b.unwrap()])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Replicas::stack") && err.contains("[3, 5]"),
        "{err}"
    );
    assert!(Replicas::<Mlp>::stack(vec![]).is_err());

    let one = || {
        Mlp::new(
            &[3, 4, 2],
            Activation::Relu,
            Init::KaimingUniform,
            true,
            &mut Rng::new(1),
            &d,
        )
    };
    let stacked = Replicas::stack(vec![one().unwrap(), one().unwrap()]).unwrap();
    let x = Var::constant(Tensor::zeros(&[5, 3], &d).unwrap());
    let err = stacked
        .forward(&x, &mut Ctx::eval())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Replicas::forward") && err.contains("[5, 3]"),
        "{err}"
    );
    assert!(stacked.replica(2).is_err());
}
