//! Matrix products on [`Var`]: batched `matmul` and the fused dense layer `linear`.

use crate::var::Var;
use dynlab_runtime::{MatmulOptions, Result};

impl Var {
    /// `self [..., M, K] · other [..., K, N]`; gradients `g Bᵀ` and `Aᵀ g` (the sweep sums them
    /// over broadcast batch dimensions).
    pub fn matmul(&self, other: &Var) -> Result<Var> {
        let (a, b) = (self.clone(), other.clone());
        let value = self.value().matmul(other.value())?;
        Ok(Var::from_op("matmul", value, &[self, other], move |g| {
            // Products for a parent that needs no gradient (data) are skipped.
            let ga = a
                .requires_grad()
                .then(|| g.matmul(&b.transpose(-1, -2)?))
                .transpose()?;
            let gb = b
                .requires_grad()
                .then(|| a.transpose(-1, -2)?.matmul(g))
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
                .then(|| g.matmul(&wc.transpose(-1, -2)?))
                .transpose()?;
            let gw = x.transpose(-1, -2)?.matmul(g)?;
            Ok(vec![gx, Some(gw), Some(g.clone())])
        }))
    }
}
