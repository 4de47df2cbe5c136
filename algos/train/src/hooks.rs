//! Code that runs inside the step: after the backward pass (gradients exist, parameters are the
//! ones the loss saw), after the optimizer step (parameters are updated: where generate-and-test
//! replaces units and resets their optimizer state), and at log time (before the metrics are read,
//! so device values a hook sets travel in the same read-back). A hook can ask for taps.
//!
//! Provided: [`FeatureNorm`] (mean ℓ2 norm of a tapped representation's rows), [`WeightNorm`]
//! (`√(Σ‖θ‖²)` at log time) and [`AdamStats`] (the optimizer's Adam diagnostics every k logs).

use crate::data::Batch;
use crate::metrics::Metrics;
use crate::objective::Forward;
use dynlab_autodiff::Grads;
use dynlab_models::{Module, Record};
use dynlab_optim::{global_grad_norm, AdamDiagnostics, Optimizer};
use dynlab_runtime::{Result, Tensor};

/// What a hook sees during a step.
pub struct StepView<'a> {
    /// The model (after the optimizer step in [`Hook::after_step`]).
    pub model: &'a mut dyn Module,
    /// The optimizer.
    pub optimizer: &'a mut Optimizer,
    /// The batch of this step.
    pub batch: &'a Batch,
    /// The forward pass (output and taps).
    pub forward: &'a Forward,
    /// The gradients of this step.
    pub grads: &'a Grads,
    /// The interval's metrics.
    pub metrics: &'a mut Metrics,
    /// The learning rate of this step.
    pub lr: f32,
}

/// What a hook sees at log time.
pub struct LogView<'a> {
    /// The model.
    pub model: &'a mut dyn Module,
    /// The optimizer.
    pub optimizer: &'a mut Optimizer,
    /// The interval's metrics, about to be read.
    pub metrics: &'a mut Metrics,
    /// The learning rate of the last step.
    pub lr: f32,
    /// 1-based number of this log (across resumes).
    pub index: u64,
}

/// Code run inside the training step (see the module docs). Every method defaults to nothing.
pub trait Hook {
    /// The taps this hook reads from [`StepView::forward`].
    fn taps(&self) -> Vec<String> {
        Vec::new()
    }

    /// After the backward pass, before the optimizer step.
    fn after_backward(&mut self, _step: &mut StepView) -> Result<()> {
        Ok(())
    }

    /// After the optimizer step.
    fn after_step(&mut self, _step: &mut StepView) -> Result<()> {
        Ok(())
    }

    /// At log time, before the metrics are read.
    fn on_log(&mut self, _log: &mut LogView) -> Result<()> {
        Ok(())
    }

    /// The state a resumed run needs (statistics, counters, random streams); saved with the
    /// trainer's. Stateless hooks keep the default (nothing).
    fn save_state(&self) -> Result<Record> {
        Ok(Record::default())
    }

    /// Restores what [`Hook::save_state`] saved.
    fn load_state(&mut self, _record: &Record) -> Result<()> {
        Ok(())
    }
}

/// Logs `name` = the mean ℓ2 norm of the rows of the tap `tap` (a representation `[N, d]`),
/// weighted by batch rows.
pub struct FeatureNorm {
    /// The tap to read.
    pub tap: String,
    /// The metric to write.
    pub name: String,
}

impl Hook for FeatureNorm {
    fn taps(&self) -> Vec<String> {
        vec![self.tap.clone()]
    }

    fn after_backward(&mut self, step: &mut StepView) -> Result<()> {
        let repr = step.forward.tap(&self.tap)?.value();
        match step.forward.replicas {
            None => {
                let norm = repr.mean_row_norm(1)?;
                step.metrics
                    .add(&self.name, &norm, step.batch.rows() as f32)
            }
            Some(r) => {
                // `[R, N, d]`: the mean row norm per replica.
                let rows = repr.shape().get(1).copied().unwrap_or(0);
                let d = repr.shape().last().copied().unwrap_or(0) as isize;
                let norm = repr.contiguous()?.reshape(&[-1, d])?.mean_row_norm(r)?;
                step.metrics.add(&self.name, &norm, rows as f32)
            }
        }
    }
}

/// Logs `weight_norm` = `√(Σ‖θ‖²)` over every parameter, at log time.
pub struct WeightNorm;

impl Hook for WeightNorm {
    fn on_log(&mut self, log: &mut LogView) -> Result<()> {
        let params = log.model.params();
        let values: Vec<&Tensor> = params.iter().map(|(_, p)| p.value()).collect();
        let norm = match log.model.replicas() {
            None => global_grad_norm(&values)?,
            Some(r) => Tensor::global_norm_rows(&values, r)?,
        };
        log.metrics.set("weight_norm", &norm)
    }
}

/// Logs the Adam diagnostics (`adam_effective_step`, `adam_moment_ratio`, `update_to_decay`) at
/// logs whose index is a multiple of `every` (0: never): one fused launch, read back with the other
/// metrics; absent for SGD and before the first step.
pub struct AdamStats {
    /// Log interval in logs.
    pub every: u64,
}

impl Hook for AdamStats {
    fn on_log(&mut self, log: &mut LogView) -> Result<()> {
        if self.every == 0 || !log.index.is_multiple_of(self.every) {
            return Ok(());
        }
        let Some(raw) = log.optimizer.adam_diagnostics_raw(&*log.model, log.lr)? else {
            return Ok(());
        };
        let (n, replicas) = (raw.count, raw.replicas);
        let stat = move |pick: fn(&AdamDiagnostics) -> f32| {
            move |partials: &[f32], r: usize| {
                pick(&AdamDiagnostics::from_partials(partials, n, replicas, r))
            }
        };
        let m = &mut *log.metrics;
        m.set_derived(
            "adam_effective_step",
            &raw.partials,
            stat(|d| d.effective_step_mean),
        )?;
        m.set_derived(
            "adam_moment_ratio",
            &raw.partials,
            stat(|d| d.moment_ratio_mean),
        )?;
        m.set_derived(
            "update_to_decay",
            &raw.partials,
            stat(|d| d.update_to_decay),
        )
    }
}
