//! Fused scaled dot-product attention in the flash-attention style (Dao et al. 2022,
//! "FlashAttention"): scores are never stored. With `s_ij = q_i·k_j / √d` (or `HIDDEN` where causal,
//! `j > i`, or the mask hides the pair), one pass over the keys keeps a running maximum `m`, the
//! running sum `l = Σ_j exp(s_ij − m)` and the running output `Σ_j exp(s_ij − m) v_j`, rescaling both
//! by `exp(m_old − m_new)` whenever the maximum grows (the online softmax); `o_i = acc / l`, and the
//! row's `(m, l)` are kept for the backward (not `m + ln l`: for a fully hidden row `m = −1e30` would
//! swallow `ln l` in f32).
//!
//! Backward with `D_i = dO_i·o_i` and `p_ij = exp(s_ij − m_i) / l_i`: `dV_j = Σ_i p_ij dO_i`,
//! `ds_ij = p_ij (dO_i·v_j − D_i)` (zero on hidden pairs), `dQ_i = Σ_j ds_ij k_j / √d`,
//! `dK_j = Σ_i ds_ij q_i / √d`. Two kernels, no atomics: one unit per query (dQ, and D) and one unit
//! per key (dK, dV), each recomputing the scores it needs.
//!
//! Layout: `q [N, T, d]`, `k [N, S, d]`, `v [N, S, e]`, contiguous; the optional mask is a strided
//! view of shape `[..., T, S]` whose leading dimensions flatten to `N` (1 = hidden). A cube holds
//! `CUBE_DIM_X` consecutive queries (or keys) of one batch entry `CUBE_POS_Y`, so every unit of a
//! cube reads the same key (or query) row at the same step: one load on CPU devices, a broadcast on GPUs.

use crate::layout::strided_offset;
use cubecl::prelude::*;

/// Score of a hidden pair: finite, so a fully hidden row gives a uniform average (not NaN), as the
/// materialised path does.
pub const HIDDEN: f32 = -1e30;

/// Initial running maximum: below every score, so the first key's correction `exp(m − m_new)` is 0.
const BELOW_ANY_SCORE: f32 = 2.0 * HIDDEN;

/// Comptime shape of one launch.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct AttentionDims {
    /// Query/key width `d` and value width `e`.
    pub d: u32,
    pub e: u32,
    pub causal: bool,
    pub masked: bool,
}

#[cube]
#[allow(clippy::too_many_arguments)]
fn hidden_pair(
    mask: &Tensor<f32>,
    mask_offset: u32,
    batch: usize,
    i: usize,
    j: usize,
    t: usize,
    s: usize,
    #[comptime] dims: AttentionDims,
) -> bool {
    let mut hidden = false;
    if dims.causal {
        hidden = j > i;
    }
    if dims.masked {
        let at = strided_offset::<f32>(mask, mask_offset, (batch * t + i) * s + j);
        hidden = hidden || mask[at] != 0.0;
    }
    hidden
}

#[cube]
fn min_index(a: usize, b: usize) -> usize {
    select(a < b, a, b)
}

/// `p_ij = exp(s_ij − m_i) / l_i` and `ds_ij / √d = p_ij (dO_i·v_j − D_i) / √d` (zero when hidden) for
/// one pair, from `dot = q_i·k_j / √d` and `dp = dO_i·v_j`: what both backward kernels need.
#[cube]
#[allow(clippy::too_many_arguments)]
fn pair_grads(
    dot: f32,
    dp: f32,
    hidden: bool,
    row_max: f32,
    row_inv_sum: f32,
    big_d: f32,
    scale: f32,
) -> (f32, f32) {
    let p = (select(hidden, f32::new(HIDDEN), dot) - row_max).exp() * row_inv_sum;
    (p, select(hidden, 0.0f32, p * (dp - big_d)) * scale)
}

/// How many keys query block `[first, first + CUBE_DIM_X)` must visit: up to its last query when
/// causal without a mask (later keys are hidden for every query of the block), else all.
#[cube]
fn keys_to_visit(first: usize, t: usize, s: usize, #[comptime] dims: AttentionDims) -> usize {
    if comptime!(dims.causal && !dims.masked) {
        let last = min_index(first + CUBE_DIM_X as usize, t);
        min_index(last, s)
    } else {
        s
    }
}

/// Forward: `out [N, T, e]` and `stats [N, T, 2]` (`m`, `l` per row).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_forward(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    mask: &Tensor<f32>,
    out: &mut Array<f32>,
    stats: &mut Array<f32>,
    t: u32,
    s: u32,
    scale: f32,
    mask_offset: u32,
    #[comptime] dims: AttentionDims,
) {
    let (t, s) = (t as usize, s as usize);
    let (d, e) = (dims.d as usize, dims.e as usize);
    let batch = CUBE_POS_Y as usize;
    let first = (CUBE_POS_X * CUBE_DIM_X) as usize;
    let i_raw = first + UNIT_POS_X as usize;
    let i = min_index(i_raw, t - 1);
    let q_base = (batch * t + i) * d;
    let mut q_reg = Array::<f32>::new(comptime!(dims.d as usize));
    #[unroll]
    for c in 0..d {
        q_reg[c] = q[q_base + c] * scale;
    }
    let mut acc = Array::<f32>::new(comptime!(dims.e as usize));
    #[unroll]
    for c in 0..e {
        acc[c] = 0.0;
    }
    let mut m = BELOW_ANY_SCORE.runtime();
    let mut l = 0.0f32.runtime();
    let visit = keys_to_visit(first, t, s, dims);
    for j in 0..visit {
        let k_base = (batch * s + j) * d;
        let mut dot = 0.0f32;
        #[unroll]
        for c in 0..d {
            dot += q_reg[c] * k[k_base + c];
        }
        let hidden = hidden_pair(mask, mask_offset, batch, i, j, t, s, dims);
        let score = select(hidden, f32::new(HIDDEN), dot);
        let m_new = select(score > m, score, m);
        let correction = (m - m_new).exp();
        let p = (score - m_new).exp();
        l = l * correction + p;
        let v_base = (batch * s + j) * e;
        #[unroll]
        for c in 0..e {
            acc[c] = acc[c] * correction + p * v[v_base + c];
        }
        m = m_new;
    }
    if i_raw < t {
        let o_base = (batch * t + i) * e;
        let inv = 1.0f32 / l;
        #[unroll]
        for c in 0..e {
            out[o_base + c] = acc[c] * inv;
        }
        stats[(batch * t + i) * 2] = m;
        stats[(batch * t + i) * 2 + 1] = l;
    }
}

/// Backward, one unit per query: `dq [N, T, d]` and `delta [N, T]` (`D_i = dO_i·o_i`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_backward_query(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    mask: &Tensor<f32>,
    out: &Array<f32>,
    d_out: &Array<f32>,
    stats: &Array<f32>,
    dq: &mut Array<f32>,
    delta: &mut Array<f32>,
    t: u32,
    s: u32,
    scale: f32,
    mask_offset: u32,
    #[comptime] dims: AttentionDims,
) {
    let (t, s) = (t as usize, s as usize);
    let (d, e) = (dims.d as usize, dims.e as usize);
    let batch = CUBE_POS_Y as usize;
    let first = (CUBE_POS_X * CUBE_DIM_X) as usize;
    let i_raw = first + UNIT_POS_X as usize;
    let i = min_index(i_raw, t - 1);
    let row = batch * t + i;
    let mut q_reg = Array::<f32>::new(comptime!(dims.d as usize));
    #[unroll]
    for c in 0..d {
        q_reg[c] = q[row * d + c] * scale;
    }
    let mut do_reg = Array::<f32>::new(comptime!(dims.e as usize));
    let mut big_d = 0.0f32;
    #[unroll]
    for c in 0..e {
        do_reg[c] = d_out[row * e + c];
        big_d += do_reg[c] * out[row * e + c];
    }
    let mut acc = Array::<f32>::new(comptime!(dims.d as usize));
    #[unroll]
    for c in 0..d {
        acc[c] = 0.0;
    }
    let (row_max, row_inv_sum) = (stats[row * 2], 1.0f32 / stats[row * 2 + 1]);
    let visit = keys_to_visit(first, t, s, dims);
    for j in 0..visit {
        let k_base = (batch * s + j) * d;
        let v_base = (batch * s + j) * e;
        let mut dot = 0.0f32;
        #[unroll]
        for c in 0..d {
            dot += q_reg[c] * k[k_base + c];
        }
        let mut dp = 0.0f32;
        #[unroll]
        for c in 0..e {
            dp += do_reg[c] * v[v_base + c];
        }
        let hidden = hidden_pair(mask, mask_offset, batch, i, j, t, s, dims);
        let (_, ds) = pair_grads(dot, dp, hidden, row_max, row_inv_sum, big_d, scale);
        #[unroll]
        for c in 0..d {
            acc[c] += ds * k[k_base + c];
        }
    }
    if i_raw < t {
        #[unroll]
        for c in 0..d {
            dq[row * d + c] = acc[c];
        }
        delta[row] = big_d;
    }
}

/// Backward, one unit per key: `dk [N, S, d]` and `dv [N, S, e]`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn flash_attention_backward_key(
    q: &Array<f32>,
    k: &Array<f32>,
    v: &Array<f32>,
    mask: &Tensor<f32>,
    d_out: &Array<f32>,
    stats: &Array<f32>,
    delta: &Array<f32>,
    dk: &mut Array<f32>,
    dv: &mut Array<f32>,
    t: u32,
    s: u32,
    scale: f32,
    mask_offset: u32,
    #[comptime] dims: AttentionDims,
) {
    let (t, s) = (t as usize, s as usize);
    let (d, e) = (dims.d as usize, dims.e as usize);
    let batch = CUBE_POS_Y as usize;
    let first = (CUBE_POS_X * CUBE_DIM_X) as usize;
    let j_raw = first + UNIT_POS_X as usize;
    let j = min_index(j_raw, s - 1);
    let key = batch * s + j;
    let mut k_reg = Array::<f32>::new(comptime!(dims.d as usize));
    #[unroll]
    for c in 0..d {
        k_reg[c] = k[key * d + c] * scale;
    }
    let mut v_reg = Array::<f32>::new(comptime!(dims.e as usize));
    #[unroll]
    for c in 0..e {
        v_reg[c] = v[key * e + c];
    }
    let mut dk_acc = Array::<f32>::new(comptime!(dims.d as usize));
    #[unroll]
    for c in 0..d {
        dk_acc[c] = 0.0;
    }
    let mut dv_acc = Array::<f32>::new(comptime!(dims.e as usize));
    #[unroll]
    for c in 0..e {
        dv_acc[c] = 0.0;
    }
    // Causal without a mask: queries before the block's first key see none of its keys.
    let start = if comptime!(dims.causal && !dims.masked) {
        min_index(first, t)
    } else {
        0usize.runtime()
    };
    for i in start..t {
        let row = batch * t + i;
        let mut dot = 0.0f32;
        #[unroll]
        for c in 0..d {
            dot += k_reg[c] * q[row * d + c];
        }
        let mut dp = 0.0f32;
        #[unroll]
        for c in 0..e {
            dp += d_out[row * e + c] * v_reg[c];
        }
        let hidden = hidden_pair(mask, mask_offset, batch, i, j, t, s, dims);
        let inv_sum = 1.0f32 / stats[row * 2 + 1];
        let (p, ds) = pair_grads(dot, dp, hidden, stats[row * 2], inv_sum, delta[row], scale);
        #[unroll]
        for c in 0..e {
            dv_acc[c] += p * d_out[row * e + c];
        }
        #[unroll]
        for c in 0..d {
            dk_acc[c] += ds * q[row * d + c];
        }
    }
    if j_raw < s {
        #[unroll]
        for c in 0..d {
            dk[key * d + c] = dk_acc[c];
        }
        #[unroll]
        for c in 0..e {
            dv[key * e + c] = dv_acc[c];
        }
    }
}
