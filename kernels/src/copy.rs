//! Strided copies and dtype casts: `contiguous`, `cat`/`stack` (copies into narrowed views of the
//! output) and conversions between f32, f16, bf16 and i32.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::layout::strided_offset_fast;
use cubecl::prelude::*;
use cubecl::std::FastDivmod;

/// Copies the first `count` elements (row-major over `input`'s shape, whose sizes are `sizes`) of a
/// strided view into a strided view of `output` that has the same shape.
#[cube(launch_unchecked)]
pub fn copy_strided<T: CubePrimitive>(
    input: &Tensor<T>,
    output: &mut Tensor<T>,
    sizes: Sequence<FastDivmod<u32>>,
    in_offset: u32,
    out_offset: u32,
    count: u32,
) {
    let i = ABSOLUTE_POS;
    if i < count as usize {
        let src = strided_offset_fast::<T>(input, &sizes, in_offset, i);
        let dst = strided_offset_fast::<T>(output, &sizes, out_offset, i);
        output[dst] = input[src];
    }
}

/// Casts a strided view into a contiguous output of another element type (or copies it, when the
/// types are the same).
#[cube(launch_unchecked)]
pub fn cast_strided<A: CubePrimitive, B: CubePrimitive>(
    input: &Tensor<A>,
    output: &mut Array<B>,
    sizes: Sequence<FastDivmod<u32>>,
    in_offset: u32,
) {
    let i = ABSOLUTE_POS;
    if i < output.len() {
        output[i] = B::cast_from(input[strided_offset_fast::<A>(input, &sizes, in_offset, i)]);
    }
}
