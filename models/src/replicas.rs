//! `R` independent copies of a model trained as one: every parameter stacked along a new leading
//! axis (`[in, out]` → `[R, in, out]`), inputs and outputs carrying the same leading axis, products
//! batched over it. Replica `r` computes exactly what model `r` computes alone — the layers apply
//! the same operations to its slice — so dozens of seeds (or a learning-rate sweep, with the
//! optimizer's per-replica multipliers) of a tiny model cost about one run's launches.
//!
//! Layers that handle the replica axis say so through [`Module::replicable`] (Linear, Embedding,
//! LayerNorm, activations and dropout, and models made only of those: the MLPs, the grokking MLP,
//! TMS); stacking anything else is an error. While a [`Replicas`] runs, [`Ctx::replicas`] is
//! `Some(R)`. Parameter paths stay those of one model, so checkpoints, optimizer state and metrics
//! key on the same names.

use crate::module::{Ctx, Module, Parts, PartsMut};
use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};

/// `R` stacked replicas of a model of type `M` (see the module docs).
#[derive(Clone, Debug)]
pub struct Replicas<M> {
    model: M,
    count: usize,
}

impl<M: Module + Clone> Replicas<M> {
    /// Stacks `models` (same structure and shapes, e.g. one per seed) into one model whose
    /// parameters carry a leading axis of `models.len()`.
    pub fn stack(models: Vec<M>) -> Result<Replicas<M>> {
        let op = "Replicas::stack";
        let Some(first) = models.first() else {
            return Err(Error::value(op, "no models", "at least one"));
        };
        if !first.replicable() {
            return Err(Error::value(
                op,
                format!("a {}", std::any::type_name::<M>()),
                "a model of replicable layers (Linear, Embedding, LayerNorm, activations)",
            ));
        }
        let shapes = |m: &M| -> Vec<(String, Vec<usize>)> {
            let params = m.params().into_iter();
            params
                .map(|(n, p)| (n, p.value().shape().to_vec()))
                .collect()
        };
        let want = shapes(first);
        if let Some(other) = models.iter().find(|m| shapes(m) != want) {
            return Err(Error::shape(
                op,
                format!("parameters {:?}", shapes(other)),
                format!("the first model's {want:?}"),
            ));
        }
        let mut stacked = first.clone();
        let all: Vec<Vec<(String, &crate::Param)>> = models.iter().map(|m| m.params()).collect();
        for (k, (_, param)) in stacked.params_mut().into_iter().enumerate() {
            let values: Vec<&Tensor> = all.iter().map(|ps| ps[k].1.value()).collect();
            param.reshape_to(Tensor::stack(&values, 0)?);
        }
        Ok(Replicas {
            model: stacked,
            count: models.len(),
        })
    }

    /// Replica `r` as a model of its own (its parameters copied out of the stack).
    pub fn replica(&self, r: usize) -> Result<M> {
        if r >= self.count {
            return Err(Error::value(
                "Replicas::replica",
                format!("replica {r}"),
                format!("one of 0..{}", self.count),
            ));
        }
        let mut one = self.model.clone();
        for (_, param) in one.params_mut() {
            let slice = param.value().narrow(0, r, 1)?.squeeze(0)?.contiguous()?;
            param.reshape_to(slice);
        }
        Ok(one)
    }
}

impl<M> Replicas<M> {
    /// Number of replicas `R`.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The stacked model (parameters `[R, …]`).
    pub fn stacked(&self) -> &M {
        &self.model
    }
}

impl<M: Module> Module for Replicas<M> {
    /// `[R, …]` inputs (each replica's batch; `Tensor::expand` shares one batch at no cost) →
    /// `[R, …]` outputs.
    fn forward(&self, input: &Var, ctx: &mut Ctx) -> Result<Var> {
        if input.shape().first() != Some(&self.count) {
            return Err(Error::shape(
                "Replicas::forward",
                format!("input {:?}", input.shape()),
                format!("[{}, …] (one batch per replica)", self.count),
            ));
        }
        let previous = ctx.set_replicas(Some(self.count));
        let out = self.model.forward(input, ctx);
        ctx.set_replicas(previous);
        out
    }

    fn parts(&self) -> Parts<'_> {
        self.model.parts()
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        self.model.parts_mut()
    }

    fn replicable(&self) -> bool {
        false
    }

    fn replicas(&self) -> Option<usize> {
        Some(self.count)
    }
}

/// The replica count a layer runs with and a check of its input: `Some(R)` when the context runs
/// `R` replicas (the input must lead with `R`), `None` for one model.
pub(crate) fn replica_axis(ctx: &Ctx, op: &'static str, input: &[usize]) -> Result<Option<usize>> {
    let Some(r) = ctx.replicas() else {
        return Ok(None);
    };
    if input.len() < 2 || input[0] != r {
        return Err(Error::shape(
            op,
            format!("input {input:?} of {r} replicas"),
            format!("[{r}, …]"),
        ));
    }
    Ok(Some(r))
}
