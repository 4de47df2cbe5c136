//! The softmax family on [`Var`]: softmax, log-softmax and the fused cross-entropy.

use super::{fused, output_for_rule};
use crate::var::Var;
use dynlab_runtime::{Result, Tensor};

impl Var {
    /// `softmax(x)`; backward `y ⊙ (g − Σ g ⊙ y)`.
    pub fn softmax(&self, axis: isize) -> Result<Var> {
        let (x, value) = (self.clone(), self.value().softmax(axis)?);
        let saved = value.clone();
        Ok(Var::from_op("softmax", value, &[self], move |g| {
            let y = output_for_rule(&saved, || x.softmax(axis))?;
            let dot = g.mul(&y)?.sum(axis, true)?;
            Ok(vec![Some(y.mul(&g.sub(&dot)?)?)])
        }))
    }

    /// `log_softmax(x)`; backward `g − softmax(x) · Σ g`.
    pub fn log_softmax(&self, axis: isize) -> Result<Var> {
        let x = self.clone();
        let value = self.value().log_softmax(axis)?;
        Ok(Var::from_op("log_softmax", value, &[self], move |g| {
            let p = x.softmax(axis)?;
            Ok(vec![Some(g.sub(&p.mul(&g.sum(axis, true)?)?)?)])
        }))
    }

    /// Per-sample cross-entropy of `[N, C]` logits and `[N]` i32 labels (the fused kernel);
    /// backward `(softmax(x) − onehot(y)) ⊙ g`.
    pub fn cross_entropy_per_sample(&self, labels: &Tensor) -> Result<Var> {
        let x = self.clone();
        let value = self.value().cross_entropy_per_sample(labels)?;
        let labels = labels.clone();
        Ok(Var::from_op("cross_entropy", value, &[self], move |g| {
            if fused() {
                let d = x.value().cross_entropy_backward(&labels, g.value())?;
                return Ok(vec![Some(Var::constant(d))]);
            }
            let onehot = Var::constant(labels.one_hot(x.shape()[1])?);
            let d = x.softmax(1)?.sub(&onehot)?;
            Ok(vec![Some(d.mul(&g.unsqueeze(1)?)?)])
        }))
    }

    /// Mean cross-entropy over the batch.
    pub fn cross_entropy(&self, labels: &Tensor) -> Result<Var> {
        self.cross_entropy_per_sample(labels)?.mean_all()
    }
}
