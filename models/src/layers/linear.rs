//! Dense layer `y = x W + b` with `W` stored `[in, out]` (so the forward is one fused matmul + bias).

use crate::layers::Init;
use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use crate::replicas::replica_axis;
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
        let shape = self.weight.value().shape();
        shape[shape.len() - 2]
    }

    /// Output features.
    pub fn outputs(&self) -> usize {
        let shape = self.weight.value().shape();
        shape[shape.len() - 1]
    }
}

impl Module for Linear {
    /// `x [..., in] → [..., out]`; with `R` replicas `x [R, N, in] → [R, N, out]` (weights
    /// `[R, in, out]`, biases `[R, out]`: one batched product).
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let op = "Linear::forward";
        let replicas = replica_axis(ctx, op, x.shape())?;
        if x.shape().last() != Some(&self.inputs())
            || replicas.is_some_and(|_| x.shape().len() != 3)
        {
            let expected = match replicas {
                Some(r) => format!("[{r}, N, {}]", self.inputs()),
                None => format!("[..., {}]", self.inputs()),
            };
            return Err(Error::shape(op, format!("input {:?}", x.shape()), expected));
        }
        match (&self.bias, replicas) {
            (Some(b), None) => x.linear(self.weight.var(), b.var()),
            (Some(b), Some(_)) => x.linear(self.weight.var(), &b.var().unsqueeze(1)?),
            (None, _) => x.matmul(self.weight.var()),
        }
    }

    fn replicable(&self) -> bool {
        true
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
