//! The Hessian of a loss with respect to parameters, reached only through Hessian-vector products.
//!
//! [`HessianOperator`] records `g = ∇_θ L` once with `create_graph` and answers `H v = ∇_θ (g · v)`
//! for any direction `v` by one more backward through the recorded gradient (Pearlmutter 1994).
//!
//! **Lanczos** with full re-orthogonalisation: from a unit `q₁`, `w = H q_j − β_{j−1} q_{j−1}`,
//! `α_j = q_jᵀ w`, `w ← w − α_j q_j`, then `w` is orthogonalised twice against every earlier `q_i`
//! ("twice is enough"), `β_j = ‖w‖`, `q_{j+1} = w / β_j`. After `m` steps `Qᵀ H Q = T`, the
//! tridiagonal matrix of the `α` and `β`; the eigenvalues of `T` (Ritz values) approximate the
//! extreme eigenvalues of `H` first, the eigenvectors `Q s` of `T`'s eigenvectors `s` approximate
//! `H`'s, and `β_m |s_m|` bounds each Ritz pair's residual `‖H Q s − θ Q s‖`. When `β_j` falls to
//! rounding, the Krylov space is invariant and the Ritz values are eigenvalues of `H`: the run stops.
//! The `q` vectors live on the host in f64 (the HVPs run on the device in f32).
//!
//! **Stochastic Lanczos quadrature** (Ghorbani, Krishnan & Xiao 2019, "An investigation into neural
//! net optimization via Hessian eigenvalue density"; Ubaru, Chen & Saad 2017): for a random unit `v`,
//! `vᵀ f(H) v ≈ Σ_i τ_i² f(θ_i)` with `θ_i` the Ritz values of an `m`-step Lanczos run from `v` and
//! `τ_i` the first components of `T`'s eigenvectors (exact for polynomials of degree ≤ 2m − 1). The
//! spectral density `φ(t) = (1/n) Σ_k δ(t − λ_k)` is estimated as
//! `φ̂(t) = (1/n_v) Σ_probes Σ_i τ_i² g_σ(t − θ_i)` with a Gaussian `g_σ`; since `Σ_i τ_i² = 1` it
//! integrates to 1, and `n Σ_i τ_i² θ_i = n vᵀHv` is Hutchinson's trace estimate for each probe.
//!
//! The top eigenvalues are the largest algebraic ones (PyHessian's power iteration finds the
//! largest in magnitude; for the Hessians of trained networks they agree).

use dynlab_autodiff::{grad, hvp_of_gradient, GradOptions, TraceEstimate, Var};
use dynlab_models::{Ctx, Mode, Module};
use dynlab_runtime::linalg::host::eigh_f64;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Forward, Objective};
use std::cell::Cell;

/// The loss `objective` gives `model`'s output on `batch`, in evaluation mode (batch norm uses its
/// running statistics, dropout is off: the function the landscape studies differentiate).
pub fn model_loss(model: &dyn Module, batch: &Batch, objective: &dyn Objective) -> Result<Var> {
    let taps = objective.taps();
    let mut ctx = Ctx::eval().with_taps(&taps);
    let output = model.forward(&Var::constant(batch.inputs.clone()), &mut ctx)?;
    // The model runs in evaluation mode; the objective is told `Train` so that its loss stays on
    // the tape (objectives return a constant loss in evaluation mode).
    let forward = Forward {
        mode: Mode::Train,
        output,
        taps: ctx.take_taps(),
        replicas: model.replicas(),
    };
    Ok(objective.loss(&forward, &batch.targets)?.total)
}

/// `H` of a scalar output with respect to some variables, as a linear operator (see the module docs).
pub struct HessianOperator {
    grads: Vec<Var>,
    wrt: Vec<Var>,
    products: Cell<usize>,
}

/// The largest dense Hessian [`HessianOperator::dense`] builds.
pub const MAX_DENSE: usize = 4096;

impl HessianOperator {
    /// The Hessian of `output` with respect to `wrt` (the gradient is recorded here, once).
    pub fn new(output: &Var, wrt: &[&Var]) -> Result<HessianOperator> {
        if wrt.is_empty() || output.value().numel() != 1 {
            return Err(Error::value(
                "HessianOperator::new",
                format!(
                    "an output of shape {:?} and {} variables",
                    output.value().shape(),
                    wrt.len()
                ),
                "a scalar output and at least one variable",
            ));
        }
        let options = GradOptions {
            create_graph: true,
            retain_graph: false,
        };
        let grads = grad(output, wrt, options)?;
        Ok(HessianOperator {
            grads,
            wrt: wrt.iter().map(|v| (*v).clone()).collect(),
            products: Cell::new(0),
        })
    }

    /// The Hessian of [`model_loss`] with respect to every parameter of `model`.
    pub fn of_model(
        model: &dyn Module,
        batch: &Batch,
        objective: &dyn Objective,
    ) -> Result<HessianOperator> {
        let loss = model_loss(model, batch, objective)?;
        let params = model.params();
        let vars: Vec<&Var> = params.iter().map(|(_, p)| p.var()).collect();
        HessianOperator::new(&loss, &vars)
    }

    /// The number of variables' elements `n` (`H` is `n × n`).
    pub fn dim(&self) -> usize {
        self.wrt.iter().map(|v| v.value().numel()).sum()
    }

    /// The device the products run on.
    pub fn device(&self) -> &Device {
        self.wrt[0].value().device()
    }

    /// The shape of each variable.
    pub fn shapes(&self) -> Vec<Vec<usize>> {
        self.wrt
            .iter()
            .map(|v| v.value().shape().to_vec())
            .collect()
    }

    /// The gradient `∇L` at the point (one tensor per variable).
    pub fn gradient(&self) -> Vec<Tensor> {
        self.grads.iter().map(|g| g.value().clone()).collect()
    }

    /// Hessian-vector products computed so far.
    pub fn products(&self) -> usize {
        self.products.get()
    }

    /// `H v`, `v` one tensor per variable.
    pub fn apply(&self, v: &[Tensor]) -> Result<Vec<Tensor>> {
        let refs: Vec<&Var> = self.wrt.iter().collect();
        let hv = hvp_of_gradient(&self.grads, &refs, v)?;
        self.products.set(self.products.get() + 1);
        Ok(hv)
    }

    /// `H v` for a flat host vector (the variables' elements in order).
    pub fn apply_flat(&self, v: &[f64]) -> Result<Vec<f64>> {
        let hv = self.apply(&unflatten(v, &self.shapes(), self.device())?)?;
        flatten(&hv)
    }

    /// The dense `n × n` Hessian (row-major, symmetrised), one product per basis vector: the
    /// reference for small models (`n ≤` [`MAX_DENSE`]).
    pub fn dense(&self) -> Result<Vec<f64>> {
        let n = self.dim();
        if n > MAX_DENSE {
            return Err(Error::value(
                "HessianOperator::dense",
                format!("{n} variables"),
                format!("at most {MAX_DENSE} (use lanczos for larger models)"),
            ));
        }
        let mut h = vec![0.0; n * n];
        let mut e = vec![0.0; n];
        for j in 0..n {
            e[j] = 1.0;
            let col = self.apply_flat(&e)?;
            e[j] = 0.0;
            if col.iter().any(|x| !x.is_finite()) {
                return Err(Error::Numerical {
                    op: "HessianOperator::dense",
                    message: format!(
                        "the Hessian-vector product with basis vector {j} is not finite"
                    ),
                });
            }
            for (i, c) in col.iter().enumerate() {
                h[i * n + j] = *c;
            }
        }
        for i in 0..n {
            for j in 0..i {
                let m = 0.5 * (h[i * n + j] + h[j * n + i]);
                h[i * n + j] = m;
                h[j * n + i] = m;
            }
        }
        Ok(h)
    }
}

/// The elements of `tensors` in order, as f64 (one read-back).
pub fn flatten(tensors: &[Tensor]) -> Result<Vec<f64>> {
    let refs: Vec<&Tensor> = tensors.iter().collect();
    Ok(Tensor::read_many(&refs)?
        .into_iter()
        .flat_map(|v| v.into_iter().map(f64::from))
        .collect())
}

/// `flat` cut into tensors of `shapes` on `device`.
pub fn unflatten(flat: &[f64], shapes: &[Vec<usize>], device: &Device) -> Result<Vec<Tensor>> {
    let total: usize = shapes.iter().map(|s| s.iter().product::<usize>()).sum();
    if flat.len() != total {
        return Err(Error::shape(
            "landscape::unflatten",
            format!("{} values", flat.len()),
            format!("{total} (the variables' elements)"),
        ));
    }
    let mut start = 0;
    shapes
        .iter()
        .map(|shape| {
            let len: usize = shape.iter().product();
            let part: Vec<f32> = flat[start..start + len].iter().map(|&x| x as f32).collect();
            start += len;
            Tensor::from_vec(part, shape, device)
        })
        .collect()
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// One Lanczos run: the tridiagonal `T` and the orthonormal basis `Q`.
#[derive(Clone, Debug)]
pub struct LanczosRun {
    /// Diagonal of `T`.
    pub alphas: Vec<f64>,
    /// Off-diagonal of `T` (`alphas.len() − 1` entries), then the last `β` (the residual scale).
    pub betas: Vec<f64>,
    /// The Lanczos vectors `q_1 … q_m` (host, f64).
    pub basis: Vec<Vec<f64>>,
    /// Whether the run stopped early because the Krylov space became invariant.
    pub invariant: bool,
}

/// `β` below this fraction of `‖T‖` ends a run: the rest is rounding of the f32 products.
const BREAKDOWN: f64 = 1e-6;

/// `m` steps of Lanczos with full re-orthogonalisation from `start` (normalised here).
pub fn lanczos(op: &HessianOperator, start: &[f64], steps: usize) -> Result<LanczosRun> {
    let n = op.dim();
    if steps == 0 || start.len() != n {
        return Err(Error::value(
            "landscape::lanczos",
            format!("{steps} steps from a vector of {} values", start.len()),
            format!("at least 1 step from a vector of {n} values"),
        ));
    }
    let s = norm(start);
    if !(s.is_finite() && s > 0.0) {
        return Err(Error::value(
            "landscape::lanczos",
            format!("a start vector of norm {s}"),
            "a finite non-zero start vector",
        ));
    }
    let steps = steps.min(n);
    let mut run = LanczosRun {
        alphas: Vec::with_capacity(steps),
        betas: Vec::with_capacity(steps),
        basis: vec![start.iter().map(|x| x / s).collect()],
        invariant: false,
    };
    let mut scale = 0.0f64;
    for j in 0..steps {
        let mut w = op.apply_flat(&run.basis[j])?;
        if w.iter().any(|x| !x.is_finite()) {
            return Err(Error::Numerical {
                op: "landscape::lanczos",
                message: format!("the Hessian-vector product at step {j} is not finite"),
            });
        }
        let alpha = dot(&run.basis[j], &w);
        run.alphas.push(alpha);
        for _ in 0..2 {
            for q in &run.basis {
                let c = dot(q, &w);
                w.iter_mut().zip(q).for_each(|(x, qi)| *x -= c * qi);
            }
        }
        let beta = norm(&w);
        run.betas.push(beta);
        scale = scale.max(alpha.abs() + beta);
        if beta <= BREAKDOWN * scale {
            run.invariant = true;
            break;
        }
        if j + 1 < steps {
            run.basis.push(w.iter().map(|x| x / beta).collect());
        }
    }
    Ok(run)
}

/// The eigenvalues (ascending) and eigenvectors (row-major `m × m`, columns) of a run's `T`.
pub fn ritz(run: &LanczosRun) -> Result<(Vec<f64>, Vec<f64>)> {
    let m = run.alphas.len();
    let mut t = vec![0.0; m * m];
    for i in 0..m {
        t[i * m + i] = run.alphas[i];
        if i + 1 < m {
            t[(i + 1) * m + i] = run.betas[i];
            t[i * m + i + 1] = run.betas[i];
        }
    }
    eigh_f64(&t, m)
}

/// Options of [`top_eigen`].
#[derive(Clone, Copy, Debug)]
pub struct TopEigenOptions {
    /// How many eigenvalues.
    pub k: usize,
    /// Lanczos steps (Hessian-vector products); more steps, tighter Ritz values.
    pub steps: usize,
    /// Return the eigenvectors too.
    pub vectors: bool,
    /// Seed of the Gaussian start vector.
    pub seed: u64,
}

/// The top of the spectrum.
#[derive(Clone, Debug)]
pub struct TopEigen {
    /// The `k` largest Ritz values, descending.
    pub values: Vec<f64>,
    /// `β_m |s_m|` per value: a bound on `‖H u − θ u‖` for the unit Ritz vector `u`.
    pub residuals: Vec<f64>,
    /// The unit Ritz vectors, one tensor per variable, when asked for.
    pub vectors: Option<Vec<Vec<Tensor>>>,
    /// Lanczos steps taken.
    pub steps: usize,
}

/// The `k` largest eigenvalues of `op` (and eigenvectors) by one Lanczos run of `steps` steps.
/// When the run ends early because the Krylov space became invariant (its Ritz values are then
/// eigenvalues), fewer than `k` values come back: one per distinct eigenvalue the start vector
/// reaches.
pub fn top_eigen(op: &HessianOperator, options: TopEigenOptions) -> Result<TopEigen> {
    if options.k == 0 || options.k > options.steps || options.k > op.dim() {
        return Err(Error::value(
            "landscape::top_eigen",
            format!(
                "k = {} with {} steps on {} variables",
                options.k,
                options.steps,
                op.dim()
            ),
            "1 ≤ k ≤ steps and k ≤ the number of variables",
        ));
    }
    let start = gaussian(op.dim(), options.seed, op.device())?;
    let run = lanczos(op, &start, options.steps)?;
    let m = run.alphas.len();
    let (values, vectors) = ritz(&run)?;
    let last_beta = if run.invariant {
        0.0
    } else {
        *run.betas.last().unwrap_or(&0.0)
    };
    let order: Vec<usize> = (0..m).rev().take(options.k).collect();
    let residuals = order
        .iter()
        .map(|&i| last_beta * vectors[(m - 1) * m + i].abs())
        .collect();
    let ritz_vectors = match options.vectors {
        false => None,
        true => {
            let shapes = op.shapes();
            let vs = order
                .iter()
                .map(|&i| {
                    let mut u = vec![0.0; op.dim()];
                    for (r, q) in run.basis.iter().enumerate() {
                        let c = vectors[r * m + i];
                        u.iter_mut().zip(q).for_each(|(x, qi)| *x += c * qi);
                    }
                    unflatten(&u, &shapes, op.device())
                })
                .collect::<Result<Vec<_>>>()?;
            Some(vs)
        }
    };
    Ok(TopEigen {
        values: order.iter().map(|&i| values[i]).collect(),
        residuals,
        vectors: ritz_vectors,
        steps: m,
    })
}

/// `n` standard normal values drawn on `device` from `seed`.
fn gaussian(n: usize, seed: u64, device: &Device) -> Result<Vec<f64>> {
    let v = Tensor::rand_normal(&[n], 0.0, 1.0, &mut Rng::new(seed), device)?;
    Ok(v.to_vec::<f32>()?.into_iter().map(f64::from).collect())
}

/// `n` Rademacher values (±1) drawn on `device` from `rng`.
fn rademacher(n: usize, rng: &mut Rng, device: &Device) -> Result<Vec<f64>> {
    let v = Tensor::bernoulli_scalar(&[n], 0.5, rng, device)?;
    Ok(v.to_vec::<f32>()?
        .into_iter()
        .map(|b| 2.0 * f64::from(b) - 1.0)
        .collect())
}

/// Options of [`spectral_density`].
#[derive(Clone, Copy, Debug)]
pub struct DensityOptions {
    /// Random probes `v` (Rademacher, normalised).
    pub probes: usize,
    /// Lanczos steps per probe.
    pub steps: usize,
    /// Grid points of the density.
    pub grid: usize,
    /// The Gaussian's width `σ` as a fraction of the Ritz values' range (Ghorbani et al. use a
    /// small fixed width on a normalised spectrum; 0.01 of the range is this default).
    pub sigma_fraction: f64,
    /// Seed of the probes.
    pub seed: u64,
}

impl Default for DensityOptions {
    fn default() -> Self {
        DensityOptions {
            probes: 4,
            steps: 40,
            grid: 512,
            sigma_fraction: 0.01,
            seed: 0,
        }
    }
}

/// The spectral density estimate and the quadrature it comes from.
#[derive(Clone, Debug)]
pub struct SpectralDensity {
    /// Grid points `t`, ascending, reaching 6σ beyond the extreme Ritz values.
    pub grid: Vec<f64>,
    /// `φ̂(t)` on the grid.
    pub density: Vec<f64>,
    /// The Gaussian's width.
    pub sigma: f64,
    /// Ritz values `θ_i` of each probe.
    pub nodes: Vec<Vec<f64>>,
    /// Quadrature weights `τ_i²` of each probe (each list sums to 1).
    pub weights: Vec<Vec<f64>>,
    /// `n`, the Hessian's size.
    pub dim: usize,
}

impl SpectralDensity {
    /// `∫ φ̂` by the trapezoid rule on the grid (1 up to the Gaussians' tails and the grid).
    pub fn integral(&self) -> f64 {
        self.grid
            .windows(2)
            .zip(self.density.windows(2))
            .map(|(t, f)| 0.5 * (t[1] - t[0]) * (f[0] + f[1]))
            .sum()
    }

    /// `(1/n_v) Σ_probes Σ_i τ_i² θ_i^k`, the quadrature's `k`-th moment (`tr H^k / n` in
    /// expectation).
    pub fn moment(&self, k: i32) -> f64 {
        let per_probe = self.per_probe_moments(k);
        per_probe.iter().sum::<f64>() / per_probe.len() as f64
    }

    fn per_probe_moments(&self, k: i32) -> Vec<f64> {
        self.nodes
            .iter()
            .zip(&self.weights)
            .map(|(t, w)| t.iter().zip(w).map(|(t, w)| w * t.powi(k)).sum())
            .collect()
    }

    /// `tr H` as `n ×` the first moment, with its standard error over the probes (each probe's
    /// `n Σ τ² θ = vᵀHv` for the Rademacher `v` before normalisation: Hutchinson's estimate).
    pub fn trace(&self) -> TraceEstimate {
        let n = self.dim as f64;
        let values: Vec<f64> = self.per_probe_moments(1).iter().map(|m| n * m).collect();
        let count = values.len() as f64;
        let mean = values.iter().sum::<f64>() / count;
        let var = match values.len() {
            0 | 1 => 0.0,
            _ => values.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (count - 1.0),
        };
        TraceEstimate {
            mean,
            std_error: (var / count).sqrt(),
            samples: values.len(),
        }
    }
}

/// The spectral density of `op` by stochastic Lanczos quadrature (see the module docs).
pub fn spectral_density(op: &HessianOperator, options: DensityOptions) -> Result<SpectralDensity> {
    if options.probes == 0
        || options.steps == 0
        || options.grid < 2
        || !(options.sigma_fraction.is_finite() && options.sigma_fraction > 0.0)
    {
        return Err(Error::value(
            "landscape::spectral_density",
            format!("{options:?}"),
            "probes ≥ 1, steps ≥ 1, grid ≥ 2, sigma_fraction > 0",
        ));
    }
    let mut rng = Rng::new(options.seed);
    let mut nodes = Vec::with_capacity(options.probes);
    let mut weights = Vec::with_capacity(options.probes);
    for _ in 0..options.probes {
        let v = rademacher(op.dim(), &mut rng, op.device())?;
        let run = lanczos(op, &v, options.steps)?;
        let m = run.alphas.len();
        let (theta, s) = ritz(&run)?;
        weights.push((0..m).map(|i| s[i] * s[i]).collect());
        nodes.push(theta);
    }
    let all = nodes.iter().flatten();
    let lo = all.clone().copied().fold(f64::INFINITY, f64::min);
    let hi = all.copied().fold(f64::NEG_INFINITY, f64::max);
    let range = (hi - lo).max(1e-12 * hi.abs().max(lo.abs()).max(1.0));
    let sigma = options.sigma_fraction * range;
    let (a, b) = (lo - 6.0 * sigma, hi + 6.0 * sigma);
    let grid: Vec<f64> = (0..options.grid)
        .map(|i| a + (b - a) * i as f64 / (options.grid - 1) as f64)
        .collect();
    let norm = 1.0 / (options.probes as f64 * sigma * (2.0 * std::f64::consts::PI).sqrt());
    let density = grid
        .iter()
        .map(|t| {
            let mut sum = 0.0;
            for (th, w) in nodes.iter().zip(&weights) {
                for (x, wi) in th.iter().zip(w) {
                    sum += wi * (-0.5 * ((t - x) / sigma).powi(2)).exp();
                }
            }
            norm * sum
        })
        .collect();
    Ok(SpectralDensity {
        grid,
        density,
        sigma,
        nodes,
        weights,
        dim: op.dim(),
    })
}
