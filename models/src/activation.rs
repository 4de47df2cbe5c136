//! Pointwise nonlinearities used between layers.

use dynlab_autodiff::Var;
use dynlab_runtime::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// Exact GELU `x·Φ(x)` (Hendrycks & Gimpel 2016).
    Gelu,
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

    pub fn apply(self, x: &Var) -> Result<Var> {
        match self {
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu(),
            Activation::Tanh => x.tanh(),
        }
    }
}
