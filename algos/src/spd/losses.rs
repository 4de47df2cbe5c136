//! SPD's stochastic masks and its four losses (normalised as the paper's pseudocode, with `D` the
//! mean squared error over every output element):
//!
//! - faithfulness `L_F = (1/N) Σ_l ‖W^l − V^l U^l‖²_F`, `N` the number of decomposed weights (the
//!   reference code counts the decomposed layers' weights; the paper's text says "parameters");
//! - stochastic reconstruction `L_SR = (1/S) Σ_s D(f(x | V, U, m_s), f(x | W))`, every layer masked;
//! - layerwise stochastic reconstruction `L_SRL = (1/(S·L)) Σ_s Σ_l D(f(x | layer l masked), f(x))`,
//!   the other layers the target's (as the reference code and the paper's main text; the
//!   paper's pseudocode would use the unmasked components there);
//! - importance minimality `L_IM = (1/B) Σ_b Σ_l Σ_c σ_upper(raw_{b,l,c})^p`.
//!
//! Masks `m = g + (1 − g)·u` per example and subcomponent with `g = σ_lower(raw)`: continuous
//! (`u ~ U(0, 1)`, the paper's) or binomial (`u ~ Bernoulli(½)`, `g` from `1.05·raw − 0.05·U(0, 1)`,
//! the reference's later option). Nothing is detached: the reconstruction losses train the gates
//! through `g` and `V` through the gates' inputs.

use super::components::{
    lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid, ComponentModel, Route,
};
use dynlab_autodiff::Var;
use dynlab_models::Module;
use dynlab_runtime::{Result, Rng, Tensor};

/// How masks are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskKind {
    /// `u ~ U(0, 1)`.
    Continuous,
    /// `u ~ Bernoulli(½)`, with the gate's input jittered.
    Binomial,
}

/// The coefficients and sampling of the losses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossSettings {
    /// Faithfulness coefficient.
    pub faithfulness: f32,
    /// Stochastic reconstruction coefficient.
    pub stochastic_recon: f32,
    /// Layerwise stochastic reconstruction coefficient.
    pub stochastic_recon_layerwise: f32,
    /// Importance-minimality coefficient.
    pub importance_minimality: f32,
    /// The exponent `p` of the minimality loss.
    pub pnorm: f32,
    /// Mask samples `S` per step.
    pub mask_samples: usize,
    /// How masks are drawn.
    pub mask: MaskKind,
}

/// One step's losses (a term is `None` when its coefficient is 0 and it was not computed).
pub struct SpdLosses {
    /// The weighted sum.
    pub total: Var,
    /// `L_F`.
    pub faithfulness: Option<Var>,
    /// `L_SR`.
    pub stochastic_recon: Option<Var>,
    /// `L_SRL`.
    pub stochastic_recon_layerwise: Option<Var>,
    /// `L_IM`.
    pub importance_minimality: Option<Var>,
    /// Each layer's causal importances `g = σ_lower(raw)`, `[B, C]`.
    pub importances: Vec<Var>,
}

/// A mask `[B, C]` for causal importances `g` (from `raw`).
pub fn sample_mask(raw: &Var, g: &Var, kind: MaskKind, rng: &mut Rng) -> Result<Var> {
    let device = raw.value().device().clone();
    let uniform = |rng: &mut Rng| Tensor::rand_uniform(raw.shape(), 0.0, 1.0, rng, &device);
    let (g, u) = match kind {
        MaskKind::Continuous => (g.clone(), uniform(rng)?),
        MaskKind::Binomial => {
            let jitter = Var::constant(uniform(rng)?.mul_scalar(0.05)?);
            let g = lower_leaky_hard_sigmoid(&raw.mul_scalar(1.05)?.sub(&jitter)?)?;
            let half = Tensor::scalar(0.5, &device)?;
            (g, uniform(rng)?.lt(&half)?)
        }
    };
    let u = Var::constant(u);
    g.mul(&u.rsub_scalar(1.0)?)?.add(&u)
}

/// `L_F` (see the module docs).
pub fn faithfulness<M: Module>(model: &ComponentModel<M>) -> Result<Var> {
    let mut total: Option<Var> = None;
    let mut count = 0usize;
    for ((_, comps), target) in model.components.layers.iter().zip(&model.targets) {
        let diff = Var::constant(target.weight.clone()).sub(&comps.weight()?)?;
        let term = diff.square()?.sum_all()?;
        count += target.weight.numel();
        total = Some(match total {
            Some(t) => t.add(&term)?,
            None => term,
        });
    }
    total
        .expect("a component model has layers")
        .div_scalar(count as f32)
}

/// `D(a, b)`: the mean squared error over every element.
pub fn mse(a: &Var, b: &Var) -> Result<Var> {
    a.sub(b)?.square()?.mean_all()
}

/// `L_IM` from each layer's raw gate outputs `[B, C]`.
pub fn importance_minimality(raw: &[Var], p: f32) -> Result<Var> {
    let mut total: Option<Var> = None;
    for r in raw {
        let upper = upper_leaky_hard_sigmoid(r)?;
        let powered = if p == 1.0 {
            upper
        } else if p == 2.0 {
            upper.square()?
        } else {
            upper.powf(p)?
        };
        let term = powered.sum_all()?.div_scalar(r.shape()[0].max(1) as f32)?;
        total = Some(match total {
            Some(t) => t.add(&term)?,
            None => term,
        });
    }
    Ok(total.expect("a component model has layers"))
}

fn weighted(total: &mut Option<Var>, term: &Var, coefficient: f32) -> Result<()> {
    let scaled = term.mul_scalar(coefficient)?;
    *total = Some(match total.take() {
        Some(t) => t.add(&scaled)?,
        None => scaled,
    });
    Ok(())
}

/// The losses of one step on the batch `x` (see the module docs).
pub fn spd_losses<M: Module>(
    model: &ComponentModel<M>,
    x: &Tensor,
    settings: &LossSettings,
    rng: &mut Rng,
) -> Result<SpdLosses> {
    let x = Var::constant(x.clone());
    let target = model.run_target(&x)?;
    let target_out = target.output.detach();
    let raw = model.raw_importances(&target.inputs)?;
    let g = raw
        .iter()
        .map(lower_leaky_hard_sigmoid)
        .collect::<Result<Vec<_>>>()?;
    let layers = model.layers();
    let samples = settings.mask_samples.max(1);
    let mut total = None;
    let faith = (settings.faithfulness > 0.0)
        .then(|| faithfulness(model))
        .transpose()?;
    if let Some(f) = &faith {
        weighted(&mut total, f, settings.faithfulness)?;
    }
    let recon = if settings.stochastic_recon > 0.0 {
        let mut sum: Option<Var> = None;
        for _ in 0..samples {
            let routes = raw
                .iter()
                .zip(&g)
                .map(|(r, g)| Ok(Route::Masked(sample_mask(r, g, settings.mask, rng)?)))
                .collect::<Result<Vec<_>>>()?;
            let d = mse(&model.run(&x, &routes)?.output, &target_out)?;
            sum = Some(match sum {
                Some(s) => s.add(&d)?,
                None => d,
            });
        }
        let mean = sum
            .expect("at least one sample")
            .div_scalar(samples as f32)?;
        weighted(&mut total, &mean, settings.stochastic_recon)?;
        Some(mean)
    } else {
        None
    };
    let layerwise = if settings.stochastic_recon_layerwise > 0.0 {
        let mut sum: Option<Var> = None;
        for _ in 0..samples {
            for l in 0..layers {
                let mut routes = vec![Route::Target; layers];
                routes[l] = Route::Masked(sample_mask(&raw[l], &g[l], settings.mask, rng)?);
                let d = mse(&model.run(&x, &routes)?.output, &target_out)?;
                sum = Some(match sum {
                    Some(s) => s.add(&d)?,
                    None => d,
                });
            }
        }
        let mean = sum
            .expect("at least one sample and layer")
            .div_scalar((samples * layers) as f32)?;
        weighted(&mut total, &mean, settings.stochastic_recon_layerwise)?;
        Some(mean)
    } else {
        None
    };
    let minimality = (settings.importance_minimality > 0.0)
        .then(|| importance_minimality(&raw, settings.pnorm))
        .transpose()?;
    if let Some(m) = &minimality {
        weighted(&mut total, m, settings.importance_minimality)?;
    }
    let total = match total {
        Some(t) => t,
        None => Var::constant(Tensor::scalar(0.0, x.value().device())?),
    };
    Ok(SpdLosses {
        total,
        faithfulness: faith,
        stochastic_recon: recon,
        stochastic_recon_layerwise: layerwise,
        importance_minimality: minimality,
        importances: g,
    })
}
