//! The softmax family along an axis: softmax, log_softmax, logsumexp and the fused cross-entropy of
//! integer labels (see `dynlab_kernels::softmax` for the equations).

use super::rows::Rows;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{grid, launch, units_grid};
use crate::tensor::Tensor;
use cubecl::prelude::*;
use dynlab_kernels::softmax::{softmax_rows_cube, softmax_rows_unit, SoftmaxMode};

impl Tensor {
    /// Runs a softmax-family row kernel over `axis`. Softmax/LogSoftmax return the input's shape;
    /// LogSumExp/CrossEntropy return one value per row, shape `[rows]`.
    pub(crate) fn row_kernel(
        &self,
        op: &'static str,
        axis: isize,
        mode: SoftmaxMode,
        labels: Option<&Tensor>,
    ) -> Result<Tensor> {
        self.expect_f32(op)?;
        let rows = Rows::new(op, self, axis)?;
        let per_row = matches!(mode, SoftmaxMode::LogSumExp | SoftmaxMode::CrossEntropy);
        let out_shape = if per_row {
            vec![rows.rows]
        } else {
            rows.view.shape().to_vec()
        };
        let out = Tensor::alloc(op, &out_shape, DType::F32, &self.device)?;
        let dummy;
        let labels = match labels {
            Some(l) => l,
            None => {
                dummy = Tensor::from_slice(&[0i32], &[1], &self.device)?;
                &dummy
            }
        };
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
        self.row_kernel("Tensor::softmax", axis, SoftmaxMode::Softmax, None)
    }

    /// `x - logsumexp(x)` along `axis`.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        self.row_kernel("Tensor::log_softmax", axis, SoftmaxMode::LogSoftmax, None)
    }

    /// Per-sample cross-entropy `logsumexp(logits_i) - logits_i[label_i]` of `[N, C]` logits and
    /// `[N]` i32 labels in `0..C`.
    pub fn cross_entropy_per_sample(&self, labels: &Tensor) -> Result<Tensor> {
        let op = "Tensor::cross_entropy";
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
        super::index::check_indices(op, labels, self.shape()[1])?;
        self.row_kernel(
            op,
            1,
            SoftmaxMode::CrossEntropy,
            Some(&labels.contiguous_from_zero()?),
        )
    }

    /// Mean cross-entropy over the batch (a 0-dimensional tensor).
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Tensor> {
        self.cross_entropy_per_sample(labels)?.mean_all()
    }
}
