//! The dynamics model: an ensemble of small GRUs (Cho et al. 2014, the gate equations as PyTorch's
//! `nn.GRU`) over the training state's 64 features (see [`super::features`]), trained online on the
//! device with the tape by truncated backpropagation through time.
//!
//! ```text
//! r = σ(W_ir x + b_ir + W_hr h + b_hr)      z = σ(W_iz x + b_iz + W_hz h + b_hz)
//! n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      h' = (1 − z) ⊙ n + z ⊙ h      ŷ = W_o h' + b_o
//! ```
//!
//! Every member reads the same standardised features and predicts, at every step of a window, the
//! standardised targets of the next step: `Δ log L` and, per parameter group, `log(‖Δθ_{t+1}‖/‖Δθ_t‖)`.
//! The `E` members are one model stacked with [`Replicas`] (one launch per op for all of them);
//! each learns from its own bootstrap draw of windows (`batch` windows of `window` consecutive full
//! steps per update), from its own initialisation. Their disagreement (the ensemble's standard
//! deviation in standardised units) is the uncertainty the trainer's confidence is built from
//! (Lakshminarayanan, Pritzel & Blundell 2017, deep ensembles).

use dynlab_autodiff::{no_grad, Var};
use dynlab_data::HostRng;
use dynlab_models::{Ctx, Init, Linear, Module, Parts, PartsMut, Record, Replicas, Stateful};
use dynlab_optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Mse, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A GRU run over a window: input `[.., N, T·F]` (the `T` steps' features side by side), output
/// `[.., N, T·Y]` (the prediction after each step). Children `input` (`F → 3H`), `hidden`
/// (`H → 3H`) and `head` (`H → Y`); the gates in the order r, z, n.
#[derive(Clone, Debug)]
pub struct GruSequence {
    input: Linear,
    hidden: Linear,
    head: Linear,
    features: usize,
    size: usize,
    outputs: usize,
}

impl GruSequence {
    /// A GRU of `size` units over `features` inputs predicting `outputs` values (weights
    /// `U(±1/√size)` as PyTorch's GRU, head likewise).
    pub fn new(
        features: usize,
        size: usize,
        outputs: usize,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<GruSequence> {
        if features == 0 || size == 0 || outputs == 0 {
            return Err(Error::value(
                "GruSequence::new",
                format!("{features} features, {size} units, {outputs} outputs"),
                "positive sizes",
            ));
        }
        let bound = 1.0 / (size as f32).sqrt();
        let uniform = |shape: &[usize], rng: &mut Rng| {
            Tensor::rand_uniform(shape, -bound, bound, rng, device)
        };
        let layer = |inputs: usize, out: usize, rng: &mut Rng| -> Result<Linear> {
            let mut l = Linear::new(inputs, out, true, Init::XavierUniform, rng, device)?;
            for (_, p) in l.params_mut() {
                let shape = p.value().shape().to_vec();
                p.set(uniform(&shape, rng)?)?;
            }
            Ok(l)
        };
        Ok(GruSequence {
            input: layer(features, 3 * size, rng)?,
            hidden: layer(size, 3 * size, rng)?,
            head: layer(size, outputs, rng)?,
            features,
            size,
            outputs,
        })
    }

    fn check(&self, x: &Var, ctx: &Ctx) -> Result<(Vec<isize>, usize, usize)> {
        let shape = x.shape().to_vec();
        let lead = usize::from(ctx.replicas().is_some());
        let ok = shape.len() == lead + 2 && shape[lead + 1].is_multiple_of(self.features);
        if !ok || shape[lead + 1] == 0 {
            return Err(Error::shape(
                "GruSequence::forward",
                format!("input {shape:?}"),
                format!("[{}N, T·{}] with T ≥ 1", ["", "R, "][lead], self.features),
            ));
        }
        let prefix: Vec<isize> = shape[..lead].iter().map(|&d| d as isize).collect();
        Ok((prefix, shape[lead], shape[lead + 1] / self.features))
    }
}

impl Module for GruSequence {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (prefix, n, steps) = self.check(x, ctx)?;
        let shape = |tail: &[isize]| -> Vec<isize> { prefix.iter().chain(tail).copied().collect() };
        let (h3, n_i, t_i) = (3 * self.size as isize, n as isize, steps as isize);
        let flat = x.reshape(&shape(&[n_i * t_i, self.features as isize]))?;
        let gates_in = ctx
            .call("input", &self.input, &flat)?
            .reshape(&shape(&[n_i, t_i, h3]))?;
        let axis = prefix.len() as isize;
        let last = axis + 1;
        let zeros = Tensor::zeros(
            &shape(&[n_i, self.size as isize])
                .iter()
                .map(|&d| d as usize)
                .collect::<Vec<_>>(),
            x.value().device(),
        )?;
        let mut h = Var::constant(zeros);
        let mut states = Vec::with_capacity(steps);
        let s = self.size;
        for t in 0..steps {
            let gi = gates_in.narrow(axis + 1, t, 1)?.squeeze(axis + 1)?;
            let gh = ctx.call("hidden", &self.hidden, &h)?;
            let r = gi
                .narrow(last, 0, s)?
                .add(&gh.narrow(last, 0, s)?)?
                .sigmoid()?;
            let z = gi
                .narrow(last, s, s)?
                .add(&gh.narrow(last, s, s)?)?
                .sigmoid()?;
            let cand = gh.narrow(last, 2 * s, s)?.mul(&r)?;
            let cand = gi.narrow(last, 2 * s, s)?.add(&cand)?.tanh()?;
            h = cand.add(&z.mul(&h.sub(&cand)?)?)?;
            states.push(h.clone());
        }
        let refs: Vec<&Var> = states.iter().collect();
        let all = Var::stack(&refs, axis + 1)?.reshape(&shape(&[n_i * t_i, s as isize]))?;
        ctx.call("head", &self.head, &all)?
            .reshape(&shape(&[n_i, t_i * self.outputs as isize]))
    }

    fn replicable(&self) -> bool {
        true
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("input", &self.input)
            .child("hidden", &self.hidden)
            .child("head", &self.head)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("input", &mut self.input)
            .child("hidden", &mut self.hidden)
            .child("head", &mut self.head)
    }
}

/// Running mean and variance per dimension (Welford), for standardising features and targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    count: f64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Standardizer {
    /// Over `dim` dimensions, nothing seen yet.
    pub fn new(dim: usize) -> Standardizer {
        Standardizer {
            count: 0.0,
            mean: vec![0.0; dim],
            m2: vec![0.0; dim],
        }
    }

    /// Adds one observation.
    pub fn add(&mut self, x: &[f64]) {
        self.count += 1.0;
        for (k, &v) in x.iter().enumerate() {
            let d = v - self.mean[k];
            self.mean[k] += d / self.count;
            self.m2[k] += d * (v - self.mean[k]);
        }
    }

    /// The standard deviation of dimension `k` (at least `1e-6`, so constant features map to 0).
    pub fn std(&self, k: usize) -> f64 {
        let var = if self.count > 1.0 {
            self.m2[k] / (self.count - 1.0)
        } else {
            0.0
        };
        var.sqrt().max(1e-6)
    }

    /// `(x − mean)/std`, clamped to ±5.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(k, v)| ((v - self.mean[k]) / self.std(k)).clamp(-5.0, 5.0))
            .collect()
    }

    /// `mean + z·std`.
    pub fn inverse(&self, z: &[f64]) -> Vec<f64> {
        z.iter()
            .enumerate()
            .map(|(k, v)| self.mean[k] + v * self.std(k))
            .collect()
    }
}

/// The dynamics model's settings (`[hybrid.dynamics]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamicsConfig {
    /// Ensemble members.
    pub members: usize,
    /// GRU units.
    pub hidden: usize,
    /// Steps per training window (the truncation of BPTT) and per prediction.
    pub window: usize,
    /// Windows per member per update.
    pub batch: usize,
    /// An update every this many full steps…
    pub learn_every: u64,
    /// …of this many Adam steps.
    pub learn_iters: usize,
    /// Adam's learning rate.
    pub lr: f32,
    /// Samples kept (the oldest are dropped).
    pub buffer: usize,
}

impl Default for DynamicsConfig {
    fn default() -> Self {
        DynamicsConfig {
            members: 5,
            hidden: 32,
            window: 8,
            batch: 16,
            learn_every: 4,
            learn_iters: 2,
            lr: 3e-3,
            buffer: 1024,
        }
    }
}

impl DynamicsConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        for (key, v) in [
            ("members", self.members),
            ("hidden", self.hidden),
            ("window", self.window),
            ("batch", self.batch),
            ("learn_iters", self.learn_iters),
            ("learn_every", self.learn_every as usize),
        ] {
            if v == 0 {
                return Err(Error::config(
                    format!("hybrid.dynamics.{key}"),
                    "0 is not positive",
                ));
            }
        }
        if self.buffer < self.window + 1 {
            return Err(Error::config(
                "hybrid.dynamics.buffer",
                format!("{} < window + 1", self.buffer),
            ));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::config(
                "hybrid.dynamics.lr",
                format!("{} is not positive", self.lr),
            ));
        }
        Ok(())
    }
}

/// One prediction of the next step's targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// The ensemble mean, in the targets' units.
    pub mean: Vec<f64>,
    /// The ensemble's standard deviation per target, standardised.
    pub spread: Vec<f64>,
}

/// The ensemble, its optimizer, its data and its standardisers (see the module docs).
pub struct DynamicsModel {
    config: DynamicsConfig,
    features: usize,
    outputs: usize,
    trainer: Trainer<Replicas<GruSequence>>,
    inputs: Standardizer,
    targets: Standardizer,
    /// (features, targets, segment): windows never cross a segment boundary.
    samples: VecDeque<(Vec<f64>, Vec<f64>, u64)>,
    segment: u64,
    draws: HostRng,
    rng: Rng,
    device: Device,
    updates: u64,
}

impl DynamicsModel {
    /// A fresh ensemble over `features` inputs predicting `outputs` targets.
    pub fn new(
        config: DynamicsConfig,
        features: usize,
        outputs: usize,
        seed: u64,
        device: &Device,
    ) -> Result<DynamicsModel> {
        config.check()?;
        let mut rng = Rng::new(seed);
        let members = (0..config.members)
            .map(|_| GruSequence::new(features, config.hidden, outputs, &mut rng, device))
            .collect::<Result<Vec<_>>>()?;
        let model = Replicas::stack(members)?;
        let method = Method::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        };
        let optimizer = Optimizer::new(method, ParamGroup::standard(0.0))?;
        let trainer = Trainer::new(model, optimizer, LrSchedule::constant(config.lr), Mse)
            .with_clip_norm(Some(1.0));
        Ok(DynamicsModel {
            inputs: Standardizer::new(features),
            targets: Standardizer::new(outputs),
            samples: VecDeque::new(),
            segment: 0,
            draws: HostRng::new(seed ^ 0x5EED),
            rng,
            device: device.clone(),
            updates: 0,
            trainer,
            features,
            outputs,
            config,
        })
    }

    /// The settings.
    pub fn config(&self) -> &DynamicsConfig {
        &self.config
    }

    /// Adam updates taken.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Samples held.
    pub fn samples(&self) -> usize {
        self.samples.len()
    }

    /// Adds the sample "at a step with `features`, the next step showed `targets`"; consecutive
    /// samples form sequences until [`DynamicsModel::break_sequence`].
    pub fn push(&mut self, features: Vec<f64>, targets: Vec<f64>) -> Result<()> {
        if features.len() != self.features || targets.len() != self.outputs {
            return Err(Error::shape(
                "DynamicsModel::push",
                format!("{} features, {} targets", features.len(), targets.len()),
                format!("{} and {}", self.features, self.outputs),
            ));
        }
        if features.iter().chain(&targets).any(|v| !v.is_finite()) {
            return Ok(());
        }
        self.inputs.add(&features);
        self.targets.add(&targets);
        self.samples.push_back((features, targets, self.segment));
        while self.samples.len() > self.config.buffer {
            self.samples.pop_front();
        }
        Ok(())
    }

    /// Ends the current sequence (after predicted steps or a roll-back).
    pub fn break_sequence(&mut self) {
        self.segment += 1;
    }

    /// Window starts whose `window` samples lie in one segment.
    fn window_starts(&self) -> Vec<usize> {
        let w = self.config.window;
        (0..(self.samples.len() + 1).saturating_sub(w))
            .filter(|&s| self.samples[s].2 == self.samples[s + w - 1].2)
            .collect()
    }

    /// Whether there is at least one whole window to learn from.
    pub fn ready(&self) -> bool {
        !self.window_starts().is_empty()
    }

    /// `learn_iters` Adam steps, each on a fresh bootstrap draw of windows per member; returns the
    /// members' mean squared error (standardised) over those steps, or `None` without a whole window yet.
    pub fn learn(&mut self) -> Result<Option<f64>> {
        let starts = self.window_starts();
        if starts.is_empty() {
            return Ok(None);
        }
        let c = &self.config;
        let (e, b, w) = (c.members, c.batch, c.window);
        for _ in 0..c.learn_iters {
            let mut x = Vec::with_capacity(e * b * w * self.features);
            let mut y = Vec::with_capacity(e * b * w * self.outputs);
            for _ in 0..e * b {
                let s = starts[self.draws.below(starts.len())];
                for k in s..s + w {
                    let (f, t, _) = &self.samples[k];
                    x.extend(self.inputs.forward(f).iter().map(|&v| v as f32));
                    y.extend(self.targets.forward(t).iter().map(|&v| v as f32));
                }
            }
            let batch = Batch {
                inputs: Tensor::from_vec(x, &[e, b, w * self.features], &self.device)?,
                targets: Tensor::from_vec(y, &[e, b, w * self.outputs], &self.device)?,
            };
            self.trainer.step(&batch, &mut self.rng)?;
            self.updates += 1;
        }
        let members = self.trainer.log_replicas()?;
        let loss = members
            .iter()
            .map(|m| m.get("loss").map_or(f64::NAN, |v| *v as f64))
            .sum::<f64>()
            / members.len() as f64;
        Ok(Some(loss))
    }

    /// Each member's prediction after the last `window` feature rows of `recent` (fewer when the
    /// history is shorter), combined into the ensemble mean and spread.
    pub fn predict(&self, recent: &[Vec<f64>]) -> Result<Prediction> {
        let w = recent.len().min(self.config.window);
        if w == 0 || recent.iter().any(|f| f.len() != self.features) {
            return Err(Error::shape(
                "DynamicsModel::predict",
                format!("{} feature rows", recent.len()),
                format!("at least one row of {} features", self.features),
            ));
        }
        let e = self.config.members;
        let rows = &recent[recent.len() - w..];
        let one: Vec<f32> = rows
            .iter()
            .flat_map(|f| self.inputs.forward(f))
            .map(|v| v as f32)
            .collect();
        let x: Vec<f32> = (0..e).flat_map(|_| one.iter().copied()).collect();
        let inputs = Tensor::from_vec(x, &[e, 1, w * self.features], &self.device)?;
        let out = no_grad(|| {
            let mut ctx = Ctx::eval();
            self.trainer.model.forward(&Var::constant(inputs), &mut ctx)
        })?;
        let values = out.value().to_vec::<f32>()?;
        let y = self.outputs;
        let per_member: Vec<&[f32]> = (0..e)
            .map(|m| &values[m * w * y + (w - 1) * y..m * w * y + w * y])
            .collect();
        let mut mean_z = vec![0.0; y];
        let mut spread = vec![0.0; y];
        for k in 0..y {
            let vals: Vec<f64> = per_member.iter().map(|m| m[k] as f64).collect();
            let mu = vals.iter().sum::<f64>() / e as f64;
            let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / e as f64;
            mean_z[k] = mu;
            spread[k] = var.sqrt();
        }
        if mean_z.iter().chain(&spread).any(|v| !v.is_finite()) {
            return Err(Error::value(
                "DynamicsModel::predict",
                "a non-finite prediction",
                "finite outputs (the ensemble diverged)",
            ));
        }
        Ok(Prediction {
            mean: self.targets.inverse(&mean_z),
            spread,
        })
    }

    /// The standardised value of target `k`.
    pub fn standardise_target(&self, k: usize, value: f64) -> f64 {
        (value - self.targets.mean[k]) / self.targets.std(k)
    }
}

impl Stateful for DynamicsModel {
    fn save_state(&self) -> Result<Record> {
        self.trainer.save_state()
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(record)
    }
}
