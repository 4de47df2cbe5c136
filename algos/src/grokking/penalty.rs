//! Penalties on the learned function, added to the loss every so many steps
//! ([`Regulariser`]s of the training step):
//!
//! ```text
//! spectral   λ_spectral · (1 − smoothness_soft(f on the p × p grid))
//! jacobian   λ_jacobian · out_dim · mean_i ‖J_iᵀ v_i‖²,   v_i uniform on the unit sphere
//! ```
//!
//! `smoothness_soft` is [`spectral_smoothness_soft`] (the expected class under the softmax as the
//! image, so the penalty is differentiable); the Jacobian term is [`super::metrics`]'s estimator
//! with one fresh direction per example, differentiated through the recorded input gradient
//! (double backward), with respect to the one-hot rows (MLP, routed network) or the input
//! embeddings (transformer, held fixed for the input gradient).

use super::metrics::{jacobian_term, spectral_smoothness_soft, unit_directions};
use super::watch::{continuous_input, logits_from_input};
use dynlab_autodiff::{GradOptions, Var};
use dynlab_models::{Ctx, Module};
use dynlab_runtime::{Result, Rng, Tensor};
use dynlab_train::Regulariser;

fn due(every: u64, step: u64) -> bool {
    every > 0 && step.is_multiple_of(every)
}

/// `λ · (1 − smoothness_soft)` of the function on the whole grid, every `every` steps.
pub struct SpectralPenalty {
    /// Every pair `(a, b)`, encoded for the model, row `a·p + b`.
    pub grid: Tensor,
    /// The frequency cutoff `K`.
    pub cutoff: usize,
    /// `λ_spectral`.
    pub lambda: f32,
    /// Apply on steps that are multiples of this.
    pub every: u64,
}

impl Regulariser for SpectralPenalty {
    fn name(&self) -> &str {
        "spectral_penalty"
    }

    fn term(&mut self, model: &dyn Module, step: u64) -> Result<Option<Var>> {
        if !due(self.every, step) {
            return Ok(None);
        }
        let logits = model.forward(&Var::constant(self.grid.clone()), &mut Ctx::eval())?;
        let smooth = spectral_smoothness_soft(&logits, self.cutoff)?;
        Ok(Some(smooth.rsub_scalar(1.0)?.mul_scalar(self.lambda)?))
    }
}

/// `λ · out_dim · mean ‖Jᵀv‖²` over `samples`, every `every` steps, the directions of step `t`
/// drawn from seed `seed + t` (so a resumed run draws the same ones).
pub struct JacobianPenalty {
    /// The encoded inputs the penalty averages over.
    pub samples: Tensor,
    /// Output classes.
    pub outputs: usize,
    /// `λ_jacobian`.
    pub lambda: f32,
    /// Apply on steps that are multiples of this.
    pub every: u64,
    /// Seed of the random directions.
    pub seed: u64,
}

impl JacobianPenalty {
    /// The unweighted `out_dim · mean ‖J_iᵀ v_i‖²` along `directions [N, out_dim]`, differentiable
    /// in the model's parameters.
    pub fn value_along(&self, model: &dyn Module, directions: &Tensor) -> Result<Var> {
        let input = Var::param(continuous_input(model, &self.samples)?);
        let out = logits_from_input(model, &input)?;
        let options = GradOptions {
            create_graph: true,
            retain_graph: true,
        };
        jacobian_term(&input, &out, directions, options)
    }
}

impl Regulariser for JacobianPenalty {
    fn name(&self) -> &str {
        "jacobian_penalty"
    }

    fn term(&mut self, model: &dyn Module, step: u64) -> Result<Option<Var>> {
        if !due(self.every, step) {
            return Ok(None);
        }
        let n = self.samples.shape()[0];
        let device = self.samples.device().clone();
        let mut rng = Rng::new(self.seed.wrapping_add(step));
        let v = unit_directions(1, n, self.outputs, &mut rng, &device)?.squeeze(0)?;
        Ok(Some(self.value_along(model, &v)?.mul_scalar(self.lambda)?))
    }
}
