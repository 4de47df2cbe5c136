//! The grokking experiment's config (TOML). Every key has a default except the ones that define the
//! task; unknown keys are errors.

use crate::data::{is_prime, ModOp};
use crate::optim::{LrSchedule, Method, ParamGroup, ScheduleKind};
use dynlab_models::{Init, PairEncoding};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrokkingConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub optim: OptimConfig,
    pub train: TrainConfig,
}

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

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `one_hot` or `embedding`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// Hidden widths (GELU layers).
    pub hidden: Vec<usize>,
    /// `kaiming_uniform`, `kaiming_normal`, `xavier_uniform`, `xavier_normal`, `lecun_uniform`,
    /// `lecun_normal`.
    #[serde(default = "default_init")]
    pub init: String,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `adamw`, `adam` or `sgd`.
    #[serde(default = "default_method")]
    pub method: String,
    pub lr: f32,
    #[serde(default)]
    pub weight_decay: f32,
    /// `weights` (no decay on biases, norms, embeddings) or `all`.
    #[serde(default = "default_decay_on")]
    pub decay_on: String,
    #[serde(default = "default_betas")]
    pub betas: [f32; 2],
    #[serde(default = "default_eps")]
    pub eps: f32,
    #[serde(default)]
    pub momentum: f32,
    #[serde(default)]
    pub nesterov: bool,
    #[serde(default)]
    pub warmup_steps: u64,
    /// `constant` or `cosine` (to `min_lr_factor · lr` at the last step).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    #[serde(default)]
    pub min_lr_factor: f32,
    /// Clip the global gradient norm to this value (0: off).
    #[serde(default)]
    pub clip_norm: f32,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: u64,
    /// 0: full batch.
    #[serde(default)]
    pub batch_size: usize,
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Log Adam diagnostics every this many epochs (0: never).
    #[serde(default = "default_one")]
    pub diagnostics_every: u64,
    /// Stop this many epochs after test accuracy reaches `grokked_at` (absent: run all epochs).
    #[serde(default)]
    pub stop_after_grokking: Option<u64>,
    #[serde(default = "default_memorised_at")]
    pub memorised_at: f32,
    #[serde(default = "default_grokked_at")]
    pub grokked_at: f32,
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
fn default_method() -> String {
    "adamw".into()
}
fn default_decay_on() -> String {
    "weights".into()
}
fn default_betas() -> [f32; 2] {
    [0.9, 0.98]
}
fn default_eps() -> f32 {
    1e-8
}
fn default_schedule() -> String {
    "constant".into()
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
    pub op: ModOp,
    pub encoding: PairEncoding,
    pub init: Init,
    pub method: Method,
    pub groups: Vec<ParamGroup>,
    pub schedule: LrSchedule,
    pub batch_size: Option<usize>,
    pub clip_norm: Option<f32>,
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
            "kaiming_uniform, kaiming_normal, xavier_uniform, xavier_normal, lecun_uniform, lecun_normal",
        )?;
        let o = &self.optim;
        for (key, v) in [
            ("optim.lr", o.lr),
            ("optim.weight_decay", o.weight_decay),
            ("optim.clip_norm", o.clip_norm),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(
                    key,
                    format!("{v} is not a finite non-negative number"),
                ));
            }
        }
        if o.lr == 0.0 {
            return Err(Error::config("optim.lr", "must be positive"));
        }
        let method = match o.method.as_str() {
            "sgd" => Method::Sgd {
                momentum: o.momentum,
                dampening: 0.0,
                nesterov: o.nesterov,
            },
            "adam" | "adamw" => Method::Adam {
                beta1: o.betas[0],
                beta2: o.betas[1],
                eps: o.eps,
                decoupled: o.method == "adamw",
            },
            other => {
                return Err(Error::config(
                    "optim.method",
                    format!("`{other}` is not one of adamw, adam, sgd"),
                ))
            }
        };
        let groups = match o.decay_on.as_str() {
            "weights" => ParamGroup::standard(o.weight_decay),
            "all" => ParamGroup::all(o.weight_decay),
            other => {
                return Err(Error::config(
                    "optim.decay_on",
                    format!("`{other}` is not one of weights, all"),
                ))
            }
        };
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
        let kind = match o.schedule.as_str() {
            "constant" => ScheduleKind::Constant,
            "cosine" => ScheduleKind::Cosine {
                total: t.epochs * steps_per_epoch,
                min_factor: o.min_lr_factor,
            },
            other => {
                return Err(Error::config(
                    "optim.schedule",
                    format!("`{other}` is not one of constant, cosine"),
                ))
            }
        };
        Ok(GrokkingPlan {
            op,
            encoding,
            init,
            method,
            groups,
            schedule: LrSchedule {
                base: o.lr,
                warmup: o.warmup_steps,
                kind,
            },
            batch_size,
            clip_norm: (o.clip_norm > 0.0).then_some(o.clip_norm),
        })
    }
}
