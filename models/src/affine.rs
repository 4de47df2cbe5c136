//! The per-feature affine map `y = x̂ · γ + β` that follows a normalisation (layer or batch norm).

use crate::module::{Module, Param, ParamKind};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Result, Tensor};

#[derive(Clone, Debug)]
pub struct Affine {
    pub gamma: Param,
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

    pub fn features(&self) -> usize {
        self.gamma.value().shape()[0]
    }

    /// `x̂ · γ + β` with γ and β reshaped to `shape` for broadcasting.
    pub fn apply(&self, normalised: &Var, shape: &[isize]) -> Result<Var> {
        normalised
            .mul(&self.gamma.var().reshape(shape)?)?
            .add(&self.beta.var().reshape(shape)?)
    }
}

impl Module for Affine {
    fn params(&self) -> Vec<(String, &Param)> {
        vec![
            ("gamma".to_string(), &self.gamma),
            ("beta".to_string(), &self.beta),
        ]
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        vec![
            ("gamma".to_string(), &mut self.gamma),
            ("beta".to_string(), &mut self.beta),
        ]
    }
}
