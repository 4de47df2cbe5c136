//! Scaled dot-product attention (Vaswani et al. 2017), materialised:
//! `softmax(Q Kᵀ / √d + M) V` over `[..., T, d]` queries, keys and values, with `M = −∞` above the
//! diagonal when causal and wherever a boolean mask (1 = hidden) says. Every step is a tape op, so
//! gradients and higher derivatives follow; this is the reference path a fused kernel is checked against.

use crate::var::Var;
use dynlab_runtime::{Error, Result, Tensor};

/// Large negative score for hidden positions (finite, so a fully hidden row gives a uniform row, not NaN).
const HIDDEN: f32 = -1e30;

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
        let (t, s, d) = (q[r - 2], k[r - 2], q[r - 1]);
        let mut scores = self
            .matmul(&keys.transpose(-1, -2)?)?
            .mul_scalar(1.0 / (d.max(1) as f32).sqrt())?;
        if causal {
            let future: Vec<f32> = (0..t * s)
                .map(|ij| if ij % s > ij / s { 1.0 } else { 0.0 })
                .collect();
            let future = Tensor::from_vec(future, &[t, s], self.value().device())?;
            scores = scores.masked_fill(&future, HIDDEN)?;
        }
        if let Some(m) = mask {
            scores = scores.masked_fill(m, HIDDEN)?;
        }
        scores.softmax(-1)?.matmul(values)
    }
}
