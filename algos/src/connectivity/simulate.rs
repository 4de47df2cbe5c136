//! The NeuralGraph signal model and its simulator (saalfeldlab/neural-gnn, `generators/PDE_N2.py`,
//! `generators/utils.py::init_connectivity`).
//!
//! `n` neurons in `K` types (contiguous blocks of `n / K`, the remainder to the last type) follow
//!
//! ```text
//! du_i/dt = −c_i u_i + s_i tanh(u_i) + g_i Σ_j W_ij tanh(u_j)
//! ```
//!
//! with `[g, s, c]` per type (Fig. 2: `[10,1,1]`, `[10,2,1]`, `[10,1,2]`, `[10,2,2]`), integrated by
//! Euler steps of `dt` (0.01) from `u₀ ~ 5·N(0, 1)` after `burn_in` discarded steps. Connectivity:
//!
//! - `lorentz`: standard Cauchy entries, `|x| > 25` set to 0, divided by `n^0.7` (`n < 2000`;
//!   `n^0.675` below 4000, `n^0.67` below 8000, `n^0.66` at 8000, `n^0.5` above, as the code);
//! - `gaussian`: `N(0, 1)/√n`; `low_rank`: `U V / √(r n)` with `U [n, r]`, `V [r, n]` standard normal;
//! - then the diagonal is zeroed; Dale's law (optional) takes `|W|` and negates the columns of the
//!   last `n − ⌊f n⌋` (inhibitory, presynaptic) neurons; a filling factor below 1 zeroes each entry
//!   with probability `1 − filling`.
//!
//! Frames and rates are produced on the device one chunk at a time (one launch per step,
//! `Tensor::signal_rollout`) and kept as device chunks for training (one buffer of 100k × 1000 f32
//! frames would pass lavapipe's 128 MiB per-buffer limit).

use dynlab_data::HostRng;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};

/// `[g, s, c]` of the four neuron types of the published Fig. 2.
pub const FIG2_TYPES: [[f32; 3]; 4] = [
    [10.0, 1.0, 1.0],
    [10.0, 2.0, 1.0],
    [10.0, 1.0, 2.0],
    [10.0, 2.0, 2.0],
];

/// How the true connectivity is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConnectivityKind {
    /// Truncated standard Cauchy, scaled by a power of `n`.
    Lorentz,
    /// `N(0, 1/n)`.
    Gaussian,
    /// `U V / √(r n)` of rank `r`.
    LowRank(usize),
}

/// The connectivity generator's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectivitySpec {
    /// The distribution.
    pub kind: ConnectivityKind,
    /// Dale's law with this excitatory fraction (`None`: off).
    pub dale: Option<f32>,
    /// Fraction of entries kept (1: dense).
    pub filling: f32,
}

/// The divisor exponent of the Lorentz generator for `n` neurons (the reference's ladder).
pub fn lorentz_exponent(n: usize) -> f64 {
    match n {
        n if n < 2000 => 0.7,
        n if n < 4000 => 0.675,
        n if n < 8000 => 0.67,
        8000 => 0.66,
        _ => 0.5,
    }
}

/// A standard normal draw (Box–Muller).
pub fn normal(rng: &mut HostRng) -> f64 {
    let u1 = rng.uniform().max(f64::MIN_POSITIVE);
    let u2 = rng.uniform();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The true connectivity `W [n, n]`, row-major (`W_ij`: from `j` to `i`).
pub fn connectivity(n: usize, spec: ConnectivitySpec, rng: &mut HostRng) -> Vec<f32> {
    let mut w: Vec<f64> = match spec.kind {
        ConnectivityKind::Lorentz => {
            let scale = (n as f64).powf(lorentz_exponent(n));
            (0..n * n)
                .map(|_| {
                    let x = (std::f64::consts::PI * (rng.uniform() - 0.5)).tan();
                    if x.abs() > 25.0 {
                        0.0
                    } else {
                        x / scale
                    }
                })
                .collect()
        }
        ConnectivityKind::Gaussian => {
            let scale = (n as f64).sqrt();
            (0..n * n).map(|_| normal(rng) / scale).collect()
        }
        ConnectivityKind::LowRank(r) => {
            let u: Vec<f64> = (0..n * r).map(|_| normal(rng)).collect();
            let v: Vec<f64> = (0..r * n).map(|_| normal(rng)).collect();
            let scale = ((r * n) as f64).sqrt();
            (0..n * n)
                .map(|k| {
                    let (i, j) = (k / n, k % n);
                    (0..r).map(|q| u[i * r + q] * v[q * n + j]).sum::<f64>() / scale
                })
                .collect()
        }
    };
    for i in 0..n {
        w[i * n + i] = 0.0;
    }
    if let Some(fraction) = spec.dale {
        let excitatory = (n as f64 * fraction as f64) as usize;
        for (k, x) in w.iter_mut().enumerate() {
            *x = if k % n < excitatory {
                x.abs()
            } else {
                -x.abs()
            };
        }
    }
    if spec.filling < 1.0 {
        for x in w.iter_mut() {
            if rng.uniform() > spec.filling as f64 {
                *x = 0.0;
            }
        }
    }
    w.into_iter().map(|x| x as f32).collect()
}

/// The type of each of `n` neurons: contiguous blocks of `n / types`, the remainder to the last.
pub fn neuron_types(n: usize, types: usize) -> Vec<usize> {
    let block = (n / types.max(1)).max(1);
    (0..n).map(|i| (i / block).min(types - 1)).collect()
}

/// `[g; s; c]` `[3, n]` for neurons of `types` with per-type `params`.
pub fn neuron_params(types: &[usize], params: &[[f32; 3]]) -> Vec<f32> {
    (0..3)
        .flat_map(|k| types.iter().map(move |&t| params[t][k]))
        .collect()
}

/// A simulated recording: frames `u` and rates `du/dt`, in device chunks of consecutive frames.
#[derive(Clone, Debug)]
pub struct Recording {
    /// `(u [T_k, n], du [T_k, n])` per chunk.
    pub chunks: Vec<(Tensor, Tensor)>,
    /// Frames in all.
    pub frames: usize,
    /// Neurons.
    pub neurons: usize,
    /// The state after the last frame (where a continuation starts).
    pub last: Tensor,
}

impl Recording {
    /// Frames `[k, n]` and rates at the global frame indices `frames` (one gather per chunk hit).
    pub fn gather(&self, frames: &[usize]) -> Result<(Tensor, Tensor)> {
        let mut starts = Vec::with_capacity(self.chunks.len());
        let mut at = 0;
        for (u, _) in &self.chunks {
            starts.push(at);
            at += u.shape()[0];
        }
        let (mut us, mut dus) = (Vec::new(), Vec::new());
        for (k, (u, du)) in self.chunks.iter().enumerate() {
            let len = u.shape()[0];
            let local: Vec<i32> = frames
                .iter()
                .filter(|&&f| f >= starts[k] && f < starts[k] + len)
                .map(|&f| (f - starts[k]) as i32)
                .collect();
            if local.is_empty() {
                continue;
            }
            let idx = Tensor::from_slice(&local, &[local.len()], u.device())?;
            us.push(u.index_select(0, &idx)?);
            dus.push(du.index_select(0, &idx)?);
        }
        if us.len() == 1 {
            return Ok((us.remove(0), dus.remove(0)));
        }
        let cat = |v: &[Tensor]| Tensor::cat(&v.iter().collect::<Vec<_>>(), 0);
        Ok((cat(&us)?, cat(&dus)?))
    }

    /// Every frame `[T, n]` on the host (for statistics and evaluation).
    pub fn host_frames(&self) -> Result<Vec<f32>> {
        let mut all = Vec::with_capacity(self.frames * self.neurons);
        for (u, _) in &self.chunks {
            all.extend(u.to_vec::<f32>()?);
        }
        Ok(all)
    }
}

/// What the simulator needs.
#[derive(Clone, Debug)]
pub struct Simulator {
    /// `W [n, n]` on the host, row-major.
    pub w: Vec<f32>,
    /// `[g; s; c]` `[3, n]`.
    pub params: Vec<f32>,
    /// Euler step.
    pub dt: f32,
}

impl Simulator {
    /// Neurons.
    pub fn neurons(&self) -> usize {
        self.params.len() / 3
    }

    /// `frames` frames after `burn_in` discarded steps from `u₀ ~ scale·N(0, 1)`, in chunks of at
    /// most `chunk` frames.
    pub fn record(
        &self,
        frames: usize,
        burn_in: usize,
        chunk: usize,
        u0_scale: f32,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<Recording> {
        let n = self.neurons();
        if n == 0 || chunk == 0 || self.w.len() != n * n {
            return Err(Error::value(
                "Simulator::record",
                format!("{n} neurons, W of {} entries, chunk {chunk}", self.w.len()),
                "n ≥ 1 neurons, W of n² entries, chunk ≥ 1",
            ));
        }
        let wt = transpose(&self.w, n);
        let wt = Tensor::from_vec(wt, &[n, n], device)?;
        let params = Tensor::from_slice(&self.params, &[3, n], device)?;
        let mut u = Tensor::rand_normal(&[n], 0.0, u0_scale, rng, device)?;
        if burn_in > 0 {
            let (f, _) = u.signal_rollout(&wt, &params, burn_in, self.dt)?;
            u = f.narrow(0, burn_in, 1)?.reshape(&[n as isize])?;
        }
        let mut chunks = Vec::new();
        let mut done = 0;
        while done < frames {
            let len = chunk.min(frames - done);
            let (f, du) = u.signal_rollout(&wt, &params, len, self.dt)?;
            u = f.narrow(0, len, 1)?.reshape(&[n as isize])?;
            let f = f.narrow(0, 0, len)?.contiguous()?;
            chunks.push((f, du));
            done += len;
        }
        Ok(Recording {
            chunks,
            frames,
            neurons: n,
            last: u,
        })
    }
}

/// `Wᵀ` of a row-major `n × n` matrix.
pub fn transpose(w: &[f32], n: usize) -> Vec<f32> {
    (0..n * n).map(|k| w[(k % n) * n + k / n]).collect()
}

/// The spectral radius of `W` (the largest modulus of its eigenvalues; faer on the host, f64).
pub fn spectral_radius(w: &[f32], n: usize) -> Result<f64> {
    let a: Vec<f64> = w.iter().map(|&v| v as f64).collect();
    let values = dynlab_runtime::linalg::host::eigenvalues_f64(&a, n)?;
    Ok(values
        .iter()
        .map(|(re, im)| re.hypot(*im))
        .fold(0.0, f64::max))
}

/// Frames the activity's spectrum is computed from, at most (evenly spaced over the recording).
pub const SPECTRUM_FRAMES: usize = 10_000;

/// The variances along the principal axes of the recorded activity (squared singular values of
/// the centred frames over `T`), from at most [`SPECTRUM_FRAMES`] evenly spaced frames, by faer's
/// SVD in f64 on the host.
pub fn activity_spectrum(recording: &Recording) -> Result<Vec<f64>> {
    let n = recording.neurons;
    let stride = recording.frames.div_ceil(SPECTRUM_FRAMES).max(1);
    let all = recording.host_frames()?;
    let rows: Vec<usize> = (0..recording.frames).step_by(stride).collect();
    let mut mean = vec![0.0f64; n];
    for &t in &rows {
        for (m, &v) in mean.iter_mut().zip(&all[t * n..(t + 1) * n]) {
            *m += v as f64 / rows.len() as f64;
        }
    }
    let centred: Vec<f64> = rows
        .iter()
        .flat_map(|&t| (0..n).map(move |i| (t, i)))
        .map(|(t, i)| all[t * n + i] as f64 - mean[i])
        .collect();
    let s = dynlab_runtime::linalg::host::singular_values_f64(&centred, rows.len(), n)?;
    Ok(s.iter().map(|v| v * v / rows.len() as f64).collect())
}

/// Number of principal components that explain `fraction` of the variance (the effective rank of
/// the activity), from the eigenvalues of its covariance.
pub fn effective_rank(eigenvalues: &[f64], fraction: f64) -> usize {
    let mut sorted: Vec<f64> = eigenvalues.iter().map(|&e| e.max(0.0)).collect();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let total: f64 = sorted.iter().sum();
    if total <= 0.0 {
        return 0;
    }
    let mut acc = 0.0;
    for (k, e) in sorted.iter().enumerate() {
        acc += e;
        if acc >= fraction * total {
            return k + 1;
        }
    }
    sorted.len()
}
