//! Strided addressing shared by every kernel that reads views.
//!
//! A view is a buffer, an element offset and, per dimension, a size and a stride (0 on a broadcast
//! dimension). Element `linear` of the view, counted in row-major order over its shape, lives at
//! `offset + Σ_d coord_d(linear) · stride_d` of the buffer.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;
use cubecl::std::FastDivmod;

/// Buffer position of the `linear`-th element (row-major over `view`'s shape) of a strided view.
#[cube]
pub fn strided_offset<T: CubePrimitive>(view: &Tensor<T>, offset: u32, linear: usize) -> usize {
    let rank = view.rank();
    let mut rem = linear;
    let mut pos = offset as usize;
    for k in 0..rank {
        let d = rank - 1 - k;
        let size = view.shape(d);
        pos += (rem % size) * view.stride(d);
        rem /= size;
    }
    pos
}

/// [`strided_offset()`] with the view's sizes given as fast dividers (`sizes[d]` divides by
/// `shape(d)` with a multiply-high and a shift, Granlund & Montgomery 1994). CPU Vulkan runs an
/// integer division one lane at a time; on lavapipe this makes strided copies several times faster.
/// The rank is `sizes.len()`, a compile-time constant, so the loop unrolls.
#[cube]
pub fn strided_offset_fast<T: CubePrimitive>(
    view: &Tensor<T>,
    sizes: &Sequence<FastDivmod<u32>>,
    offset: u32,
    linear: usize,
) -> usize {
    let rank = comptime![sizes.len()];
    let mut rem = linear as u32;
    let mut pos = offset as usize;
    #[unroll]
    for k in 0..rank {
        let d = comptime![rank - 1 - k];
        let (quotient, coord) = sizes.index(d).div_mod(rem);
        pos += coord as usize * view.stride(d);
        rem = quotient;
    }
    pos
}
