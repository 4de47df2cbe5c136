//! Datasets of the experiments.

mod modular;

pub use modular::{is_prime, ModOp, ModularData, ModularSplit};
