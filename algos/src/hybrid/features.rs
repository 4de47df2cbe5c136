//! The training state as 64 numbers: what the dynamics model reads at every step.
//!
//! | slots | feature |
//! |---|---|
//! | 0 | `log L` |
//! | 1, 2 | EMA of `log L` (decay 0.9, 0.99) minus `log L` |
//! | 3–7 | mean `Δ log L` per step over the last 1, 2, 4, 8, 16 steps |
//! | 8, 9 | standard deviation and share of sign changes of `Δ log L` over the last 16 steps |
//! | 10 | `log ‖g‖` (global gradient norm of the last full step) |
//! | 11, 12 | `log η`, `log(1 + step)` |
//! | 13, 14 | steps since the last backward pass / 10, whether the last step was predicted |
//! | 15 | `log L − min log L` so far |
//! | 16 + 4g … 19 + 4g | group `g` (at most 12): `log ‖g_g‖`, `log ‖Δθ_g‖`, and their change since the previous full step |
//!
//! Slots of groups a task does not have stay 0. Norms enter as `ln max(x, 1e-30)`.

use dynlab_runtime::{Error, Result};
use std::collections::VecDeque;

/// Features per step.
pub const FEATURES: usize = 64;
/// Parameter groups the encoding has room for.
pub const MAX_GROUPS: usize = 12;
const GLOBAL: usize = 16;
const HISTORY: usize = 17;

/// What one step showed, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct StepRecord {
    /// The loss at the step's starting point.
    pub loss: f64,
    /// Global gradient norm (full steps).
    pub grad_norm: Option<f64>,
    /// Per-group gradient norms (full steps).
    pub group_grad_norms: Option<Vec<f64>>,
    /// Per-group norms of the update applied (actual or predicted).
    pub update_norms: Vec<f64>,
    /// The learning rate.
    pub lr: f64,
    /// Whether the step was predicted.
    pub predicted: bool,
}

fn ln(x: f64) -> f64 {
    x.max(1e-30).ln()
}

/// Builds the features from the steps it has seen (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct StateEncoder {
    groups: usize,
    log_losses: VecDeque<f64>,
    ema: [Option<f64>; 2],
    min_log_loss: f64,
    grad: Vec<f64>,
    grad_change: Vec<f64>,
    update: Vec<f64>,
    update_change: Vec<f64>,
    global_grad: f64,
    lr: f64,
    step: u64,
    since_full: u64,
    predicted: bool,
}

impl StateEncoder {
    /// An encoder for `groups` parameter groups.
    pub fn new(groups: usize) -> Result<StateEncoder> {
        if groups == 0 || groups > MAX_GROUPS {
            return Err(Error::value(
                "StateEncoder::new",
                format!("{groups} parameter groups"),
                format!("1..={MAX_GROUPS}"),
            ));
        }
        Ok(StateEncoder {
            groups,
            log_losses: VecDeque::new(),
            ema: [None, None],
            min_log_loss: f64::INFINITY,
            grad: vec![0.0; groups],
            grad_change: vec![0.0; groups],
            update: vec![0.0; groups],
            update_change: vec![0.0; groups],
            global_grad: 0.0,
            lr: 0.0,
            step: 0,
            since_full: 0,
            predicted: false,
        })
    }

    /// Forgets the loss history (after a roll-back), keeping the step count.
    pub fn reset_history(&mut self) {
        self.log_losses.clear();
        self.ema = [None, None];
    }

    /// Takes in one step.
    pub fn push(&mut self, r: &StepRecord) -> Result<()> {
        let wrong = r.update_norms.len() != self.groups
            || r.group_grad_norms
                .as_ref()
                .is_some_and(|g| g.len() != self.groups);
        if wrong {
            return Err(Error::shape(
                "StateEncoder::push",
                format!("{} update norms", r.update_norms.len()),
                format!("one per group ({})", self.groups),
            ));
        }
        let l = ln(r.loss);
        self.log_losses.push_back(l);
        if self.log_losses.len() > HISTORY {
            self.log_losses.pop_front();
        }
        for (ema, decay) in self.ema.iter_mut().zip([0.9, 0.99]) {
            *ema = Some(ema.map_or(l, |m| decay * m + (1.0 - decay) * l));
        }
        self.min_log_loss = self.min_log_loss.min(l);
        if let Some(g) = &r.group_grad_norms {
            for (k, &v) in g.iter().enumerate() {
                let new = ln(v);
                self.grad_change[k] = new - self.grad[k];
                self.grad[k] = new;
            }
        }
        if let Some(g) = r.grad_norm {
            self.global_grad = ln(g);
        }
        for (k, &v) in r.update_norms.iter().enumerate() {
            let new = ln(v);
            self.update_change[k] = new - self.update[k];
            self.update[k] = new;
        }
        self.lr = ln(r.lr);
        self.step += 1;
        self.since_full = if r.predicted { self.since_full + 1 } else { 0 };
        self.predicted = r.predicted;
        Ok(())
    }

    /// The `Δ log L` of the last steps, oldest first.
    fn deltas(&self) -> Vec<f64> {
        let l: Vec<f64> = self.log_losses.iter().copied().collect();
        l.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The recent mean `Δ log L` per step (0 without two losses yet).
    pub fn loss_slope(&self, steps: usize) -> f64 {
        let d = self.deltas();
        let tail = &d[d.len().saturating_sub(steps)..];
        if tail.is_empty() {
            0.0
        } else {
            tail.iter().sum::<f64>() / tail.len() as f64
        }
    }

    /// The current 64 features.
    pub fn features(&self) -> Vec<f64> {
        let mut f = vec![0.0; FEATURES];
        let Some(&l) = self.log_losses.back() else {
            return f;
        };
        let d = self.deltas();
        f[0] = l;
        f[1] = self.ema[0].unwrap_or(l) - l;
        f[2] = self.ema[1].unwrap_or(l) - l;
        for (slot, span) in [1, 2, 4, 8, 16].into_iter().enumerate() {
            f[3 + slot] = self.loss_slope(span);
        }
        if d.len() >= 2 {
            let mean = d.iter().sum::<f64>() / d.len() as f64;
            f[8] = (d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / d.len() as f64).sqrt();
            let changes = d.windows(2).filter(|w| w[0] * w[1] < 0.0).count();
            f[9] = changes as f64 / (d.len() - 1) as f64;
        }
        f[10] = self.global_grad;
        f[11] = self.lr;
        f[12] = (1.0 + self.step as f64).ln();
        f[13] = self.since_full as f64 / 10.0;
        f[14] = f64::from(u8::from(self.predicted));
        f[15] = l - self.min_log_loss;
        for g in 0..self.groups {
            let at = GLOBAL + 4 * g;
            f[at] = self.grad[g];
            f[at + 1] = self.update[g];
            f[at + 2] = self.update_change[g];
            f[at + 3] = self.grad_change[g];
        }
        f
    }
}

/// The dynamics model's targets for the step from `now` to `next` (two consecutive full steps):
/// `Δ log L` and per group `log(‖Δθ_next‖/‖Δθ_now‖)`.
pub fn targets(now: &StepRecord, next: &StepRecord) -> Vec<f64> {
    std::iter::once(ln(next.loss) - ln(now.loss))
        .chain(
            now.update_norms
                .iter()
                .zip(&next.update_norms)
                .map(|(a, b)| ln(*b) - ln(*a)),
        )
        .collect()
}
