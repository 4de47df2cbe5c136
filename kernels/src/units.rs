//! Per-unit statistics of generate-and-test (continual backprop): one thread per (replica, unit)
//! updates the unit's age, its running mean activation and its utility from this step's features
//! and the magnitudes of its input and output weights.
//!
//! A unit's weights are addressed through a view (replica stride, unit stride, and two nested
//! ranges `outer × inner`), so one kernel serves dense layers (`[R, in, out]`), convolution filter
//! banks (`[out, in, kh, kw]`) and a convolution flattened into a dense layer.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

/// Utility `u = |w_out|` (mean output-weight magnitude).
pub const UTILITY_WEIGHT: u32 = 0;
/// Utility `u = |w_out|·mean|h|`.
pub const UTILITY_CONTRIBUTION: u32 = 1;
/// Utility `u = |w_out|·mean|h − f̂|`.
pub const UTILITY_ZERO_CONTRIBUTION: u32 = 2;
/// Utility `u = |w_out|·mean|h − f̂| / |w_in|`.
pub const UTILITY_ADAPTABLE_CONTRIBUTION: u32 = 3;
/// Utility `u = mean|h − f̂| / |w_in|`.
pub const UTILITY_FEATURE_BY_INPUT: u32 = 4;
/// Utility `u = 1 / |w_in|`.
pub const UTILITY_ADAPTATION: u32 = 5;

/// Where one unit's weights are in a weight tensor: the entries at
/// `replica·replica_stride + unit·unit_stride + o·outer_stride + k·inner_stride` for `o < outer`,
/// `k < inner`. Every value fits in 31 bits (the tensor size limit).
#[derive(CubeType, CubeLaunch, Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeightView {
    pub replica_stride: u32,
    pub unit_stride: u32,
    pub outer: u32,
    pub outer_stride: u32,
    pub inner: u32,
    pub inner_stride: u32,
}

impl WeightView {
    /// This view as a kernel launch argument.
    pub fn arg<R: Runtime>(&self) -> WeightViewLaunch<R> {
        WeightViewLaunch::new(
            self.replica_stride,
            self.unit_stride,
            self.outer,
            self.outer_stride,
            self.inner,
            self.inner_stride,
        )
    }
}

/// Mean magnitude of unit `unit`'s weights in replica `replica` (see [`WeightView`]).
#[cube]
fn mean_magnitude<F: Float>(w: &Array<F>, replica: usize, unit: usize, view: &WeightView) -> F {
    let base = replica * view.replica_stride as usize + unit * view.unit_stride as usize;
    let outer = view.outer as usize;
    let inner = view.inner as usize;
    let mut sum = F::new(0.0);
    for o in 0..outer {
        for k in 0..inner {
            let i = base + o * view.outer_stride as usize + k * view.inner_stride as usize;
            if i < w.len() {
                sum += F::abs(w[i]);
            }
        }
    }
    sum / F::cast_from(outer * inner)
}

/// One step of the unit statistics (Dohare et al. 2024, continual backprop): for unit `j` of
/// replica `r`, with features `h[r, b, j, s]` (`b < rows`, `s < spatial`), decay `η`:
/// `age += 1`, `f ← η f + (1 − η) mean h`, `f̂ = f / (1 − η^age)`,
/// `u ← η u + (1 − η) new`, where `new` is the utility of kind `utility` (the constants above).
/// `in_*` views the unit's input weights, `out_*` its output weights.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn unit_utility_step<F: Float + CubeElement>(
    h: &Array<F>,
    w_in: &Array<F>,
    w_out: &Array<F>,
    util: &mut Array<F>,
    mean_act: &mut Array<F>,
    ages: &mut Array<F>,
    units: usize,
    rows: usize,
    spatial: usize,
    in_view: &WeightView,
    out_view: &WeightView,
    decay: F,
    #[comptime] utility: u32,
) {
    let id = ABSOLUTE_POS;
    if id < util.len() {
        let replica = id / units;
        let unit = id % units;
        let age = ages[id] + F::new(1.0);
        ages[id] = age;
        let count = rows * spatial;
        let mut sum = F::new(0.0);
        for b in 0..rows {
            let base = ((replica * rows + b) * units + unit) * spatial;
            for s in 0..spatial {
                sum += h[base + s];
            }
        }
        let mean_h = sum / F::cast_from(count);
        let f = decay * mean_act[id] + (F::new(1.0) - decay) * mean_h;
        mean_act[id] = f;
        let f_hat = f / (F::new(1.0) - F::powf(decay, age));
        let centre = if utility == UTILITY_CONTRIBUTION {
            F::new(0.0)
        } else {
            f_hat
        };
        let mut dev = F::new(0.0);
        for b in 0..rows {
            let base = ((replica * rows + b) * units + unit) * spatial;
            for s in 0..spatial {
                dev += F::abs(h[base + s] - centre);
            }
        }
        let feature = dev / F::cast_from(count);
        let out_mag = mean_magnitude::<F>(w_out, replica, unit, out_view);
        let in_mag = mean_magnitude::<F>(w_in, replica, unit, in_view);
        let new_util = if utility == UTILITY_WEIGHT {
            out_mag
        } else if utility == UTILITY_CONTRIBUTION || utility == UTILITY_ZERO_CONTRIBUTION {
            out_mag * feature
        } else if utility == UTILITY_ADAPTABLE_CONTRIBUTION {
            out_mag * feature / in_mag
        } else if utility == UTILITY_FEATURE_BY_INPUT {
            feature / in_mag
        } else {
            F::new(1.0) / in_mag
        };
        util[id] = decay * util[id] + (F::new(1.0) - decay) * new_util;
    }
}
