//! The per-feature affine map `y = x̂ · γ + β` that follows a normalisation (layer or batch norm).

use crate::module::{Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Result, Tensor};

/// Scale `γ` and shift `β` per feature.
#[derive(Clone, Debug)]
pub struct Affine {
    /// `γ`, `[features]`, initialised to 1.
    pub gamma: Param,
    /// `β`, `[features]`, initialised to 0.
    pub beta: Param,
}

impl Affine {
    /// γ = 1, β = 0 for `features` features.
    pub fn new(features: usize, device: &Device) -> Result<Affine> {
        Ok(Affine {
            gamma: Param::new(Tensor::ones(&[features], device)?, ParamKind::Norm),
            beta: Param::new(Tensor::zeros(&[features], device)?, ParamKind::Norm),
        })
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        let shape = self.gamma.value().shape();
        shape[shape.len() - 1]
    }

    /// `x̂ · γ + β` with γ and β reshaped to `shape` for broadcasting.
    pub fn apply(&self, normalised: &Var, shape: &[isize]) -> Result<Var> {
        normalised
            .mul(&self.gamma.var().reshape(shape)?)?
            .add(&self.beta.var().reshape(shape)?)
    }

    /// `gamma` and `beta` as parameters of the layer that owns this map.
    pub fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param("gamma", &self.gamma)
            .param("beta", &self.beta)
    }

    /// The same, mutable.
    pub fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("gamma", &mut self.gamma)
            .param("beta", &mut self.beta)
    }
}
