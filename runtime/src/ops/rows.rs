//! Reduction geometry shared by reductions and the softmax family: move the reduced axis last (a
//! view, no copy) so the kernels see `rows × row_len`.

use crate::error::Result;
use crate::shape::normalize_axis;
use crate::tensor::Tensor;

pub(crate) struct Rows {
    /// The input with the reduced axis moved last.
    pub view: Tensor,
    pub axis: usize,
    pub rows: usize,
    pub row_len: usize,
}

impl Rows {
    pub fn new(op: &'static str, t: &Tensor, axis: isize) -> Result<Rows> {
        let axis = normalize_axis(op, axis, t.rank())?;
        let mut dims: Vec<usize> = (0..t.rank()).filter(|&d| d != axis).collect();
        dims.push(axis);
        let view = t.permute(&dims)?;
        let row_len = t.shape()[axis];
        let rows = t.numel().checked_div(row_len).unwrap_or_else(|| {
            t.shape()
                .iter()
                .enumerate()
                .filter(|&(d, _)| d != axis)
                .map(|(_, &s)| s)
                .product()
        });
        Ok(Rows {
            view,
            axis,
            rows,
            row_len,
        })
    }

    /// Shape of a per-row result: the input's shape without the axis, or with size 1 there.
    pub fn reduced_shape(&self, input_shape: &[usize], keepdim: bool) -> Vec<isize> {
        let mut shape: Vec<isize> = input_shape.iter().map(|&s| s as isize).collect();
        if keepdim {
            shape[self.axis] = 1;
        } else {
            shape.remove(self.axis);
        }
        shape
    }

    /// Permutation that takes the moved-last layout back to the input's dimension order.
    pub fn inverse_permutation(&self) -> Vec<usize> {
        let rank = self.view.rank();
        (0..rank)
            .map(|d| match d.cmp(&self.axis) {
                std::cmp::Ordering::Less => d,
                std::cmp::Ordering::Equal => rank - 1,
                std::cmp::Ordering::Greater => d - 1,
            })
            .collect()
    }

    /// Whether rows are long enough for one cube per row, and the cube's size.
    pub fn cube_block(&self) -> Option<u32> {
        let unit_stride = self.view.strides().last() == Some(&1);
        match self.row_len {
            n if n >= 1024 => Some(256),
            n if n >= 128 && (unit_stride || self.rows <= 2048) => Some(64),
            _ => None,
        }
    }
}
