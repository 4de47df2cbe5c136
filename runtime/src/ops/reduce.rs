//! Reductions along an axis (with keepdim) and over all elements: sum, mean, max, min, argmax,
//! argmin, var (biased or unbiased), p-norms and logsumexp.
//!
//! `var(x) = Σ (x_i − x̄)² / (n − δ)` with `δ = 1` when unbiased (two passes, so no cancellation);
//! `‖x‖_p = (Σ |x_i|^p)^{1/p}`, `‖x‖_∞ = max |x_i|`, `‖x‖_{-∞} = min |x_i|`, `‖x‖_0 = #{x_i ≠ 0}`.

use super::rows::Rows;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{grid, launch, units_grid};
use crate::tensor::Tensor;
use cubecl::prelude::*;
use dynlab_kernels::multi::SUM_BLOCK;
use dynlab_kernels::reduce::{mean_row_norm, reduce_rows_cube, reduce_rows_unit, ReduceOp};
use dynlab_kernels::softmax::SoftmaxMode;

/// Row length of the first stage of whole-tensor reductions.
const CHUNK: usize = 4096;

fn var_denominator(n: usize, unbiased: bool) -> f32 {
    n as f32 - if unbiased { 1.0 } else { 0.0 }
}

impl Tensor {
    /// Runs `kind` over `axis`; returns (values, indices) shaped like the reduced input.
    fn reduce(
        &self,
        op: &'static str,
        axis: isize,
        keepdim: bool,
        kind: ReduceOp,
    ) -> Result<(Tensor, Tensor)> {
        self.expect_f32(op)?;
        let rows = Rows::new(op, self, axis)?;
        let sums = matches!(kind, ReduceOp::Sum | ReduceOp::SumSquares);
        if rows.row_len == 0 && !sums && rows.rows > 0 {
            return Err(Error::shape(
                op,
                format!("an empty axis {} in {:?}", rows.axis, self.shape),
                "a non-empty axis (the extreme of no values is undefined)",
            ));
        }
        let values = Tensor::alloc(op, &[rows.rows], DType::F32, &self.device)?;
        let is_arg = matches!(kind, ReduceOp::ArgMax | ReduceOp::ArgMin);
        let indices = Tensor::alloc(
            op,
            &[if is_arg { rows.rows } else { 1 }],
            DType::I32,
            &self.device,
        )?;
        if rows.rows > 0 {
            let (view, off, len) = (&rows.view, rows.view.offset_u32(), rows.row_len as u32);
            match rows.cube_block() {
                Some(block) => launch!(
                    self.device,
                    reduce_rows_cube::<f32>,
                    grid(rows.rows),
                    CubeDim::new_1d(block),
                    view.view_arg(),
                    values.buffer_arg(),
                    indices.buffer_arg(),
                    off,
                    len,
                    kind,
                    block
                ),
                None => {
                    let (count, dim) = units_grid(rows.rows);
                    launch!(
                        self.device,
                        reduce_rows_unit::<f32>,
                        count,
                        dim,
                        view.view_arg(),
                        values.buffer_arg(),
                        indices.buffer_arg(),
                        off,
                        len,
                        kind
                    )
                }
            }
        }
        let shape = rows.reduced_shape(&self.shape, keepdim);
        let indices = if is_arg {
            indices.reshape(&shape)?
        } else {
            indices
        };
        Ok((values.reshape(&shape)?, indices))
    }

    /// Reduces every element. Long inputs go in two stages: rows of [`CHUNK`] reduced in parallel,
    /// then their partials (and the remainder) reduced again, so no single unit or cube walks the
    /// whole tensor. Arg ops stay single-stage (their flat index must survive).
    fn reduce_all(&self, op: &'static str, kind: ReduceOp) -> Result<Tensor> {
        self.expect_f32(op)?;
        let flat = self.reshape(&[-1])?;
        let n = flat.numel();
        let is_arg = matches!(kind, ReduceOp::ArgMax | ReduceOp::ArgMin);
        if is_arg || n < 2 * CHUNK {
            let (values, indices) = flat.reduce(op, 0, false, kind)?;
            return Ok(if is_arg { indices } else { values });
        }
        let k = n / CHUNK;
        let head = flat
            .narrow(0, 0, k * CHUNK)?
            .reshape(&[k as isize, CHUNK as isize])?;
        let partials = head.reduce(op, 1, false, kind)?.0;
        let tail = flat.narrow(0, k * CHUNK, n - k * CHUNK)?;
        // The partials are already squared: the second stage adds them.
        let rest = if kind == ReduceOp::SumSquares {
            Tensor::cat(&[&partials, &tail.square()?], 0)?
        } else {
            Tensor::cat(&[&partials, &tail], 0)?
        };
        let second = if kind == ReduceOp::SumSquares {
            ReduceOp::Sum
        } else {
            kind
        };
        rest.reduce_all(op, second)
    }

    /// Sum along `axis` (negative counts from the end); `keepdim` keeps it as size 1.
    pub fn sum(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.reduce("Tensor::sum", axis, keepdim, ReduceOp::Sum)?.0)
    }

    /// Sum of every element, as a 0-d tensor (two stages past 4096 elements).
    pub fn sum_all(&self) -> Result<Tensor> {
        self.reduce_all("Tensor::sum_all", ReduceOp::Sum)
    }

    /// Mean along `axis`: the sum times `1/n`.
    pub fn mean(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.expect_f32("Tensor::mean")?;
        let n = self.axis_len("Tensor::mean", axis)?;
        self.sum(axis, keepdim)?.mul_scalar(1.0 / n as f32)
    }

    /// Mean of every element, as a 0-d tensor.
    pub fn mean_all(&self) -> Result<Tensor> {
        self.expect_f32("Tensor::mean_all")?;
        self.sum_all()?.mul_scalar(1.0 / self.numel() as f32)
    }

    /// Maximum along `axis`; NaN propagates (an error on an empty axis).
    pub fn max(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.reduce("Tensor::max", axis, keepdim, ReduceOp::Max)?.0)
    }

    /// Maximum of every element (NaN propagates), as a 0-d tensor.
    pub fn max_all(&self) -> Result<Tensor> {
        self.reduce_all("Tensor::max_all", ReduceOp::Max)
    }

    /// Minimum along `axis`; NaN propagates (an error on an empty axis).
    pub fn min(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self.reduce("Tensor::min", axis, keepdim, ReduceOp::Min)?.0)
    }

    /// Minimum of every element (NaN propagates), as a 0-d tensor.
    pub fn min_all(&self) -> Result<Tensor> {
        self.reduce_all("Tensor::min_all", ReduceOp::Min)
    }

    /// Index (i32) of the first maximum along `axis`; NaN counts as the maximum.
    pub fn argmax(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self
            .reduce("Tensor::argmax", axis, keepdim, ReduceOp::ArgMax)?
            .1)
    }

    /// Flat index (i32) of the first maximum.
    pub fn argmax_all(&self) -> Result<Tensor> {
        self.reduce_all("Tensor::argmax_all", ReduceOp::ArgMax)
    }

    /// Index (i32) of the first minimum along `axis`; NaN counts as the minimum.
    pub fn argmin(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        Ok(self
            .reduce("Tensor::argmin", axis, keepdim, ReduceOp::ArgMin)?
            .1)
    }

    /// Flat index (i32) of the first minimum.
    pub fn argmin_all(&self) -> Result<Tensor> {
        self.reduce_all("Tensor::argmin_all", ReduceOp::ArgMin)
    }

    /// Variance along `axis`; `unbiased` divides by `n - 1` (NaN when `n - 1 = 0`).
    pub fn var(&self, axis: isize, unbiased: bool, keepdim: bool) -> Result<Tensor> {
        self.expect_f32("Tensor::var")?;
        let n = self.axis_len("Tensor::var", axis)?;
        let centered = self.sub(&self.mean(axis, true)?)?;
        centered
            .square()?
            .sum(axis, keepdim)?
            .div_scalar(var_denominator(n, unbiased))
    }

    /// Variance of every element (two passes); `unbiased` divides by `n - 1`.
    pub fn var_all(&self, unbiased: bool) -> Result<Tensor> {
        self.expect_f32("Tensor::var_all")?;
        let centered = self.sub(&self.mean_all()?)?;
        centered
            .square()?
            .sum_all()?
            .div_scalar(var_denominator(self.numel(), unbiased))
    }

    /// p-norm along `axis` (`p` may be `f32::INFINITY`, `-INFINITY` or 0).
    pub fn norm(&self, p: f32, axis: isize, keepdim: bool) -> Result<Tensor> {
        self.norm_with(p, |t, kind| {
            Ok(t.reduce("Tensor::norm", axis, keepdim, kind)?.0)
        })
    }

    /// p-norm of every element (`p` may be `f32::INFINITY`, `-INFINITY` or 0).
    pub fn norm_all(&self, p: f32) -> Result<Tensor> {
        self.norm_with(p, |t, kind| t.reduce_all("Tensor::norm_all", kind))
    }

    /// A p-norm given the reduction to apply (along an axis or over everything).
    fn norm_with(
        &self,
        p: f32,
        reduce: impl Fn(&Tensor, ReduceOp) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if p.is_nan() {
            return Err(Error::value("Tensor::norm", "p = NaN", "a real p or ±inf"));
        }
        if p == 2.0 {
            return reduce(self, ReduceOp::SumSquares)?.sqrt();
        }
        let abs = self.abs()?;
        match p {
            f32::INFINITY => reduce(&abs, ReduceOp::Max),
            f32::NEG_INFINITY => reduce(&abs, ReduceOp::Min),
            0.0 => reduce(&abs.ne_scalar(0.0)?, ReduceOp::Sum),
            1.0 => reduce(&abs, ReduceOp::Sum),
            p => reduce(&abs.powf(p)?, ReduceOp::Sum)?.powf(1.0 / p),
        }
    }

    /// The mean ℓ2 norm of the rows of `[G·n, d]` (a representation's mean row norm) over each of
    /// `groups = G` groups of `n` consecutive rows (stacked replicas; 1: all rows): `[G]`, or `[]`
    /// for one group; NaN for groups without rows. One launch (a cube per group).
    pub fn mean_row_norm(&self, groups: usize) -> Result<Tensor> {
        let op = "Tensor::mean_row_norm";
        self.expect_f32(op)?;
        let rows = self.shape().first().copied().unwrap_or(0);
        if self.rank() != 2
            || groups == 0
            || !rows.is_multiple_of(groups)
            || groups > u32::MAX as usize
        {
            return Err(Error::shape(
                op,
                format!("{:?} in {groups} group(s)", self.shape()),
                "rows [G·n, d] in G ≥ 1 groups of the same size",
            ));
        }
        let shape: &[usize] = if groups == 1 { &[] } else { &[groups] };
        let n = rows / groups;
        if n == 0 {
            return Tensor::full(shape, f32::NAN, &self.device);
        }
        let out = Tensor::alloc(op, shape, DType::F32, &self.device)?;
        launch!(
            self.device,
            mean_row_norm::<f32>,
            CubeCount::Static(groups as u32, 1, 1),
            CubeDim::new_1d(SUM_BLOCK),
            self.view_arg(),
            out.buffer_arg(),
            self.offset_u32(),
            n as u32,
            self.shape()[1] as u32,
            SUM_BLOCK
        );
        Ok(out)
    }

    /// `ln Σ exp(x)` along `axis`, stable for large inputs; `-inf` for an all `-inf` (or empty) row.
    pub fn logsumexp(&self, axis: isize, keepdim: bool) -> Result<Tensor> {
        let rows = Rows::new("Tensor::logsumexp", self, axis)?;
        let shape = rows.reduced_shape(&self.shape, keepdim);
        self.row_kernel(
            "Tensor::logsumexp",
            axis,
            SoftmaxMode::LogSumExp,
            None,
            None,
        )?
        .reshape(&shape)
    }

    fn axis_len(&self, op: &'static str, axis: isize) -> Result<usize> {
        Ok(self.shape[crate::shape::normalize_axis(op, axis, self.rank())?])
    }
}
