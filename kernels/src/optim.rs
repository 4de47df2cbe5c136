//! Fused optimizer updates: one pass reads the parameter, its gradient and the optimizer state,
//! writes the new parameter and updates the state in place.

// Every public item here is a `#[cube]` function, and `#[cube]` emits public items beside each one
// (its expansion or launcher module) that take no doc attributes: the lint is allowed per file.
#![allow(missing_docs)]

use cubecl::prelude::*;

/// SGD with momentum (PyTorch's convention), gradient scaled first (clipping) and L2 decay added:
/// `g = s·∇ + λ·p`, `b = μ_t·b + c_t·g` (`μ_t = 0`, `c_t = 1` on the first step), then
/// `p' = p − η·(g + μ·b)` with Nesterov or `p' = p − η·b` without.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn sgd_momentum_step<F: Float + CubeElement>(
    param: &Array<F>,
    grad: &Array<F>,
    buf: &mut Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    weight_decay: F,
    momentum_now: F,
    grad_coef: F,
    momentum: F,
    #[comptime] nesterov: bool,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        sgd_element(
            i,
            param,
            grad,
            buf,
            out,
            lr,
            grad_scale,
            weight_decay,
            momentum_now,
            grad_coef,
            momentum,
            true,
            nesterov,
        );
    }
}

/// The SGD update of element `i` (see [`sgd_momentum_step`]): with `with_momentum` the buffer
/// `buf[i]` is updated and stepped along, else `buf` is not touched and `p' = p − η·g`.
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgd_element<F: Float + CubeElement>(
    i: usize,
    param: &Array<F>,
    grad: &Array<F>,
    buf: &mut Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    weight_decay: F,
    momentum_now: F,
    grad_coef: F,
    momentum: F,
    #[comptime] with_momentum: bool,
    #[comptime] nesterov: bool,
) {
    let p = param[i];
    let g = grad[i] * grad_scale + weight_decay * p;
    if with_momentum {
        let b = momentum_now * buf[i] + grad_coef * g;
        buf[i] = b;
        let step = if nesterov { g + momentum * b } else { b };
        out[i] = p - lr * step;
    } else {
        out[i] = p - lr * g;
    }
}

/// Plain SGD: `p' = p − η·(s·∇ + λ·p)`.
#[cube(launch_unchecked)]
pub fn sgd_step<F: Float + CubeElement>(
    param: &Array<F>,
    grad: &Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    weight_decay: F,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let p = param[i];
        out[i] = p - lr * (grad[i] * grad_scale + weight_decay * p);
    }
}

/// Adam / AdamW: `g = s·∇ + λ₂·p`, `m = β₁m + (1−β₁)g`, `v = β₂v + (1−β₂)g²`,
/// `p' = (1 − η·λ_d)·p − η · (m / c₁) / (√(v / c₂) + ε)` with bias corrections `c_k = 1 − β_kᵗ`;
/// Adam couples the decay (`λ₂ = λ`, `λ_d = 0`), AdamW decouples it (`λ₂ = 0`, `λ_d = λ`).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn adam_step<F: Float + CubeElement>(
    param: &Array<F>,
    grad: &Array<F>,
    m: &mut Array<F>,
    v: &mut Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    l2_decay: F,
    decoupled_decay: F,
    beta1: F,
    beta2: F,
    bias_correction1: F,
    bias_correction2: F,
    eps: F,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        adam_element(
            i,
            param,
            grad,
            m,
            v,
            out,
            lr,
            grad_scale,
            l2_decay,
            decoupled_decay,
            beta1,
            beta2,
            bias_correction1,
            bias_correction2,
            eps,
        );
    }
}

/// [`adam_step`] with a step count per element: `t ← t + 1` in `steps`, then the bias corrections
/// `c_k = 1 − β_kᵗ` of that element (so elements whose counts were reset, e.g. replaced units,
/// restart their bias correction). Counts are f32, exact up to 2²⁴ steps.
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
pub fn adam_step_counted<F: Float + CubeElement>(
    param: &Array<F>,
    grad: &Array<F>,
    m: &mut Array<F>,
    v: &mut Array<F>,
    steps: &mut Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    l2_decay: F,
    decoupled_decay: F,
    beta1: F,
    beta2: F,
    eps: F,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let t = steps[i] + F::new(1.0);
        steps[i] = t;
        let c1 = F::new(1.0) - beta1.powf(t);
        let c2 = F::new(1.0) - beta2.powf(t);
        adam_element(
            i,
            param,
            grad,
            m,
            v,
            out,
            lr,
            grad_scale,
            l2_decay,
            decoupled_decay,
            beta1,
            beta2,
            c1,
            c2,
            eps,
        );
    }
}

/// The Adam update of element `i` with bias corrections `c1`, `c2`: writes `m[i]`, `v[i]` and the
/// new parameter `out[i]` (see [`adam_step`]).
#[cube]
#[allow(clippy::too_many_arguments)]
pub(crate) fn adam_element<F: Float + CubeElement>(
    i: usize,
    param: &Array<F>,
    grad: &Array<F>,
    m: &mut Array<F>,
    v: &mut Array<F>,
    out: &mut Array<F>,
    lr: F,
    grad_scale: F,
    l2_decay: F,
    decoupled_decay: F,
    beta1: F,
    beta2: F,
    c1: F,
    c2: F,
    eps: F,
) {
    let p = param[i];
    let g = grad[i] * grad_scale + l2_decay * p;
    let m_new = beta1 * m[i] + (F::new(1.0) - beta1) * g;
    let v_new = beta2 * v[i] + (F::new(1.0) - beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    let update = (m_new / c1) / (F::sqrt(v_new / c2) + eps);
    out[i] = p * (F::new(1.0) - lr * decoupled_decay) - lr * update;
}
