//! The supervised runner's config (TOML), in the sections of the plasticity studies' experiment
//! configs: `[data]` (dataset, transforms, task stream), `[net]` (a registered model and its
//! parameters), `[learner]` (the learning algorithm, batch size and `[learner.optim]`),
//! `[evaluation]` (rank tracking), `[logging]` and `[landscape]` ([`crate::landscape::LandscapeConfig`]). Unknown keys are errors; [`SupervisedConfig::plan`]
//! checks every value and names the key it rejects.

use super::learners::{check_learner, CbpConfig, GNT_KINDS};
use crate::landscape::LandscapeConfig;
use dynlab_models::{ModelParams, ParamValue};
use dynlab_optim::{OptimConfig, OptimPlan};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisedConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Seed of the split, the task structure, the initialisation and the batch order.
    #[serde(default)]
    pub seed: u64,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// The data and its task stream.
    pub data: DataConfig,
    /// The network.
    pub net: NetConfig,
    /// The learning algorithm.
    pub learner: LearnerConfig,
    /// What is measured and how often.
    #[serde(default)]
    pub evaluation: EvaluationConfig,
    /// Checkpoints.
    #[serde(default)]
    pub logging: LoggingConfig,
    /// Loss-landscape measurements every few tasks and along the trajectory (off by default).
    #[serde(default)]
    pub landscape: LandscapeConfig,
}

/// `[data]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// `digits` (shipped), `idx` (MNIST-style files), `cifar10`, `cifar100`, `npy`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
    /// Folder of the files (`idx`: `train-images-idx3-ubyte` and `train-labels-idx1-ubyte`;
    /// `cifar10`/`cifar100`: the binary batches; `npy`: `images.npy` and `labels.npy`); the
    /// shipped digits when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// Fraction of each class held out for testing (and for the probe set).
    #[serde(default = "default_test_fraction")]
    pub test_fraction: f64,
    /// Resize images to `resize × resize` (bilinear), e.g. 32 for the ConvNets.
    #[serde(default)]
    pub resize: Option<usize>,
    /// Repeat a single channel to this many (3 for the ConvNets on grey images).
    #[serde(default)]
    pub channels: Option<usize>,
    /// Flatten images to vectors (the FFNNs).
    #[serde(default)]
    pub flatten: bool,
    /// `permuted_inputs`, `permuted_labels`, `class_pairs`, `class_incremental`, or `none` (one
    /// task on the data as it is; `tasks` must be 1).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Number of tasks.
    pub tasks: usize,
    /// Examples per task (several passes over the task's data when larger than it).
    pub examples_per_task: usize,
    /// Task 0 unpermuted (permuted streams).
    #[serde(default)]
    pub identity_first: bool,
}

/// `[net]`: `model` names a registered model; every other key is one of its parameters.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NetConfig {
    /// A name of `dynlab_models::MODEL_NAMES`.
    pub model: String,
    /// The model's parameters.
    #[serde(flatten)]
    pub params: BTreeMap<String, NetValue>,
}

/// A model parameter's value as TOML has it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum NetValue {
    /// `true`/`false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A real number.
    Float(f64),
    /// A string.
    Str(String),
}

/// `[learner]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerConfig {
    /// The algorithm: `backprop` (with `optim.weight_decay`: BP + L2), `shrink_perturb`, `cbp`,
    /// `rr_cbp`, `rr_cbp2` or `rr_cbp_e_2` (see [`super::learners`]).
    #[serde(default = "default_learner")]
    pub kind: String,
    /// Rows per step.
    pub batch_size: usize,
    /// The optimizer.
    pub optim: OptimConfig,
    /// Shrink & Perturb's noise std (`shrink_perturb`).
    #[serde(default)]
    pub noise_std: f32,
    /// Generate-and-test's hyperparameters (`cbp` and the rank-restoring kinds).
    #[serde(default)]
    pub cbp: CbpConfig,
    /// Zero the output layer's weights and bias at the start of every task after the first (a new
    /// head per task, as the Continual ImageNet reference's `new_heads`; its optimizer state is
    /// kept, as there).
    #[serde(default)]
    pub reset_head: bool,
}

/// The models generate-and-test runs on: the dense stacks (hidden layers `layers.<i>`, tapped
/// `hidden.<i>`) and the plain ConvNet (`cbp` only: rank restoring is for dense layers).
pub const CBP_MODELS: [&str; 3] = ["deep_ffnn", "ffnn_normal_bn", "convnet"];

/// `[evaluation]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Measure ranks and units, and evaluate, every this many steps (one history row each).
    #[serde(default = "default_rank_every")]
    pub rank_every: u64,
    /// Rows of the fixed probe batch (the first rows of the test set, as the current task sees
    /// them).
    #[serde(default = "default_probe_size")]
    pub probe_size: usize,
    /// The `q` of "rank at q% energy".
    #[serde(default = "default_energy")]
    pub energy_percent: f64,
}

/// `[logging]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingConfig {
    /// Checkpoint every this many rows (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
}

impl Default for EvaluationConfig {
    fn default() -> EvaluationConfig {
        EvaluationConfig {
            rank_every: default_rank_every(),
            probe_size: default_probe_size(),
            energy_percent: default_energy(),
        }
    }
}

impl Default for LoggingConfig {
    fn default() -> LoggingConfig {
        LoggingConfig {
            checkpoint_every: default_checkpoint_every(),
        }
    }
}

fn default_runs_dir() -> String {
    "runs".into()
}
fn default_dataset() -> String {
    "digits".into()
}
fn default_test_fraction() -> f64 {
    0.2
}
fn default_stream() -> String {
    "permuted_inputs".into()
}
fn default_learner() -> String {
    "backprop".into()
}
fn default_rank_every() -> u64 {
    50
}
fn default_probe_size() -> usize {
    256
}
fn default_energy() -> f64 {
    90.0
}
fn default_checkpoint_every() -> u64 {
    20
}

/// Which task stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamKind {
    /// One task, the data unchanged.
    Single,
    /// A pixel permutation per task.
    PermutedInputs,
    /// A label permutation per task.
    PermutedLabels,
    /// Two classes per task, labelled 0/1.
    ClassPairs,
    /// Classes added task by task.
    ClassIncremental,
}

/// The config checked and turned into the library's types.
#[derive(Clone, Debug)]
pub struct SupervisedPlan {
    /// The task stream.
    pub stream: StreamKind,
    /// The model's parameters.
    pub model: ModelParams,
    /// Optimizer, schedule and clipping.
    pub optim: OptimPlan,
}

impl SupervisedConfig {
    /// Checks every value; errors name the key and what it accepts.
    pub fn plan(&self) -> Result<SupervisedPlan> {
        let d = &self.data;
        let stream = match d.stream.as_str() {
            "permuted_inputs" => StreamKind::PermutedInputs,
            "permuted_labels" => StreamKind::PermutedLabels,
            "class_pairs" => StreamKind::ClassPairs,
            "class_incremental" => StreamKind::ClassIncremental,
            "none" => StreamKind::Single,
            other => {
                return Err(Error::config(
                    "data.stream",
                    format!("`{other}` is not one of permuted_inputs, permuted_labels, class_pairs, class_incremental, none"),
                ))
            }
        };
        if stream == StreamKind::Single && d.tasks != 1 {
            return Err(Error::config(
                "data.tasks",
                format!("{} tasks with stream = \"none\" (one task only)", d.tasks),
            ));
        }
        if !["digits", "idx", "cifar10", "cifar100", "npy"].contains(&d.dataset.as_str()) {
            return Err(Error::config(
                "data.dataset",
                format!(
                    "`{}` is not one of digits, idx, cifar10, cifar100, npy",
                    d.dataset
                ),
            ));
        }
        if d.dataset != "digits" && d.path.is_none() {
            return Err(Error::config(
                "data.path",
                format!("`{}` needs a path", d.dataset),
            ));
        }
        if !(d.test_fraction > 0.0 && d.test_fraction < 1.0) {
            return Err(Error::config(
                "data.test_fraction",
                format!("{} is not in (0, 1)", d.test_fraction),
            ));
        }
        check_learner(&self.learner.kind, self.learner.noise_std, "learner")?;
        if self.landscape.every_tasks > 0 || self.landscape.trajectory {
            self.landscape.check("landscape")?;
        }
        let steps_per_task = d.examples_per_task.div_ceil(self.learner.batch_size.max(1)) as u64;
        if self.landscape.every_tasks > 0 && self.evaluation.rank_every > steps_per_task {
            return Err(Error::config(
                "evaluation.rank_every",
                format!(
                    "{} steps per row with landscape measurements at task starts: one row holds one \
                     measurement, so at most the {steps_per_task} steps of a task",
                    self.evaluation.rank_every
                ),
            ));
        }
        let gnt = GNT_KINDS.contains(&self.learner.kind.as_str());
        let rr_on_conv = self.learner.kind.starts_with("rr_") && self.net.model == "convnet";
        if gnt && (!CBP_MODELS.contains(&self.net.model.as_str()) || rr_on_conv) {
            return Err(Error::config(
                "learner.kind",
                format!(
                    "{} on `{}` (generate-and-test runs on {}; rank restoring on the dense stacks)",
                    self.learner.kind,
                    self.net.model,
                    CBP_MODELS.join(", ")
                ),
            ));
        }
        let e = &self.evaluation;
        if e.rank_every == 0 || e.probe_size == 0 {
            return Err(Error::config(
                "evaluation",
                "rank_every and probe_size must be at least 1",
            ));
        }
        if !(e.energy_percent > 0.0 && e.energy_percent <= 100.0) {
            return Err(Error::config(
                "evaluation.energy_percent",
                format!("{} is not in (0, 100]", e.energy_percent),
            ));
        }
        let values = self
            .net
            .params
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    NetValue::Bool(b) => ParamValue::Bool(*b),
                    NetValue::Int(i) => ParamValue::Int(*i),
                    NetValue::Float(f) => ParamValue::Float(*f),
                    NetValue::Str(s) => ParamValue::Str(s.clone()),
                };
                (k.clone(), v)
            })
            .collect();
        Ok(SupervisedPlan {
            stream,
            model: ModelParams::new(values),
            optim: self.learner.optim.plan(self.total_steps() as u64)?,
        })
    }

    /// Steps of the whole stream: `tasks · ⌈examples_per_task / batch_size⌉`.
    pub fn total_steps(&self) -> usize {
        let per_task = self
            .data
            .examples_per_task
            .div_ceil(self.learner.batch_size.max(1));
        self.data.tasks.saturating_mul(per_task)
    }
}
