//! Unit-level measures of a layer's features `h` (`[samples, units]`, after the activation) over a
//! fixed probe set, as the plasticity studies count them:
//! - dead units: `Σ_samples |h_u| = 0` (never active; `lop/permuted_mnist`);
//! - dormant units: active (`h_u > 0`) on fewer than 1% of the probe samples (dead ones included);
//! - saturated units: the activation's saturation rule ([`Activation::is_saturated`]) holds on
//!   every probe sample (ReLU: 0; sigmoid: < 0.01 or > 0.99; tanh: |h| > 0.99; SELU: < −1.7;
//!   ELU: < −0.99; GELU, the leaky ReLU and swish never saturate);
//! - the feature norm: the mean over samples of `‖h_s‖₂`.
//!
//! Across layers, from one rank measure per layer `r_0 … r_L` (`lls src/utils/rank_drop_dynamics.py`,
//! "ratio" mode): drops `d_l = (r_l − r_{l+1}) / r_l` (0 where `r_l = 0`); the Gini coefficient of
//! the drops clipped at 0, `Σ_i (2i − n − 1)·d_(i) / (n Σ d)` over the sorted drops; the rank-decay
//! centroid `Σ l·r_l / Σ r_l`; and the normalised area under the rank curve, the trapezoid area
//! over `r_0·(n − 1)` for `n` points (1 when the rank never drops).

use dynlab_models::Activation;
use dynlab_runtime::{Error, Result, Tensor};

/// Dormant below this fraction of active samples.
pub const DORMANT_FRACTION: f64 = 0.01;

/// The unit measures of one layer (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct UnitStats {
    /// Units with `Σ|h| = 0` over the probe set.
    pub dead: usize,
    /// Units active on fewer than 1% of the probe samples.
    pub dormant: usize,
    /// Units saturated on every probe sample.
    pub saturated: usize,
    /// Mean over samples of the feature vector's L2 norm.
    pub feature_norm: f64,
}

/// The unit measures of `features` (`[samples, units]`) produced by `activation`.
pub fn unit_stats(features: &Tensor, activation: Activation) -> Result<UnitStats> {
    if features.rank() != 2 || features.shape()[0] == 0 {
        return Err(Error::shape(
            "unit_stats",
            format!("{:?}", features.shape()),
            "features [samples ≥ 1, units]",
        ));
    }
    let abs_sums = features.abs()?.sum(0, false)?;
    let active = features.gt_scalar(0.0)?.mean(0, false)?;
    let saturated = saturation_mask(features, activation)?.mean(0, false)?;
    let norm = features.square()?.sum(1, false)?.sqrt()?.mean_all()?;
    let read = Tensor::read_many(&[&abs_sums, &active, &saturated, &norm])?;
    let [abs_sums, active, saturated, norm] = &read[..] else {
        unreachable!("read_many returns one vector per tensor")
    };
    Ok(UnitStats {
        dead: abs_sums.iter().filter(|&&s| s == 0.0).count(),
        dormant: active
            .iter()
            .filter(|&&a| (a as f64) < DORMANT_FRACTION)
            .count(),
        saturated: saturated.iter().filter(|&&s| s == 1.0).count(),
        feature_norm: norm[0] as f64,
    })
}

/// 1 where `h` is saturated under `activation`'s rule, else 0.
fn saturation_mask(h: &Tensor, activation: Activation) -> Result<Tensor> {
    match activation {
        Activation::Relu => h.eq_scalar(0.0),
        Activation::Sigmoid => h.lt_scalar(0.01)?.add(&h.gt_scalar(0.99)?),
        Activation::Tanh => h.abs()?.gt_scalar(0.99),
        Activation::Selu => h.lt_scalar(-1.7),
        Activation::Elu => h.lt_scalar(-0.99),
        Activation::Gelu | Activation::LeakyRelu | Activation::Swish => h.mul_scalar(0.0),
    }
}

/// The across-layer measures of one rank measure (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct RankDynamics {
    /// `(r_l − r_{l+1}) / r_l` for each consecutive pair.
    pub drops: Vec<f64>,
    /// Gini coefficient of the drops clipped at 0 (0: even, → 1: one drop holds it all).
    pub gini: f64,
    /// `Σ l·r_l / Σ r_l`.
    pub centroid: f64,
    /// Trapezoid area under `r_l` over `r_0·(points − 1)`.
    pub normalized_aurc: f64,
}

/// The across-layer measures of `ranks` (first layer first; the studies prepend the input's rank).
pub fn rank_dynamics(ranks: &[f64]) -> RankDynamics {
    let drops: Vec<f64> = ranks
        .windows(2)
        .map(|w| {
            if w[0] > 0.0 {
                (w[0] - w[1]) / w[0]
            } else {
                0.0
            }
        })
        .collect();
    let total: f64 = ranks.iter().sum();
    let centroid = if ranks.len() > 1 && total != 0.0 {
        ranks
            .iter()
            .enumerate()
            .map(|(l, r)| l as f64 * r)
            .sum::<f64>()
            / total
    } else {
        0.0
    };
    let normalized_aurc = match ranks.len() {
        0 => 0.0,
        1 => 1.0,
        n => {
            let area: f64 = ranks.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum();
            let max_area = ranks[0] * (n - 1) as f64;
            if max_area > 0.0 {
                area / max_area
            } else {
                0.0
            }
        }
    };
    RankDynamics {
        gini: gini(&drops),
        drops,
        centroid,
        normalized_aurc,
    }
}

/// Gini coefficient of `values` clipped at 0 (0 for an empty or all-zero list).
fn gini(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().map(|d| d.max(0.0)).collect();
    let sum: f64 = v.iter().sum();
    if v.is_empty() || sum == 0.0 {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let weighted: f64 = v
        .iter()
        .enumerate()
        .map(|(i, d)| (2.0 * (i + 1) as f64 - n - 1.0) * d)
        .sum();
    weighted / (n * sum)
}
