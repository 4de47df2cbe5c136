//! The learners of the plasticity runners, chosen by name in a `[learner]` table (Dohare et al.
//! 2024, Methods):
//!
//! - `backprop`: the optimizer alone; with `optim.weight_decay > 0` it is the "BP + L2" baseline.
//! - `shrink_perturb` (Ash & Adams 2020, as Dohare et al. run it): weight decay through the
//!   optimizer ("shrink"), then after every step Gaussian noise `N(0, σ²)` added to every weight and
//!   bias ("perturb", `lop/algos/bp.py::perturb`).
//! - `cbp`: continual backprop, backprop followed by generate-and-test ([`super::gnt`]).

use super::gnt::{FreshInit, GntConfig};
use dynlab_models::{Activation, Module, Record, Stateful};
use dynlab_runtime::{Error, Result, Rng, Tensor, UnitUtility};
use dynlab_train::{Hook, StepView};
use serde::{Deserialize, Serialize};

/// `[learner.cbp]`: generate-and-test's hyperparameters (defaults: the Nature paper's).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CbpConfig {
    /// Replacement rate `ρ` per eligible unit and step.
    #[serde(default = "default_replacement_rate")]
    pub replacement_rate: f32,
    /// Decay `η` of the running utility and mean feature.
    #[serde(default = "default_decay")]
    pub decay: f32,
    /// Maturity threshold (the reference bit-flipping config's runs used 10; see `gnt`).
    #[serde(default = "default_maturity")]
    pub maturity: u64,
    /// `contribution`, `zero_contribution`, `adaptable_contribution`, `weight`,
    /// `feature_by_input` or `adaptation`.
    #[serde(default = "default_utility")]
    pub utility: String,
    /// Accumulate fractional replacements (else one with probability `ρ n` when `ρ n < 1`).
    #[serde(default)]
    pub accumulate: bool,
    /// Correct the next layer's bias by a replaced unit's mean contribution (`false`: the
    /// reference code's effective behaviour).
    #[serde(default = "default_true")]
    pub bias_transfer: bool,
    /// Fresh input weights: `kaiming` (the activation's gain; ReLU's for swish and ELU),
    /// `default`, `lecun` or `xavier`.
    #[serde(default = "default_init")]
    pub init: String,
}

fn default_replacement_rate() -> f32 {
    1e-4
}
fn default_decay() -> f32 {
    0.99
}
fn default_maturity() -> u64 {
    100
}
fn default_utility() -> String {
    "contribution".into()
}
fn default_true() -> bool {
    true
}
fn default_init() -> String {
    "kaiming".into()
}

impl Default for CbpConfig {
    fn default() -> Self {
        CbpConfig {
            replacement_rate: default_replacement_rate(),
            decay: default_decay(),
            maturity: default_maturity(),
            utility: default_utility(),
            accumulate: false,
            bias_transfer: true,
            init: default_init(),
        }
    }
}

impl CbpConfig {
    /// Generate-and-test's config for a network of `activation`, seeded with `seed`; `key` names
    /// the table in errors.
    pub fn gnt(&self, activation: Activation, seed: u64, key: &str) -> Result<GntConfig> {
        let utility = UnitUtility::parse(&self.utility).ok_or_else(|| {
            Error::config(
                format!("{key}.utility"),
                format!(
                    "`{}` is not one of contribution, zero_contribution, adaptable_contribution, \
                     weight, feature_by_input, adaptation",
                    self.utility
                ),
            )
        })?;
        let gain = match activation {
            Activation::Swish | Activation::Elu => Activation::Relu.gain(),
            a => a.gain(),
        };
        let init = match self.init.as_str() {
            "kaiming" if activation == Activation::Selu => FreshInit::Lecun,
            "kaiming" => FreshInit::Kaiming { gain },
            "default" => FreshInit::Default,
            "lecun" => FreshInit::Lecun,
            "xavier" => FreshInit::Xavier { gain },
            other => {
                return Err(Error::config(
                    format!("{key}.init"),
                    format!("`{other}` is not one of kaiming, default, lecun, xavier"),
                ))
            }
        };
        let config = GntConfig {
            replacement_rate: self.replacement_rate,
            decay: self.decay,
            maturity: self.maturity,
            utility,
            accumulate: self.accumulate,
            bias_transfer: self.bias_transfer,
            init,
            seed,
        };
        config
            .validate()
            .map_err(|e| Error::config(key.to_string(), e.to_string()))?;
        Ok(config)
    }
}

/// The names `kind` accepts.
pub const LEARNER_KINDS: [&str; 3] = ["backprop", "shrink_perturb", "cbp"];

/// Checks a learner's kind and its noise, naming `key` in errors.
pub fn check_learner(kind: &str, noise_std: f32, key: &str) -> Result<()> {
    if !LEARNER_KINDS.contains(&kind) {
        return Err(Error::config(
            format!("{key}.kind"),
            format!("`{kind}` is not one of {}", LEARNER_KINDS.join(", ")),
        ));
    }
    if kind == "shrink_perturb" && !(noise_std > 0.0 && noise_std.is_finite()) {
        return Err(Error::config(
            format!("{key}.noise_std"),
            format!("{noise_std}: shrink_perturb needs a finite noise_std > 0"),
        ));
    }
    Ok(())
}

/// Shrink & Perturb's perturbation (see the module docs): after every step, `θ ← θ + σ ε`,
/// `ε ~ N(0, I)`, for every parameter; one `σ` per replica of a stacked model (0 leaves a replica
/// alone).
pub struct Perturb {
    std: Vec<f32>,
    rng: Rng,
}

impl Perturb {
    /// Noise of standard deviation `std[r]` for replica `r` (one entry for a single model).
    pub fn new(std: Vec<f32>, seed: u64) -> Result<Perturb> {
        if std.is_empty() || std.iter().any(|s| !(*s >= 0.0 && s.is_finite())) {
            return Err(Error::value(
                "Perturb::new",
                format!("noise std {std:?}"),
                "at least one finite std >= 0",
            ));
        }
        Ok(Perturb {
            std,
            rng: Rng::new(seed),
        })
    }

    /// The per-replica σ as a tensor broadcasting over a parameter of `shape` (replicas lead).
    fn scale(&self, shape: &[usize], replicas: Option<usize>, like: &Tensor) -> Result<Tensor> {
        match replicas {
            None => Tensor::scalar(self.std[0], like.device()),
            Some(r) => {
                if self.std.len() != r {
                    return Err(Error::value(
                        "Perturb",
                        format!("{} noise levels", self.std.len()),
                        format!("one per replica ({r})"),
                    ));
                }
                let mut dims = vec![1usize; shape.len()];
                dims[0] = r;
                Tensor::from_vec(self.std.clone(), &dims, like.device())
            }
        }
    }
}

impl Hook for Perturb {
    fn after_step(&mut self, step: &mut StepView) -> Result<()> {
        let replicas = step.model.replicas();
        for (_, p) in step.model.params_mut() {
            let value = p.value().clone();
            let scale = self.scale(value.shape(), replicas, &value)?;
            let noise =
                Tensor::rand_normal(value.shape(), 0.0, 1.0, &mut self.rng, value.device())?;
            p.set(value.add(&noise.mul(&scale)?)?)?;
        }
        Ok(())
    }

    fn save_state(&self) -> Result<Record> {
        Ok(Record::default().nest("rng", self.rng.save_state()?))
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        self.rng.load_state(&record.part("rng"))
    }
}

/// Counts the dense hidden layers `layers.0 … layers.{k−1}` of a stack with one more output layer
/// (the zoo's `Mlp` and `DeepFfnn`): parameters named `layers.<i>.weight`, minus the last.
pub fn dense_hidden_layers(model: &dyn Module) -> usize {
    let params = model.params();
    (0..)
        .take_while(|i| {
            let name = format!("layers.{i}.weight");
            params.iter().any(|(n, _)| *n == name)
        })
        .count()
        .saturating_sub(1)
}
