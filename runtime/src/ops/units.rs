//! Launcher of generate-and-test's per-unit statistics (`dynlab_kernels::units`): one launch per
//! layer and step updates every unit's age, running mean activation and utility.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::tensor::Tensor;
use dynlab_kernels::units::{
    unit_utility_step, UTILITY_ADAPTABLE_CONTRIBUTION, UTILITY_ADAPTATION, UTILITY_CONTRIBUTION,
    UTILITY_FEATURE_BY_INPUT, UTILITY_WEIGHT, UTILITY_ZERO_CONTRIBUTION,
};

pub use dynlab_kernels::units::WeightView;

/// The utility a unit is ranked by (Dohare et al. 2024; `lop/algos/gnt.py`), with `|w_out|` the
/// mean magnitude of the unit's output weights, `|w_in|` of its input weights, `h` its feature and
/// `f̂` its bias-corrected mean feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitUtility {
    /// `|w_out|`.
    Weight,
    /// `|w_out|·mean|h|`.
    Contribution,
    /// `|w_out|·mean|h − f̂|`.
    ZeroContribution,
    /// `|w_out|·mean|h − f̂| / |w_in|`.
    AdaptableContribution,
    /// `mean|h − f̂| / |w_in|`.
    FeatureByInput,
    /// `1 / |w_in|`.
    Adaptation,
}

impl UnitUtility {
    /// The utility named `name` (`weight`, `contribution`, `zero_contribution`,
    /// `adaptable_contribution`, `feature_by_input`, `adaptation`).
    pub fn parse(name: &str) -> Option<UnitUtility> {
        Some(match name {
            "weight" => UnitUtility::Weight,
            "contribution" => UnitUtility::Contribution,
            "zero_contribution" => UnitUtility::ZeroContribution,
            "adaptable_contribution" => UnitUtility::AdaptableContribution,
            "feature_by_input" => UnitUtility::FeatureByInput,
            "adaptation" => UnitUtility::Adaptation,
            _ => return None,
        })
    }

    fn code(self) -> u32 {
        match self {
            UnitUtility::Weight => UTILITY_WEIGHT,
            UnitUtility::Contribution => UTILITY_CONTRIBUTION,
            UnitUtility::ZeroContribution => UTILITY_ZERO_CONTRIBUTION,
            UnitUtility::AdaptableContribution => UTILITY_ADAPTABLE_CONTRIBUTION,
            UnitUtility::FeatureByInput => UTILITY_FEATURE_BY_INPUT,
            UnitUtility::Adaptation => UTILITY_ADAPTATION,
        }
    }
}

/// Per-unit statistics, `replicas × units` values each (f32, updated in place).
#[derive(Clone, Debug)]
pub struct UnitStats {
    /// Running utility `u` (not bias-corrected).
    pub util: Tensor,
    /// Running mean feature `f` (not bias-corrected).
    pub mean_act: Tensor,
    /// Steps since the unit was (re)born.
    pub ages: Tensor,
}

/// The sizes of one layer's units: `replicas × units` units, features `[R, N, units, spatial]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnitLayout {
    /// Replicas `R` (1 for one model).
    pub replicas: usize,
    /// Units per replica (neurons or channels).
    pub units: usize,
    /// Feature values per unit and example (1 for dense layers, `H·W` for channels).
    pub spatial: usize,
}

impl Tensor {
    /// One step of generate-and-test's unit statistics (see `dynlab_kernels::units`) from this
    /// tensor of features `[R, N, units, spatial]` (any shape with that many elements, row-major),
    /// the layer's input weights `w_in` seen through `in_view` and the next layer's weights `w_out`
    /// through `out_view`, with decay `decay ∈ [0, 1)`.
    pub fn unit_utility_step(
        &self,
        layout: UnitLayout,
        w_in: (&Tensor, WeightView),
        w_out: (&Tensor, WeightView),
        stats: &mut UnitStats,
        decay: f32,
        utility: UnitUtility,
    ) -> Result<()> {
        let op = "Tensor::unit_utility_step";
        self.expect_f32(op)?;
        let per_row = layout.replicas * layout.units * layout.spatial;
        if per_row == 0 || !self.numel().is_multiple_of(per_row) || self.numel() == 0 {
            return Err(Error::shape(
                op,
                format!("features {:?}", self.shape()),
                format!("R·N·units·spatial elements with {layout:?}, N ≥ 1"),
            ));
        }
        if !(0.0..1.0).contains(&decay) {
            return Err(Error::value(
                op,
                format!("decay {decay}"),
                "a decay in [0, 1)",
            ));
        }
        let rows = self.numel() / per_row;
        let (w_in_t, in_view) = w_in;
        let (w_out_t, out_view) = w_out;
        check_view(op, "input weights", w_in_t, &in_view, layout)?;
        check_view(op, "output weights", w_out_t, &out_view, layout)?;
        for t in [w_in_t, w_out_t, &stats.util, &stats.mean_act, &stats.ages] {
            self.expect_same_device(op, t)?;
        }
        let count = layout.replicas * layout.units;
        let util = owned_stat(op, &mut stats.util, count)?;
        let mean_act = owned_stat(op, &mut stats.mean_act, count)?;
        let ages = owned_stat(op, &mut stats.ages, count)?;
        let h = self.contiguous_from_zero()?;
        let w_in_t = w_in_t.contiguous_from_zero()?;
        let w_out_t = w_out_t.contiguous_from_zero()?;
        let (cubes, dim) = units_grid(count);
        launch!(
            self.device(),
            unit_utility_step::<f32>,
            cubes,
            dim,
            h.buffer_arg(),
            w_in_t.buffer_arg(),
            w_out_t.buffer_arg(),
            util.buffer_arg(),
            mean_act.buffer_arg(),
            ages.buffer_arg(),
            layout.units,
            rows,
            layout.spatial,
            in_view.arg(),
            out_view.arg(),
            decay,
            utility.code()
        );
        Ok(())
    }
}

/// Every address `view` forms for `layout`'s units lies inside `w`, and `w` is f32 on the features'
/// device.
fn check_view(
    op: &'static str,
    what: &str,
    w: &Tensor,
    view: &WeightView,
    layout: UnitLayout,
) -> Result<()> {
    w.expect_f32(op)?;
    let last = |len: u32| (len as usize).saturating_sub(1);
    let furthest = last(layout.replicas as u32) * view.replica_stride as usize
        + last(layout.units as u32) * view.unit_stride as usize
        + last(view.outer) * view.outer_stride as usize
        + last(view.inner) * view.inner_stride as usize;
    if view.outer == 0 || view.inner == 0 || furthest >= w.numel() {
        return Err(Error::shape(
            op,
            format!("{what} {:?} through {view:?}", w.shape()),
            format!("a view with outer, inner ≥ 1 inside the tensor for {layout:?}"),
        ));
    }
    Ok(())
}

/// Makes `stat` an unshared row-major f32 buffer of `count` elements (copying it if needed) and
/// returns a handle for the kernel to write.
fn owned_stat(op: &'static str, stat: &mut Tensor, count: usize) -> Result<Tensor> {
    stat.expect_f32(op)?;
    if stat.numel() != count {
        return Err(Error::shape(
            op,
            format!("unit statistics {:?}", stat.shape()),
            format!("{count} values (replicas × units)"),
        ));
    }
    if !(stat.is_contiguous() && stat.offset == 0 && stat.handle.can_mut()) {
        let copy = Tensor::alloc(op, stat.shape(), DType::F32, stat.device())?;
        crate::view::copy_into(stat, &copy)?;
        *stat = copy;
    }
    Ok(stat.clone())
}
