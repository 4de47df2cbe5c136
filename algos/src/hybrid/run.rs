//! The hybrid experiment: for each seed, the baseline (every step full) and the hybrid trainer on
//! the same task with the same seed, batches and number of optimizer-trajectory steps, then a sweep
//! over fixed horizons × confidence thresholds. Each run is one unit of [`run_experiment`] (a
//! resumed experiment restarts the unit it was in), and every step of every run is a history row,
//! so the summary, `sweep.csv` and the figures are all computed from the history.
//!
//! Reported per run: backward passes executed, wall seconds of the training loop (the dynamics
//! model's learning and queries included, and listed on their own), final train and test loss
//! (and accuracy for classifiers), divergence events (signals raised, roll-backs among them) and
//! the skipped fraction `1 − backward passes / steps`. The relative final-loss change of a hybrid
//! run is `(L_hybrid − L_baseline)/L_baseline` on the final whole-train-set loss, against the
//! baseline of the same seed. Before the first timed run a throw-away task takes one step, so
//! compiling the task's kernels is charged to no run.

use super::control::{Action, HybridConfig, Phase};
use super::task::{BatchStream, HybridTask, TrainerTask};
use super::trainer::{HybridTrainer, StepLog};
use crate::grokking::data::{ModOp, ModularData};
use crate::spd::targets::sparse_features;
use dynlab_data::{digits, shipped_digits_dir, split_per_class, HostRng, SplitRule};
use dynlab_harness::{
    history_row, plot_history, plot_scatter, run_experiment, Experiment, Figure, History, Panel,
    RunDir, RunOptions, Scatter, Summary, Value,
};
use dynlab_models::{Activation, BaselineMlp, Init, Mlp, Module, PairEncoding, Record, Tms};
use dynlab_optim::{OptimConfig, OptimPlan};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, CrossEntropy, Mse, Objective, Trainer};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The training task (`[task]`, `kind = "grokking" | "digits" | "tms"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskConfig {
    /// The grokking MLP (one-hot operands, GELU hidden layers) on `a ∘ b mod p`, full batch.
    Grokking {
        /// The prime modulus.
        p: usize,
        /// `add`, `sub`, `mul` or `div`.
        op: String,
        /// Share of all pairs used for training.
        train_frac: f64,
        /// Hidden widths.
        hidden: Vec<usize>,
    },
    /// A ReLU MLP classifier on 8×8 digits in IDX format (the shipped UCI digits unless `data_dir`
    /// holds others), minibatches drawn without replacement per epoch; the hybrid trainer's
    /// monitor watches the loss on the whole training split.
    Digits {
        /// Hidden widths.
        hidden: Vec<usize>,
        /// Minibatch size.
        batch: usize,
        /// Share of each class held out.
        test_frac: f64,
        /// A folder with the IDX files (default: the shipped digits).
        #[serde(default)]
        data_dir: Option<String>,
    },
    /// The toy model of superposition `x̂ = ReLU(WᵀW x + b)` on sparse features, fresh batches each
    /// step, mean squared error; the hybrid trainer's monitor watches the loss on a fixed batch of
    /// `eval_batch` examples.
    Tms {
        /// Features.
        features: usize,
        /// Hidden dimensions.
        hidden: usize,
        /// Probability of a feature being active.
        probability: f32,
        /// Batch size.
        batch: usize,
        /// Examples in each of the fixed "train" and "test" evaluation batches.
        eval_batch: usize,
    },
}

/// The sweep (`[sweep]`): one hybrid run per fixed horizon × threshold × seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Horizons (each run uses one).
    pub horizons: Vec<u64>,
    /// Confidence thresholds.
    pub thresholds: Vec<f64>,
    /// Seeds (each must be one of the experiment's seeds, whose baseline it is compared with).
    pub seeds: Vec<u64>,
}

/// The experiment (see the module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridRunConfig {
    /// The run folder's name.
    pub name: String,
    /// Where run folders go.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// Seeds: each runs the baseline and the hybrid trainer.
    pub seeds: Vec<u64>,
    /// Steps on the optimizer trajectory per run.
    pub steps: u64,
    /// The task.
    pub task: TaskConfig,
    /// The optimizer (the same for both modes).
    pub optim: OptimConfig,
    /// The hybrid trainer.
    #[serde(default)]
    pub hybrid: HybridConfig,
    /// The optional sweep.
    #[serde(default)]
    pub sweep: Option<SweepConfig>,
}

fn default_runs_dir() -> String {
    "runs".into()
}

impl HybridRunConfig {
    /// Checks what the parts' own checks do not.
    pub fn check(&self) -> Result<()> {
        if self.seeds.is_empty() {
            return Err(Error::config("seeds", "empty: at least one seed"));
        }
        if self.steps < self.hybrid.warmup_steps + 2 {
            return Err(Error::config(
                "steps",
                format!("{} < hybrid.warmup_steps + 2", self.steps),
            ));
        }
        self.hybrid.check()?;
        self.optim.plan(self.steps)?;
        if let Some(s) = &self.sweep {
            if s.horizons.is_empty() || s.thresholds.is_empty() || s.seeds.is_empty() {
                return Err(Error::config(
                    "sweep",
                    "horizons, thresholds and seeds non-empty",
                ));
            }
            if let Some(seed) = s.seeds.iter().find(|s| !self.seeds.contains(s)) {
                return Err(Error::config(
                    "sweep.seeds",
                    format!("{seed} is not in seeds (its baseline would be missing)"),
                ));
            }
            for &t in &s.thresholds {
                HybridConfig {
                    confidence_threshold: t,
                    ..self.hybrid.clone()
                }
                .check()?;
            }
            if s.horizons.contains(&0) {
                return Err(Error::config("sweep.horizons", "0 is not a horizon"));
            }
        }
        Ok(())
    }
}

/// What one run is.
#[derive(Clone, Debug, PartialEq)]
struct RunSpec {
    seed: u64,
    /// `baseline`, `hybrid` or `sweep`.
    mode: &'static str,
    hybrid: HybridConfig,
}

history_row! {
    /// One step of one run.
    pub struct HybridRow {
        /// The run (0-based unit).
        pub run: u64,
        /// `baseline`, `hybrid` or `sweep`.
        pub mode: String,
        /// The run's seed.
        pub seed: u64,
        /// The longest horizon allowed (0 for the baseline).
        pub max_horizon: u64,
        /// The confidence threshold (NaN for the baseline).
        pub threshold: f64,
        /// Steps on the trajectory after this one.
        pub step: u64,
        /// `warmup`, `full`, `predict` or `correct`.
        pub phase: String,
        /// `full`, `predicted` or `micro_correction`.
        pub action: String,
        /// The loss at the step's starting point.
        pub loss: f64,
        /// The predicted loss (predicted steps after the first of an episode).
        pub predicted_loss: Option<f64>,
        /// The dynamics model's confidence.
        pub confidence: f64,
        /// The episode's horizon.
        pub horizon: u64,
        /// The signal raised.
        pub signal: Option<String>,
        /// 1 when the step ended in a roll-back.
        pub rolled_back: u64,
        /// Backward passes so far.
        pub backward_passes: u64,
        /// Wall seconds of this run's training loop so far (the harness's `seconds` column counts
        /// the whole experiment).
        pub run_seconds: f64,
        /// Of which in the dynamics model.
        pub dynamics_seconds: f64,
        /// Final whole-train-set loss (last row of a run).
        pub train_loss: Option<f64>,
        /// Final held-out loss (last row of a run).
        pub test_loss: Option<f64>,
        /// Final held-out accuracy (last row of a classifier's run).
        pub test_accuracy: Option<f64>,
    }
}

/// One run's results, from its history rows.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// `baseline`, `hybrid` or `sweep`.
    pub mode: String,
    /// The seed.
    pub seed: u64,
    /// The longest horizon (0 for the baseline).
    pub max_horizon: u64,
    /// The confidence threshold (NaN for the baseline).
    pub threshold: f64,
    /// Backward passes executed.
    pub backward_passes: u64,
    /// Steps executed (replays after roll-backs included).
    pub steps_run: u64,
    /// Wall seconds of the training loop.
    pub seconds: f64,
    /// Of which in the dynamics model.
    pub dynamics_seconds: f64,
    /// Final whole-train-set loss.
    pub train_loss: f64,
    /// Final held-out loss.
    pub test_loss: f64,
    /// Final held-out accuracy (NaN for regression).
    pub test_accuracy: f64,
    /// Signals raised.
    pub divergence_events: u64,
    /// Roll-backs among them.
    pub rollbacks: u64,
    /// `1 − backward passes / steps`.
    pub skipped: f64,
    /// `(L − L_baseline)/L_baseline` of the final train loss (0 for the baseline).
    pub relative_loss_change: f64,
}

/// What [`run_hybrid`] returns.
#[derive(Clone, Debug)]
pub struct HybridOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every run, in unit order.
    pub results: Vec<RunResult>,
}

/// A task with its model type erased behind the trait.
type BoxedTask = Box<dyn HybridTask>;

impl<T: HybridTask + ?Sized> HybridTask for Box<T> {
    fn device(&self) -> &Device {
        (**self).device()
    }
    fn groups(&self) -> Vec<(String, Vec<String>)> {
        (**self).groups()
    }
    fn parameters(&self) -> Vec<(String, Tensor)> {
        (**self).parameters()
    }
    fn set_parameters(&mut self, values: &[(String, Tensor)]) -> Result<()> {
        (**self).set_parameters(values)
    }
    fn lr(&self) -> f64 {
        (**self).lr()
    }
    fn forward_loss(&mut self) -> Result<f64> {
        (**self).forward_loss()
    }
    fn full_step(&mut self) -> Result<super::task::FullStepReport> {
        (**self).full_step()
    }
    fn save(&self) -> Result<Record> {
        (**self).save()
    }
    fn restore(&mut self, record: &Record) -> Result<()> {
        (**self).restore(record)
    }
    fn evaluate(&mut self) -> Result<BTreeMap<String, f64>> {
        (**self).evaluate()
    }
}

/// The task of `config` for `seed` (model initialisation, split and batches all from the seed);
/// `monitored` gives minibatch tasks their fixed monitor batch (the hybrid trainer's, never the
/// baseline's: its extra forward pass is the hybrid method's cost).
pub fn build_task(
    config: &HybridRunConfig,
    seed: u64,
    monitored: bool,
    device: &Device,
) -> Result<BoxedTask> {
    let plan = config.optim.plan(config.steps)?;
    let mut rng = Rng::new(seed);
    match &config.task {
        TaskConfig::Grokking {
            p,
            op,
            train_frac,
            hidden,
        } => {
            let op = ModOp::parse(op).ok_or_else(|| {
                Error::config("task.op", format!("`{op}`: one of add, sub, mul, div"))
            })?;
            let data = ModularData::new(*p, op, *train_frac, seed, device)?;
            let model = BaselineMlp::new(
                *p,
                PairEncoding::OneHot,
                hidden,
                Init::PytorchDefault,
                &mut rng,
                device,
            )?;
            let split = |s: &crate::grokking::data::ModularSplit| -> Result<Batch> {
                Ok(Batch {
                    inputs: model.encode_pairs(&s.pairs)?,
                    targets: s.labels.clone(),
                })
            };
            let (train, test) = (split(&data.train)?, split(&data.test)?);
            let full = train.clone();
            let stream: BatchStream = Box::new(move |_, _| Ok(full.clone()));
            let eval = vec![("train".into(), train), ("test".into(), test)];
            Ok(boxed(
                trainer(&plan, model, CrossEntropy)?,
                stream,
                eval,
                None,
                rng,
            ))
        }
        TaskConfig::Digits {
            hidden,
            batch,
            test_frac,
            data_dir,
        } => {
            let root = data_dir
                .clone()
                .map_or_else(shipped_digits_dir, PathBuf::from);
            let data = digits(&root, device)?;
            let (train, test) = split_per_class(&data, SplitRule::Fraction(1.0 - test_frac), seed)?;
            let flat = |d: &dynlab_train::Dataset| -> Result<Batch> {
                let n = d.inputs.shape()[0] as isize;
                Ok(Batch {
                    inputs: d.inputs.reshape(&[n, -1])?,
                    targets: d.targets.clone(),
                })
            };
            let (train, test) = (flat(&train)?, flat(&test)?);
            let inputs = train.inputs.shape()[1];
            let dims: Vec<usize> = std::iter::once(inputs)
                .chain(hidden.iter().copied())
                .chain(std::iter::once(10))
                .collect();
            let model = Mlp::new(
                &dims,
                Activation::Relu,
                Init::KaimingUniform,
                true,
                &mut rng,
                device,
            )?;
            let stream = epoch_batches(train.clone(), *batch, seed)?;
            let monitor = monitored.then(|| train.clone());
            let eval = vec![("train".into(), train), ("test".into(), test)];
            Ok(boxed(
                trainer(&plan, model, CrossEntropy)?,
                stream,
                eval,
                monitor,
                rng,
            ))
        }
        TaskConfig::Tms {
            features,
            hidden,
            probability,
            batch,
            eval_batch,
        } => {
            let model = Tms::new(*features, *hidden, &mut rng, device)?;
            let mut eval_rng = Rng::new(seed ^ 0xE7A1);
            let mut fixed = || -> Result<Batch> {
                let x = sparse_features(
                    *eval_batch,
                    *features,
                    *probability,
                    0.0,
                    &mut eval_rng,
                    device,
                )?;
                Ok(Batch {
                    inputs: x.clone(),
                    targets: x,
                })
            };
            let eval = vec![("train".into(), fixed()?), ("test".into(), fixed()?)];
            let monitor = if monitored { Some(fixed()?) } else { None };
            let (f, p, b, d) = (*features, *probability, *batch, device.clone());
            let stream: BatchStream = Box::new(move |drawn, _| {
                let mut r = Rng::new(seed.wrapping_mul(0x9E37_79B9).wrapping_add(drawn));
                let x = sparse_features(b, f, p, 0.0, &mut r, &d)?;
                Ok(Batch {
                    inputs: x.clone(),
                    targets: x,
                })
            });
            Ok(boxed(
                trainer(&plan, model, Mse)?,
                stream,
                eval,
                monitor,
                rng,
            ))
        }
    }
}

fn trainer<M: Module>(
    plan: &OptimPlan,
    model: M,
    objective: impl Objective + 'static,
) -> Result<Trainer<M>> {
    let trainer = Trainer::new(model, plan.optimizer()?, plan.schedule, objective);
    Ok(trainer.with_clip_norm(plan.clip_norm))
}

fn boxed<M: Module + 'static>(
    trainer: Trainer<M>,
    stream: BatchStream,
    eval: Vec<(String, Batch)>,
    monitor: Option<Batch>,
    rng: Rng,
) -> BoxedTask {
    let task = TrainerTask::new(trainer, stream, eval, rng);
    match monitor {
        Some(batch) => Box::new(task.with_monitor_batch(batch)),
        None => Box::new(task),
    }
}

/// Minibatches of `data` without replacement, a fresh permutation per epoch; batch `k` depends
/// only on `seed` and `k`, so the baseline and the hybrid run see the same batches.
fn epoch_batches(data: Batch, batch: usize, seed: u64) -> Result<BatchStream> {
    let n = data.inputs.shape()[0];
    if batch == 0 || batch > n {
        return Err(Error::config(
            "task.batch",
            format!("{batch} with {n} training examples: 1..={n}"),
        ));
    }
    let per_epoch = n / batch;
    Ok(Box::new(move |drawn, _| {
        let (epoch, k) = (drawn / per_epoch as u64, drawn as usize % per_epoch);
        let order = HostRng::new(seed ^ epoch.wrapping_mul(0x2545_F491_4F6C_DD1D)).permutation(n);
        let idx: Vec<i32> = order[k * batch..(k + 1) * batch]
            .iter()
            .map(|&i| i as i32)
            .collect();
        let idx = Tensor::from_vec(idx, &[batch], data.inputs.device())?;
        Ok(Batch {
            inputs: data.inputs.index_select(0, &idx)?,
            targets: data.targets.index_select(0, &idx)?,
        })
    }))
}

struct Study {
    config: HybridRunConfig,
    runs: Vec<RunSpec>,
    device: Device,
    steps_taken: u64,
    outcome: Option<HybridOutcome>,
    warmed_up: bool,
}

impl Study {
    fn new(config: &HybridRunConfig) -> Result<Study> {
        config.check()?;
        let mut runs = Vec::new();
        for &seed in &config.seeds {
            for mode in ["baseline", "hybrid"] {
                runs.push(RunSpec {
                    seed,
                    mode,
                    hybrid: config.hybrid.clone(),
                });
            }
        }
        if let Some(s) = &config.sweep {
            for &h in &s.horizons {
                for &t in &s.thresholds {
                    for &seed in &s.seeds {
                        let hybrid = HybridConfig {
                            horizons: vec![h],
                            confidence_threshold: t,
                            ..config.hybrid.clone()
                        };
                        runs.push(RunSpec {
                            seed,
                            mode: "sweep",
                            hybrid,
                        });
                    }
                }
            }
        }
        Ok(Study {
            config: config.clone(),
            runs,
            device: Device::default()?,
            steps_taken: 0,
            outcome: None,
            warmed_up: false,
        })
    }

    /// One full step, one forward pass and one evaluation of a throw-away task, so that the
    /// first timed run is not charged with compiling the task's kernels (the dynamics model's
    /// compile inside the first hybrid run and count in its time).
    fn warm_up(&mut self, seed: u64) -> Result<()> {
        let mut task = build_task(&self.config, seed, true, &self.device)?;
        task.full_step()?;
        task.forward_loss()?;
        task.evaluate()?;
        self.warmed_up = true;
        Ok(())
    }

    /// Runs `spec` to the end, pushing a row per step.
    fn run(&mut self, unit: u64, spec: &RunSpec, history: &mut History) -> Result<String> {
        if !self.warmed_up {
            self.warm_up(spec.seed)?;
        }
        let baseline = spec.mode == "baseline";
        let mut task = build_task(&self.config, spec.seed, !baseline, &self.device)?;
        let steps = self.config.steps;
        let meta = RowMeta {
            run: unit,
            mode: spec.mode,
            seed: spec.seed,
            max_horizon: match baseline {
                true => 0,
                false => spec.hybrid.horizons.iter().copied().max().unwrap_or(0),
            },
            threshold: match baseline {
                true => f64::NAN,
                false => spec.hybrid.confidence_threshold,
            },
        };
        let started = Instant::now();
        let mut rows = Vec::new();
        let (metrics, seconds) = if baseline {
            for step in 1..=steps {
                let report = task.full_step()?;
                let log = full_step_log(step, report.loss);
                rows.push(meta.row(&log, started.elapsed().as_secs_f64(), 0.0));
            }
            let seconds = started.elapsed().as_secs_f64();
            (task.evaluate()?, seconds)
        } else {
            let mut trainer = HybridTrainer::new(task, spec.hybrid.clone(), steps, spec.seed)?;
            while trainer.step_count() < steps {
                let log = trainer.step()?;
                let elapsed = started.elapsed().as_secs_f64();
                rows.push(meta.row(&log, elapsed, trainer.counters().dynamics_seconds));
            }
            let seconds = started.elapsed().as_secs_f64();
            (trainer.task_mut().evaluate()?, seconds)
        };
        self.steps_taken += rows.len() as u64;
        let last = rows.last_mut().ok_or_else(|| {
            Error::value("run_hybrid", "a run without steps", "at least one step")
        })?;
        last.train_loss = metrics.get("train_loss").copied();
        last.test_loss = metrics.get("test_loss").copied();
        last.test_accuracy = metrics.get("test_acc").copied();
        let status = format!(
            "{} seed {}: {} backward passes for {} steps, {seconds:.1} s, train loss {:.4e}",
            spec.mode,
            spec.seed,
            last.backward_passes,
            steps,
            last.train_loss.unwrap_or(f64::NAN)
        );
        for r in &rows {
            history.push(r)?;
        }
        Ok(status)
    }
}

/// The columns a run's rows share.
struct RowMeta {
    run: u64,
    mode: &'static str,
    seed: u64,
    max_horizon: u64,
    threshold: f64,
}

impl RowMeta {
    fn row(&self, log: &StepLog, seconds: f64, dynamics_seconds: f64) -> HybridRow {
        HybridRow {
            run: self.run,
            mode: self.mode.into(),
            seed: self.seed,
            max_horizon: self.max_horizon,
            threshold: self.threshold,
            step: log.step,
            phase: log.phase.name().into(),
            action: action_name(log.action).into(),
            loss: log.loss,
            predicted_loss: log.predicted_loss,
            confidence: log.confidence,
            horizon: log.horizon,
            signal: log.signal.map(|s| s.name().to_string()),
            rolled_back: u64::from(log.rolled_back),
            backward_passes: log.backward_passes,
            run_seconds: seconds,
            dynamics_seconds,
            train_loss: None,
            test_loss: None,
            test_accuracy: None,
        }
    }
}

/// A baseline step as a log line.
fn full_step_log(step: u64, loss: f64) -> StepLog {
    StepLog {
        step,
        phase: Phase::Full,
        action: Action::Full,
        loss,
        predicted_loss: None,
        confidence: f64::NAN,
        horizon: 0,
        signal: None,
        rolled_back: false,
        backward_passes: step,
    }
}

fn action_name(action: Action) -> &'static str {
    match action {
        Action::Full => "full",
        Action::Predicted => "predicted",
        Action::MicroCorrection => "micro_correction",
    }
}

impl Experiment for Study {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.runs.len() as u64
    }

    fn unit_name(&self) -> &str {
        "runs"
    }

    fn checkpoint_every(&self) -> u64 {
        1
    }

    fn run_unit(&mut self, unit: u64, history: &mut History) -> Result<String> {
        let spec = self.runs[(unit - 1) as usize].clone();
        self.run(unit - 1, &spec, history)
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default().with_value("steps_taken", self.steps_taken))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.steps_taken = record.value("steps_taken")?;
        Ok(())
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let results = results(history, self.runs.len())?;
        write_sweep_csv(run, &results)?;
        plot_losses(run, history, &results, &self.config)?;
        summarise(summary, &results);
        self.outcome = Some(HybridOutcome {
            run_dir: run.path().to_path_buf(),
            results,
        });
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        vec![("first seed", self.config.seeds[0])]
    }

    fn steps(&self) -> u64 {
        self.steps_taken
    }
}

/// Each run's result from its rows (the last row carries the final evaluation).
fn results(history: &History, runs: usize) -> Result<Vec<RunResult>> {
    let mut out: Vec<RunResult> = Vec::with_capacity(runs);
    for r in 0..runs {
        let rows = history.rows_where("run", r as f64);
        let n = rows.rows();
        if n == 0 {
            return Err(Error::value(
                "run_hybrid",
                format!("run {r} has no rows"),
                "every run logged",
            ));
        }
        let num = |c: &str| rows.last(c).unwrap_or(f64::NAN);
        let text = |c: &str| match rows.cell(c, n - 1) {
            Some(Value::Text(t)) => t.clone(),
            _ => String::new(),
        };
        let signals = (0..n)
            .filter(|&k| matches!(rows.cell("signal", k), Some(Value::Text(_))))
            .count() as u64;
        let rollbacks = rows
            .numbers("rolled_back")
            .unwrap_or_default()
            .into_iter()
            .flatten()
            .sum::<f64>();
        let backward = num("backward_passes");
        let mode = text("mode");
        let seed = num("seed") as u64;
        let train_loss = num("train_loss");
        let steps = num("step").max(1.0);
        let baseline = out
            .iter()
            .find(|b| b.mode == "baseline" && b.seed == seed)
            .map_or(f64::NAN, |b| b.train_loss);
        out.push(RunResult {
            relative_loss_change: match mode.as_str() {
                "baseline" => 0.0,
                _ => (train_loss - baseline) / baseline,
            },
            mode,
            seed,
            max_horizon: num("max_horizon") as u64,
            threshold: num("threshold"),
            backward_passes: backward as u64,
            steps_run: n as u64,
            seconds: num("run_seconds"),
            dynamics_seconds: num("dynamics_seconds"),
            train_loss,
            test_loss: num("test_loss"),
            test_accuracy: num("test_accuracy"),
            divergence_events: signals,
            rollbacks: rollbacks as u64,
            skipped: 1.0 - backward / steps,
        });
    }
    Ok(out)
}

/// `sweep.csv`: every hybrid run (main and sweep) with its skipped fraction and relative
/// final-loss change, the curve's points.
fn write_sweep_csv(run: &RunDir, results: &[RunResult]) -> Result<()> {
    let mut csv = String::from(
        "mode,seed,max_horizon,threshold,backward_passes,skipped,relative_loss_change,train_loss,test_loss,test_accuracy,divergence_events,rollbacks,seconds,dynamics_seconds\n",
    );
    for r in results.iter().filter(|r| r.mode != "baseline") {
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            r.mode,
            r.seed,
            r.max_horizon,
            r.threshold,
            r.backward_passes,
            r.skipped,
            r.relative_loss_change,
            r.train_loss,
            r.test_loss,
            r.test_accuracy,
            r.divergence_events,
            r.rollbacks,
            r.seconds,
            r.dynamics_seconds
        ));
    }
    run.write("sweep.csv", csv.as_bytes())
}

/// `losses.png`: the first seed's baseline and hybrid training loss per trajectory step (the
/// last visit of a step after roll-backs); `sweep.png`: skipped fraction against relative
/// final-loss change of every hybrid run.
fn plot_losses(
    run: &RunDir,
    history: &History,
    results: &[RunResult],
    config: &HybridRunConfig,
) -> Result<()> {
    let seed = config.seeds[0];
    let curve = |mode: &str| -> BTreeMap<u64, f64> {
        let Some(r) = results
            .iter()
            .position(|r| r.mode == mode && r.seed == seed)
        else {
            return BTreeMap::new();
        };
        let rows = history.rows_where("run", r as f64);
        let steps = rows.numbers("step").unwrap_or_default();
        let losses = rows.numbers("loss").unwrap_or_default();
        (steps.into_iter().zip(losses))
            .filter_map(|(s, l)| Some((s? as u64, l?)))
            .collect()
    };
    let (base, hybrid) = (curve("baseline"), curve("hybrid"));
    let mut both = History::of::<LossRow>();
    for (step, b) in &base {
        both.push(&LossRow {
            step: *step,
            baseline: *b,
            hybrid: hybrid.get(step).copied().unwrap_or(f64::NAN),
        })?;
    }
    let figure = Figure {
        title: format!("{}: training loss, seed {seed}", config.name),
        x: "step".into(),
        log_x: false,
        panels: vec![Panel::new("loss at each step's start (minibatch tasks: baseline on its batch, hybrid on the monitor batch)", "loss")
            .line("baseline", "baseline (every step full)")
            .line("hybrid", "hybrid")
            .log_y()],
        markers: Vec::new(),
    };
    plot_history(run.file("losses.png"), &both, &figure)?;
    let points: Vec<(f64, f64)> = (results.iter())
        .filter(|r| r.mode != "baseline")
        .map(|r| (r.skipped, 100.0 * r.relative_loss_change))
        .collect();
    plot_scatter(
        run.file("sweep.png"),
        &Scatter {
            title: format!(
                "{}: backward passes skipped vs final train loss",
                config.name
            ),
            x: "fraction of backward passes skipped".into(),
            y: "final train loss change vs baseline (%)".into(),
            points,
            diagonal: false,
        },
    )
}

history_row! {
    /// One step of the loss figure.
    struct LossRow {
        step: u64,
        baseline: f64,
        hybrid: f64,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The target: at least 40% of the backward passes skipped at no more than 1% relative
/// increase of the final train loss.
fn meets_target(skipped: f64, relative_loss_change: f64) -> bool {
    skipped >= 0.4 && relative_loss_change <= 0.01
}

/// Means over seeds per mode, per-seed lists, whether the target was met by any hybrid
/// run and by the mean over the seeds, and the baseline's relative seed spread of its final loss.
fn summarise(summary: &mut Summary, results: &[RunResult]) {
    for mode in ["baseline", "hybrid"] {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.mode == mode).collect();
        let column = |f: fn(&RunResult) -> f64| runs.iter().map(|r| f(r)).collect::<Vec<f64>>();
        for (key, values) in [
            ("backward_passes", column(|r| r.backward_passes as f64)),
            ("seconds", column(|r| r.seconds)),
            ("dynamics_seconds", column(|r| r.dynamics_seconds)),
            ("train_loss", column(|r| r.train_loss)),
            ("test_loss", column(|r| r.test_loss)),
            ("test_accuracy", column(|r| r.test_accuracy)),
            ("divergence_events", column(|r| r.divergence_events as f64)),
            ("rollbacks", column(|r| r.rollbacks as f64)),
            ("skipped", column(|r| r.skipped)),
            ("relative_loss_change", column(|r| r.relative_loss_change)),
        ] {
            summary.set(&format!("{mode}_{key}_mean"), mean(&values));
            summary.set(&format!("{mode}_{key}"), values);
        }
    }
    let met = (results.iter())
        .filter(|r| r.mode != "baseline")
        .any(|r| meets_target(r.skipped, r.relative_loss_change));
    summary.set("target_40pct_skipped_at_1pct_loss_met", met.to_string());
    let hybrid: Vec<&RunResult> = results.iter().filter(|r| r.mode == "hybrid").collect();
    let skipped = mean(&hybrid.iter().map(|r| r.skipped).collect::<Vec<_>>());
    let change = mean(
        &(hybrid.iter())
            .map(|r| r.relative_loss_change)
            .collect::<Vec<_>>(),
    );
    summary.set(
        "target_met_by_the_seed_mean",
        (!hybrid.is_empty() && meets_target(skipped, change)).to_string(),
    );
    // How far the baseline's own final loss moves with the seed: the scale a relative change is
    // read against.
    let base: Vec<f64> = (results.iter())
        .filter(|r| r.mode == "baseline")
        .map(|r| r.train_loss)
        .collect();
    let spread = base.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - base.iter().copied().fold(f64::INFINITY, f64::min);
    summary.set("baseline_train_loss_seed_spread", spread / mean(&base));
}

/// Runs (or resumes) the experiment; `resolved_toml` is saved as the run's `config.toml`.
pub fn run_hybrid(
    config: &HybridRunConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<HybridOutcome> {
    let mut study = Study::new(config)?;
    run_experiment(
        &mut study,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<HybridRow>(),
        options,
    )?;
    study
        .outcome
        .ok_or_else(|| Error::value("run_hybrid", "a run that did not finish", "a finished run"))
}
