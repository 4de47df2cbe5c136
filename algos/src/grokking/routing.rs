//! The routed network's regularisers and the study's training objective.
//!
//! For routing weights `w ∈ [N, L, H]` (each `w_{n,l,·}` a softmax over the `H` heads), each
//! regulariser is a mean over inputs `n` and layers `l` (least-action learning's `routing.py`,
//! the consistency term defined here):
//!
//! ```text
//! entropy      R = mean −Σ_k w_k log w_k                       (low: each input picks few heads)
//! sparsity     R = mean (1 − max_k w_k)
//! gini         R = mean (1 − G(w)),  G(w) = Σ_{i,j} |w_i − w_j| / (2 H Σ_k w_k)
//! consistency  R = mean ‖w_{n,l} − w̄_l‖²,  w̄_l = mean_n w_{n,l}   (low: every input routes alike)
//! ```
//!
//! The objective is `CE + λ_routing · R`: [`GrokObjective`] logs the cross-entropy, the regulariser
//! as the term `routing_reg`, and the mean routing entropy as the metric `routing_entropy`
//! whenever the model offers the tap `routing`.

use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};
use dynlab_train::{CrossEntropy, Forward, Loss, Objective};

/// Floor under the routing weights inside the logarithm.
const LOG_FLOOR: f32 = 1e-12;

/// Which routing regulariser the loss adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingRegulariser {
    /// Mean entropy of the routing weights.
    Entropy,
    /// Mean `1 − max w`.
    Sparsity,
    /// Mean `1 − Gini(w)`.
    Gini,
    /// Mean squared distance of each input's routing from the batch's mean routing.
    Consistency,
}

impl RoutingRegulariser {
    /// Parses `entropy`, `sparsity`, `gini`, `consistency`.
    pub fn parse(name: &str) -> Option<RoutingRegulariser> {
        Some(match name {
            "entropy" => RoutingRegulariser::Entropy,
            "sparsity" => RoutingRegulariser::Sparsity,
            "gini" => RoutingRegulariser::Gini,
            "consistency" => RoutingRegulariser::Consistency,
            _ => return None,
        })
    }

    /// `R(w)` for routing weights `[N, L, H]` (a 0-d `Var`).
    pub fn value(self, w: &Var) -> Result<Var> {
        check_routing(w)?;
        match self {
            RoutingRegulariser::Entropy => routing_entropy(w),
            RoutingRegulariser::Sparsity => w.max(-1, false)?.rsub_scalar(1.0)?.mean_all(),
            RoutingRegulariser::Gini => {
                let h = w.shape()[2] as f32;
                let pairs = w.unsqueeze(-1)?.sub(&w.unsqueeze(-2)?)?.abs()?;
                let spread = pairs.sum(-1, false)?.sum(-1, false)?;
                let total = w.sum(-1, false)?.mul_scalar(2.0 * h)?;
                spread.div(&total)?.rsub_scalar(1.0)?.mean_all()
            }
            RoutingRegulariser::Consistency => {
                let mean = w.mean(0, true)?;
                w.sub(&mean)?.square()?.sum(-1, false)?.mean_all()
            }
        }
    }
}

fn check_routing(w: &Var) -> Result<()> {
    if w.shape().len() != 3 || w.shape().contains(&0) {
        return Err(Error::shape(
            "grokking::routing",
            format!("routing weights {:?}", w.shape()),
            "[N, L, H], none empty",
        ));
    }
    Ok(())
}

/// Mean entropy `−Σ_k w_k log w_k` over inputs and layers of routing weights `[N, L, H]`.
pub fn routing_entropy(w: &Var) -> Result<Var> {
    check_routing(w)?;
    let log = w.maximum_scalar(LOG_FLOOR)?.log()?;
    w.mul(&log)?.sum(-1, false)?.neg()?.mean_all()
}

/// Each head's mean routing weight per layer over the inputs, `[L, H]`.
pub fn head_utilisation(w: &Tensor) -> Result<Tensor> {
    if w.rank() != 3 {
        return Err(Error::shape(
            "grokking::head_utilisation",
            format!("{:?}", w.shape()),
            "[N, L, H]",
        ));
    }
    w.mean(0, false)
}

/// Cross-entropy plus, for a routed network, `λ · R(routing)` (see the module docs).
#[derive(Clone, Copy, Debug)]
pub struct GrokObjective {
    /// The regulariser and its weight `λ_routing` (`None`: cross-entropy only).
    pub routing: Option<(RoutingRegulariser, f32)>,
    /// Whether the model offers the tap `routing` (its entropy is then logged).
    pub routed: bool,
}

impl Objective for GrokObjective {
    fn loss(&self, forward: &Forward, labels: &Tensor) -> Result<Loss> {
        let mut loss = CrossEntropy.loss(forward, labels)?;
        if !self.routed {
            return Ok(loss);
        }
        let w = forward.tap("routing")?;
        loss.metrics.push((
            "routing_entropy".to_string(),
            routing_entropy(w)?.value().clone(),
        ));
        if let Some((kind, lambda)) = self.routing {
            let r = kind.value(w)?;
            if forward.mode == dynlab_models::Mode::Train {
                loss.total = loss.total.add(&r.mul_scalar(lambda)?)?;
            }
            loss.terms.push(("routing_reg".to_string(), r));
        }
        Ok(loss)
    }

    fn taps(&self) -> Vec<String> {
        if self.routed {
            vec!["routing".to_string()]
        } else {
            Vec::new()
        }
    }
}
