//! Layer normalisation (Ba et al. 2016) over the last axis:
//! `y = (x − μ) / √(σ² + ε) · γ + β`, with μ and σ² (biased) over the last `dim` features, through
//! the fused kernels ([`Var::layer_norm`]).

use crate::affine::Affine;
use crate::module::{Module, Param};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result};

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub affine: Affine,
    pub eps: f32,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f32, device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            affine: Affine::new(dim, device)?,
            eps,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let dim = self.affine.features();
        if x.shape().last() != Some(&dim) {
            return Err(Error::shape(
                "LayerNorm::forward",
                format!("input {:?}", x.shape()),
                format!("[..., {dim}]"),
            ));
        }
        let (gamma, beta) = (self.affine.gamma.var(), self.affine.beta.var());
        x.layer_norm(Some((gamma, beta)), self.eps)
    }
}

impl Module for LayerNorm {
    fn params(&self) -> Vec<(String, &Param)> {
        self.affine.params()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        self.affine.params_mut()
    }
}
