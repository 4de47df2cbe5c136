//! Fused layer normalisation over the last axis (Ba, Kiros & Hinton 2016, "Layer Normalization"):
//!
//! `μ = (1/D) Σ_j x_j`, `σ² = (1/D) Σ_j (x_j − μ)²` (two passes, no `E[x²] − μ²` cancellation),
//! `r = 1/√(σ² + ε)`, `x̂_j = (x_j − μ) r`, `y_j = x̂_j γ_j + β_j`.
//!
//! Backward with `ĝ_j = ∂L/∂y_j · γ_j`: `∂L/∂x_j = r (ĝ_j − mean(ĝ) − x̂_j mean(ĝ ⊙ x̂))`,
//! `∂L/∂γ_j = Σ_rows ∂L/∂y_j x̂_j`, `∂L/∂β_j = Σ_rows ∂L/∂y_j`.
//!
//! Rows are contiguous (`x[row·D + j]`). The row kernels run one unit per row (`block = 1`, the
//! choice on CPU devices) or one cube of `block` units per row with shared-memory sums; the forward
//! saves `(μ, r)` per row in `stats[row·2 ..]` for the backward.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::reduce::cube_sum;
use cubecl::prelude::*;

/// The row a unit works on, its first column and its column step.
#[cube]
fn row_position(#[comptime] block: u32) -> (usize, u32) {
    if comptime!(block == 1) {
        (ABSOLUTE_POS, 0u32)
    } else {
        (CUBE_POS, UNIT_POS)
    }
}

/// The sum over the row of every unit's `partial` (a shared-memory tree when `block > 1`).
#[cube]
fn row_total<F: Float>(partial: F, shared: &mut SharedMemory<F>, #[comptime] block: u32) -> F {
    if comptime!(block == 1) {
        partial
    } else {
        cube_sum::<F>(partial, shared, block)
    }
}

/// `y = x̂ γ + β` (or `x̂` without `affine`) and `stats = (μ, r)` per row.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward<F: Float + CubeElement>(
    x: &Array<F>,
    gamma: &Array<F>,
    beta: &Array<F>,
    y: &mut Array<F>,
    stats: &mut Array<F>,
    rows: u32,
    dim: u32,
    eps: F,
    #[comptime] affine: bool,
    #[comptime] block: u32,
) {
    let (row, first) = row_position(block);
    if row < rows as usize {
        let mut shared = SharedMemory::<F>::new(block as usize);
        let base = row * dim as usize;
        let count = F::cast_from(dim);
        let mut sum = F::new(0.0);
        let mut j = first;
        while j < dim {
            sum += x[base + j as usize];
            j += block;
        }
        let mean = row_total::<F>(sum, &mut shared, block) / count;
        let mut squares = F::new(0.0);
        let mut j = first;
        while j < dim {
            let d = x[base + j as usize] - mean;
            squares += d * d;
            j += block;
        }
        let var = row_total::<F>(squares, &mut shared, block) / count;
        let rstd = F::new(1.0) / (var + eps).sqrt();
        let mut j = first;
        while j < dim {
            let mut v = (x[base + j as usize] - mean) * rstd;
            if affine {
                v = v * gamma[j as usize] + beta[j as usize];
            }
            y[base + j as usize] = v;
            j += block;
        }
        if first == 0 {
            stats[row * 2] = mean;
            stats[row * 2 + 1] = rstd;
        }
    }
}

/// `dx = r (ĝ − mean(ĝ) − x̂ mean(ĝ ⊙ x̂))` per row, `ĝ = dy γ` (or `dy` without `affine`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward<F: Float>(
    dy: &Array<F>,
    x: &Array<F>,
    gamma: &Array<F>,
    stats: &Array<F>,
    dx: &mut Array<F>,
    rows: u32,
    dim: u32,
    #[comptime] affine: bool,
    #[comptime] block: u32,
) {
    let (row, first) = row_position(block);
    if row < rows as usize {
        let mut shared = SharedMemory::<F>::new(block as usize);
        let base = row * dim as usize;
        let (mean, rstd) = (stats[row * 2], stats[row * 2 + 1]);
        let count = F::cast_from(dim);
        let mut g_sum = F::new(0.0);
        let mut gx_sum = F::new(0.0);
        let mut j = first;
        while j < dim {
            let g = scaled_grad::<F>(dy, gamma, base, j, affine);
            g_sum += g;
            gx_sum += g * (x[base + j as usize] - mean) * rstd;
            j += block;
        }
        let g_mean = row_total::<F>(g_sum, &mut shared, block) / count;
        let gx_mean = row_total::<F>(gx_sum, &mut shared, block) / count;
        let mut j = first;
        while j < dim {
            let g = scaled_grad::<F>(dy, gamma, base, j, affine);
            let x_hat = (x[base + j as usize] - mean) * rstd;
            dx[base + j as usize] = rstd * (g - g_mean - x_hat * gx_mean);
            j += block;
        }
    }
}

/// `dy_j γ_j`, or `dy_j` without `affine`.
#[cube]
fn scaled_grad<F: Float>(
    dy: &Array<F>,
    gamma: &Array<F>,
    base: usize,
    j: u32,
    #[comptime] affine: bool,
) -> F {
    let g = dy[base + j as usize];
    if affine {
        g * gamma[j as usize]
    } else {
        g
    }
}

/// One unit per feature `j`: `dγ_j = Σ_rows dy x̂`, `dβ_j = Σ_rows dy` (a fixed summation order, so
/// results are deterministic).
#[cube(launch_unchecked)]
pub fn layer_norm_param_grads<F: Float>(
    dy: &Array<F>,
    x: &Array<F>,
    stats: &Array<F>,
    dgamma: &mut Array<F>,
    dbeta: &mut Array<F>,
    rows: u32,
    dim: u32,
) {
    let j = ABSOLUTE_POS;
    if j < dim as usize {
        let mut dg = F::new(0.0);
        let mut db = F::new(0.0);
        for row in 0..rows as usize {
            let at = row * dim as usize + j;
            let x_hat = (x[at] - stats[row * 2]) * stats[row * 2 + 1];
            dg += dy[at] * x_hat;
            db += dy[at];
        }
        dgamma[j] = dg;
        dbeta[j] = db;
    }
}
