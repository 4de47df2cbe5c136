//! The grokking baseline of Power et al. (2022) / Nanda et al. (2023), MLP form: the operands `a, b`
//! of `a ∘ b mod p` enter either one-hot (`[onehot(a), onehot(b)] ∈ R^{2p}`) or through a learned
//! embedding (`[E a, E b] ∈ R^{2d}`), pass GELU hidden layers, and leave as `p` logits.

use crate::activation::Activation;
use crate::embedding::Embedding;
use crate::init::Init;
use crate::mlp::Mlp;
use crate::module::{prefixed, Module, Param};
use dynlab_autodiff::Var;
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};

/// How the operand pair enters the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairEncoding {
    OneHot,
    /// Learned embedding of this width.
    Embedding(usize),
}

#[derive(Clone, Debug)]
pub struct BaselineMlp {
    pub p: usize,
    pub embedding: Option<Embedding>,
    pub mlp: Mlp,
}

impl BaselineMlp {
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

    /// Turns operand pairs `[N, 2]` (i32) into what [`BaselineMlp::forward`] takes: the one-hot
    /// rows `[N, 2p]` (computed once per dataset) or the pairs themselves for the embedding form.
    pub fn encode_pairs(&self, pairs: &Tensor) -> Result<Tensor> {
        self.check_pairs("BaselineMlp::encode_pairs", pairs)?;
        if self.embedding.is_some() {
            return Ok(pairs.clone());
        }
        let n = pairs.shape()[0] as isize;
        pairs.one_hot(self.p)?.reshape(&[n, 2 * self.p as isize])
    }

    /// Logits `[N, p]` and the last hidden representation, from encoded pairs.
    pub fn forward(&self, encoded: &Tensor) -> Result<(Var, Var)> {
        let x = match &self.embedding {
            Some(e) => {
                self.check_pairs("BaselineMlp::forward", encoded)?;
                let n = encoded.shape()[0] as isize;
                e.forward(encoded)?.reshape(&[n, 2 * e.dim() as isize])?
            }
            None => {
                if encoded.dtype() != DType::F32
                    || encoded.rank() != 2
                    || encoded.shape()[1] != 2 * self.p
                {
                    return Err(Error::shape(
                        "BaselineMlp::forward",
                        format!("{} input {:?}", encoded.dtype(), encoded.shape()),
                        format!("f32 one-hot pairs [N, {}] from encode_pairs", 2 * self.p),
                    ));
                }
                Var::constant(encoded.clone())
            }
        };
        self.mlp.forward_with_hidden(&x)
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
    fn params(&self) -> Vec<(String, &Param)> {
        let mut v: Vec<_> = self
            .embedding
            .iter()
            .flat_map(|e| prefixed("embedding", e.params()))
            .collect();
        v.extend(prefixed("mlp", self.mlp.params()));
        v
    }

    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let mut v: Vec<_> = self
            .embedding
            .iter_mut()
            .flat_map(|e| prefixed("embedding", e.params_mut()))
            .collect();
        v.extend(prefixed("mlp", self.mlp.params_mut()));
        v
    }
}
