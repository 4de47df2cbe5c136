//! Strided addressing shared by every kernel that reads views.
//!
//! A view is a buffer, an element offset and, per dimension, a size and a stride (0 on a broadcast
//! dimension). Element `linear` of the view, counted in row-major order over its shape, lives at
//! `offset + Σ_d coord_d(linear) · stride_d` of the buffer.

use cubecl::prelude::*;

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
