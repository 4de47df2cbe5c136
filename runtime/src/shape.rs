//! Shape arithmetic shared by the ops: the size limit every tensor obeys, checked sums and
//! products of user-supplied sizes, element counts, row-major strides, axis normalisation and NumPy
//! broadcasting.
//!
//! **The limit.** Kernels address elements with 32-bit offsets, and the fast division of strided
//! kernels is exact for dividends below 2³¹, so every tensor — a buffer or a view of one — has an
//! *extent* (the product of its sizes, with a size 0 counted as 1) of at most [`MAX_ELEMENTS`]. The
//! extent bounds every partial product of sizes an op forms (batch counts, rows, planes), so those
//! cannot overflow, and every length, stride and offset passed to a kernel fits in a `u32`.

use crate::error::{Error, Result};

/// Largest extent (and so element count) of a tensor: 2³¹ − 1.
pub const MAX_ELEMENTS: usize = i32::MAX as usize;

/// Element count of a shape that obeys the limit.
pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// The element count of `shape` after checking its extent against [`MAX_ELEMENTS`]; an error
/// naming `op` and the shape otherwise.
pub(crate) fn check_shape(op: &'static str, shape: &[usize]) -> Result<usize> {
    let extent = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d.max(1)))
        .filter(|&n| n <= MAX_ELEMENTS);
    match extent {
        Some(_) => Ok(numel(shape)),
        None => Err(Error::value(
            op,
            format!("shape {shape:?}"),
            format!(
                "at most {MAX_ELEMENTS} elements, and sizes whose product (a size 0 counted as 1) \
                 is at most {MAX_ELEMENTS}"
            ),
        )),
    }
}

/// `a + b` for user-supplied sizes, or an error naming `op` and `what` overflowed.
pub(crate) fn checked_add(op: &'static str, what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_add(b)
        .ok_or_else(|| overflow(op, format!("{what} = {a} + {b}")))
}

/// `a · b` for user-supplied sizes, or an error naming `op` and `what` overflowed.
pub(crate) fn checked_mul(op: &'static str, what: &str, a: usize, b: usize) -> Result<usize> {
    a.checked_mul(b)
        .ok_or_else(|| overflow(op, format!("{what} = {a} · {b}")))
}

fn overflow(op: &'static str, got: String) -> Error {
    Error::value(op, got, "sizes whose arithmetic fits in usize")
}

/// Row-major strides of a contiguous tensor.
pub(crate) fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1].max(1);
    }
    strides
}

/// Maps a possibly negative axis into `0..rank`.
pub(crate) fn normalize_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    let r = rank as isize;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::Axis { op, axis, rank })
    }
}

/// Like [`normalize_axis`] for an insertion point, which may equal `rank`.
pub(crate) fn normalize_insert_axis(op: &'static str, axis: isize, rank: usize) -> Result<usize> {
    normalize_axis(op, axis, rank + 1)
}

/// NumPy broadcasting: align trailing dimensions; sizes must match or be 1.
pub(crate) fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("{a:?} and {b:?}"),
                    "shapes that broadcast (trailing dimensions equal or 1)",
                ))
            }
        };
    }
    Ok(out)
}
