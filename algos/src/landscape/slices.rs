//! Slices of the loss around a point in parameter space (Li, Xu, Taylor, Studer & Goldstein 2018,
//! "Visualizing the loss landscape of neural nets").
//!
//! A 1-D slice is `f(α) = L(θ + α δ)`, a 2-D slice `f(α, β) = L(θ + α δ + β η)`. With random
//! Gaussian directions, **filter normalisation** rescales every filter of a direction to the norm
//! of the same filter of the weights: `δ_{i,j} ← δ_{i,j} / ‖δ_{i,j}‖ · ‖θ_{i,j}‖` for filter `j`
//! of parameter `i` (an output column of a 2-D weight, taken in `Linear`'s `[in, out]` layout; an
//! output channel of a convolution `[out, in, kh, kw]`; a row of an embedding table), so that
//! slices of networks
//! with different weight scales compare. Parameters with one dimension (biases, normalisation
//! scales) get a zero direction by default (the paper's `--xignore biasbn`), or the weight itself
//! ([`BiasDirection::Weight`], the reference code's behaviour without that flag).
//!
//! Other directions: the top Hessian eigenvectors ([`super::hessian::top_eigen`]) and the line
//! between two checkpoints `δ = θ_B − θ_A` (`α = 0` at A, `α = 1` at B).
//!
//! The loss is the model's evaluation-mode loss ([`super::hessian::model_loss`]) over the
//! evaluation set in chunks of `chunk` rows (each chunk one forward pass on the device; the chunk
//! losses are averaged weighted by rows, exact for mean-reduced objectives), and every grid point's
//! loss stays on the device until one read-back per slice.

use super::hessian::model_loss;
use dynlab_autodiff::no_grad;
use dynlab_models::{Module, ParamKind};
use dynlab_runtime::{Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Objective};

/// What filter normalisation does with one-dimensional parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BiasDirection {
    /// Zero: biases and normalisation parameters stay put (the paper's figures).
    #[default]
    Zero,
    /// The parameter's own value (the reference code without `--xignore biasbn`).
    Weight,
}

/// The filter axis of a parameter: `Linear` weights are `[in, out]` (filters are columns), other
/// weights lead with their output channels.
fn filter_axis(kind: ParamKind, shape: &[usize]) -> Option<usize> {
    match (kind, shape.len()) {
        (_, 0 | 1) => None,
        (ParamKind::Weight, 2) => Some(1),
        _ => Some(0),
    }
}

/// `direction` with each filter rescaled to the norm of the same filter of `weights` (see the
/// module docs); `kinds` says which parameter is a weight matrix.
pub fn filter_normalize(
    direction: &[Tensor],
    weights: &[Tensor],
    kinds: &[ParamKind],
    bias: BiasDirection,
) -> Result<Vec<Tensor>> {
    let op = "landscape::filter_normalize";
    if direction.len() != weights.len() || kinds.len() != weights.len() {
        return Err(Error::shape(
            op,
            format!(
                "{} directions, {} weights, {} kinds",
                direction.len(),
                weights.len(),
                kinds.len()
            ),
            "one direction and one kind per weight",
        ));
    }
    direction
        .iter()
        .zip(weights)
        .zip(kinds)
        .map(|((d, w), &kind)| {
            if d.shape() != w.shape() {
                return Err(Error::shape(
                    op,
                    format!("a direction {:?} for a weight {:?}", d.shape(), w.shape()),
                    "the weight's shape",
                ));
            }
            match filter_axis(kind, w.shape()) {
                None => match bias {
                    BiasDirection::Zero => w.zeros_like(),
                    BiasDirection::Weight => w.copy(),
                },
                Some(axis) => {
                    let reduce = |t: &Tensor| -> Result<Tensor> {
                        let rows = filters_first(t, axis)?;
                        rows.square()?.sum(1, true)?.sqrt()
                    };
                    let scale = reduce(w)?.div(&reduce(d)?.add_scalar(1e-10)?)?;
                    let rows = filters_first(d, axis)?.mul(&scale)?;
                    restore_layout(&rows, w.shape(), axis)
                }
            }
        })
        .collect()
}

/// `t` as `[filters, rest]` with the filter axis first.
fn filters_first(t: &Tensor, axis: usize) -> Result<Tensor> {
    let filters = t.shape()[axis] as isize;
    match axis {
        0 => t.reshape(&[filters, -1]),
        _ => t
            .transpose(0, axis as isize)?
            .contiguous()?
            .reshape(&[filters, -1]),
    }
}

/// The inverse of [`filters_first`].
fn restore_layout(rows: &Tensor, shape: &[usize], axis: usize) -> Result<Tensor> {
    match axis {
        0 => rows.reshape(&to_isize(shape)),
        _ => {
            let mut swapped = shape.to_vec();
            swapped.swap(0, axis);
            rows.reshape(&to_isize(&swapped))?
                .transpose(0, axis as isize)?
                .contiguous()
        }
    }
}

fn to_isize(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|&d| d as isize).collect()
}

/// A Gaussian direction for `model`'s parameters, filter-normalised against their values.
pub fn random_direction(
    model: &dyn Module,
    rng: &mut Rng,
    bias: BiasDirection,
) -> Result<Vec<Tensor>> {
    let params = model.params();
    let weights: Vec<Tensor> = params.iter().map(|(_, p)| p.value().clone()).collect();
    let kinds: Vec<ParamKind> = params.iter().map(|(_, p)| p.kind()).collect();
    let raw = weights
        .iter()
        .map(|w| Tensor::rand_normal(w.shape(), 0.0, 1.0, rng, w.device()))
        .collect::<Result<Vec<_>>>()?;
    filter_normalize(&raw, &weights, &kinds, bias)
}

/// `to − from` per parameter (the line between two checkpoints).
pub fn direction_between(from: &[Tensor], to: &[Tensor]) -> Result<Vec<Tensor>> {
    if from.len() != to.len() {
        return Err(Error::shape(
            "landscape::direction_between",
            format!("{} and {} parameters", from.len(), to.len()),
            "the same parameters at both points",
        ));
    }
    from.iter().zip(to).map(|(a, b)| b.sub(a)).collect()
}

/// The values of `model`'s parameters (cheap handles).
pub fn parameter_values(model: &dyn Module) -> Vec<Tensor> {
    model
        .params()
        .iter()
        .map(|(_, p)| p.value().clone())
        .collect()
}

/// Sets `model`'s parameters to `values` (one per parameter, in [`Module::params`] order).
pub fn set_parameters(model: &mut dyn Module, values: &[Tensor]) -> Result<()> {
    let mut params = model.params_mut();
    if params.len() != values.len() {
        return Err(Error::shape(
            "landscape::set_parameters",
            format!("{} values", values.len()),
            format!("{} (the model's parameters)", params.len()),
        ));
    }
    for ((_, p), v) in params.iter_mut().zip(values) {
        p.set(v.clone())?;
    }
    Ok(())
}

/// What a slice evaluates: the loss of a model on a set, in chunks.
pub struct LossEval<'a> {
    /// The evaluation set.
    pub batch: &'a Batch,
    /// The objective.
    pub objective: &'a dyn Objective,
    /// Rows per forward pass.
    pub chunk: usize,
}

impl LossEval<'_> {
    /// The loss of `model` over the set, on the device (`[1]`).
    pub fn loss(&self, model: &dyn Module) -> Result<Tensor> {
        let n = self.batch.inputs.shape().first().copied().unwrap_or(0);
        if n == 0 || self.chunk == 0 {
            return Err(Error::value(
                "landscape::LossEval::loss",
                format!("{n} rows in chunks of {}", self.chunk),
                "at least one row and a positive chunk",
            ));
        }
        no_grad(|| {
            let mut total: Option<Tensor> = None;
            for start in (0..n).step_by(self.chunk) {
                let len = self.chunk.min(n - start);
                let part = Batch {
                    inputs: self.batch.inputs.narrow(0, start, len)?,
                    targets: self.batch.targets.narrow(0, start, len)?,
                };
                let loss = model_loss(model, &part, self.objective)?.value().clone();
                let weighted = loss.reshape(&[1])?.mul_scalar(len as f32 / n as f32)?;
                total = Some(match total {
                    Some(t) => t.add(&weighted)?,
                    None => weighted,
                });
            }
            total.ok_or_else(|| Error::value("landscape::LossEval::loss", "no rows", "rows"))
        })
    }
}

/// `L(center + Σ_i c_i d_i)` for each coefficient list, one read-back at the end; the model's
/// parameters are back at `center` afterwards (also on error).
fn losses_at(
    model: &mut dyn Module,
    eval: &LossEval,
    center: &[Tensor],
    directions: &[&[Tensor]],
    coefficients: &[Vec<f64>],
) -> Result<Vec<f64>> {
    let result = (|| {
        let mut losses = Vec::with_capacity(coefficients.len());
        for coeffs in coefficients {
            let point = center
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let mut p = c.clone();
                    for (d, &a) in directions.iter().zip(coeffs) {
                        if a != 0.0 {
                            p = p.add(&d[i].mul_scalar(a as f32)?)?;
                        }
                    }
                    Ok(p)
                })
                .collect::<Result<Vec<_>>>()?;
            set_parameters(model, &point)?;
            losses.push(eval.loss(model)?);
        }
        let refs: Vec<&Tensor> = losses.iter().collect();
        Ok(Tensor::cat(&refs, 0)?
            .to_vec::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect::<Vec<f64>>())
    })();
    set_parameters(model, center)?;
    result
}

fn check_directions(op: &'static str, center: &[Tensor], directions: &[&[Tensor]]) -> Result<()> {
    for d in directions {
        if d.len() != center.len() || d.iter().zip(center).any(|(a, b)| a.shape() != b.shape()) {
            return Err(Error::shape(
                op,
                format!("a direction of {} tensors", d.len()),
                "one tensor of each parameter's shape",
            ));
        }
    }
    Ok(())
}

/// A 1-D slice: `loss[i] = L(θ + alphas[i] δ)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice1d {
    /// The coefficients along the direction.
    pub alphas: Vec<f64>,
    /// The loss at each.
    pub losses: Vec<f64>,
}

/// A 2-D slice: `losses[j · alphas.len() + i] = L(θ + alphas[i] δ + betas[j] η)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Slice2d {
    /// Coefficients along the first direction (x).
    pub alphas: Vec<f64>,
    /// Coefficients along the second direction (y).
    pub betas: Vec<f64>,
    /// The loss, row-major over `(beta, alpha)`.
    pub losses: Vec<f64>,
}

/// `L(θ + α δ)` for each `α`, `θ` the model's current parameters.
pub fn slice_1d(
    model: &mut dyn Module,
    eval: &LossEval,
    direction: &[Tensor],
    alphas: &[f64],
) -> Result<Slice1d> {
    let center = parameter_values(model);
    check_directions("landscape::slice_1d", &center, &[direction])?;
    let coefficients: Vec<Vec<f64>> = alphas.iter().map(|&a| vec![a]).collect();
    let losses = losses_at(model, eval, &center, &[direction], &coefficients)?;
    Ok(Slice1d {
        alphas: alphas.to_vec(),
        losses,
    })
}

/// `L(θ + α δ + β η)` on the grid `alphas × betas`.
pub fn slice_2d(
    model: &mut dyn Module,
    eval: &LossEval,
    directions: [&[Tensor]; 2],
    alphas: &[f64],
    betas: &[f64],
) -> Result<Slice2d> {
    let center = parameter_values(model);
    check_directions("landscape::slice_2d", &center, &directions)?;
    let coefficients: Vec<Vec<f64>> = betas
        .iter()
        .flat_map(|&b| alphas.iter().map(move |&a| vec![a, b]))
        .collect();
    let losses = losses_at(model, eval, &center, &directions, &coefficients)?;
    Ok(Slice2d {
        alphas: alphas.to_vec(),
        betas: betas.to_vec(),
        losses,
    })
}

/// `L((1 − α) θ_A + α θ_B)` for each `α`: the line between two checkpoints.
pub fn interpolation(
    model: &mut dyn Module,
    eval: &LossEval,
    from: &[Tensor],
    to: &[Tensor],
    alphas: &[f64],
) -> Result<Slice1d> {
    let saved = parameter_values(model);
    let direction = direction_between(from, to)?;
    let slice = set_parameters(model, from).and_then(|_| slice_1d(model, eval, &direction, alphas));
    set_parameters(model, &saved)?;
    slice
}

/// `n` evenly spaced values from `-span` to `span` (`n ≥ 2`; odd `n` includes 0).
pub fn symmetric_grid(span: f64, n: usize) -> Result<Vec<f64>> {
    if n < 2 || !(span.is_finite() && span > 0.0) {
        return Err(Error::value(
            "landscape::symmetric_grid",
            format!("span {span}, {n} points"),
            "a positive span and at least 2 points",
        ));
    }
    Ok((0..n)
        .map(|i| -span + 2.0 * span * i as f64 / (n - 1) as f64)
        .collect())
}
