//! Dense layer `y = x W + b` with `W` stored `[in, out]` (so the forward is one fused matmul + bias).

use crate::init::Init;
use crate::module::{Module, Param, ParamKind};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    /// Weight drawn by `init` (fan-in `inputs`, fan-out `outputs`); bias (when asked for) zero.
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Linear> {
        let w = init.sample(&[inputs, outputs], inputs, outputs, rng, device)?;
        let bias = if bias {
            Some(Param::new(
                Tensor::zeros(&[outputs], device)?,
                ParamKind::Bias,
            ))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::new(w, ParamKind::Weight),
            bias,
        })
    }

    pub fn inputs(&self) -> usize {
        self.weight.value().shape()[0]
    }

    pub fn outputs(&self) -> usize {
        self.weight.value().shape()[1]
    }

    /// `x [..., in] → [..., out]`.
    pub fn forward(&self, x: &Var) -> Result<Var> {
        if x.shape().last() != Some(&self.inputs()) {
            return Err(Error::shape(
                "Linear::forward",
                format!("input {:?}", x.shape()),
                format!("[..., {}]", self.inputs()),
            ));
        }
        match &self.bias {
            Some(b) => x.linear(self.weight.var(), b.var()),
            None => x.matmul(self.weight.var()),
        }
    }
}

impl Module for Linear {
    fn params(&self) -> Vec<(String, &Param)> {
        let mut v = vec![("weight".to_string(), &self.weight)];
        v.extend(self.bias.iter().map(|b| ("bias".to_string(), b)));
        v
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut v = vec![("weight".to_string(), &mut self.weight)];
        v.extend(self.bias.iter_mut().map(|b| ("bias".to_string(), b)));
        v
    }
}
