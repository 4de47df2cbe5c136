//! Multi-layer perceptron: `Linear → act → … → Linear` (no activation after the last layer).

use crate::activation::Activation;
use crate::init::Init;
use crate::linear::Linear;
use crate::module::{prefixed, Module, Param};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng};

#[derive(Clone, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub activation: Activation,
}

impl Mlp {
    /// Layers of widths `dims = [in, hidden…, out]` (at least two entries).
    pub fn new(
        dims: &[usize],
        activation: Activation,
        init: Init,
        bias: bool,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Mlp> {
        if dims.len() < 2 || dims.contains(&0) {
            return Err(Error::value(
                "Mlp::new",
                format!("widths {dims:?}"),
                "at least [inputs, outputs], all non-zero",
            ));
        }
        let layers = dims
            .windows(2)
            .map(|w| Linear::new(w[0], w[1], bias, init, rng, device))
            .collect::<Result<Vec<_>>>()?;
        Ok(Mlp { layers, activation })
    }

    pub fn forward(&self, x: &Var) -> Result<Var> {
        Ok(self.forward_with_hidden(x)?.0)
    }

    /// The output and the last hidden representation (the input when there is no hidden layer).
    pub fn forward_with_hidden(&self, x: &Var) -> Result<(Var, Var)> {
        let (last, hidden) = self.layers.split_last().expect("Mlp has a layer");
        let mut h = x.clone();
        for layer in hidden {
            h = self.activation.apply(&layer.forward(&h)?)?;
        }
        Ok((last.forward(&h)?, h))
    }
}

impl Module for Mlp {
    fn params(&self) -> Vec<(String, &Param)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&format!("layers.{i}"), l.params()))
            .collect()
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        self.layers
            .iter_mut()
            .enumerate()
            .flat_map(|(i, l)| prefixed(&format!("layers.{i}"), l.params_mut()))
            .collect()
    }
}
