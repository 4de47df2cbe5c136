//! The grokking study's decoder-only transformer (Power et al. 2022; the one-layer form of Nanda et
//! al. 2023, "Progress measures for grokking via mechanistic interpretability").
//!
//! The pair `(a, b)` enters as the token sequence `[a, op, b, =]` over a vocabulary of `p + 2` (the
//! residues `0 … p−1`, then `op = p` and `= = p + 1`). With token embedding `E` and learned position
//! embedding `P`,
//!
//! ```text
//! x₀ = E[tokens] + P
//! x ← x + W_o · MHA(LN₁(x))                       (causal, n_heads heads of width d_model / n_heads)
//! x ← x + W₂ · act(W₁ · LN₂(x) + b₁) + b₂          (d_model → d_mlp → d_model, ReLU or GELU)
//! h = LN_f(x)[last position]                       (the representation, tap `features`)
//! logits = h · Uᵀ,  U = W_U (p × d_model), or E[0..p] when the embeddings are tied
//! ```
//!
//! Multi-head attention is `softmax(q kᵀ / √d_head) v` per head through the fused flash kernel
//! ([`Var::flash_attention`]), with `q`, `k`, `v` from `d_model → d_model` projections. The logits
//! read only the last position of the last block, so that block computes only it: the last
//! position's query (which sees every key), its attention output and its MLP — the same logits as
//! the full causal pass with `≈ 1/T` of that block's MLP and projections (the tap `hidden.{L−1}`
//! is then `[N, 1, d_model]`). Initialisation
//! as PyTorch's modules have it: embeddings N(0, 1), linear layers `U(±1/√fan_in)` (biases too),
//! LayerNorm γ = 1, β = 0; the unembedding has no bias, so tying removes exactly `p · d_model`
//! parameters.

use crate::layers::{Activation, Embedding, Init, LayerNorm, Linear};
use crate::module::{Ctx, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

/// Tokens per example: `[a, op, b, =]`.
pub const GROK_SEQUENCE: usize = 4;
/// LayerNorm's ε (PyTorch's default).
const LN_EPS: f32 = 1e-5;

/// The transformer's sizes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrokTransformerShape {
    /// The modulus: `p` output classes, vocabulary `p + 2`.
    pub p: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Blocks.
    pub n_layers: usize,
    /// Attention heads (dividing `d_model`, head width ≤ 128).
    pub n_heads: usize,
    /// Hidden width of each block's MLP.
    pub d_mlp: usize,
    /// The MLP's nonlinearity (ReLU or GELU).
    pub activation: Activation,
    /// Read the logits through the first `p` rows of the token embedding instead of a separate
    /// unembedding.
    pub tie_embeddings: bool,
}

/// One pre-norm block: causal self-attention, then the MLP, each added to the residual stream.
#[derive(Clone, Debug)]
pub struct GrokBlock {
    /// LayerNorm before attention.
    pub ln1: LayerNorm,
    /// `d_model → d_model`: every head's queries.
    pub q: Linear,
    /// `d_model → d_model`: every head's keys.
    pub k: Linear,
    /// `d_model → d_model`: every head's values.
    pub v: Linear,
    /// `d_model → d_model`: the heads' outputs mixed back into the stream.
    pub out: Linear,
    /// LayerNorm before the MLP.
    pub ln2: LayerNorm,
    /// `d_model → d_mlp`.
    pub mlp_in: Linear,
    /// `d_mlp → d_model`.
    pub mlp_out: Linear,
    /// The MLP's nonlinearity.
    pub activation: Activation,
    /// Heads.
    pub n_heads: usize,
}

impl GrokBlock {
    fn new(shape: &GrokTransformerShape, rng: &mut Rng, device: &Device) -> Result<GrokBlock> {
        let (d, init) = (shape.d_model, Init::PytorchDefault);
        Ok(GrokBlock {
            ln1: LayerNorm::new(d, LN_EPS, device)?,
            q: Linear::new(d, d, true, init, rng, device)?,
            k: Linear::new(d, d, true, init, rng, device)?,
            v: Linear::new(d, d, true, init, rng, device)?,
            out: Linear::new(d, d, true, init, rng, device)?,
            ln2: LayerNorm::new(d, LN_EPS, device)?,
            mlp_in: Linear::new(d, shape.d_mlp, true, init, rng, device)?,
            mlp_out: Linear::new(shape.d_mlp, d, true, init, rng, device)?,
            activation: shape.activation,
            n_heads: shape.n_heads,
        })
    }

    /// Multi-head self-attention of `x [N, T, d]`, causal; with `last_only`, only the last
    /// position's output `[N, 1, d]` (its query sees every key, so no mask is needed).
    fn attention(&self, x: &Var, last_only: bool, ctx: &mut Ctx) -> Result<Var> {
        let (n, t, d) = (x.shape()[0], x.shape()[1], x.shape()[2]);
        let heads = |y: Var| -> Result<Var> {
            let rows = y.shape()[1] as isize;
            let h = self.n_heads as isize;
            // [N, rows, H, dh] → [N, H, rows, dh]
            y.reshape(&[n as isize, rows, h, (d / self.n_heads) as isize])?
                .permute(&[0, 2, 1, 3])
        };
        let queries = if last_only {
            x.narrow(1, t - 1, 1)?
        } else {
            x.clone()
        };
        let q = heads(ctx.call("q", &self.q, &queries)?)?;
        let k = heads(ctx.call("k", &self.k, x)?)?;
        let v = heads(ctx.call("v", &self.v, x)?)?;
        let attended = q.flash_attention(&k, &v, !last_only, None)?;
        let rows = attended.shape()[2] as isize;
        let mixed = attended
            .permute(&[0, 2, 1, 3])?
            .reshape(&[n as isize, rows, d as isize])?;
        ctx.call("out", &self.out, &mixed)
    }

    /// The block on `x [N, T, d]`: every position (`[N, T, d]`), or with `last_only` the last
    /// position's output `[N, 1, d]`, all the logits read from the last block.
    fn apply(&self, x: &Var, last_only: bool, ctx: &mut Ctx) -> Result<Var> {
        let normed = ctx.call("ln1", &self.ln1, x)?;
        let attended = self.attention(&normed, last_only, ctx)?;
        let x = if last_only {
            x.narrow(1, x.shape()[1] - 1, 1)?
        } else {
            x.clone()
        };
        let x = x.add(&attended)?;
        let normed = ctx.call("ln2", &self.ln2, &x)?;
        let hidden = self
            .activation
            .apply(&ctx.call("mlp_in", &self.mlp_in, &normed)?)?;
        ctx.tap("mlp", &hidden);
        x.add(&ctx.call("mlp_out", &self.mlp_out, &hidden)?)
    }
}

impl Module for GrokBlock {
    /// `[N, T, d_model] → [N, T, d_model]` (causal).
    fn forward(&self, x: &Var, ctx: &mut Ctx) -> Result<Var> {
        self.apply(x, false, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("ln1", &self.ln1)
            .child("q", &self.q)
            .child("k", &self.k)
            .child("v", &self.v)
            .child("out", &self.out)
            .child("ln2", &self.ln2)
            .child("mlp_in", &self.mlp_in)
            .child("mlp_out", &self.mlp_out)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("ln1", &mut self.ln1)
            .child("q", &mut self.q)
            .child("k", &mut self.k)
            .child("v", &mut self.v)
            .child("out", &mut self.out)
            .child("ln2", &mut self.ln2)
            .child("mlp_in", &mut self.mlp_in)
            .child("mlp_out", &mut self.mlp_out)
    }
}

/// The decoder-only grokking transformer (see the module docs). Children `token_embedding`,
/// `blocks.i`, `ln_f`, `unembed` (untied only); parameter `position_embedding`; taps `hidden.i`
/// (the residual stream after block `i`, `[N, 4, d_model]`; the last block's `[N, 1, d_model]`),
/// `blocks.i.mlp` (the MLP's hidden activations) and `features` (the representation).
#[derive(Clone, Debug)]
pub struct GrokTransformer {
    /// The sizes.
    pub shape: GrokTransformerShape,
    /// `E`, `[p + 2, d_model]`.
    pub token_embedding: Embedding,
    /// `P`, `[4, d_model]`.
    pub position_embedding: Param,
    /// The blocks.
    pub blocks: Vec<GrokBlock>,
    /// The final LayerNorm.
    pub ln_f: LayerNorm,
    /// `W_U` as a `d_model → p` layer without bias (`None` when tied).
    pub unembed: Option<Linear>,
}

impl GrokTransformer {
    /// A freshly initialised transformer.
    pub fn new(shape: GrokTransformerShape, rng: &mut Rng, device: &Device) -> Result<Self> {
        check_shape(&shape)?;
        let d = shape.d_model;
        let token_embedding = Embedding::new(shape.p + 2, d, rng, device)?;
        let position = Tensor::rand_normal(&[GROK_SEQUENCE, d], 0.0, 1.0, rng, device)?;
        let blocks = (0..shape.n_layers)
            .map(|_| GrokBlock::new(&shape, rng, device))
            .collect::<Result<Vec<_>>>()?;
        let unembed = (!shape.tie_embeddings)
            .then(|| Linear::new(d, shape.p, false, Init::PytorchDefault, rng, device))
            .transpose()?;
        Ok(GrokTransformer {
            shape,
            token_embedding,
            position_embedding: Param::new(position, ParamKind::Embedding),
            blocks,
            ln_f: LayerNorm::new(d, LN_EPS, device)?,
            unembed,
        })
    }

    /// The token sequences `[N, 4]` (i32) of operand pairs `[N, 2]` modulo `p`: `[a, p, b, p + 1]`.
    pub fn tokens(pairs: &Tensor, p: usize) -> Result<Tensor> {
        if pairs.dtype() != DType::I32 || pairs.rank() != 2 || pairs.shape()[1] != 2 {
            return Err(Error::shape(
                "GrokTransformer::tokens",
                format!("{} {:?}", pairs.dtype(), pairs.shape()),
                "i32 operand pairs [N, 2]",
            ));
        }
        let (n, p) = (pairs.shape()[0], p as i32);
        let tokens: Vec<i32> = (pairs.to_vec::<i32>()?)
            .chunks_exact(2)
            .flat_map(|ab| [ab[0], p, ab[1], p + 1])
            .collect();
        Tensor::from_vec(tokens, &[n, GROK_SEQUENCE], pairs.device())
    }

    /// The input embeddings `E[tokens] + P`, `[N, 4, d_model]`, of token sequences `[N, 4]`.
    pub fn embeddings(&self, tokens: &Tensor, ctx: &mut Ctx) -> Result<Var> {
        let op = "GrokTransformer::embeddings";
        if ctx.replicas().is_some() {
            return Err(Error::value(
                op,
                "stacked replicas",
                "one network (the transformer does not stack)",
            ));
        }
        if tokens.dtype() != DType::I32 || tokens.rank() != 2 || tokens.shape()[1] != GROK_SEQUENCE
        {
            return Err(Error::shape(
                op,
                format!("{} {:?}", tokens.dtype(), tokens.shape()),
                "i32 token sequences [N, 4] from GrokTransformer::tokens",
            ));
        }
        let e = ctx.call(
            "token_embedding",
            &self.token_embedding,
            &Var::constant(tokens.clone()),
        )?;
        e.add(self.position_embedding.var())
    }

    /// The logits `[N, p]` from input embeddings `[N, 4, d_model]` (what
    /// [`GrokTransformer::embeddings`] returns, or a perturbation of it).
    pub fn forward_from_embeddings(&self, e: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (d, p) = (self.shape.d_model, self.shape.p);
        if e.shape().len() != 3 || e.shape()[1] != GROK_SEQUENCE || e.shape()[2] != d {
            return Err(Error::shape(
                "GrokTransformer::forward_from_embeddings",
                format!("{:?}", e.shape()),
                format!("[N, 4, {d}]"),
            ));
        }
        let (last, earlier) = self.blocks.split_last().expect("at least one block");
        let mut x = e.clone();
        for (i, block) in earlier.iter().enumerate() {
            x = ctx.call(&format!("blocks.{i}"), block, &x)?;
            ctx.tap(&format!("hidden.{i}"), &x);
        }
        let i = earlier.len();
        let x = ctx.scoped(&format!("blocks.{i}"), |ctx| last.apply(&x, true, ctx))?;
        ctx.tap(&format!("hidden.{i}"), &x);
        let h = ctx.call("ln_f", &self.ln_f, &x.squeeze(1)?)?;
        ctx.tap("features", &h);
        match &self.unembed {
            Some(u) => ctx.call("unembed", u, &h),
            None => {
                let table = self.token_embedding.weight.var().narrow(0, 0, p)?;
                h.matmul(&table.transpose(0, 1)?)
            }
        }
    }

    /// The representation `LN_f(x)[last]`, `[N, d_model]`, of token sequences `[N, 4]`.
    pub fn representation(&self, tokens: &Tensor) -> Result<Var> {
        self.eval_tap(tokens, "features")
    }
}

fn check_shape(s: &GrokTransformerShape) -> Result<()> {
    let op = "GrokTransformer::new";
    let got = format!("{s:?}");
    if s.p < 2 || s.d_model == 0 || s.n_layers == 0 || s.n_heads == 0 || s.d_mlp == 0 {
        return Err(Error::value(
            op,
            got,
            "p ≥ 2 and positive d_model, n_layers, n_heads, d_mlp",
        ));
    }
    if !s.d_model.is_multiple_of(s.n_heads) || s.d_model / s.n_heads > 128 {
        return Err(Error::value(
            op,
            got,
            "n_heads dividing d_model with heads at most 128 wide",
        ));
    }
    if !matches!(s.activation, Activation::Relu | Activation::Gelu) {
        return Err(Error::value(op, got, "activation relu or gelu"));
    }
    Ok(())
}

impl Module for GrokTransformer {
    /// Logits `[N, p]` from token sequences `[N, 4]` (a constant `Var` of
    /// [`GrokTransformer::tokens`]).
    fn forward(&self, tokens: &Var, ctx: &mut Ctx) -> Result<Var> {
        let e = self.embeddings(tokens.value(), ctx)?;
        self.forward_from_embeddings(&e, ctx)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .child("token_embedding", &self.token_embedding)
            .param("position_embedding", &self.position_embedding)
            .children("blocks", &self.blocks)
            .child("ln_f", &self.ln_f)
            .child("unembed", self.unembed.as_ref())
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .child("token_embedding", &mut self.token_embedding)
            .param("position_embedding", &mut self.position_embedding)
            .children("blocks", &mut self.blocks)
            .child("ln_f", &mut self.ln_f)
            .child("unembed", self.unembed.as_mut())
    }
}
