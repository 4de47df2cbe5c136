//! Numeric helpers. Shader compilers may assume NaN never occurs and fold `x != x` to false, so NaN
//! is detected on the bits of the f32 value instead.

use cubecl::prelude::*;

/// Whether `x` is NaN: exponent all ones and a non-zero mantissa.
#[cube]
pub fn is_nan<F: Float>(x: F) -> bool {
    let bits = u32::reinterpret(f32::cast_from(x));
    (bits & 0x7FFF_FFFF) > 0x7F80_0000
}
