//! The toy model of superposition (Elhage et al. 2022, "Toy Models of Superposition"; the SPD
//! paper's `tms_f-h` targets): `f` sparse features squeezed through `h < f` hidden dimensions by a
//! tied weight and read back, `x̂ = ReLU(Wᵀ W x + b)` with `W ∈ ℝ^{h×f}` (stored `[h, f]`, so the
//! code computes `x Wᵀ W` for row vectors `x [N, f]`).
//!
//! Children: none; parameters `weight` `[h, f]` (Xavier-normal) and `bias` `[f]` (zeros; the SPD
//! study's targets set their own initialisation, e.g. a non-zero bias for `tms_5-2`). Taps:
//! `hidden` (`x Wᵀ`, `[N, h]`).

use crate::layers::Init;
use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use crate::replicas::replica_axis;
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

/// The TMS model (see the module docs).
#[derive(Clone, Debug)]
pub struct Tms {
    /// `W`, `[hidden, features]`.
    pub weight: Param,
    /// `b`, `[features]`.
    pub bias: Param,
}

impl Tms {
    /// `features` features through `hidden` dimensions.
    pub fn new(features: usize, hidden: usize, rng: &mut Rng, device: &Device) -> Result<Tms> {
        if features == 0 || hidden == 0 {
            return Err(Error::value(
                "Tms::new",
                format!("{features} features, {hidden} hidden"),
                "positive sizes",
            ));
        }
        let w = Init::XavierNormal.sample(&[hidden, features], features, hidden, rng, device)?;
        Ok(Tms {
            weight: Param::new(w, ParamKind::Weight),
            bias: Param::new(Tensor::zeros(&[features], device)?, ParamKind::Bias),
        })
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        let shape = self.weight.value().shape();
        shape[shape.len() - 1]
    }
}

impl Module for Tms {
    /// `[N, f] → [N, f]`; with `R` replicas `[R, N, f] → [R, N, f]`.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let op = "Tms::forward";
        let replicas = replica_axis(ctx, op, x.shape())?;
        let f = self.features();
        let rank = if replicas.is_some() { 3 } else { 2 };
        if x.shape().len() != rank || x.shape()[rank - 1] != f {
            let expected = match replicas {
                Some(r) => format!("[{r}, N, {f}]"),
                None => format!("[N, {f}]"),
            };
            return Err(Error::shape(op, format!("input {:?}", x.shape()), expected));
        }
        let w = self.weight.var();
        let hidden = x.matmul(&w.transpose(-1, -2)?)?;
        ctx.tap("hidden", &hidden);
        let bias = match replicas {
            Some(_) => self.bias.var().unsqueeze(1)?,
            None => self.bias.var().clone(),
        };
        hidden.linear(w, &bias)?.relu()
    }

    fn replicable(&self) -> bool {
        true
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param("weight", &self.weight)
            .param("bias", &self.bias)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param("weight", &mut self.weight)
            .param("bias", &mut self.bias)
    }
}
