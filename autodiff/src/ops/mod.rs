//! Differentiable ops on [`Var`], one file per op family as in the runtime's `ops/`. Each forward runs the runtime's kernel; each backward rule is
//! written with `Var` ops, so gradients can be differentiated again. Rules that need the op's output
//! use the saved tensor when only first-order gradients are wanted, and recompute it as a `Var` from
//! the inputs when the sweep records (`create_graph`), so higher derivatives are exact.
//!
//! A rule returns a broadcast operand's gradient in the output's shape: the backward sweep sums it
//! back to the operand's shape ([`Var::sum_to`]), so no rule undoes broadcasting itself.
//!
//! **Fused first-order rules.** Where a rule is a chain of elementwise or row ops — the GELU, tanh,
//! sigmoid and ReLU derivatives, the cross-entropy's `(softmax − onehot)·g` — a first-order sweep
//! (not recording) runs one fused kernel instead of the chain; a recording sweep (`create_graph`)
//! keeps the chain of `Var` ops, so higher derivatives stay exact. `DYNLAB_FUSION=0`
//! ([`dynlab_runtime::settings::fusion`]) or [`with_fusion`] turns the fused rules off; the two
//! agree to a few ulps (a test trains with both).
//!
//! Why hand-fused kernels and not a generic elementwise fuser: counted with `Device::stats` (the
//! step bench's `DYNLAB_STEP_PROFILE=1`), a fused step of the grokking MLP is 13 launches — 5
//! matmuls (bias in their epilogue), 2 bias-gradient row sums, the loss, its gradient, GELU, its
//! derivative, the norm and the update — and no two elementwise launches are adjacent: each sits
//! between a matmul or a reduction, so a chain fuser would save none of them, while every new chain
//! signature would cost a shader compile at its first use. The chains that remain are the MSE tails of
//! the regression and TMS steps (10 of their 19 launches are elementwise); a fused MSE, like the
//! fused cross-entropy, is what would shorten them.

mod attention;
mod conv;
mod elementwise;
mod graph;
mod index;
mod matmul;
mod norm;
mod reduce;
mod softmax;
mod views;

use crate::var::{recording, Var};
use dynlab_runtime::{Error, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static FUSION: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Runs `f` with the fused first-order rules on or off on this thread (overriding
/// `DYNLAB_FUSION`), then restores the previous choice.
pub fn with_fusion<T>(on: bool, f: impl FnOnce() -> T) -> T {
    let previous = FUSION.with(|c| c.replace(Some(on)));
    let out = f();
    FUSION.with(|c| c.set(previous));
    out
}

/// Whether a rule may run its fused first-order kernel: fusion on, and the sweep not recording.
pub(super) fn fused() -> bool {
    !recording() && fusion_on()
}

/// Whether fusion is on (this thread's choice, else `DYNLAB_FUSION`): a forward op may then
/// compute its value with a fused kernel whose node's rule is still exact under `create_graph`.
pub(super) fn fusion_on() -> bool {
    FUSION
        .with(Cell::get)
        .unwrap_or_else(dynlab_runtime::settings::fusion)
}

/// The op's output for a rule: the saved tensor, or a recomputation on the tape when recording.
pub(super) fn output_for_rule(
    saved: &Tensor,
    recompute: impl FnOnce() -> Result<Var>,
) -> Result<Var> {
    if recording() {
        recompute()
    } else {
        Ok(Var::constant(saved.clone()))
    }
}

/// A 0/1 mask as a constant (its derivative is zero almost everywhere).
pub(super) fn mask(t: Tensor) -> Var {
    Var::constant(t)
}

/// `axis` (negative counts from the end) as an index below `rank`.
pub(super) fn normalize(axis: isize, rank: usize) -> Result<usize> {
    let a = if axis < 0 { axis + rank as isize } else { axis };
    if (0..rank as isize).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Error::Axis {
            op: "autodiff",
            axis,
            rank,
        })
    }
}
