//! The grokking experiment's config (TOML). Every key has a default except the ones that define the
//! task; unknown keys are errors. The `[optim]` section is the optimizer config every runner shares
//! ([`OptimConfig`]).

use super::data::{is_prime, ModOp};
use dynlab_models::{Init, PairEncoding};
use dynlab_optim::{OptimConfig, OptimPlan};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
/// The whole config.
pub struct GrokkingConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Seed of the split, the initialisation and the mini-batch order.
    #[serde(default)]
    pub seed: u64,
    /// Train this many networks at once as stacked replicas, replica `r` initialised from seed
    /// `seed + r` (the split and the batch order are the seed's); each has its own history rows
    /// (column `replica`) and phases.
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// The task.
    pub data: DataConfig,
    /// The network.
    pub model: ModelConfig,
    /// The optimizer.
    pub optim: OptimConfig,
    /// The training loop.
    pub train: TrainConfig,
}

/// `[data]`: the table and its split.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Modulus (prime).
    pub p: usize,
    /// `add`, `sub`, `mul` or `div`.
    #[serde(default = "default_op")]
    pub op: String,
    /// Fraction of the table used for training, in (0, 1).
    pub train_frac: f64,
}

/// `[model]`: the grokking MLP.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `one_hot` or `embedding`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// Embedding width (`embedding` encoding).
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// Hidden widths (GELU layers).
    pub hidden: Vec<usize>,
    /// `kaiming_uniform`, `kaiming_normal`, `xavier_uniform`, `xavier_normal`, `lecun_uniform`,
    /// `lecun_normal`, `pytorch_default`.
    #[serde(default = "default_init")]
    pub init: String,
}

/// `[train]`: the loop, checkpoints, logging and the phase thresholds.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs (passes over the training pairs).
    pub epochs: u64,
    /// 0: full batch.
    #[serde(default)]
    pub batch_size: usize,
    /// Checkpoint every this many epochs (and at the end).
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Log Adam diagnostics every this many epochs (0: never).
    #[serde(default = "default_one")]
    pub diagnostics_every: u64,
    /// Stop this many epochs after test accuracy reaches `grokked_at` (absent: run all epochs).
    #[serde(default)]
    pub stop_after_grokking: Option<u64>,
    /// Train accuracy that counts as memorised.
    #[serde(default = "default_memorised_at")]
    pub memorised_at: f32,
    /// Test accuracy that counts as grokked.
    #[serde(default = "default_grokked_at")]
    pub grokked_at: f32,
}

fn default_replicas() -> usize {
    1
}
fn default_runs_dir() -> String {
    "runs".into()
}
fn default_op() -> String {
    "add".into()
}
fn default_encoding() -> String {
    "one_hot".into()
}
fn default_embed_dim() -> usize {
    128
}
fn default_init() -> String {
    "kaiming_uniform".into()
}
fn default_checkpoint_every() -> u64 {
    500
}
fn default_one() -> u64 {
    1
}
fn default_memorised_at() -> f32 {
    0.99
}
fn default_grokked_at() -> f32 {
    0.95
}

/// The config turned into the library's types, every value checked.
#[derive(Clone, Debug)]
pub struct GrokkingPlan {
    /// The operation.
    pub op: ModOp,
    /// How pairs enter the network.
    pub encoding: PairEncoding,
    /// Weight initialisation.
    pub init: Init,
    /// Optimizer, schedule and clipping.
    pub optim: OptimPlan,
    /// Mini-batch size (`None`: full batch).
    pub batch_size: Option<usize>,
}

fn choice<T>(key: &str, value: &str, parsed: Option<T>, allowed: &str) -> Result<T> {
    parsed.ok_or_else(|| Error::config(key, format!("`{value}` is not one of {allowed}")))
}

impl GrokkingConfig {
    /// Checks every value and builds the typed plan; errors name the key and what it accepts.
    pub fn plan(&self) -> Result<GrokkingPlan> {
        let d = &self.data;
        if !is_prime(d.p) {
            return Err(Error::config("data.p", format!("{} is not prime", d.p)));
        }
        if !(d.train_frac > 0.0 && d.train_frac < 1.0) {
            return Err(Error::config(
                "data.train_frac",
                format!("{} is not strictly between 0 and 1", d.train_frac),
            ));
        }
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(Error::config(
                "name",
                format!("`{}` is not a folder name", self.name),
            ));
        }
        let op = choice("data.op", &d.op, ModOp::parse(&d.op), "add, sub, mul, div")?;
        let m = &self.model;
        let encoding = match m.encoding.as_str() {
            "one_hot" => PairEncoding::OneHot,
            "embedding" if m.embed_dim > 0 => PairEncoding::Embedding(m.embed_dim),
            "embedding" => return Err(Error::config("model.embed_dim", "must be positive")),
            other => {
                return Err(Error::config(
                    "model.encoding",
                    format!("`{other}` is not one of one_hot, embedding"),
                ))
            }
        };
        if m.hidden.contains(&0) {
            return Err(Error::config(
                "model.hidden",
                format!("{:?} has a zero width", m.hidden),
            ));
        }
        let init = choice(
            "model.init",
            &m.init,
            Init::parse(&m.init),
            "kaiming_uniform, kaiming_normal, xavier_uniform, xavier_normal, lecun_uniform, lecun_normal, pytorch_default",
        )?;
        if self.replicas == 0 {
            return Err(Error::config("replicas", "must be at least 1"));
        }
        let t = &self.train;
        if t.epochs == 0 {
            return Err(Error::config("train.epochs", "must be positive"));
        }
        if t.checkpoint_every == 0 {
            return Err(Error::config("train.checkpoint_every", "must be positive"));
        }
        let pairs = d.p * if op == ModOp::Div { d.p - 1 } else { d.p };
        let n_train = ((d.train_frac * pairs as f64).round() as usize).max(1);
        let batch_size = (t.batch_size > 0 && t.batch_size < n_train).then_some(t.batch_size);
        let steps_per_epoch = n_train.div_ceil(batch_size.unwrap_or(n_train)) as u64;
        Ok(GrokkingPlan {
            op,
            encoding,
            init,
            optim: self.optim.plan(t.epochs * steps_per_epoch)?,
            batch_size,
        })
    }
}
