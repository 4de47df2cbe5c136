use dynlab::algos::hybrid::{
    Action, BatchStream, HybridConfig, HybridTask, HybridTrainer, Signal, TrainerTask,
};
use dynlab::models::{Activation, Init, Linear, Mlp};
use dynlab::optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab::train::{Batch, Mse, Trainer};
use dynlab::{Rng, Tensor};
use dynlab_test_support::{device, HostRng};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The task's whole saved state (parameters and optimizer) on the host, as bits.
fn state_bits<T: HybridTask>(task: &T) -> BTreeMap<String, Vec<u32>> {
    (task.save().unwrap().tensors.into_iter())
        .map(|(k, t)| {
            let bits = t.to_vec::<f32>().unwrap().into_iter().map(f32::to_bits);
            (k, bits.collect())
        })
        .collect()
}

/// What a batch stream should deliver next.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    None,
    NanTargets,
    ScaledTargets,
}

/// A tanh MLP 4 → 8 → 1 with Adam on a fixed regression batch of 16 rows; `fault` corrupts the
/// batches while it is set.
fn regression_task(fault: Rc<Cell<Fault>>) -> TrainerTask<Mlp> {
    let d = device();
    let mut rng = Rng::new(5);
    let model = Mlp::new(
        &[4, 8, 1],
        Activation::Tanh,
        Init::XavierUniform,
        true,
        &mut rng,
        &d,
    )
    .unwrap();
    let mut host = HostRng::new(6);
    let x = host.vec(16 * 4, -1.0, 1.0);
    let y: Vec<f32> = (0..16)
        .map(|r| (x[4 * r] - 0.5 * x[4 * r + 1]).sin())
        .collect();
    let batch = Batch {
        inputs: Tensor::from_vec(x, &[16, 4], &d).unwrap(),
        targets: Tensor::from_vec(y.clone(), &[16, 1], &d).unwrap(),
    };
    let method = Method::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        decoupled: false,
    };
    let optimizer = Optimizer::new(method, ParamGroup::standard(0.0)).unwrap();
    let trainer = Trainer::new(model, optimizer, LrSchedule::constant(0.01), Mse);
    let clean = batch.clone();
    let stream: BatchStream = Box::new(move |_, _| {
        let targets = match fault.get() {
            Fault::None => return Ok(clean.clone()),
            Fault::NanTargets => y.iter().map(|v| v * f32::NAN).collect(),
            Fault::ScaledTargets => y.iter().map(|v| 30.0 * v + 5.0).collect(),
        };
        Ok(Batch {
            inputs: clean.inputs.clone(),
            targets: Tensor::from_vec(targets, &[16, 1], clean.inputs.device())?,
        })
    });
    TrainerTask::new(trainer, stream, vec![("train".into(), batch)], Rng::new(7))
}

/// Full steps only (the threshold is never reached), a save every 5 healthy full steps.
fn full_only() -> HybridConfig {
    HybridConfig {
        warmup_steps: 8,
        snapshot_every: 5,
        confidence_threshold: 1.0,
        ..HybridConfig::default()
    }
}

/// Parameter bits by name, keyed by trajectory step.
type StatesByStep = BTreeMap<u64, BTreeMap<String, Vec<u32>>>;

/// Runs `steps` steps keeping the state before each (by trajectory step); `inject` may change the
/// task or the fault before a step. Returns the logs and the states.
fn run_with_states(
    trainer: &mut HybridTrainer<TrainerTask<Mlp>>,
    steps: usize,
    mut inject: impl FnMut(usize, &mut HybridTrainer<TrainerTask<Mlp>>),
) -> (Vec<dynlab::algos::hybrid::StepLog>, StatesByStep) {
    let mut states = BTreeMap::new();
    let mut logs = Vec::new();
    for k in 0..steps {
        inject(k, trainer);
        states
            .entry(trainer.step_count())
            .or_insert_with(|| state_bits(trainer.task()));
        logs.push(trainer.step().unwrap());
    }
    (logs, states)
}

/// After a roll-back the state equals, bit for bit, the state before the step it returned to.
fn assert_restored(
    trainer: &HybridTrainer<TrainerTask<Mlp>>,
    states: &BTreeMap<u64, BTreeMap<String, Vec<u32>>>,
) {
    let target = trainer.step_count();
    let now = state_bits(trainer.task());
    assert!(
        now.keys().any(|k| k.starts_with("optim.")),
        "{:?}",
        now.keys()
    );
    assert_eq!(
        &now, &states[&target],
        "the state restored at step {target}"
    );
}

#[test]
fn a_nan_gradient_rolls_back_to_the_saved_state_bit_for_bit() {
    let fault = Rc::new(Cell::new(Fault::None));
    let task = regression_task(fault.clone());
    let mut trainer = HybridTrainer::new(task, full_only(), 100, 1).unwrap();
    let (logs, states) = run_with_states(&mut trainer, 14, |k, _| {
        fault.set(if k == 12 {
            Fault::NanTargets
        } else {
            Fault::None
        });
    });
    let bad = &logs[12];
    assert_eq!(
        (bad.signal, bad.rolled_back),
        (Some(Signal::NonFinite), true)
    );
    assert_eq!(trainer.counters().rollbacks, 1);
    // Saves at 0, 5 and 10 (every 5 healthy full steps): the fault at 12 returns to 10.
    assert_eq!(logs[12].step, 10);
    let mut check = HybridTrainer::new(
        regression_task(Rc::new(Cell::new(Fault::None))),
        full_only(),
        100,
        1,
    )
    .unwrap();
    let (_, clean_states) = run_with_states(&mut check, 11, |_, _| {});
    assert_eq!(states[&10], clean_states[&10], "runs are deterministic");
    // The restored state: rerun the trainer to the roll-back and compare.
    let fault2 = Rc::new(Cell::new(Fault::None));
    let mut again =
        HybridTrainer::new(regression_task(fault2.clone()), full_only(), 100, 1).unwrap();
    let (_, states2) = run_with_states(&mut again, 13, |k, _| {
        fault2.set(if k == 12 {
            Fault::NanTargets
        } else {
            Fault::None
        });
    });
    assert_restored(&again, &states2);
    assert!(logs[13].loss.is_finite() && logs[13].action == Action::Full);
}

#[test]
fn a_learning_rate_spike_rolls_back_past_the_bad_update() {
    let task = regression_task(Rc::new(Cell::new(Fault::None)));
    let mut trainer = HybridTrainer::new(task, full_only(), 100, 2).unwrap();
    // The spike at step 14 is only seen in step 15's loss; step 15 is a save point (15 healthy
    // full steps), so the target must be the save before it, 10.
    let (logs, states) = run_with_states(&mut trainer, 16, |k, t| {
        let lr = if k == 14 { 200.0 } else { 0.01 };
        t.task_mut().trainer.schedule = LrSchedule::constant(lr);
    });
    let bad = &logs[15];
    assert!(bad.rolled_back, "{bad:?}");
    assert!(
        matches!(bad.signal, Some(Signal::LossSpike | Signal::GradExplode)),
        "{bad:?}"
    );
    assert_eq!(trainer.step_count(), 10);
    assert_restored(&trainer, &states);
}

#[test]
fn a_loss_jump_rolls_back_and_the_replay_goes_on() {
    let fault = Rc::new(Cell::new(Fault::None));
    let task = regression_task(fault.clone());
    let mut trainer = HybridTrainer::new(task, full_only(), 100, 3).unwrap();
    let (logs, states) = run_with_states(&mut trainer, 13, |k, _| {
        fault.set(if k == 12 {
            Fault::ScaledTargets
        } else {
            Fault::None
        });
    });
    assert_eq!(
        (logs[12].signal, logs[12].rolled_back),
        (Some(Signal::LossSpike), true)
    );
    assert_restored(&trainer, &states);
    fault.set(Fault::None);
    // The replay from 10 reaches step 20 without another roll-back.
    while trainer.step_count() < 20 {
        let log = trainer.step().unwrap();
        assert!(!log.rolled_back && log.loss.is_finite(), "{log:?}");
    }
    assert_eq!(trainer.counters().backward_passes, 13 + 10);
}

/// `L(w) = Σ λ_i w_i²` as a bias-free `Linear n → 1` on inputs `diag(√(n λ_i))` with zero targets
/// (the mean squared error over n rows), trained by plain SGD.
fn quadratic_bowl(lambdas: &[f32], lr: f32) -> TrainerTask<Linear> {
    let d = device();
    let n = lambdas.len();
    let mut rng = Rng::new(9);
    let mut model = Linear::new(n, 1, false, Init::XavierUniform, &mut rng, &d).unwrap();
    model
        .weight
        .set(Tensor::from_vec(vec![1.0f32; n], &[n, 1], &d).unwrap())
        .unwrap();
    let mut x = vec![0.0f32; n * n];
    for (i, l) in lambdas.iter().enumerate() {
        x[i * n + i] = (n as f32 * l).sqrt();
    }
    let batch = Batch {
        inputs: Tensor::from_vec(x, &[n, n], &d).unwrap(),
        targets: Tensor::zeros(&[n, 1], &d).unwrap(),
    };
    let method = Method::Sgd {
        momentum: 0.0,
        dampening: 0.0,
        nesterov: false,
    };
    let optimizer = Optimizer::new(method, ParamGroup::standard(0.0)).unwrap();
    let trainer = Trainer::new(model, optimizer, LrSchedule::constant(lr), Mse);
    let clean = batch.clone();
    let stream: BatchStream = Box::new(move |_, _| Ok(clean.clone()));
    TrainerTask::new(trainer, stream, vec![("train".into(), batch)], Rng::new(10))
}

/// On the quadratic bowl with horizons of 4 and 8 steps, the predicted steps change the weights,
/// none diverges, and their losses follow the predicted trajectory: relative error at most 10%
/// on any step and 4% on average. (The trajectory is extrapolated along the recent direction, so
/// the error grows with the distance from the last real step; at 16 steps it reaches ~20%.)
#[test]
fn predicted_steps_follow_the_predicted_loss_on_a_quadratic_bowl() {
    let lambdas: Vec<f32> = (0..12).map(|i| 0.2 + 0.8 * i as f32 / 11.0).collect();
    let task = quadratic_bowl(&lambdas, 0.1);
    let config = HybridConfig {
        warmup_steps: 12,
        min_full_steps: 6,
        correction_interval: 0,
        horizons: vec![4, 8],
        ..HybridConfig::default()
    };
    let mut trainer = HybridTrainer::new(task, config, 120, 4).unwrap();
    let weights = |t: &HybridTrainer<TrainerTask<Linear>>| {
        t.task()
            .trainer
            .model
            .weight
            .value()
            .to_vec::<f32>()
            .unwrap()
    };
    let (mut worst, mut total): (f64, f64) = (0.0, 0.0);
    let mut checked = 0;
    let mut changed = 0;
    while trainer.step_count() < 120 {
        let before = weights(&trainer);
        let log = trainer.step().unwrap();
        if log.action != Action::Predicted {
            continue;
        }
        assert!(!log.rolled_back, "{log:?}");
        let after = weights(&trainer);
        if before.iter().zip(&after).any(|(a, b)| a != b) {
            changed += 1;
        }
        if let Some(p) = log.predicted_loss {
            let error = (log.loss - p).abs() / p;
            worst = worst.max(error);
            total += error;
            checked += 1;
        }
    }
    let c = trainer.counters().clone();
    assert!(c.predicted_steps >= 20, "{c:?}");
    assert_eq!(
        changed, c.predicted_steps,
        "every predicted step changes the weights"
    );
    let mean = total / checked.max(1) as f64;
    assert!(
        checked >= 10 && worst <= 0.1 && mean <= 0.04,
        "{checked} checks, relative error: worst {worst}, mean {mean}"
    );
    let final_loss = trainer.task_mut().forward_loss().unwrap();
    let full_only = {
        let mut t = quadratic_bowl(&lambdas, 0.1);
        for _ in 0..120 {
            t.full_step().unwrap();
        }
        t.forward_loss().unwrap()
    };
    eprintln!("hybrid {final_loss:.3e} vs full {full_only:.3e}, {c:?}, error: worst {worst:.4}, mean {mean:.4}");
    assert!(final_loss < 1e-2 * lambdas.iter().sum::<f32>() as f64);
}

/// Each parameter's values on the host, in the task's order.
fn host_values<T: HybridTask>(task: &T) -> Vec<Vec<f64>> {
    (task.parameters().iter())
        .map(|(_, v)| {
            v.to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f64::from)
                .collect()
        })
        .collect()
}

/// The predicted updates against a host implementation of the rule in the trainer's docs:
/// `Δθ̂_p(k) = d_p · ‖Δθ_g‖/‖d_g‖ · exp(k·clamp(ρ̂_g))`, `d` the EMA of the real updates, `Δθ` the
/// last real update, `k` the predicted steps since it (roll-backs keep `d` and `Δθ`).
#[test]
fn predicted_updates_follow_the_host_rule() {
    let task = regression_task(Rc::new(Cell::new(Fault::None)));
    let config = HybridConfig {
        warmup_steps: 8,
        min_full_steps: 4,
        correction_interval: 3,
        horizons: vec![6],
        confidence_threshold: 0.05,
        ..HybridConfig::default()
    };
    let (beta, clamp) = (config.direction_beta, config.max_log_ratio);
    let mut trainer = HybridTrainer::new(task, config, 150, 8).unwrap();
    let groups = trainer.task().groups();
    let group_of: Vec<usize> = (trainer.task().parameters().iter())
        .map(|(n, _)| groups.iter().position(|(_, ps)| ps.contains(n)).unwrap())
        .collect();
    let group_norm = |v: &[Vec<f64>], g: usize| {
        (v.iter().zip(&group_of))
            .filter(|(_, &h)| h == g)
            .map(|(p, _)| p.iter().map(|x| x * x).sum::<f64>())
            .sum::<f64>()
            .sqrt()
    };
    let (mut ema, mut last): (Option<Vec<Vec<f64>>>, Vec<Vec<f64>>) = (None, Vec::new());
    let (mut since_real, mut checked) = (0u64, 0);
    while trainer.step_count() < 150 {
        let before = host_values(trainer.task());
        let rho = trainer.prediction().map(|p| p.mean.clone());
        let log = trainer.step().unwrap();
        if log.rolled_back {
            // The saved state is back; the directions and the last real update are kept.
            since_real = 0;
            continue;
        }
        let delta: Vec<Vec<f64>> = (host_values(trainer.task()).iter().zip(&before))
            .map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect())
            .collect();
        if log.action != Action::Predicted {
            ema = Some(match ema {
                None => delta.clone(),
                Some(d) => (d.iter().zip(&delta))
                    .map(|(d, u)| {
                        d.iter()
                            .zip(u)
                            .map(|(d, u)| beta * d + (1.0 - beta) * u)
                            .collect()
                    })
                    .collect(),
            });
            last = delta;
            since_real = 0;
            continue;
        }
        since_real += 1;
        let (d, rho) = (ema.as_ref().unwrap(), rho.unwrap());
        for g in 0..groups.len() {
            let k = since_real as f64;
            let scale = group_norm(&last, g) / group_norm(d, g)
                * (k * rho[1 + g].clamp(-clamp, clamp)).exp();
            let members = (0..d.len()).filter(|&p| group_of[p] == g);
            for p in members {
                let largest = d[p].iter().fold(0.0f64, |m, x| m.max(x.abs() * scale));
                for (i, (&got, &dp)) in delta[p].iter().zip(&d[p]).enumerate() {
                    let want = dp * scale;
                    let tol = 1e-4 * largest + 2e-7 * before[p][i].abs();
                    assert!(
                        (got - want).abs() <= tol,
                        "step {}, parameter {p}[{i}]: {got} vs {want}",
                        log.step
                    );
                }
            }
        }
        checked += 1;
    }
    assert!(checked >= 10, "{checked} predicted steps checked");
}
