//! Horizon selection by LinUCB (Li, Chu, Langford & Schapire 2010, "A contextual-bandit approach to
//! personalized news article recommendation", Algorithm 1, disjoint linear models).
//!
//! Each arm `a` (a prediction horizon) keeps `A_a = I + Σ x xᵀ` and `b_a = Σ r x` over the contexts
//! `x` it was played in and the rewards `r` it earned; it is scored by
//! `θ_aᵀ x + α √(xᵀ A_a⁻¹ x)` with `θ_a = A_a⁻¹ b_a`, and the highest score is played (ties to the
//! lower index). The hybrid trainer's context is `[1, confidence, loss slope, fraction of the run
//! left]` and its reward the fraction of the longest horizon's backward passes an episode saved
//! minus a penalty for the loss increase it caused (see [`super::trainer`]).

use dynlab_runtime::{Error, Result};

/// A disjoint LinUCB bandit over a fixed set of arms.
#[derive(Clone, Debug, PartialEq)]
pub struct LinUcb {
    dim: usize,
    alpha: f64,
    /// Per arm: `A` (row-major `dim × dim`) and `b`.
    arms: Vec<(Vec<f64>, Vec<f64>)>,
}

impl LinUcb {
    /// `arms` arms over contexts of `dim` features with exploration weight `alpha ≥ 0`.
    pub fn new(arms: usize, dim: usize, alpha: f64) -> Result<LinUcb> {
        if arms == 0 || dim == 0 || !(alpha.is_finite() && alpha >= 0.0) {
            return Err(Error::value(
                "LinUcb::new",
                format!("{arms} arms, {dim} features, alpha {alpha}"),
                "at least one arm and one feature, a finite alpha >= 0",
            ));
        }
        let identity: Vec<f64> = (0..dim * dim)
            .map(|k| if k % (dim + 1) == 0 { 1.0 } else { 0.0 })
            .collect();
        Ok(LinUcb {
            dim,
            alpha,
            arms: vec![(identity, vec![0.0; dim]); arms],
        })
    }

    /// Number of arms.
    pub fn arms(&self) -> usize {
        self.arms.len()
    }

    /// Each arm's upper confidence bound in `context`.
    pub fn scores(&self, context: &[f64]) -> Result<Vec<f64>> {
        self.check(context)?;
        self.arms
            .iter()
            .map(|(a, b)| {
                let a_inv_x = solve_spd(a, context, self.dim)?;
                let theta = solve_spd(a, b, self.dim)?;
                let mean = dot(&theta, context);
                let width = dot(context, &a_inv_x).max(0.0).sqrt();
                Ok(mean + self.alpha * width)
            })
            .collect()
    }

    /// The arm with the highest upper confidence bound in `context`.
    pub fn choose(&self, context: &[f64]) -> Result<usize> {
        let scores = self.scores(context)?;
        let mut best = 0;
        for (k, s) in scores.iter().enumerate() {
            if *s > scores[best] {
                best = k;
            }
        }
        Ok(best)
    }

    /// Records that `arm`, played in `context`, earned `reward`.
    pub fn update(&mut self, arm: usize, context: &[f64], reward: f64) -> Result<()> {
        self.check(context)?;
        if arm >= self.arms.len() || !reward.is_finite() {
            return Err(Error::value(
                "LinUcb::update",
                format!("arm {arm}, reward {reward}"),
                format!("an arm in 0..{} and a finite reward", self.arms.len()),
            ));
        }
        let (a, b) = &mut self.arms[arm];
        for i in 0..self.dim {
            for j in 0..self.dim {
                a[i * self.dim + j] += context[i] * context[j];
            }
            b[i] += reward * context[i];
        }
        Ok(())
    }

    /// The state as one flat list (per arm `A` then `b`), for checkpoints.
    pub fn to_values(&self) -> Vec<f64> {
        self.arms
            .iter()
            .flat_map(|(a, b)| a.iter().chain(b).copied())
            .collect()
    }

    /// Restores what [`LinUcb::to_values`] wrote.
    pub fn load_values(&mut self, values: &[f64]) -> Result<()> {
        let per = self.dim * self.dim + self.dim;
        if values.len() != per * self.arms.len() {
            return Err(Error::value(
                "LinUcb::load_values",
                format!("{} values", values.len()),
                format!("{} ({} arms)", per * self.arms.len(), self.arms.len()),
            ));
        }
        for (k, (a, b)) in self.arms.iter_mut().enumerate() {
            let chunk = &values[k * per..(k + 1) * per];
            a.copy_from_slice(&chunk[..self.dim * self.dim]);
            b.copy_from_slice(&chunk[self.dim * self.dim..]);
        }
        Ok(())
    }

    fn check(&self, context: &[f64]) -> Result<()> {
        if context.len() != self.dim || context.iter().any(|v| !v.is_finite()) {
            return Err(Error::shape(
                "LinUcb",
                format!("context {context:?}"),
                format!("{} finite features", self.dim),
            ));
        }
        Ok(())
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `A⁻¹ y` for a symmetric positive definite `A` (Cholesky; `A = I + Σ x xᵀ` always is).
fn solve_spd(a: &[f64], y: &[f64], n: usize) -> Result<Vec<f64>> {
    let mut l = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum();
            let v = a[i * n + j] - s;
            if i == j {
                if v.is_nan() || v <= 0.0 {
                    return Err(Error::value(
                        "LinUcb",
                        format!("a design matrix with pivot {v}"),
                        "a positive definite design matrix",
                    ));
                }
                l[i * n + i] = v.sqrt();
            } else {
                l[i * n + j] = v / l[j * n + j];
            }
        }
    }
    let mut z = vec![0.0; n];
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * z[k]).sum();
        z[i] = (y[i] - s) / l[i * n + i];
    }
    let mut x = vec![0.0; n];
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * x[k]).sum();
        x[i] = (z[i] - s) / l[i * n + i];
    }
    Ok(x)
}
