//! The step/epoch driver (see the crate docs for the order of one step).

use crate::data::{Batch, BatchSource};
use crate::hooks::{Hook, LogView, StepView};
use crate::metrics::Metrics;
use crate::objective::{Forward, Objective};
use dynlab_autodiff::{no_grad, Var};
use dynlab_models::{Ctx, Mode, Module, Record, Stateful};
use dynlab_optim::{global_grad_norm, LrSchedule, Optimizer};
use dynlab_runtime::{Error, GradScale, Result, Rng, Tensor};
use std::collections::BTreeMap;

/// A differentiable term added to the training loss that is computed from the model rather than
/// from the batch (a penalty on the learned function, such as its smoothness over a whole input
/// grid); it runs after the objective, inside the recorded step, so its gradient joins the loss's.
pub trait Regulariser {
    /// The name its term is logged by.
    fn name(&self) -> &str;

    /// The weighted term at optimizer step `step` (1-based), or `None` on steps it skips.
    fn term(&mut self, model: &dyn Module, step: u64) -> Result<Option<Var>>;
}

/// Trains a model: owns it, the optimizer, the schedule, the objective, the regularisers and the
/// hooks.
///
/// Metrics of the interval since the last [`Trainer::log`]: `loss` and each named loss term and
/// objective metric (weighted by batch rows), `grad_norm` (the global gradient norm before
/// clipping, mean over steps), `lr` (of the last step), and whatever the hooks add.
///
/// A model of stacked replicas (`dynlab_models::Replicas`) trains as that many separate runs: its
/// batches lead with the replica axis ([`crate::Batch::for_replicas`], [`crate::Loader::with_replicas`]),
/// each replica is clipped by its own gradient norm and updated with its own optimizer multipliers,
/// and [`Trainer::log_replicas`] returns one set of metrics per replica.
pub struct Trainer<M: Module> {
    /// The model being trained.
    pub model: M,
    /// The optimizer.
    pub optimizer: Optimizer,
    /// The learning rate per optimizer step.
    pub schedule: LrSchedule,
    /// Clip the global gradient norm to this value.
    pub clip_norm: Option<f32>,
    objective: Box<dyn Objective>,
    regularisers: Vec<Box<dyn Regulariser>>,
    hooks: Vec<Box<dyn Hook>>,
    metrics: Metrics,
    lr: f32,
    logs: u64,
}

impl<M: Module> Trainer<M> {
    /// A trainer of `model` minimising `objective`, without clipping or hooks.
    pub fn new(
        model: M,
        optimizer: Optimizer,
        schedule: LrSchedule,
        objective: impl Objective + 'static,
    ) -> Trainer<M> {
        let replicas = model.replicas().unwrap_or(1);
        Trainer {
            model,
            optimizer,
            schedule,
            clip_norm: None,
            objective: Box::new(objective),
            regularisers: Vec::new(),
            hooks: Vec::new(),
            metrics: Metrics::for_replicas(replicas),
            lr: 0.0,
            logs: 0,
        }
    }

    /// Adds `regulariser`'s term to the loss on the steps it chooses (logged by its name).
    pub fn with_regulariser(mut self, regulariser: impl Regulariser + 'static) -> Trainer<M> {
        self.regularisers.push(Box::new(regulariser));
        self
    }

    /// Clips the global gradient norm to `clip_norm` (`None`: no clipping).
    pub fn with_clip_norm(mut self, clip_norm: Option<f32>) -> Trainer<M> {
        self.clip_norm = clip_norm;
        self
    }

    /// Adds a hook (hooks run in the order they were added).
    pub fn with_hook(mut self, hook: impl Hook + 'static) -> Trainer<M> {
        self.hooks.push(Box::new(hook));
        self
    }

    /// Logs taken so far (across resumes).
    pub fn logs(&self) -> u64 {
        self.logs
    }

    /// One optimizer step on `batch`; stochastic layers draw from `rng`.
    pub fn step(&mut self, batch: &Batch, rng: &mut Rng) -> Result<()> {
        let replicas = self.model.replicas();
        self.optimizer.expect_replicas(replicas.unwrap_or(1))?;
        let mut taps = self.objective.taps();
        taps.extend(self.hooks.iter().flat_map(|h| h.taps()));
        let mut ctx = Ctx::train().with_rng(rng).with_taps(&taps);
        let output = self
            .model
            .forward(&Var::constant(batch.inputs.clone()), &mut ctx)?;
        let forward = Forward {
            mode: Mode::Train,
            output,
            taps: ctx.take_taps(),
            replicas,
        };
        drop(ctx);
        let mut loss = self.objective.loss(&forward, &batch.targets)?;
        let step = self.optimizer.steps() + 1;
        for r in &mut self.regularisers {
            let Some(term) = r.term(&self.model, step)? else {
                continue;
            };
            if replicas.is_some() || term.shape() != loss.total.shape() {
                return Err(Error::shape(
                    "Trainer::step",
                    format!("regulariser `{}` term {:?}", r.name(), term.shape()),
                    format!(
                        "a term of the loss's shape {:?}, one network",
                        loss.total.shape()
                    ),
                ));
            }
            loss.total = loss.total.add(&term)?;
            loss.terms.push((r.name().to_string(), term));
        }
        let grads = match replicas {
            None => loss.total.backward()?,
            Some(_) => loss.total.sum_all()?.backward()?,
        };
        let grad_norm = {
            let params = self.model.params();
            let list: Vec<&Tensor> = params
                .iter()
                .filter_map(|(_, p)| grads.tensor(p.var()))
                .collect();
            match replicas {
                None => global_grad_norm(&list)?,
                Some(r) => Tensor::global_norm_rows(&list, r)?,
            }
        };
        let scale = match self.clip_norm {
            Some(max_norm) => GradScale::Clip {
                norm: &grad_norm,
                max_norm,
            },
            None => GradScale::Constant(1.0),
        };
        self.lr = self.schedule.at(self.optimizer.steps() + 1);
        let rows = rows_per_replica(batch, replicas) as f32;
        no_grad(|| -> Result<()> {
            self.metrics.add("loss", loss.total.value(), rows)?;
            for (name, term) in &loss.terms {
                self.metrics.add(name, term.value(), rows)?;
            }
            for (name, value) in &loss.metrics {
                self.metrics.add(name, value, rows)?;
            }
            self.metrics.add("grad_norm", &grad_norm, 1.0)
        })?;
        drop(loss);
        self.run_step_hooks(batch, &forward, &grads, |h, v| h.after_backward(v))?;
        self.optimizer
            .step_scaled(&mut self.model, &grads, self.lr, scale)?;
        self.run_step_hooks(batch, &forward, &grads, |h, v| h.after_step(v))
    }

    fn run_step_hooks(
        &mut self,
        batch: &Batch,
        forward: &Forward,
        grads: &dynlab_autodiff::Grads,
        mut call: impl FnMut(&mut dyn Hook, &mut StepView) -> Result<()>,
    ) -> Result<()> {
        for hook in &mut self.hooks {
            let mut view = StepView {
                model: &mut self.model,
                optimizer: &mut self.optimizer,
                batch,
                forward,
                grads,
                metrics: &mut self.metrics,
                lr: self.lr,
            };
            call(hook.as_mut(), &mut view)?;
        }
        Ok(())
    }

    /// One pass over `source`; returns the number of steps taken.
    pub fn epoch(&mut self, source: &mut dyn BatchSource, rng: &mut Rng) -> Result<u64> {
        let mut steps = 0;
        while let Some(batch) = source.next_batch(rng)? {
            self.step(&batch, rng)?;
            steps += 1;
        }
        if steps == 0 {
            return Err(Error::value(
                "Trainer::epoch",
                "a pass without batches",
                "a source that yields at least one batch per pass",
            ));
        }
        Ok(steps)
    }

    /// Ends the interval: the hooks' log-time work, then every metric in one read-back. A loss
    /// that is not finite is an error naming the step (training diverged). A model of replicas
    /// logs with [`Trainer::log_replicas`].
    pub fn log(&mut self) -> Result<BTreeMap<String, f32>> {
        if let Some(r) = self.model.replicas() {
            return Err(Error::value(
                "Trainer::log",
                format!("a model of {r} replicas"),
                "one model (log replicas with Trainer::log_replicas)",
            ));
        }
        Ok(self.log_replicas()?.pop().unwrap_or_default())
    }

    /// [`Trainer::log`] for each replica (one entry for one model): one read-back for all.
    pub fn log_replicas(&mut self) -> Result<Vec<BTreeMap<String, f32>>> {
        self.logs += 1;
        for hook in &mut self.hooks {
            let mut view = LogView {
                model: &mut self.model,
                optimizer: &mut self.optimizer,
                metrics: &mut self.metrics,
                lr: self.lr,
                index: self.logs,
            };
            hook.on_log(&mut view)?;
        }
        match self.optimizer.replicas() {
            [] => self.metrics.set_host("lr", self.lr),
            scales => {
                let lrs = scales.iter().map(|s| self.lr * s.lr).collect();
                self.metrics.set_host_replicas("lr", lrs)?
            }
        }
        let replicas = self.metrics.read_replicas()?;
        for (r, values) in replicas.iter().enumerate() {
            let diverged = ["loss", "weight_norm"]
                .iter()
                .filter_map(|k| values.get(*k).map(|v| (k, v)))
                .find(|(_, v)| !v.is_finite());
            if let Some((name, value)) = diverged {
                let which = match self.model.replicas() {
                    Some(_) => format!(" in replica {r}"),
                    None => String::new(),
                };
                return Err(Error::Numerical {
                    op: "Trainer::log",
                    message: format!(
                        "training diverged{which}: {name} is {value} after step {}",
                        self.optimizer.steps()
                    ),
                });
            }
        }
        Ok(replicas)
    }

    /// The objective's loss and metrics on `batch` in evaluation mode, without recording (one
    /// read-back).
    pub fn evaluate(&self, batch: &Batch) -> Result<BTreeMap<String, f32>> {
        let mut metrics = Metrics::default();
        self.evaluate_with(batch, &mut metrics, "")?;
        metrics.read()
    }

    /// [`Trainer::evaluate`] for each replica (one entry for one model).
    pub fn evaluate_replicas(&self, batch: &Batch) -> Result<Vec<BTreeMap<String, f32>>> {
        let mut metrics = Metrics::for_replicas(self.model.replicas().unwrap_or(1));
        self.evaluate_with(batch, &mut metrics, "")?;
        metrics.read_replicas()
    }

    /// [`Trainer::evaluate`] left on the device: the loss and metrics join the interval's metrics
    /// as `<prefix>loss`, `<prefix>acc`, … and come back with the next [`Trainer::log`].
    pub fn evaluate_into(&mut self, batch: &Batch, prefix: &str) -> Result<()> {
        let mut metrics = std::mem::take(&mut self.metrics);
        let result = self.evaluate_with(batch, &mut metrics, prefix);
        self.metrics = metrics;
        result
    }

    fn evaluate_with(&self, batch: &Batch, metrics: &mut Metrics, prefix: &str) -> Result<()> {
        no_grad(|| {
            let taps = self.objective.taps();
            let mut ctx = Ctx::eval().with_taps(&taps);
            let input = Var::constant(batch.inputs.clone());
            let output = self.model.forward(&input, &mut ctx)?;
            let forward = Forward {
                mode: Mode::Eval,
                output,
                taps: ctx.take_taps(),
                replicas: self.model.replicas(),
            };
            let loss = self.objective.loss(&forward, &batch.targets)?;
            metrics.set(&format!("{prefix}loss"), loss.total.value())?;
            for (name, term) in &loss.terms {
                metrics.set(&format!("{prefix}{name}"), term.value())?;
            }
            for (name, value) in &loss.metrics {
                metrics.set(&format!("{prefix}{name}"), value)?;
            }
            Ok(())
        })
    }
}

/// Rows per replica of `batch` (its rows for one model; axis 1 for replicas).
fn rows_per_replica(batch: &Batch, replicas: Option<usize>) -> usize {
    match replicas {
        None => batch.rows(),
        Some(_) => batch.targets.shape().get(1).copied().unwrap_or(0),
    }
}

/// The model (`model.`), the optimizer (`optim.`) and the log count.
impl<M: Module> Stateful for Trainer<M> {
    fn save_state(&self) -> Result<Record> {
        let mut record = Record::default()
            .with_value("logs", self.logs)
            .nest("model", Record::of_module(&self.model))
            .nest("optim", self.optimizer.save_state()?);
        for (i, hook) in self.hooks.iter().enumerate() {
            record = record.nest(&format!("hook{i}"), hook.save_state()?);
        }
        Ok(record)
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        record.part("model").restore_module(&mut self.model)?;
        self.optimizer.load_state(&record.part("optim"))?;
        for (i, hook) in self.hooks.iter_mut().enumerate() {
            hook.load_state(&record.part(&format!("hook{i}")))?;
        }
        self.logs = record.value("logs")?;
        Ok(())
    }
}
