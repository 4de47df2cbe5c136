//! Strided addressing shared by every kernel that reads views.
//!
//! A view is a buffer, an element offset and, per dimension, a size and a stride (0 on a broadcast
//! dimension). Element `linear` of the view, counted in row-major order over its shape, lives at
//! `offset + Σ_d coord_d(linear) · stride_d` of the buffer.

use cubecl::prelude::*;

/// Buffer position of the `linear`-th element (row-major over `view`'s shape) of a strided view.
/// In 32-bit arithmetic (the runtime caps tensors at `u32::MAX` elements) with one division per
/// dimension: CPU Vulkan divides lane by lane, and 64-bit divisions cost twice as much.
#[cube]
pub fn strided_offset<T: CubePrimitive>(view: &Tensor<T>, offset: u32, linear: usize) -> usize {
    let rank = view.rank();
    let mut rem = linear as u32;
    let mut pos = offset;
    for k in 0..rank {
        let d = rank - 1 - k;
        let size = view.shape(d) as u32;
        let next = rem / size;
        pos += (rem - next * size) * view.stride(d) as u32;
        rem = next;
    }
    pos as usize
}
