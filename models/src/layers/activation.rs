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
    /// `1 / (1 + e^{−x})`.
    Sigmoid,
    /// `max(x, 0) + 0.01·min(x, 0)` (PyTorch's default slope).
    LeakyRelu,
    /// `x` for `x > 0`, else `e^x − 1` (Clevert et al. 2016, α = 1).
    Elu,
    /// `λ·elu_α(x)` with Klambauer et al.'s (2017) α ≈ 1.6733, λ ≈ 1.0507.
    Selu,
    /// `x·σ(x)` (Ramachandran et al. 2017; PyTorch's SiLU).
    Swish,
}

/// SELU's constants (Klambauer et al. 2017), as PyTorch has them.
const SELU_ALPHA: f32 = 1.673_263_2;
const SELU_SCALE: f32 = 1.050_701;
/// PyTorch's default negative slope of the leaky ReLU.
const LEAKY_SLOPE: f32 = 0.01;

impl Activation {
    /// PyTorch's `calculate_gain` for the activation (1 for those it has no entry for).
    pub fn gain(self) -> f32 {
        match self {
            Activation::Relu => std::f32::consts::SQRT_2,
            Activation::Tanh => 5.0 / 3.0,
            Activation::Selu => 0.75,
            Activation::LeakyRelu => (2.0f32 / (1.0 + LEAKY_SLOPE * LEAKY_SLOPE)).sqrt(),
            _ => 1.0,
        }
    }

    /// Parses `relu`, `gelu`, `tanh`, `sigmoid`, `leaky_relu`, `elu`, `selu`, `swish` (or
    /// `silu`), the config spelling.
    pub fn parse(name: &str) -> Option<Activation> {
        Some(match name {
            "relu" => Activation::Relu,
            "gelu" => Activation::Gelu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            "leaky_relu" => Activation::LeakyRelu,
            "elu" => Activation::Elu,
            "selu" => Activation::Selu,
            "swish" | "silu" => Activation::Swish,
            _ => return None,
        })
    }

    /// The nonlinearity applied to `x`.
    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::LeakyRelu => x.leaky_relu(LEAKY_SLOPE),
            Activation::Elu => elu(x, 1.0),
            Activation::Selu => elu(x, SELU_ALPHA)?.mul_scalar(SELU_SCALE),
            Activation::Swish => x.mul(&x.sigmoid()?),
        }
    }

    /// Whether `h`, an output of this nonlinearity, is saturated (the plasticity studies' rule,
    /// `lls src/utils/zeroth_order_features.py`): ReLU at 0, sigmoid below 0.01 or above 0.99,
    /// tanh beyond ±0.99, SELU below −1.7, ELU below −0.99; GELU, the leaky ReLU and swish never.
    pub fn is_saturated(self, h: f64) -> bool {
        match self {
            Activation::Relu => h == 0.0,
            Activation::Sigmoid => !(0.01..=0.99).contains(&h),
            Activation::Tanh => h.abs() > 0.99,
            Activation::Selu => h < -1.7,
            Activation::Elu => h < -0.99,
            Activation::Gelu | Activation::LeakyRelu | Activation::Swish => false,
        }
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::LeakyRelu => "leaky_relu",
            Activation::Elu => "elu",
            Activation::Selu => "selu",
            Activation::Swish => "swish",
        }
    }
}

/// `x` for `x > 0`, else `α(e^x − 1)`; the exponential is taken of `min(x, 0)` so that it never
/// overflows on the branch that is not chosen.
fn elu(x: &Var, alpha: f32) -> Result<Var> {
    let negative = x
        .minimum_scalar(0.0)?
        .exp()?
        .sub_scalar(1.0)?
        .mul_scalar(alpha)?;
    Var::where_(&x.value().gt_scalar(0.0)?, x, &negative)
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
