//! Kernels over several tensors at once (a model's parameters or gradients), so that a step's
//! optimizer update, gradient norm and statistics are one launch each instead of one (or a dozen)
//! per parameter. The tensors arrive as a `Sequence` of arrays — one binding each, the count fixed at
//! compile time (the launcher splits long lists into chunks that fit the device's bindings) — and
//! every unit handles element `i` of each tensor that has one.
//!
//! - [`sum_squares`]: `Σ_k Σ_i x_k[i]²` in one cube (a strided pass per unit, then a shared-memory
//!   tree), written to `out[slot]`.
//!
//! Replicas: every kernel takes `replicas = R`, the number of models stacked along each tensor's
//! leading axis (1 for a single model). Element `i` of tensor `k` belongs to replica
//! `r = i / (len_k / R)`; the sums run one cube per replica, and the updates read the table row of
//! `(k, r)` and replica `r`'s gradient norm, so replicas never mix.
//! - [`adam_multi`]: Adam/AdamW of every tensor, with per-tensor learning rate, decay and bias
//!   corrections from a small host-built table, and the gradient-norm clip factor computed on the
//!   device from the norm (no read-back): `s = min(1, c / (‖g‖ + 1e-6))`.
//! - [`sgd_multi`]: plain SGD and SGD with momentum, the same way.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::optim::{adam_element, sgd_element};
use crate::reduce::{cube_max, cube_sum};
use cubecl::prelude::*;

/// Units of the one cube that [`sum_squares`] runs.
pub const SUM_BLOCK: u32 = 256;

/// `out[slot·R + r] = Σ_k Σ_i x_k[r·n_k + i]²` (`n_k = len_k / R`) over the tensors of `xs` (its
/// square root with `root`): cube `r` of `R = replicas` sums replica `r`, with [`SUM_BLOCK`] units.
#[cube(launch_unchecked)]
pub fn sum_squares<F: Float>(
    xs: &Sequence<Array<F>>,
    out: &mut Array<F>,
    slot: u32,
    replicas: u32,
    #[comptime] root: bool,
) {
    let mut shared = SharedMemory::<F>::new(SUM_BLOCK as usize);
    let r = CUBE_POS_X as usize;
    let mut partial = F::new(0.0);
    #[unroll]
    for k in 0..xs.len() {
        let x = xs.index(k);
        let n = x.len() / replicas as usize;
        let mut i = UNIT_POS as usize;
        while i < n {
            let v = x[r * n + i];
            partial += v * v;
            i += SUM_BLOCK as usize;
        }
    }
    let total = cube_sum::<F>(partial, &mut shared, SUM_BLOCK);
    if UNIT_POS == 0 {
        let at = slot as usize * replicas as usize + r;
        if root {
            out[at] = F::sqrt(total);
        } else {
            out[at] = total;
        }
    }
}

/// Replica of element `i` of a tensor of `len` elements stacked over `replicas` models.
#[cube]
fn replica_of(i: usize, len: usize, replicas: u32) -> usize {
    i / (len / replicas as usize)
}

/// The gradient scale of replica `r`: `min(1, clip / (norm[r] + 1e-6))` when `clip > 0`, else
/// `grad_scale`.
#[cube]
fn clip_factor<F: Float>(norm: &Array<F>, r: usize, clip: F, grad_scale: F) -> F {
    let mut s = grad_scale;
    if clip > F::new(0.0) {
        s = F::min(F::new(1.0), clip / (norm[r] + F::new(1e-6)));
    }
    s
}

/// Adam/AdamW over every tensor: row `j = k·R + r` of the table, `table[8j..8j+5] = (lr, l2,
/// decoupled, 1 − β₁ᵗ, 1 − β₂ᵗ)`, holds tensor `k`'s hyperparameters for replica `r` (and the bias
/// corrections of its step `t`); the update is that of `optim::adam_step` with the gradient
/// multiplied by the replica's clip factor. With `counted`, the
/// corrections come from per-element step counts instead (`steps`, incremented here; with
/// `counted` off it is not read and may be any sequence). With `counted` and `reference_gnt`, the
/// update is the reference AdamGnT's (`lop/utils/AdamGnT.py`): `θ −= lr·(1 − β₂ⁿ)·m / (√v + ε)`, no
/// first-moment correction (`c₁ = 1/(1 − β₂ⁿ)`, `c₂ = 1`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn adam_multi<F: Float + CubeElement>(
    params: &Sequence<Array<F>>,
    grads: &Sequence<Array<F>>,
    ms: &mut Sequence<Array<F>>,
    vs: &mut Sequence<Array<F>>,
    steps: &mut Sequence<Array<F>>,
    outs: &mut Sequence<Array<F>>,
    table: &Array<F>,
    norm: &Array<F>,
    clip: F,
    grad_scale: F,
    beta1: F,
    beta2: F,
    eps: F,
    replicas: u32,
    #[comptime] counted: bool,
    #[comptime] reference_gnt: bool,
) {
    let i = ABSOLUTE_POS;
    #[unroll]
    for k in 0..params.len() {
        let out = outs.index_mut(k);
        if i < out.len() {
            let r = replica_of(i, out.len(), replicas);
            let scale = clip_factor::<F>(norm, r, clip, grad_scale);
            let t = 8 * (k * replicas as usize + r);
            let (lr, l2, decoupled) = (table[t], table[t + 1], table[t + 2]);
            let mut c1 = table[t + 3];
            let mut c2 = table[t + 4];
            if counted {
                let counts = steps.index_mut(k);
                let n = counts[i] + F::new(1.0);
                counts[i] = n;
                if reference_gnt {
                    c1 = F::new(1.0) / (F::new(1.0) - beta2.powf(n));
                    c2 = F::new(1.0);
                } else {
                    c1 = F::new(1.0) - beta1.powf(n);
                    c2 = F::new(1.0) - beta2.powf(n);
                }
            }
            adam_element(
                i,
                params.index(k),
                grads.index(k),
                ms.index_mut(k),
                vs.index_mut(k),
                out,
                lr,
                scale,
                l2,
                decoupled,
                beta1,
                beta2,
                c1,
                c2,
                eps,
            );
        }
    }
}

/// SGD over every tensor (PyTorch's convention, as `optim::sgd_momentum_step` and
/// `optim::sgd_step`): row `j = k·R + r` of the table, `table[4j..4j+4] = (lr, λ, μ_now, c)`, holds
/// tensor `k`'s values for replica `r`, with `μ_now = 0`, `c = 1` on a buffer's first step; with `momentum` the buffers `bufs` are updated (else not read), and
/// `nesterov` steps `g + μ·b`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn sgd_multi<F: Float + CubeElement>(
    params: &Sequence<Array<F>>,
    grads: &Sequence<Array<F>>,
    bufs: &mut Sequence<Array<F>>,
    outs: &mut Sequence<Array<F>>,
    table: &Array<F>,
    norm: &Array<F>,
    clip: F,
    grad_scale: F,
    mu: F,
    replicas: u32,
    #[comptime] momentum: bool,
    #[comptime] nesterov: bool,
) {
    let i = ABSOLUTE_POS;
    #[unroll]
    for k in 0..params.len() {
        let out = outs.index_mut(k);
        if i < out.len() {
            let r = replica_of(i, out.len(), replicas);
            let scale = clip_factor::<F>(norm, r, clip, grad_scale);
            let t = 4 * (k * replicas as usize + r);
            sgd_element(
                i,
                params.index(k),
                grads.index(k),
                bufs.index_mut(k),
                out,
                table[t],
                scale,
                table[t + 1],
                table[t + 2],
                table[t + 3],
                mu,
                momentum,
                nesterov,
            );
        }
    }
}

/// Adam's statistics over every tensor, one cube of [`SUM_BLOCK`] units per replica: with row
/// `j = k·R + r` of the table, `table[8j..8j+5] = (1 − β₁ᵗ, 1 − β₂ᵗ, decayed, λ, lr)` for tensor `k`
/// in replica `r`, `d = √(v/c₂) + ε` and `ρ = |m/c₁| / d`, cube `r` writes
/// `out[5(slot·R + r)..][..5] = (Σ lr/d, max lr/d, Σ ρ, Σ decayed·lr²·ρ², Σ lr²λ²·p²)`.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn adam_stats<F: Float + CubeElement>(
    ms: &Sequence<Array<F>>,
    vs: &Sequence<Array<F>>,
    params: &Sequence<Array<F>>,
    table: &Array<F>,
    out: &mut Array<F>,
    eps: F,
    slot: u32,
    replicas: u32,
) {
    let mut shared = SharedMemory::<F>::new(SUM_BLOCK as usize);
    let r = CUBE_POS_X as usize;
    let mut eff_sum = F::new(0.0);
    let mut eff_max = F::new(0.0);
    let mut ratio_sum = F::new(0.0);
    let mut update_sq = F::new(0.0);
    let mut decay_sq = F::new(0.0);
    #[unroll]
    for k in 0..ms.len() {
        let (m, v, p) = (ms.index(k), vs.index(k), params.index(k));
        let t = 8 * (k * replicas as usize + r);
        let (c1, c2, decayed, decay) = (table[t], table[t + 1], table[t + 2], table[t + 3]);
        let lr = table[t + 4];
        let n = m.len() / replicas as usize;
        let mut j = UNIT_POS as usize;
        while j < n {
            let i = r * n + j;
            let d = F::sqrt(v[i] / c2) + eps;
            let eff = lr / d;
            let ratio = F::abs(m[i] / c1) / d;
            eff_sum += eff;
            eff_max = F::max(eff_max, eff);
            ratio_sum += ratio;
            update_sq += decayed * lr * lr * ratio * ratio;
            decay_sq += lr * lr * decay * decay * p[i] * p[i];
            j += SUM_BLOCK as usize;
        }
    }
    let base = 5 * (slot as usize * replicas as usize + r);
    let eff_sum = cube_sum::<F>(eff_sum, &mut shared, SUM_BLOCK);
    let eff_max = cube_max::<F>(eff_max, &mut shared, SUM_BLOCK);
    let ratio_sum = cube_sum::<F>(ratio_sum, &mut shared, SUM_BLOCK);
    let update_sq = cube_sum::<F>(update_sq, &mut shared, SUM_BLOCK);
    let decay_sq = cube_sum::<F>(decay_sq, &mut shared, SUM_BLOCK);
    if UNIT_POS == 0 {
        out[base] = eff_sum;
        out[base + 1] = eff_max;
        out[base + 2] = ratio_sum;
        out[base + 3] = update_sq;
        out[base + 4] = decay_sq;
    }
}
