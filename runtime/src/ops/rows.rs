//! Reduction geometry shared by reductions and the softmax family: move the reduced axis last (a
//! view, no copy) so the kernels see `rows × row_len`.

use crate::error::{Error, Result};
use crate::shape::normalize_axis;
use crate::tensor::Tensor;
use std::cell::Cell;

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
        let rows = view.shape()[..t.rank() - 1].iter().product();
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

    /// The cube size for one cube per row, or `None` for one unit per row.
    ///
    /// GPUs want a cube per long row (coalesced loads, a shared-memory tree). A CPU device runs a
    /// cube on one core and pays for every barrier, so it takes one unit per row whenever there are
    /// rows enough to fill the cores (measured on lavapipe, 4096 rows of 1024: 3.2 GB/s per unit,
    /// 0.26 GB/s with cubes of 256).
    pub fn cube_block(&self) -> Option<u32> {
        if let Some(forced) = FORCED_ROW_KERNEL.with(Cell::get) {
            return forced;
        }
        let unit_stride = self.view.strides().last() == Some(&1);
        if self.view.device().is_cpu() {
            return (self.rows < 64 && self.row_len >= 4096).then_some(32);
        }
        match self.row_len {
            n if n >= 1024 => Some(256),
            n if n >= 128 && (unit_stride || self.rows <= 2048) => Some(64),
            _ => None,
        }
    }
}

thread_local! {
    static FORCED_ROW_KERNEL: Cell<Option<Option<u32>>> = const { Cell::new(None) };
}

/// Runs `f` with every row kernel (reductions, softmax family) on this thread launched as one unit
/// per row (`block = None`) or one cube of `block` units per row, whatever the heuristic would pick.
/// For tests that must cover every launch shape on any device.
pub fn with_row_kernel<T>(block: Option<u32>, f: impl FnOnce() -> T) -> Result<T> {
    if let Some(b) = block {
        if !b.is_power_of_two() || b > 1024 {
            return Err(Error::value(
                "with_row_kernel",
                format!("block {b}"),
                "a power of two up to 1024",
            ));
        }
    }
    let previous = FORCED_ROW_KERNEL.with(|c| c.replace(Some(block)));
    let out = f();
    FORCED_ROW_KERNEL.with(|c| c.set(previous));
    Ok(out)
}
