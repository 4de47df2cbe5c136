//! What Adam is doing, per step, summed over all parameters with state (the quantities grokking
//! studies log):
//! - effective step size `η / (√v̂ + ε)` per element: mean and max;
//! - `|m̂| / (√v̂ + ε)`: mean (1 for a sign-like update, small when gradients disagree across steps);
//! - update-to-decay ratio `‖η m̂/(√v̂+ε)‖ / ‖ηλp‖` over decoupled-decay parameters (AdamW): below 1
//!   the weight decay dominates the step.
//!
//! The bias corrections use each parameter's own step count (with per-element counts, the
//! parameter's count of steps taken, not each element's).

use crate::optimizer::{Method, Optimizer};
use crate::state::ParamState;
use dynlab_models::Module;
use dynlab_runtime::{Result, Tensor};

/// Adam statistics over all parameters with state (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AdamDiagnostics {
    /// Mean of `η/(√v̂+ε)` over elements.
    pub effective_step_mean: f32,
    /// Max of `η/(√v̂+ε)` over elements.
    pub effective_step_max: f32,
    /// Mean of `|m̂|/(√v̂+ε)` over elements.
    pub moment_ratio_mean: f32,
    /// NaN when no parameter has decoupled decay.
    pub update_to_decay: f32,
}

impl Optimizer {
    /// Adam statistics at the current state and learning rate `lr` (`None` for SGD or before the
    /// first step). One host read-back.
    pub fn adam_diagnostics(&self, model: &dyn Module, lr: f32) -> Result<Option<AdamDiagnostics>> {
        let Method::Adam {
            beta1,
            beta2,
            eps,
            decoupled,
        } = self.method
        else {
            return Ok(None);
        };
        let mut sums = Vec::new();
        let mut maxes = Vec::new();
        let mut count = 0usize;
        for (name, param) in model.params() {
            let Some(ParamState::Adam(state)) = self.state(&name) else {
                continue;
            };
            let (m, v) = (&state.m, &state.v);
            let t = state.step.min(i32::MAX as u64) as i32;
            let (c1, c2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
            let denom = v.div_scalar(c2)?.sqrt()?.add_scalar(eps)?;
            let eff = denom.recip()?.mul_scalar(lr)?;
            let ratio = m.div_scalar(c1)?.abs()?.div(&denom)?;
            let decay = if decoupled {
                self.group(param.kind()).0
            } else {
                0.0
            };
            let decayed = if decay > 0.0 { 1.0 } else { 0.0 };
            let update_sq = ratio.square()?.sum_all()?.mul_scalar(lr * lr * decayed)?;
            let decay_sq = param
                .value()
                .square()?
                .sum_all()?
                .mul_scalar(lr * lr * decay * decay)?;
            for s in [eff.sum_all()?, ratio.sum_all()?, update_sq, decay_sq] {
                sums.push(s.reshape(&[1])?);
            }
            maxes.push(eff.max_all()?.reshape(&[1])?);
            count += m.numel();
        }
        if count == 0 {
            return Ok(None);
        }
        let all: Vec<&Tensor> = sums.iter().chain(&maxes).collect();
        let host = Tensor::cat(&all, 0)?.to_vec::<f32>()?;
        let (sums, maxes) = host.split_at(sums.len());
        let total = |k: usize| sums.iter().skip(k).step_by(4).sum::<f32>();
        let n = count as f32;
        Ok(Some(AdamDiagnostics {
            effective_step_mean: total(0) / n,
            effective_step_max: maxes.iter().copied().fold(f32::MIN, f32::max),
            moment_ratio_mean: total(1) / n,
            update_to_decay: (total(2) / total(3)).sqrt(),
        }))
    }
}
