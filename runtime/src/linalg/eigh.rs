//! Symmetric eigendecomposition `A = V Λ Vᵀ` of (batched) `[..., n, n]` matrices: eigenvalues
//! ascending, eigenvectors orthonormal columns.
//!
//! The device path runs parallel cyclic Jacobi sweeps (`dynlab_kernels::linalg`) in f32 until the
//! off-diagonal norm `off(A) = (Σ_{i≠j} a_ij²)^{1/2}` is at most `tol · ‖A‖_F`. It falls back to an
//! f64 host solver (faer) — and says so in [`Eigh::path`] and [`host_fallbacks`] — when the sweeps do
//! not converge, when the estimated condition number `max|λ| / min|λ|` exceeds `cond_threshold`
//! (f32 eigenvalues of such matrices carry absolute errors of order `ε‖A‖`, so small ones lose all
//! relative accuracy), when `n > max_device_n`, or when `DYNLAB_FORCE_HOST_EIGH=1`. NaN or Inf in
//! the input is an error, not a fallback: no path returns NaN.

use super::host::eigh_f64;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::settings;
use crate::tensor::Tensor;
use dynlab_kernels::linalg::{jacobi_columns, jacobi_rotations, jacobi_rows};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Options of [`Tensor::eigh`]: preprocessing, the Jacobi stopping rule, and when to use the f64
/// host solver instead.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EighOptions {
    /// Use `(A + Aᵀ)/2`; without it an input that is not symmetric (to `1e-4·‖A‖_F`) is an error.
    pub symmetrize: bool,
    /// Add `ridge · I` first.
    pub ridge: f32,
    /// Convergence: `off(A) ≤ tol·‖A‖_F` (0: `n · 2⁻²³`).
    pub tol: f32,
    /// Sweeps before the device path gives up and falls back to the host (`NotConverged`).
    pub max_sweeps: usize,
    /// Host fallback above this estimated condition number (`f64::INFINITY`: never).
    pub cond_threshold: f64,
    /// Host path for larger matrices (Jacobi takes `O(n)` launches per sweep).
    pub max_device_n: usize,
    /// On a CPU device (lavapipe) use the host solver outright: it measured 280–400× faster than the
    /// Jacobi kernels at n = 64 and 256 (`benches/results/linalg.csv`). Not counted as a fallback.
    pub host_on_cpu_device: bool,
}

impl Default for EighOptions {
    fn default() -> Self {
        EighOptions {
            symmetrize: false,
            ridge: 0.0,
            tol: 0.0,
            max_sweeps: 30,
            cond_threshold: 1e6,
            max_device_n: 512,
            host_on_cpu_device: true,
        }
    }
}

/// Why the host solver ran.
#[derive(Clone, Debug, PartialEq)]
pub enum FallbackReason {
    /// `DYNLAB_FORCE_HOST_EIGH=1`.
    Forced,
    /// The Jacobi sweeps did not reach the tolerance within `max_sweeps` (or the off-diagonal norm
    /// became non-finite).
    NotConverged {
        /// Sweeps run before giving up.
        sweeps: usize,
        /// The worst `off(A) / ‖A‖_F` over the batch when it stopped.
        off_ratio: f64,
    },
    /// The estimated condition number exceeded `cond_threshold`.
    IllConditioned {
        /// The estimate `max|λ| / min|λ|` (for the SVD, of the Gram matrix).
        condition: f64,
    },
    /// The matrices are larger than `max_device_n`.
    TooLarge {
        /// Their size.
        n: usize,
    },
    /// The device is a CPU (`EighOptions::host_on_cpu_device`): a choice, not a failure.
    CpuDevice,
}

/// Which solver produced the result.
#[derive(Clone, Debug, PartialEq)]
pub enum EighPath {
    /// The Jacobi kernels on the device.
    Device {
        /// Sweeps until convergence.
        sweeps: usize,
    },
    /// The f64 host solver, and why it ran.
    Host(FallbackReason),
}

/// The eigendecomposition `A = V Λ Vᵀ` returned by [`Tensor::eigh`].
#[derive(Clone, Debug)]
pub struct Eigh {
    /// `[..., n]`, ascending.
    pub values: Tensor,
    /// `[..., n, n]`, eigenvector `k` in column `k`.
    pub vectors: Tensor,
    /// Which solver produced it.
    pub path: EighPath,
}

static FALLBACKS: AtomicUsize = AtomicUsize::new(0);

/// How many eigendecompositions (and SVDs built on them) fell back to the host in this process (the
/// CPU-device preference is not a fallback and is not counted).
pub fn host_fallbacks() -> usize {
    FALLBACKS.load(Ordering::Relaxed)
}

pub(super) fn count_fallback() {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
}

/// Frobenius norm of each `n × n` matrix of `a [b, n, n]`, and of its off-diagonal part.
fn norms(a: &Tensor, off_mask: &Tensor) -> Result<(Vec<f64>, Vec<f64>)> {
    let b = a.shape()[0];
    let total = a.square()?.reshape(&[b as isize, -1])?.sum(1, false)?;
    let off = a
        .mul(off_mask)?
        .square()?
        .reshape(&[b as isize, -1])?
        .sum(1, false)?;
    let host = Tensor::cat(&[&total, &off], 0)?.to_vec::<f32>()?;
    let sqrt = |v: &[f32]| v.iter().map(|&x| (x as f64).sqrt()).collect();
    Ok((sqrt(&host[..b]), sqrt(&host[b..])))
}

/// `n` of (batched) square matrices `[..., n, n]`, or a shape error naming `op`.
pub(super) fn square_size(op: &'static str, a: &Tensor) -> Result<usize> {
    let r = a.rank();
    if r < 2 || a.shape()[r - 1] != a.shape()[r - 2] {
        return Err(Error::shape(
            op,
            format!("{:?}", a.shape()),
            "square matrices [..., n, n]",
        ));
    }
    Ok(a.shape()[r - 1])
}

impl Tensor {
    /// Eigendecomposition of symmetric matrices `[..., n, n]` (see the module docs for the paths).
    pub fn eigh(&self, options: EighOptions) -> Result<Eigh> {
        let op = "Tensor::eigh";
        self.expect_f32(op)?;
        let n = square_size(op, self)?;
        let r = self.rank();
        let batch_shape = self.shape()[..r - 2].to_vec();
        let b: usize = batch_shape.iter().product();
        let mut a = self.reshape(&[b as isize, n as isize, n as isize])?;
        if options.symmetrize {
            a = a.add(&a.transpose(1, 2)?)?.mul_scalar(0.5)?;
        }
        if options.ridge != 0.0 {
            a = a.add(&Tensor::eye(n, self.device())?.mul_scalar(options.ridge)?)?;
        }
        let a = a.copy()?;
        if b * n == 0 {
            return Ok(Eigh {
                values: Tensor::zeros(&out_shape_of(&batch_shape, &[n]), self.device())?,
                vectors: Tensor::zeros(&out_shape_of(&batch_shape, &[n, n]), self.device())?,
                path: EighPath::Device { sweeps: 0 },
            });
        }
        let off_mask = Tensor::eye(n.max(1), self.device())?
            .rsub_scalar(1.0)?
            .narrow(0, 0, n)?
            .narrow(1, 0, n)?;
        let (a, scales) = scaled(op, &a, self.shape())?;
        let (fro, _) = norms(&a, &off_mask)?;
        if !options.symmetrize && b * n > 0 {
            let asym = a
                .sub(&a.transpose(1, 2)?)?
                .square()?
                .reshape(&[b as isize, -1])?
                .sum(1, false)?;
            let asym = asym.to_vec::<f32>()?;
            if let Some(k) = (0..b).find(|&k| (asym[k] as f64).sqrt() > 1e-4 * fro[k]) {
                return Err(Error::value(
                    op,
                    format!(
                        "matrix {k} with ‖A − Aᵀ‖ = {:.3e}, ‖A‖ = {:.3e}",
                        (asym[k] as f64).sqrt(),
                        fro[k]
                    ),
                    "a symmetric matrix (or EighOptions { symmetrize: true, .. })",
                ));
            }
        }
        let out_shape = |extra: &[usize]| out_shape_of(&batch_shape, extra);
        let (values, vectors, path) = if settings::force_host_eigh() {
            host_eigh(&a, FallbackReason::Forced)?
        } else if options.host_on_cpu_device && self.device().is_cpu() {
            host_eigh(&a, FallbackReason::CpuDevice)?
        } else if n > options.max_device_n {
            host_eigh(&a, FallbackReason::TooLarge { n })?
        } else {
            match device_eigh(&a, &off_mask, &fro, &options)? {
                Ok(done) => done,
                Err(reason) => host_eigh(&a, reason)?,
            }
        };
        if matches!(&path, EighPath::Host(r) if *r != FallbackReason::CpuDevice) {
            count_fallback();
        }
        let values = match scales {
            Some(s) => values.div(&s.reshape(&[b as isize, 1])?)?,
            None => values,
        };
        Ok(Eigh {
            values: values.reshape(&dims(&out_shape(&[n])))?,
            vectors: vectors.reshape(&dims(&out_shape(&[n, n])))?,
            path,
        })
    }
}

/// Matrices whose largest entry lies outside `[2⁻⁶⁰, 2⁶⁰/n]` are scaled by a power of two near its
/// inverse (exactly), so that
/// `‖A‖_F²` (and the rotations' products) neither overflow nor underflow f32; eigenvalues are
/// scaled back, eigenvectors do not change. Returns the matrices and, when any was scaled, the
/// factor each was multiplied by (`[b]`). NaN or Inf entries are an error.
fn scaled(op: &'static str, a: &Tensor, shape: &[usize]) -> Result<(Tensor, Option<Tensor>)> {
    let (b, n) = (a.shape()[0], a.shape()[1]);
    let max_abs = a.abs()?.reshape(&[b as isize, -1])?.max(1, false)?;
    let host = max_abs.to_vec::<f32>()?;
    if let Some(k) = host.iter().position(|x| !x.is_finite()) {
        return Err(Error::Numerical {
            op,
            message: format!("matrix {k} of {shape:?} holds NaN or Inf"),
        });
    }
    let (low, high) = (2f32.powi(-60), 2f32.powi(60) / n as f32);
    let factors: Vec<f32> = host
        .iter()
        .map(|&m| {
            if m == 0.0 || (low..=high).contains(&m) {
                return 1.0;
            }
            // A power of two near 1/m, so the scaling is exact (m is finite and positive).
            let factor = 2f32.powi(-(m.log2().floor() as i32));
            if factor.is_finite() {
                factor
            } else {
                1.0
            }
        })
        .collect();
    if factors.iter().all(|&f| f == 1.0) {
        return Ok((a.clone(), None));
    }
    let factors = Tensor::from_vec(factors, &[b], a.device())?;
    let scaled = a.mul(&factors.reshape(&[b as isize, 1, 1])?)?.copy()?;
    Ok((scaled, Some(factors)))
}

fn out_shape_of(batch: &[usize], extra: &[usize]) -> Vec<usize> {
    batch.iter().chain(extra).copied().collect()
}

fn dims(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|&d| d as isize).collect()
}

type Decomposition = (Tensor, Tensor, EighPath);

/// f64 host solve of every matrix of `a [b, n, n]`.
fn host_eigh(a: &Tensor, reason: FallbackReason) -> Result<Decomposition> {
    let (b, n) = (a.shape()[0], a.shape()[1]);
    let data = a.to_vec::<f32>()?;
    let (mut values, mut vectors) = (Vec::with_capacity(b * n), Vec::with_capacity(b * n * n));
    for k in 0..b {
        let m: Vec<f64> = data[k * n * n..(k + 1) * n * n]
            .iter()
            .map(|&x| x as f64)
            .collect();
        let (l, v) = eigh_f64(&m, n)?;
        values.extend(l.iter().map(|&x| x as f32));
        vectors.extend(v.iter().map(|&x| x as f32));
    }
    Ok((
        Tensor::from_vec(values, &[b, n], a.device())?,
        Tensor::from_vec(vectors, &[b, n, n], a.device())?,
        EighPath::Host(reason),
    ))
}

/// Jacobi sweeps on the device: `Ok(Ok(..))` converged, `Ok(Err(reason))` needs the host.
fn device_eigh(
    a: &Tensor,
    off_mask: &Tensor,
    fro: &[f64],
    options: &EighOptions,
) -> Result<std::result::Result<Decomposition, FallbackReason>> {
    let (b, n) = (a.shape()[0], a.shape()[1]);
    let device = a.device();
    // The sweeps rotate this copy in place; `a` stays for a host fallback.
    let a = &a.copy()?;
    let eye = Tensor::eye(n.max(1), device)?
        .narrow(0, 0, n)?
        .narrow(1, 0, n)?;
    let v = eye.unsqueeze(0)?.expand(&[b, n, n])?.copy()?;
    let tol = if options.tol > 0.0 {
        options.tol as f64
    } else {
        n.max(1) as f64 * f32::EPSILON as f64
    };
    let m = n + n % 2;
    let half = m / 2;
    let mut sweeps = 0;
    if b * n > 1 {
        let rot = Tensor::alloc("Tensor::eigh", &[b * half, 2], DType::F32, device)?;
        loop {
            let (_, off) = norms(a, off_mask)?;
            let worst = off
                .iter()
                .zip(fro)
                .map(|(o, f)| if *f > 0.0 { o / f } else { 0.0 })
                .fold(0.0, f64::max);
            if !worst.is_finite() {
                return Ok(Err(FallbackReason::NotConverged {
                    sweeps,
                    off_ratio: worst,
                }));
            }
            if worst <= tol {
                break;
            }
            if sweeps == options.max_sweeps {
                return Ok(Err(FallbackReason::NotConverged {
                    sweeps,
                    off_ratio: worst,
                }));
            }
            for round in 0..(m - 1) as u32 {
                jacobi_round(a, &v, &rot, n as u32, m as u32, round, b * half)?;
            }
            sweeps += 1;
        }
    }
    // Eigenvalues are the diagonal; sort each matrix's ascending and permute V's columns to match.
    let diag = a
        .reshape(&[b as isize, (n * n) as isize])?
        .slice(1, 0, n * n, n + 1)?;
    let diag = diag.to_vec::<f32>()?;
    let mut values = Vec::with_capacity(b * n);
    let mut index = Vec::with_capacity(b * n * n);
    for k in 0..b {
        let d = &diag[k * n..(k + 1) * n];
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
        let abs: Vec<f64> = d.iter().map(|x| (*x as f64).abs()).collect();
        let (lo, hi) = abs
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let condition = if hi == 0.0 { 1.0 } else { hi / lo };
        if condition > options.cond_threshold {
            return Ok(Err(FallbackReason::IllConditioned { condition }));
        }
        values.extend(order.iter().map(|&i| d[i]));
        for _ in 0..n {
            index.extend(order.iter().map(|&i| i as i32));
        }
    }
    let index = Tensor::from_vec(index, &[b, n, n], device)?;
    Ok(Ok((
        Tensor::from_vec(values, &[b, n], device)?,
        v.gather(2, &index)?,
        EighPath::Device { sweeps },
    )))
}

/// One round of `m/2` parallel rotations in every matrix: angles, then `A J`, `V J`, then `Jᵀ A`.
fn jacobi_round(
    a: &Tensor,
    v: &Tensor,
    rot: &Tensor,
    n: u32,
    m: u32,
    round: u32,
    pairs: usize,
) -> Result<()> {
    let (count, dim) = units_grid(pairs);
    let (count_n, dim_n) = units_grid(pairs * n as usize);
    let device = a.device();
    launch!(
        device,
        jacobi_rotations::<f32>,
        count,
        dim,
        a.buffer_arg(),
        rot.buffer_arg(),
        n,
        m,
        round
    );
    launch!(
        device,
        jacobi_columns::<f32>,
        count_n.clone(),
        dim_n,
        a.buffer_arg(),
        v.buffer_arg(),
        rot.buffer_arg(),
        n,
        m,
        round,
    );
    launch!(
        device,
        jacobi_rows::<f32>,
        count_n,
        dim_n,
        a.buffer_arg(),
        rot.buffer_arg(),
        n,
        m,
        round
    );
    Ok(())
}
