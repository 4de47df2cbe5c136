//! Kernels over several tensors at once (a model's parameters or gradients), so that a step's
//! optimizer update, gradient norm and statistics are one launch each instead of one (or a dozen)
//! per parameter. The tensors arrive as a `Sequence` of arrays — one binding each, the count fixed at
//! compile time (the launcher splits long lists into chunks that fit the device's bindings) — and
//! every unit handles element `i` of each tensor that has one.
//!
//! - [`sum_squares`]: `Σ_k Σ_i x_k[i]²` in one cube (a strided pass per unit, then a shared-memory
//!   tree), written to `out[slot]`.
//! - [`adam_multi`]: Adam/AdamW of every tensor, with per-tensor learning rate, decay and bias
//!   corrections from a small host-built table, and the gradient-norm clip factor computed on the
//!   device from the norm (no read-back): `s = min(1, c / (‖g‖ + 1e-6))`.
//! - [`sgd_multi`]: plain SGD and SGD with momentum, the same way.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use crate::reduce::cube_sum;
use cubecl::prelude::*;

/// Units of the one cube that [`sum_squares`] runs.
pub const SUM_BLOCK: u32 = 256;

/// `out[slot] = Σ_k Σ_i x_k[i]²` over the tensors of `xs` (its square root with `root`), in one
/// cube of [`SUM_BLOCK`] units.
#[cube(launch_unchecked)]
pub fn sum_squares<F: Float>(
    xs: &Sequence<Array<F>>,
    out: &mut Array<F>,
    slot: u32,
    #[comptime] root: bool,
) {
    let mut shared = SharedMemory::<F>::new(SUM_BLOCK as usize);
    let mut partial = F::new(0.0);
    #[unroll]
    for k in 0..xs.len() {
        let x = xs.index(k);
        let mut i = UNIT_POS as usize;
        while i < x.len() {
            let v = x[i];
            partial += v * v;
            i += SUM_BLOCK as usize;
        }
    }
    let total = cube_sum::<F>(partial, &mut shared, SUM_BLOCK);
    if UNIT_POS == 0 {
        if root {
            out[slot as usize] = F::sqrt(total);
        } else {
            out[slot as usize] = total;
        }
    }
}

/// The gradient scale: `min(1, clip / (norm[0] + 1e-6))` when `clip > 0`, else `grad_scale`.
#[cube]
fn clip_factor<F: Float>(norm: &Array<F>, clip: F, grad_scale: F) -> F {
    let mut s = grad_scale;
    if clip > F::new(0.0) {
        s = F::min(F::new(1.0), clip / (norm[0] + F::new(1e-6)));
    }
    s
}

/// Adam/AdamW over every tensor: `table[8k..8k+5] = (lr_k, l2_k, decoupled_k, 1 − β₁ᵗ, 1 − β₂ᵗ)`
/// for tensor `k` (the bias corrections of its step `t`); the update is that of
/// `optim::adam_step` with the gradient multiplied by the clip factor. With `counted`, the
/// corrections come from per-element step counts instead (`steps`, incremented here; with
/// `counted` off it is not read and may be any sequence).
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
    #[comptime] counted: bool,
) {
    let scale = clip_factor::<F>(norm, clip, grad_scale);
    let i = ABSOLUTE_POS;
    #[unroll]
    for k in 0..params.len() {
        let out = outs.index_mut(k);
        if i < out.len() {
            let t = 8 * k;
            let (lr, l2, decoupled) = (table[t], table[t + 1], table[t + 2]);
            let mut c1 = table[t + 3];
            let mut c2 = table[t + 4];
            if counted {
                let counts = steps.index_mut(k);
                let n = counts[i] + F::new(1.0);
                counts[i] = n;
                c1 = F::new(1.0) - beta1.powf(n);
                c2 = F::new(1.0) - beta2.powf(n);
            }
            let p = params.index(k)[i];
            let g = grads.index(k)[i] * scale + l2 * p;
            let m = ms.index_mut(k);
            let v = vs.index_mut(k);
            let m_new = beta1 * m[i] + (F::new(1.0) - beta1) * g;
            let v_new = beta2 * v[i] + (F::new(1.0) - beta2) * g * g;
            m[i] = m_new;
            v[i] = v_new;
            let update = (m_new / c1) / (F::sqrt(v_new / c2) + eps);
            out[i] = p * (F::new(1.0) - lr * decoupled) - lr * update;
        }
    }
}

/// SGD over every tensor (PyTorch's convention, as `optim::sgd_momentum_step` and
/// `optim::sgd_step`): `table[4k..4k+4] = (lr_k, λ_k, μ_now_k, c_k)` with `μ_now = 0`, `c = 1` on a
/// buffer's first step; with `momentum` the buffers `bufs` are updated (else not read), and
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
    #[comptime] momentum: bool,
    #[comptime] nesterov: bool,
) {
    let scale = clip_factor::<F>(norm, clip, grad_scale);
    let i = ABSOLUTE_POS;
    #[unroll]
    for k in 0..params.len() {
        let out = outs.index_mut(k);
        if i < out.len() {
            let t = 4 * k;
            let (lr, decay) = (table[t], table[t + 1]);
            let p = params.index(k)[i];
            let g = grads.index(k)[i] * scale + decay * p;
            if momentum {
                let buf = bufs.index_mut(k);
                let b = table[t + 2] * buf[i] + table[t + 3] * g;
                buf[i] = b;
                let step = if nesterov { g + mu * b } else { b };
                out[i] = p - lr * step;
            } else {
                out[i] = p - lr * g;
            }
        }
    }
}
