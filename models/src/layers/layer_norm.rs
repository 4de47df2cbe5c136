//! Layer normalisation (Ba et al. 2016) over the last axis:
//! `y = (x − μ) / √(σ² + ε) · γ + β`, with μ and σ² (biased) over the last `dim` features, through
//! the fused kernels ([`Var::layer_norm`]).

use crate::layers::Affine;
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::replicas::replica_axis;
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result};

/// Normalises the last axis, then scales and shifts it.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `γ`, `β`.
    pub affine: Affine,
    /// Whether `γ`, `β` are applied and trained (PyTorch's `elementwise_affine`); without, the
    /// layer has no parameters.
    pub elementwise_affine: bool,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// γ = 1, β = 0 over `dim` features.
    pub fn new(dim: usize, eps: f32, device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            affine: Affine::new(dim, device)?,
            elementwise_affine: true,
            eps,
        })
    }

    /// Normalisation only, over `dim` features (no `γ`, `β`).
    pub fn without_affine(dim: usize, eps: f32, device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            elementwise_affine: false,
            ..LayerNorm::new(dim, eps, device)?
        })
    }
}

impl Module for LayerNorm {
    /// `[..., dim] → [..., dim]`; with `R` replicas `[R, ..., dim]`, each replica scaled and
    /// shifted by its own `γ`, `β` (`[R, dim]`).
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let op = "LayerNorm::forward";
        let replicas = replica_axis(ctx, op, x.shape())?;
        let dim = self.affine.features();
        if x.shape().last() != Some(&dim) {
            return Err(Error::shape(
                op,
                format!("input {:?}", x.shape()),
                format!("[..., {dim}]"),
            ));
        }
        if !self.elementwise_affine {
            return x.layer_norm(None, self.eps);
        }
        let (gamma, beta) = (self.affine.gamma.var(), self.affine.beta.var());
        let Some(r) = replicas else {
            return x.layer_norm(Some((gamma, beta)), self.eps);
        };
        // γ, β `[R, dim]` as `[R, 1, …, 1, dim]` against the input.
        let mut shape = vec![1isize; x.shape().len()];
        shape[0] = r as isize;
        shape[x.shape().len() - 1] = dim as isize;
        let normalised = x.layer_norm(None, self.eps)?;
        normalised
            .mul(&gamma.reshape(&shape)?)?
            .add(&beta.reshape(&shape)?)
    }

    fn replicable(&self) -> bool {
        true
    }

    fn parts(&self) -> Parts<'_> {
        if self.elementwise_affine {
            self.affine.parts()
        } else {
            Parts::default()
        }
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        if self.elementwise_affine {
            self.affine.parts_mut()
        } else {
            PartsMut::default()
        }
    }
}
