//! Scaled dot-product attention (Vaswani et al. 2017): `softmax(Q Kᵀ / √d + M) V` over `[..., T, d]`
//! queries, keys and values, with `M = −∞` above the diagonal when causal and wherever a mask
//! (1 = hidden) says.
//!
//! [`Var::attention`] materialises the scores, every step a tape op: the reference path.
//! [`Var::flash_attention`] runs the fused kernels (`Tensor::flash_attention`, no `T × S` scores);
//! its first-order rule is the fused backward, and when the sweep records (`create_graph`) the rule
//! is written with the materialised ops instead, so higher derivatives stay exact.

use crate::var::{recording, Var};
use dynlab_runtime::{Error, Result, Tensor};

/// Large negative score for hidden positions (finite, so a fully hidden row gives a uniform row, not NaN).
const HIDDEN: f32 = -1e30;

/// `x` with hidden (causal future, masked) score positions set to `value`.
fn hide(x: Var, causal: bool, mask: Option<&Tensor>, value: f32) -> Result<Var> {
    let r = x.shape().len();
    let (t, s) = (x.shape()[r - 2], x.shape()[r - 1]);
    let mut x = x;
    if causal {
        let future: Vec<f32> = (0..t * s)
            .map(|ij| if ij % s > ij / s { 1.0 } else { 0.0 })
            .collect();
        let future = Tensor::from_vec(future, &[t, s], x.value().device())?;
        x = x.masked_fill(&future, value)?;
    }
    if let Some(m) = mask {
        x = x.masked_fill(m, value)?;
    }
    Ok(x)
}

/// `softmax(q kᵀ / √d + M)`, materialised.
fn probabilities(q: &Var, k: &Var, causal: bool, mask: Option<&Tensor>) -> Result<Var> {
    let d = q.shape()[q.shape().len() - 1];
    let scores = q
        .matmul(&k.transpose(-1, -2)?)?
        .mul_scalar(1.0 / (d.max(1) as f32).sqrt())?;
    hide(scores, causal, mask, HIDDEN)?.softmax(-1)
}

impl Var {
    /// `softmax(self · keysᵀ / √d [+ mask]) · values`; `self`, `keys`, `values` are `[..., T, d]`
    /// (keys and values may have their own length `S`); `mask` broadcasts to `[..., T, S]`.
    pub fn attention(
        &self,
        keys: &Var,
        values: &Var,
        causal: bool,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let (q, k) = (self.shape(), keys.shape());
        let r = q.len();
        if r < 2
            || k.len() != r
            || values.shape().len() != r
            || q[r - 1] != k[r - 1]
            || k[r - 2] != values.shape()[r - 2]
        {
            return Err(Error::shape(
                "Var::attention",
                format!("q {q:?}, k {k:?}, v {:?}", values.shape()),
                "q [..., T, d], k [..., S, d], v [..., S, e]",
            ));
        }
        probabilities(self, keys, causal, mask)?.matmul(values)
    }

    /// [`Var::attention`] through the fused kernels (same arguments; `q`, `k`, `v` share their
    /// leading dimensions and `d, e ≤ 128`).
    pub fn flash_attention(
        &self,
        keys: &Var,
        values: &Var,
        causal: bool,
        mask: Option<&Tensor>,
    ) -> Result<Var> {
        let forward = self
            .value()
            .flash_attention(keys.value(), values.value(), causal, mask)?;
        let (q, k, v) = (self.clone(), keys.clone(), values.clone());
        let mask = mask.cloned();
        let out = forward.out.clone();
        Ok(Var::from_op(
            "flash_attention",
            out,
            &[self, keys, values],
            move |g| {
                if recording() {
                    return attention_rule_on_tape(&q, &k, &v, causal, mask.as_ref(), g);
                }
                let grads = q.value().flash_attention_backward(
                    k.value(),
                    v.value(),
                    causal,
                    mask.as_ref(),
                    &forward,
                    g.value(),
                )?;
                Ok([grads.dq, grads.dk, grads.dv]
                    .into_iter()
                    .map(|t| Some(Var::constant(t)))
                    .collect())
            },
        ))
    }
}

/// The attention backward written with differentiable (materialised) ops:
/// `dV = Pᵀ g`, `dS = P ⊙ (g Vᵀ − rowsum(P ⊙ g Vᵀ))` (zero where hidden),
/// `dQ = dS K / √d`, `dK = dSᵀ Q / √d`.
fn attention_rule_on_tape(
    q: &Var,
    k: &Var,
    v: &Var,
    causal: bool,
    mask: Option<&Tensor>,
    g: &Var,
) -> Result<Vec<Option<Var>>> {
    let d = q.shape()[q.shape().len() - 1];
    let scale = 1.0 / (d as f32).sqrt();
    let p = probabilities(q, k, causal, mask)?;
    let dv = p.transpose(-1, -2)?.matmul(g)?;
    let dp = g.matmul(&v.transpose(-1, -2)?)?;
    let ds = p.mul(&dp.sub(&p.mul(&dp)?.sum(-1, true)?)?)?;
    let ds = hide(ds, causal, mask, 0.0)?.mul_scalar(scale)?;
    let dq = ds.matmul(k)?;
    let dk = ds.transpose(-1, -2)?.matmul(q)?;
    Ok(vec![Some(dq), Some(dk), Some(dv)])
}
