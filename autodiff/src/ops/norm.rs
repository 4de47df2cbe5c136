//! Fused layer normalisation on the tape (equations in `dynlab_kernels::norm`). First-order
//! gradients run the fused backward kernels; when the sweep records (`create_graph`), the rule is
//! rebuilt from `Var` ops, so second derivatives are exact too.

use crate::var::{recording, Var};
use dynlab_runtime::Result;

impl Var {
    /// `(x − μ) / √(σ² + ε) · γ + β` over the last axis; `affine = Some((γ, β))`, both `[D]`.
    pub fn layer_norm(&self, affine: Option<(&Var, &Var)>, eps: f32) -> Result<Var> {
        let tensors = affine.map(|(g, b)| (g.value(), b.value()));
        let out = self.value().layer_norm(tensors, eps)?;
        let x = self.clone();
        let params = affine.map(|(g, b)| (g.clone(), b.clone()));
        let mut parents = vec![self];
        if let Some((g, b)) = affine {
            parents.extend([g, b]);
        }
        let stats = out.stats;
        Ok(Var::from_op("layer_norm", out.y, &parents, move |dy| {
            let gamma = params.as_ref().map(|(g, _)| g);
            if recording() {
                return layer_norm_rule_on_tape(&x, gamma, dy, eps);
            }
            let affine = params.as_ref().map(|(g, b)| (g.value(), b.value()));
            let grads = dy.value().layer_norm_backward(x.value(), affine, &stats)?;
            let mut out = vec![Some(Var::constant(grads.dx))];
            if let (Some(dg), Some(db)) = (grads.dgamma, grads.dbeta) {
                out.extend([Some(Var::constant(dg)), Some(Var::constant(db))]);
            }
            Ok(out)
        }))
    }
}

/// The layer-norm backward written with differentiable ops.
fn layer_norm_rule_on_tape(
    x: &Var,
    gamma: Option<&Var>,
    dy: &Var,
    eps: f32,
) -> Result<Vec<Option<Var>>> {
    let centred = x.sub(&x.mean(-1, true)?)?;
    let rstd = centred.square()?.mean(-1, true)?.add_scalar(eps)?.rsqrt()?;
    let x_hat = centred.mul(&rstd)?;
    let g_hat = match gamma {
        Some(g) => dy.mul(g)?,
        None => dy.clone(),
    };
    let dx = rstd.mul(
        &g_hat
            .sub(&g_hat.mean(-1, true)?)?
            .sub(&x_hat.mul(&g_hat.mul(&x_hat)?.mean(-1, true)?)?)?,
    )?;
    let mut out = vec![Some(dx)];
    if gamma.is_some() {
        out.push(Some(dy.mul(&x_hat)?));
        out.push(Some(dy.clone()));
    }
    Ok(out)
}
