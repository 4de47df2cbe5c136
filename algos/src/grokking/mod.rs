//! The grokking experiment (Power et al. 2022, "Grokking: generalization beyond overfitting on small
//! algorithmic datasets"): a network trained on part of the table of `(a ∘ b) mod p` first memorises
//! the training pairs (train accuracy → 100% while test accuracy stays low) and, with weight decay,
//! much later generalises (test accuracy → 100%). This experiment trains [`BaselineMlp`] with the
//! training step of `dynlab_train` and runs under the harness's [`run_experiment`]: one unit is an
//! epoch, logged as one history row; the phases are found in the history and the curves drawn.
//! `cargo run --release --example grokking -- --config examples/configs/grokking_quick.toml`.

mod config;
pub mod data;

pub use config::{DataConfig, GrokkingConfig, GrokkingPlan, ModelConfig, TrainConfig};

use data::ModularData;
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir,
    RunOptions, Summary, Value,
};
use dynlab_models::{BaselineMlp, Record, Stateful};
use dynlab_runtime::{Device, Result, Rng};
use dynlab_train::{
    AdamStats, Batch, CrossEntropy, Dataset, FeatureNorm, Loader, Trainer, WeightNorm,
};
use std::collections::BTreeMap;
use std::path::PathBuf;

history_row! {
    /// One row per epoch.
    pub struct EpochRow {
        /// Epochs done.
        pub epoch: u64,
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
    }
}

/// Where a run's history and results are.
#[derive(Clone, Debug)]
pub struct GrokkingOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every epoch's row (across resumes), with `seconds`.
    pub history: History,
    /// First epoch with train accuracy ≥ `memorised_at`.
    pub memorised_epoch: Option<u64>,
    /// First epoch with test accuracy ≥ `grokked_at`.
    pub grokked_epoch: Option<u64>,
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

/// Seed of the mini-batch order, derived from the config's seed.
const TRAIN_SEED_MIX: u64 = 0x5EED_0FBA_7C4E_5EED;

/// The experiment's state.
struct Grokking {
    config: GrokkingConfig,
    device: Device,
    trainer: Trainer<BaselineMlp>,
    train: Loader,
    test: Batch,
    rng: Rng,
}

impl Grokking {
    fn new(config: &GrokkingConfig) -> Result<Grokking> {
        let plan = config.plan()?;
        let device = Device::default()?;
        let d = &config.data;
        let data = ModularData::new(d.p, plan.op, d.train_frac, config.seed, &device)?;
        let mut init_rng = Rng::new(config.seed);
        let model = BaselineMlp::new(
            d.p,
            plan.encoding,
            &config.model.hidden,
            plan.init,
            &mut init_rng,
            &device,
        )?;
        let train = Dataset::new(model.encode_pairs(&data.train.pairs)?, data.train.labels)?;
        let test = Batch {
            inputs: model.encode_pairs(&data.test.pairs)?,
            targets: data.test.labels,
        };
        let trainer = Trainer::new(
            model,
            plan.optim.optimizer()?,
            plan.optim.schedule,
            CrossEntropy,
        )
        .with_clip_norm(plan.optim.clip_norm)
        .with_hook(FeatureNorm {
            tap: "mlp.features".into(),
            name: "repr_norm".into(),
        })
        .with_hook(WeightNorm)
        .with_hook(AdamStats {
            every: config.train.diagnostics_every,
        });
        Ok(Grokking {
            config: config.clone(),
            device,
            trainer,
            train: Loader::new(train, plan.batch_size)?,
            test,
            rng: Rng::new(config.seed ^ TRAIN_SEED_MIX),
        })
    }

    /// The first epoch whose `column` reaches `threshold`.
    fn first_epoch(history: &History, column: &str, threshold: f32) -> Option<u64> {
        let row = history.first_row_reaching(column, threshold as f64)?;
        history.cell("epoch", row)?.as_f64().map(|e| e as u64)
    }

    fn phases(&self, history: &History) -> (Option<u64>, Option<u64>) {
        let t = &self.config.train;
        (
            Self::first_epoch(history, "train_acc", t.memorised_at),
            Self::first_epoch(history, "test_acc", t.grokked_at),
        )
    }
}

fn metric(values: &BTreeMap<String, f32>, name: &str) -> f32 {
    values.get(name).copied().unwrap_or(f32::NAN)
}

impl Experiment for Grokking {
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
        let train = self.trainer.log()?;
        let row = EpochRow {
            epoch,
            step: self.trainer.optimizer.steps(),
            lr: metric(&train, "lr"),
            train_loss: metric(&train, "loss"),
            train_acc: metric(&train, "acc"),
            test_loss: metric(&train, "test_loss"),
            test_acc: metric(&train, "test_acc"),
            grad_norm: metric(&train, "grad_norm"),
            weight_norm: metric(&train, "weight_norm"),
            repr_norm: metric(&train, "repr_norm"),
            adam_effective_step: train.get("adam_effective_step").copied(),
            adam_moment_ratio: train.get("adam_moment_ratio").copied(),
            update_to_decay: train.get("update_to_decay").copied(),
        };
        history.push(&row)?;
        Ok(format!(
            "train {:.3}/{:.3} test {:.3}/{:.3} (loss/acc)",
            row.train_loss, row.train_acc, row.test_loss, row.test_acc
        ))
    }

    /// Stops `train.stop_after_grokking` epochs after test accuracy first reached `grokked_at`.
    fn finished(&self, history: &History) -> bool {
        let (Some(after), Some(last)) =
            (self.config.train.stop_after_grokking, history.last("epoch"))
        else {
            return false;
        };
        self.phases(history)
            .1
            .is_some_and(|g| last as u64 >= g + after)
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("trainer", self.trainer.save_state()?)
            .nest("rng", self.rng.save_state()?))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(&record.part("trainer"))?;
        self.rng.load_state(&record.part("rng"))
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let (memorised, grokked) = self.phases(history);
        let c = &self.config;
        let markers = [("memorised", memorised), ("grokked", grokked)]
            .into_iter()
            .filter_map(|(l, e)| Some((format!("{l} at epoch {}", e?), e? as f64)))
            .collect();
        let figure = Figure {
            title: format!(
                "{}: (a {} b) mod {}, train fraction {}",
                c.name, c.data.op, c.data.p, c.data.train_frac
            ),
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
            ],
            markers,
        };
        plot_history(run.file("curves.png"), history, &figure)?;
        summary.set_or_not_reached("memorised_epoch", memorised.map(|e| e as i64));
        summary.set_or_not_reached("grokked_epoch", grokked.map(|e| e as i64));
        let last = history.rows().saturating_sub(1);
        for (key, column) in [
            ("final_train_acc", "train_acc"),
            ("final_test_acc", "test_acc"),
            ("final_test_loss", "test_loss"),
        ] {
            summary.set_cell(key, history.cell(column, last).unwrap_or(&Value::Null));
        }
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        let seed = self.config.seed;
        vec![
            ("split_and_init", seed),
            ("batch_order", seed ^ TRAIN_SEED_MIX),
        ]
    }

    fn steps(&self) -> u64 {
        self.trainer.optimizer.steps()
    }
}

/// Runs (or resumes) the experiment described by `config`; `resolved_toml` is saved as the run's
/// `config.toml`.
pub fn run(
    config: &GrokkingConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<GrokkingOutcome> {
    let mut experiment = Grokking::new(config)?;
    let outcome = run_experiment(
        &mut experiment,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<EpochRow>(),
        options,
    )?;
    let (memorised_epoch, grokked_epoch) = experiment.phases(&outcome.history);
    Ok(GrokkingOutcome {
        run_dir: outcome.run_dir,
        memorised_epoch,
        grokked_epoch,
        epochs_run: outcome.units_run,
        epochs_per_second: outcome.units_per_second,
        seconds: outcome.seconds,
        launches_per_step: outcome.launches_per_step,
        syncs_per_step: outcome.syncs_per_step,
        history: outcome.history,
    })
}
