//! Pointwise nonlinearities used between layers, and dropout (Srivastava et al. 2014).

use crate::module::{Ctx, Module};
use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};

/// A pointwise nonlinearity (a module without parameters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// Exact GELU `x·Φ(x)` (Hendrycks & Gimpel 2016).
    Gelu,
    /// `tanh x`.
    Tanh,
}

impl Activation {
    /// Parses `relu`, `gelu`, `tanh` (the config spelling).
    pub fn parse(name: &str) -> Option<Activation> {
        Some(match name {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            _ => return None,
        })
    }

    /// The nonlinearity applied to `x`.
    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
        }
    }
}

impl Module for Activation {
    fn forward(&self, x: &Var, _ctx: &mut Ctx) -> Result<Var> {
        self.apply(x)
    }
}

/// Inverted dropout: in training, each element is zeroed with probability `p` and the rest scaled
/// by `1/(1 − p)` (so evaluation is the identity); the mask is drawn from the context's RNG.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of zeroing an element, in `[0, 1)`.
    pub p: f32,
}

impl Dropout {
    /// Dropout with probability `p` in `[0, 1)`.
    pub fn new(p: f32) -> Result<Dropout> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::value(
                "Dropout::new",
                format!("p = {p}"),
                "a probability in [0, 1)",
            ));
        }
        Ok(Dropout { p })
    }
}

impl Module for Dropout {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        if !ctx.is_training() || self.p == 0.0 {
            return Ok(x.clone());
        }
        let device = x.value().device().clone();
        let keep = Tensor::bernoulli_scalar(x.shape(), 1.0 - self.p, ctx.rng()?, &device)?;
        x.mul(&Var::constant(keep.mul_scalar(1.0 / (1.0 - self.p))?))
    }

    /// Replicas draw their masks from one stream, not from their own runs' streams: stacked
    /// replicas would not be the separate runs they stand for.
    fn replicable(&self) -> bool {
        false
    }
}
