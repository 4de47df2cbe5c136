//! The targets' data and training, as the reference's `train_tms.py` and `train_resid_mlp.py`:
//!
//! - features: each of `f` independently active with probability `p`, its value uniform on
//!   `[0, 1]` (TMS) or `[−1, 1]` (ResidMLP), else 0 — the reference's `at_least_zero_active`, so an
//!   all-zero example can occur;
//! - TMS: labels `x`, loss the mean squared error, `W ~ U(±1/√f)` and `b ~ U(±1/√h)` (or 0) as
//!   PyTorch's `nn.Linear`, trained tied (the reference shares one storage between `linear1` and
//!   `linear2`'s weights and so applies AdamW to it twice per step; dynlab trains the one tied
//!   weight once per step);
//! - ResidMLP: labels `y_i = x_i + ReLU(x_i)`, loss the mean squared error on the `f` outputs.

use super::config::TargetKind;
use dynlab_models::{Module, ResidMlp, Tms, TmsTarget};
use dynlab_optim::OptimPlan;
use dynlab_runtime::{Device, Result, Rng, Tensor};
use dynlab_train::{Batch, Mse, Trainer};
use std::time::Instant;

/// A batch of sparse features (see the module docs): `[batch, features]`, each entry active with
/// probability `p` and then uniform on `[low, 1]`.
pub fn sparse_features(
    batch: usize,
    features: usize,
    p: f32,
    low: f32,
    rng: &mut Rng,
    device: &Device,
) -> Result<Tensor> {
    let shape = [batch, features];
    let values = Tensor::rand_uniform(&shape, low, 1.0, rng, device)?;
    let active =
        Tensor::rand_uniform(&shape, 0.0, 1.0, rng, device)?.lt(&Tensor::scalar(p, device)?)?;
    values.mul(&active)
}

/// The lower end of a feature's value for the target.
pub fn feature_low(kind: &TargetKind) -> f32 {
    match kind {
        TargetKind::Tms { .. } => 0.0,
        TargetKind::ResidMlp { .. } => -1.0,
    }
}

/// The labels of a batch of features for the target.
pub fn labels(kind: &TargetKind, x: &Tensor) -> Result<Tensor> {
    match kind {
        TargetKind::Tms { .. } => Ok(x.clone()),
        TargetKind::ResidMlp { .. } => x.add(&x.relu()?),
    }
}

/// A trained target.
pub enum Target {
    /// TMS in its decomposable form.
    Tms(TmsTarget),
    /// The residual MLP.
    ResidMlp(Box<ResidMlp>),
}

/// How the target's training went.
#[derive(Clone, Copy, Debug)]
pub struct TargetTraining {
    /// Mean squared error over the last 100 steps (all of them when fewer).
    pub final_loss: f32,
    /// Steps per second.
    pub steps_per_second: f64,
}

/// A freshly initialised target of `kind` (the reference's initialisation).
pub fn init_target(kind: &TargetKind, rng: &mut Rng, device: &Device) -> Result<Target> {
    match kind {
        &TargetKind::Tms {
            features,
            hidden,
            identity_layers,
            bias_zero_init,
        } => {
            let tms = init_tms(features, hidden, bias_zero_init, rng, device)?;
            Ok(Target::Tms(TmsTarget::from_tms(&tms, identity_layers)?))
        }
        TargetKind::ResidMlp {
            features,
            d_embed,
            d_mlp,
        } => Ok(Target::ResidMlp(Box::new(ResidMlp::new(
            *features, *d_embed, d_mlp, rng, device,
        )?))),
    }
}

fn init_tms(
    features: usize,
    hidden: usize,
    bias_zero: bool,
    rng: &mut Rng,
    device: &Device,
) -> Result<Tms> {
    let mut tms = Tms::new(features, hidden, rng, device)?;
    let bound = 1.0 / (features as f32).sqrt();
    tms.weight.set(Tensor::rand_uniform(
        &[hidden, features],
        -bound,
        bound,
        rng,
        device,
    )?)?;
    if !bias_zero {
        let bound = 1.0 / (hidden as f32).sqrt();
        tms.bias.set(Tensor::rand_uniform(
            &[features],
            -bound,
            bound,
            rng,
            device,
        )?)?;
    }
    Ok(tms)
}

/// Trains a target of `kind` for `steps` steps of `batch` examples with `optim`.
pub fn train_target(
    kind: &TargetKind,
    probability: f32,
    steps: u64,
    batch: usize,
    optim: &OptimPlan,
    rng: &mut Rng,
    device: &Device,
) -> Result<(Target, TargetTraining)> {
    match kind {
        &TargetKind::Tms {
            features,
            hidden,
            identity_layers,
            bias_zero_init,
        } => {
            let tms = init_tms(features, hidden, bias_zero_init, rng, device)?;
            let (tms, training) = fit(
                tms,
                kind,
                features,
                probability,
                steps,
                batch,
                optim,
                rng,
                device,
            )?;
            Ok((
                Target::Tms(TmsTarget::from_tms(&tms, identity_layers)?),
                training,
            ))
        }
        TargetKind::ResidMlp {
            features,
            d_embed,
            d_mlp,
        } => {
            let model = ResidMlp::new(*features, *d_embed, d_mlp, rng, device)?;
            let (model, training) = fit(
                model,
                kind,
                *features,
                probability,
                steps,
                batch,
                optim,
                rng,
                device,
            )?;
            Ok((Target::ResidMlp(Box::new(model)), training))
        }
    }
}

/// The target's final loss is the mean over this many last steps.
const FINAL_STEPS: u64 = 100;

#[allow(clippy::too_many_arguments)]
fn fit<M: Module>(
    model: M,
    kind: &TargetKind,
    features: usize,
    probability: f32,
    steps: u64,
    batch: usize,
    optim: &OptimPlan,
    rng: &mut Rng,
    device: &Device,
) -> Result<(M, TargetTraining)> {
    let mut trainer = Trainer::new(model, optim.optimizer()?, optim.schedule, Mse)
        .with_clip_norm(optim.clip_norm);
    let low = feature_low(kind);
    let started = Instant::now();
    for step in 0..steps {
        if step + FINAL_STEPS == steps {
            trainer.log()?;
        }
        let inputs = sparse_features(batch, features, probability, low, rng, device)?;
        let targets = labels(kind, &inputs)?;
        trainer.step(&Batch { inputs, targets }, rng)?;
    }
    let final_loss = trainer.log()?.get("loss").copied().unwrap_or(f32::NAN);
    let training = TargetTraining {
        final_loss,
        steps_per_second: steps as f64 / started.elapsed().as_secs_f64().max(1e-9),
    };
    Ok((trainer.model, training))
}
