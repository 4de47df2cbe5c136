//! Multi-layer perceptron: `Linear → act → … → Linear` (no activation after the last layer).
//!
//! Children `layers.0` … `layers.{L−1}`; taps `hidden.i` (the activation after layer `i`) and
//! `features` (the input of the last layer: the last hidden representation, or the input itself
//! when there is no hidden layer).

use crate::layers::{Activation, Init, Linear};
use crate::module::{Ctx, Module, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng};

/// A stack of [`Linear`] layers with one nonlinearity between them.
#[derive(Clone, Debug)]
pub struct Mlp {
    /// The layers, first to last (at least one).
    pub layers: Vec<Linear>,
    /// Applied after every layer but the last.
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
}

impl Module for Mlp {
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (last, hidden) = self.layers.split_last().expect("Mlp has a layer");
        let mut h = x.clone();
        for (i, layer) in hidden.iter().enumerate() {
            h = self
                .activation
                .apply(&ctx.call(&format!("layers.{i}"), layer, &h)?)?;
            ctx.tap(&format!("hidden.{i}"), &h);
        }
        ctx.tap("features", &h);
        ctx.call(&format!("layers.{}", hidden.len()), last, &h)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default().children("layers", &self.layers)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default().children("layers", &mut self.layers)
    }
}
