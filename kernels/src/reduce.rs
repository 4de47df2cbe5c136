//! Reductions of one axis. The launcher passes a view whose last dimension is the reduced axis (a
//! permutation, no copy); row `r` of that view is reduced to `values[r]` (and `indices[r]` for the arg
//! ops). Two launch shapes: one unit per row with a serial loop (short or strided rows), and one cube
//! per row with a strided loop and a shared-memory tree (long rows).
//!
//! `max`/`min` propagate NaN; `argmax`/`argmin` return the first index of the extreme value (of the
//! first NaN if any), as PyTorch does. Sums are accumulated in the element type.

use crate::layout::strided_offset;
use crate::num::{infinity, is_nan, neg_infinity};
use cubecl::prelude::*;

/// The reduction applied to each row.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum ReduceOp {
    /// Sum of the row.
    Sum,
    /// Sum of the squares of the row (the squared 2-norm).
    SumSquares,
    /// Maximum (NaN propagates).
    Max,
    /// Minimum (NaN propagates).
    Min,
    /// Index of the first maximum (of the first NaN if any), written to `indices`.
    ArgMax,
    /// Index of the first minimum (of the first NaN if any), written to `indices`.
    ArgMin,
}

const NO_INDEX: i32 = i32::MAX;

#[cube]
fn identity<F: Float>(#[comptime] op: ReduceOp) -> F {
    match op {
        ReduceOp::Sum | ReduceOp::SumSquares => F::new(0.0),
        ReduceOp::Max | ReduceOp::ArgMax => neg_infinity::<F>(),
        ReduceOp::Min | ReduceOp::ArgMin => infinity::<F>(),
    }
}

/// Whether candidate `(vb, ib)` replaces the running `(va, ia)` for a max/min-type op.
#[cube]
fn takes_over<F: Float>(va: F, ia: i32, vb: F, ib: i32, #[comptime] is_max: bool) -> bool {
    let a_nan = is_nan::<F>(va);
    let b_nan = is_nan::<F>(vb);
    let better = if is_max { vb > va } else { vb < va };
    let tie = vb == va || (a_nan && b_nan);
    (better && !a_nan) || (tie && ib < ia) || (b_nan && !a_nan)
}

/// Combines the running `(va, ia)` with `(vb, ib)`.
#[cube]
fn combine<F: Float>(va: F, ia: i32, vb: F, ib: i32, #[comptime] op: ReduceOp) -> (F, i32) {
    match op {
        ReduceOp::Sum | ReduceOp::SumSquares => (va + vb, ia),
        ReduceOp::Max | ReduceOp::ArgMax => {
            let take = takes_over::<F>(va, ia, vb, ib, true);
            (select(take, vb, va), select(take, ib, ia))
        }
        ReduceOp::Min | ReduceOp::ArgMin => {
            let take = takes_over::<F>(va, ia, vb, ib, false);
            (select(take, vb, va), select(take, ib, ia))
        }
    }
}

/// An element as the reduction reads it: squared for `SumSquares`, as is otherwise.
#[cube]
fn load<F: Float>(x: F, #[comptime] op: ReduceOp) -> F {
    match op {
        ReduceOp::SumSquares => x * x,
        _ => x,
    }
}

#[cube]
fn write_result<F: Float>(
    values: &mut Array<F>,
    indices: &mut Array<i32>,
    row: usize,
    v: F,
    i: i32,
    #[comptime] op: ReduceOp,
) {
    values[row] = v;
    match op {
        ReduceOp::ArgMax | ReduceOp::ArgMin => {
            indices[row] = i;
        }
        _ => {}
    }
}

pub use kernels::*;

// `#[cube]` and `#[derive(CubeType)]` emit public items beside each kernel (its launcher module,
// `…Expand`/`…Launch` types) that take no doc attributes; the lint is allowed on this module only.
#[allow(missing_docs)]
mod kernels {
    use super::*;

    /// One unit per row.
    #[cube(launch_unchecked)]
    pub fn reduce_rows_unit<F: Float>(
        input: &Tensor<F>,
        values: &mut Array<F>,
        indices: &mut Array<i32>,
        in_offset: u32,
        row_len: u32,
        #[comptime] op: ReduceOp,
    ) {
        let row = ABSOLUTE_POS;
        if row < values.len() {
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let step = input.stride(input.rank() - 1);
            let mut acc = identity::<F>(op);
            let mut acc_i = NO_INDEX.runtime();
            for j in 0..row_len {
                let v = load::<F>(input[base + j as usize * step], op);
                let (a, ai) = combine::<F>(acc, acc_i, v, j as i32, op);
                acc = a;
                acc_i = ai;
            }
            write_result::<F>(values, indices, row, acc, acc_i, op);
        }
    }

    /// One cube of `block` units per row (`block` a power of two).
    #[cube(launch_unchecked)]
    pub fn reduce_rows_cube<F: Float>(
        input: &Tensor<F>,
        values: &mut Array<F>,
        indices: &mut Array<i32>,
        in_offset: u32,
        row_len: u32,
        #[comptime] op: ReduceOp,
        #[comptime] block: u32,
    ) {
        let row = CUBE_POS;
        if row < values.len() {
            let mut shared_v = SharedMemory::<F>::new(block as usize);
            let mut shared_i = SharedMemory::<i32>::new(block as usize);
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let step = input.stride(input.rank() - 1);
            let mut acc = identity::<F>(op);
            let mut acc_i = NO_INDEX.runtime();
            let mut j = UNIT_POS;
            while j < row_len {
                let v = load::<F>(input[base + j as usize * step], op);
                let (a, ai) = combine::<F>(acc, acc_i, v, j as i32, op);
                acc = a;
                acc_i = ai;
                j += block;
            }
            let u = UNIT_POS as usize;
            shared_v[u] = acc;
            shared_i[u] = acc_i;
            sync_cube();
            let mut stride = (block / 2).runtime();
            while stride > 0 {
                if UNIT_POS < stride {
                    let other = u + stride as usize;
                    let (a, ai) = combine::<F>(
                        shared_v[u],
                        shared_i[u],
                        shared_v[other],
                        shared_i[other],
                        op,
                    );
                    shared_v[u] = a;
                    shared_i[u] = ai;
                }
                sync_cube();
                stride /= 2;
            }
            if UNIT_POS == 0 {
                write_result::<F>(values, indices, row, shared_v[0], shared_i[0], op);
            }
        }
    }

    /// The mean ℓ2 norm of the rows of each group of `rows` consecutive rows (one group per
    /// stacked replica): one cube of `block` units per group, unit `u` taking rows
    /// `u, u + block, …`; `out[g] = (1/rows) Σ_r √(Σ_j x_rj²)`.
    #[cube(launch_unchecked)]
    pub fn mean_row_norm<F: Float>(
        input: &Tensor<F>,
        out: &mut Array<F>,
        in_offset: u32,
        rows: u32,
        row_len: u32,
        #[comptime] block: u32,
    ) {
        let group = CUBE_POS_X as usize;
        let mut shared = SharedMemory::<F>::new(block as usize);
        let step = input.stride(input.rank() - 1);
        let mut total = F::new(0.0);
        let mut r = UNIT_POS;
        while r < rows {
            let row = group * rows as usize + r as usize;
            let base = strided_offset::<F>(input, in_offset, row * row_len as usize);
            let mut squares = F::new(0.0);
            for j in 0..row_len {
                let x = input[base + j as usize * step];
                squares += x * x;
            }
            total += F::sqrt(squares);
            r += block;
        }
        let total = cube_sum::<F>(total, &mut shared, block);
        if UNIT_POS == 0 {
            out[group] = total / F::cast_from(rows);
        }
    }

    /// The sum of every unit's `partial` over a cube of `block` (a power of two) units, through a
    /// shared-memory tree; every unit gets it, and `shared` is free again on return.
    #[cube]
    pub(crate) fn cube_sum<F: Float>(
        partial: F,
        shared: &mut SharedMemory<F>,
        #[comptime] block: u32,
    ) -> F {
        cube_tree::<F>(partial, shared, block, false)
    }

    /// The largest `partial` over a cube of `block` units, as [`cube_sum`].
    #[cube]
    pub(crate) fn cube_max<F: Float>(
        partial: F,
        shared: &mut SharedMemory<F>,
        #[comptime] block: u32,
    ) -> F {
        cube_tree::<F>(partial, shared, block, true)
    }

    /// The shared-memory tree of [`cube_sum`] (`max` off) and [`cube_max`] (`max` on).
    #[cube]
    fn cube_tree<F: Float>(
        partial: F,
        shared: &mut SharedMemory<F>,
        #[comptime] block: u32,
        #[comptime] max: bool,
    ) -> F {
        let u = UNIT_POS as usize;
        shared[u] = partial;
        sync_cube();
        let mut s = (block / 2).runtime();
        while s > 0 {
            if UNIT_POS < s {
                if max {
                    shared[u] = F::max(shared[u], shared[u + s as usize]);
                } else {
                    shared[u] = shared[u] + shared[u + s as usize];
                }
            }
            sync_cube();
            s /= 2;
        }
        let total = shared[0];
        sync_cube();
        total
    }
}
