//! What a step minimises. An [`Objective`] maps the forward pass (the output and the taps it asked
//! for) and the targets to a [`Loss`]: the scalar to differentiate, the named terms it is made of
//! (each logged), and metrics that are not differentiated (accuracy).
//!
//! - [`CrossEntropy`]: mean softmax cross-entropy `−(1/N) Σ log softmax(z)_y` over integer labels;
//!   metric `acc`, the fraction of rows whose argmax is the label; both from one fused kernel
//!   (`Var::cross_entropy_mean`), in training and in evaluation.
//! - [`Mse`]: mean squared error `(1/n) Σ (ŷ − y)²` over every element (PyTorch's `mse_loss`).
//! - [`WeightedSum`]: `Σ_k w_k L_k` over named objectives; each `L_k` is logged by its name, and its
//!   own terms and metrics as `name.term`.
//!
//! Replicas ([`Forward::replicas`] is `Some(R)`): outputs and targets lead with the replica axis
//! and every value of the [`Loss`] holds one element per replica — replica `r`'s loss is exactly
//! the one model `r` would compute alone (the trainer differentiates their sum, whose gradient
//! with respect to replica `r`'s parameters is that of its own loss).

use dynlab_autodiff::Var;
use dynlab_models::Mode;
use dynlab_runtime::{DType, Error, Result, Tensor};
use std::collections::BTreeMap;

/// The forward pass as an objective sees it.
pub struct Forward {
    /// Training (the loss is differentiated) or evaluation.
    pub mode: Mode,
    /// The model's output.
    pub output: Var,
    /// The captured taps by path.
    pub taps: BTreeMap<String, Var>,
    /// `Some(R)` when the model runs `R` stacked replicas (outputs, taps and targets lead with `R`).
    pub replicas: Option<usize>,
}

impl Forward {
    /// The tap at `path`, or an error naming it.
    pub fn tap(&self, path: &str) -> Result<&Var> {
        self.taps.get(path).ok_or_else(|| {
            Error::value(
                "Forward::tap",
                format!("no tap `{path}` (captured: {:?})", self.taps.keys()),
                "a tap requested by the objective or a hook",
            )
        })
    }
}

/// A loss and what it is made of (with replicas, each value is `[R]`: one per replica).
pub struct Loss {
    /// The scalar to differentiate (per replica: their sum is differentiated).
    pub total: Var,
    /// Named parts of the total, logged (unweighted values).
    pub terms: Vec<(String, Var)>,
    /// Named device scalars that are logged but not differentiated.
    pub metrics: Vec<(String, Tensor)>,
}

impl Loss {
    /// A loss with no named parts.
    pub fn new(total: Var) -> Loss {
        Loss {
            total,
            terms: Vec::new(),
            metrics: Vec::new(),
        }
    }
}

/// A training objective (see the module docs).
pub trait Objective {
    /// The loss of `forward` against `targets`.
    fn loss(&self, forward: &Forward, targets: &Tensor) -> Result<Loss>;

    /// The taps this objective reads from [`Forward::taps`].
    fn taps(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Mean softmax cross-entropy over integer labels, with accuracy as a metric.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    fn loss(&self, forward: &Forward, labels: &Tensor) -> Result<Loss> {
        let logits = &forward.output;
        let (flat, flat_labels, groups) = match forward.replicas {
            None => (logits.clone(), labels.clone(), 1),
            Some(r) => {
                // Rows of every replica as one batch of R groups.
                let shape = logits.shape();
                if shape.len() != 3 || labels.shape() != [r, shape[1]] {
                    return Err(Error::shape(
                        "CrossEntropy::loss",
                        format!("logits {shape:?} and labels {:?}", labels.shape()),
                        format!("logits [{r}, N, C] and labels [{r}, N] for {r} replicas"),
                    ));
                }
                let flat = logits.reshape(&[-1, shape[2] as isize])?;
                (flat, labels.contiguous()?.reshape(&[-1])?, r)
            }
        };
        let (total, acc) = flat.cross_entropy_mean(&flat_labels, groups)?;
        let total = match forward.mode {
            Mode::Train => total,
            Mode::Eval => Var::constant(total.value().clone()),
        };
        let mut loss = Loss::new(total);
        loss.metrics.push(("acc".to_string(), acc));
        Ok(loss)
    }
}

/// Fraction of rows of `logits [N, C]` whose argmax equals the label, as a device scalar (one
/// fused row pass, then the mean).
pub fn accuracy(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    logits.correct(labels)?.mean_all()
}

/// Mean squared error over every element.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mse;

impl Objective for Mse {
    fn loss(&self, forward: &Forward, targets: &Tensor) -> Result<Loss> {
        let out = &forward.output;
        if out.shape() != targets.shape() || targets.dtype() != DType::F32 {
            return Err(Error::shape(
                "Mse::loss",
                format!(
                    "output {:?}, {} targets {:?}",
                    out.shape(),
                    targets.dtype(),
                    targets.shape()
                ),
                "f32 targets of the output's shape",
            ));
        }
        let diff = out.sub(&Var::constant(targets.clone()))?;
        match forward.replicas {
            None => Ok(Loss::new(diff.square()?.mean_all()?)),
            Some(r) => {
                let per_replica = diff.square()?.reshape(&[r as isize, -1])?;
                Ok(Loss::new(per_replica.mean(1, false)?))
            }
        }
    }
}

/// `Σ_k w_k L_k` over named objectives.
#[derive(Default)]
pub struct WeightedSum {
    terms: Vec<(String, f32, Box<dyn Objective>)>,
}

impl WeightedSum {
    /// No terms yet.
    pub fn new() -> WeightedSum {
        WeightedSum::default()
    }

    /// Adds `weight · objective`, logged as `name`. Names must be unique and the weight finite.
    pub fn term(
        mut self,
        name: &str,
        weight: f32,
        objective: impl Objective + 'static,
    ) -> Result<WeightedSum> {
        if !weight.is_finite() || self.terms.iter().any(|(n, _, _)| n == name) {
            return Err(Error::value(
                "WeightedSum::term",
                format!("term `{name}` with weight {weight}"),
                "a new name and a finite weight",
            ));
        }
        self.terms
            .push((name.to_string(), weight, Box::new(objective)));
        Ok(self)
    }
}

impl Objective for WeightedSum {
    fn loss(&self, forward: &Forward, targets: &Tensor) -> Result<Loss> {
        let mut total: Option<Var> = None;
        let (mut terms, mut metrics) = (Vec::new(), Vec::new());
        for (name, weight, objective) in &self.terms {
            let part = objective.loss(forward, targets)?;
            let weighted = part.total.mul_scalar(*weight)?;
            total = Some(match total {
                Some(t) => t.add(&weighted)?,
                None => weighted,
            });
            terms.push((name.clone(), part.total));
            let nested = part
                .terms
                .into_iter()
                .map(|(n, v)| (format!("{name}.{n}"), v));
            terms.extend(nested);
            let nested = part
                .metrics
                .into_iter()
                .map(|(n, v)| (format!("{name}.{n}"), v));
            metrics.extend(nested);
        }
        let total = total
            .ok_or_else(|| Error::value("WeightedSum::loss", "no terms", "at least one term"))?;
        Ok(Loss {
            total,
            terms,
            metrics,
        })
    }

    fn taps(&self) -> Vec<String> {
        self.terms.iter().flat_map(|(_, _, o)| o.taps()).collect()
    }
}
