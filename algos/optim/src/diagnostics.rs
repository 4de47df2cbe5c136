//! What Adam is doing, per step, summed over all parameters with state (the quantities grokking
//! studies log):
//! - effective step size `η / (√v̂ + ε)` per element: mean and max;
//! - `|m̂| / (√v̂ + ε)`: mean (1 for a sign-like update, small when gradients disagree across steps);
//! - update-to-decay ratio `‖η m̂/(√v̂+ε)‖ / ‖ηλp‖` over decoupled-decay parameters (AdamW): below 1
//!   the weight decay dominates the step.
//!
//! The bias corrections use each parameter's own step count (with per-element counts, the
//! parameter's count of steps taken, not each element's). One fused launch per chunk of parameters
//! (`Tensor::adam_stats`); the sums run in a different order than a per-tensor reduction, so the
//! values agree with one to f32 rounding.

use crate::optimizer::{Method, Optimizer};
use crate::state::ParamState;
use dynlab_models::Module;
use dynlab_runtime::{AdamStatsTensor, Result, Tensor};

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

/// Raw Adam statistics on the device: what [`Optimizer::adam_diagnostics_raw`] returns.
#[derive(Clone, Debug)]
pub struct RawAdamStats {
    /// `[chunks, replicas, 5]` partial sums and maxima (see `Tensor::adam_stats`).
    pub partials: Tensor,
    /// Elements with Adam state, per replica.
    pub count: usize,
    /// Replicas of the model (1 for one model).
    pub replicas: usize,
}

impl AdamDiagnostics {
    /// Replica `r`'s statistics (of `replicas`; 0 of 1 for one model) from the partials read back
    /// (`count` elements per replica).
    pub fn from_partials(
        partials: &[f32],
        count: usize,
        replicas: usize,
        r: usize,
    ) -> AdamDiagnostics {
        let rows = || partials.chunks(5).skip(r).step_by(replicas.max(1));
        let column = |j: usize| rows().map(move |row| row[j]);
        let n = count as f32;
        AdamDiagnostics {
            effective_step_mean: column(0).sum::<f32>() / n,
            effective_step_max: column(1).fold(f32::MIN, f32::max),
            moment_ratio_mean: column(2).sum::<f32>() / n,
            update_to_decay: (column(3).sum::<f32>() / column(4).sum::<f32>()).sqrt(),
        }
    }
}

impl Optimizer {
    /// Adam statistics at the current state and learning rate `lr`, one per replica (one for a
    /// single model; `None` for SGD or before the first step), computed on the device in one launch
    /// (per chunk of parameters). One host read-back.
    pub fn adam_diagnostics(
        &self,
        model: &dyn Module,
        lr: f32,
    ) -> Result<Option<Vec<AdamDiagnostics>>> {
        let Some(raw) = self.adam_diagnostics_raw(model, lr)? else {
            return Ok(None);
        };
        let host = raw.partials.to_vec::<f32>()?;
        let per_replica = (0..raw.replicas)
            .map(|r| AdamDiagnostics::from_partials(&host, raw.count, raw.replicas, r))
            .collect();
        Ok(Some(per_replica))
    }

    /// The statistics left on the device (read them with the interval's other metrics).
    pub fn adam_diagnostics_raw(
        &self,
        model: &dyn Module,
        lr: f32,
    ) -> Result<Option<RawAdamStats>> {
        let Method::Adam {
            beta1,
            beta2,
            eps,
            decoupled,
        } = self.method
        else {
            return Ok(None);
        };
        let params = model.params();
        let mut items = Vec::new();
        let mut count = 0usize;
        for (name, param) in &params {
            let Some(ParamState::Adam(state)) = self.state(name) else {
                continue;
            };
            let t = state.step.min(i32::MAX as u64) as i32;
            let decay = if decoupled {
                self.group(param.kind()).0
            } else {
                0.0
            };
            items.push(AdamStatsTensor {
                m: &state.m,
                v: &state.v,
                param: param.value(),
                c1: 1.0 - beta1.powi(t),
                c2: 1.0 - beta2.powi(t),
                decay,
            });
            count += state.m.numel();
        }
        if count == 0 {
            return Ok(None);
        }
        Ok(Some(RawAdamStats {
            partials: Tensor::adam_stats(&items, lr, eps, self.replicas())?,
            count: count / self.replicas().len().max(1),
            replicas: self.replicas().len().max(1),
        }))
    }
}
