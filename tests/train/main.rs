//! The training suite: fused optimizer updates against f64 references, schedules and clipping, typed
//! optimizer state (slots by name, unit resets, checkpoints), the training step (objectives, hooks,
//! metrics, batch sources), modular-arithmetic data, configs, and the grokking experiment end to end
//! (phases, and resuming to the same history as a straight run).

mod config;
mod data;
mod fusion;
mod grokking;
mod optim;
mod optim_state;
mod replicas;
mod step;
