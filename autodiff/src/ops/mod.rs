//! Differentiable ops on [`Var`], one file per op family as in the runtime's `ops/`. Each forward runs the runtime's kernel; each backward rule is
//! written with `Var` ops, so gradients can be differentiated again. Rules that need the op's output
//! use the saved tensor when only first-order gradients are wanted, and recompute it as a `Var` from
//! the inputs when the sweep records (`create_graph`), so higher derivatives are exact.
//!
//! A rule returns a broadcast operand's gradient in the output's shape: the backward sweep sums it
//! back to the operand's shape ([`Var::sum_to`]), so no rule undoes broadcasting itself.

mod attention;
mod conv;
mod elementwise;
mod index;
mod matmul;
mod norm;
mod reduce;
mod softmax;
mod views;

use crate::var::{recording, Var};
use dynlab_runtime::{Error, Result, Tensor};

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
