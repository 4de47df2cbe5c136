//! Matrix products on [`Var`]: batched `matmul` and the fused dense layer `linear`.
//!
//! The gradient of an operand that broadcasts over leading batch dimensions of the product (a
//! weight `[K, N]` applied to a batch `[P, M, K]`, a convolution's `W_g` applied to every image's
//! columns) is the sum over those dimensions, `∂A = Σ_p g_p B_pᵀ`. Computing every `g_p B_pᵀ` and
//! summing afterwards stores `P` copies of the operand; instead the leading dimensions are folded
//! into the contraction: `∂A = g' B'ᵀ` with `g' = g` laid out `[…, M, P·N]` and `B'` as
//! `[…, K, P·N]` (one product, the transient copies the size of `g` and `B`).

use crate::var::Var;
use dynlab_runtime::{MatmulOptions, Result};

impl Var {
    /// `self [..., M, K] · other [..., K, N]`; gradients `g Bᵀ` and `Aᵀ g`, summed over broadcast
    /// batch dimensions (leading ones folded into the product, see the module doc).
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().matmul(other.value())?;
        Ok(Var::from_op("matmul", value, &[self, other], move |g| {
            // Products for a parent that needs no gradient (data) are skipped.
            let ga = a
                .requires_grad()
                .then(|| left_gradient(g, &b, a.shape()))
                .transpose()?;
            let gb = b
                .requires_grad()
                .then(|| right_gradient(&a, g, b.shape()))
                .transpose()?;
            Ok(vec![ga, gb])
        }))
    }

    /// `self · w + bias` (a dense layer) in one kernel: a `[N]` bias through the bias epilogue,
    /// any other bias broadcastable to the product (stacked replicas' `[R, 1, N]`) through the
    /// accumulate epilogue. The bias's gradient is `g` summed back to its shape.
    pub fn linear(&self, w: &Var, bias: &Var) -> Result<Var> {
        let (x, wc) = (self.clone(), w.clone());
        let options = if bias.shape().len() == 1 {
            MatmulOptions {
                bias: Some(bias.value()),
                ..Default::default()
            }
        } else {
            MatmulOptions {
                accumulate: Some(bias.value()),
                ..Default::default()
            }
        };
        let value = self.value().matmul_with(w.value(), options)?;
        Ok(Var::from_op("linear", value, &[self, w, bias], move |g| {
            let gx = x
                .requires_grad()
                .then(|| left_gradient(g, &wc, x.shape()))
                .transpose()?;
            let gw = right_gradient(&x, g, wc.shape())?;
            Ok(vec![gx, Some(gw), Some(g.clone())])
        }))
    }
}

/// How many leading batch dimensions of the product `g` an operand of `shape` lacks, when that
/// is the only way it broadcasts (its batch dimensions equal `g`'s trailing ones) and they hold
/// more than one matrix; `None` otherwise (no broadcast, or one the backward sweep sums back).
fn folded_lead(g: &[usize], shape: &[usize]) -> Option<usize> {
    let (out_batch, batch) = (batch_dims(g)?, batch_dims(shape)?);
    let lead = out_batch.len().checked_sub(batch.len())?;
    let folded: usize = out_batch[..lead].iter().product();
    (lead > 0 && folded > 1 && &out_batch[lead..] == batch).then_some(lead)
}

fn batch_dims(shape: &[usize]) -> Option<&[usize]> {
    shape.get(..shape.len().checked_sub(2)?)
}

/// `[P…, kept…, R, C]` → `[kept…, R, P·C]` (`P` the first `lead` dimensions).
fn fold_into_columns(x: &Var, lead: usize) -> Result<Var> {
    let rank = x.shape().len();
    let mut order: Vec<usize> = (lead..rank - 1).collect();
    order.extend(0..lead);
    order.push(rank - 1);
    let mut shape: Vec<isize> = x.shape()[lead..rank - 1]
        .iter()
        .map(|&s| s as isize)
        .collect();
    shape.push(-1);
    x.permute(&order)?.reshape(&shape)
}

/// `[P…, kept…, R, C]` → `[kept…, P·R, C]` (`P` the first `lead` dimensions).
fn fold_into_rows(x: &Var, lead: usize) -> Result<Var> {
    let rank = x.shape().len();
    let mut order: Vec<usize> = (lead..rank - 2).collect();
    order.extend(0..lead);
    order.extend([rank - 2, rank - 1]);
    let mut shape: Vec<isize> = x.shape()[lead..rank - 2]
        .iter()
        .map(|&s| s as isize)
        .collect();
    shape.extend([-1, x.shape()[rank - 1] as isize]);
    x.permute(&order)?.reshape(&shape)
}

/// `∂A` of `A·B` from the product's gradient `g`, for an `A` of `shape`.
fn left_gradient(g: &Var, b: &Var, shape: &[usize]) -> Result<Var> {
    match folded_lead(g.shape(), shape).filter(|_| batch_dims(b.shape()) == batch_dims(g.shape())) {
        Some(lead) => {
            let (g, b) = (fold_into_columns(g, lead)?, fold_into_columns(b, lead)?);
            g.matmul(&b.transpose(-1, -2)?)
        }
        None => g.matmul(&b.transpose(-1, -2)?),
    }
}

/// `∂B` of `A·B` from the product's gradient `g`, for a `B` of `shape`.
fn right_gradient(a: &Var, g: &Var, shape: &[usize]) -> Result<Var> {
    match folded_lead(g.shape(), shape).filter(|_| batch_dims(a.shape()) == batch_dims(g.shape())) {
        Some(lead) => {
            let (a, g) = (fold_into_rows(a, lead)?, fold_into_rows(g, lead)?);
            a.transpose(-1, -2)?.matmul(&g)
        }
        None => a.transpose(-1, -2)?.matmul(g),
    }
}
