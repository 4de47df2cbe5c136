//! Smoothness along the training trajectory.
//!
//! Between two points `θ_t` and `θ_{t+1}` of a run, on the same probe batch:
//! - the **gradient-Lipschitz estimate** `β̂ = ‖∇L(θ_{t+1}) − ∇L(θ_t)‖ / ‖θ_{t+1} − θ_t‖`, the local
//!   smoothness along the step (Santurkar, Tsipras, Ilyas & Madry 2018, "How does batch
//!   normalization help optimization?", measure it along the update direction);
//! - the **effective learning rate** `‖θ_{t+1} − θ_t‖ / ‖∇L(θ_t)‖` (for full-batch SGD on the probe
//!   batch it is `η`; adaptive optimizers and normalisation layers change it);
//! - the **sharpness** `λ_max(∇²L(θ))` against the stability threshold `2/η` of gradient descent
//!   (Cohen, Kaur, Li, Kolter & Talwalkar 2021, "Gradient descent on neural networks typically
//!   occurs at the edge of stability"), by Lanczos ([`super::hessian::top_eigen`]).

use super::hessian::{model_loss, top_eigen, HessianOperator, TopEigenOptions};
use dynlab_autodiff::{grad, GradOptions, Var};
use dynlab_models::Module;
use dynlab_runtime::{Error, Result, Tensor};
use dynlab_train::{Batch, Objective};

/// A point of the trajectory: the parameters and the probe batch's gradient there (copies, so
/// that later optimizer steps leave them alone).
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// `θ`, one tensor per parameter.
    pub params: Vec<Tensor>,
    /// `∇L(θ)` on the probe batch.
    pub gradient: Vec<Tensor>,
}

/// The parameters of `model` and the gradient of [`model_loss`] on `batch` there.
pub fn snapshot(model: &dyn Module, batch: &Batch, objective: &dyn Objective) -> Result<Snapshot> {
    let loss = model_loss(model, batch, objective)?;
    let params = model.params();
    let vars: Vec<&Var> = params.iter().map(|(_, p)| p.var()).collect();
    let options = GradOptions {
        create_graph: false,
        retain_graph: false,
    };
    let grads = grad(&loss, &vars, options)?;
    Ok(Snapshot {
        params: params
            .iter()
            .map(|(_, p)| p.value().copy())
            .collect::<Result<_>>()?,
        gradient: grads.iter().map(|g| g.value().clone()).collect(),
    })
}

/// The smoothness measures between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smoothness {
    /// `‖∇L(θ_b) − ∇L(θ_a)‖ / ‖θ_b − θ_a‖` (NaN when the parameters did not move).
    pub gradient_lipschitz: f64,
    /// `‖θ_b − θ_a‖ / ‖∇L(θ_a)‖` (NaN at a zero gradient).
    pub effective_lr: f64,
    /// `‖θ_b − θ_a‖`.
    pub step_norm: f64,
    /// `‖∇L(θ_a)‖`.
    pub gradient_norm: f64,
}

/// The measures from `before` to `after` (one read-back).
pub fn smoothness(before: &Snapshot, after: &Snapshot) -> Result<Smoothness> {
    let shapes = |ts: &[Tensor]| ts.iter().map(|t| t.shape().to_vec()).collect::<Vec<_>>();
    let layout = shapes(&before.params);
    if [&after.params, &before.gradient, &after.gradient]
        .iter()
        .any(|ts| shapes(ts) != layout)
    {
        return Err(Error::shape(
            "landscape::smoothness",
            format!(
                "parameters {layout:?} before, {:?} after, gradients {:?} and {:?}",
                shapes(&after.params),
                shapes(&before.gradient),
                shapes(&after.gradient)
            ),
            "snapshots of the same model (parameters and gradients of one layout)",
        ));
    }
    let diff = |a: &[Tensor], b: &[Tensor]| -> Result<Vec<Tensor>> {
        a.iter().zip(b).map(|(x, y)| y.sub(x)).collect()
    };
    let step = diff(&before.params, &after.params)?;
    let change = diff(&before.gradient, &after.gradient)?;
    let sq = |ts: &[Tensor]| -> Result<Tensor> {
        let parts = ts
            .iter()
            .map(|t| t.square()?.sum_all()?.reshape(&[1]))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = parts.iter().collect();
        Tensor::cat(&refs, 0)?.sum_all()?.reshape(&[1])
    };
    let sums = Tensor::cat(&[&sq(&step)?, &sq(&change)?, &sq(&before.gradient)?], 0)?;
    let v: Vec<f64> = sums
        .to_vec::<f32>()?
        .into_iter()
        .map(|x| f64::from(x).sqrt())
        .collect();
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
    Ok(Smoothness {
        gradient_lipschitz: ratio(v[1], v[0]),
        effective_lr: ratio(v[0], v[2]),
        step_norm: v[0],
        gradient_norm: v[2],
    })
}

/// `λ_max` of the Hessian of [`model_loss`] on `batch` by a `steps`-step Lanczos run.
pub fn sharpness(
    model: &dyn Module,
    batch: &Batch,
    objective: &dyn Objective,
    steps: usize,
    seed: u64,
) -> Result<f64> {
    let op = HessianOperator::of_model(model, batch, objective)?;
    let options = TopEigenOptions {
        k: 1,
        steps,
        vectors: false,
        seed,
    };
    Ok(top_eigen(&op, options)?.values[0])
}
