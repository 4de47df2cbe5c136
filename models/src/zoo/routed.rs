//! The routed network of least-action learning, as its public implementation defines it: a
//! residual stream `h` and a routing state `s` that chooses, per input and layer, a mixture of
//! `n_heads` MLP heads.
//!
//! ```text
//! h = embed(x)                                  Linear 2p → d (x: one-hot a ++ one-hot b)
//! s = state_init(h)                             Linear d → d
//! per layer l:
//!   w = softmax(gate(GELU(state_proj(s) + residual_proj(h))))      over n_heads
//!   h = LayerNorm(h + Σ_k w_k · head_k(h))
//!   s = state_update([s; h])                    Linear 2d → d
//! logits = output_head(h)                       Linear d → p
//! ```
//!
//! The heads of a layer share their up-projection, as the implementation's `RoutedBlock` does:
//! `head_k(h) = GELU(h U + c) D_k + e_k` (`U`: d → 4d, one `D_k`: 4d → d per head), so a layer's
//! heads are one `d → 4d` and one `4d → n_heads·d` product. The gate is Xavier-uniform with gain
//! 0.1 and bias 0 (near-uniform routing at initialisation); the other layers are PyTorch's
//! `nn.Linear` default. The routing weights of every layer are the tap `routing`, `[N, L, H]`.
//! Nothing reads the last layer's state update, so it is not computed; its parameters exist (as
//! in the implementation) and get no gradient, which the optimizer skips, as PyTorch's does.

use crate::layers::{Init, LayerNorm, Linear};
use crate::module::{Ctx, Module, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

/// The gate's Xavier gain.
const GATE_GAIN: f32 = 0.1;
/// LayerNorm's ε (PyTorch's default).
const LN_EPS: f32 = 1e-5;

/// The routed network's sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoutedShape {
    /// The modulus: inputs `2p` (two one-hot operands), `p` classes.
    pub p: usize,
    /// Width of the residual stream and the state.
    pub d: usize,
    /// Routed layers.
    pub n_layers: usize,
    /// Heads per layer.
    pub n_heads: usize,
}

/// One routed layer.
#[derive(Clone, Debug)]
pub struct RoutedLayer {
    /// `d → d` on the state.
    pub state_proj: Linear,
    /// `d → d` on the residual stream.
    pub residual_proj: Linear,
    /// `d → n_heads`: the routing logits.
    pub gate: Linear,
    /// The heads' shared `d → 4d` up-projection.
    pub up: Linear,
    /// Every head's `4d → d` down-projection, side by side: `4d → n_heads·d`.
    pub down: Linear,
    /// After the residual sum.
    pub norm: LayerNorm,
    /// `2d → d`: the state from `[s; h]`.
    pub state_update: Linear,
}

impl RoutedLayer {
    fn new(s: &RoutedShape, rng: &mut Rng, device: &Device) -> Result<RoutedLayer> {
        let (d, h, init) = (s.d, s.n_heads, Init::PytorchDefault);
        let mut gate = Linear::new(d, h, true, Init::XavierUniform, rng, device)?;
        gate.weight
            .set(gate.weight.value().mul_scalar(GATE_GAIN)?)?;
        Ok(RoutedLayer {
            state_proj: Linear::new(d, d, true, init, rng, device)?,
            residual_proj: Linear::new(d, d, true, init, rng, device)?,
            gate,
            up: Linear::new(d, 4 * d, true, init, rng, device)?,
            down: Linear::new(4 * d, h * d, true, init, rng, device)?,
            norm: LayerNorm::new(d, LN_EPS, device)?,
            state_update: Linear::new(2 * d, d, true, init, rng, device)?,
        })
    }

    /// `(h', s', w)` from the stream `h [N, d]` and state `s [N, d]`; `w [N, n_heads]`. Without
    /// `update_state` the state is returned as it came (nothing reads the last layer's update).
    fn apply(
        &self,
        h: &Var,
        s: &Var,
        update_state: bool,
        ctx: &mut Ctx,
    ) -> Result<(Var, Var, Var)> {
        let (n, d) = (h.shape()[0], h.shape()[1]);
        let mixed = ctx
            .call("state_proj", &self.state_proj, s)?
            .add(&ctx.call("residual_proj", &self.residual_proj, h)?)?
            .gelu()?;
        let w = ctx.call("gate", &self.gate, &mixed)?.softmax(-1)?;
        let heads = self.down.outputs() / d;
        let up = ctx.call("up", &self.up, h)?.gelu()?;
        let outs = ctx.call("down", &self.down, &up)?.reshape(&[
            n as isize,
            heads as isize,
            d as isize,
        ])?;
        let combined = w.unsqueeze(1)?.matmul(&outs)?.squeeze(1)?;
        let h = ctx.call("norm", &self.norm, &h.add(&combined)?)?;
        let s = match update_state {
            true => ctx.call("state_update", &self.state_update, &Var::cat(&[s, &h], 1)?)?,
            false => s.clone(),
        };
        Ok((h, s, w))
    }
}

impl Module for RoutedLayer {
    /// `[h; s] [N, 2d] → [h'; s'] [N, 2d]`: the stream and the state side by side.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        let d = self.state_proj.inputs();
        if x.shape().len() != 2 || x.shape()[1] != 2 * d {
            return Err(Error::shape(
                "RoutedLayer::forward",
                format!("input {:?}", x.shape()),
                format!("[N, {}]: the stream and the state side by side", 2 * d),
            ));
        }
        let (h, s) = (x.narrow(1, 0, d)?, x.narrow(1, d, d)?);
        let (h, s, _) = self.apply(&h, &s, true, ctx)?;
        Var::cat(&[&h, &s], 1)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("state_proj", &self.state_proj)
            .child("residual_proj", &self.residual_proj)
            .child("gate", &self.gate)
            .child("up", &self.up)
            .child("down", &self.down)
            .child("norm", &self.norm)
            .child("state_update", &self.state_update)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("state_proj", &mut self.state_proj)
            .child("residual_proj", &mut self.residual_proj)
            .child("gate", &mut self.gate)
            .child("up", &mut self.up)
            .child("down", &mut self.down)
            .child("norm", &mut self.norm)
            .child("state_update", &mut self.state_update)
    }
}

/// The routed network (see the module docs). Children `embed`, `state_init`, `layers.i`,
/// `output_head`; taps `routing` (`[N, L, H]`), `hidden.i` (the stream after layer `i`) and
/// `features` (the representation before the output head).
#[derive(Clone, Debug)]
pub struct RoutedNetwork {
    /// The sizes.
    pub shape: RoutedShape,
    /// `2p → d`.
    pub embed: Linear,
    /// `d → d`.
    pub state_init: Linear,
    /// The routed layers.
    pub layers: Vec<RoutedLayer>,
    /// `d → p`.
    pub output_head: Linear,
}

impl RoutedNetwork {
    /// A freshly initialised network.
    pub fn new(shape: RoutedShape, rng: &mut Rng, device: &Device) -> Result<RoutedNetwork> {
        if shape.p < 2 || shape.d == 0 || shape.n_layers == 0 || shape.n_heads == 0 {
            return Err(Error::value(
                "RoutedNetwork::new",
                format!("{shape:?}"),
                "p ≥ 2 and positive d, n_layers, n_heads",
            ));
        }
        let (p, d, init) = (shape.p, shape.d, Init::PytorchDefault);
        Ok(RoutedNetwork {
            shape,
            embed: Linear::new(2 * p, d, true, init, rng, device)?,
            state_init: Linear::new(d, d, true, init, rng, device)?,
            layers: (0..shape.n_layers)
                .map(|_| RoutedLayer::new(&shape, rng, device))
                .collect::<Result<_>>()?,
            output_head: Linear::new(d, p, true, init, rng, device)?,
        })
    }

    /// The logits `[N, p]` and the routing weights `[N, n_layers, n_heads]` of one-hot pairs
    /// `[N, 2p]`.
    pub fn forward_with_routing(&self, x: &Var, ctx: &mut Ctx) -> Result<(Var, Var)> {
        let op = "RoutedNetwork::forward";
        if ctx.replicas().is_some() {
            return Err(Error::value(op, "stacked replicas", "one network"));
        }
        let inputs = 2 * self.shape.p;
        if x.shape().len() != 2 || x.shape()[1] != inputs {
            return Err(Error::shape(
                op,
                format!("input {:?}", x.shape()),
                format!("one-hot pairs [N, {inputs}]"),
            ));
        }
        let mut h = ctx.call("embed", &self.embed, x)?;
        let mut s = ctx.call("state_init", &self.state_init, &h)?;
        let mut routing = Vec::with_capacity(self.layers.len());
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            let update = i < last;
            let (h2, s2, w) = ctx.scoped(&format!("layers.{i}"), |ctx| {
                layer.apply(&h, &s, update, ctx)
            })?;
            (h, s) = (h2, s2);
            ctx.tap(&format!("hidden.{i}"), &h);
            routing.push(w);
        }
        let routing = Var::stack(&routing.iter().collect::<Vec<_>>(), 1)?;
        ctx.tap("routing", &routing);
        ctx.tap("features", &h);
        Ok((ctx.call("output_head", &self.output_head, &h)?, routing))
    }

    /// The stream after the last layer (the input of the output head), `[N, d]`, of one-hot pairs.
    pub fn representation(&self, x: &Tensor) -> Result<Var> {
        self.eval_tap(x, "features")
    }

    /// The one-hot rows `[N, 2p]` of operand pairs `[N, 2]` (i32).
    pub fn encode_pairs(&self, pairs: &Tensor) -> Result<Tensor> {
        let n = pairs.shape().first().copied().unwrap_or(0) as isize;
        if pairs.rank() != 2 || pairs.shape()[1] != 2 {
            return Err(Error::shape(
                "RoutedNetwork::encode_pairs",
                format!("{:?}", pairs.shape()),
                "i32 operand pairs [N, 2]",
            ));
        }
        pairs
            .one_hot(self.shape.p)?
            .reshape(&[n, 2 * self.shape.p as isize])
    }
}

impl Module for RoutedNetwork {
    /// Logits `[N, p]` from one-hot pairs `[N, 2p]` ([`RoutedNetwork::encode_pairs`]); the routing
    /// weights are the tap `routing`.
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        Ok(self.forward_with_routing(x, ctx)?.0)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("embed", &self.embed)
            .child("state_init", &self.state_init)
            .children("layers", &self.layers)
            .child("output_head", &self.output_head)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("embed", &mut self.embed)
            .child("state_init", &mut self.state_init)
            .children("layers", &mut self.layers)
            .child("output_head", &mut self.output_head)
    }
}
