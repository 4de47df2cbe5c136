//! Layer normalisation (Ba et al. 2016) over the last axis:
//! `y = (x − μ) / √(σ² + ε) · γ + β`, with μ and σ² (biased) over the last `dim` features.

use crate::module::{Module, Param, ParamKind};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Tensor};

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub gamma: Param,
    pub beta: Param,
    pub eps: f32,
}

impl LayerNorm {
    pub fn new(dim: usize, eps: f32, device: &Device) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: Param::new(Tensor::ones(&[dim], device)?, ParamKind::Norm),
            beta: Param::new(Tensor::zeros(&[dim], device)?, ParamKind::Norm),
            eps,
        })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        let dim = self.gamma.value().shape()[0];
        if x.shape().last() != Some(&dim) {
            return Err(Error::shape(
                "LayerNorm::forward",
                format!("input {:?}", x.shape()),
                format!("[..., {dim}]"),
            ));
        }
        let centred = x.sub(&x.mean(-1, true)?)?;
        let inv_std = centred
            .square()?
            .mean(-1, true)?
            .add_scalar(self.eps)?
            .rsqrt()?;
        centred
            .mul(&inv_std)?
            .mul(self.gamma.var())?
            .add(self.beta.var())
    }
}

impl Module for LayerNorm {
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
