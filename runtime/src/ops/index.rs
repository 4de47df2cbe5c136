//! Indexing: `gather`, `index_select`, deterministic `scatter_add`, `one_hot`. Index tensors are i32;
//! their values are checked on the host (one read-back) so an out-of-range index is an error, never
//! an out-of-bounds access.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::shape::{check_shape, normalize_axis};
use crate::tensor::Tensor;
use dynlab_kernels::index::{gather, scatter_add};

/// Errors unless every value of the i32 tensor `index` lies in `0..bound`.
pub(crate) fn check_indices(op: &'static str, index: &Tensor, bound: usize) -> Result<()> {
    if index.dtype() != DType::I32 {
        return Err(Error::dtype(op, index.dtype(), "i32 indices"));
    }
    // The buffer's known range settles it without a read-back (the usual case: labels uploaded
    // once, and batches gathered from them).
    if let Some((lo, hi)) = index.known_range() {
        if lo >= 0 && (hi as usize) < bound || index.numel() == 0 {
            return Ok(());
        }
    }
    let values = index.to_vec::<i32>()?;
    index.set_range(values.iter().copied().fold(None, widen));
    match values.iter().position(|&v| v < 0 || v as usize >= bound) {
        None => Ok(()),
        Some(pos) => Err(Error::value(
            op,
            format!("index {} at flat position {pos}", values[pos]),
            format!("indices in 0..{bound}"),
        )),
    }
}

/// `range` widened by `v` (a fold over values gives their smallest and largest).
pub(crate) fn widen(range: Option<(i32, i32)>, v: i32) -> Option<(i32, i32)> {
    Some(match range {
        None => (v, v),
        Some((lo, hi)) => (lo.min(v), hi.max(v)),
    })
}

impl Tensor {
    /// `out[c] = self[c with c[dim] := index[c]]`; `index` has this tensor's rank and no larger
    /// size off `dim`.
    pub fn gather(&self, dim: isize, index: &Tensor) -> Result<Tensor> {
        let op = "Tensor::gather";
        let d = normalize_axis(op, dim, self.rank())?;
        self.expect_same_device(op, index)?;
        let fits = index.rank() == self.rank()
            && (0..self.rank()).all(|i| i == d || index.shape()[i] <= self.shape()[i]);
        if !fits {
            return Err(Error::shape(
                op,
                format!(
                    "index {:?} for input {:?} on dim {d}",
                    index.shape(),
                    self.shape()
                ),
                "an index of the same rank, no larger off dim",
            ));
        }
        check_indices(op, index, self.shape()[d])?;
        self.gather_checked(op, d, index)
    }

    /// Launches the gather kernel; `index` is already validated.
    fn gather_checked(&self, op: &'static str, d: usize, index: &Tensor) -> Result<Tensor> {
        let out = Tensor::alloc(op, index.shape(), self.dtype(), &self.device)?;
        // Gathered values are values of this buffer.
        out.set_range(self.known_range());
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let (count, cube) = units_grid(n);
        let (in_off, idx_off, d32) = (self.offset_u32(), index.offset_u32(), d as u32);
        macro_rules! gather {
            ($t:ty) => {
                launch!(
                    self.device,
                    gather::<$t>,
                    count,
                    cube,
                    self.view_arg(),
                    index.view_arg(),
                    out.buffer_arg(),
                    in_off,
                    idx_off,
                    d32,
                )
            };
        }
        match self.dtype() {
            DType::F32 => gather!(f32),
            DType::F16 => gather!(half::f16),
            DType::BF16 => gather!(half::bf16),
            DType::I32 => gather!(i32),
        }
        Ok(out)
    }

    /// Rows (slices along `dim`) picked by the 1-D i32 `indices`, in order, repeats allowed.
    pub fn index_select(&self, dim: isize, indices: &Tensor) -> Result<Tensor> {
        let op = "Tensor::index_select";
        let d = normalize_axis(op, dim, self.rank())?;
        self.expect_same_device(op, indices)?;
        if indices.rank() != 1 {
            return Err(Error::shape(
                op,
                format!("indices {:?}", indices.shape()),
                "1-D indices",
            ));
        }
        check_indices(op, indices, self.shape()[d])?;
        let mut view_shape = vec![1isize; self.rank()];
        view_shape[d] = indices.numel() as isize;
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = indices.numel();
        let index = indices.reshape(&view_shape)?.expand(&out_shape)?;
        self.gather_checked(op, d, &index)
    }

    /// `out = self` plus, for every position `c` of `index`, `src[c]` added at `c with c[dim] :=
    /// index[c]`. Sums over repeated indices run in a fixed order: bitwise reproducible.
    pub fn scatter_add(&self, dim: isize, index: &Tensor, src: &Tensor) -> Result<Tensor> {
        let op = "Tensor::scatter_add";
        self.expect_f32(op)?;
        src.expect_f32(op)?;
        self.expect_same_device(op, index)?;
        self.expect_same_device(op, src)?;
        let d = normalize_axis(op, dim, self.rank())?;
        let rank = self.rank();
        let fits = index.rank() == rank
            && src.rank() == rank
            && (0..rank).all(|i| {
                index.shape()[i] <= src.shape()[i]
                    && (i == d || index.shape()[i] <= self.shape()[i])
            });
        if !fits {
            return Err(Error::shape(
                op,
                format!(
                    "self {:?}, index {:?}, src {:?} on dim {d}",
                    self.shape(),
                    index.shape(),
                    src.shape()
                ),
                "index no larger than src everywhere and than self off dim, all of one rank",
            ));
        }
        check_indices(op, index, self.shape()[d])?;
        let out = Tensor::alloc(op, self.shape(), DType::F32, &self.device)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let (count, cube) = units_grid(n);
        launch!(
            self.device,
            scatter_add::<f32>,
            count,
            cube,
            self.view_arg(),
            index.view_arg(),
            src.view_arg(),
            out.buffer_arg(),
            self.offset_u32(),
            index.offset_u32(),
            src.offset_u32(),
            d as u32
        );
        Ok(out)
    }

    /// f32 one-hot encoding of i32 class indices in `0..classes`: shape `self.shape + [classes]`.
    /// Classes are compared as f32, exact up to 2²⁴ (more is an error).
    pub fn one_hot(&self, classes: usize) -> Result<Tensor> {
        let op = "Tensor::one_hot";
        const EXACT: usize = 1 << 24;
        if classes > EXACT {
            return Err(Error::value(
                op,
                format!("{classes} classes"),
                format!("at most {EXACT} (class indices are compared as f32)"),
            ));
        }
        let mut out_shape = self.shape().to_vec();
        out_shape.push(classes);
        check_shape(op, &out_shape)?;
        check_indices(op, self, classes)?;
        let classes_row = Tensor::arange(0.0, classes as f32, 1.0, &self.device)?;
        self.to_dtype(DType::F32)?.unsqueeze(-1)?.eq(&classes_row)
    }
}
