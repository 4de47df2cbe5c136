//! The target models of Stochastic Parameter Decomposition (Bushnaq et al. 2025, "Stochastic
//! Parameter Decomposition"; `goodfire-ai/spd`, branch `spd-paper`): small networks whose weight
//! matrices SPD decomposes into rank-one subcomponents. Every decomposed layer is a [`Linear`]
//! child run through [`Ctx::call`], so SPD's component model replaces it by path.
//!
//! - [`TmsTarget`]: the toy model of superposition `x̂ = ReLU(Wᵀ W x + b)` (`W ∈ ℝ^{h×f}`) as the
//!   reference's three modules: `linear1` (`x ↦ x Wᵀ`, no bias), optional fixed identity layers
//!   `hidden_layers.i` (`h × h`, no bias) and `linear2` (`h ↦ h W + b`). It is trained tied, as the
//!   zoo's [`Tms`] (the identity layers change nothing), and turned into this untied, frozen form
//!   for the decomposition with [`TmsTarget::from_tms`].
//! - [`ResidMlp`]: a residual stream `r₀ = x W_E` (`W_E ∈ ℝ^{f×d}`, rows drawn `N(0, I)` and
//!   normalised, frozen), blocks `r ← r + ReLU(r W_in) W_out` (`layers.i.mlp_in`,
//!   `layers.i.mlp_out`, no biases) and the read-off `y = r W_Eᵀ` (`W_U = W_Eᵀ`, frozen). Trained
//!   to compute `y_i = x_i + ReLU(x_i)` from sparse features (the paper's "ResidMLP" targets).

use crate::layers::{Init, Linear};
use crate::module::{Buffer, Ctx, Module, Param, ParamKind, Parts, PartsMut};
use crate::zoo::Tms;
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

/// The TMS target in the reference's module layout (see the module docs).
#[derive(Clone, Debug)]
pub struct TmsTarget {
    /// `x ↦ x Wᵀ`: weight `[f, h]` (dynlab stores `[in, out]`), no bias.
    pub linear1: Linear,
    /// Fixed identity layers `[h, h]` between (the `-id` experiments), no bias.
    pub hidden_layers: Vec<Linear>,
    /// `h ↦ h W + b`: weight `[h, f]`, bias `[f]`.
    pub linear2: Linear,
}

impl TmsTarget {
    /// The untied form of a trained (tied) `tms` with `identity_layers` identity layers between.
    pub fn from_tms(tms: &Tms, identity_layers: usize) -> Result<TmsTarget> {
        let w = tms.weight.value(); // [h, f]
        let device = w.device();
        let hidden = w.shape()[0];
        let linear = |weight: Tensor, bias: Option<Tensor>| Linear {
            weight: Param::new(weight, ParamKind::Weight),
            bias: bias.map(|b| Param::new(b, ParamKind::Bias)),
        };
        let hidden_layers = (0..identity_layers)
            .map(|_| Ok(linear(Tensor::eye(hidden, device)?, None)))
            .collect::<Result<Vec<_>>>()?;
        Ok(TmsTarget {
            linear1: linear(w.transpose(0, 1)?.contiguous()?, None),
            hidden_layers,
            linear2: linear(w.copy()?, Some(tms.bias.value().copy()?)),
        })
    }

    /// The paths of every layer (what SPD decomposes): `linear1`, `hidden_layers.i`, `linear2`.
    pub fn layer_paths(&self) -> Vec<String> {
        let hidden = (0..self.hidden_layers.len()).map(|i| format!("hidden_layers.{i}"));
        std::iter::once("linear1".to_string())
            .chain(hidden)
            .chain(std::iter::once("linear2".to_string()))
            .collect()
    }
}

impl Module for TmsTarget {
    /// `[N, f] → [N, f]`.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let mut h = ctx.call("linear1", &self.linear1, x)?;
        for (i, layer) in self.hidden_layers.iter().enumerate() {
            h = ctx.call(&format!("hidden_layers.{i}"), layer, &h)?;
        }
        ctx.call("linear2", &self.linear2, &h)?.relu()
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("linear1", &self.linear1)
            .children("hidden_layers", &self.hidden_layers)
            .child("linear2", &self.linear2)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("linear1", &mut self.linear1)
            .children("hidden_layers", &mut self.hidden_layers)
            .child("linear2", &mut self.linear2)
    }
}

/// One residual block of [`ResidMlp`]: `r ↦ ReLU(r W_in) W_out` (added to the stream by the model).
#[derive(Clone, Debug)]
pub struct ResidBlock {
    /// `W_in`, `[d_embed, d_mlp]`, no bias.
    pub mlp_in: Linear,
    /// `W_out`, `[d_mlp, d_embed]`, no bias.
    pub mlp_out: Linear,
}

impl Module for ResidBlock {
    fn forward(&self, r: &Var, ctx: &mut Ctx) -> Result<Var> {
        let h = ctx.call("mlp_in", &self.mlp_in, r)?.relu()?;
        ctx.call("mlp_out", &self.mlp_out, &h)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("mlp_in", &self.mlp_in)
            .child("mlp_out", &self.mlp_out)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("mlp_in", &mut self.mlp_in)
            .child("mlp_out", &mut self.mlp_out)
    }
}

/// The residual MLP target (see the module docs).
#[derive(Clone, Debug)]
pub struct ResidMlp {
    /// `W_E`, `[features, d_embed]`, rows of unit norm; frozen (`W_U = W_Eᵀ`).
    pub embed: Buffer,
    /// The blocks, `layers.i`.
    pub layers: Vec<ResidBlock>,
}

impl ResidMlp {
    /// `features` features embedded in `d_embed` dimensions, one block per entry of `d_mlp`
    /// (its hidden width); `W_in`, `W_out` drawn as PyTorch's `nn.Linear` default.
    pub fn new(
        features: usize,
        d_embed: usize,
        d_mlp: &[usize],
        rng: &mut Rng,
        device: &Device,
    ) -> Result<ResidMlp> {
        if features == 0 || d_embed == 0 || d_mlp.is_empty() || d_mlp.contains(&0) {
            return Err(Error::value(
                "ResidMlp::new",
                format!("{features} features, d_embed {d_embed}, d_mlp {d_mlp:?}"),
                "positive sizes and at least one block",
            ));
        }
        let raw = Tensor::rand_normal(&[features, d_embed], 0.0, 1.0, rng, device)?;
        let norms = raw.square()?.sum(1, true)?.sqrt()?;
        let embed = raw.div(&norms)?;
        let layers = d_mlp
            .iter()
            .map(|&m| {
                let init = Init::PytorchDefault;
                Ok(ResidBlock {
                    mlp_in: Linear::new(d_embed, m, false, init, rng, device)?,
                    mlp_out: Linear::new(m, d_embed, false, init, rng, device)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ResidMlp {
            embed: Buffer::new(embed),
            layers,
        })
    }

    /// Number of features.
    pub fn features(&self) -> usize {
        self.embed.get().shape()[0]
    }

    /// The paths of the decomposed layers: `layers.i.mlp_in` and `layers.i.mlp_out`.
    pub fn layer_paths(&self) -> Vec<String> {
        (0..self.layers.len())
            .flat_map(|i| [format!("layers.{i}.mlp_in"), format!("layers.{i}.mlp_out")])
            .collect()
    }
}

impl Module for ResidMlp {
    /// `[N, f] → [N, f]`.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let f = self.features();
        if x.shape().len() != 2 || x.shape()[1] != f {
            return Err(Error::shape(
                "ResidMlp::forward",
                format!("input {:?}", x.shape()),
                format!("[N, {f}]"),
            ));
        }
        let embed = Var::constant(self.embed.get());
        let mut r = x.matmul(&embed)?;
        for (i, block) in self.layers.iter().enumerate() {
            let update = ctx.call(&format!("layers.{i}"), block, &r)?;
            r = r.add(&update)?;
        }
        r.matmul(&embed.transpose(0, 1)?)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .buffer("embed", &self.embed)
            .children("layers", &self.layers)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default().children("layers", &mut self.layers)
    }
}
