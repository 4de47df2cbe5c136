//! Message-passing kernels and the signal model's Euler step.
//!
//! A graph's `E` edges `(src_e → dst_e)` over `n` nodes are sorted once on the host into segments
//! (`ptr [n + 1]`, `order [E]`: the edges of node `i` are `order[ptr[i]..ptr[i + 1]]`, in increasing
//! edge id). Each kernel gives one unit to one output element and walks its segment in that fixed
//! order: sums are deterministic (no float atomics), so runs are bitwise reproducible.
//!
//! - `segment_sum`: `out[i, f] = Σ_{p ∈ seg(i)} values[order[p], f]` (message aggregation; the
//!   backward of a gather along edges).
//! - `spmm`: `out[i, f] = Σ_{p ∈ seg(i)} vals[order[p]] · x[idx[p], f]` with `idx[p]` the node at
//!   the other end of edge `order[p]`: the CSR product `A x` (segments by destination) and its
//!   transpose `Aᵀ g` (segments by source).
//! - `edge_dot`: `out[e] = Σ_f a[dst_e, f] · b[src_e, f]`, the gradient of `A x` with respect to
//!   the edge values.
//! - `signal_activity` then `signal_step`: one Euler step of
//!   `du_i/dt = −c_i u_i + s_i tanh(u_i) + g_i Σ_j W_ij tanh(u_j)` (the NeuralGraph signal model),
//!   reading frame `t` of a chunk and writing its rate and frame `t + 1`.
//!
//! Every array is row-major and starts at offset 0 (the runtime makes it so); indices are
//! validated when the graph is built.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

#[cube(launch_unchecked)]
pub fn segment_sum<F: Float>(
    values: &Array<F>,
    ptr: &Array<i32>,
    order: &Array<i32>,
    out: &mut Array<F>,
    width: usize,
) {
    let o = ABSOLUTE_POS;
    if o < out.len() {
        let i = o / width;
        let f = o % width;
        let mut acc = F::new(0.0);
        let end = ptr[i + 1] as usize;
        for p in ptr[i] as usize..end {
            acc += values[order[p] as usize * width + f];
        }
        out[o] = acc;
    }
}

#[cube(launch_unchecked)]
pub fn spmm<F: Float>(
    ptr: &Array<i32>,
    order: &Array<i32>,
    idx: &Array<i32>,
    vals: &Array<F>,
    x: &Array<F>,
    out: &mut Array<F>,
    width: usize,
) {
    let o = ABSOLUTE_POS;
    if o < out.len() {
        let i = o / width;
        let f = o % width;
        let mut acc = F::new(0.0);
        let end = ptr[i + 1] as usize;
        for p in ptr[i] as usize..end {
            acc += vals[order[p] as usize] * x[idx[p] as usize * width + f];
        }
        out[o] = acc;
    }
}

#[cube(launch_unchecked)]
pub fn edge_dot<F: Float>(
    src: &Array<i32>,
    dst: &Array<i32>,
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    width: usize,
) {
    let e = ABSOLUTE_POS;
    if e < out.len() {
        let ra = dst[e] as usize * width;
        let rb = src[e] as usize * width;
        let mut acc = F::new(0.0);
        for f in 0..width {
            acc += a[ra + f] * b[rb + f];
        }
        out[e] = acc;
    }
}

/// `act[j] = tanh(frames[t·n + j])`: the presynaptic activity of frame `t`.
#[cube(launch_unchecked)]
pub fn signal_activity<F: Float>(frames: &Array<F>, act: &mut Array<F>, n: usize, t: usize) {
    let j = ABSOLUTE_POS;
    if j < n {
        act[j] = frames[t * n + j].tanh();
    }
}

/// `wt` is `Wᵀ` (`wt[j·n + i] = W_ij`, so neighbouring units read neighbouring addresses); `act`
/// holds `tanh(u_j)` of frame `t` ([`signal_activity`]); `params` is `[g; s; c]` (`3 × n`);
/// `frames` holds at least `t + 2` rows of `n`, `rates` at least `t + 1`. One unit per neuron, no
/// shared memory or barriers. On lavapipe a step at n = 1000 takes ~8.5 ms, as long as the
/// `[1, n] × [n, n]` matmul: both stream the 4 MB of `W` at ~0.5 GB/s.
#[cube(launch_unchecked)]
pub fn signal_step<F: Float + CubeElement>(
    wt: &Array<F>,
    params: &Array<F>,
    act: &Array<F>,
    frames: &mut Array<F>,
    rates: &mut Array<F>,
    n: usize,
    t: usize,
    dt: F,
) {
    let i = ABSOLUTE_POS;
    if i < n {
        let mut acc = F::new(0.0);
        for j in 0..n {
            acc += wt[j * n + i] * act[j];
        }
        let base = t * n;
        let u = frames[base + i];
        let du = -params[2 * n + i] * u + params[n + i] * u.tanh() + params[i] * acc;
        rates[base + i] = du;
        frames[base + n + i] = u + dt * du;
    }
}
