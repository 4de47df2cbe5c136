//! The training step, shared by every study: a [`Trainer`] drives steps and epochs of a model over
//! a [`BatchSource`] with an [`Objective`] (cross-entropy, MSE, or a weighted sum of named terms),
//! global gradient-norm clipping, a learning-rate schedule and the optimizer; [`Hook`]s run after
//! the backward pass, after the optimizer step (where generate-and-test replaces units) and at
//! logging time; [`Metrics`] accumulate on the device and are read back once per log interval.
//!
//! One step: forward (`Ctx::train`, with the taps the objective and hooks ask for) → loss →
//! backward → `‖g‖` → hooks after backward → metrics → optimizer step (gradients scaled by
//! `min(1, c/(‖g‖ + 1e-6))` when clipping) → hooks after the step.

#![warn(missing_docs)]

mod data;
mod hooks;
mod metrics;
mod objective;
mod trainer;

pub use data::{Batch, BatchSource, Dataset, Loader};
pub use hooks::{AdamStats, FeatureNorm, Hook, LogView, StepView, WeightNorm};
pub use metrics::{Metrics, FOLD_AT};
pub use objective::{accuracy, CrossEntropy, Forward, Loss, Mse, Objective, WeightedSum};
pub use trainer::{Regulariser, Trainer};
