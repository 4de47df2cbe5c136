//! The Jacobian of a network's features with respect to its inputs, `J_n = ∂f(x_n)/∂x_n`
//! (`F × D` per example), and the rank of it: how many input directions the representation still
//! responds to (the landscape-vs-plasticity studies track it next to the feature rank).
//!
//! Rows come from vector-Jacobian products, batched: for row directions `u_1 … u_c` the input batch
//! is repeated `c` times, `f` runs once on the `c·N` rows, and one backward of
//! `Σ_r Σ_n u_r · f(x_n^{(r)})` gives `u_rᵀ J_n` for every example and direction at once (the
//! examples must not interact: evaluation mode, no batch statistics). Rows are the `F` unit
//! vectors (the full Jacobian) or `k` Gaussian directions (a random projection `Uᵀ J_n`, `U` with
//! entries `N(0, 1/k)`); columns are all `D` input coordinates, a subset of them, or a random
//! projection `J_n P` (`P` with entries `N(0, 1/k)`). The singular values of each `J_n` and the
//! rank measures of [`crate::metrics::RankMeasures`] follow.

use crate::metrics::{rank_measures, RankMeasures};
use dynlab_autodiff::{grad, GradOptions, Var};
use dynlab_runtime::linalg::EighOptions;
use dynlab_runtime::{Error, Result, Rng, Tensor};

/// Which rows of each example's Jacobian: output directions.
#[derive(Clone, Debug, PartialEq)]
pub enum JacobianRows {
    /// Every feature (`F` rows).
    All,
    /// `k` Gaussian combinations of the features, drawn from `seed`.
    Projection {
        /// Rows.
        k: usize,
        /// Seed of the directions.
        seed: u64,
    },
}

/// Which columns of each example's Jacobian: input coordinates.
#[derive(Clone, Debug, PartialEq)]
pub enum JacobianCols {
    /// Every input coordinate (`D` columns, the input flattened).
    All,
    /// These input coordinates (indices into the flattened input).
    Subset(Vec<usize>),
    /// `k` Gaussian combinations of the input coordinates, drawn from `seed`.
    Projection {
        /// Columns.
        k: usize,
        /// Seed of the directions.
        seed: u64,
    },
}

/// What to compute.
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianPlan {
    /// Rows.
    pub rows: JacobianRows,
    /// Columns.
    pub cols: JacobianCols,
    /// Row directions per backward pass (the batch is repeated this many times).
    pub rows_per_pass: usize,
}

impl Default for JacobianPlan {
    fn default() -> Self {
        JacobianPlan {
            rows: JacobianRows::All,
            cols: JacobianCols::All,
            rows_per_pass: 16,
        }
    }
}

/// `J_n` for every example of `x` (`[N, …]`): `[N, rows, cols]` as `plan` chooses, for features
/// `f(x)` of shape `[N, …]` (flattened to `F` per example).
pub fn input_jacobian(
    f: impl Fn(&Var) -> Result<Var>,
    x: &Tensor,
    plan: &JacobianPlan,
) -> Result<Tensor> {
    let op = "landscape::input_jacobian";
    let n = x.shape().first().copied().unwrap_or(0);
    if x.rank() < 2 || n == 0 || plan.rows_per_pass == 0 {
        return Err(Error::shape(
            op,
            format!(
                "inputs {:?}, {} rows per pass",
                x.shape(),
                plan.rows_per_pass
            ),
            "inputs [N ≥ 1, …] and at least one row per pass",
        ));
    }
    let d: usize = x.shape()[1..].iter().product();
    let features = f(&Var::constant(x.clone()))?.value().numel() / n;
    let directions = row_directions(&plan.rows, features, x)?;
    let mut blocks = Vec::new();
    let total = directions.shape()[0];
    for start in (0..total).step_by(plan.rows_per_pass) {
        let c = plan.rows_per_pass.min(total - start);
        blocks.push(rows_block(&f, x, &directions.narrow(0, start, c)?, d)?);
    }
    let refs: Vec<&Tensor> = blocks.iter().collect();
    let rows = Tensor::cat(&refs, 1)?;
    select_columns(&rows, &plan.cols, d)
}

/// `[R, F]` row directions.
fn row_directions(rows: &JacobianRows, features: usize, x: &Tensor) -> Result<Tensor> {
    match rows {
        JacobianRows::All => Tensor::eye(features, x.device()),
        JacobianRows::Projection { k, seed } => {
            check_k("rows", *k)?;
            let std = 1.0 / (*k as f32).sqrt();
            Tensor::rand_normal(&[*k, features], 0.0, std, &mut Rng::new(*seed), x.device())
        }
    }
}

fn check_k(what: &str, k: usize) -> Result<()> {
    match k {
        0 => Err(Error::value(
            "landscape::input_jacobian",
            format!("a projection to 0 {what}"),
            "k ≥ 1",
        )),
        _ => Ok(()),
    }
}

/// `[N, c, D]`: `u_rᵀ J_n` for the `c` directions `u` (`[c, F]`), from one repeated batch.
fn rows_block(
    f: &impl Fn(&Var) -> Result<Var>,
    x: &Tensor,
    u: &Tensor,
    d: usize,
) -> Result<Tensor> {
    let n = x.shape()[0];
    let c = u.shape()[0];
    let mut repeated_shape = vec![c * n];
    repeated_shape.extend_from_slice(&x.shape()[1..]);
    let mut expanded = vec![c];
    expanded.extend_from_slice(x.shape());
    let xs = x
        .unsqueeze(0)?
        .expand(&expanded)?
        .contiguous()?
        .reshape(&to_isize(&repeated_shape))?;
    let input = Var::param(xs);
    let y = f(&input)?.reshape(&[c as isize, n as isize, -1])?;
    if y.shape()[2] != u.shape()[1] {
        return Err(Error::shape(
            "landscape::input_jacobian",
            format!("features {:?} on the repeated batch", y.shape()),
            format!("{} features per example", u.shape()[1]),
        ));
    }
    let weights = Var::constant(u.unsqueeze(1)?);
    let dot = y.mul(&weights)?.sum_all()?;
    let options = GradOptions {
        create_graph: false,
        retain_graph: false,
    };
    let g = grad(&dot, &[&input], options)?.remove(0);
    g.value()
        .reshape(&[c as isize, n as isize, d as isize])?
        .transpose(0, 1)?
        .contiguous()
}

fn to_isize(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|&s| s as isize).collect()
}

/// The columns `cols` asks for of `[N, R, D]` rows.
fn select_columns(rows: &Tensor, cols: &JacobianCols, d: usize) -> Result<Tensor> {
    match cols {
        JacobianCols::All => Ok(rows.clone()),
        JacobianCols::Subset(idx) => {
            if idx.is_empty() || idx.iter().any(|&i| i >= d) {
                return Err(Error::value(
                    "landscape::input_jacobian",
                    format!("input coordinates {idx:?}"),
                    format!("a non-empty subset of 0..{d}"),
                ));
            }
            let idx: Vec<i32> = idx.iter().map(|&i| i as i32).collect();
            let index = Tensor::from_vec(idx.clone(), &[idx.len()], rows.device())?;
            rows.index_select(2, &index)
        }
        JacobianCols::Projection { k, seed } => {
            check_k("columns", *k)?;
            let std = 1.0 / (*k as f32).sqrt();
            let p = Tensor::rand_normal(&[d, *k], 0.0, std, &mut Rng::new(*seed), rows.device())?;
            rows.matmul(&p)
        }
    }
}

/// The singular values and rank measures of each example's Jacobian (`[N, R, C]`).
pub fn jacobian_ranks(jacobian: &Tensor) -> Result<Vec<RankMeasures>> {
    if jacobian.rank() != 3 {
        return Err(Error::shape(
            "landscape::jacobian_ranks",
            format!("{:?}", jacobian.shape()),
            "[N, rows, cols]",
        ));
    }
    (0..jacobian.shape()[0])
        .map(|i| {
            let j = jacobian.narrow(0, i, 1)?.squeeze(0)?.contiguous()?;
            rank_measures(&j, false, EighOptions::default())
        })
        .collect()
}
