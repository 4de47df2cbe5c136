//! An SPD experiment's config (TOML): the target (`[target]`, trained first with `[target.optim]`),
//! the decomposition (`[spd]`) and its optimizer (`[optim]`). Unknown keys are errors; `plan()`
//! checks every value and names the key it rejects.

use super::components::{CiFnKind, ComponentInit};
use super::losses::{LossSettings, MaskKind};
use crate::checks::{finite_non_negative, positive};
use dynlab_optim::{OptimConfig, OptimPlan};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

/// The whole config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpdConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Seed of the target's initialisation and data, and of the decomposition.
    #[serde(default)]
    pub seed: u64,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// The target model and its training.
    pub target: TargetConfig,
    /// The decomposition.
    pub spd: DecompositionConfig,
    /// The decomposition's optimizer.
    pub optim: OptimConfig,
}

/// `[target]`: which toy model, its data and its training.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// `tms` or `resid_mlp`.
    pub model: String,
    /// Input features.
    pub features: usize,
    /// TMS: hidden dimensions.
    #[serde(default)]
    pub hidden: usize,
    /// TMS: fixed identity layers between `linear1` and `linear2` (the `-id` experiments).
    #[serde(default)]
    pub identity_layers: usize,
    /// TMS: start the bias at zero (else `U(±1/√hidden)`, PyTorch's `nn.Linear` default).
    #[serde(default)]
    pub bias_zero_init: bool,
    /// ResidMLP: width of the residual stream.
    #[serde(default)]
    pub d_embed: usize,
    /// ResidMLP: hidden width of each block.
    #[serde(default)]
    pub d_mlp: Vec<usize>,
    /// Probability that a feature is active.
    pub feature_probability: f32,
    /// Training steps of the target.
    pub steps: u64,
    /// Batch size of the target's training.
    pub batch_size: usize,
    /// The target's optimizer.
    pub optim: OptimConfig,
}

/// `[spd]`: the decomposition.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DecompositionConfig {
    /// Subcomponents per decomposed layer.
    pub c: usize,
    /// Decomposed layers by path (empty: every layer of the target).
    #[serde(default)]
    pub target_modules: Vec<String>,
    /// `mlp` (a gate per subcomponent on its inner activation) or `vector_mlp` (on the input).
    #[serde(default = "default_ci_fn")]
    pub ci_fn: String,
    /// Hidden width of the gates.
    #[serde(default = "default_d_gate")]
    pub d_gate: usize,
    /// `projected` (the reference code's) or `normal` (`V ~ N(0, 1/d_out)`, `U ~ N(0, 1/C)`).
    #[serde(default = "default_init")]
    pub init: String,
    /// `continuous` or `binomial`.
    #[serde(default = "default_mask")]
    pub mask: String,
    /// Mask samples per step.
    #[serde(default = "default_one")]
    pub mask_samples: usize,
    /// Faithfulness coefficient.
    #[serde(default = "default_coefficient")]
    pub faithfulness: f32,
    /// Stochastic reconstruction coefficient.
    #[serde(default = "default_coefficient")]
    pub stochastic_recon: f32,
    /// Layerwise stochastic reconstruction coefficient.
    #[serde(default = "default_coefficient")]
    pub stochastic_recon_layerwise: f32,
    /// Importance-minimality coefficient.
    pub importance_minimality: f32,
    /// Its exponent `p`.
    pub pnorm: f32,
    /// Optimizer steps.
    pub steps: u64,
    /// Batch size.
    pub batch_size: usize,
    /// Log (one history row) every this many steps.
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Checkpoint every this many logs.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Examples in the batch the metrics are measured on.
    #[serde(default = "default_eval_batch")]
    pub eval_batch: usize,
    /// CI-L0 counts importances above this.
    #[serde(default = "default_l0_threshold")]
    pub l0_threshold: f32,
    /// A subcomponent is live when its importance exceeds this on some evaluation example.
    #[serde(default = "default_alive_threshold")]
    pub alive_threshold: f32,
}

fn default_runs_dir() -> String {
    "runs".into()
}
fn default_ci_fn() -> String {
    "mlp".into()
}
fn default_d_gate() -> usize {
    16
}
fn default_init() -> String {
    "projected".into()
}
fn default_mask() -> String {
    "continuous".into()
}
fn default_one() -> usize {
    1
}
fn default_coefficient() -> f32 {
    1.0
}
fn default_log_every() -> u64 {
    500
}
fn default_checkpoint_every() -> u64 {
    10
}
fn default_eval_batch() -> usize {
    4096
}
fn default_l0_threshold() -> f32 {
    1e-2
}
fn default_alive_threshold() -> f32 {
    0.1
}

/// Which target.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetKind {
    /// The toy model of superposition.
    Tms {
        /// Features.
        features: usize,
        /// Hidden dimensions.
        hidden: usize,
        /// Identity layers between.
        identity_layers: usize,
        /// Zero initial bias.
        bias_zero_init: bool,
    },
    /// The residual MLP.
    ResidMlp {
        /// Features.
        features: usize,
        /// Residual stream width.
        d_embed: usize,
        /// Hidden width per block.
        d_mlp: Vec<usize>,
    },
}

/// The config turned into the library's types, every value checked.
#[derive(Clone, Debug)]
pub struct SpdPlan {
    /// The target.
    pub target: TargetKind,
    /// The target's optimizer.
    pub target_optim: OptimPlan,
    /// The decomposition's optimizer.
    pub optim: OptimPlan,
    /// The gates.
    pub ci_fn: CiFnKind,
    /// Initialisation of the subcomponents.
    pub init: ComponentInit,
    /// The losses.
    pub losses: LossSettings,
}

impl SpdConfig {
    /// Checks every value and builds the plan; errors name the key and what it accepts.
    pub fn plan(&self) -> Result<SpdPlan> {
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(Error::config(
                "name",
                format!("`{}` is not a folder name", self.name),
            ));
        }
        let t = &self.target;
        positive("target.features", t.features)?;
        positive("target.batch_size", t.batch_size)?;
        if t.steps == 0 {
            return Err(Error::config("target.steps", "must be positive"));
        }
        if !(t.feature_probability > 0.0 && t.feature_probability <= 1.0) {
            return Err(Error::config(
                "target.feature_probability",
                format!("{} is not in (0, 1]", t.feature_probability),
            ));
        }
        let target = match t.model.as_str() {
            "tms" => {
                positive("target.hidden", t.hidden)?;
                TargetKind::Tms {
                    features: t.features,
                    hidden: t.hidden,
                    identity_layers: t.identity_layers,
                    bias_zero_init: t.bias_zero_init,
                }
            }
            "resid_mlp" => {
                positive("target.d_embed", t.d_embed)?;
                if t.d_mlp.is_empty() || t.d_mlp.contains(&0) {
                    return Err(Error::config(
                        "target.d_mlp",
                        format!("{:?} must list at least one positive width", t.d_mlp),
                    ));
                }
                TargetKind::ResidMlp {
                    features: t.features,
                    d_embed: t.d_embed,
                    d_mlp: t.d_mlp.clone(),
                }
            }
            other => {
                return Err(Error::config(
                    "target.model",
                    format!("`{other}` is not one of tms, resid_mlp"),
                ))
            }
        };
        let s = &self.spd;
        positive("spd.c", s.c)?;
        positive("spd.d_gate", s.d_gate)?;
        positive("spd.mask_samples", s.mask_samples)?;
        positive("spd.batch_size", s.batch_size)?;
        positive("spd.eval_batch", s.eval_batch)?;
        for (key, v) in [
            ("spd.faithfulness", s.faithfulness),
            ("spd.stochastic_recon", s.stochastic_recon),
            (
                "spd.stochastic_recon_layerwise",
                s.stochastic_recon_layerwise,
            ),
            ("spd.importance_minimality", s.importance_minimality),
        ] {
            finite_non_negative(key, v)?;
        }
        if !(s.pnorm.is_finite() && s.pnorm > 0.0) {
            return Err(Error::config(
                "spd.pnorm",
                format!("{} is not positive", s.pnorm),
            ));
        }
        if s.steps == 0 || s.log_every == 0 || s.checkpoint_every == 0 {
            return Err(Error::config(
                "spd.steps",
                "spd.steps, spd.log_every and spd.checkpoint_every must be positive",
            ));
        }
        if !s.steps.is_multiple_of(s.log_every) {
            return Err(Error::config(
                "spd.log_every",
                format!("{} does not divide spd.steps ({})", s.log_every, s.steps),
            ));
        }
        let ci_fn = match s.ci_fn.as_str() {
            "mlp" => CiFnKind::Mlp { d_gate: s.d_gate },
            "vector_mlp" => CiFnKind::VectorMlp { d_gate: s.d_gate },
            other => {
                return Err(Error::config(
                    "spd.ci_fn",
                    format!("`{other}` is not one of mlp, vector_mlp"),
                ))
            }
        };
        let init = match s.init.as_str() {
            "projected" => ComponentInit::Projected,
            "normal" => ComponentInit::Normal,
            other => {
                return Err(Error::config(
                    "spd.init",
                    format!("`{other}` is not one of projected, normal"),
                ))
            }
        };
        let mask = match s.mask.as_str() {
            "continuous" => MaskKind::Continuous,
            "binomial" => MaskKind::Binomial,
            other => {
                return Err(Error::config(
                    "spd.mask",
                    format!("`{other}` is not one of continuous, binomial"),
                ))
            }
        };
        Ok(SpdPlan {
            target,
            target_optim: t.optim.plan(t.steps).map_err(prefix_target)?,
            optim: self.optim.plan(s.steps)?,
            ci_fn,
            init,
            losses: LossSettings {
                faithfulness: s.faithfulness,
                stochastic_recon: s.stochastic_recon,
                stochastic_recon_layerwise: s.stochastic_recon_layerwise,
                importance_minimality: s.importance_minimality,
                pnorm: s.pnorm,
                mask_samples: s.mask_samples,
                mask,
            },
        })
    }
}

/// `optim.lr` of the target's section is `target.optim.lr`.
fn prefix_target(e: Error) -> Error {
    match e {
        Error::Config { source, message } => Error::config(format!("target.{source}"), message),
        other => other,
    }
}
