//! The supervised runner of the loss-of-plasticity studies (Dohare et al. 2024, "Loss of
//! plasticity in deep continual learning"; the lls rank-tracking experiments): a registered model
//! trained online over a task stream (permuted inputs, permuted labels, class pairs,
//! class-incremental) by a learner of [`learners`] (`backprop`, which with `optim.weight_decay` is
//! BP + L2; `shrink_perturb`; `cbp`, continual backprop through [`gnt`]; `rr_cbp2` and
//! `rr_cbp_e_2`, rank-restoring CBP through [`rank_restoring`]), with, every `rank_every` steps, on a fixed probe batch and per hidden layer,
//! the rank measures, dead/dormant/saturated units and feature norms ([`measure`]), the weight
//! norms, and the current task's train and test loss and accuracy. One history row per
//! measurement (layer metrics as columns `l<i>_<measure>`), written as CSV and Parquet, with plots
//! of the accuracy per task and the rank per layer over time.
//!
//! The probe batch is the first `probe_size` rows of the held-out split as the current task sees
//! them (its permutation, its classes); train accuracy and loss are the online ones, over the
//! interval's training batches before each update; test accuracy is over the whole held-out split
//! as the current task sees it.
//!
//! `cargo run --release --example supervised -- --config examples/configs/plasticity_rank_tracking.toml`.

pub mod bit_flipping;
pub mod config;
pub mod gnt;
pub mod learners;
pub mod measure;
pub mod rank_restoring;

pub use bit_flipping::{run_bit_flipping, BitFlippingConfig, BitFlippingOutcome};
pub use config::{
    DataConfig, EvaluationConfig, LearnerConfig, LoggingConfig, NetConfig, NetValue, StreamKind,
    SupervisedConfig, SupervisedPlan,
};

use crate::landscape::figures::plot_slices;
use crate::landscape::slices::parameter_values;
use crate::landscape::{
    interpolation, measure_landscape, sharpness, smoothness, snapshot, FigureTarget, LossEval,
    Slice1d,
};
use dynlab_data::{
    cifar100_files, cifar10_files, digits, load_cifar10, load_cifar100, load_idx, load_npy,
    shipped_digits_dir, split_per_class, Cifar100Labels, CifarSplit, ClassIncremental, ClassPairs,
    ImageLayout, PermutedInputs, PermutedLabels, Resize, Schedule, SplitRule, TaskStream,
};
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir,
    RunOptions, Summary, Value,
};
use dynlab_models::{build_model, Activation, Record, Stateful, ZooModel};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, CrossEntropy, Dataset, Trainer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

history_row! {
    /// One row per measurement.
    pub struct MeasureRow {
        /// Optimizer steps taken.
        pub step: u64,
        /// The task of the interval's last step.
        pub task: u64,
        /// Learning rate of the last step.
        pub lr: f32,
        /// Online cross-entropy over the interval's training batches.
        pub train_loss: f32,
        /// Online accuracy over the interval's training batches.
        pub train_acc: f32,
        /// Cross-entropy on the held-out split as the current task sees it.
        pub test_loss: f32,
        /// Accuracy on the held-out split as the current task sees it.
        pub test_acc: f32,
        /// Mean global gradient norm over the interval.
        pub grad_norm: f32,
    }
}

/// Where a run's results are.
#[derive(Clone, Debug)]
pub struct SupervisedOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every measurement's row (across resumes).
    pub history: History,
    /// Test accuracy at the end of each task reached (the task's last row).
    pub task_test_acc: Vec<f64>,
    /// Training steps per second of this call (measurements included).
    pub steps_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
    /// Kernel launches per optimizer step in this call (measurements included).
    pub launches_per_step: Option<f64>,
    /// Host synchronisations per optimizer step in this call.
    pub syncs_per_step: Option<f64>,
    /// The end-of-run landscape measurement's cells (with `[landscape] every_tasks > 0`).
    pub landscape_end: Option<Vec<(String, f64)>>,
}

/// Seed of the task structure and the batch order, derived from the config's seed.
const STREAM_SEED_MIX: u64 = 0x57EA_4D15_C0DE_0001;
/// Seed of Shrink & Perturb's noise.
const PERTURB_SEED_MIX: u64 = 0x5A7E_0000_0000_0003;
/// Seed of generate-and-test's fresh weights and coin.
const GNT_SEED_MIX: u64 = 0x6E77_0000_0000_0004;
/// Seed of the train/test split.
const SPLIT_SEED_MIX: u64 = 0x5B11_7000_0000_0002;
/// Seed of the landscape's Lanczos start vectors and random directions.
const LANDSCAPE_SEED_MIX: u64 = 0x1A4D_5CA9_E000_0005;

/// The task stream the config asks for.
enum Stream {
    Inputs(PermutedInputs),
    Labels(PermutedLabels),
    Pairs(ClassPairs),
    Incremental(ClassIncremental),
}

impl Stream {
    fn get(&self) -> &dyn TaskStream {
        match self {
            Stream::Inputs(s) => s,
            Stream::Labels(s) => s,
            Stream::Pairs(s) => s,
            Stream::Incremental(s) => s,
        }
    }

    fn get_mut(&mut self) -> &mut dyn TaskStream {
        match self {
            Stream::Inputs(s) => s,
            Stream::Labels(s) => s,
            Stream::Pairs(s) => s,
            Stream::Incremental(s) => s,
        }
    }
}

/// The experiment's state.
struct Supervised {
    config: SupervisedConfig,
    device: Device,
    trainer: Trainer<ZooModel>,
    stream: Stream,
    test: Dataset,
    activation: Activation,
    rng: Rng,
    /// Rows of the task that the last interval ended in (for the test view's cache).
    task_views: Option<(usize, Dataset)>,
    /// Optimizer steps per task, and the output layer `reset_head` zeroes at each task start.
    head_reset: Option<(usize, String)>,
    /// The next task at whose start the landscape is measured.
    landscape_next: usize,
    /// The end-of-run measurement's cells (they go to the summary as `end_<name>`).
    landscape_end: Option<Vec<(String, f64)>>,
    /// The parameters at the last landscape measurement (the interpolation's start).
    landscape_prev: Option<Vec<Tensor>>,
    /// Landscape cells measured during the interval, set on its row.
    pending: Vec<(String, f64)>,
}

/// Reads the dataset the config names (inputs `[N, C, H, W]` in `[0, 1]`, labels `[N]`).
fn load_dataset(d: &DataConfig, device: &Device) -> Result<Dataset> {
    let path = d.path.as_deref().map(Path::new);
    let root = |what: &str| {
        path.ok_or_else(|| Error::config("data.path", format!("`{what}` needs a path")))
    };
    match d.dataset.as_str() {
        "digits" => digits(
            path.map_or_else(shipped_digits_dir, Path::to_path_buf),
            device,
        ),
        "idx" => {
            let dir = root("idx")?;
            load_idx(
                dir.join("train-images-idx3-ubyte"),
                dir.join("train-labels-idx1-ubyte"),
                device,
            )
        }
        "cifar10" => load_cifar10(&cifar10_files(root("cifar10")?, CifarSplit::Train), device),
        "cifar100" => load_cifar100(
            &cifar100_files(root("cifar100")?, CifarSplit::Train),
            Cifar100Labels::Fine,
            device,
        ),
        "npy" => {
            let dir = root("npy")?;
            load_npy(
                dir.join("images.npy"),
                dir.join("labels.npy"),
                ImageLayout::Nhwc,
                device,
            )
        }
        other => Err(Error::config(
            "data.dataset",
            format!("`{other}` is not one of digits, idx, cifar10, cifar100, npy"),
        )),
    }
}

/// Resizes, repeats channels and flattens the inputs as `[data]` asks.
fn prepare_inputs(d: &DataConfig, data: Dataset) -> Result<Dataset> {
    let mut x = data.inputs;
    if let Some(side) = d.resize {
        x = Resize::new(side, side)?.resize(&x)?;
    }
    if let Some(c) = d.channels {
        let s = x.shape().to_vec();
        if s[1] != c {
            if s[1] != 1 {
                return Err(Error::config(
                    "data.channels",
                    format!(
                        "{c} channels from images with {} (only 1 → c repeats)",
                        s[1]
                    ),
                ));
            }
            x = x.expand(&[s[0], c, s[2], s[3]])?.copy()?;
        }
    }
    if d.flatten {
        x = x.reshape(&[x.shape()[0] as isize, -1])?;
    }
    Dataset::new(x, data.targets)
}

/// The data `[data]` describes, split into `(train, test)` by class (seeded).
fn load_split(config: &SupervisedConfig, device: &Device) -> Result<(Dataset, Dataset)> {
    let data = prepare_inputs(&config.data, load_dataset(&config.data, device)?)?;
    split_per_class(
        &data,
        SplitRule::Fraction(1.0 - config.data.test_fraction),
        config.seed ^ SPLIT_SEED_MIX,
    )
}

/// The probe batch: the first `probe_size` rows of `view`.
fn probe_of(view: &Dataset, probe_size: usize) -> Result<dynlab_runtime::Tensor> {
    view.inputs.narrow(0, 0, probe_size.min(view.len()))
}

/// The probe batch the runner measures `task` on (the first `probe_size` held-out rows as the
/// task sees them), for analysing a run's checkpoint outside the runner.
pub fn probe_inputs(
    config: &SupervisedConfig,
    task: usize,
    device: &Device,
) -> Result<dynlab_runtime::Tensor> {
    let plan = config.plan()?;
    let (train, test) = load_split(config, device)?;
    let stream = make_stream(plan.stream, train, config)?;
    probe_of(
        &stream.get().task_view(task, &test)?,
        config.evaluation.probe_size,
    )
}

fn make_stream(kind: StreamKind, train: Dataset, config: &SupervisedConfig) -> Result<Stream> {
    let d = &config.data;
    let schedule = Schedule::new(d.tasks, d.examples_per_task, config.learner.batch_size)?;
    let seed = config.seed ^ STREAM_SEED_MIX;
    Ok(match kind {
        StreamKind::PermutedInputs => Stream::Inputs(
            PermutedInputs::new(train, schedule, seed)?.with_identity_first(d.identity_first),
        ),
        StreamKind::Single => {
            Stream::Inputs(PermutedInputs::new(train, schedule, seed)?.with_identity_first(true))
        }
        StreamKind::PermutedLabels => Stream::Labels(
            PermutedLabels::new(train, schedule, seed)?.with_identity_first(d.identity_first),
        ),
        StreamKind::ClassPairs => Stream::Pairs(ClassPairs::new(train, schedule, seed)?),
        StreamKind::ClassIncremental => {
            Stream::Incremental(ClassIncremental::new(train, schedule, 2, 2, seed)?)
        }
    })
}

impl Supervised {
    fn new(config: &SupervisedConfig) -> Result<Supervised> {
        let plan = config.plan()?;
        let device = Device::default()?;
        let (train, test) = load_split(config, &device)?;
        let stream = make_stream(plan.stream, train, config)?;
        let mut init_rng = Rng::new(config.seed);
        let model = build_model(&config.net.model, &plan.model, &mut init_rng, &device)?;
        let activation = match config.net.params.get("activation") {
            Some(NetValue::Str(name)) => Activation::parse(name).unwrap_or(Activation::Relu),
            _ => Activation::Relu,
        };
        let hidden = learners::dense_hidden_layers(&model);
        let learner = &config.learner;
        let mut optimizer = plan.optim.optimizer()?;
        if learners::GNT_KINDS.contains(&learner.kind.as_str()) {
            optimizer = learners::adam_gnt(optimizer, &learner.cbp)?;
        }
        let head_reset = match learner.reset_head {
            true => {
                let d = &config.data;
                let schedule = Schedule::new(d.tasks, d.examples_per_task, learner.batch_size)?;
                Some((schedule.steps_per_task(), learners::output_layer(&model)?))
            }
            false => None,
        };
        let mut trainer = Trainer::new(model, optimizer, plan.optim.schedule, CrossEntropy)
            .with_clip_norm(plan.optim.clip_norm);
        match learner.kind.as_str() {
            "shrink_perturb" => {
                let seed = config.seed ^ PERTURB_SEED_MIX;
                trainer = trainer.with_hook(learners::Perturb::new(vec![learner.noise_std], seed)?);
            }
            kind if learners::GNT_KINDS.contains(&kind) => {
                let seed = config.seed ^ GNT_SEED_MIX;
                let gnt = learner.cbp.gnt(kind, activation, seed, "learner.cbp")?;
                let layers = match config.net.model.as_str() {
                    "convnet" => gnt::LayerUnits::convnet(),
                    _ => gnt::LayerUnits::stack(hidden),
                };
                trainer = trainer.with_hook(gnt::GenerateAndTest::new(gnt, layers)?);
            }
            _ => {}
        }
        Ok(Supervised {
            config: config.clone(),
            device,
            trainer,
            stream,
            test,
            activation,
            rng: Rng::new(config.seed ^ STREAM_SEED_MIX),
            task_views: None,
            head_reset,
            landscape_next: 0,
            landscape_end: None,
            landscape_prev: None,
            pending: Vec::new(),
        })
    }

    /// The held-out split as `task` sees it (cached for the task).
    fn test_view(&mut self, task: usize) -> Result<Dataset> {
        if let Some((t, view)) = &self.task_views {
            if *t == task {
                return Ok(view.clone());
            }
        }
        let view = self.stream.get().task_view(task, &self.test)?;
        self.task_views = Some((task, view.clone()));
        Ok(view)
    }

    fn steps_total(&self) -> u64 {
        self.stream.get().total_steps() as u64
    }

    /// The first `landscape.rows` rows of the held-out split as `task` sees it.
    fn landscape_batch(&mut self, task: usize) -> Result<Batch> {
        let view = self.test_view(task)?;
        let rows = self.config.landscape.rows.min(view.inputs.shape()[0]);
        Ok(Batch {
            inputs: view.inputs.narrow(0, 0, rows)?,
            targets: view.targets.narrow(0, 0, rows)?,
        })
    }

    /// A landscape measurement at the current parameters on `task`'s loss (figures into the run
    /// folder's `landscape/`, captioned with `label`): its cells.
    fn measure_landscape(
        &mut self,
        task: usize,
        stem: &str,
        label: &str,
    ) -> Result<Vec<(String, f64)>> {
        let batch = self.landscape_batch(task)?;
        let c = &self.config;
        let dir = Path::new(&c.runs_dir).join(&c.name).join("landscape");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("landscape", &dir, e))?;
        let title = format!(
            "{}: {} {label} (step {})",
            c.name,
            c.net.model,
            self.trainer.optimizer.steps()
        );
        let seed = c.seed ^ LANDSCAPE_SEED_MIX;
        let model = &mut self.trainer.model;
        let figures = FigureTarget {
            dir: &dir,
            stem,
            title: &title,
        };
        let report = measure_landscape(model, &batch, &CrossEntropy, &c.landscape, seed, figures)?;
        let mut cells = vec![
            ("landscape_task".to_string(), task as f64),
            ("landscape_loss".to_string(), report.loss),
        ];
        for (i, v) in report.top_eigenvalues.iter().enumerate() {
            cells.push((format!("hessian_top{}", i + 1), *v));
        }
        if let Some((trace, _)) = report.trace {
            cells.push(("hessian_trace".into(), trace));
        }
        if let Some((effective, numerical)) = report.jacobian_rank {
            cells.push(("jacobian_effective_rank".into(), effective));
            cells.push(("jacobian_numerical_rank".into(), numerical));
        }
        cells.push(("hvp_seconds".into(), report.hvp_seconds));
        cells.push(("lanczos_seconds".into(), report.lanczos_seconds));
        cells.push(("slice_seconds".into(), report.slice_seconds));
        if let Some(barrier) = self.interpolate_from_previous(&batch, &dir, stem, &title)? {
            cells.push(("interpolation_barrier".into(), barrier));
        }
        Ok(cells)
    }

    /// The loss along the line from the previous measurement's parameters to these
    /// (`<stem>_interpolation.png`) and its barrier `max_α L(α) − ((1−α) L(0) + α L(1))` over
    /// `α ∈ [0, 1]` (none at the first measurement); these parameters become the previous ones.
    fn interpolate_from_previous(
        &mut self,
        batch: &Batch,
        dir: &Path,
        stem: &str,
        title: &str,
    ) -> Result<Option<f64>> {
        let mut barrier_found = None;
        let now = parameter_values(&self.trainer.model)
            .iter()
            .map(Tensor::copy)
            .collect::<Result<Vec<_>>>()?;
        if let Some(previous) = self.landscape_prev.take() {
            let eval = LossEval {
                batch,
                objective: &CrossEntropy,
                chunk: self.config.landscape.chunk,
            };
            let alphas: Vec<f64> = (0..=INTERPOLATION_POINTS)
                .map(|i| -0.25 + 1.5 * i as f64 / INTERPOLATION_POINTS as f64)
                .collect();
            let model = &mut self.trainer.model;
            let line = interpolation(model, &eval, &previous, &now, &alphas)?;
            plot_slices(
                dir.join(format!("{stem}_interpolation.png")),
                title,
                "alpha",
                &[("previous measurement → now", &line)],
            )?;
            barrier_found = Some(barrier(&line));
        }
        self.landscape_prev = Some(now);
        Ok(barrier_found)
    }
}

/// The end measurement's cells as a record (`names`, comma-separated, and one value each).
fn end_record(cells: Option<&[(String, f64)]>) -> Record {
    let Some(cells) = cells else {
        return Record::default();
    };
    let names: Vec<&str> = cells.iter().map(|(n, _)| n.as_str()).collect();
    cells.iter().fold(
        Record::default().with_value("names", names.join(",")),
        |r, (n, v)| r.with_value(n.as_str(), format!("{v:e}")),
    )
}

/// What [`end_record`] wrote (`None` when it holds nothing).
fn end_cells(record: &Record) -> Result<Option<Vec<(String, f64)>>> {
    let Ok(names) = record.value::<String>("names") else {
        return Ok(None);
    };
    names
        .split(',')
        .map(|n| Ok((n.to_string(), record.value::<f64>(n)?)))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Points of the interpolation line over `α ∈ [−0.25, 1.25]` (`α = 0` and `1` among them).
const INTERPOLATION_POINTS: usize = 24;

/// `max_{α ∈ [0, 1]} L(α) − ((1 − α) L(0) + α L(1))` of a line whose coefficients include 0 and 1
/// (NaN when a loss on the line is not finite).
fn barrier(line: &Slice1d) -> f64 {
    let at = |a: f64| {
        let i = line.alphas.iter().position(|x| (x - a).abs() < 1e-9);
        i.map_or(f64::NAN, |i| line.losses[i])
    };
    let (start, end) = (at(0.0), at(1.0));
    if line.losses.iter().any(|l| !l.is_finite()) {
        return f64::NAN;
    }
    line.alphas
        .iter()
        .zip(&line.losses)
        .filter(|(a, _)| (-1e-9..=1.0 + 1e-9).contains(*a))
        .map(|(a, l)| l - ((1.0 - a) * start + a * end))
        .fold(f64::NEG_INFINITY, f64::max)
}

fn metric(values: &BTreeMap<String, f32>, name: &str) -> f32 {
    values.get(name).copied().unwrap_or(f32::NAN)
}

impl Experiment for Supervised {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.steps_total()
            .div_ceil(self.config.evaluation.rank_every)
    }

    fn unit_name(&self) -> &str {
        "measurements"
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.logging.checkpoint_every
    }

    fn run_unit(&mut self, _unit: u64, history: &mut History) -> Result<String> {
        let mut task = 0;
        let every = self.config.evaluation.rank_every;
        for i in 0..every {
            let Some((t, batch)) = self.stream.get_mut().next_step()? else {
                break;
            };
            if let Some((per_task, head)) = &self.head_reset {
                let step = self.trainer.optimizer.steps() as usize;
                if step > 0 && step.is_multiple_of(*per_task) {
                    learners::zero_layer(&mut self.trainer.model, head)?;
                }
            }
            let k = self.config.landscape.every_tasks;
            if k > 0 && t >= self.landscape_next {
                let label = format!("at the start of task {t}");
                let cells = self.measure_landscape(t, &format!("task_{t}"), &label)?;
                self.pending.extend(cells);
                self.landscape_next = (t / k + 1) * k;
            }
            let last_of_interval =
                i + 1 == every || self.trainer.optimizer.steps() + 1 == self.steps_total();
            if self.config.landscape.trajectory && last_of_interval {
                let probe = self.landscape_batch(t)?;
                let before = snapshot(&self.trainer.model, &probe, &CrossEntropy)?;
                self.trainer.step(&batch, &mut self.rng)?;
                let after = snapshot(&self.trainer.model, &probe, &CrossEntropy)?;
                let s = smoothness(&before, &after)?;
                self.pending
                    .push(("gradient_lipschitz".into(), s.gradient_lipschitz));
                self.pending.push(("effective_lr".into(), s.effective_lr));
                let steps = self.config.landscape.sharpness_steps;
                let seed = self.config.seed ^ LANDSCAPE_SEED_MIX;
                let top = sharpness(&self.trainer.model, &probe, &CrossEntropy, steps, seed)?;
                self.pending.push(("sharpness".into(), top));
            } else {
                self.trainer.step(&batch, &mut self.rng)?;
            }
            task = t;
        }
        let run_done = self.trainer.optimizer.steps() >= self.steps_total();
        if self.config.landscape.every_tasks > 0 && run_done && self.landscape_end.is_none() {
            let label = format!("at the end of the run (task {task})");
            self.landscape_end = Some(self.measure_landscape(task, "end", &label)?);
        }
        let view = self.test_view(task)?;
        let test = Batch {
            inputs: view.inputs.clone(),
            targets: view.targets.clone(),
        };
        self.trainer.evaluate_into(&test, "test_")?;
        let log = self.trainer.log()?;
        let row = MeasureRow {
            step: self.trainer.optimizer.steps(),
            task: task as u64,
            lr: metric(&log, "lr"),
            train_loss: metric(&log, "loss"),
            train_acc: metric(&log, "acc"),
            test_loss: metric(&log, "test_loss"),
            test_acc: metric(&log, "test_acc"),
            grad_norm: metric(&log, "grad_norm"),
        };
        history.push(&row)?;
        if self.config.landscape.trajectory {
            self.pending
                .push(("two_over_lr".into(), 2.0 / row.lr as f64));
        }
        for (name, value) in self.pending.drain(..) {
            history.set(&name, Value::F64(value))?;
        }
        let probe = probe_of(&view, self.config.evaluation.probe_size)?;
        let probe_rows = probe.shape()[0];
        let layers = measure::measure_layers(
            &self.trainer.model,
            &probe,
            self.activation,
            self.config.evaluation.energy_percent,
        )?;
        let input_features: usize = probe.shape()[1..].iter().product();
        let input_rank = probe_rows.min(input_features) as f64;
        measure::record_layers(history, &layers, input_rank)?;
        measure::record_weight_norms(history, &self.trainer.model)?;
        let ranks: Vec<String> = layers
            .iter()
            .map(|l| format!("{:.1}", l.ranks.effective_rank))
            .collect();
        Ok(format!(
            "task {task} train {:.3} test {:.3} (acc) erank [{}]",
            row.train_acc,
            row.test_acc,
            ranks.join(", ")
        ))
    }

    fn save(&self) -> Result<Record> {
        let mut previous = Record::default();
        for (i, t) in self.landscape_prev.iter().flatten().enumerate() {
            previous = previous.with_tensor(i.to_string(), t.clone());
        }
        Ok(Record::default()
            .nest("landscape_prev", previous)
            .with_value(
                "landscape_prev_count",
                self.landscape_prev.as_ref().map_or(0, Vec::len),
            )
            .nest("trainer", self.trainer.save_state()?)
            .nest("rng", self.rng.save_state()?)
            .with_value("stream_position", self.stream.get().position() as u64)
            .with_value("landscape_next", self.landscape_next as u64)
            .nest("landscape_end", end_record(self.landscape_end.as_deref())))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(&record.part("trainer"))?;
        self.rng.load_state(&record.part("rng"))?;
        // Checkpoints from before the landscape measurements have none of these keys.
        let count: usize = record.value("landscape_prev_count").unwrap_or(0);
        let previous = record.part("landscape_prev");
        self.landscape_prev = match count {
            0 => None,
            n => Some(
                (0..n)
                    .map(|i| previous.tensor(&i.to_string()).cloned())
                    .collect::<Result<_>>()?,
            ),
        };
        self.landscape_next = record.value::<u64>("landscape_next").unwrap_or(0) as usize;
        self.landscape_end = end_cells(&record.part("landscape_end"))?;
        let position: u64 = record.value("stream_position")?;
        self.stream.get_mut().seek(position as usize)
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let c = &self.config;
        let title = format!(
            "{}: {} on {} ({}, {} tasks)",
            c.name, c.net.model, c.data.dataset, c.data.stream, c.data.tasks
        );
        plot_history(run.file("accuracy.png"), history, &accuracy_figure(&title))?;
        let layers = (0..)
            .take_while(|i| history.column(&format!("l{i}_effective_rank")).is_some())
            .count();
        plot_history(run.file("ranks.png"), history, &rank_figure(&title, layers))?;
        let per_task = task_final_test_acc(history);
        summary.set("task_test_acc", per_task.clone());
        summary.set(
            "final_test_acc",
            per_task.last().copied().unwrap_or(f64::NAN),
        );
        summary.set("layers", layers as i64);
        summary.set("steps", self.trainer.optimizer.steps() as i64);
        if c.landscape.every_tasks > 0 {
            let k = c.landscape.top_k;
            plot_history(
                run.file("landscape.png"),
                history,
                &landscape_figure(&title, k),
            )?;
            for column in [
                "landscape_task",
                "hessian_top1",
                "hessian_trace",
                "landscape_loss",
            ] {
                if let Some(values) = measured(history, column) {
                    summary.set(column, values);
                }
            }
            for (name, value) in self.landscape_end.iter().flatten() {
                summary.set(&format!("end_{name}"), *value);
            }
            for column in ["hvp_seconds", "lanczos_seconds", "slice_seconds"] {
                if let Some(values) = measured(history, column) {
                    let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
                    summary.set(&format!("mean_{column}"), mean);
                }
            }
        }
        if c.landscape.trajectory {
            plot_history(
                run.file("trajectory.png"),
                history,
                &trajectory_figure(&title),
            )?;
        }
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        let seed = self.config.seed;
        vec![
            ("init", seed),
            ("split", seed ^ SPLIT_SEED_MIX),
            ("tasks_and_batches", seed ^ STREAM_SEED_MIX),
        ]
    }

    fn steps(&self) -> u64 {
        self.trainer.optimizer.steps()
    }
}

/// The non-null values of `column` (rows where it was measured), `None` when it is absent.
fn measured(history: &History, column: &str) -> Option<Vec<f64>> {
    let values: Vec<f64> = history.numbers(column)?.into_iter().flatten().collect();
    (!values.is_empty()).then_some(values)
}

/// The top Hessian eigenvalues and the loss at each landscape measurement.
fn landscape_figure(title: &str, k: usize) -> Figure {
    let eigen = (1..=k).fold(
        Panel::new("top Hessian eigenvalues (task start)", "λ").log_y(),
        |p, i| p.line(&format!("hessian_top{i}"), &format!("λ{i}")),
    );
    Figure {
        title: title.to_string(),
        x: "step".to_string(),
        log_x: false,
        panels: vec![
            eigen,
            Panel::new("loss at the measurement", "loss").line("landscape_loss", "new task's loss"),
        ],
        markers: Vec::new(),
    }
}

/// Smoothness, sharpness against `2/η`, and the effective learning rate along training.
fn trajectory_figure(title: &str) -> Figure {
    Figure {
        title: title.to_string(),
        x: "step".to_string(),
        log_x: false,
        panels: vec![
            Panel::new("gradient-Lipschitz estimate", "‖Δg‖/‖Δθ‖")
                .line("gradient_lipschitz", "β̂")
                .log_y(),
            Panel::new("sharpness vs 2/η", "λ_max")
                .line("sharpness", "λ_max")
                .line("two_over_lr", "2/η")
                .log_y(),
            Panel::new("effective learning rate", "‖Δθ‖/‖g‖").line("effective_lr", "η_eff"),
        ],
        markers: Vec::new(),
    }
}

/// The last row's test accuracy of each task, in task order.
fn task_final_test_acc(history: &History) -> Vec<f64> {
    let mut last: BTreeMap<u64, f64> = BTreeMap::new();
    for row in 0..history.rows() {
        let task = history.cell("task", row).and_then(Value::as_f64);
        let acc = history.cell("test_acc", row).and_then(Value::as_f64);
        if let (Some(task), Some(acc)) = (task, acc) {
            last.insert(task as u64, acc);
        }
    }
    last.into_values().collect()
}

fn accuracy_figure(title: &str) -> Figure {
    Figure {
        title: title.to_string(),
        x: "step".into(),
        log_x: false,
        panels: vec![
            Panel::new("accuracy (current task)", "accuracy")
                .line("train_acc", "train (online)")
                .line("test_acc", "test"),
            Panel::new("cross-entropy", "loss")
                .line("train_loss", "train (online)")
                .line("test_loss", "test"),
            Panel::new("task", "task").line("task", "task"),
        ],
        markers: Vec::new(),
    }
}

fn rank_figure(title: &str, layers: usize) -> Figure {
    let per_layer = |panel: Panel, measure: &str| {
        (0..layers).fold(panel, |p, i| {
            p.line(&format!("l{i}_{measure}"), &format!("layer {i}"))
        })
    };
    Figure {
        title: title.to_string(),
        x: "step".into(),
        log_x: false,
        panels: vec![
            per_layer(
                Panel::new("effective rank", "effective rank"),
                "effective_rank",
            ),
            per_layer(
                Panel::new("approximate rank (99%)", "rank"),
                "approximate_rank",
            ),
            per_layer(Panel::new("dead units", "units"), "dead"),
        ],
        markers: Vec::new(),
    }
}

/// Runs (or resumes) the experiment described by `config`; `resolved_toml` is saved as the run's
/// `config.toml`.
pub fn run(
    config: &SupervisedConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<SupervisedOutcome> {
    let mut experiment = Supervised::new(config)?;
    let steps_before_call = experiment.steps();
    let outcome = run_experiment(
        &mut experiment,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<MeasureRow>(),
        options,
    )?;
    // `steps_before_call` is read before a resume restores the trainer: count from the history.
    let resumed_at = outcome
        .history
        .rows()
        .checked_sub(outcome.units_run as usize + 1)
        .and_then(|row| outcome.history.cell("step", row).and_then(Value::as_f64))
        .map_or(steps_before_call, |s| s as u64);
    let steps_run = experiment.steps() - resumed_at;
    let call_seconds = outcome.units_run as f64 / outcome.units_per_second.max(1e-12);
    Ok(SupervisedOutcome {
        run_dir: outcome.run_dir,
        task_test_acc: task_final_test_acc(&outcome.history),
        steps_per_second: steps_run as f64 / call_seconds.max(1e-9),
        seconds: outcome.seconds,
        launches_per_step: outcome.launches_per_step,
        syncs_per_step: outcome.syncs_per_step,
        history: outcome.history,
        landscape_end: experiment.landscape_end.clone(),
    })
}
