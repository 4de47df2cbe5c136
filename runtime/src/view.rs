//! Views that share the buffer (`reshape` of contiguous tensors, `permute`, `transpose`, `narrow`,
//! `slice`, `expand`, `unsqueeze`, `squeeze`) and the copies that make new buffers (`contiguous`,
//! `cat`, `stack`, `to_dtype`).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::shape::{
    check_shape, checked_add, contiguous_strides, normalize_axis, normalize_insert_axis, numel,
};
use crate::tensor::Tensor;
use dynlab_kernels::copy::{cast_strided, copy_strided};
use std::sync::Arc;

impl Tensor {
    /// A view of this tensor's buffer; its shape obeys the size limit ([`check_shape`]), so a view
    /// (an `expand`, say) is never longer than what a kernel can index.
    fn with_view(
        &self,
        op: &'static str,
        shape: Vec<usize>,
        strides: Vec<usize>,
        offset: usize,
    ) -> Result<Tensor> {
        check_shape(op, &shape)?;
        Ok(Tensor {
            shape,
            strides,
            offset,
            range: Arc::new(self.range.as_ref().clone()),
            ..self.clone()
        })
    }

    /// Same elements, new shape; one entry may be -1 (inferred). Copies only when the view is not
    /// contiguous.
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor> {
        let op = "Tensor::reshape";
        let n = self.numel();
        let inferred: Vec<usize> = shape
            .iter()
            .enumerate()
            .filter(|(_, &d)| d == -1)
            .map(|(i, _)| i)
            .collect();
        if inferred.len() > 1 || shape.iter().any(|&d| d < -1) {
            return Err(Error::shape(
                op,
                format!("{shape:?}"),
                "non-negative sizes with at most one -1",
            ));
        }
        let mut new_shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        check_shape(op, &new_shape)?;
        let known: usize = (new_shape.iter().zip(shape))
            .filter(|(_, &d)| d >= 0)
            .map(|(&n, _)| n)
            .product();
        if let Some(&i) = inferred.first() {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(Error::shape(
                    op,
                    format!("{shape:?} for {n} elements ({:?})", self.shape),
                    "a shape whose known sizes divide the element count",
                ));
            }
            new_shape[i] = n / known;
        }
        if numel(&new_shape) != n {
            return Err(Error::shape(
                op,
                format!(
                    "{shape:?} ({} elements) for a tensor of shape {:?} ({n} elements)",
                    numel(&new_shape),
                    self.shape
                ),
                "the same number of elements",
            ));
        }
        let base = self.contiguous()?;
        let strides = contiguous_strides(&new_shape);
        base.with_view(op, new_shape, strides, base.offset)
    }

    /// Reorders dimensions: output dimension `i` is input dimension `dims[i]`.
    pub fn permute(&self, dims: &[usize]) -> Result<Tensor> {
        let rank = self.rank();
        let mut seen = vec![false; rank];
        let valid = dims.len() == rank
            && dims
                .iter()
                .all(|&d| d < rank && !std::mem::replace(&mut seen[d], true));
        if !valid {
            return Err(Error::shape(
                "Tensor::permute",
                format!("dims {dims:?} for rank {rank}"),
                format!("a permutation of 0..{rank}"),
            ));
        }
        let shape = dims.iter().map(|&d| self.shape[d]).collect();
        let strides = dims.iter().map(|&d| self.strides[d]).collect();
        self.with_view("Tensor::permute", shape, strides, self.offset)
    }

    /// Swaps two dimensions.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let a = normalize_axis("Tensor::transpose", a, self.rank())?;
        let b = normalize_axis("Tensor::transpose", b, self.rank())?;
        let mut dims: Vec<usize> = (0..self.rank()).collect();
        dims.swap(a, b);
        self.permute(&dims)
    }

    /// Elements `start..start + len` along `dim`.
    pub fn narrow(&self, dim: isize, start: usize, len: usize) -> Result<Tensor> {
        let op = "Tensor::narrow";
        let end = checked_add(op, "start + len", start, len)?;
        self.sliced(op, dim, start, end, 1)
    }

    /// Elements `start..end` with `step` along `dim` (Python's `x[start:end:step]`).
    pub fn slice(&self, dim: isize, start: usize, end: usize, step: usize) -> Result<Tensor> {
        self.sliced("Tensor::slice", dim, start, end, step)
    }

    /// [`Tensor::slice`] reporting errors as `op`.
    fn sliced(
        &self,
        op: &'static str,
        dim: isize,
        start: usize,
        end: usize,
        step: usize,
    ) -> Result<Tensor> {
        let d = normalize_axis(op, dim, self.rank())?;
        let size = self.shape[d];
        if step == 0 || start > end || end > size {
            return Err(Error::value(
                op,
                format!("start={start}, end={end}, step={step} on dimension {d} of size {size}"),
                "start <= end <= size and step >= 1",
            ));
        }
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        shape[d] = (end - start).div_ceil(step);
        // With two or more elements the stride stays inside the buffer; with one it is never used.
        strides[d] = if shape[d] > 1 {
            strides[d] * step
        } else {
            strides[d]
        };
        let offset = if shape[d] == 0 {
            self.offset
        } else {
            self.offset + start * self.strides[d]
        };
        self.with_view(op, shape, strides, offset)
    }

    /// Broadcasts to `shape` without copying: size-1 (or missing leading) dimensions get stride 0.
    pub fn expand(&self, shape: &[usize]) -> Result<Tensor> {
        let op = "Tensor::expand";
        let bad = || {
            Error::shape(
                op,
                format!("{:?} to {shape:?}", self.shape),
                "each dimension equal to the target or 1, and rank <= target rank",
            )
        };
        if shape.len() < self.rank() {
            return Err(bad());
        }
        let lead = shape.len() - self.rank();
        let mut strides = vec![0; shape.len()];
        for (i, &target) in shape.iter().enumerate().skip(lead) {
            let (size, stride) = (self.shape[i - lead], self.strides[i - lead]);
            strides[i] = match size {
                s if s == target => stride,
                1 => 0,
                _ => return Err(bad()),
            };
        }
        self.with_view(op, shape.to_vec(), strides, self.offset)
    }

    /// Alias of [`Tensor::expand`].
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Tensor> {
        self.expand(shape)
    }

    /// Inserts a size-1 dimension at `dim` (which may equal the rank).
    pub fn unsqueeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_insert_axis("Tensor::unsqueeze", dim, self.rank())?;
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        let stride = if d < self.rank() {
            self.strides[d] * self.shape[d]
        } else {
            1
        };
        shape.insert(d, 1);
        strides.insert(d, stride);
        self.with_view("Tensor::unsqueeze", shape, strides, self.offset)
    }

    /// Removes dimension `dim`, which must have size 1.
    pub fn squeeze(&self, dim: isize) -> Result<Tensor> {
        let d = normalize_axis("Tensor::squeeze", dim, self.rank())?;
        if self.shape[d] != 1 {
            return Err(Error::shape(
                "Tensor::squeeze",
                format!("dimension {d} of {:?}", self.shape),
                "a dimension of size 1",
            ));
        }
        let mut shape = self.shape.clone();
        let mut strides = self.strides.clone();
        shape.remove(d);
        strides.remove(d);
        self.with_view("Tensor::squeeze", shape, strides, self.offset)
    }

    /// A row-major copy (or this tensor when it already is row-major).
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        self.row_major_copy()
    }

    /// A row-major tensor whose first element is at buffer position 0, for kernels that index a
    /// plain array.
    pub(crate) fn contiguous_from_zero(&self) -> Result<Tensor> {
        if self.is_contiguous() && self.offset == 0 {
            return Ok(self.clone());
        }
        self.row_major_copy()
    }

    /// Concatenates along `dim`; all inputs share dtype, device and every other dimension.
    pub fn cat(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "Tensor::cat";
        let first = tensors
            .first()
            .ok_or_else(|| Error::value(op, "an empty list", "at least one tensor"))?;
        let d = normalize_axis(op, dim, first.rank())?;
        let mut shape = first.shape.clone();
        shape[d] = 0;
        for t in tensors {
            first.expect_same_device(op, t)?;
            let same_rest = t.rank() == first.rank()
                && (0..t.rank()).all(|i| i == d || t.shape[i] == first.shape[i]);
            if !same_rest {
                return Err(Error::shape(
                    op,
                    format!("{:?} next to {:?}", t.shape, first.shape),
                    format!("equal sizes off dimension {d}"),
                ));
            }
            if t.dtype != first.dtype {
                return Err(Error::dtype(
                    op,
                    t.dtype,
                    format!("{} like the first tensor", first.dtype),
                ));
            }
            shape[d] = checked_add(op, "the concatenated size", shape[d], t.shape[d])?;
        }
        let out = Tensor::alloc(op, &shape, first.dtype, &first.device)?;
        let mut start = 0;
        for t in tensors {
            let len = t.shape[d];
            copy_into(t, &out.narrow(d as isize, start, len)?)?;
            start += len;
        }
        Ok(out)
    }

    /// Stacks equal-shaped tensors along a new dimension `dim`.
    pub fn stack(tensors: &[&Tensor], dim: isize) -> Result<Tensor> {
        let op = "Tensor::stack";
        let first = tensors
            .first()
            .ok_or_else(|| Error::value(op, "an empty list", "at least one tensor"))?;
        if let Some(t) = tensors.iter().find(|t| t.shape != first.shape) {
            return Err(Error::shape(
                op,
                format!("{:?} next to {:?}", t.shape, first.shape),
                "equal shapes",
            ));
        }
        let expanded = tensors
            .iter()
            .map(|t| t.unsqueeze(dim))
            .collect::<Result<Vec<_>>>()?;
        Tensor::cat(&expanded.iter().collect::<Vec<_>>(), dim)
    }

    /// Converts the elements to `dtype` (float to int truncates toward zero).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype {
            return Ok(self.clone());
        }
        let op = "Tensor::to_dtype";
        let out = Tensor::alloc(op, &self.shape, dtype, &self.device)?;
        if self.numel() == 0 {
            return Ok(out);
        }
        if self.dtype != DType::F32 && dtype != DType::F32 {
            return self.to_dtype(DType::F32)?.to_dtype(dtype);
        }
        self.cast_into(&out)?;
        Ok(out)
    }

    /// A new row-major buffer holding this view: one strided read and one contiguous write per
    /// element.
    fn row_major_copy(&self) -> Result<Tensor> {
        let out = Tensor::alloc("Tensor::contiguous", &self.shape, self.dtype, &self.device)?;
        out.set_range(self.known_range());
        if out.numel() > 0 {
            self.cast_into(&out)?;
        }
        Ok(out)
    }

    /// Writes this (non-empty) view, converted to `out`'s element type, into the row-major `out` of
    /// the same shape. The types are equal or one of them is f32 (`to_dtype` routes through f32).
    fn cast_into(&self, out: &Tensor) -> Result<()> {
        let (count, dim) = units_grid(self.numel());
        let off = self.offset_u32();
        macro_rules! cast {
            ($from:ty, $to:ty) => {
                launch!(
                    self.device,
                    cast_strided::<$from, $to>,
                    count,
                    dim,
                    self.view_arg(),
                    out.buffer_arg(),
                    self.sizes_arg(),
                    off,
                )
            };
        }
        match (self.dtype, out.dtype) {
            (DType::F32, DType::F32) => cast!(f32, f32),
            (DType::F16, DType::F16) => cast!(half::f16, half::f16),
            (DType::BF16, DType::BF16) => cast!(half::bf16, half::bf16),
            (DType::I32, DType::I32) => cast!(i32, i32),
            (DType::F32, DType::F16) => cast!(f32, half::f16),
            (DType::F32, DType::BF16) => cast!(f32, half::bf16),
            (DType::F32, DType::I32) => cast!(f32, i32),
            (DType::F16, DType::F32) => cast!(half::f16, f32),
            (DType::BF16, DType::F32) => cast!(half::bf16, f32),
            (DType::I32, DType::F32) => cast!(i32, f32),
            (from, to) => unreachable!("to_dtype casts {from:?} to {to:?} through f32"),
        }
        Ok(())
    }
}

/// Copies `src` into the same-shaped view `dst` (of a buffer this op owns).
pub(crate) fn copy_into(src: &Tensor, dst: &Tensor) -> Result<()> {
    let n = src.numel();
    if n == 0 {
        return Ok(());
    }
    let (count, dim) = units_grid(n);
    let (src_off, dst_off, n32) = (src.offset_u32(), dst.offset_u32(), n as u32);
    let device = &src.device;
    macro_rules! copy {
        ($t:ty) => {
            launch!(
                device,
                copy_strided::<$t>,
                count,
                dim,
                src.view_arg(),
                dst.view_arg(),
                src.sizes_arg(),
                src_off,
                dst_off,
                n32,
            )
        };
    }
    match src.dtype {
        DType::F32 => copy!(f32),
        DType::F16 => copy!(half::f16),
        DType::BF16 => copy!(half::bf16),
        DType::I32 => copy!(i32),
    }
    Ok(())
}
