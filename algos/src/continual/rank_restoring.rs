//! Rank-restoring generation of replaced units (RR-CBP2; the lls codebase's
//! `rank_restoring/` generators): a new unit's input weights point in a direction the kept units do
//! not cover, in the geometry of the layer's input covariance `Σ`.
//!
//! Per layer, every step, the EMA covariance of the layer's inputs `H` (`m` rows):
//! `Σ ← β Σ + (1 − β) HᵀH / m` (β = 0.99, from 0, no bias correction), used as `Σ + ridge·I`.
//! For the kept units' input weights `V = [v_1 … v_k]` the Σ-orthogonal projector onto their span is
//! `P = V (VᵀΣV)⁻¹ VᵀΣ`; a new unit draws `u ~ N(0, I)` (up to `trials` times) and takes
//!
//! ```text
//! w = (I − P) u / ‖(I − P) u‖_Σ        (unit Σ-norm, ‖x‖_Σ = √(xᵀΣx))
//! ```
//!
//! accepted when `‖(I − P)u‖_Σ > 1e-8·‖u‖_Σ`. This is computed whitened: with `Σ = E Λ Eᵀ`,
//! `Σ^{±½} = E Λ^{±½} Eᵀ`, the columns of `Σ^½ V` are orthonormalised (modified Gram-Schmidt) to `Q`,
//! and `w = Σ^{−½} r̃ / ‖r̃‖` with `r̃ = (I − QQᵀ) Σ^½ u` — so `VᵀΣw = (Σ^½V)ᵀ r̃ / ‖r̃‖ = 0`. The units
//! generated in one step are Σ-orthonormalised among themselves (each accepted `r̃` joins `Q`). When
//! no draw is accepted (the kept units span everything: saturation), the unit takes the
//! least-covered direction, the eigenvector of `Σ^½ V Vᵀ Σ^½` of smallest eigenvalue, mapped by
//! `Σ^{−½}`. The bias is `b = −mean_rows(Hw)` (the new unit starts centred on this batch).
//!
//! **Energy budget** (`rr_cbp_e_2`): target energy per unit `q_tar = (tr Σ / d) / χ₀(φ)` (χ₀: ReLU
//! ½, leaky ReLU `(1 + a²)/2`, GELU/SELU/swish ½, others 1), residual
//! `Q_res = max(N q_tar − Σ_kept wᵀΣw, 0)` over the layer's `N` units; each new unit (in order) gets
//! `q = min(q_tar, Q_res / remaining)` while `Q_res > 0` (then `Q_res −= q`), else
//! `q = min(q_tar, τ λ_min(Σ))` (τ = 10⁻²), and its weights are scaled to `‖w‖_Σ = √q`.
//!
//! **RR-CBP v1** (`rr_cbp`, [`RrConfig::v1`]): the same direction (`(I − P)u` is what the whitened
//! residual maps back to) with the energy budget always on, the replaced unit's outgoing weights a
//! micro-seed `10⁻⁴·(z − mean z)/‖z − mean z‖` (`z ~ N(0, I)`) instead of 0, and the layer's owed
//! replacement fraction set to 0 after it replaces. The reference's regularised projector Gram
//! (`VᵀΣV + 10⁻⁶·tr/k·I`) is not reproduced: the whitened Gram-Schmidt projects exactly.
//!
//! **Numerical ladder** for the eigendecomposition of `S = (Σ + Σᵀ)/2 + ridge·I`, each rung counted:
//! (1) `Tensor::eigh` on the device, which itself falls back to the f64 host solver when Jacobi does
//! not converge, when the condition estimate exceeds 10⁶, or under `DYNLAB_FORCE_HOST_EIGH=1`;
//! accepted when finite with `λ_max / λ_min ≤ 10⁸`; (2) the f64 host solver on `S + ρ'I` with the
//! larger ridge `ρ' = 10⁻⁶·tr S / d`, same acceptance; (3) the diagonal approximation `E = I`,
//! `Λ = diag S` (non-finite entries replaced by the mean of the finite ones, or 1). Eigenvalues are
//! floored at `10⁻⁶` on every rung. No rung returns NaN. The f32 eigenbasis of rung 1 is made
//! orthonormal in f64 with Rayleigh-quotient eigenvalues, so the generation's `Σ`, `Σ^½` and
//! `Σ^{−½}` are consistent to f64 rounding.

use dynlab_data::HostRng;
use dynlab_models::Activation;
use dynlab_runtime::linalg::host::eigh_f64;
use dynlab_runtime::linalg::{EighOptions, EighPath};
use dynlab_runtime::{Device, Error, Result, Tensor};

/// Eigenvalue floor of `Σ`.
const EIG_FLOOR: f64 = 1e-6;
/// Largest accepted `λ_max / λ_min` of a rung's decomposition.
const MAX_CONDITION: f64 = 1e8;
/// Relative size of a residual that counts as a new direction.
const ACCEPT: f64 = 1e-8;

/// RR-CBP2's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RrConfig {
    /// EMA decay `β` of the input covariance.
    pub beta: f32,
    /// Ridge added to `Σ`.
    pub ridge: f32,
    /// Draws of `u` before the least-covered fallback.
    pub trials: usize,
    /// Scale new units to the energy budget (`rr_cbp_e_2`) instead of unit Σ-norm.
    pub energy_budget: bool,
    /// `τ` of the over-budget allocation `τ λ_min(Σ)`.
    pub tau: f64,
    /// `χ₀(φ)` of the layer's activation.
    pub chi0: f64,
    /// RR-CBP v1's outgoing micro-seed: a replaced unit's outgoing weights become
    /// `scale·(z − mean z)/‖z − mean z‖`, `z ~ N(0, I)`, instead of 0 (`None`: 0, RR-CBP2).
    pub micro_seed: Option<f32>,
    /// RR-CBP v1: a layer's owed replacement fraction is set to 0 after it replaces.
    pub reset_owed: bool,
}

impl RrConfig {
    /// The studies' defaults (β 0.99, ridge 10⁻⁴, 4 trials, τ 10⁻²) for `activation`.
    pub fn new(activation: Activation, energy_budget: bool) -> RrConfig {
        RrConfig {
            beta: 0.99,
            ridge: 1e-4,
            trials: 4,
            energy_budget,
            tau: 1e-2,
            chi0: chi0(activation),
            micro_seed: None,
            reset_owed: false,
        }
    }

    /// RR-CBP v1 (`rr_cbp`): the energy budget always on, outgoing micro-seeds of norm 10⁻⁴, and
    /// the owed fraction reset after each replacement.
    pub fn v1(activation: Activation) -> RrConfig {
        RrConfig {
            micro_seed: Some(1e-4),
            reset_owed: true,
            ..RrConfig::new(activation, true)
        }
    }
}

/// `χ₀(φ)`: the fraction of a pre-activation's second moment the activation passes (ReLU ½,
/// leaky ReLU `(1 + a²)/2`, GELU/SELU/swish ½, others 1).
pub fn chi0(activation: Activation) -> f64 {
    match activation {
        Activation::Relu | Activation::Gelu | Activation::Selu | Activation::Swish => 0.5,
        Activation::LeakyRelu => (1.0 + 0.01f64 * 0.01) / 2.0,
        _ => 1.0,
    }
}

/// Which rung of the ladder produced a decomposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rung {
    /// `Tensor::eigh` on the device.
    Device,
    /// `Tensor::eigh`'s f64 host fallback.
    Host,
    /// The f64 host solver with the larger ridge.
    LargerRidge,
    /// The diagonal approximation.
    Diagonal,
}

/// `S = E Λ Eᵀ` (floored eigenvalues, ascending; eigenvector `k` in column `k` of row-major `E`).
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Size `d`.
    pub d: usize,
    /// `Λ`.
    pub values: Vec<f64>,
    /// `E`, row-major `d × d`.
    pub vectors: Vec<f64>,
    /// The rung that produced it.
    pub rung: Rung,
}

fn condition_ok(values: &[f64]) -> bool {
    let (lo, hi) = (values.first().copied(), values.last().copied());
    match (lo, hi) {
        (Some(lo), Some(hi)) => {
            values.iter().all(|v| v.is_finite()) && hi > 0.0 && hi <= MAX_CONDITION * lo.max(0.0)
        }
        _ => false,
    }
}

fn floored(values: Vec<f64>) -> Vec<f64> {
    values.into_iter().map(|v| v.max(EIG_FLOOR)).collect()
}

/// `(a + aᵀ)/2 + ridge·I`.
fn symmetrised(a: &[f64], d: usize, ridge: f64) -> Vec<f64> {
    let mut s = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..d {
            s[i * d + j] = 0.5 * (a[i * d + j] + a[j * d + i]) + if i == j { ridge } else { 0.0 };
        }
    }
    s
}

/// The decomposition of `(Σ + Σᵀ)/2 + ridge·I` down the ladder (see the module docs).
pub fn spectrum(sigma: &[f64], d: usize, ridge: f64, device: &Device) -> Spectrum {
    let s = symmetrised(sigma, d, ridge);
    if let Some(found) = device_rung(&s, d, device) {
        return found;
    }
    let trace: f64 = (0..d).map(|i| s[i * d + i]).sum();
    let larger = 1e-6 * trace / d.max(1) as f64;
    if larger.is_finite() {
        let wider = symmetrised(&s, d, larger);
        if let Ok((values, vectors)) = eigh_f64(&wider, d) {
            if condition_ok(&values) && vectors.iter().all(|v| v.is_finite()) {
                return Spectrum {
                    d,
                    values: floored(values),
                    vectors,
                    rung: Rung::LargerRidge,
                };
            }
        }
    }
    diagonal(&s, d)
}

/// Rung 1: `Tensor::eigh` (device, or its host fallback), if accepted.
fn device_rung(s: &[f64], d: usize, device: &Device) -> Option<Spectrum> {
    if s.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let values32: Vec<f32> = s.iter().map(|&v| v as f32).collect();
    let t = Tensor::from_vec(values32, &[d, d], device).ok()?;
    let e = t
        .eigh(EighOptions {
            symmetrize: true,
            ..Default::default()
        })
        .ok()?;
    let vectors: Vec<f64> = e
        .vectors
        .to_vec::<f32>()
        .ok()?
        .into_iter()
        .map(f64::from)
        .collect();
    let (values, vectors) = refined(s, d, &vectors)?;
    if !condition_ok(&values) {
        return None;
    }
    let rung = match e.path {
        EighPath::Device { .. } => Rung::Device,
        EighPath::Host(_) => Rung::Host,
    };
    Some(Spectrum {
        d,
        values: floored(values),
        vectors,
        rung,
    })
}

/// An f32 eigenbasis made exactly orthonormal in f64 (modified Gram-Schmidt over the columns) with
/// the Rayleigh quotients `eᵀSe` as eigenvalues, sorted ascending: so `E Λ Eᵀ`, `Σ^½` and `Σ^{−½}`
/// agree with each other to f64 rounding. `None` if a column is lost or anything is not finite.
fn refined(s: &[f64], d: usize, vectors: &[f64]) -> Option<(Vec<f64>, Vec<f64>)> {
    let columns: Vec<Vec<f64>> = (0..d)
        .map(|k| (0..d).map(|i| vectors[i * d + k]).collect())
        .collect();
    let basis = orthonormal_basis(&columns);
    if basis.len() != d || basis.iter().flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let mut pairs: Vec<(f64, Vec<f64>)> = basis
        .into_iter()
        .map(|e| {
            let se: Vec<f64> = (0..d).map(|i| dot(&s[i * d..(i + 1) * d], &e)).collect();
            (dot(&e, &se), e)
        })
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let values = pairs.iter().map(|p| p.0).collect();
    let mut out = vec![0.0; d * d];
    for (k, (_, e)) in pairs.iter().enumerate() {
        for i in 0..d {
            out[i * d + k] = e[i];
        }
    }
    Some((values, out))
}

/// Rung 3: `E = I`, `Λ = diag S` with non-finite entries replaced.
fn diagonal(s: &[f64], d: usize) -> Spectrum {
    let diag: Vec<f64> = (0..d).map(|i| s[i * d + i]).collect();
    let finite: Vec<f64> = diag.iter().copied().filter(|v| v.is_finite()).collect();
    let fill = match finite.len() {
        0 => 1.0,
        n => finite.iter().sum::<f64>() / n as f64,
    };
    let fill = if fill.is_finite() { fill } else { 1.0 };
    let mut pairs: Vec<(f64, usize)> = diag
        .iter()
        .enumerate()
        .map(|(i, &v)| (if v.is_finite() { v } else { fill }, i))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut vectors = vec![0.0; d * d];
    for (k, &(_, i)) in pairs.iter().enumerate() {
        vectors[i * d + k] = 1.0;
    }
    Spectrum {
        d,
        values: floored(pairs.iter().map(|p| p.0).collect()),
        vectors,
        rung: Rung::Diagonal,
    }
}

impl Spectrum {
    /// `E f(Λ) Eᵀ x`.
    fn apply(&self, x: &[f64], f: impl Fn(f64) -> f64) -> Vec<f64> {
        let d = self.d;
        let coeffs: Vec<f64> = (0..d)
            .map(|k| {
                let dot: f64 = (0..d).map(|i| self.vectors[i * d + k] * x[i]).sum();
                dot * f(self.values[k])
            })
            .collect();
        (0..d)
            .map(|i| (0..d).map(|k| self.vectors[i * d + k] * coeffs[k]).sum())
            .collect()
    }

    /// `Σ^½ x`.
    pub fn sqrt_times(&self, x: &[f64]) -> Vec<f64> {
        self.apply(x, f64::sqrt)
    }

    /// `Σ^{−½} x`.
    pub fn inv_sqrt_times(&self, x: &[f64]) -> Vec<f64> {
        self.apply(x, |v| 1.0 / v.sqrt())
    }

    /// `Σ x` (the floored `Σ` the generation works with).
    pub fn times(&self, x: &[f64]) -> Vec<f64> {
        self.apply(x, |v| v)
    }

    /// `tr Σ`.
    pub fn trace(&self) -> f64 {
        self.values.iter().sum()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// `x − Q Qᵀ x` for orthonormal rows of `q` (twice, for stability).
fn residual(q: &[Vec<f64>], x: &[f64]) -> Vec<f64> {
    let mut r = x.to_vec();
    for _ in 0..2 {
        for b in q {
            let c = dot(b, &r);
            r.iter_mut().zip(b).for_each(|(ri, bi)| *ri -= c * bi);
        }
    }
    r
}

/// An orthonormal basis of the span of `vectors` (modified Gram-Schmidt; directions whose residual
/// is below `ACCEPT` of their norm are dropped).
fn orthonormal_basis(vectors: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut q: Vec<Vec<f64>> = Vec::new();
    for v in vectors {
        let r = residual(&q, v);
        let n = norm(&r);
        if n > ACCEPT * norm(v).max(f64::MIN_POSITIVE) {
            q.push(r.iter().map(|x| x / n).collect());
        }
    }
    q
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut HostRng) -> f64 {
    let u1 = 1.0 - rng.uniform();
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// What one generation did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Generated {
    /// New input weights, one `d`-vector per new unit.
    pub weights: Vec<Vec<f64>>,
    /// New biases `−mean_rows(Hw)`.
    pub biases: Vec<f64>,
    /// Energy `q` given to each new unit (1 without the budget).
    pub energies: Vec<f64>,
    /// Units that took the least-covered direction (no draw accepted).
    pub fallbacks: usize,
    /// `Σ_kept wᵀΣw / (N q_tar)` before the new units (energy budget only, else 0).
    pub energy_ratio: f64,
}

/// New input weights for `count` units of a layer of `units` units whose kept units have input
/// weights `kept` (each a `d`-vector), in the geometry `sigma`, with the layer inputs' mean
/// `input_mean` (for the biases); see the module docs.
pub fn generate(
    sigma: &Spectrum,
    kept: &[Vec<f64>],
    count: usize,
    units: usize,
    input_mean: &[f64],
    config: &RrConfig,
    rng: &mut HostRng,
) -> Generated {
    let d = sigma.d;
    let whitened: Vec<Vec<f64>> = kept.iter().map(|v| sigma.sqrt_times(v)).collect();
    let mut q = orthonormal_basis(&whitened);
    let mut out = Generated::default();
    let q_tar = sigma.trace() / d as f64 / config.chi0;
    let used: f64 = kept.iter().map(|v| dot(v, &sigma.times(v))).sum();
    let mut residual_budget = (units as f64 * q_tar - used).max(0.0);
    if config.energy_budget {
        out.energy_ratio = used / (units as f64 * q_tar);
    }
    let lambda_min = sigma.values.first().copied().unwrap_or(EIG_FLOOR);
    for made in 0..count {
        let direction = (0..config.trials).find_map(|_| {
            let u: Vec<f64> = (0..d).map(|_| normal(rng)).collect();
            let u_tilde = sigma.sqrt_times(&u);
            let r = residual(&q, &u_tilde);
            (norm(&r) > ACCEPT * norm(&u_tilde)).then_some(r)
        });
        let r = match direction {
            Some(r) => r,
            None => {
                out.fallbacks += 1;
                least_covered(&whitened, d)
            }
        };
        let n = norm(&r).max(f64::MIN_POSITIVE);
        let unit: Vec<f64> = r.iter().map(|x| x / n).collect();
        let mut w = sigma.inv_sqrt_times(&unit);
        if direction_is_new(&q, &unit) {
            q.push(unit);
        }
        let energy = if config.energy_budget {
            let remaining = (count - made) as f64;
            let e = if residual_budget > 0.0 {
                let e = q_tar.min(residual_budget / remaining);
                residual_budget -= e;
                e
            } else {
                q_tar.min(config.tau * lambda_min)
            };
            w.iter_mut().for_each(|x| *x *= e.sqrt());
            e
        } else {
            1.0
        };
        out.biases.push(-dot(input_mean, &w));
        out.energies.push(energy);
        out.weights.push(w);
    }
    out
}

fn direction_is_new(q: &[Vec<f64>], unit: &[f64]) -> bool {
    norm(&residual(q, unit)) > 1e-6
}

/// The eigenvector of smallest eigenvalue of `Σ^½ V Vᵀ Σ^½` (`whitened` = the columns `Σ^½ v`).
fn least_covered(whitened: &[Vec<f64>], d: usize) -> Vec<f64> {
    let mut m = vec![0.0; d * d];
    for v in whitened {
        for i in 0..d {
            for j in 0..d {
                m[i * d + j] += v[i] * v[j];
            }
        }
    }
    match eigh_f64(&m, d) {
        Ok((_, vectors)) => (0..d).map(|i| vectors[i * d]).collect(),
        Err(_) => {
            let mut e = vec![0.0; d];
            e[0] = 1.0;
            e
        }
    }
}

/// Counts of what the generation did since the last log, per layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RrCounts {
    /// Units generated.
    pub units: u64,
    /// Units that took the least-covered direction.
    pub fallbacks: u64,
    /// Sum of the energies given.
    pub energy: f64,
    /// Sum of the energy ratios at each generation, and their number.
    pub energy_ratio: (f64, u64),
    /// Decompositions per rung: device, host, larger ridge, diagonal.
    pub rungs: [u64; 4],
}

impl RrCounts {
    /// Adds one generation's outcome.
    pub fn add(&mut self, g: &Generated, rung: Rung) {
        self.units += g.weights.len() as u64;
        self.fallbacks += g.fallbacks as u64;
        self.energy += g.energies.iter().sum::<f64>();
        self.energy_ratio.0 += g.energy_ratio;
        self.energy_ratio.1 += 1;
        let i = match rung {
            Rung::Device => 0,
            Rung::Host => 1,
            Rung::LargerRidge => 2,
            Rung::Diagonal => 3,
        };
        self.rungs[i] += 1;
    }
}

/// `Σ ← β Σ + (1 − β) HᵀH / m` for inputs `h` `[R?, m, d]` (flattened to `m` rows per replica).
pub fn update_covariance(sigma: &Tensor, h: &Tensor, beta: f32) -> Result<Tensor> {
    let d = *sigma.shape().last().unwrap_or(&0);
    let rows = h.numel() / d.max(1);
    let replicas = sigma.numel() / (d * d).max(1);
    if d == 0 || !h.numel().is_multiple_of(replicas * d) || rows < replicas {
        return Err(Error::shape(
            "update_covariance",
            format!("inputs {:?} for Σ {:?}", h.shape(), sigma.shape()),
            "inputs [R?, m, d] for Σ [R?, d, d]",
        ));
    }
    let m = rows / replicas;
    let h = h.reshape(&[replicas as isize, m as isize, d as isize])?;
    let gram = h.transpose(1, 2)?.matmul(&h)?.reshape(&sigma_dims(sigma))?;
    sigma
        .mul_scalar(beta)?
        .add(&gram.mul_scalar((1.0 - beta) / m as f32)?)
}

fn sigma_dims(sigma: &Tensor) -> Vec<isize> {
    sigma.shape().iter().map(|&s| s as isize).collect()
}
