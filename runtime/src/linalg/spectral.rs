//! Spectral radius `ρ(A) = max_i |λ_i|` of a general square matrix: exactly on the host (f64
//! eigenvalues by faer), or estimated on the device by power iteration for large `N`:
//! `x_{k+1} = A x_k / ‖A x_k‖` with `ρ ≈ exp(mean_k ln‖A x_k‖)` over the second half of the
//! iterations (Gelfand's formula `ρ = lim ‖Aᵏ‖^{1/k}`; the mean of logs also converges when the
//! dominant eigenvalues are a complex pair, where the plain Rayleigh quotient oscillates).

use super::host::eigenvalues_f64;
use crate::error::{Error, Result};
use crate::ops::random::Rng;
use crate::tensor::Tensor;

fn check(op: &'static str, a: &Tensor) -> Result<usize> {
    a.expect_f32(op)?;
    if a.rank() != 2 || a.shape()[0] != a.shape()[1] {
        return Err(Error::shape(
            op,
            format!("{:?}", a.shape()),
            "a square matrix [n, n]",
        ));
    }
    Ok(a.shape()[0])
}

impl Tensor {
    /// Exact spectral radius (host f64 eigenvalues).
    pub fn spectral_radius(&self) -> Result<f64> {
        let op = "Tensor::spectral_radius";
        let n = check(op, self)?;
        self.expect_finite(op)?;
        if n == 0 {
            return Ok(0.0);
        }
        let data: Vec<f64> = self.to_vec::<f32>()?.iter().map(|&x| x as f64).collect();
        let values = eigenvalues_f64(&data, n)?;
        Ok(values
            .iter()
            .map(|(re, im)| re.hypot(*im))
            .fold(0.0, f64::max))
    }

    /// Power-iteration estimate of the spectral radius on the device (`iterations ≥ 2`), one host
    /// read-back at the end.
    pub fn spectral_radius_power(&self, iterations: usize, rng: &mut Rng) -> Result<f64> {
        let op = "Tensor::spectral_radius_power";
        let n = check(op, self)?;
        if iterations < 2 {
            return Err(Error::value(
                op,
                format!("{iterations} iterations"),
                "at least 2",
            ));
        }
        if n == 0 {
            return Ok(0.0);
        }
        let mut x = Tensor::rand_normal(&[n, 1], 0.0, 1.0, rng, self.device())?;
        x = x.div(&x.norm_all(2.0)?)?;
        let mut logs = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let y = self.matmul(&x)?;
            let norm = y.norm_all(2.0)?;
            logs.push(norm.log()?.reshape(&[1])?);
            x = y.div(&norm.maximum_scalar(f32::MIN_POSITIVE)?)?;
        }
        let tail: Vec<&Tensor> = logs[iterations / 2..].iter().collect();
        let mean = Tensor::cat(&tail, 0)?.mean_all()?.item()? as f64;
        if mean.is_nan() {
            return Err(Error::Numerical {
                op,
                message: "the iteration produced NaN (is the matrix finite?)".into(),
            });
        }
        Ok(mean.exp())
    }
}
