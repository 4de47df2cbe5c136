//! Thin SVD `A = U diag(s) Vᵀ` of an `m × n` matrix, and its singular values alone.
//!
//! Device path: the eigendecomposition of the smaller Gram matrix (`AᵀA` when `m ≥ n`, else `AAᵀ`):
//! `σ_i = √λ_i`, the other factor from `A v_i / σ_i`. Forming the Gram matrix squares the condition
//! number: in f32, singular values below about `√ε·σ_max ≈ 3.5e-4·σ_max` keep only absolute accuracy
//! `~√ε·σ_max`. So when the Gram matrix's condition number `(σ_max/σ_min)²` exceeds
//! `cond_threshold` (default 1e6, i.e. `σ_max/σ_min > 1000`; for `svd`, whose vectors need more, above
//! [`SVD_GRAM_COND`] = 1e4), when `min(m, n) > max_device_n`, or
//! when `DYNLAB_FORCE_HOST_EIGH=1`, the SVD of `A` itself is computed on the host in f64 (faer).

use super::eigh::{count_fallback, EighOptions, EighPath, FallbackReason};
use super::host::{singular_values_f64, svd_f64};
use crate::error::{Error, Result};
use crate::settings;
use crate::tensor::Tensor;

/// Largest Gram condition number `(σ_max/σ_min)²` for which [`Tensor::svd`] stays on the device:
/// the other factor `A v / σ` is orthonormal to about `ε·(σ_max/σ_min)²` ≈ 1e-3 here.
pub const SVD_GRAM_COND: f64 = 1e4;

/// The thin singular value decomposition `A = U diag(s) Vᵀ` returned by [`Tensor::svd`].
#[derive(Clone, Debug)]
pub struct Svd {
    /// `[m, k]`, orthonormal columns (`k = min(m, n)`).
    pub u: Tensor,
    /// `[k]`, descending.
    pub s: Tensor,
    /// `[n, k]`, orthonormal columns.
    pub v: Tensor,
    /// Which solver produced it (the device path goes through the eigendecomposition of the Gram
    /// matrix).
    pub path: EighPath,
}

fn check_matrix(op: &'static str, a: &Tensor) -> Result<(usize, usize)> {
    a.expect_f32(op)?;
    if a.rank() != 2 {
        return Err(Error::shape(
            op,
            format!("{:?}", a.shape()),
            "a matrix [m, n]",
        ));
    }
    Ok((a.shape()[0], a.shape()[1]))
}

/// The Gram matrix of the smaller side, its device eigendecomposition, and whether the host must
/// take over instead (and why).
fn gram_eigh(
    a: &Tensor,
    options: &EighOptions,
    cond_threshold: f64,
) -> Result<std::result::Result<(Tensor, Tensor, usize), FallbackReason>> {
    let (m, n) = (a.shape()[0], a.shape()[1]);
    let k = m.min(n);
    if settings::force_host_eigh() {
        return Ok(Err(FallbackReason::Forced));
    }
    if options.host_on_cpu_device && a.device().is_cpu() {
        return Ok(Err(FallbackReason::CpuDevice));
    }
    if k > options.max_device_n {
        return Ok(Err(FallbackReason::TooLarge { n: k }));
    }
    let gram = if m >= n {
        a.transpose(0, 1)?.matmul(a)?
    } else {
        a.matmul(&a.transpose(0, 1)?)?
    };
    let e = gram.eigh(EighOptions {
        symmetrize: true,
        cond_threshold: f64::INFINITY,
        ..*options
    })?;
    let EighPath::Device { sweeps } = e.path else {
        return Ok(Err(FallbackReason::NotConverged {
            sweeps: options.max_sweeps,
            off_ratio: f64::NAN,
        }));
    };
    let lam = e.values.to_vec::<f32>()?;
    let (lo, hi) = (
        lam.first().copied().unwrap_or(0.0),
        lam.last().copied().unwrap_or(0.0),
    );
    let condition = if hi <= 0.0 {
        1.0
    } else {
        hi as f64 / (lo.max(0.0) as f64)
    };
    if condition > cond_threshold {
        return Ok(Err(FallbackReason::IllConditioned { condition }));
    }
    // Descending order: reverse the ascending eigenpairs.
    let rev: Vec<i32> = (0..k as i32).rev().collect();
    let rev = Tensor::from_vec(rev, &[k], a.device())?;
    let values = e
        .values
        .index_select(0, &rev)?
        .maximum_scalar(0.0)?
        .sqrt()?;
    let vectors = e.vectors.index_select(1, &rev)?;
    Ok(Ok((values, vectors, sweeps)))
}

impl Tensor {
    /// Thin SVD of a matrix (see the module docs for the device and host paths).
    pub fn svd(&self, options: EighOptions) -> Result<Svd> {
        let op = "Tensor::svd";
        let (m, n) = check_matrix(op, self)?;
        self.expect_finite(op)?;
        match gram_eigh(self, &options, options.cond_threshold.min(SVD_GRAM_COND))? {
            Ok((s, w, sweeps)) => {
                // The other factor: A W / σ (or Aᵀ W / σ); columns with σ = 0 are left at zero.
                let inv = s
                    .maximum_scalar(f32::MIN_POSITIVE)?
                    .recip()?
                    .mul(&s.gt_scalar(0.0)?)?;
                let (u, v) = if m >= n {
                    (self.matmul(&w)?.mul(&inv)?, w)
                } else {
                    (w.clone(), self.transpose(0, 1)?.matmul(&w)?.mul(&inv)?)
                };
                Ok(Svd {
                    u,
                    s,
                    v,
                    path: EighPath::Device { sweeps },
                })
            }
            Err(reason) => {
                if reason != FallbackReason::CpuDevice {
                    count_fallback();
                }
                let data: Vec<f64> = self.to_vec::<f32>()?.iter().map(|&x| x as f64).collect();
                let (u, s, v) = svd_f64(&data, m, n)?;
                let k = m.min(n);
                let f = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
                Ok(Svd {
                    u: Tensor::from_vec(f(u), &[m, k], self.device())?,
                    s: Tensor::from_vec(f(s), &[k], self.device())?,
                    v: Tensor::from_vec(f(v), &[n, k], self.device())?,
                    path: EighPath::Host(reason),
                })
            }
        }
    }

    /// Singular values (descending) of a matrix, without the vectors; same paths as [`Tensor::svd`].
    pub fn singular_values(&self, options: EighOptions) -> Result<(Tensor, EighPath)> {
        let op = "Tensor::singular_values";
        let (m, n) = check_matrix(op, self)?;
        self.expect_finite(op)?;
        match gram_eigh(self, &options, options.cond_threshold)? {
            Ok((s, _, sweeps)) => Ok((s, EighPath::Device { sweeps })),
            Err(reason) => {
                if reason != FallbackReason::CpuDevice {
                    count_fallback();
                }
                let data: Vec<f64> = self.to_vec::<f32>()?.iter().map(|&x| x as f64).collect();
                let s = singular_values_f64(&data, m, n)?;
                let s: Vec<f32> = s.into_iter().map(|x| x as f32).collect();
                let k = s.len();
                Ok((
                    Tensor::from_vec(s, &[k], self.device())?,
                    EighPath::Host(reason),
                ))
            }
        }
    }

    /// Errors when the tensor holds NaN or Inf (one reduction and a host read-back).
    pub(crate) fn expect_finite(&self, op: &'static str) -> Result<()> {
        if self.numel() == 0 {
            return Ok(());
        }
        let total = self.mul_scalar(0.0)?.sum_all()?.item()?;
        if total.is_nan() {
            return Err(Error::Numerical {
                op,
                message: format!("the input {:?} holds NaN or Inf", self.shape()),
            });
        }
        Ok(())
    }
}
