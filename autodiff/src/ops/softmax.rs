//! The softmax family on [`Var`]: softmax, log-softmax and the fused cross-entropy.

use super::{fused, fusion_on, output_for_rule};
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
        Ok(self.cross_entropy_mean(labels, 1)?.0)
    }

    /// The mean cross-entropy of `[G·n, C]` logits and `[G·n]` labels over each of `groups = G`
    /// groups of `n` rows (stacked replicas; 1: the batch), and the groups' accuracies (not on the
    /// tape): `([G], [G])`, or `([], [])` for one group. With the fused rules on, the losses and
    /// accuracies come from one kernel and the backward from one more
    /// (`(softmax − onehot) · g_group / n`); otherwise, and while a `create_graph` sweep records,
    /// per-row losses and their means, with rules that can be differentiated again.
    pub fn cross_entropy_mean(&self, labels: &Tensor, groups: usize) -> Result<(Var, Tensor)> {
        let shape: Vec<isize> = if groups == 1 {
            vec![]
        } else {
            vec![groups as isize]
        };
        if !fusion_on() {
            let per_row = self.cross_entropy_per_sample(labels)?;
            let correct = self.value().correct(labels)?;
            let (loss, acc) = match groups {
                1 => (per_row.mean_all()?, correct.mean_all()?),
                g => (
                    per_row.reshape(&[g as isize, -1])?.mean(1, false)?,
                    correct.reshape(&[g as isize, -1])?.mean(1, false)?,
                ),
            };
            return Ok((loss, acc));
        }
        let both = self.value().cross_entropy_mean(labels, groups)?;
        let loss = both.narrow(0, 0, 1)?.reshape(&shape)?;
        let acc = both.narrow(0, 1, 1)?.reshape(&shape)?;
        let (x, labels) = (self.clone(), labels.clone());
        let var = Var::from_op("cross_entropy_mean", loss, &[self], move |g| {
            if fused() {
                let d = x
                    .value()
                    .cross_entropy_mean_backward(&labels, g.value(), groups)?;
                return Ok(vec![Some(Var::constant(d))]);
            }
            let (rows, classes) = (x.shape()[0], x.shape()[1]);
            let onehot = Var::constant(labels.one_hot(classes)?);
            let d = x.softmax(1)?.sub(&onehot)?;
            let n = (rows / groups) as isize;
            let scale = g.div_scalar(n as f32)?.reshape(&[groups as isize, 1, 1])?;
            let per_group = d.reshape(&[groups as isize, n, classes as isize])?;
            Ok(vec![Some(
                per_group
                    .mul(&scale)?
                    .reshape(&[rows as isize, classes as isize])?,
            )])
        });
        Ok((var, acc))
    }
}
