//! Dense layer `y = x W + b` with `W` stored `[in, out]` (so the forward is one fused matmul + bias).

use crate::layers::Init;
use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

/// `y = x W + b`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `W`, `[inputs, outputs]`.
    pub weight: Param,
    /// `b`, `[outputs]`.
    pub bias: Option<Param>,
}

impl Linear {
    /// Weight drawn by `init` (fan-in `inputs`, fan-out `outputs`); bias (when asked for) zero, or
    /// drawn like the weight for [`Init::PytorchDefault`].
    pub fn new(
        inputs: usize,
        outputs: usize,
        bias: bool,
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Linear> {
        let w = init.sample(&[inputs, outputs], inputs, outputs, rng, device)?;
        let bias = match (bias, init) {
            (false, _) => None,
            (true, Init::PytorchDefault) => {
                Some(init.sample(&[outputs], inputs, outputs, rng, device)?)
            }
            (true, _) => Some(Tensor::zeros(&[outputs], device)?),
        };
        let bias = bias.map(|b| Param::new(b, ParamKind::Bias));
        Ok(Linear {
            weight: Param::new(w, ParamKind::Weight),
            bias,
        })
    }

    /// Input features.
    pub fn inputs(&self) -> usize {
        self.weight.value().shape()[0]
    }

    /// Output features.
    pub fn outputs(&self) -> usize {
        self.weight.value().shape()[1]
    }
}

impl Module for Linear {
    /// `x [..., in] → [..., out]`.
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
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

    fn parts(&self) -> Parts<'_> {
        let parts = Parts::default().param("weight", &self.weight);
        parts.param("bias", self.bias.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let parts = PartsMut::default().param("weight", &mut self.weight);
        parts.param("bias", self.bias.as_mut())
    }
}
