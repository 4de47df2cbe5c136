//! The softmax family along an axis: softmax, log_softmax, logsumexp and the fused cross-entropy of
//! integer labels (see `dynlab_kernels::softmax` for the equations).

use super::rows::Rows;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{grid, launch, placeholder, units_grid};
use crate::tensor::Tensor;
use cubecl::prelude::*;
use dynlab_kernels::multi::SUM_BLOCK;
use dynlab_kernels::softmax::{
    cross_entropy_mean, softmax_rows_cube, softmax_rows_unit, SoftmaxMode,
};

/// How [`Tensor::row_kernel`] scales the cross-entropy gradient: `scale[r / rows] · factor`.
pub(crate) struct RowScale<'a> {
    scale: &'a Tensor,
    rows: u32,
    factor: f32,
}

impl Tensor {
    /// Runs a softmax-family row kernel over `axis`. Softmax, LogSoftmax and CrossEntropyGrad return
    /// the input's shape; LogSumExp, CrossEntropy and Correct one value per row, shape `[rows]`.
    /// `labels` (i32, one per row) and `scale` (f32, one per row) are read by the modes that use
    /// them.
    pub(crate) fn row_kernel(
        &self,
        op: &'static str,
        axis: isize,
        mode: SoftmaxMode,
        labels: Option<&Tensor>,
        scale: Option<RowScale>,
    ) -> Result<Tensor> {
        self.expect_f32(op)?;
        let rows = Rows::new(op, self, axis)?;
        let per_row = matches!(
            mode,
            SoftmaxMode::LogSumExp | SoftmaxMode::CrossEntropy | SoftmaxMode::Correct
        );
        let out_shape = if per_row {
            vec![rows.rows]
        } else {
            rows.view.shape().to_vec()
        };
        let out = Tensor::alloc(op, &out_shape, DType::F32, &self.device)?;
        // Modes that do not read the labels or the scales get any buffer of the right type.
        let labels_dummy;
        let labels = match labels {
            Some(l) => l,
            None => {
                labels_dummy = placeholder(&self.device, DType::I32)?;
                &labels_dummy
            }
        };
        let scale = scale.unwrap_or(RowScale {
            scale: self,
            rows: 1,
            factor: 1.0,
        });
        let (scale_rows, factor, scale) = (scale.rows, scale.factor, scale.scale);
        if rows.rows > 0 {
            let (view, off) = (&rows.view, rows.view.offset_u32());
            let (n_rows, len) = (rows.rows as u32, rows.row_len as u32);
            match rows.cube_block() {
                Some(block) => launch!(
                    self.device,
                    softmax_rows_cube::<f32>,
                    grid(rows.rows),
                    CubeDim::new_1d(block),
                    view.view_arg(),
                    out.buffer_arg(),
                    labels.buffer_arg(),
                    scale.buffer_arg(),
                    scale_rows,
                    factor,
                    off,
                    n_rows,
                    len,
                    mode,
                    block
                ),
                None => {
                    let (count, dim) = units_grid(rows.rows);
                    launch!(
                        self.device,
                        softmax_rows_unit::<f32>,
                        count,
                        dim,
                        view.view_arg(),
                        out.buffer_arg(),
                        labels.buffer_arg(),
                        scale.buffer_arg(),
                        scale_rows,
                        factor,
                        off,
                        n_rows,
                        len,
                        mode
                    )
                }
            }
        }
        if per_row {
            Ok(out)
        } else {
            out.permute(&rows.inverse_permutation())
        }
    }

    /// `exp(x - max) / Σ exp(x - max)` along `axis`.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        self.row_kernel("Tensor::softmax", axis, SoftmaxMode::Softmax, None, None)
    }

    /// `x - logsumexp(x)` along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.row_kernel(
            "Tensor::log_softmax",
            axis,
            SoftmaxMode::LogSoftmax,
            None,
            None,
        )
    }

    /// Per-sample cross-entropy `logsumexp(logits_i) - logits_i[label_i]` of `[N, C]` logits and
    /// `[N]` i32 labels in `0..C`.
    pub fn cross_entropy_per_sample(&self, labels: &Tensor) -> Result<Tensor> {
        let op = "Tensor::cross_entropy";
        self.check_logits(op, labels)?;
        self.row_kernel(
            op,
            1,
            SoftmaxMode::CrossEntropy,
            Some(&labels.contiguous_from_zero()?),
            None,
        )
    }

    /// The gradient of the per-sample cross-entropy for upstream gradients `grad [N]`:
    /// `(softmax(logits) − onehot(labels)) · grad[:, None]`, `[N, C]`, in one pass.
    pub fn cross_entropy_backward(&self, labels: &Tensor, grad: &Tensor) -> Result<Tensor> {
        let op = "Tensor::cross_entropy_backward";
        self.check_logits(op, labels)?;
        if grad.shape() != [self.shape()[0]] {
            return Err(Error::shape(
                op,
                format!("gradient {:?} for logits {:?}", grad.shape(), self.shape()),
                "one gradient per row [N]",
            ));
        }
        grad.expect_f32(op)?;
        let scale = RowScale {
            scale: &grad.contiguous_from_zero()?,
            rows: 1,
            factor: 1.0,
        };
        self.row_kernel(
            op,
            1,
            SoftmaxMode::CrossEntropyGrad,
            Some(&labels.contiguous_from_zero()?),
            Some(scale),
        )
    }

    /// Mean cross-entropy and accuracy of `[G·n, C]` logits and `[G·n]` labels over each of
    /// `groups = G` groups of `n` consecutive rows (stacked replicas; 1 for one batch): `[2, G]`,
    /// the means of the losses in row 0 and the fractions of rows whose first maximum is the
    /// label in row 1. One launch (a cube per group).
    pub fn cross_entropy_mean(&self, labels: &Tensor, groups: usize) -> Result<Tensor> {
        let op = "Tensor::cross_entropy_mean";
        let n = self.check_groups(op, labels, groups)?;
        if n == 0 {
            // The mean of no rows, as PyTorch gives it.
            return Tensor::full(&[2, groups], f32::NAN, &self.device);
        }
        let out = Tensor::alloc(op, &[2, groups], DType::F32, &self.device)?;
        let (c, labels) = (self.shape()[1] as u32, labels.contiguous_from_zero()?);
        launch!(
            self.device,
            cross_entropy_mean::<f32>,
            CubeCount::Static(groups as u32, 1, 1),
            CubeDim::new_1d(SUM_BLOCK),
            self.view_arg(),
            labels.buffer_arg(),
            out.buffer_arg(),
            self.offset_u32(),
            n as u32,
            c,
            SUM_BLOCK
        );
        Ok(out)
    }

    /// The gradient of [`Tensor::cross_entropy_mean`]'s losses for upstream gradients `grad` (one
    /// per group: `[G]`, or `[]` for one group): `(softmax − onehot) · grad[g] / n` in one pass.
    pub fn cross_entropy_mean_backward(
        &self,
        labels: &Tensor,
        grad: &Tensor,
        groups: usize,
    ) -> Result<Tensor> {
        let op = "Tensor::cross_entropy_mean_backward";
        let n = self.check_groups(op, labels, groups)?;
        if grad.numel() != groups || grad.rank() > 1 {
            return Err(Error::shape(
                op,
                format!("gradient {:?} for {groups} group(s)", grad.shape()),
                "one gradient per group ([G], or [] for one)",
            ));
        }
        grad.expect_f32(op)?;
        let scale = RowScale {
            scale: &grad.contiguous_from_zero()?,
            rows: n.max(1) as u32,
            factor: 1.0 / n.max(1) as f32,
        };
        self.row_kernel(
            op,
            1,
            SoftmaxMode::CrossEntropyGrad,
            Some(&labels.contiguous_from_zero()?),
            Some(scale),
        )
    }

    /// Checks logits and labels for `groups` equal groups of rows; the rows per group.
    fn check_groups(&self, op: &'static str, labels: &Tensor, groups: usize) -> Result<usize> {
        self.check_logits(op, labels)?;
        let rows = self.shape()[0];
        if groups == 0 || !rows.is_multiple_of(groups) || groups > u32::MAX as usize {
            return Err(Error::shape(
                op,
                format!("{rows} rows in {groups} group(s)"),
                "at least one group, all of the same size",
            ));
        }
        Ok(rows / groups)
    }

    /// 1 for each row of `[N, C]` logits whose first maximum (a NaN counts as the maximum) is at
    /// its label, else 0: `argmax(logits) == labels` as f32 `[N]`, in one pass.
    pub fn correct(&self, labels: &Tensor) -> Result<Tensor> {
        let op = "Tensor::correct";
        self.check_logits(op, labels)?;
        self.row_kernel(
            op,
            1,
            SoftmaxMode::Correct,
            Some(&labels.contiguous_from_zero()?),
            None,
        )
    }

    /// Checks `[N, C]` logits against `[N]` i32 labels in `0..C`.
    fn check_logits(&self, op: &'static str, labels: &Tensor) -> Result<()> {
        if self.rank() != 2 || labels.rank() != 1 || labels.shape()[0] != self.shape()[0] {
            return Err(Error::shape(
                op,
                format!("logits {:?} and labels {:?}", self.shape(), labels.shape()),
                "logits [N, C] and labels [N]",
            ));
        }
        if labels.dtype() != DType::I32 {
            return Err(Error::dtype(op, labels.dtype(), "i32 labels"));
        }
        self.expect_same_device(op, labels)?;
        super::index::check_indices(op, labels, self.shape()[1])
    }

    /// Mean cross-entropy over the batch (a 0-dimensional tensor).
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Tensor> {
        self.cross_entropy_per_sample(labels)?.mean_all()
    }
}
