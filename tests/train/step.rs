//! The training step: classification and regression through one driver, a weighted two-term
//! objective whose terms are logged, hooks that see the parameters before and after the optimizer
//! step, device metrics read once per interval, batch sources, and divergence reported as an error.

use dynlab::autodiff::Var;
use dynlab::models::{Activation, Ctx, Init, Linear, Mlp, Module};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{
    Batch, BatchSource, Dataset, Forward, Hook, Loader, Loss, Metrics, Mse, Objective, StepView,
    Trainer, WeightedSum, FOLD_AT,
};
use dynlab::{Result, Rng, Tensor};
use dynlab_test_support::{device, device_test, private_device, HostRng};
use std::cell::RefCell;
use std::rc::Rc;

fn sgd(lr_momentum: f32) -> Optimizer {
    let method = Method::Sgd {
        momentum: lr_momentum,
        dampening: 0.0,
        nesterov: false,
    };
    Optimizer::new(method, ParamGroup::all(0.0)).unwrap()
}

/// `y = x A` for a fixed `A [4, 2]`, 64 rows.
fn regression_data() -> Dataset {
    let mut host = HostRng::new(3);
    let x = host.vec(64 * 4, -1.0, 1.0);
    let a = [0.5f32, -1.0, 2.0, 0.0, -0.5, 1.5, 1.0, 0.25];
    let xs = &x;
    let y: Vec<f32> = (0..64 * 2)
        .map(|i| (0..4).map(|k| xs[i / 2 * 4 + k] * a[k * 2 + i % 2]).sum())
        .collect();
    let x = Tensor::from_vec(x, &[64, 4], &device()).unwrap();
    Dataset::new(x, Tensor::from_vec(y, &[64, 2], &device()).unwrap()).unwrap()
}

fn linear_model() -> Linear {
    Linear::new(4, 2, true, Init::XavierUniform, &mut Rng::new(4), &device()).unwrap()
}

#[device_test]
fn mse_regression_trains_through_the_driver() {
    let data = regression_data();
    let mut loader = Loader::new(data.clone(), Some(16)).unwrap();
    assert_eq!(loader.batches_per_pass(), 4);
    let mut trainer = Trainer::new(linear_model(), sgd(0.9), LrSchedule::constant(0.1), Mse);
    let mut rng = Rng::new(5);
    let mut epoch = || {
        trainer.epoch(&mut loader, &mut rng).unwrap();
        trainer.log().unwrap()
    };
    let first = epoch();
    let last = (0..40).map(|_| epoch()).last().unwrap();
    assert!(first["loss"] > 0.1, "{first:?}");
    assert!(last["loss"] < 1e-4, "{last:?}");
    assert_eq!(trainer.optimizer.steps(), 41 * 4);
    let eval = trainer.evaluate(&data.batch()).unwrap();
    assert!(eval["loss"] < 1e-4 && !eval.contains_key("acc"), "{eval:?}");
    // The logged loss is the row-weighted mean over the interval's batches.
    assert_eq!(last["lr"], 0.1);
    assert!(last["grad_norm"].is_finite());
}

/// `mean(output²)`: a second term for the weighted objective.
struct OutputEnergy;

impl Objective for OutputEnergy {
    fn loss(&self, forward: &Forward, _targets: &Tensor) -> Result<Loss> {
        Ok(Loss::new(forward.output.square()?.mean_all()?))
    }
}

#[device_test]
fn a_weighted_two_term_objective_logs_each_term() {
    let data = regression_data();
    let objective = WeightedSum::new()
        .term("mse", 1.0, Mse)
        .unwrap()
        .term("energy", 0.5, OutputEnergy)
        .unwrap();
    let mut trainer = Trainer::new(
        linear_model(),
        sgd(0.0),
        LrSchedule::constant(0.05),
        objective,
    );
    let batch = data.batch();
    trainer.step(&batch, &mut Rng::new(0)).unwrap();
    let logged = trainer.log().unwrap();
    let (mse, energy) = (logged["mse"], logged["energy"]);
    assert!(
        (logged["loss"] - (mse + 0.5 * energy)).abs() < 1e-5 * logged["loss"],
        "{logged:?}"
    );
    // The gradient is that of the weighted sum: compare with the two terms' gradients.
    let model = linear_model();
    let out = |m: &Linear| m.forward(&Var::constant(batch.inputs.clone()), &mut Ctx::train());
    let y = out(&model).unwrap();
    let targets = Var::constant(batch.targets.clone());
    let total = y
        .sub(&targets)
        .unwrap()
        .square()
        .unwrap()
        .mean_all()
        .unwrap()
        .add(
            &y.square()
                .unwrap()
                .mean_all()
                .unwrap()
                .mul_scalar(0.5)
                .unwrap(),
        )
        .unwrap();
    let grads = total.backward().unwrap();
    let g = grads
        .tensor(model.weight.var())
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let w0 = model.weight.value().to_vec::<f32>().unwrap();
    let w1 = trainer.model.weight.value().to_vec::<f32>().unwrap();
    for i in 0..w0.len() {
        let want = w0[i] - 0.05 * g[i];
        assert!((w1[i] - want).abs() < 1e-6, "w[{i}] {} vs {want}", w1[i]);
    }
    assert!(WeightedSum::new()
        .term("a", 1.0, Mse)
        .unwrap()
        .term("a", 1.0, Mse)
        .is_err());
    assert!(WeightedSum::new().term("a", f32::NAN, Mse).is_err());
}

/// Records the first weight element after backward and after the step.
struct Spy {
    seen: Rc<RefCell<Vec<(&'static str, f32)>>>,
}

impl Hook for Spy {
    fn after_backward(&mut self, step: &mut StepView) -> Result<()> {
        let w = step.model.params()[0].1.value().to_vec::<f32>()?[0];
        step.metrics
            .add("spy", &Tensor::scalar(1.0, &device())?, 1.0)?;
        self.seen.borrow_mut().push(("backward", w));
        Ok(())
    }

    fn after_step(&mut self, step: &mut StepView) -> Result<()> {
        let w = step.model.params()[0].1.value().to_vec::<f32>()?[0];
        self.seen.borrow_mut().push(("step", w));
        Ok(())
    }
}

#[device_test]
fn hooks_see_the_parameters_before_and_after_the_step() {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut trainer = Trainer::new(linear_model(), sgd(0.0), LrSchedule::constant(0.5), Mse)
        .with_hook(Spy { seen: seen.clone() });
    let data = regression_data();
    let w0 = trainer.model.weight.value().to_vec::<f32>().unwrap()[0];
    trainer.step(&data.batch(), &mut Rng::new(0)).unwrap();
    let w1 = trainer.model.weight.value().to_vec::<f32>().unwrap()[0];
    assert_ne!(w0, w1);
    assert_eq!(*seen.borrow(), [("backward", w0), ("step", w1)]);
    assert_eq!(trainer.log().unwrap()["spy"], 1.0);
}

#[device_test]
fn metrics_are_weighted_means_read_in_one_go() {
    let d = device();
    let mut m = Metrics::default();
    m.add("loss", &Tensor::scalar(2.0, &d).unwrap(), 3.0)
        .unwrap();
    m.add("loss", &Tensor::scalar(5.0, &d).unwrap(), 1.0)
        .unwrap();
    m.set("norm", &Tensor::scalar(7.0, &d).unwrap()).unwrap();
    m.set_host("lr", 0.25);
    let v = m.read().unwrap();
    assert_eq!(
        (v["loss"], v["norm"], v["lr"]),
        ((2.0 * 3.0 + 5.0) / 4.0, 7.0, 0.25)
    );
    assert!(m.is_empty() && m.read().unwrap().is_empty());
    let e = m
        .add("x", &Tensor::zeros(&[2], &d).unwrap(), 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`x`") && e.contains("scalar"), "{e}");
}

/// An interval longer than [`FOLD_AT`] values (folded into host sums along the way) reads the same
/// f32 sums, in the same order, as a plain host loop over every value, for each replica.
#[device_test]
fn long_intervals_fold_into_the_same_weighted_means() {
    let d = private_device(); // its own counters: other tests' read-backs do not count
    let (replicas, count) = (3, 2 * FOLD_AT + 37);
    let mut rng = HostRng::new(5);
    let mut m = Metrics::for_replicas(replicas);
    let mut sums = vec![0.0f32; replicas];
    let mut total = 0.0f32;
    let before = d.stats();
    for _ in 0..count {
        let x = rng.vec(replicas, -2.0, 2.0);
        let w = rng.uniform(1.0, 2.0);
        m.add(
            "loss",
            &Tensor::from_vec(x.clone(), &[replicas], &d).unwrap(),
            w,
        )
        .unwrap();
        for (s, x) in sums.iter_mut().zip(&x) {
            *s += x * w;
        }
        total += w;
    }
    let folds = d.stats().since(&before).syncs;
    assert_eq!(folds, (count / FOLD_AT) as u64, "one read-back per fold");
    let read = m.read_replicas().unwrap();
    for (r, values) in read.iter().enumerate() {
        assert_eq!(values["loss"], sums[r] / total, "replica {r}");
    }
    assert!(m.is_empty());
}

#[device_test]
fn loaders_cover_the_data_once_per_pass() {
    let n = 10;
    let x = Tensor::from_vec((0..n).map(|v| v as f32).collect(), &[n, 1], &device()).unwrap();
    let y = Tensor::from_vec((0..n as i32).collect(), &[n], &device()).unwrap();
    let data = Dataset::new(x, y).unwrap();
    let mut rng = Rng::new(1);
    let mut loader = Loader::new(data.clone(), Some(4)).unwrap();
    let mut passes = Vec::new();
    for _ in 0..2 {
        let mut rows = Vec::new();
        let mut sizes = Vec::new();
        while let Some(b) = loader.next_batch(&mut rng).unwrap() {
            sizes.push(b.rows());
            let inputs = b.inputs.to_vec::<f32>().unwrap();
            let targets = b.targets.to_vec::<i32>().unwrap();
            assert!(inputs.iter().zip(&targets).all(|(a, b)| *a as i32 == *b));
            rows.extend(targets);
        }
        assert_eq!(sizes, [4, 4, 2]);
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(sorted, (0..n as i32).collect::<Vec<_>>());
        passes.push(rows);
    }
    assert_ne!(passes[0], passes[1], "each pass draws a new order");
    let mut full = Loader::new(data, None).unwrap();
    let b: Batch = full.next_batch(&mut rng).unwrap().unwrap();
    assert_eq!(b.rows(), n);
    assert!(full.next_batch(&mut rng).unwrap().is_none());
    let bad = Dataset::new(
        Tensor::zeros(&[3, 2], &device()).unwrap(),
        Tensor::zeros(&[4], &device()).unwrap(),
    );
    assert!(bad.unwrap_err().to_string().contains("Dataset::new"));
}

#[device_test]
fn divergence_is_an_error_naming_the_step() {
    let mlp = Mlp::new(
        &[4, 8, 2],
        Activation::Relu,
        Init::KaimingNormal,
        true,
        &mut Rng::new(2),
        &device(),
    )
    .unwrap();
    let mut trainer = Trainer::new(mlp, sgd(0.0), LrSchedule::constant(1e30), Mse);
    let data = regression_data();
    let mut rng = Rng::new(0);
    for _ in 0..3 {
        trainer.step(&data.batch(), &mut rng).unwrap();
    }
    let e = trainer.log().unwrap_err().to_string();
    assert!(e.contains("diverged") && e.contains("after step 3"), "{e}");
}

/// `λ ‖W‖²` on the steps that are multiples of `every`.
struct WeightPenalty {
    lambda: f32,
    every: u64,
}

impl dynlab::train::Regulariser for WeightPenalty {
    fn name(&self) -> &str {
        "weight_penalty"
    }

    fn term(&mut self, model: &dyn Module, step: u64) -> Result<Option<Var>> {
        if !step.is_multiple_of(self.every) {
            return Ok(None);
        }
        let w = model.params()[0].1.var().clone();
        Ok(Some(w.square()?.sum_all()?.mul_scalar(self.lambda)?))
    }
}

#[device_test]
fn regularisers_join_the_loss_on_their_steps() {
    let data = regression_data();
    let batch = data.batch();
    let (x, y) = (
        batch.inputs.to_vec::<f32>().unwrap(),
        batch.targets.to_vec::<f32>().unwrap(),
    );
    let model = linear_model();
    let mut w: Vec<f64> = model
        .weight
        .value()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let mut b = [0.0f64; 2];
    let (lr, lambda) = (0.1, 0.3);
    let penalty = WeightPenalty {
        lambda: lambda as f32,
        every: 2,
    };
    let mut trainer = Trainer::new(model, sgd(0.0), LrSchedule::constant(lr as f32), Mse)
        .with_regulariser(penalty);
    let mut rng = Rng::new(1);
    for step in 1..=4u64 {
        trainer.step(&batch, &mut rng).unwrap();
        // Host SGD on mean((xW + b − y)²) (+ λ‖W‖² on even steps).
        let (mut gw, mut gb) = (vec![0.0; 8], vec![0.0; 2]);
        for r in 0..64 {
            for c in 0..2 {
                let pred: f64 = (0..4)
                    .map(|k| x[r * 4 + k] as f64 * w[k * 2 + c])
                    .sum::<f64>()
                    + b[c];
                let d = 2.0 * (pred - y[r * 2 + c] as f64) / 128.0;
                gb[c] += d;
                for k in 0..4 {
                    gw[k * 2 + c] += d * x[r * 4 + k] as f64;
                }
            }
        }
        if step % 2 == 0 {
            for (g, wv) in gw.iter_mut().zip(&w) {
                *g += 2.0 * lambda * wv;
            }
        }
        for (wv, g) in w.iter_mut().zip(&gw) {
            *wv -= lr * g;
        }
        for (bv, g) in b.iter_mut().zip(&gb) {
            *bv -= lr * g;
        }
        let got = trainer.model.weight.value().to_vec::<f32>().unwrap();
        for (g, want) in got.iter().zip(&w) {
            assert!(
                (*g as f64 - want).abs() < 1e-5,
                "step {step}: {g} vs {want}"
            );
        }
    }
    let log = trainer.log().unwrap();
    assert!(log["weight_penalty"] > 0.0, "{log:?}");
}
