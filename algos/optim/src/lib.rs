//! Optimizers with per-parameter state on the device and one fused kernel per parameter per step
//! (`Tensor::sgd_update`, `Tensor::adam_update`), parameter groups, learning-rate schedules and
//! gradient-norm clipping.
//!
//! - SGD (Robbins & Monro 1951) with momentum and Nesterov momentum (Sutskever et al. 2013), PyTorch's
//!   convention: `b ← μb + (1−τ)g`, step `b` (or `g + μb` with Nesterov), L2 decay added to `g`.
//! - Adam (Kingma & Ba 2015): `m ← β₁m + (1−β₁)g`, `v ← β₂v + (1−β₂)g²`,
//!   `p ← p − η m̂ / (√v̂ + ε)` with `m̂ = m/(1−β₁ᵗ)`, `v̂ = v/(1−β₂ᵗ)`; weight decay coupled as L2.
//! - AdamW (Loshchilov & Hutter 2019): the same step, with the decay decoupled: `p ← (1 − ηλ)p − …`.
//!
//! State is typed per parameter ([`ParamState`]: SGD's momentum; Adam's `m`, `v`, step count and
//! optional per-element step counts), reachable by (parameter name, slot), saved by name in
//! checkpoints ([`dynlab_models::Stateful`]) and reset per unit ([`Optimizer::reset_units`]).
//! [`OptimConfig`] is the serde config every runner shares.

#![warn(missing_docs)]

mod clip;
mod config;
mod diagnostics;
mod optimizer;
mod schedule;
mod state;

pub use clip::{clip_scale, global_grad_norm};
pub use config::{OptimConfig, OptimPlan};
pub use diagnostics::{AdamDiagnostics, RawAdamStats};
pub use dynlab_runtime::ReplicaScale;
pub use optimizer::{Method, Optimizer, ParamGroup};
pub use schedule::{LrSchedule, ScheduleKind};
pub use state::{AdamState, ParamState, SgdState};
