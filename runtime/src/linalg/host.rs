//! f64 host solvers (the `faer` crate): the fallback of the device solvers and the reference the
//! tests compare them with. Matrices are row-major slices.

use crate::error::{Error, Result};
use faer::{Mat, Side};

fn mat(a: &[f64], rows: usize, cols: usize) -> Mat<f64> {
    Mat::from_fn(rows, cols, |i, j| a[i * cols + j])
}

fn row_major(m: faer::MatRef<'_, f64>) -> Vec<f64> {
    (0..m.nrows())
        .flat_map(|i| (0..m.ncols()).map(move |j| m[(i, j)]))
        .collect()
}

/// Eigenvalues (ascending) and eigenvectors (columns of a row-major `n × n`) of a symmetric matrix
/// (its lower triangle is read).
pub fn eigh_f64(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let e = mat(a, n, n)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numerical {
            op: "eigh (host)",
            message: format!("faer did not converge: {e:?}"),
        })?;
    let values = (0..n).map(|i| e.S().column_vector()[i]).collect();
    Ok((values, row_major(e.U())))
}

/// Thin SVD of a row-major `m × n` matrix: `U` (`m × k`), singular values (descending, `k`), `V`
/// (`n × k`), `k = min(m, n)`.
pub fn svd_f64(a: &[f64], m: usize, n: usize) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let s = mat(a, m, n).thin_svd().map_err(|e| Error::Numerical {
        op: "svd (host)",
        message: format!("faer did not converge: {e:?}"),
    })?;
    let k = m.min(n);
    let values = (0..k).map(|i| s.S().column_vector()[i]).collect();
    Ok((row_major(s.U()), values, row_major(s.V())))
}

/// Singular values (descending) of a row-major `m × n` matrix.
pub fn singular_values_f64(a: &[f64], m: usize, n: usize) -> Result<Vec<f64>> {
    mat(a, m, n)
        .singular_values()
        .map_err(|e| Error::Numerical {
            op: "singular_values (host)",
            message: format!("faer did not converge: {e:?}"),
        })
}

/// Eigenvalues `(re, im)` of a general square matrix.
pub fn eigenvalues_f64(a: &[f64], n: usize) -> Result<Vec<(f64, f64)>> {
    let values = mat(a, n, n).eigenvalues().map_err(|e| Error::Numerical {
        op: "eigenvalues (host)",
        message: format!("faer did not converge: {e:?}"),
    })?;
    Ok(values.iter().map(|z| (z.re, z.im)).collect())
}
