//! Hybrid predictive training: skip backward passes by predicting what training would do, and
//! measure what that really saves.
//!
//! A run cycles through four phases (see [`control`]): Warmup (full steps, baseline statistics),
//! Full (full steps while an ensemble of GRUs learns the training dynamics, [`dynamics`]), Predict
//! (the predicted update is applied without a backward pass, [`trainer`]; a forward pass on every
//! step feeds the divergence monitor, [`monitor`]) and Correct (full steps whose residuals correct
//! the predictor). Prediction horizons are chosen by a LinUCB bandit ([`bandit`]).
//!
//! The method follows the design of a published Rust crate that claimed 4.5× faster training and
//! 78% fewer backward passes; there the dynamics model's weights were never trained and the
//! predicted weight change was empty. Here the GRUs are trained on the device with the tape, the
//! predicted update changes every parameter, and the examples (`cargo run --release --example
//! hybrid`) report backward passes, wall time (the dynamics model's cost included), final losses
//! and divergence events next to a baseline of the same seed and the same number of steps.

pub mod bandit;
pub mod control;
pub mod dynamics;
pub mod features;
pub mod monitor;
pub mod run;
pub mod task;
pub mod trainer;

pub use bandit::LinUcb;
pub use control::{Action, Controller, HybridConfig, Outlook, Phase, Plan, Response};
pub use dynamics::{DynamicsConfig, DynamicsModel, GruSequence, Prediction, Standardizer};
pub use features::{StateEncoder, StepRecord, FEATURES, MAX_GROUPS};
pub use monitor::{DivergenceMonitor, MonitorConfig, Signal, StepSignals};
pub use run::{
    build_task, run_hybrid, HybridOutcome, HybridRow, HybridRunConfig, RunResult, SweepConfig,
    TaskConfig,
};
pub use task::{layer_groups, BatchStream, FullStepReport, HybridTask, TrainerTask};
pub use trainer::{deep_copy, Counters, HybridTrainer, StepLog};
