//! Measurements the learning-dynamics studies log: rank measures of features, unit counts (dead,
//! dormant, saturated) and the across-layer rank dynamics.

mod rank;
mod units;

pub use rank::{rank_measures, RankMeasures};
pub use units::{rank_dynamics, unit_stats, RankDynamics, UnitStats, DORMANT_FRACTION};
