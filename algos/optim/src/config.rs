//! The `[optim]` section every runner's config shares: the method and its hyperparameters,
//! parameter groups, the learning-rate schedule and gradient clipping. Every key but `lr` has a
//! default; unknown keys are errors; [`OptimConfig::plan`] checks every value and names the key
//! it rejects.

use crate::optimizer::{Method, Optimizer, ParamGroup};
use crate::schedule::{LrSchedule, ScheduleKind};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

/// The `[optim]` section (see the module docs).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimConfig {
    /// `adamw`, `adam` or `sgd`.
    #[serde(default = "default_method")]
    pub method: String,
    /// Peak learning rate.
    pub lr: f32,
    /// Weight decay `λ` (coupled L2 for `sgd` and `adam`, decoupled for `adamw`).
    #[serde(default)]
    pub weight_decay: f32,
    /// `weights` (no decay on biases, norms, embeddings) or `all`.
    #[serde(default = "default_decay_on")]
    pub decay_on: String,
    /// Adam's `(β₁, β₂)`.
    #[serde(default = "default_betas")]
    pub betas: [f32; 2],
    /// Adam's `ε`.
    #[serde(default = "default_eps")]
    pub eps: f32,
    /// SGD momentum `μ`.
    #[serde(default)]
    pub momentum: f32,
    /// SGD Nesterov momentum.
    #[serde(default)]
    pub nesterov: bool,
    /// Adam keeps a step count per element (so resetting a unit restarts its bias correction).
    #[serde(default)]
    pub per_element_steps: bool,
    /// Steps of linear warm-up.
    #[serde(default)]
    pub warmup_steps: u64,
    /// `constant` or `cosine` (to `min_lr_factor · lr` at the last step).
    #[serde(default = "default_schedule")]
    pub schedule: String,
    /// Final learning rate of the cosine schedule as a fraction of `lr`.
    #[serde(default)]
    pub min_lr_factor: f32,
    /// Clip the global gradient norm to this value (0: off).
    #[serde(default)]
    pub clip_norm: f32,
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

/// The section turned into the library's types, every value checked.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimPlan {
    /// The update rule.
    pub method: Method,
    /// Parameter groups.
    pub groups: Vec<ParamGroup>,
    /// Per-element step counts (Adam).
    pub per_element_steps: bool,
    /// The learning rate per step.
    pub schedule: LrSchedule,
    /// Global gradient-norm clipping.
    pub clip_norm: Option<f32>,
}

impl OptimPlan {
    /// A fresh optimizer of this plan.
    pub fn optimizer(&self) -> Result<Optimizer> {
        let optimizer = Optimizer::new(self.method, self.groups.clone())?;
        if self.per_element_steps {
            optimizer.with_element_steps()
        } else {
            Ok(optimizer)
        }
    }
}

impl OptimConfig {
    /// Checks every value and builds the plan; `total_steps` is where the cosine schedule ends
    /// (the run's last optimizer step).
    pub fn plan(&self, total_steps: u64) -> Result<OptimPlan> {
        for (key, v) in [
            ("optim.lr", self.lr),
            ("optim.weight_decay", self.weight_decay),
            ("optim.clip_norm", self.clip_norm),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(Error::config(
                    key,
                    format!("{v} is not a finite non-negative number"),
                ));
            }
        }
        if self.lr == 0.0 {
            return Err(Error::config("optim.lr", "must be positive"));
        }
        let method = match self.method.as_str() {
            "sgd" => Method::Sgd {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: self.nesterov,
            },
            "adam" | "adamw" => Method::Adam {
                beta1: self.betas[0],
                beta2: self.betas[1],
                eps: self.eps,
                decoupled: self.method == "adamw",
            },
            other => return Err(not_one_of("optim.method", other, "adamw, adam, sgd")),
        };
        if self.per_element_steps && !matches!(method, Method::Adam { .. }) {
            return Err(Error::config(
                "optim.per_element_steps",
                "applies to adam and adamw only",
            ));
        }
        let groups = match self.decay_on.as_str() {
            "weights" => ParamGroup::standard(self.weight_decay),
            "all" => ParamGroup::all(self.weight_decay),
            other => return Err(not_one_of("optim.decay_on", other, "weights, all")),
        };
        let kind = match self.schedule.as_str() {
            "constant" => ScheduleKind::Constant,
            "cosine" => ScheduleKind::Cosine {
                total: total_steps,
                min_factor: self.min_lr_factor,
            },
            other => return Err(not_one_of("optim.schedule", other, "constant, cosine")),
        };
        let plan = OptimPlan {
            method,
            groups,
            per_element_steps: self.per_element_steps,
            schedule: LrSchedule {
                base: self.lr,
                warmup: self.warmup_steps,
                kind,
            },
            clip_norm: (self.clip_norm > 0.0).then_some(self.clip_norm),
        };
        // The optimizer's own checks (betas, eps, momentum), reported against this section.
        plan.optimizer()
            .map_err(|e| Error::config("optim", e.to_string()))?;
        Ok(plan)
    }
}

fn not_one_of(key: &str, value: &str, allowed: &str) -> Error {
    Error::config(key, format!("`{value}` is not one of {allowed}"))
}
