//! Measurements the learning-dynamics studies log.

mod rank;

pub use rank::{rank_measures, RankMeasures};
