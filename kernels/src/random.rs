//! Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers:
//! as easy as 1, 2, 3", SC 2011). Each unit encrypts its 64-bit counter `offset + block` (block =
//! unit index) under the 64-bit key (the seed) with ten rounds and gets four independent u32 words,
//! so the stream depends only on (seed, offset, position): the same on every run and device.
//!
//! Words become floats as `u = (w >> 8) · 2⁻²⁴ ∈ [0, 1)`; normals use Box–Muller on word pairs with
//! `u₁ ∈ (0, 1]` so the logarithm is finite; integers in `[low, high)` use the high word of
//! `w · (high − low)` (bias below `(high − low) / 2³²`). `randperm` sorts random keys with a bitonic
//! network, ties broken by position.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::layout::strided_offset;
use cubecl::prelude::*;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;
const INV_2_24: f32 = 1.0 / 16_777_216.0;

/// Four words of Philox4x32-10 for counter `(c0, c1, 0, 0)` and key `(k0, k1)`.
#[cube]
pub fn philox(c0: u32, c1: u32, k0: u32, k1: u32) -> (u32, u32, u32, u32) {
    let mut x0 = c0;
    let mut x1 = c1;
    let mut x2 = 0u32;
    let mut x3 = 0u32;
    let mut key0 = k0;
    let mut key1 = k1;
    #[unroll]
    for _ in 0..10 {
        let hi0 = u32::mul_hi(M0, x0);
        let lo0 = M0 * x0;
        let hi1 = u32::mul_hi(M1, x2);
        let lo1 = M1 * x2;
        let y0 = hi1 ^ x1 ^ key0;
        let y1 = lo1;
        let y2 = hi0 ^ x3 ^ key1;
        let y3 = lo0;
        x0 = y0;
        x1 = y1;
        x2 = y2;
        x3 = y3;
        key0 += W0;
        key1 += W1;
    }
    (x0, x1, x2, x3)
}

/// The four words of unit `block`: counter `offset + block` with carry into the high word.
#[cube]
fn words(block: u32, off_lo: u32, off_hi: u32, k0: u32, k1: u32) -> (u32, u32, u32, u32) {
    let lo = off_lo + block;
    let carry = select(lo < block, 1u32, 0u32);
    philox(lo, off_hi + carry, k0, k1)
}

#[cube]
fn unit_float<F: Float>(w: u32) -> F {
    F::cast_from(w >> 8) * F::new(INV_2_24)
}

#[cube]
fn store<T: CubePrimitive>(output: &mut Array<T>, pos: usize, v: T) {
    if pos < output.len() {
        output[pos] = v;
    }
}

/// `output[i] = low + u_i (high - low)`, four elements per unit.
#[cube(launch_unchecked)]
pub fn uniform<F: Float + CubeElement>(
    output: &mut Array<F>,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
    low: F,
    high: F,
) {
    let block = ABSOLUTE_POS as u32;
    let base = ABSOLUTE_POS * 4;
    if base < output.len() {
        let (a, b, c, d) = words(block, off_lo, off_hi, k0, k1);
        let span = high - low;
        store::<F>(output, base, low + unit_float::<F>(a) * span);
        store::<F>(output, base + 1, low + unit_float::<F>(b) * span);
        store::<F>(output, base + 2, low + unit_float::<F>(c) * span);
        store::<F>(output, base + 3, low + unit_float::<F>(d) * span);
    }
}

#[cube]
fn box_muller<F: Float>(w1: u32, w2: u32) -> (F, F) {
    let u1 = F::cast_from((w1 >> 8) + 1) * F::new(INV_2_24);
    let u2 = unit_float::<F>(w2);
    let r = (F::new(-2.0) * u1.ln()).sqrt();
    let theta = F::new(core::f32::consts::TAU) * u2;
    (r * theta.cos(), r * theta.sin())
}

/// `output[i] = mean + std · z_i` with `z_i ~ N(0, 1)`, four elements per unit.
#[cube(launch_unchecked)]
pub fn normal<F: Float + CubeElement>(
    output: &mut Array<F>,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
    mean: F,
    std: F,
) {
    let block = ABSOLUTE_POS as u32;
    let base = ABSOLUTE_POS * 4;
    if base < output.len() {
        let (a, b, c, d) = words(block, off_lo, off_hi, k0, k1);
        let (z0, z1) = box_muller::<F>(a, b);
        let (z2, z3) = box_muller::<F>(c, d);
        store::<F>(output, base, mean + std * z0);
        store::<F>(output, base + 1, mean + std * z1);
        store::<F>(output, base + 2, mean + std * z2);
        store::<F>(output, base + 3, mean + std * z3);
    }
}

/// `output[i] = input[i] + scale[i / group] · z_i` with `z_i ~ N(0, 1)` (the same draws as
/// [`normal()`] with mean 0 and std 1), four elements per unit: noise added to a parameter in one
/// pass, with one standard deviation per group of `group` consecutive elements (per replica).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn add_scaled_normal<F: Float + CubeElement>(
    input: &Array<F>,
    scale: &Array<F>,
    output: &mut Array<F>,
    group: usize,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
) {
    let block = ABSOLUTE_POS as u32;
    let base = ABSOLUTE_POS * 4;
    if base < output.len() {
        let (a, b, c, d) = words(block, off_lo, off_hi, k0, k1);
        let (z0, z1) = box_muller::<F>(a, b);
        let (z2, z3) = box_muller::<F>(c, d);
        add_noise::<F>(input, scale, output, group, base, z0);
        add_noise::<F>(input, scale, output, group, base + 1, z1);
        add_noise::<F>(input, scale, output, group, base + 2, z2);
        add_noise::<F>(input, scale, output, group, base + 3, z3);
    }
}

#[cube]
fn add_noise<F: Float>(
    input: &Array<F>,
    scale: &Array<F>,
    output: &mut Array<F>,
    group: usize,
    pos: usize,
    z: F,
) {
    if pos < output.len() {
        output[pos] = input[pos] + scale[pos / group] * z;
    }
}

/// `output[i] = 1` with probability `probs[i]` (a view broadcast to the output's shape), else 0.
#[cube(launch_unchecked)]
pub fn bernoulli<F: Float>(
    probs: &Tensor<F>,
    output: &mut Array<F>,
    probs_offset: u32,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
) {
    let block = ABSOLUTE_POS as u32;
    let base = ABSOLUTE_POS * 4;
    if base < output.len() {
        let (a, b, c, d) = words(block, off_lo, off_hi, k0, k1);
        coin::<F>(probs, output, probs_offset, base, a);
        coin::<F>(probs, output, probs_offset, base + 1, b);
        coin::<F>(probs, output, probs_offset, base + 2, c);
        coin::<F>(probs, output, probs_offset, base + 3, d);
    }
}

#[cube]
fn coin<F: Float>(probs: &Tensor<F>, output: &mut Array<F>, probs_offset: u32, pos: usize, w: u32) {
    if pos < output.len() {
        let p = probs[strided_offset::<F>(probs, probs_offset, pos)];
        output[pos] = select(unit_float::<F>(w) < p, F::new(1.0), F::new(0.0));
    }
}

/// `output[i] = low + hi32(w_i · span)`, uniform on `[low, low + span)`.
#[cube(launch_unchecked)]
pub fn randint(
    output: &mut Array<i32>,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
    low: i32,
    span: u32,
) {
    let block = ABSOLUTE_POS as u32;
    let base = ABSOLUTE_POS * 4;
    if base < output.len() {
        let (a, b, c, d) = words(block, off_lo, off_hi, k0, k1);
        store::<i32>(output, base, low + u32::mul_hi(a, span) as i32);
        store::<i32>(output, base + 1, low + u32::mul_hi(b, span) as i32);
        store::<i32>(output, base + 2, low + u32::mul_hi(c, span) as i32);
        store::<i32>(output, base + 3, low + u32::mul_hi(d, span) as i32);
    }
}

/// Sort keys for `randperm`: a random word for each of the first `n` slots, `u32::MAX` (sorted last)
/// for the padding up to a power of two; `values` start as the slot positions.
#[cube(launch_unchecked)]
pub fn permutation_keys(
    keys: &mut Array<u32>,
    values: &mut Array<u32>,
    n: u32,
    k0: u32,
    k1: u32,
    off_lo: u32,
    off_hi: u32,
) {
    let i = ABSOLUTE_POS;
    if i < keys.len() {
        let (a, _b, _c, _d) = words(i as u32, off_lo, off_hi, k0, k1);
        keys[i] = select((i as u32) < n, a, u32::MAX);
        values[i] = i as u32;
    }
}

/// One compare-exchange step `(k, j)` of a bitonic sort of `(keys, values)` pairs, ascending.
#[cube(launch_unchecked)]
pub fn bitonic_step(keys: &mut Array<u32>, values: &mut Array<u32>, k: u32, j: u32) {
    let i = ABSOLUTE_POS as u32;
    let l = i ^ j;
    if (i as usize) < keys.len() && l > i {
        let (a, b) = (i as usize, l as usize);
        let (ka, kb) = (keys[a], keys[b]);
        let (va, vb) = (values[a], values[b]);
        let a_after_b = ka > kb || (ka == kb && va > vb);
        let ascending = (i & k) == 0;
        if a_after_b == ascending {
            keys[a] = kb;
            keys[b] = ka;
            values[a] = vb;
            values[b] = va;
        }
    }
}
