//! The per-layer measurements of the supervised runner on its fixed probe batch: for every hidden
//! representation a model taps (`hidden.0`, `hidden.1`, …, flattened to `[samples, units]`), the
//! rank measures of [`rank_measures`] (full singular value decompositions, never a rank-capped
//! low-rank one), the unit counts of [`unit_stats`], and, across layers, the rank dynamics of
//! [`rank_dynamics`] with the input's rank `min(samples, input features)` prepended, as the lls
//! studies do (`use_theoretical_max_first`). Weight norms are `‖W‖_F` of every weight parameter.

use crate::metrics::{rank_dynamics, rank_measures, unit_stats, RankMeasures, UnitStats};
use dynlab_autodiff::{no_grad, Var};
use dynlab_harness::{History, Value};
use dynlab_models::{Activation, Ctx, Module, ParamKind};
use dynlab_runtime::linalg::EighOptions;
use dynlab_runtime::{Result, Tensor};

/// One layer's measures.
#[derive(Clone, Debug)]
pub struct LayerMeasures {
    /// The tap (`hidden.2`).
    pub tap: String,
    /// Rank measures of its features.
    pub ranks: RankMeasures,
    /// Dead, dormant and saturated units, feature norm.
    pub units: UnitStats,
    /// Rank at the configured energy.
    pub rank_at_energy: usize,
}

/// The hidden taps of `model` on `probe`, in layer order (`hidden.0`, `hidden.1`, …), each
/// flattened to `[samples, units]`.
pub fn hidden_features(model: &dyn Module, probe: &Tensor) -> Result<Vec<(String, Tensor)>> {
    no_grad(|| {
        let mut ctx = Ctx::eval().with_all_taps();
        model.forward(&Var::constant(probe.clone()), &mut ctx)?;
        let mut hidden: Vec<(usize, String, Tensor)> = ctx
            .taps()
            .iter()
            .filter_map(|(name, v)| {
                let index = name.strip_prefix("hidden.")?.parse::<usize>().ok()?;
                Some((index, name.to_string(), v.value().clone()))
            })
            .collect();
        hidden.sort_by_key(|(i, _, _)| *i);
        hidden
            .into_iter()
            .map(|(_, name, t)| {
                let rows = t.shape()[0] as isize;
                Ok((name, t.reshape(&[rows, -1])?))
            })
            .collect()
    })
}

/// Every hidden layer's measures on `probe` (see the module docs).
pub fn measure_layers(
    model: &dyn Module,
    probe: &Tensor,
    activation: Activation,
    energy_percent: f64,
) -> Result<Vec<LayerMeasures>> {
    hidden_features(model, probe)?
        .into_iter()
        .map(|(tap, features)| {
            let ranks = rank_measures(&features, false, EighOptions::default())?;
            Ok(LayerMeasures {
                rank_at_energy: ranks.rank_at_energy(energy_percent)?,
                units: unit_stats(&features, activation)?,
                ranks,
                tap,
            })
        })
        .collect()
}

/// Writes `layers` into the last history row: `l<i>_<measure>` per layer, and the rank dynamics
/// of the effective and approximate ranks with the input rank `input_rank` in front.
pub fn record_layers(
    history: &mut History,
    layers: &[LayerMeasures],
    input_rank: f64,
) -> Result<()> {
    for (i, l) in layers.iter().enumerate() {
        let r = &l.ranks;
        let cells: [(&str, Value); 11] = [
            ("effective_rank", Value::F64(r.effective_rank)),
            ("approximate_rank", Value::U64(r.approximate_rank as u64)),
            (
                "abs_approximate_rank",
                Value::U64(r.cumulative_sigma_rank as u64),
            ),
            ("matrix_rank", Value::U64(r.numerical_rank as u64)),
            ("numerical_rank", Value::U64(r.sigma_threshold_rank as u64)),
            ("rank_at_energy", Value::U64(l.rank_at_energy as u64)),
            ("nuclear_norm", Value::F64(r.nuclear_norm)),
            ("dead", Value::U64(l.units.dead as u64)),
            ("dormant", Value::U64(l.units.dormant as u64)),
            ("saturated", Value::U64(l.units.saturated as u64)),
            ("feature_norm", Value::F64(l.units.feature_norm)),
        ];
        for (name, value) in cells {
            history.set(&format!("l{i}_{name}"), value)?;
        }
    }
    type Pick = fn(&LayerMeasures) -> f64;
    let series: [(&str, Pick); 2] = [
        ("effective_rank", |l| l.ranks.effective_rank),
        ("approximate_rank", |l| l.ranks.approximate_rank as f64),
    ];
    for (name, pick) in series {
        let ranks: Vec<f64> = std::iter::once(input_rank)
            .chain(layers.iter().map(pick))
            .collect();
        let d = rank_dynamics(&ranks);
        history.set(&format!("{name}_drop_gini"), Value::F64(d.gini))?;
        history.set(&format!("{name}_decay_centroid"), Value::F64(d.centroid))?;
        history.set(
            &format!("{name}_normalized_aurc"),
            Value::F64(d.normalized_aurc),
        )?;
    }
    Ok(())
}

/// `‖W‖_F` of every weight parameter, as `weight_norm.<path>` cells of the last row (one
/// read-back for all of them).
pub fn record_weight_norms(history: &mut History, model: &dyn Module) -> Result<()> {
    let weights: Vec<(String, Tensor)> = model
        .params()
        .into_iter()
        .filter(|(_, p)| p.kind() == ParamKind::Weight)
        .map(|(name, p)| Ok((name, p.value().square()?.sum_all()?.sqrt()?)))
        .collect::<Result<_>>()?;
    let norms: Vec<&Tensor> = weights.iter().map(|(_, t)| t).collect();
    let values = Tensor::read_many(&norms)?;
    for ((name, _), v) in weights.iter().zip(values) {
        history.set(&format!("weight_norm.{name}"), Value::F64(v[0] as f64))?;
    }
    Ok(())
}
