//! The divergence monitor: watches every step's loss (and, on full steps, the gradient norm) and
//! names what went wrong.
//!
//! | signal | fires when | recovery |
//! |---|---|---|
//! | [`Signal::NonFinite`] | the loss or the gradient norm is NaN or ±∞ | roll back, Full, halve the horizon cap |
//! | [`Signal::LossSpike`] | `L > m + k·max(s, r·|m|)`, `m`/`s²` the EMA (decay `ema_decay`) of the loss and of its squared deviation, `k = divergence_sigma` (2.2), `r = min_relative_sigma` (0: the plain rule) | roll back, Full, halve the cap |
//! | [`Signal::GradExplode`] | `‖g‖ > 10·g₀`, `g₀` the mean gradient norm of the warm-up | roll back, Full, halve the cap |
//! | [`Signal::GradVanish`] | `‖g‖ < 0.01·g₀` | Full (no roll-back: the state is sound); `g₀ ← ‖g‖`, so a converging run is told once per 100× drop |
//! | [`Signal::PredictionError`] | `|L − L̂|/L̂ > max_prediction_error` (0.2) on a predicted step | roll back, Full, halve the cap |
//! | [`Signal::Oscillation`] | on predicted steps, the share of sign changes of `ΔL` over the last `oscillation_window` steps above `max_sign_changes` | Correct, halve the cap |
//!
//! The EMA starts at the first loss and absorbs the losses that raised no signal; a flagged step
//! enters only when the controller keeps it on the trajectory ([`DivergenceMonitor::accept`]), so
//! a rolled-back spike does not hide the next one, and a kept one (a real change of level) does
//! not raise the alarm forever. The spike test arms after `warmup` steps of statistics.

use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What the monitor can report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// NaN or infinity in the loss or gradient norm.
    NonFinite,
    /// The loss jumped above its EMA by more than `divergence_sigma` standard deviations.
    LossSpike,
    /// The gradient norm exceeds 10× the warm-up baseline.
    GradExplode,
    /// The gradient norm fell below 0.01× the warm-up baseline.
    GradVanish,
    /// A predicted step's loss is too far from the predicted trajectory.
    PredictionError,
    /// The loss changes direction too often while predicting.
    Oscillation,
}

impl Signal {
    /// Whether the recovery rolls back to the last saved full-step state.
    pub fn rolls_back(self) -> bool {
        !matches!(self, Signal::GradVanish | Signal::Oscillation)
    }

    /// Short name (history column values).
    pub fn name(self) -> &'static str {
        match self {
            Signal::NonFinite => "non_finite",
            Signal::LossSpike => "loss_spike",
            Signal::GradExplode => "grad_explode",
            Signal::GradVanish => "grad_vanish",
            Signal::PredictionError => "prediction_error",
            Signal::Oscillation => "oscillation",
        }
    }
}

/// The monitor's thresholds (`[hybrid.monitor]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// `k` of the loss-spike test.
    pub divergence_sigma: f64,
    /// Decay of the loss EMA and of its squared deviation.
    pub ema_decay: f64,
    /// Floor of the spike test's deviation as a fraction of the EMA. With 0 (the default, the
    /// plain rule) a converged run whose loss moves by 0.01% a step flags any 0.1% rise; a floor
    /// of 0.01 asks a spike to be at least `2.2%` of the loss.
    pub min_relative_sigma: f64,
    /// Gradient norm above this multiple of the warm-up baseline is an explosion.
    pub grad_explode: f64,
    /// Gradient norm below this multiple of the warm-up baseline is vanishing.
    pub grad_vanish: f64,
    /// Largest relative error of a predicted step's loss.
    pub max_prediction_error: f64,
    /// Steps over which sign changes of `ΔL` are counted.
    pub oscillation_window: usize,
    /// Largest share of sign changes in that window on predicted steps.
    pub max_sign_changes: f64,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            divergence_sigma: 2.2,
            ema_decay: 0.9,
            min_relative_sigma: 0.0,
            grad_explode: 10.0,
            grad_vanish: 0.01,
            max_prediction_error: 0.2,
            oscillation_window: 16,
            max_sign_changes: 0.75,
        }
    }
}

impl MonitorConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, v: f64| Error::config(key, format!("{v} is out of range"));
        if !(self.divergence_sigma > 0.0 && self.divergence_sigma.is_finite()) {
            return Err(bad(
                "hybrid.monitor.divergence_sigma",
                self.divergence_sigma,
            ));
        }
        if !(self.ema_decay > 0.0 && self.ema_decay < 1.0) {
            return Err(bad("hybrid.monitor.ema_decay", self.ema_decay));
        }
        if !(self.min_relative_sigma >= 0.0 && self.min_relative_sigma.is_finite()) {
            return Err(bad(
                "hybrid.monitor.min_relative_sigma",
                self.min_relative_sigma,
            ));
        }
        if !(self.grad_explode > 1.0 && self.grad_explode.is_finite()) {
            return Err(bad("hybrid.monitor.grad_explode", self.grad_explode));
        }
        if !(self.grad_vanish >= 0.0 && self.grad_vanish < 1.0) {
            return Err(bad("hybrid.monitor.grad_vanish", self.grad_vanish));
        }
        if !(self.max_prediction_error > 0.0 && self.max_prediction_error.is_finite()) {
            return Err(bad(
                "hybrid.monitor.max_prediction_error",
                self.max_prediction_error,
            ));
        }
        if self.oscillation_window < 3 {
            return Err(bad(
                "hybrid.monitor.oscillation_window",
                self.oscillation_window as f64,
            ));
        }
        if !(self.max_sign_changes > 0.0 && self.max_sign_changes <= 1.0) {
            return Err(bad(
                "hybrid.monitor.max_sign_changes",
                self.max_sign_changes,
            ));
        }
        Ok(())
    }
}

/// What one step showed the monitor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepSignals {
    /// The step's loss.
    pub loss: f64,
    /// The gradient norm (full steps only).
    pub grad_norm: Option<f64>,
    /// The loss the predictor expected (predicted steps only).
    pub predicted_loss: Option<f64>,
}

/// The running statistics behind the signals (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct DivergenceMonitor {
    config: MonitorConfig,
    warmup: usize,
    seen: usize,
    mean: f64,
    var: f64,
    grad_sum: f64,
    grad_count: usize,
    baseline: Option<f64>,
    deltas: VecDeque<f64>,
    last_loss: Option<f64>,
}

impl DivergenceMonitor {
    /// A monitor whose spike test and gradient baseline arm after `warmup` steps.
    pub fn new(config: MonitorConfig, warmup: usize) -> DivergenceMonitor {
        DivergenceMonitor {
            config,
            warmup: warmup.max(1),
            seen: 0,
            mean: 0.0,
            var: 0.0,
            grad_sum: 0.0,
            grad_count: 0,
            baseline: None,
            deltas: VecDeque::new(),
            last_loss: None,
        }
    }

    /// The warm-up mean gradient norm, once the warm-up is over.
    pub fn baseline(&self) -> Option<f64> {
        self.baseline
    }

    /// The loss EMA and its standard deviation.
    pub fn loss_stats(&self) -> (f64, f64) {
        (self.mean, self.var.sqrt())
    }

    /// The share of sign changes of `ΔL` over the window.
    pub fn sign_change_rate(&self) -> f64 {
        let d: Vec<f64> = self.deltas.iter().copied().filter(|d| *d != 0.0).collect();
        if d.len() < 2 {
            return 0.0;
        }
        let changes = d.windows(2).filter(|w| w[0] * w[1] < 0.0).count();
        changes as f64 / (d.len() - 1) as f64
    }

    /// Observes one step; `predicting` says whether it was a predicted step. Returns the first
    /// signal in the table's order, or `None`.
    pub fn observe(&mut self, s: StepSignals, predicting: bool) -> Option<Signal> {
        let signal = self.check(&s, predicting);
        match signal {
            None => self.absorb(&s),
            // Converging runs shrink their gradients for good: the new level is the baseline.
            Some(Signal::GradVanish) => self.baseline = s.grad_norm,
            Some(_) => {}
        }
        signal
    }

    /// Takes a flagged step's loss into the statistics: the step was kept on the trajectory.
    pub fn accept(&mut self, s: &StepSignals) {
        if s.loss.is_finite() && s.grad_norm.is_none_or(f64::is_finite) {
            self.absorb(s);
        }
    }

    /// Forgets the loss trajectory after a roll-back (the statistics are kept).
    pub fn after_rollback(&mut self) {
        self.deltas.clear();
        self.last_loss = None;
    }

    fn check(&self, s: &StepSignals, predicting: bool) -> Option<Signal> {
        let c = &self.config;
        if !s.loss.is_finite() || s.grad_norm.is_some_and(|g| !g.is_finite()) {
            return Some(Signal::NonFinite);
        }
        let sigma = self.var.sqrt().max(c.min_relative_sigma * self.mean.abs());
        if self.seen >= self.warmup && s.loss > self.mean + c.divergence_sigma * sigma {
            return Some(Signal::LossSpike);
        }
        if let (Some(g), Some(g0)) = (s.grad_norm, self.baseline) {
            if g > c.grad_explode * g0 {
                return Some(Signal::GradExplode);
            }
            if g < c.grad_vanish * g0 {
                return Some(Signal::GradVanish);
            }
        }
        if let Some(p) = s.predicted_loss {
            if (s.loss - p).abs() > c.max_prediction_error * p.abs() {
                return Some(Signal::PredictionError);
            }
        }
        if predicting && self.oscillates_with(s.loss) {
            return Some(Signal::Oscillation);
        }
        None
    }

    fn oscillates_with(&self, loss: f64) -> bool {
        let Some(last) = self.last_loss else {
            return false;
        };
        let mut probe = self.clone();
        probe.push_delta(loss - last);
        probe.deltas.len() + 1 >= self.config.oscillation_window
            && probe.sign_change_rate() > self.config.max_sign_changes
    }

    fn push_delta(&mut self, delta: f64) {
        self.deltas.push_back(delta);
        while self.deltas.len() + 1 > self.config.oscillation_window {
            self.deltas.pop_front();
        }
    }

    fn absorb(&mut self, s: &StepSignals) {
        let d = self.config.ema_decay;
        if self.seen == 0 {
            self.mean = s.loss;
        } else {
            let dev = s.loss - self.mean;
            self.mean += (1.0 - d) * dev;
            self.var = d * (self.var + (1.0 - d) * dev * dev);
        }
        self.seen += 1;
        if let Some(last) = self.last_loss {
            self.push_delta(s.loss - last);
        }
        self.last_loss = Some(s.loss);
        if let (Some(g), None) = (s.grad_norm, self.baseline) {
            self.grad_sum += g;
            self.grad_count += 1;
            if self.seen >= self.warmup {
                self.baseline = Some(self.grad_sum / self.grad_count as f64);
            }
        }
    }
}
