//! Which algorithm computes a convolution's product `y[n, g] = W_g · cols[n, g]`, picked by
//! measurement per shape: `im2col` + the (tuned) batched matmul, or the implicit GEMM
//! (`dynlab_kernels::conv::conv2d_implicit`), which gathers each column entry from the image inside
//! the product instead of storing the columns first.
//!
//! The first [`Tensor::conv2d`] of a shape large enough to repay it runs both (one untimed run each,
//! which compiles them and tunes the matmul, then the best of three timed rounds) and caches the faster
//! for that exact shape on that device; smaller products, and every product under
//! `DYNLAB_CONV_TUNE=0` (for bit-identical reruns: the two sum in the same order but are not
//! guaranteed to round alike), take `im2col`. On the tape (`Var::conv2d`) the columns are kept for
//! the weight gradient anyway, so it always uses `im2col`.

use crate::dtype::DType;
use crate::error::Result;
use crate::launch::launch;
use crate::ops::conv::{conv_output_shape, Conv2dOptions, Window};
use crate::settings;
use crate::tensor::Tensor;
use crate::tune::{fastest, with_forced, TuneCache};
use cubecl::prelude::*;
use dynlab_kernels::conv::{conv2d_implicit, ImplicitTiling};
use std::cell::Cell;

/// How [`Tensor::conv2d`] computes the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvAlgorithm {
    /// `im2col` stores the columns `[N, G, K, Ho·Wo]`, then one batched matmul.
    Im2col,
    /// One kernel: output channels × pixels register tiles, image entries gathered per step.
    Implicit,
}

thread_local! {
    static FORCED: Cell<Option<ConvAlgorithm>> = const { Cell::new(None) };
}

/// Runs `f` with every [`Tensor::conv2d`] on this thread using `algorithm`, for tests that must
/// cover both.
pub fn with_conv_algorithm<T>(algorithm: ConvAlgorithm, f: impl FnOnce() -> T) -> T {
    with_forced(&FORCED, algorithm, f)
}

/// Products smaller than this many multiply-adds take `im2col` without timing.
const TUNE_MIN_WORK: usize = 1 << 22;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ShapeKey {
    device: String,
    input: [usize; 4],
    out_channels: usize,
    kernel: [usize; 2],
    options: Conv2dOptions,
}

/// The algorithms timed against each other (and the values a stored choice may take).
const CANDIDATES: [ConvAlgorithm; 2] = [ConvAlgorithm::Im2col, ConvAlgorithm::Implicit];

static CHOSEN: TuneCache<ShapeKey, ConvAlgorithm> =
    TuneCache::new("conv2d", || CANDIDATES.to_vec());

/// The measured choices so far, one line per shape.
pub(crate) fn tuned_choices() -> Vec<String> {
    CHOSEN
        .entries()
        .into_iter()
        .map(|(k, algorithm)| {
            format!(
                "conv2d input {:?} out channels {} kernel {:?} {:?} on {}: {algorithm:?}",
                k.input, k.out_channels, k.kernel, k.options, k.device
            )
        })
        .collect()
}

/// `y [N, O, Ho, Wo]` without bias, by the forced, cached or measured algorithm.
pub(crate) fn conv2d_product(x: &Tensor, weight: &Tensor, window: &Window) -> Result<Tensor> {
    let algorithm = choose(x, weight, window)?;
    run(algorithm, x, weight, window)
}

fn choose(x: &Tensor, weight: &Tensor, window: &Window) -> Result<ConvAlgorithm> {
    let [n, g, k, p] = window.cols_shape();
    if n * g > MAX_GRID_Z {
        return Ok(ConvAlgorithm::Im2col);
    }
    if let Some(forced) = FORCED.with(Cell::get) {
        return Ok(forced);
    }
    let out_channels = weight.shape()[0];
    let work = [n, out_channels, k, p]
        .iter()
        .fold(1usize, |acc, &d| acc.saturating_mul(d));
    if work < TUNE_MIN_WORK || !settings::conv_tune() {
        return Ok(ConvAlgorithm::Im2col);
    }
    let key = ShapeKey {
        device: x.device().name().to_string(),
        input: window.input,
        out_channels,
        kernel: window.kernel,
        options: window.options,
    };
    if let Some(algorithm) = CHOSEN.get(&key) {
        return Ok(algorithm);
    }
    let best = fastest(x.device(), CANDIDATES, ConvAlgorithm::Im2col, |algorithm| {
        run(algorithm, x, weight, window).map(drop)
    })?;
    CHOSEN.insert(key, best);
    Ok(best)
}

fn run(algorithm: ConvAlgorithm, x: &Tensor, weight: &Tensor, window: &Window) -> Result<Tensor> {
    let out_channels = weight.shape()[0];
    match algorithm {
        ConvAlgorithm::Im2col => {
            // `w [O, C/G, KH, KW]` as `[G, O/G, K]`: each group's filters as rows.
            let g = window.options.groups as isize;
            let k = window.cols_shape()[2] as isize;
            let w = weight.reshape(&[g, out_channels as isize / g, k])?;
            w.matmul(&x.im2col(window)?)?
                .reshape(&conv_output_shape(window, out_channels))
        }
        ConvAlgorithm::Implicit => implicit(x, weight, window),
    }
}

/// Most images × groups the implicit kernel's grid holds (one cube row each); more take `im2col`.
const MAX_GRID_Z: usize = 65_535;

/// Output pixels per unit in [`conv2d_implicit`].
const PIXELS_PER_UNIT: u32 = 4;

fn implicit(x: &Tensor, weight: &Tensor, window: &Window) -> Result<Tensor> {
    let op = "Tensor::conv2d";
    let (x, weight) = (x.contiguous_from_zero()?, weight.contiguous_from_zero()?);
    let out_channels = weight.shape()[0];
    let [n, g, _, p] = window.cols_shape();
    let out_shape = conv_output_shape(window, out_channels).map(|d| d as usize);
    let out = Tensor::alloc(op, &out_shape, DType::F32, x.device())?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let og = out_channels / g;
    let tm = [32, 16, 8].into_iter().find(|&t| og >= t).unwrap_or(4) as u32;
    let tiling = ImplicitTiling {
        tm,
        tn: PIXELS_PER_UNIT,
    };
    let lanes = (p.div_ceil(PIXELS_PER_UNIT as usize))
        .next_power_of_two()
        .clamp(8, 32) as u32;
    let count = CubeCount::Static(
        p.div_ceil((lanes * PIXELS_PER_UNIT) as usize) as u32,
        og.div_ceil(tm as usize) as u32,
        (n * g) as u32,
    );
    let geometry = window.geometry();
    launch!(
        x.device(),
        conv2d_implicit::<f32>,
        count,
        CubeDim::new_1d(lanes),
        x.buffer_arg(),
        weight.buffer_arg(),
        geometry.arg(),
        out.buffer_arg(),
        out_channels as u32,
        tiling
    );
    Ok(out)
}
