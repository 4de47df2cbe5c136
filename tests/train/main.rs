//! The models and training suite: fused optimizer updates against f64 references, schedules and
//! clipping, layers and initialisations, state dicts, modular-arithmetic data, configs, and the
//! grokking experiment end to end (phases, and resuming to the same history as a straight run).

mod config;
mod data;
mod grokking;
mod modules;
mod optim;
