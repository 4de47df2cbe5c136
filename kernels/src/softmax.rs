//! Row kernels of the softmax family, numerically stable by subtracting the row maximum:
//!
//! `softmax(x)_j = exp(x_j − m) / Σ_k exp(x_k − m)`, `log_softmax(x)_j = x_j − m − ln Σ_k exp(x_k − m)`
//! with `m = max_k x_k`, and the fused cross-entropy of integer labels
//! `ℓ = m + ln Σ_k exp(x_k − m) − x_label`, and `logsumexp(x) = m + ln Σ_k exp(x_k − m)`; the
//! cross-entropy's gradient `∂ℓ/∂x_j · g = (softmax(x)_j − [j = label]) · g_row` in one pass, and
//! whether the row's first maximum (a NaN counts as the maximum) is its label. [`cross_entropy_mean`]
//! gives a batch's mean loss and accuracy in one launch (per group of rows: one group per stacked
//! replica), where the per-row kernels need a reduction and a division after them.
//!
//! Rows come as the last dimension of a strided view (as in [`crate::reduce`]); outputs are contiguous.
//! A row whose maximum is ±inf or NaN yields NaN (or ±inf) rather than a silently wrong finite number.

use crate::layout::strided_offset;
use crate::num::{is_finite, is_nan, neg_infinity};
use crate::reduce::cube_sum;
use cubecl::prelude::*;

/// What a softmax-family row kernel writes.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum SoftmaxMode {
    /// `exp(x_j − m) / Σ_k exp(x_k − m)` for every element.
    Softmax,
    /// `x_j − m − ln Σ_k exp(x_k − m)` for every element.
    LogSoftmax,
    /// Writes one value per row: `m + ln Σ_k exp(x_k − m)`.
    LogSumExp,
    /// Writes one loss per row; the label of row `r` is `labels[r]`.
    CrossEntropy,
    /// Writes `(softmax(x)_j − [j = label]) · scale[r / scale_rows] · factor` for every element (the
    /// cross-entropy's gradient for an upstream gradient `scale[r]` of row `r`'s loss, or one scale
    /// shared by groups of `scale_rows` rows, as a mean's gradient is).
    CrossEntropyGrad,
    /// Writes one value per row: 1 when the row's first maximum is at its label, else 0.
    Correct,
}

/// Shift that keeps `exp(x - shift)` finite: the max when finite, else 0 (so an all `-inf` row gives
/// `ln 0 = -inf` for logsumexp and NaN for softmax, as in PyTorch).
#[cube]
fn safe_shift<F: Float>(m: F) -> F {
    select(is_finite::<F>(m), m, F::new(0.0))
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn write_row<F: Float>(
    input: &Tensor<F>,
    output: &mut Array<F>,
    labels: &Array<i32>,
    scale: &Array<F>,
    scale_rows: u32,
    factor: F,
    base: usize,
    step: usize,
    row: usize,
    row_len: u32,
    first: u32,
    stride: u32,
    m: F,
    sum: F,
    #[comptime] mode: SoftmaxMode,
) {
    match mode {
        SoftmaxMode::Softmax => {
            let inv = F::new(1.0) / sum;
            let mut j = first;
            while j < row_len {
                let x = input[base + j as usize * step];
                output[row * row_len as usize + j as usize] = (x - m).exp() * inv;
                j += stride;
            }
        }
        SoftmaxMode::LogSoftmax => {
            let lse = m + sum.ln();
            let mut j = first;
            while j < row_len {
                let x = input[base + j as usize * step];
                output[row * row_len as usize + j as usize] = x - lse;
                j += stride;
            }
        }
        SoftmaxMode::LogSumExp => {
            if first == 0 {
                output[row] = m + sum.ln();
            }
        }
        SoftmaxMode::CrossEntropy => {
            if first == 0 {
                let label = labels[row];
                let safe = select(label >= 0 && (label as u32) < row_len, label as u32, 0);
                let x = input[base + safe as usize * step];
                output[row] = m + sum.ln() - x;
            }
        }
        SoftmaxMode::CrossEntropyGrad => {
            let inv = F::new(1.0) / sum;
            let g = scale[row / scale_rows as usize] * factor;
            let label = labels[row];
            let mut j = first;
            while j < row_len {
                let x = input[base + j as usize * step];
                let hot = select(label == j as i32, F::new(1.0), F::new(0.0));
                output[row * row_len as usize + j as usize] = ((x - m).exp() * inv - hot) * g;
                j += stride;
            }
        }
        SoftmaxMode::Correct => {
            if first == 0 {
                let mut best = input[base];
                let mut at = 0u32;
                for j in 1..row_len {
                    let x = input[base + j as usize * step];
                    if !is_nan::<F>(best) && (x > best || is_nan::<F>(x)) {
                        best = x;
                        at = j;
                    }
                }
                output[row] = select(labels[row] == at as i32, F::new(1.0), F::new(0.0));
            }
        }
    }
}

pub use kernels::*;

// `#[cube]` and `#[derive(CubeType)]` emit public items beside each kernel (its launcher module,
// `…Expand`/`…Launch` types) that take no doc attributes; the lint is allowed on this module only.
#[allow(missing_docs)]
mod kernels {
    use super::*;

    /// One unit per row: three serial passes (max, sum of exponentials, write).
    #[cube(launch_unchecked)]
    pub fn softmax_rows_unit<F: Float + CubeElement>(
        input: &Tensor<F>,
        output: &mut Array<F>,
        labels: &Array<i32>,
        scale: &Array<F>,
        scale_rows: u32,
        factor: F,
        in_offset: u32,
        rows: u32,
        row_len: u32,
        #[comptime] mode: SoftmaxMode,
    ) {
        let row = ABSOLUTE_POS;
        if row < rows as usize {
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let step = input.stride(input.rank() - 1);
            let mut m = neg_infinity::<F>();
            for j in 0..row_len {
                let x = input[base + j as usize * step];
                m = select(x > m || is_nan::<F>(x), x, m);
            }
            let m = safe_shift::<F>(m);
            let mut sum = F::new(0.0);
            for j in 0..row_len {
                sum += (input[base + j as usize * step] - m).exp();
            }
            write_row::<F>(
                input, output, labels, scale, scale_rows, factor, base, step, row, row_len, 0, 1,
                m, sum, mode,
            );
        }
    }

    /// One cube of `block` units per row, shared-memory trees for the max and the sum.
    #[cube(launch_unchecked)]
    pub fn softmax_rows_cube<F: Float + CubeElement>(
        input: &Tensor<F>,
        output: &mut Array<F>,
        labels: &Array<i32>,
        scale: &Array<F>,
        scale_rows: u32,
        factor: F,
        in_offset: u32,
        rows: u32,
        row_len: u32,
        #[comptime] mode: SoftmaxMode,
        #[comptime] block: u32,
    ) {
        let row = CUBE_POS;
        if row < rows as usize {
            let mut shared = SharedMemory::<F>::new(block as usize);
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let step = input.stride(input.rank() - 1);
            let u = UNIT_POS as usize;

            let mut m = neg_infinity::<F>();
            let mut j = UNIT_POS;
            while j < row_len {
                let x = input[base + j as usize * step];
                m = select(x > m || is_nan::<F>(x), x, m);
                j += block;
            }
            shared[u] = m;
            sync_cube();
            let mut s = (block / 2).runtime();
            while s > 0 {
                if UNIT_POS < s {
                    let a = shared[u];
                    let b = shared[u + s as usize];
                    shared[u] = select(b > a || is_nan::<F>(b), b, a);
                }
                sync_cube();
                s /= 2;
            }
            let m = safe_shift::<F>(shared[0]);
            sync_cube();

            let mut sum = F::new(0.0);
            let mut j = UNIT_POS;
            while j < row_len {
                sum += (input[base + j as usize * step] - m).exp();
                j += block;
            }
            let sum = cube_sum::<F>(sum, &mut shared, block);
            write_row::<F>(
                input, output, labels, scale, scale_rows, factor, base, step, row, row_len,
                UNIT_POS, block, m, sum, mode,
            );
        }
    }

    /// Mean cross-entropy and accuracy of each group of `rows` consecutive rows (one group per
    /// stacked replica; one cube of `block` units per group, unit `u` taking rows `u, u + block, …`
    /// with the passes of [`softmax_rows_unit`]): `out[g] = (1/rows) Σ ℓ_r` and
    /// `out[groups + g] = (1/rows) Σ [argmax_r = label_r]` (the first maximum; a NaN counts as it).
    #[cube(launch_unchecked)]
    pub fn cross_entropy_mean<F: Float>(
        input: &Tensor<F>,
        labels: &Array<i32>,
        out: &mut Array<F>,
        in_offset: u32,
        rows: u32,
        row_len: u32,
        #[comptime] block: u32,
    ) {
        let group = CUBE_POS_X as usize;
        let mut shared = SharedMemory::<F>::new(block as usize);
        let step = input.stride(input.rank() - 1);
        let mut loss = F::new(0.0);
        let mut hits = F::new(0.0);
        let mut r = UNIT_POS;
        while r < rows {
            let row = group * rows as usize + r as usize;
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let mut m = neg_infinity::<F>();
            let mut best = input[base];
            let mut at = 0u32;
            for j in 0..row_len {
                let x = input[base + j as usize * step];
                m = select(x > m || is_nan::<F>(x), x, m);
                if j > 0 && !is_nan::<F>(best) && (x > best || is_nan::<F>(x)) {
                    best = x;
                    at = j;
                }
            }
            let m = safe_shift::<F>(m);
            let mut sum = F::new(0.0);
            for j in 0..row_len {
                sum += (input[base + j as usize * step] - m).exp();
            }
            let label = labels[row];
            let safe = select(label >= 0 && (label as u32) < row_len, label as u32, 0);
            loss += m + sum.ln() - input[base + safe as usize * step];
            hits += select(label == at as i32, F::new(1.0), F::new(0.0));
            r += block;
        }
        let loss = cube_sum::<F>(loss, &mut shared, block);
        let hits = cube_sum::<F>(hits, &mut shared, block);
        if UNIT_POS == 0 {
            let n = F::cast_from(rows);
            out[group] = loss / n;
            out[CUBE_COUNT_X as usize + group] = hits / n;
        }
    }
}
