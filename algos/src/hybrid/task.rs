//! What the hybrid trainer needs from a training task, and its implementation for any dynlab
//! [`Trainer`] with a batch stream.

use dynlab_autodiff::Grads;
use dynlab_models::{Module, Record, Stateful};
use dynlab_optim::global_grad_norm;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Hook, StepView, Trainer};
use std::collections::BTreeMap;

/// The gradient norm of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct FullStepReport {
    /// The loss at the step's starting point (on the monitor batch when the task has one).
    pub loss: f64,
    /// The global gradient norm.
    pub grad_norm: f64,
    /// The gradient norm of each parameter group.
    pub group_grad_norms: Vec<f64>,
}

/// A training task the hybrid trainer can drive.
pub trait HybridTask {
    /// The device the parameters live on.
    fn device(&self) -> &Device;

    /// Parameter groups: a name and the parameters' names.
    fn groups(&self) -> Vec<(String, Vec<String>)>;

    /// The parameters by name (handles: an update replaces them, never writes into them).
    fn parameters(&self) -> Vec<(String, Tensor)>;

    /// Sets parameters by name (a predicted update).
    fn set_parameters(&mut self, values: &[(String, Tensor)]) -> Result<()>;

    /// The learning rate of the next optimizer step.
    fn lr(&self) -> f64;

    /// The loss on the next batch at the current parameters, without a backward pass.
    fn forward_loss(&mut self) -> Result<f64>;

    /// Forward, backward and optimizer step on the next batch.
    fn full_step(&mut self) -> Result<FullStepReport>;

    /// Everything a roll-back restores (parameters and optimizer state).
    fn save(&self) -> Result<Record>;

    /// Restores what [`HybridTask::save`] wrote.
    fn restore(&mut self, record: &Record) -> Result<()>;

    /// Held-out and whole-train metrics (`train_loss`, `test_loss`, `test_accuracy`, …).
    fn evaluate(&mut self) -> Result<BTreeMap<String, f64>>;
}

/// Logs the gradient norm of each parameter group as `grad_norm.<group>`.
struct GroupGradNorms {
    groups: Vec<(String, Vec<String>)>,
}

impl Hook for GroupGradNorms {
    fn after_backward(&mut self, step: &mut StepView) -> Result<()> {
        let params = step.model.params();
        for (group, names) in &self.groups {
            let grads: Vec<&Tensor> = params
                .iter()
                .filter(|(n, _)| names.contains(n))
                .filter_map(|(_, p)| grad_of(step.grads, p))
                .collect();
            if grads.is_empty() {
                continue;
            }
            let norm = global_grad_norm(&grads)?;
            step.metrics
                .add(&format!("grad_norm.{group}"), &norm, 1.0)?;
        }
        Ok(())
    }
}

fn grad_of<'g>(grads: &'g Grads, p: &dynlab_models::Param) -> Option<&'g Tensor> {
    grads.tensor(p.var())
}

/// Where the next batch comes from: called with the number of batches drawn so far.
pub type BatchStream = Box<dyn FnMut(u64, &mut Rng) -> Result<Batch>>;

/// A [`Trainer`] over a batch stream, with named evaluation batches. Groups are the layers: the
/// parameters that share a path up to their last name (`mlp.layers.0.weight` and `.bias`).
pub struct TrainerTask<M: Module> {
    /// The trainer (public so a test can change its schedule mid-run).
    pub trainer: Trainer<M>,
    stream: BatchStream,
    eval: Vec<(String, Batch)>,
    rng: Rng,
    drawn: u64,
    groups: Vec<(String, Vec<String>)>,
    monitor: Option<Batch>,
}

impl<M: Module> TrainerTask<M> {
    /// A task training with `trainer` on `stream`'s batches (stochastic layers and the stream draw
    /// from `rng`), evaluated on `eval`'s named batches.
    pub fn new(
        trainer: Trainer<M>,
        stream: BatchStream,
        eval: Vec<(String, Batch)>,
        rng: Rng,
    ) -> TrainerTask<M> {
        let groups = layer_groups(&trainer.model);
        let trainer = trainer.with_hook(GroupGradNorms {
            groups: groups.clone(),
        });
        TrainerTask {
            trainer,
            stream,
            eval,
            rng,
            drawn: 0,
            groups,
            monitor: None,
        }
    }

    /// Reports the loss on the fixed `batch` (at each step's starting point, one forward pass
    /// more per full step) instead of the next training batch's: a minibatch loss is too noisy
    /// for the monitor's spike, prediction-error and oscillation tests, and the predicted
    /// trajectory is then one function of the parameters. Predicted steps still draw (and
    /// skip) their training batch, so the full steps see the batches the baseline sees.
    pub fn with_monitor_batch(mut self, batch: Batch) -> TrainerTask<M> {
        self.monitor = Some(batch);
        self
    }

    fn monitor_loss(&self, batch: &Batch) -> Result<f64> {
        let metrics = self.trainer.evaluate(batch)?;
        Ok(metrics.get("loss").copied().unwrap_or(f32::NAN) as f64)
    }

    fn next_batch(&mut self) -> Result<Batch> {
        let batch = (self.stream)(self.drawn, &mut self.rng)?;
        self.drawn += 1;
        Ok(batch)
    }
}

/// The layers of `model`: parameter names grouped by their path without the last name.
pub fn layer_groups(model: &dyn Module) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for (name, _) in model.params() {
        let layer = name.rsplit_once('.').map_or("", |(l, _)| l).to_string();
        match groups.iter_mut().find(|(g, _)| *g == layer) {
            Some((_, names)) => names.push(name),
            None => groups.push((layer, vec![name])),
        }
    }
    groups
}

impl<M: Module> HybridTask for TrainerTask<M> {
    fn device(&self) -> &Device {
        self.trainer.model.params()[0].1.value().device()
    }

    fn groups(&self) -> Vec<(String, Vec<String>)> {
        self.groups.clone()
    }

    fn parameters(&self) -> Vec<(String, Tensor)> {
        (self.trainer.model.params().into_iter())
            .map(|(n, p)| (n, p.value().clone()))
            .collect()
    }

    fn set_parameters(&mut self, values: &[(String, Tensor)]) -> Result<()> {
        for (name, param) in self.trainer.model.params_mut() {
            if let Some((_, v)) = values.iter().find(|(n, _)| *n == name) {
                param.set(v.clone())?;
            }
        }
        Ok(())
    }

    fn lr(&self) -> f64 {
        self.trainer.schedule.at(self.trainer.optimizer.steps() + 1) as f64
    }

    fn forward_loss(&mut self) -> Result<f64> {
        let batch = self.next_batch()?;
        self.monitor_loss(self.monitor.as_ref().unwrap_or(&batch))
    }

    fn full_step(&mut self) -> Result<FullStepReport> {
        let batch = self.next_batch()?;
        let monitored = match &self.monitor {
            Some(m) => Some(self.monitor_loss(m)?),
            None => None,
        };
        let mut rng = self.rng;
        self.trainer.step(&batch, &mut rng)?;
        self.rng = rng;
        // A non-finite loss is the monitor's to handle (roll back), not an error here.
        let m = match self.trainer.log() {
            Err(Error::Numerical { .. }) => BTreeMap::new(),
            other => other?,
        };
        let get = |k: &str| m.get(k).map_or(f64::NAN, |v| *v as f64);
        Ok(FullStepReport {
            loss: monitored.unwrap_or_else(|| get("loss")),
            grad_norm: get("grad_norm"),
            group_grad_norms: (self.groups.iter())
                .map(|(g, _)| get(&format!("grad_norm.{g}")))
                .collect(),
        })
    }

    fn save(&self) -> Result<Record> {
        self.trainer.save_state()
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(record)
    }

    fn evaluate(&mut self) -> Result<BTreeMap<String, f64>> {
        let mut out = BTreeMap::new();
        for (name, batch) in &self.eval {
            for (k, v) in self.trainer.evaluate(batch)? {
                out.insert(format!("{name}_{k}"), v as f64);
            }
        }
        if out.is_empty() {
            return Err(Error::value(
                "TrainerTask::evaluate",
                "no evaluation batches",
                "at least one named batch",
            ));
        }
        Ok(out)
    }
}
