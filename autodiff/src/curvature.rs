//! Second-order quantities by double backward.
//!
//! Hessian-vector product: `H v = ∇_θ (∇_θ L(θ) · v)` — one backward with `create_graph`, one more
//! through the gradient (Pearlmutter 1994). Hutchinson's trace estimator: `tr H = E[vᵀ H v]` for
//! Rademacher `v` (entries ±1 with probability ½; Hutchinson 1989), averaged over samples; the
//! gradient graph is built once and reused for every probe.

use crate::backward::{grad, GradOptions};
use crate::var::Var;
use dynlab_runtime::{Error, Result, Rng, Tensor};

/// `H v` for `H = ∇² loss_fn` at `params`, one tensor per parameter.
pub fn hvp(
    loss_fn: impl Fn(&[Var]) -> Result<Var>,
    params: &[Tensor],
    v: &[Tensor],
) -> Result<Vec<Tensor>> {
    if params.len() != v.len() || params.iter().zip(v).any(|(p, u)| p.shape() != u.shape()) {
        let shapes = |ts: &[Tensor]| ts.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>();
        return Err(Error::Shape {
            op: "autodiff::hvp",
            got: format!(
                "parameters of shapes {:?} and directions of shapes {:?}",
                shapes(params),
                shapes(v)
            ),
            expected: "one direction per parameter, of the parameter's shape".to_string(),
        });
    }
    let (vars, grads) = recorded_gradient(loss_fn, params)?;
    let refs: Vec<&Var> = vars.iter().collect();
    directional(&grads, &refs, v, false)
}

/// Fresh parameter variables and the gradient of `loss_fn` at them, recorded on the tape.
fn recorded_gradient(
    loss_fn: impl Fn(&[Var]) -> Result<Var>,
    params: &[Tensor],
) -> Result<(Vec<Var>, Vec<Var>)> {
    let vars: Vec<Var> = params.iter().map(|p| Var::param(p.clone())).collect();
    let loss = loss_fn(&vars)?;
    let refs: Vec<&Var> = vars.iter().collect();
    let grads = grad(
        &loss,
        &refs,
        GradOptions {
            create_graph: true,
            retain_graph: false,
        },
    )?;
    Ok((vars, grads))
}

/// `∇_θ (g · v)` for gradients `g` recorded on the tape.
fn directional(grads: &[Var], params: &[&Var], v: &[Tensor], retain: bool) -> Result<Vec<Tensor>> {
    let mut dot: Option<Var> = None;
    for (g, u) in grads.iter().zip(v) {
        let term = g.mul(&Var::constant(u.clone()))?.sum_all()?;
        dot = Some(match dot {
            Some(d) => d.add(&term)?,
            None => term,
        });
    }
    let dot = dot.ok_or_else(|| Error::Value {
        op: "autodiff::hvp",
        got: "no parameters".to_string(),
        expected: "at least one parameter".to_string(),
    })?;
    if !dot.requires_grad() {
        // The loss is linear in the parameters: the Hessian is zero.
        return params.iter().map(|p| p.value().zeros_like()).collect();
    }
    let hv = grad(
        &dot,
        params,
        GradOptions {
            create_graph: false,
            retain_graph: retain,
        },
    )?;
    Ok(hv.into_iter().map(|h| h.value().clone()).collect())
}

/// `H v` from the gradient `grads` of an output with respect to `wrt`, already recorded
/// (`create_graph`): one backward through the gradient, keeping its graph so that the same recorded
/// gradient serves every further direction (Lanczos, power iteration, Hutchinson).
pub fn hvp_of_gradient(grads: &[Var], wrt: &[&Var], v: &[Tensor]) -> Result<Vec<Tensor>> {
    if grads.len() != wrt.len()
        || v.len() != wrt.len()
        || wrt
            .iter()
            .zip(v)
            .any(|(p, u)| p.value().shape() != u.shape())
    {
        return Err(Error::Shape {
            op: "autodiff::hvp_of_gradient",
            got: format!(
                "{} gradients, {} variables, directions of shapes {:?}",
                grads.len(),
                wrt.len(),
                v.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>()
            ),
            expected: "one gradient and one direction of the variable's shape per variable"
                .to_string(),
        });
    }
    directional(grads, wrt, v, true)
}

/// Hutchinson's estimate of `tr ∇² loss_fn` at `params`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceEstimate {
    /// The estimate: the mean of `vᵀ H v` over the probes.
    pub mean: f64,
    /// Standard error of the mean over the probes.
    pub std_error: f64,
    /// Number of probes averaged.
    pub samples: usize,
}

/// `tr H` for `H = ∇² loss_fn` at `params`, estimated as the mean of `vᵀ H v` over `samples`
/// Rademacher probes `v` drawn from `seed` (one recorded gradient, one double backward per probe),
/// with its standard error.
pub fn hutchinson_trace(
    loss_fn: impl Fn(&[Var]) -> Result<Var>,
    params: &[Tensor],
    samples: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    let vars: Vec<Var> = params.iter().map(|p| Var::param(p.clone())).collect();
    let refs: Vec<&Var> = vars.iter().collect();
    hutchinson_trace_at(&loss_fn(&vars)?, &refs, samples, seed)
}

/// `tr ∇²_{wrt} output` for a scalar `output` already computed from the variables `wrt` (model
/// parameters, or an input such as a batch of embeddings), estimated as [`hutchinson_trace`] does:
/// the gradient recorded once, one double backward per Rademacher probe.
pub fn hutchinson_trace_at(
    output: &Var,
    wrt: &[&Var],
    samples: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    check_samples(samples)?;
    let grads = grad(
        output,
        wrt,
        GradOptions {
            create_graph: true,
            retain_graph: false,
        },
    )?;
    hutchinson_trace_of_gradient(&grads, wrt, samples, seed)
}

fn check_samples(samples: usize) -> Result<()> {
    if samples == 0 {
        return Err(Error::Value {
            op: "autodiff::hutchinson_trace",
            got: "0 samples".to_string(),
            expected: "at least 1".to_string(),
        });
    }
    Ok(())
}

/// [`hutchinson_trace_at`] from the gradient `grads` of the output with respect to `wrt`, already
/// recorded (`create_graph`), for a caller that also uses the gradient itself.
pub fn hutchinson_trace_of_gradient(
    grads: &[Var],
    wrt: &[&Var],
    samples: usize,
    seed: u64,
) -> Result<TraceEstimate> {
    check_samples(samples)?;
    let mut rng = Rng::new(seed);
    let mut values = Vec::with_capacity(samples);
    for _ in 0..samples {
        let probes = wrt
            .iter()
            .map(|p| {
                let p = p.value();
                Tensor::bernoulli_scalar(p.shape(), 0.5, &mut rng, p.device())?
                    .mul_scalar(2.0)?
                    .add_scalar(-1.0)
            })
            .collect::<Result<Vec<_>>>()?;
        let hv = directional(grads, wrt, &probes, true)?;
        let mut quad = 0.0f64;
        for (u, h) in probes.iter().zip(&hv) {
            quad += u.mul(h)?.sum_all()?.item()? as f64;
        }
        values.push(quad);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Ok(TraceEstimate {
        mean,
        std_error: (var / n).sqrt(),
        samples,
    })
}
