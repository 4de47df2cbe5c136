//! Numeric helpers. Shader compilers may assume NaN never occurs and fold `x != x` to false, so NaN
//! is detected on the bits of the f32 value instead.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]
// `opaque_bits` ANDs with zero on purpose (see there).
#![allow(clippy::erasing_op)]

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

/// `+inf`, built from its bits at run time: WGSL has no infinity literal, and CUDA C++ has none
/// that CubeCL 0.10 writes (a float constant `inf` prints as `float(inf)`).
#[cube]
pub fn infinity<F: Float>() -> F {
    F::cast_from(f32::reinterpret(opaque_bits(0x7F80_0000u32)))
}

/// `-inf`, built from its bits at run time (see [`infinity`]).
#[cube]
pub fn neg_infinity<F: Float>() -> F {
    F::cast_from(f32::reinterpret(opaque_bits(0xFF80_0000u32)))
}

/// `bits`, as a value the optimiser cannot fold back into a constant: CubeCL 0.10's CUDA compiler
/// writes the bit cast of a constant as `reinterpret_cast<float const&>(uint32(..))`, which does not
/// compile (a reference to an rvalue), and its constant propagation sees through `.runtime()`. An
/// AND with zero of the unit's position is not folded (0.10 folds bitwise operations of two
/// constants only), so the cast reads a variable.
#[cube]
fn opaque_bits(bits: u32) -> u32 {
    bits | (UNIT_POS & 0)
}
