//! Fused layer normalisation over the last axis, forward and backward (equations in
//! `dynlab_kernels::norm`). The forward returns `(μ, 1/√(σ² + ε))` per row for the backward.

use super::rows::Rows;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{grid, launch, placeholder, units_grid};
use crate::tensor::Tensor;
use cubecl::prelude::*;
use dynlab_kernels::norm::{layer_norm_backward, layer_norm_forward, layer_norm_param_grads};

/// What [`Tensor::layer_norm`] returns.
#[derive(Clone, Debug)]
pub struct LayerNormOutput {
    /// `x̂ γ + β`, the input's shape.
    pub y: Tensor,
    /// `[rows, 2]`: the mean and the inverse standard deviation of every row.
    pub stats: Tensor,
}

/// What [`Tensor::layer_norm_backward`] returns.
#[derive(Clone, Debug)]
pub struct LayerNormGrads {
    /// Gradient with respect to the input, shaped like it.
    pub dx: Tensor,
    /// `[D]` each; `None` without an affine map.
    pub dgamma: Option<Tensor>,
    /// `[D]`; `None` without an affine map.
    pub dbeta: Option<Tensor>,
}

/// Rows of `x` and the launch shape (`block = 1`: one unit per row).
struct Geometry {
    rows: usize,
    dim: usize,
    block: u32,
}

fn geometry(op: &'static str, x: &Tensor, affine: Option<(&Tensor, &Tensor)>) -> Result<Geometry> {
    x.expect_f32(op)?;
    if x.rank() == 0 || x.shape()[x.rank() - 1] == 0 {
        return Err(Error::shape(
            op,
            format!("input {:?}", x.shape()),
            "[..., D] with D >= 1 features",
        ));
    }
    let rows = Rows::new(op, x, -1)?;
    if let Some((gamma, beta)) = affine {
        for (name, p) in [("gamma", gamma), ("beta", beta)] {
            p.expect_f32(op)?;
            p.expect_same_device(op, x)?;
            if p.shape() != [rows.row_len] {
                return Err(Error::shape(
                    op,
                    format!("{name} {:?} for input {:?}", p.shape(), x.shape()),
                    format!("[{}]", rows.row_len),
                ));
            }
        }
    }
    Ok(Geometry {
        rows: rows.rows,
        dim: rows.row_len,
        block: rows.cube_block().unwrap_or(1),
    })
}

impl Geometry {
    fn launch_shape(&self) -> (CubeCount, CubeDim) {
        if self.block == 1 {
            units_grid(self.rows)
        } else {
            (grid(self.rows), CubeDim::new_1d(self.block))
        }
    }
}

/// γ and β as contiguous buffers, or 1-element placeholders without an affine map.
fn affine_buffers(affine: Option<(&Tensor, &Tensor)>, x: &Tensor) -> Result<(Tensor, Tensor)> {
    match affine {
        Some((g, b)) => Ok((g.contiguous_from_zero()?, b.contiguous_from_zero()?)),
        None => {
            let unused = placeholder(&x.device, DType::F32)?;
            Ok((unused.clone(), unused))
        }
    }
}

impl Tensor {
    /// Layer normalisation over the last axis, `y = (x − μ) / √(σ² + ε) · γ + β` (σ² biased),
    /// in one launch; `affine = Some((γ, β))` with both `[D]`.
    pub fn layer_norm(
        &self,
        affine: Option<(&Tensor, &Tensor)>,
        eps: f32,
    ) -> Result<LayerNormOutput> {
        let op = "Tensor::layer_norm";
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(Error::value(op, format!("eps={eps}"), "finite eps >= 0"));
        }
        let g = geometry(op, self, affine)?;
        let x = self.contiguous_from_zero()?;
        let (gamma, beta) = affine_buffers(affine, self)?;
        let y = Tensor::alloc(op, self.shape(), DType::F32, &self.device)?;
        let stats = Tensor::alloc(op, &[g.rows, 2], DType::F32, &self.device)?;
        if g.rows > 0 {
            let (count, dim) = g.launch_shape();
            launch!(
                self.device,
                layer_norm_forward::<f32>,
                count,
                dim,
                x.buffer_arg(),
                gamma.buffer_arg(),
                beta.buffer_arg(),
                y.buffer_arg(),
                stats.buffer_arg(),
                g.rows as u32,
                g.dim as u32,
                eps,
                affine.is_some(),
                g.block
            );
        }
        Ok(LayerNormOutput { y, stats })
    }

    /// Gradients of [`Tensor::layer_norm`] given `self = ∂L/∂y`, the input `x`, the same `affine`
    /// and the forward's `stats`.
    pub fn layer_norm_backward(
        &self,
        x: &Tensor,
        affine: Option<(&Tensor, &Tensor)>,
        stats: &Tensor,
    ) -> Result<LayerNormGrads> {
        let op = "Tensor::layer_norm_backward";
        let g = geometry(op, x, affine)?;
        self.expect_f32(op)?;
        self.expect_same_device(op, x)?;
        stats.expect_f32(op)?;
        if self.shape() != x.shape() || stats.shape() != [g.rows, 2] {
            return Err(Error::shape(
                op,
                format!(
                    "dy {:?}, x {:?}, stats {:?}",
                    self.shape(),
                    x.shape(),
                    stats.shape()
                ),
                format!("dy and x of one shape and stats [{}, 2]", g.rows),
            ));
        }
        let (dy, x, stats) = (
            self.contiguous_from_zero()?,
            x.contiguous_from_zero()?,
            stats.contiguous_from_zero()?,
        );
        let (gamma, _) = affine_buffers(affine, &x)?;
        let dx = Tensor::alloc(op, x.shape(), DType::F32, &x.device)?;
        if g.rows > 0 {
            let (count, dim) = g.launch_shape();
            launch!(
                x.device,
                layer_norm_backward::<f32>,
                count,
                dim,
                dy.buffer_arg(),
                x.buffer_arg(),
                gamma.buffer_arg(),
                stats.buffer_arg(),
                dx.buffer_arg(),
                g.rows as u32,
                g.dim as u32,
                affine.is_some(),
                g.block
            );
        }
        let (dgamma, dbeta) = match affine {
            Some(_) => {
                let (dgamma, dbeta) = layer_norm_param_grads_of(op, &dy, &x, &stats, &g)?;
                (Some(dgamma), Some(dbeta))
            }
            None => (None, None),
        };
        Ok(LayerNormGrads { dx, dgamma, dbeta })
    }
}

/// `dγ = Σ_rows dy x̂`, `dβ = Σ_rows dy` (one unit per feature).
fn layer_norm_param_grads_of(
    op: &'static str,
    dy: &Tensor,
    x: &Tensor,
    stats: &Tensor,
    g: &Geometry,
) -> Result<(Tensor, Tensor)> {
    let dgamma = Tensor::alloc(op, &[g.dim], DType::F32, &x.device)?;
    let dbeta = Tensor::alloc(op, &[g.dim], DType::F32, &x.device)?;
    let (count, dim) = units_grid(g.dim);
    launch!(
        x.device,
        layer_norm_param_grads::<f32>,
        count,
        dim,
        dy.buffer_arg(),
        x.buffer_arg(),
        stats.buffer_arg(),
        dgamma.buffer_arg(),
        dbeta.buffer_arg(),
        g.rows as u32,
        g.dim as u32
    );
    Ok((dgamma, dbeta))
}
