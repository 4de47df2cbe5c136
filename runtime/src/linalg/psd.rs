//! Functions of symmetric positive semi-definite matrices through `Σ = V Λ Vᵀ` (eigenvalues floored):
//! `Σ^{1/2} = V max(Λ, 0)^{1/2} Vᵀ`, `Σ^{−1/2} = V max(Λ, f)^{−1/2} Vᵀ`, and for rank-restoring
//! continual backprop the Σ-orthogonal projector onto the span of `V` (columns `v_1 … v_k`):
//! `P = V (VᵀΣV)⁻¹ VᵀΣ` (so `P² = P` and `(I − P)x` is Σ-orthogonal to every `v_i`), and the Σ-norm
//! `‖x‖_Σ = √(xᵀΣx)`.

use super::eigh::{square_size, EighOptions};
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// `V f(Λ) Vᵀ` for the symmetrised `a`.
fn spectral_function(a: &Tensor, f: impl Fn(&Tensor) -> Result<Tensor>) -> Result<Tensor> {
    let e = a.eigh(EighOptions {
        symmetrize: true,
        ..Default::default()
    })?;
    let scaled = e.vectors.mul(&f(&e.values)?.unsqueeze(-2)?)?;
    scaled.matmul(&e.vectors.transpose(-1, -2)?)
}

fn check_floor(op: &'static str, floor: f32) -> Result<()> {
    if floor > 0.0 && floor.is_finite() {
        Ok(())
    } else {
        Err(Error::value(
            op,
            format!("floor {floor}"),
            "a positive finite eigenvalue floor",
        ))
    }
}

impl Tensor {
    /// Principal square root of a PSD matrix (negative eigenvalues from rounding are set to 0).
    pub fn sqrtm_psd(&self) -> Result<Tensor> {
        square_size("Tensor::sqrtm_psd", self)?;
        spectral_function(self, |l| l.maximum_scalar(0.0)?.sqrt())
    }

    /// Inverse square root of a PSD matrix with eigenvalues floored at `floor > 0`.
    pub fn inv_sqrtm_psd(&self, floor: f32) -> Result<Tensor> {
        square_size("Tensor::inv_sqrtm_psd", self)?;
        check_floor("Tensor::inv_sqrtm_psd", floor)?;
        spectral_function(self, |l| l.maximum_scalar(floor)?.rsqrt())
    }

    /// The Σ-orthogonal projector `P = V (VᵀΣV)⁻¹ VᵀΣ` onto the columns of `self` (`[d, k]`), with
    /// `sigma` `[d, d]` PSD; eigenvalues of `VᵀΣV` are floored at `floor`.
    pub fn sigma_projector(&self, sigma: &Tensor, floor: f32) -> Result<Tensor> {
        let op = "Tensor::sigma_projector";
        let d = square_size(op, sigma)?;
        check_floor(op, floor)?;
        if self.rank() != 2 || self.shape()[0] != d || sigma.rank() != 2 {
            return Err(Error::shape(
                op,
                format!("V {:?}, Σ {:?}", self.shape(), sigma.shape()),
                format!("V [{d}, k] and Σ [{d}, {d}]"),
            ));
        }
        let vt_sigma = self.transpose(0, 1)?.matmul(sigma)?;
        let gram = vt_sigma.matmul(self)?;
        let inv = spectral_function(&gram, |l| l.maximum_scalar(floor)?.recip())?;
        self.matmul(&inv)?.matmul(&vt_sigma)
    }

    /// `‖x‖_Σ = √(xᵀΣx)` of each row of `self` (`[..., d]`), with `sigma` `[d, d]` PSD.
    pub fn sigma_norm(&self, sigma: &Tensor) -> Result<Tensor> {
        let op = "Tensor::sigma_norm";
        let d = square_size(op, sigma)?;
        if self.shape().last() != Some(&d) || sigma.rank() != 2 {
            return Err(Error::shape(
                op,
                format!("x {:?}, Σ {:?}", self.shape(), sigma.shape()),
                format!("x [..., {d}] and Σ [{d}, {d}]"),
            ));
        }
        self.matmul(sigma)?
            .mul(self)?
            .sum(-1, false)?
            .maximum_scalar(0.0)?
            .sqrt()
    }
}
