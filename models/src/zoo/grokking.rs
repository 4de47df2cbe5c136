//! The grokking baseline of Power et al. (2022) / Nanda et al. (2023), MLP form: the operands `a, b`
//! of `a ∘ b mod p` enter either one-hot (`[onehot(a), onehot(b)] ∈ R^{2p}`) or through a learned
//! embedding (`[E a, E b] ∈ R^{2d}`), pass GELU hidden layers, and leave as `p` logits.

use crate::layers::{Activation, Embedding, Init};
use crate::module::{Ctx, Module, Parts, PartsMut};
use crate::replicas::replica_axis;
use crate::zoo::Mlp;
use dynlab_autodiff::Var;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

/// How the operand pair enters the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairEncoding {
    /// `[onehot(a), onehot(b)]`.
    OneHot,
    /// Learned embedding of this width.
    Embedding(usize),
}

/// The grokking MLP. Children `embedding` (embedded form only) and `mlp`; the last hidden
/// representation is the tap `mlp.features`.
#[derive(Clone, Debug)]
pub struct BaselineMlp {
    /// The modulus: `p` classes, operands in `0..p`.
    pub p: usize,
    /// The operand embedding (embedded form).
    pub embedding: Option<Embedding>,
    /// Hidden GELU layers and the output layer.
    pub mlp: Mlp,
}

impl BaselineMlp {
    /// The network for modulus `p` with GELU hidden layers of widths `hidden`.
    pub fn new(
        p: usize,
        encoding: PairEncoding,
        hidden: &[usize],
        init: Init,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<BaselineMlp> {
        if p < 2 {
            return Err(Error::value(
                "BaselineMlp::new",
                format!("p = {p}"),
                "p >= 2",
            ));
        }
        let (embedding, inputs) = match encoding {
            PairEncoding::OneHot => (None, 2 * p),
            PairEncoding::Embedding(d) => (Some(Embedding::new(p, d, rng, device)?), 2 * d),
        };
        let dims: Vec<usize> = std::iter::once(inputs)
            .chain(hidden.iter().copied())
            .chain(std::iter::once(p))
            .collect();
        let mlp = Mlp::new(&dims, Activation::Gelu, init, true, rng, device)?;
        Ok(BaselineMlp { p, embedding, mlp })
    }

    /// Turns operand pairs `[N, 2]` (i32) into what the forward pass takes: the one-hot
    /// rows `[N, 2p]` (computed once per dataset) or the pairs themselves for the embedding form.
    pub fn encode_pairs(&self, pairs: &Tensor) -> Result<Tensor> {
        self.check_pairs("BaselineMlp::encode_pairs", pairs)?;
        if self.embedding.is_some() {
            return Ok(pairs.clone());
        }
        let n = pairs.shape()[0] as isize;
        pairs.one_hot(self.p)?.reshape(&[n, 2 * self.p as isize])
    }

    /// The last hidden representation (the input of the output layer), `[N, hidden]`, of encoded
    /// pairs.
    pub fn representation(&self, encoded: &Tensor) -> Result<Var> {
        self.eval_tap(encoded, "mlp.features")
    }

    fn check_pairs(&self, op: &'static str, pairs: &Tensor) -> Result<()> {
        if pairs.dtype() != DType::I32 || pairs.rank() != 2 || pairs.shape()[1] != 2 {
            return Err(Error::shape(
                op,
                format!("{} {:?}", pairs.dtype(), pairs.shape()),
                "i32 operand pairs [N, 2]",
            ));
        }
        Ok(())
    }
}

impl Module for BaselineMlp {
    /// Logits `[N, p]` from encoded pairs (a constant `Var` of [`BaselineMlp::encode_pairs`]);
    /// with `R` replicas, `[R, N, p]` from `[R, N, …]` encoded pairs.
    fn forward(&self, input: &Var, ctx: &mut Ctx) -> Result<Var> {
        let op = "BaselineMlp::forward";
        let replicas = replica_axis(ctx, op, input.shape())?;
        // One model's input with the replica axis (if any) taken off.
        let encoded = match replicas {
            Some(_) => input.value().narrow(0, 0, 1)?.squeeze(0)?,
            None => input.value().clone(),
        };
        let lead: Vec<isize> = replicas.iter().map(|&r| r as isize).collect();
        let x = match &self.embedding {
            Some(e) => {
                self.check_pairs(op, &encoded)?;
                let n = encoded.shape()[0] as isize;
                let rows = ctx.call("embedding", e, input)?;
                let mut shape = lead;
                shape.extend([n, 2 * e.dim() as isize]);
                rows.reshape(&shape)?
            }
            None => {
                if encoded.dtype() != DType::F32
                    || encoded.rank() != 2
                    || encoded.shape()[1] != 2 * self.p
                {
                    return Err(Error::shape(
                        op,
                        format!("{} input {:?}", input.value().dtype(), input.shape()),
                        format!("f32 one-hot pairs [N, {}] from encode_pairs", 2 * self.p),
                    ));
                }
                input.clone()
            }
        };
        ctx.call("mlp", &self.mlp, &x)
    }

    fn parts(&self) -> Parts<'_> {
        let parts = Parts::default().child("embedding", self.embedding.as_ref());
        parts.child("mlp", &self.mlp)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        let parts = PartsMut::default().child("embedding", self.embedding.as_mut());
        parts.child("mlp", &mut self.mlp)
    }
}
