//! The grokking experiment (Power et al. 2022, "Grokking: generalization beyond overfitting on small
//! algorithmic datasets"): a network trained on part of the table of `(a ∘ b) mod p` first memorises
//! the training pairs (train accuracy → 100% while test accuracy stays low) and, with weight decay,
//! much later generalises (test accuracy → 100%). This experiment trains [`BaselineMlp`] with the
//! training step of `dynlab_train` and runs under the harness's [`run_experiment`]: one unit is an
//! epoch, logged as one history row; the phases are found in the history and the curves drawn.
//! `cargo run --release --example grokking -- --config examples/configs/grokking_quick.toml`.
//!
//! With `replicas = R`, `R` networks (seeds `seed … seed + R − 1`) train as one stacked model
//! ([`Replicas`]): one history row per replica and epoch (column `replica`, and each replica's rows
//! in `replicas/<r>/`), phases and final accuracies per replica in the summary, and the curves of
//! every replica in one figure.

mod config;
pub mod data;
pub mod fisher;
pub mod metrics;
pub mod penalty;
pub mod routing;
mod watch;

pub use config::{
    DataConfig, GrokkingConfig, GrokkingPlan, LossConfig, MetricsConfig, ModelConfig, Network,
    TrainConfig,
};

use data::ModularData;
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir,
    RunOptions, Summary, Value, REPLICA,
};
use dynlab_models::{
    BaselineMlp, GrokTransformer, Module, Record, Replicas, RoutedNetwork, Stateful,
};
use dynlab_runtime::{Device, Result, Rng, Tensor};
use dynlab_train::{AdamStats, Batch, Dataset, FeatureNorm, Loader, Trainer, WeightNorm};
use penalty::{JacobianPenalty, SpectralPenalty};
use routing::GrokObjective;
use std::collections::BTreeMap;
use std::path::PathBuf;
use watch::{EpochMetrics, MetricInputs};

history_row! {
    /// One row per epoch (and replica).
    pub struct EpochRow {
        /// Epochs done.
        pub epoch: u64,
        /// The replica (0 for a single network; its init seed is `seed + replica`).
        pub replica: u64,
        /// Optimizer steps taken by the end of the epoch.
        pub step: u64,
        /// Learning rate of the epoch's last step.
        pub lr: f32,
        /// Mean cross-entropy over the epoch's training batches.
        pub train_loss: f32,
        /// Training accuracy over the epoch's batches.
        pub train_acc: f32,
        /// Cross-entropy on the held-out pairs after the epoch.
        pub test_loss: f32,
        /// Accuracy on the held-out pairs after the epoch.
        pub test_acc: f32,
        /// Global gradient norm, mean over the epoch's steps (before clipping).
        pub grad_norm: f32,
        /// `√(Σ‖θ‖²)` over all parameters after the epoch.
        pub weight_norm: f32,
        /// Mean ℓ2 norm of the last hidden representation over the training samples.
        pub repr_norm: f32,
        /// Adam: mean `η/(√v̂+ε)` (null without diagnostics that epoch).
        pub adam_effective_step: Option<f32>,
        /// Adam: mean `|m̂|/(√v̂+ε)`.
        pub adam_moment_ratio: Option<f32>,
        /// AdamW: `‖update‖ / ‖decay‖`.
        pub update_to_decay: Option<f32>,
        /// Hard spectral smoothness of the function on the `p × p` grid.
        pub smoothness: Option<f32>,
        /// `out_dim · E‖Jᵀv‖²` over the metric samples.
        pub jacobian_norm: Option<f32>,
        /// Mean input-Hessian trace of the top logit (Hutchinson).
        pub input_hessian_trace: Option<f32>,
        /// Its standard error.
        pub input_hessian_se: Option<f32>,
        /// `‖∇_θ L‖` of the full training loss.
        pub loss_grad_norm: Option<f32>,
        /// Hutchinson `tr ∇²_θ L` of the full training loss.
        pub weight_hessian_trace: Option<f32>,
        /// Its standard error.
        pub weight_hessian_se: Option<f32>,
        /// Empirical Fisher trace `(1/N) Σ_i ‖∇_θ log p(y_i | x_i)‖²` over the training set.
        pub fisher_trace: Option<f32>,
        /// Routed network: mean routing entropy over the epoch's training batches.
        pub routing_entropy: Option<f32>,
        /// Routed network: the routing regulariser's value (when it is in the loss).
        pub routing_reg: Option<f32>,
        /// The spectral penalty's weighted value, mean over the epoch's steps that applied it.
        pub spectral_penalty: Option<f32>,
        /// The Jacobian penalty's weighted value, mean over the epoch's steps that applied it.
        pub jacobian_penalty: Option<f32>,
    }
}

/// Where a run's history and results are.
#[derive(Clone, Debug)]
pub struct GrokkingOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every epoch's row (across resumes), with `seconds`.
    pub history: History,
    /// First epoch with train accuracy ≥ `memorised_at` (replica 0's).
    pub memorised_epoch: Option<u64>,
    /// First epoch with test accuracy ≥ `grokked_at` (replica 0's).
    pub grokked_epoch: Option<u64>,
    /// `(memorised, grokked)` epochs of each replica.
    pub replica_phases: Vec<Phases>,
    /// Epochs trained by this call and their rate.
    pub epochs_run: u64,
    /// Epochs per second of this call.
    pub epochs_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
    /// Kernel launches per optimizer step in this call (evaluation and logging included).
    pub launches_per_step: Option<f64>,
    /// Host synchronisations per optimizer step in this call.
    pub syncs_per_step: Option<f64>,
}

/// A network's `(memorised, grokked)` epochs (`None`: not reached).
pub type Phases = (Option<u64>, Option<u64>);

/// Seed of the mini-batch order, derived from the config's seed.
const TRAIN_SEED_MIX: u64 = 0x5EED_0FBA_7C4E_5EED;

/// Seed of the Jacobian penalty's directions, derived from the config's seed.
const PENALTY_SEED_MIX: u64 = 0x7A11_0F5E_ED5A_11CE;

/// Seed of the metrics' random directions and probes, derived from the config's seed.
const METRIC_SEED_MIX: u64 = 0x3E7A_1C5D_0B1E_C7ED;

/// The experiment's state, for one network (`BaselineMlp`, `GrokTransformer`) or stacked replicas.
struct Grokking<M: Module> {
    config: GrokkingConfig,
    device: Device,
    trainer: Trainer<M>,
    train: Loader,
    test: Batch,
    rng: Rng,
    /// What the metrics evaluate (`None` for stacked replicas, which are not measured).
    metric_inputs: Option<MetricInputs>,
    metric_rng: Rng,
    /// The latest smoothness, Jacobian norm and input-Hessian trace, for the log line.
    latest: EpochMetrics,
}

/// The data and the device.
fn setup(config: &GrokkingConfig) -> Result<(Device, ModularData)> {
    let plan = config.plan()?;
    let device = Device::default()?;
    let d = &config.data;
    let data = ModularData::new(d.p, plan.op, d.train_frac, config.seed, &device)?;
    Ok((device, data))
}

/// Every pair `(a, b)` of the `p × p` grid, row `a·p + b`, as i32 `[p², 2]`.
fn grid_pairs(p: usize, device: &Device) -> Result<Tensor> {
    let pairs: Vec<i32> = (0..p * p)
        .flat_map(|ab| [(ab / p) as i32, (ab % p) as i32])
        .collect();
    Tensor::from_vec(pairs, &[p * p, 2], device)
}

/// The MLPs of seeds `seed … seed + replicas − 1`.
fn mlps(config: &GrokkingConfig, device: &Device) -> Result<Vec<BaselineMlp>> {
    let plan = config.plan()?;
    let d = &config.data;
    (0..config.replicas as u64)
        .map(|r| {
            let mut init_rng = Rng::new(config.seed.wrapping_add(r));
            let hidden = &config.model.hidden;
            BaselineMlp::new(d.p, plan.encoding, hidden, plan.init, &mut init_rng, device)
        })
        .collect()
}

impl<M: Module> Grokking<M> {
    /// The experiment training `model` (one network, or stacked replicas of one kind) on pairs
    /// turned into its inputs by `encode`; `feature_tap` is the tap of its representation.
    fn new(
        config: &GrokkingConfig,
        device: Device,
        data: ModularData,
        encode: &dyn Fn(&Tensor) -> Result<Tensor>,
        model: M,
        feature_tap: &str,
    ) -> Result<Grokking<M>> {
        let plan = config.plan()?;
        let train_inputs = encode(&data.train.pairs)?;
        let train = Dataset::new(train_inputs.clone(), data.train.labels.clone())?;
        let test = Batch {
            inputs: encode(&data.test.pairs)?,
            targets: data.test.labels,
        };
        let replicas = config.replicas;
        let metric_inputs = (replicas == 1)
            .then(|| -> Result<MetricInputs> {
                let samples = config.metrics.samples.min(data.train.len());
                Ok(MetricInputs {
                    grid: encode(&grid_pairs(data.p, &device)?)?,
                    samples: train_inputs.narrow(0, 0, samples)?,
                    train: Batch {
                        inputs: train_inputs,
                        targets: data.train.labels,
                    },
                })
            })
            .transpose()?;
        let test = match replicas {
            1 => test,
            r => test.for_replicas(r)?,
        };
        let mut trainer = Trainer::new(
            model,
            plan.optim.optimizer()?,
            plan.optim.schedule,
            GrokObjective {
                routing: plan.routing,
                routed: matches!(plan.network, Network::Routed(_)),
            },
        )
        .with_clip_norm(plan.optim.clip_norm)
        .with_hook(FeatureNorm {
            tap: feature_tap.into(),
            name: "repr_norm".into(),
        })
        .with_hook(WeightNorm)
        .with_hook(AdamStats {
            every: config.train.diagnostics_every,
        });
        let l = &config.loss;
        let cutoff = config.metrics.cutoff_for(data.p);
        if let (true, Some(inputs)) = (l.lambda_spectral > 0.0, &metric_inputs) {
            trainer = trainer.with_regulariser(SpectralPenalty {
                grid: inputs.grid.clone(),
                cutoff,
                lambda: l.lambda_spectral,
                every: l.spectral_interval,
            });
        }
        if let (true, Some(inputs)) = (l.lambda_jacobian > 0.0, &metric_inputs) {
            trainer = trainer.with_regulariser(JacobianPenalty {
                samples: inputs.samples.clone(),
                outputs: data.p,
                lambda: l.lambda_jacobian,
                every: l.jacobian_interval,
                seed: config.seed ^ PENALTY_SEED_MIX,
            });
        }
        Ok(Grokking {
            config: config.clone(),
            device,
            trainer,
            train: Loader::new(train, plan.batch_size)?.with_replicas(replicas),
            test,
            rng: Rng::new(config.seed ^ TRAIN_SEED_MIX),
            metric_inputs,
            metric_rng: Rng::new(config.seed ^ METRIC_SEED_MIX),
            latest: EpochMetrics::default(),
        })
    }

    /// The measurements due at `epoch` (none for stacked replicas).
    fn measure(&mut self, epoch: u64) -> Result<EpochMetrics> {
        let Some(inputs) = &self.metric_inputs else {
            return Ok(EpochMetrics::default());
        };
        let seed = self.config.seed ^ METRIC_SEED_MIX;
        let m = watch::measure(
            &self.trainer.model,
            &self.config.metrics,
            self.config.data.p,
            inputs,
            epoch,
            (&mut self.metric_rng, seed),
        )?;
        let l = &mut self.latest;
        l.smoothness = m.smoothness.or(l.smoothness);
        l.jacobian_norm = m.jacobian_norm.or(l.jacobian_norm);
        l.input_hessian = m.input_hessian.or(l.input_hessian);
        Ok(m)
    }

    /// The first epoch whose `column` reaches `threshold`, of each replica (one pass over the
    /// history).
    fn first_epochs(&self, history: &History, column: &str, threshold: f32) -> Vec<Option<u64>> {
        let rows = history.first_rows_reaching_per(
            column,
            threshold as f64,
            REPLICA,
            self.config.replicas,
        );
        let epoch = |row: usize| history.cell("epoch", row)?.as_f64().map(|e| e as u64);
        rows.into_iter().map(|row| row.and_then(epoch)).collect()
    }

    /// `(memorised, grokked)` epochs of each replica.
    fn phases(&self, history: &History) -> Vec<Phases> {
        let t = &self.config.train;
        let memorised = self.first_epochs(history, "train_acc", t.memorised_at);
        let grokked = self.first_epochs(history, "test_acc", t.grokked_at);
        memorised.into_iter().zip(grokked).collect()
    }
}

fn metric(values: &BTreeMap<String, f32>, name: &str) -> f32 {
    values.get(name).copied().unwrap_or(f32::NAN)
}

impl<M: Module> Experiment for Grokking<M> {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.config.train.epochs
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.train.checkpoint_every
    }

    fn run_unit(&mut self, epoch: u64, history: &mut History) -> Result<String> {
        self.trainer.epoch(&mut self.train, &mut self.rng)?;
        self.trainer.evaluate_into(&self.test, "test_")?;
        let logs = self.trainer.log_replicas()?;
        let measured = self.measure(epoch)?;
        let rows_before = history.rows();
        let step = self.trainer.optimizer.steps();
        let value = |v: Option<f64>| v.map(|v| v as f32);
        let rows: Vec<EpochRow> = logs
            .iter()
            .enumerate()
            .map(|(r, log)| EpochRow {
                epoch,
                replica: r as u64,
                step,
                lr: metric(log, "lr"),
                train_loss: metric(log, "loss"),
                train_acc: metric(log, "acc"),
                test_loss: metric(log, "test_loss"),
                test_acc: metric(log, "test_acc"),
                grad_norm: metric(log, "grad_norm"),
                weight_norm: metric(log, "weight_norm"),
                repr_norm: metric(log, "repr_norm"),
                adam_effective_step: log.get("adam_effective_step").copied(),
                adam_moment_ratio: log.get("adam_moment_ratio").copied(),
                update_to_decay: log.get("update_to_decay").copied(),
                smoothness: value(measured.smoothness),
                jacobian_norm: value(measured.jacobian_norm),
                input_hessian_trace: value(measured.input_hessian.map(|h| h.0)),
                input_hessian_se: value(measured.input_hessian.map(|h| h.1)),
                loss_grad_norm: value(measured.loss_grad_norm),
                weight_hessian_trace: value(measured.weight_hessian.map(|h| h.0)),
                weight_hessian_se: value(measured.weight_hessian.map(|h| h.1)),
                fisher_trace: value(measured.fisher_trace),
                routing_entropy: log.get("routing_entropy").copied(),
                routing_reg: log.get("routing_reg").copied(),
                spectral_penalty: log.get("spectral_penalty").copied(),
                jacobian_penalty: log.get("jacobian_penalty").copied(),
            })
            .collect();
        for row in &rows {
            history.push(row)?;
        }
        for (name, norm) in &measured.layer_norms {
            let column = format!("weight_norm.{name}");
            history.set_from(rows_before, &column, Value::F32(*norm as f32))?;
        }
        let mean = |f: fn(&EpochRow) -> f32| rows.iter().map(f).sum::<f32>() / rows.len() as f32;
        Ok(log_line(
            epoch,
            [
                mean(|r| r.train_acc),
                mean(|r| r.test_acc),
                mean(|r| r.train_loss),
                mean(|r| r.repr_norm),
            ],
            &self.latest,
        ))
    }

    /// Stops `train.stop_after_grokking` epochs after test accuracy first reached `grokked_at` (in
    /// every replica).
    fn finished(&self, history: &History) -> bool {
        let (Some(after), Some(last)) =
            (self.config.train.stop_after_grokking, history.last("epoch"))
        else {
            return false;
        };
        let grokked = self.first_epochs(history, "test_acc", self.config.train.grokked_at);
        grokked
            .iter()
            .all(|g| g.is_some_and(|g| last as u64 >= g + after))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("trainer", self.trainer.save_state()?)
            .nest("rng", self.rng.save_state()?)
            .nest("metric_rng", self.metric_rng.save_state()?))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(&record.part("trainer"))?;
        self.rng.load_state(&record.part("rng"))?;
        self.metric_rng.load_state(&record.part("metric_rng"))
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let phases = self.phases(history);
        let c = &self.config;
        let title = format!(
            "{}: (a {} b) mod {}, train fraction {}",
            c.name, c.data.op, c.data.p, c.data.train_frac
        );
        if c.replicas == 1 {
            let figure = curves(title, phases[0], self.metric_inputs.is_some());
            plot_history(run.file("curves.png"), history, &figure)?;
        } else {
            let title = format!("{title}, {} replicas", c.replicas);
            plot_history(
                run.file("curves.png"),
                &by_replica(history, c.replicas)?,
                &replica_curves(title, c.replicas),
            )?;
            for (r, &phase) in phases.iter().enumerate() {
                let one = history.rows_where(REPLICA, r as f64);
                let title = format!("{} (replica {r}, seed {})", c.name, c.seed + r as u64);
                plot_history(
                    run.file(&format!("replicas/{r}/curves.png")),
                    &one,
                    &curves(title, phase, false),
                )?;
            }
        }
        let epochs = |pick: fn(&Phases) -> Option<u64>| {
            phases
                .iter()
                .map(|p| pick(p).map_or(-1, |e| e as i64))
                .collect::<Vec<_>>()
        };
        summary.set_or_not_reached("memorised_epoch", phases[0].0.map(|e| e as i64));
        summary.set_or_not_reached("grokked_epoch", phases[0].1.map(|e| e as i64));
        if c.replicas > 1 {
            summary.set("replica_memorised_epochs", epochs(|p| p.0));
            summary.set("replica_grokked_epochs", epochs(|p| p.1));
        }
        if let Some(inputs) = &self.metric_inputs {
            let p = c.data.p;
            let cutoff = c.metrics.cutoff_for(p);
            watch::figures(&self.trainer.model, inputs, (p, cutoff), run, summary)?;
        }
        let best = history.numbers("test_acc").unwrap_or_default();
        let best = best.into_iter().flatten().fold(f64::NEG_INFINITY, f64::max);
        if best.is_finite() {
            summary.set("best_test_acc", best);
        }
        let last_epoch = history.last("epoch").unwrap_or(0.0);
        for (key, column) in [
            ("final_train_acc", "train_acc"),
            ("final_test_acc", "test_acc"),
            ("final_test_loss", "test_loss"),
        ] {
            let finals: Vec<&Value> = (0..history.rows())
                .filter(|&row| {
                    history.cell("epoch", row).and_then(Value::as_f64) == Some(last_epoch)
                })
                .filter_map(|row| history.cell(column, row))
                .collect();
            summary.set_cell(key, finals.first().copied().unwrap_or(&Value::Null));
            if c.replicas > 1 {
                let values: Vec<f64> = finals.iter().filter_map(|v| v.as_f64()).collect();
                summary.set(&format!("replica_{key}"), values);
            }
        }
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        let seed = self.config.seed;
        vec![
            ("split_and_init", seed),
            ("batch_order", seed ^ TRAIN_SEED_MIX),
            ("metrics", seed ^ METRIC_SEED_MIX),
        ]
    }

    fn steps(&self) -> u64 {
        self.trainer.optimizer.steps()
    }
}

/// The loss and accuracy curves of one network, with its phases marked; with `measured`, the
/// smoothness and the Jacobian norm too.
fn curves(title: String, (memorised, grokked): Phases, measured: bool) -> Figure {
    let markers = [("memorised", memorised), ("grokked", grokked)]
        .into_iter()
        .filter_map(|(l, e)| Some((format!("{l} at epoch {}", e?), e? as f64)))
        .collect();
    Figure {
        title,
        x: "epoch".into(),
        log_x: true,
        panels: vec![
            Panel::new("cross-entropy", "loss")
                .line("train_loss", "train")
                .line("test_loss", "test")
                .log_y(),
            Panel::new("accuracy", "accuracy")
                .line("train_acc", "train")
                .line("test_acc", "test"),
        ]
        .into_iter()
        .chain(measured.then(|| {
            Panel::new("spectral smoothness (K = p/4)", "smoothness").line("smoothness", "hard")
        }))
        .chain(measured.then(|| {
            Panel::new("input sensitivity", "E‖Jᵀv‖²·out_dim")
                .line("jacobian_norm", "Jacobian norm")
                .log_y()
        }))
        .collect(),
        markers,
    }
}

/// Every replica's train and test accuracy against the epoch.
fn replica_curves(title: String, replicas: usize) -> Figure {
    let panel = |name: &str, what: &str| {
        (0..replicas).fold(Panel::new(name, "accuracy"), |p, r| {
            p.line(&format!("{what}_{r}"), &format!("replica {r}"))
        })
    };
    Figure {
        title,
        x: "epoch".into(),
        log_x: true,
        panels: vec![
            panel("train accuracy", "train_acc"),
            panel("test accuracy", "test_acc"),
        ],
        markers: Vec::new(),
    }
}

/// One row per epoch with each replica's accuracies as columns `train_acc_<r>`, `test_acc_<r>`.
fn by_replica(history: &History, replicas: usize) -> Result<History> {
    let mut wide = History::default();
    let per: Vec<History> = (0..replicas)
        .map(|r| history.rows_where(REPLICA, r as f64))
        .collect();
    for row in 0..per[0].rows() {
        let mut cells = vec![(
            "epoch".to_string(),
            per[0].cell("epoch", row).cloned().unwrap_or(Value::Null),
        )];
        for (r, h) in per.iter().enumerate() {
            for what in ["train_acc", "test_acc"] {
                cells.push((
                    format!("{what}_{r}"),
                    h.cell(what, row).cloned().unwrap_or(Value::Null),
                ));
            }
        }
        let named: Vec<(&str, Value)> =
            cells.iter().map(|(n, v)| (n.as_str(), v.clone())).collect();
        wide.push_cells(&named)?;
    }
    Ok(wide)
}

/// Runs (or resumes) the experiment described by `config`; `resolved_toml` is saved as the run's
/// `config.toml`.
pub fn run(
    config: &GrokkingConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<GrokkingOutcome> {
    let (device, data) = setup(config)?;
    let p = config.data.p;
    match config.plan()?.network {
        Network::Transformer(shape) => {
            let mut init_rng = Rng::new(config.seed);
            let model = GrokTransformer::new(shape, &mut init_rng, &device)?;
            let encode = |pairs: &Tensor| GrokTransformer::tokens(pairs, p);
            let experiment = Grokking::new(config, device, data, &encode, model, "features")?;
            run_with(experiment, config, resolved_toml, options)
        }
        Network::Routed(shape) => {
            let mut init_rng = Rng::new(config.seed);
            let model = RoutedNetwork::new(shape, &mut init_rng, &device)?;
            let encoder = model.clone();
            let encode = |pairs: &Tensor| encoder.encode_pairs(pairs);
            let experiment = Grokking::new(config, device, data, &encode, model, "features")?;
            run_with(experiment, config, resolved_toml, options)
        }
        Network::Mlp => {
            let mut models = mlps(config, &device)?;
            let encoder = models[0].clone();
            let encode = |pairs: &Tensor| encoder.encode_pairs(pairs);
            let tap = "mlp.features";
            if models.len() == 1 {
                let model = models.pop().expect("one network");
                let experiment = Grokking::new(config, device, data, &encode, model, tap)?;
                run_with(experiment, config, resolved_toml, options)
            } else {
                let stacked = Replicas::stack(models)?;
                let experiment = Grokking::new(config, device, data, &encode, stacked, tap)?;
                run_with(experiment, config, resolved_toml, options)
            }
        }
    }
}

/// `Epoch 12300 | Train: 100.0% | Test:  47.1% | Loss: 1.23e-04, rnorm=45.2, smooth=0.234,
/// jac=1.50e+03, |hess|=2.30e+02`: the metrics' latest values, each once it has been computed.
fn log_line(epoch: u64, [train, test, loss, rnorm]: [f32; 4], latest: &EpochMetrics) -> String {
    let mut line = format!(
        "Epoch {epoch} | Train: {:5.1}% | Test: {:5.1}% | Loss: {}, rnorm={rnorm:.1}",
        100.0 * train,
        100.0 * test,
        scientific(loss as f64)
    );
    if let Some(s) = latest.smoothness {
        line += &format!(", smooth={s:.3}");
    }
    if let Some(j) = latest.jacobian_norm {
        line += &format!(", jac={}", scientific(j));
    }
    if let Some((h, _)) = latest.input_hessian {
        line += &format!(", |hess|={}", scientific(h.abs()));
    }
    line
}

/// `1.23e-04`: two decimals and a signed two-digit exponent, as Python's `{:.2e}`.
fn scientific(x: f64) -> String {
    let s = format!("{x:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn run_with<M: Module>(
    mut experiment: Grokking<M>,
    config: &GrokkingConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<GrokkingOutcome> {
    let outcome = run_experiment(
        &mut experiment,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<EpochRow>(),
        options,
    )?;
    let replica_phases = experiment.phases(&outcome.history);
    Ok(GrokkingOutcome {
        run_dir: outcome.run_dir,
        memorised_epoch: replica_phases[0].0,
        grokked_epoch: replica_phases[0].1,
        replica_phases,
        epochs_run: outcome.units_run,
        epochs_per_second: outcome.units_per_second,
        seconds: outcome.seconds,
        launches_per_step: outcome.launches_per_step,
        syncs_per_step: outcome.syncs_per_step,
        history: outcome.history,
    })
}

#[cfg(test)]
mod tests {
    use super::{log_line, scientific, EpochMetrics};

    #[test]
    fn log_lines_read_like_the_reference() {
        assert_eq!(scientific(1.23e-4), "1.23e-04");
        assert_eq!(scientific(1500.0), "1.50e+03");
        assert_eq!(scientific(0.0), "0.00e+00");
        let latest = EpochMetrics {
            smoothness: Some(0.2341),
            jacobian_norm: Some(1500.0),
            input_hessian: Some((-230.0, 4.0)),
            ..EpochMetrics::default()
        };
        assert_eq!(
            log_line(12300, [1.0, 0.471, 1.23e-4, 45.2], &latest),
            "Epoch 12300 | Train: 100.0% | Test:  47.1% | Loss: 1.23e-04, rnorm=45.2, \
             smooth=0.234, jac=1.50e+03, |hess|=2.30e+02"
        );
        let plain = log_line(3, [0.5, 0.0, 2.0, 1.0], &EpochMetrics::default());
        assert_eq!(
            plain,
            "Epoch 3 | Train:  50.0% | Test:   0.0% | Loss: 2.00e+00, rnorm=1.0"
        );
    }
}
