//! A connectivity-recovery experiment's config (TOML): the simulated network (`[simulation]`),
//! the model (`[model]`) and its training (`[training]`). Unknown keys are errors; `plan()` checks
//! every value and names the key it rejects. Defaults are the published Fig. 2 values
//! (`signal_fig_2.yaml`) except the sizes, which every config sets.

use super::model::MessagePassing;
use super::ode::{OdeMethod, OdeOptions};
use super::simulate::{ConnectivityKind, ConnectivitySpec, FIG2_TYPES};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

/// The whole config.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectivityConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Seed of the connectivity, the simulation, the model and the frame draws.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// The simulated network.
    pub simulation: SimulationConfig,
    /// The graph network.
    #[serde(default)]
    pub model: ModelConfig,
    /// Its training.
    pub training: TrainingConfig,
}

/// `[simulation]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SimulationConfig {
    /// Neurons `n`.
    pub neurons: usize,
    /// `[g, s, c]` per neuron type (default: the four of Fig. 2).
    #[serde(default = "default_types")]
    pub types: Vec<[f32; 3]>,
    /// `lorentz`, `gaussian` or `low_rank`.
    #[serde(default = "default_connectivity")]
    pub connectivity: String,
    /// Rank of `low_rank` connectivity.
    #[serde(default)]
    pub rank: usize,
    /// Dale's law with this excitatory fraction (0: off).
    #[serde(default)]
    pub dale_excitatory_fraction: f32,
    /// Fraction of connections kept.
    #[serde(default = "default_filling")]
    pub filling_factor: f32,
    /// Recorded frames.
    pub frames: usize,
    /// Discarded steps before the first frame (the reference's `start_frame = −1000`).
    #[serde(default = "default_burn_in")]
    pub burn_in: usize,
    /// Euler step.
    #[serde(default = "default_dt")]
    pub dt: f32,
    /// `u₀ ~ u0_scale · N(0, 1)`.
    #[serde(default = "default_u0_scale")]
    pub u0_scale: f32,
    /// Frames per device chunk (and per file).
    #[serde(default = "default_chunk")]
    pub chunk_frames: usize,
}

/// `[model]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Hidden width of `lin_edge` and `lin_phi`.
    #[serde(default = "default_hidden")]
    pub hidden: usize,
    /// Hidden layers of each MLP.
    #[serde(default = "default_hidden_layers")]
    pub hidden_layers: usize,
    /// `dense` (one matmul) or `sparse` (CSR product over the edge list).
    #[serde(default = "default_passing")]
    pub message_passing: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            hidden: default_hidden(),
            hidden_layers: default_hidden_layers(),
            message_passing: default_passing(),
        }
    }
}

/// `[training]` (`data_train_signal`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingConfig {
    /// Frames per iteration.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Epochs of `n_frames · data_augmentation_loop / batch · 0.2` iterations each.
    #[serde(default = "default_epochs")]
    pub epochs: u64,
    /// Scales the number of draws per epoch.
    #[serde(default = "default_augmentation")]
    pub data_augmentation_loop: u64,
    /// Total iterations (overrides `epochs` when set).
    #[serde(default)]
    pub iterations: Option<u64>,
    /// Iterations per history row (and evaluation).
    #[serde(default = "default_log_every")]
    pub log_every: u64,
    /// Checkpoint every this many history rows.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// Adam learning rate of `W`.
    #[serde(default = "default_lr_w")]
    pub lr_w: f32,
    /// Adam learning rate of the embeddings.
    #[serde(default = "default_lr_embedding")]
    pub lr_embedding: f32,
    /// Adam learning rate of `lin_edge` and `lin_phi`.
    #[serde(default = "default_lr_mlp")]
    pub lr_mlp: f32,
    /// `coeff · ‖W‖₁`.
    #[serde(default)]
    pub coeff_w_l1: f32,
    /// `coeff · ‖lin_phi([0, a_i])‖₂`.
    #[serde(default = "default_phi_zero")]
    pub coeff_lin_phi_zero: f32,
    /// `coeff · ‖ReLU(ψ(u) − ψ(u + xnorm/150))‖₂` (monotone ψ).
    #[serde(default)]
    pub coeff_edge_diff: f32,
    /// Recurrent training over `T` Euler steps of the model's own predictions (1: the one-step
    /// `du/dt` loss).
    #[serde(default = "default_time_step")]
    pub time_step: usize,
    /// Standard deviation of the noise added to the state after each recurrent step.
    #[serde(default)]
    pub noise_recurrent_level: f32,
    /// Iterations of one-step training before the recurrent loss starts.
    #[serde(default)]
    pub recurrent_start_iteration: u64,
    /// Train as a neural ODE: integrate `du/dt = f(u)` over `time_step · dt` with `ode_method`.
    #[serde(default)]
    pub neural_ode: bool,
    /// `euler`, `midpoint`, `heun3`, `rk4` or `dopri5`.
    #[serde(default = "default_ode_method")]
    pub ode_method: String,
    /// `dopri5` relative tolerance.
    #[serde(default = "default_ode_rtol")]
    pub ode_rtol: f32,
    /// `dopri5` absolute tolerance.
    #[serde(default = "default_ode_atol")]
    pub ode_atol: f32,
    /// Gradients by the adjoint method (else backpropagation through the solver).
    #[serde(default = "default_true")]
    pub ode_adjoint: bool,
    /// Clamp the state to `±value` after every solver step.
    #[serde(default)]
    pub ode_state_clamp: Option<f32>,
    /// Most `dopri5` steps per frame interval.
    #[serde(default = "default_ode_max_steps")]
    pub ode_max_steps: usize,
}

/// The checked config.
#[derive(Clone, Debug)]
pub struct ConnectivityPlan {
    /// The connectivity generator.
    pub connectivity: ConnectivitySpec,
    /// Dense or sparse messages.
    pub passing: MessagePassing,
    /// Training iterations.
    pub iterations: u64,
    /// The neural-ODE solver (`None`: Euler updates of the recorded rates).
    pub ode: Option<OdeOptions>,
}

impl ConnectivityConfig {
    /// Checks every value; errors name the key.
    pub fn plan(&self) -> Result<ConnectivityPlan> {
        let s = &self.simulation;
        let t = &self.training;
        let bad = |key: &str, msg: String| Err(Error::config(key, msg));
        if s.neurons < 2 {
            return bad("simulation.neurons", format!("{} (at least 2)", s.neurons));
        }
        if s.types.is_empty() || s.types.len() > s.neurons {
            return bad(
                "simulation.types",
                format!("{} types for {} neurons", s.types.len(), s.neurons),
            );
        }
        let kind = match s.connectivity.as_str() {
            "lorentz" => ConnectivityKind::Lorentz,
            "gaussian" => ConnectivityKind::Gaussian,
            "low_rank" if s.rank >= 1 => ConnectivityKind::LowRank(s.rank),
            other => {
                return bad(
                    "simulation.connectivity",
                    format!("`{other}` (lorentz, gaussian, or low_rank with rank ≥ 1)"),
                )
            }
        };
        if !(0.0..=1.0).contains(&s.dale_excitatory_fraction) {
            return bad(
                "simulation.dale_excitatory_fraction",
                format!("{} (in [0, 1])", s.dale_excitatory_fraction),
            );
        }
        if !(s.filling_factor > 0.0 && s.filling_factor <= 1.0) {
            return bad(
                "simulation.filling_factor",
                format!("{} (in (0, 1])", s.filling_factor),
            );
        }
        if s.frames < 1 || s.chunk_frames < 1 || !(s.dt > 0.0 && s.dt.is_finite()) {
            return bad(
                "simulation",
                format!(
                    "frames {}, chunk_frames {}, dt {} (frames and chunks ≥ 1, dt > 0)",
                    s.frames, s.chunk_frames, s.dt
                ),
            );
        }
        let passing = match self.model.message_passing.as_str() {
            "dense" => MessagePassing::Dense,
            "sparse" => MessagePassing::Sparse,
            other => {
                return bad(
                    "model.message_passing",
                    format!("`{other}` (dense or sparse)"),
                )
            }
        };
        if self.model.hidden == 0 {
            return bad("model.hidden", "0 (at least 1)".into());
        }
        if t.batch_size < 1 || t.batch_size > s.frames {
            return bad(
                "training.batch_size",
                format!("{} (1 to the {} frames)", t.batch_size, s.frames),
            );
        }
        let per_epoch =
            (s.frames as u64 * t.data_augmentation_loop / t.batch_size as u64) as f64 * 0.2;
        let iterations = t.iterations.unwrap_or((per_epoch as u64).max(1) * t.epochs);
        if t.log_every < 1 || iterations < t.log_every || !iterations.is_multiple_of(t.log_every) {
            return bad(
                "training.log_every",
                format!(
                    "{} for {iterations} iterations (≥ 1 and dividing them)",
                    t.log_every
                ),
            );
        }
        if t.time_step < 1 || t.time_step >= s.frames {
            return bad(
                "training.time_step",
                format!("{} (1 to frames − 1 = {})", t.time_step, s.frames - 1),
            );
        }
        if !(t.noise_recurrent_level >= 0.0 && t.noise_recurrent_level.is_finite()) {
            return bad(
                "training.noise_recurrent_level",
                format!("{} (≥ 0)", t.noise_recurrent_level),
            );
        }
        let ode = match OdeMethod::parse(&t.ode_method) {
            _ if !t.neural_ode => None,
            None => {
                return bad(
                    "training.ode_method",
                    format!("`{}` (euler, midpoint, heun3, rk4 or dopri5)", t.ode_method),
                )
            }
            Some(method) => {
                if !(t.ode_rtol > 0.0 && t.ode_atol > 0.0) || t.ode_max_steps == 0 {
                    return bad(
                        "training.ode_rtol",
                        format!(
                            "rtol {}, atol {}, max steps {} (positive)",
                            t.ode_rtol, t.ode_atol, t.ode_max_steps
                        ),
                    );
                }
                Some(OdeOptions {
                    method,
                    rtol: t.ode_rtol,
                    atol: t.ode_atol,
                    state_clamp: t.ode_state_clamp,
                    max_steps: t.ode_max_steps,
                })
            }
        };
        for (key, lr) in [
            ("training.lr_w", t.lr_w),
            ("training.lr_embedding", t.lr_embedding),
            ("training.lr_mlp", t.lr_mlp),
        ] {
            if !(lr >= 0.0 && lr.is_finite()) {
                return bad(key, format!("{lr} (a finite lr ≥ 0)"));
            }
        }
        Ok(ConnectivityPlan {
            connectivity: ConnectivitySpec {
                kind,
                dale: (s.dale_excitatory_fraction > 0.0).then_some(s.dale_excitatory_fraction),
                filling: s.filling_factor,
            },
            passing,
            iterations,
            ode,
        })
    }
}

fn default_seed() -> u64 {
    16
}
fn default_runs_dir() -> String {
    "runs".into()
}
fn default_types() -> Vec<[f32; 3]> {
    FIG2_TYPES.to_vec()
}
fn default_connectivity() -> String {
    "lorentz".into()
}
fn default_filling() -> f32 {
    1.0
}
fn default_burn_in() -> usize {
    1000
}
fn default_dt() -> f32 {
    0.01
}
fn default_u0_scale() -> f32 {
    5.0
}
fn default_chunk() -> usize {
    25_000
}
fn default_hidden() -> usize {
    64
}
fn default_hidden_layers() -> usize {
    2
}
fn default_passing() -> String {
    "dense".into()
}
fn default_batch() -> usize {
    8
}
fn default_epochs() -> u64 {
    10
}
fn default_augmentation() -> u64 {
    50
}
fn default_log_every() -> u64 {
    1000
}
fn default_checkpoint_every() -> u64 {
    5
}
fn default_lr_w() -> f32 {
    1e-3
}
fn default_lr_embedding() -> f32 {
    7.5e-4
}
fn default_lr_mlp() -> f32 {
    5e-4
}
fn default_ode_method() -> String {
    "dopri5".into()
}
fn default_ode_rtol() -> f32 {
    1e-4
}
fn default_ode_atol() -> f32 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_ode_max_steps() -> usize {
    1000
}
fn default_time_step() -> usize {
    1
}
fn default_phi_zero() -> f32 {
    1.0
}
