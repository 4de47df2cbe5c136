//! Numeric helpers. Shader compilers may assume NaN never occurs and fold `x != x` to false, so NaN
//! is detected on the bits of the f32 value instead.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

/// Whether `x` is NaN: exponent all ones and a non-zero mantissa.
#[cube]
pub fn is_nan<F: Float>(x: F) -> bool {
    let bits = u32::reinterpret(f32::cast_from(x));
    (bits & 0x7FFF_FFFF) > 0x7F80_0000
}

/// Whether `x` is neither infinite nor NaN (exponent not all ones).
#[cube]
pub fn is_finite<F: Float>(x: F) -> bool {
    let bits = u32::reinterpret(f32::cast_from(x));
    (bits & 0x7F80_0000) != 0x7F80_0000
}

/// `+inf` built from its bits at run time (WGSL has no infinity literal).
#[cube]
pub fn infinity<F: Float>() -> F {
    F::cast_from(f32::reinterpret(0x7F80_0000u32.runtime()))
}

/// `-inf` built from its bits at run time.
#[cube]
pub fn neg_infinity<F: Float>() -> F {
    F::cast_from(f32::reinterpret(0xFF80_0000u32.runtime()))
}
