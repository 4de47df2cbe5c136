//! dynlab's training algorithms: optimizers, data, training loops and experiment runners.

pub mod data;
pub mod grokking;
pub mod metrics;
pub mod optim;
pub mod run;
pub mod train;
