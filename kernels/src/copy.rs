//! Strided copies and dtype casts: `contiguous`, `cat`/`stack` (copies into narrowed views of the
//! output) and conversions between f32, f16, bf16 and i32.

use crate::layout::strided_offset;
use cubecl::prelude::*;

/// Copies the first `count` elements (row-major over `input`'s shape) of a strided view into a
/// strided view of `output` that has the same shape.
#[cube(launch_unchecked)]
pub fn copy_strided<T: CubePrimitive>(
    input: &Tensor<T>,
    output: &mut Tensor<T>,
    in_offset: u32,
    out_offset: u32,
    count: u32,
) {
    let i = ABSOLUTE_POS;
    if i < count as usize {
        let src = strided_offset::<T>(input, in_offset, i);
        let dst = strided_offset::<T>(output, out_offset, i);
        output[dst] = input[src];
    }
}

/// Casts a strided view into a contiguous output of another element type.
#[cube(launch_unchecked)]
pub fn cast_strided<A: CubePrimitive, B: CubePrimitive>(
    input: &Tensor<A>,
    output: &mut Array<B>,
    in_offset: u32,
) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        output[i] = B::cast_from(input[strided_offset::<A>(input, in_offset, i)]);
    }
}
