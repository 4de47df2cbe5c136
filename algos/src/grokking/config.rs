//! The grokking experiment's config (TOML). Every key has a default except the ones that define the
//! task; unknown keys are errors. The `[optim]` section is the optimizer config every runner shares
//! ([`OptimConfig`]).

use super::data::{is_prime, ModOp};
use super::metrics::default_cutoff;
use super::routing::RoutingRegulariser;
use crate::checks::{finite_non_negative, positive};
use dynlab_models::{Activation, GrokTransformerShape, Init, PairEncoding, RoutedShape};
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
    /// What is measured besides loss and accuracy, and how often.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Terms added to the cross-entropy.
    #[serde(default)]
    pub loss: LossConfig,
}

/// `[loss]`: regularisers added to the cross-entropy (see [`super::routing`]).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LossConfig {
    /// `entropy`, `sparsity`, `gini` or `consistency` (routed network only).
    #[serde(default = "default_regulariser")]
    pub routing_regulariser: String,
    /// Its weight `λ_routing` (0: none).
    #[serde(default)]
    pub lambda_routing: f32,
    /// Weight of the spectral-smoothness penalty `λ (1 − smoothness_soft)` (0: none).
    #[serde(default)]
    pub lambda_spectral: f32,
    /// Apply the spectral penalty every this many steps.
    #[serde(default = "default_one")]
    pub spectral_interval: u64,
    /// Weight of the Jacobian-norm penalty `λ · out_dim · E‖Jᵀv‖²` (0: none).
    #[serde(default)]
    pub lambda_jacobian: f32,
    /// Apply the Jacobian penalty every this many steps.
    #[serde(default = "default_one")]
    pub jacobian_interval: u64,
}

impl Default for LossConfig {
    fn default() -> LossConfig {
        LossConfig {
            routing_regulariser: default_regulariser(),
            lambda_routing: 0.0,
            lambda_spectral: 0.0,
            spectral_interval: 1,
            lambda_jacobian: 0.0,
            jacobian_interval: 1,
        }
    }
}

fn default_regulariser() -> String {
    "entropy".into()
}

/// `[metrics]`: the study's measurements (see [`super::metrics`]), each every so many epochs (0:
/// never). Computed for a single network (`replicas = 1`); the columns stay null otherwise.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Spectral smoothness (hard) of the function on the whole `p × p` grid.
    #[serde(default = "default_metric_every")]
    pub smoothness_every: u64,
    /// The smoothness cutoff `K` (absent: `⌊p/4⌋`).
    #[serde(default)]
    pub cutoff: Option<usize>,
    /// Jacobian norm `out_dim · E‖Jᵀv‖²` of the output with respect to the input.
    #[serde(default = "default_metric_every")]
    pub jacobian_every: u64,
    /// Random unit directions per example for the Jacobian norm.
    #[serde(default = "default_probes")]
    pub jacobian_probes: usize,
    /// Hutchinson trace of the top logit's Hessian with respect to the input.
    #[serde(default = "default_metric_every")]
    pub input_hessian_every: u64,
    /// Rademacher probes for the input Hessian trace.
    #[serde(default = "default_probes")]
    pub input_hessian_probes: usize,
    /// Training examples (the first ones) the Jacobian and input-Hessian metrics average over.
    #[serde(default = "default_metric_samples")]
    pub samples: usize,
    /// Gradient norm and Hutchinson weight-Hessian trace of the full training loss.
    #[serde(default)]
    pub weight_curvature_every: u64,
    /// Rademacher probes for the weight-Hessian trace.
    #[serde(default = "default_weight_probes")]
    pub weight_hessian_probes: usize,
    /// `‖W‖` of every weight matrix and embedding table, columns `weight_norm.<parameter>`.
    #[serde(default = "default_layer_norms_every")]
    pub layer_norms_every: u64,
}

impl MetricsConfig {
    /// The smoothness cutoff `K` for modulus `p`: `cutoff`, else `⌊p/4⌋`.
    pub fn cutoff_for(&self, p: usize) -> usize {
        self.cutoff.unwrap_or_else(|| default_cutoff(p))
    }
}

fn default_layer_norms_every() -> u64 {
    10
}

impl Default for MetricsConfig {
    fn default() -> MetricsConfig {
        MetricsConfig {
            smoothness_every: default_metric_every(),
            cutoff: None,
            jacobian_every: default_metric_every(),
            jacobian_probes: default_probes(),
            input_hessian_every: default_metric_every(),
            input_hessian_probes: default_probes(),
            samples: default_metric_samples(),
            weight_curvature_every: 0,
            weight_hessian_probes: default_weight_probes(),
            layer_norms_every: default_layer_norms_every(),
        }
    }
}

fn default_metric_every() -> u64 {
    100
}
fn default_probes() -> usize {
    4
}
fn default_metric_samples() -> usize {
    256
}
fn default_weight_probes() -> usize {
    8
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

/// `[model]`: the network. `type = "mlp"` uses `encoding`, `embed_dim`, `hidden`, `init`;
/// `type = "transformer"` uses `d_model`, `n_layers`, `n_heads`, `d_mlp`, `activation`,
/// `tie_embeddings`; `type = "routed"` uses `d_model` (its width `d`), `n_layers`, `n_heads`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `mlp` ([`BaselineMlp`](dynlab_models::BaselineMlp)), `transformer`
    /// ([`GrokTransformer`](dynlab_models::GrokTransformer)) or `routed`
    /// ([`RoutedNetwork`](dynlab_models::RoutedNetwork)).
    #[serde(rename = "type", default = "default_model_type")]
    pub kind: String,
    /// MLP: `one_hot` or `embedding`.
    #[serde(default = "default_encoding")]
    pub encoding: String,
    /// MLP: embedding width (`embedding` encoding).
    #[serde(default = "default_embed_dim")]
    pub embed_dim: usize,
    /// MLP: hidden widths (GELU layers).
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// MLP: `kaiming_uniform`, `kaiming_normal`, `xavier_uniform`, `xavier_normal`,
    /// `lecun_uniform`, `lecun_normal`, `pytorch_default`.
    #[serde(default = "default_init")]
    pub init: String,
    /// Transformer: width of the residual stream.
    #[serde(default = "default_d_model")]
    pub d_model: usize,
    /// Transformer: blocks.
    #[serde(default = "default_one_usize")]
    pub n_layers: usize,
    /// Transformer: attention heads.
    #[serde(default = "default_n_heads")]
    pub n_heads: usize,
    /// Transformer: hidden width of each block's MLP.
    #[serde(default = "default_d_mlp")]
    pub d_mlp: usize,
    /// Transformer: `relu` or `gelu`.
    #[serde(default = "default_activation")]
    pub activation: String,
    /// Transformer: read the logits through the token embedding.
    #[serde(default)]
    pub tie_embeddings: bool,
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
fn default_model_type() -> String {
    "mlp".into()
}
fn default_d_model() -> usize {
    128
}
fn default_one_usize() -> usize {
    1
}
fn default_n_heads() -> usize {
    4
}
fn default_d_mlp() -> usize {
    512
}
fn default_activation() -> String {
    "relu".into()
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

/// Which network the plan builds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Network {
    /// [`BaselineMlp`](dynlab_models::BaselineMlp).
    Mlp,
    /// [`GrokTransformer`](dynlab_models::GrokTransformer) of this shape.
    Transformer(GrokTransformerShape),
    /// [`RoutedNetwork`](dynlab_models::RoutedNetwork) of this shape.
    Routed(RoutedShape),
}

/// The config turned into the library's types, every value checked.
#[derive(Clone, Debug)]
pub struct GrokkingPlan {
    /// The operation.
    pub op: ModOp,
    /// The network to build.
    pub network: Network,
    /// The routing regulariser and its weight (routed network, `λ > 0`).
    pub routing: Option<(RoutingRegulariser, f32)>,
    /// How pairs enter the MLP.
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
        let network = match m.kind.as_str() {
            "mlp" => Network::Mlp,
            "transformer" => Network::Transformer(self.transformer_shape()?),
            "routed" => Network::Routed(self.routed_shape()?),
            other => {
                return Err(Error::config(
                    "model.type",
                    format!("`{other}` is not one of mlp, transformer, routed"),
                ))
            }
        };
        let l = &self.loss;
        let regulariser = choice(
            "loss.routing_regulariser",
            &l.routing_regulariser,
            RoutingRegulariser::parse(&l.routing_regulariser),
            "entropy, sparsity, gini, consistency",
        )?;
        finite_non_negative("loss.lambda_routing", l.lambda_routing)?;
        if l.lambda_routing > 0.0 && !matches!(network, Network::Routed(_)) {
            return Err(Error::config(
                "loss.lambda_routing",
                format!(
                    "{} with model.type = {}: only the routed network routes",
                    l.lambda_routing, m.kind
                ),
            ));
        }
        let routing = (l.lambda_routing > 0.0).then_some((regulariser, l.lambda_routing));
        for (key, lambda, every) in [
            (
                "loss.lambda_spectral",
                l.lambda_spectral,
                l.spectral_interval,
            ),
            (
                "loss.lambda_jacobian",
                l.lambda_jacobian,
                l.jacobian_interval,
            ),
        ] {
            finite_non_negative(key, lambda)?;
            if lambda > 0.0 && (self.replicas > 1 || every == 0) {
                return Err(Error::config(
                    key,
                    "a penalty needs replicas = 1 and a positive interval",
                ));
            }
        }
        if network != Network::Mlp && self.replicas > 1 {
            return Err(Error::config(
                "replicas",
                format!(
                    "{} with model.type = {}: only the MLP stacks",
                    self.replicas, m.kind
                ),
            ));
        }
        if network == Network::Mlp && m.hidden.is_empty() {
            return Err(Error::config(
                "model.hidden",
                "type mlp needs at least one width",
            ));
        }
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
        let mc = &self.metrics;
        for (key, value) in [
            ("metrics.jacobian_probes", mc.jacobian_probes),
            ("metrics.input_hessian_probes", mc.input_hessian_probes),
            ("metrics.weight_hessian_probes", mc.weight_hessian_probes),
            ("metrics.samples", mc.samples),
        ] {
            positive(key, value)?;
        }
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
            network,
            routing,
            encoding,
            init,
            optim: self.optim.plan(t.epochs * steps_per_epoch)?,
            batch_size,
        })
    }
}

impl GrokkingConfig {
    fn routed_shape(&self) -> Result<RoutedShape> {
        let m = &self.model;
        for (key, value) in [
            ("model.d_model", m.d_model),
            ("model.n_layers", m.n_layers),
            ("model.n_heads", m.n_heads),
        ] {
            positive(key, value)?;
        }
        Ok(RoutedShape {
            p: self.data.p,
            d: m.d_model,
            n_layers: m.n_layers,
            n_heads: m.n_heads,
        })
    }

    fn transformer_shape(&self) -> Result<GrokTransformerShape> {
        let m = &self.model;
        let activation = match m.activation.as_str() {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            other => {
                return Err(Error::config(
                    "model.activation",
                    format!("`{other}` is not one of relu, gelu"),
                ))
            }
        };
        for (key, value) in [
            ("model.d_model", m.d_model),
            ("model.n_layers", m.n_layers),
            ("model.n_heads", m.n_heads),
            ("model.d_mlp", m.d_mlp),
        ] {
            positive(key, value)?;
        }
        if !m.d_model.is_multiple_of(m.n_heads) || m.d_model / m.n_heads > 128 {
            return Err(Error::config(
                "model.n_heads",
                format!(
                    "{} heads do not split d_model = {} into heads of at most 128",
                    m.n_heads, m.d_model
                ),
            ));
        }
        Ok(GrokTransformerShape {
            p: self.data.p,
            d_model: m.d_model,
            n_layers: m.n_layers,
            n_heads: m.n_heads,
            d_mlp: m.d_mlp,
            activation,
            tie_embeddings: m.tie_embeddings,
        })
    }
}
