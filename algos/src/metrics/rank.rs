//! Rank of a feature matrix (samples × units) from its singular values `s_1 ≥ … ≥ s_k`, as the
//! plasticity studies define them (`lls src/utils/zeroth_order_features.py`):
//! - effective rank (Roy & Vetterli 2007) with the studies' guard: `ε = max(10⁻¹², 10⁻⁸·s_1)`,
//!   `p_i = s_i / (Σ s + ε)`, `erank = exp(−Σ p_i ln(p_i + ε/Σ s))` (within ~10⁻⁸ of the exact
//!   `p_i = s_i/Σ s`);
//! - approximate rank: the smallest `r` with `Σ_{i≤r} s_i² ≥ 0.99 Σ s²` (99% of the energy; the
//!   plasticity studies' "approximate rank", Kumar et al. 2021);
//! - cumulative-σ rank: the smallest `r` with `Σ_{i≤r} s_i ≥ 0.99 Σ s` (Dohare et al. 2024);
//! - numerical rank: `#{s_i > tol · s_1}` (the matrix rank, `tol = max(m, n)·ε_f32`; the
//!   permuted-MNIST study's "rank");
//! - the studies' "numerical rank" `#{s_i ≥ 10⁻²·s_1}` ([`RankMeasures::sigma_threshold_rank`]);
//! - nuclear norm `Σ s`;
//! - rank at q% variance: the smallest `r` with `Σ_{i≤r} s_i² ≥ q/100 · Σ s²` of the centred matrix
//!   (principal components needed for q% of the variance).

use dynlab_runtime::linalg::{EighOptions, EighPath};
use dynlab_runtime::{Error, Result, Tensor};

/// The rank measures of one feature matrix (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct RankMeasures {
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// Roy & Vetterli's effective rank.
    pub effective_rank: f64,
    /// Components holding 99% of `Σ s²`.
    pub approximate_rank: usize,
    /// Components holding 99% of `Σ s`.
    pub cumulative_sigma_rank: usize,
    /// With tolerance `max(m, n) · ε_f32`.
    pub numerical_rank: usize,
    /// `#{s_i ≥ 10⁻²·s_1}` (the lls studies' "numerical rank").
    pub sigma_threshold_rank: usize,
    /// `Σ s`.
    pub nuclear_norm: f64,
    /// Which solver gave the singular values.
    pub path: EighPath,
}

/// Smallest `r` whose leading `r` values hold `fraction` of the total (0 for an all-zero list).
fn leading_count(values: impl Iterator<Item = f64> + Clone, fraction: f64) -> usize {
    let total: f64 = values.clone().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut acc = 0.0;
    for (i, v) in values.enumerate() {
        acc += v;
        if acc >= fraction * total * (1.0 - 1e-12) {
            return i + 1;
        }
    }
    unreachable!("the running sum reaches the total")
}

impl RankMeasures {
    /// All measures from singular values (any order; negatives are rounding and count as 0).
    pub fn from_singular_values(
        values: &[f64],
        numerical_tol: f64,
        path: EighPath,
    ) -> RankMeasures {
        let mut s: Vec<f64> = values.iter().map(|v| v.max(0.0)).collect();
        s.sort_by(|a, b| b.total_cmp(a));
        let total: f64 = s.iter().sum();
        let top = s.first().copied().unwrap_or(0.0);
        let effective_rank = if total > 0.0 {
            let eps = (1e-8 * top).max(1e-12);
            let entropy: f64 = s
                .iter()
                .map(|v| v / (total + eps))
                .map(|p| -p * (p + eps / total).ln())
                .sum();
            entropy.exp()
        } else {
            0.0
        };
        RankMeasures {
            sigma_threshold_rank: s.iter().filter(|&&v| v > 0.0 && v >= 1e-2 * top).count(),
            nuclear_norm: total,
            effective_rank,
            approximate_rank: leading_count(s.iter().map(|v| v * v), 0.99),
            cumulative_sigma_rank: leading_count(s.iter().copied(), 0.99),
            numerical_rank: s
                .iter()
                .filter(|&&v| v > numerical_tol * top && v > 0.0)
                .count(),
            singular_values: s,
            path,
        }
    }

    /// Smallest number of leading components with `q`% of `Σ s²` (`q` in (0, 100]).
    pub fn rank_at_energy(&self, q: f64) -> Result<usize> {
        if !(q > 0.0 && q <= 100.0) {
            return Err(Error::value(
                "RankMeasures::rank_at_energy",
                format!("q = {q}"),
                "a percentage in (0, 100]",
            ));
        }
        Ok(leading_count(
            self.singular_values.iter().map(|v| v * v),
            q / 100.0,
        ))
    }
}

/// Rank measures of `features` (`[samples, units]`); with `center`, column means are removed first
/// so that [`RankMeasures::rank_at_energy`] is the rank at q% variance.
pub fn rank_measures(
    features: &Tensor,
    center: bool,
    options: EighOptions,
) -> Result<RankMeasures> {
    if features.rank() != 2 {
        return Err(Error::shape(
            "rank_measures",
            format!("{:?}", features.shape()),
            "features [samples, units]",
        ));
    }
    let x = if center && features.shape()[0] > 0 {
        features.sub(&features.mean(0, true)?)?
    } else {
        features.clone()
    };
    let (s, path) = x.singular_values(options)?;
    let s: Vec<f64> = s.to_vec::<f32>()?.iter().map(|&v| v as f64).collect();
    let tol = features.shape().iter().copied().max().unwrap_or(1) as f64 * f32::EPSILON as f64;
    Ok(RankMeasures::from_singular_values(&s, tol, path))
}
