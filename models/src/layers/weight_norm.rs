//! Weight normalisation (Salimans & Kingma 2016): a weight re-parameterised per output unit as
//! `w = g · v / ‖v‖`, where the norm runs over everything but the output axis. For a `Linear`
//! weight `[in, out]` the output axis is 1; for a convolution weight `[O, C, KH, KW]` it is 0.

use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result};

/// `g · v / ‖v‖` with one norm (and one `g`) per index of `output_axis`; `g` has `v`'s shape with
/// every other axis of size 1.
pub fn weight_norm(v: &Var, g: &Var, output_axis: usize) -> Result<Var> {
    let rank = v.shape().len();
    let expected: Vec<usize> = (0..rank)
        .map(|d| if d == output_axis { v.shape()[d] } else { 1 })
        .collect();
    if output_axis >= rank || g.shape() != expected.as_slice() {
        return Err(Error::shape(
            "weight_norm",
            format!(
                "v {:?}, g {:?}, output axis {output_axis}",
                v.shape(),
                g.shape()
            ),
            format!("g {expected:?}"),
        ));
    }
    v.mul(&g.div(&unit_norms(v, output_axis)?)?)
}

/// The `g` that makes `weight_norm(v, g, axis)` equal `v` (the usual initialisation): `‖v‖` per unit.
pub fn weight_norm_init(v: &Var, output_axis: usize) -> Result<Var> {
    Ok(unit_norms(v, output_axis)?.detach())
}

/// `‖v‖` over every axis but `output_axis`, kept as size-1 axes (one norm per output unit).
fn unit_norms(v: &Var, output_axis: usize) -> Result<Var> {
    let mut sq = v.square()?;
    for d in (0..v.shape().len()).filter(|&d| d != output_axis) {
        sq = sq.sum(d as isize, true)?;
    }
    sq.sqrt()
}
