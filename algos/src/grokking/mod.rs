//! The grokking experiment (Power et al. 2022, "Grokking: generalization beyond overfitting on small
//! algorithmic datasets"): a network trained on part of the table of `(a ∘ b) mod p` first memorises
//! the training pairs (train accuracy → 100% while test accuracy stays low) and, with weight decay,
//! much later generalises (test accuracy → 100%). This runner trains [`BaselineMlp`] with the
//! configured optimizer, logs every epoch, checkpoints, resumes, detects both phases and draws the
//! curves. `cargo run --release --example grokking -- --config examples/configs/grokking_quick.toml`.

mod config;

pub use config::{DataConfig, GrokkingConfig, GrokkingPlan, ModelConfig, OptimConfig, TrainConfig};

use crate::data::ModularData;
use crate::optim::Optimizer;
use crate::run::{plot_curves, Progress};
use crate::train::{
    evaluate, train_epoch, Checkpoint, EpochRecord, History, LabeledData, StepOptions,
};
use dynlab_models::{BaselineMlp, Module};
use dynlab_runtime::{write_atomic, Device, Error, Result, Rng};
use std::path::PathBuf;
use std::time::Instant;

/// How to treat an existing run folder, and whether to show progress.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// Continue from `<run>/checkpoint.safetensors`.
    pub resume: bool,
    /// Start afresh even if the run folder exists.
    pub overwrite: bool,
    /// Progress bar (or periodic lines when not on a terminal).
    pub progress: bool,
    /// Stop this call after this epoch (checkpointed; `--resume` continues), e.g. to fit a job's
    /// time slot. The schedule still spans `train.epochs`.
    pub stop_at: Option<u64>,
}

/// What a run found.
#[derive(Clone, Debug)]
pub struct GrokkingOutcome {
    pub run_dir: PathBuf,
    pub history: History,
    /// First epoch with train accuracy ≥ `memorised_at`.
    pub memorised_epoch: Option<u64>,
    /// First epoch with test accuracy ≥ `grokked_at`.
    pub grokked_epoch: Option<u64>,
    /// Epochs trained by this call and their rate.
    pub epochs_run: u64,
    pub epochs_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
}

/// Runs (or resumes) the experiment described by `config`; `resolved_toml` is saved as the run's
/// `config.toml`.
pub fn run(
    config: &GrokkingConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<GrokkingOutcome> {
    let plan = config.plan()?;
    let device = Device::default()?;
    let data = ModularData::new(
        config.data.p,
        plan.op,
        config.data.train_frac,
        config.seed,
        &device,
    )?;
    let mut init_rng = Rng::new(config.seed);
    let mut model = BaselineMlp::new(
        config.data.p,
        plan.encoding,
        &config.model.hidden,
        plan.init,
        &mut init_rng,
        &device,
    )?;
    let train = LabeledData::new(
        model.encode_pairs(&data.train.pairs)?,
        data.train.labels.clone(),
    )?;
    let test = LabeledData::new(
        model.encode_pairs(&data.test.pairs)?,
        data.test.labels.clone(),
    )?;
    let mut optimizer = Optimizer::new(plan.method, plan.groups.clone())?;
    let mut rng = Rng::new(config.seed ^ 0x5EED_0FBA_7C4E_5EED);

    let run_dir = PathBuf::from(&config.runs_dir).join(&config.name);
    let checkpoint_path = run_dir.join("checkpoint.safetensors");
    let mut history = History::default();
    let mut seconds_before = 0.0;
    if options.resume {
        let ck = Checkpoint::load(&checkpoint_path, &device)?;
        model.load_state_dict(&ck.model)?;
        optimizer.load_state_dict(ck.optimizer_steps, &ck.optimizer)?;
        rng = ck.rng;
        history = ck.history;
        seconds_before = ck.seconds;
    } else if run_dir.exists() {
        if !options.overwrite {
            return Err(Error::io(
                "grokking::run",
                &run_dir,
                "exists; pass --resume to continue it, --overwrite to start again, or --set name=<new>",
            ));
        }
        std::fs::remove_dir_all(&run_dir).map_err(|e| Error::io("grokking::run", &run_dir, e))?;
    }
    write_atomic(run_dir.join("config.toml"), resolved_toml.as_bytes())?;

    let t = &config.train;
    let start_epoch = history.records.last().map_or(0, |r| r.epoch);
    let mut progress = Progress::new(t.epochs, start_epoch, options.progress);
    let started = Instant::now();
    let step_options = StepOptions {
        batch_size: plan.batch_size,
        clip_norm: plan.clip_norm,
    };
    let save =
        |history: &History, model: &BaselineMlp, optimizer: &Optimizer, rng: &Rng| -> Result<()> {
            let seconds = seconds_before + started.elapsed().as_secs_f64();
            Checkpoint {
                epoch: history.records.last().map_or(0, |r| r.epoch),
                optimizer_steps: optimizer.steps(),
                rng: *rng,
                seconds,
                model: model.state_dict().into_iter().collect(),
                optimizer: optimizer.state_dict().into_iter().collect(),
                history: history.clone(),
            }
            .save(&checkpoint_path)?;
            write_atomic(run_dir.join("history.csv"), history.to_csv().as_bytes())
        };
    let mut epoch = start_epoch;
    let last_epoch = t.epochs.min(options.stop_at.unwrap_or(u64::MAX));
    while epoch < last_epoch && !stopped_after_grokking(&history, config) {
        epoch += 1;
        let stats = train_epoch(
            &mut model,
            &mut optimizer,
            &plan.schedule,
            &train,
            step_options,
            &mut rng,
        )?;
        let eval = evaluate(&model, &test)?;
        let diag = if t.diagnostics_every > 0 && epoch % t.diagnostics_every == 0 {
            optimizer.adam_diagnostics(&model, stats.lr)?
        } else {
            None
        };
        history.records.push(EpochRecord {
            epoch,
            step: optimizer.steps(),
            lr: stats.lr,
            train_loss: stats.loss,
            train_acc: stats.acc,
            test_loss: eval.loss,
            test_acc: eval.acc,
            grad_norm: stats.grad_norm,
            weight_norm: stats.weight_norm,
            repr_norm: stats.repr_norm,
            adam_effective_step: diag.map_or(f32::NAN, |d| d.effective_step_mean),
            adam_moment_ratio: diag.map_or(f32::NAN, |d| d.moment_ratio_mean),
            update_to_decay: diag.map_or(f32::NAN, |d| d.update_to_decay),
            seconds: seconds_before + started.elapsed().as_secs_f64(),
        });
        let rate = (epoch - start_epoch) as f64 / started.elapsed().as_secs_f64();
        progress.update(
            epoch,
            format!(
                "train {:.3}/{:.3} test {:.3}/{:.3} (loss/acc) {rate:.1} epochs/s",
                stats.loss, stats.acc, eval.loss, eval.acc
            ),
            options.progress,
        );
        if epoch % t.checkpoint_every == 0 {
            save(&history, &model, &optimizer, &rng)?;
        }
    }
    progress.finish();
    save(&history, &model, &optimizer, &rng)?;
    let memorised_epoch = history.first_epoch(|r| r.train_acc, t.memorised_at);
    let grokked_epoch = history.first_epoch(|r| r.test_acc, t.grokked_at);
    let markers: Vec<(&str, u64)> = [("memorised", memorised_epoch), ("grokked", grokked_epoch)]
        .into_iter()
        .filter_map(|(l, e)| e.map(|e| (l, e)))
        .collect();
    let title = format!(
        "{}: (a {} b) mod {}, train fraction {}",
        config.name, config.data.op, config.data.p, config.data.train_frac
    );
    plot_curves(run_dir.join("curves.png"), &title, &history, &markers)?;
    let elapsed = started.elapsed().as_secs_f64();
    let outcome = GrokkingOutcome {
        run_dir,
        memorised_epoch,
        grokked_epoch,
        epochs_run: epoch - start_epoch,
        epochs_per_second: (epoch - start_epoch) as f64 / elapsed.max(1e-9),
        seconds: seconds_before + elapsed,
        history,
    };
    write_atomic(
        outcome.run_dir.join("summary.toml"),
        summary_toml(&outcome, &device).as_bytes(),
    )?;
    Ok(outcome)
}

fn stopped_after_grokking(history: &History, config: &GrokkingConfig) -> bool {
    let (Some(after), Some(last)) = (config.train.stop_after_grokking, history.records.last())
    else {
        return false;
    };
    history
        .first_epoch(|r| r.test_acc, config.train.grokked_at)
        .is_some_and(|g| last.epoch >= g + after)
}

fn summary_toml(o: &GrokkingOutcome, device: &Device) -> String {
    let last = o.history.records.last().copied().unwrap_or_default();
    let opt = |e: Option<u64>| e.map_or("\"not reached\"".to_string(), |e| e.to_string());
    format!(
        "device = \"{}\"\nepochs = {}\nmemorised_epoch = {}\ngrokked_epoch = {}\nfinal_train_acc = {}\nfinal_test_acc = {}\nfinal_test_loss = {}\nseconds = {:.1}\nepochs_per_second = {:.2}  # over the whole run, across resumes\n",
        device.name(),
        last.epoch,
        opt(o.memorised_epoch),
        opt(o.grokked_epoch),
        last.train_acc,
        last.test_acc,
        last.test_loss,
        o.seconds,
        last.epoch as f64 / o.seconds.max(1e-9)
    )
}
