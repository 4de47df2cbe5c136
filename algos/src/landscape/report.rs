//! One landscape measurement at the current parameters, as a runner makes it every few tasks:
//! the top Hessian eigenvalues (Lanczos), optionally the spectral density (SLQ), a 2-D slice along
//! two filter-normalised random directions, and 1-D slices along the top eigenvector and a random
//! direction, optionally the rank of a representation's input Jacobian, with their figures and the
//! time each part took. Configured by `[landscape]`.

use super::figures::{plot_density, plot_slice_2d, plot_slices};
use super::hessian::{
    spectral_density, top_eigen, DensityOptions, HessianOperator, TopEigenOptions,
};
use super::jacobian::{input_jacobian, jacobian_ranks, JacobianCols, JacobianPlan, JacobianRows};
use super::slices::{
    random_direction, slice_1d, slice_2d, symmetric_grid, BiasDirection, LossEval,
};
use crate::checks::positive;
use dynlab_autodiff::Var;
use dynlab_models::{Ctx, Module};
use dynlab_runtime::{Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Objective};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// `[landscape]`: what a measurement computes and how often a runner makes one.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LandscapeConfig {
    /// Measure at the start of every this many tasks and at the end of the run (0: never).
    #[serde(default)]
    pub every_tasks: usize,
    /// Rows the loss is taken over (the first rows of the held-out split as the current task
    /// sees them).
    #[serde(default = "default_rows")]
    pub rows: usize,
    /// Top eigenvalues recorded.
    #[serde(default = "default_top_k")]
    pub top_k: usize,
    /// Lanczos steps of the top-eigenvalue run.
    #[serde(default = "default_lanczos_steps")]
    pub lanczos_steps: usize,
    /// Probes of the spectral density (0: no density).
    #[serde(default)]
    pub density_probes: usize,
    /// Lanczos steps per density probe.
    #[serde(default = "default_density_steps")]
    pub density_steps: usize,
    /// Grid points per axis of the 2-D slice and of the 1-D slices (0: no slices).
    #[serde(default = "default_grid")]
    pub grid: usize,
    /// The slices reach `±span` along each direction: the filter-normalised random ones, and the
    /// top eigenvector scaled to the first random direction's norm.
    #[serde(default = "default_span")]
    pub span: f64,
    /// Rows per forward pass when evaluating the slices.
    #[serde(default = "default_chunk")]
    pub chunk: usize,
    /// Biases and normalisation parameters in random directions: `zero` (Li et al.'s figures)
    /// or `weight`.
    #[serde(default = "default_bias")]
    pub bias_direction: String,
    /// Also at every measurement row: the gradient-Lipschitz estimate and effective learning rate
    /// over the interval's last step, and the sharpness against `2/η`.
    #[serde(default)]
    pub trajectory: bool,
    /// Lanczos steps of the sharpness.
    #[serde(default = "default_sharpness_steps")]
    pub sharpness_steps: usize,
    /// Examples whose input Jacobian of the tap `jacobian_tap` is taken, and its rank measured
    /// (0: none). Rows are all features up to 256 (else a 256-row Gaussian projection), columns
    /// all input coordinates up to 1024 (else a 1024-column projection).
    #[serde(default)]
    pub jacobian_examples: usize,
    /// The representation whose Jacobian is taken.
    #[serde(default = "default_jacobian_tap")]
    pub jacobian_tap: String,
}

fn default_jacobian_tap() -> String {
    "features".to_string()
}

fn default_rows() -> usize {
    256
}
fn default_top_k() -> usize {
    5
}
fn default_lanczos_steps() -> usize {
    20
}
fn default_density_steps() -> usize {
    30
}
fn default_grid() -> usize {
    11
}
fn default_span() -> f64 {
    1.0
}
fn default_chunk() -> usize {
    256
}
fn default_bias() -> String {
    "zero".to_string()
}
fn default_sharpness_steps() -> usize {
    10
}

impl Default for LandscapeConfig {
    fn default() -> Self {
        LandscapeConfig {
            every_tasks: 0,
            rows: default_rows(),
            top_k: default_top_k(),
            lanczos_steps: default_lanczos_steps(),
            density_probes: 0,
            density_steps: default_density_steps(),
            grid: default_grid(),
            span: default_span(),
            chunk: default_chunk(),
            bias_direction: default_bias(),
            trajectory: false,
            sharpness_steps: default_sharpness_steps(),
            jacobian_examples: 0,
            jacobian_tap: default_jacobian_tap(),
        }
    }
}

impl LandscapeConfig {
    /// Checks every value; errors name the key under `prefix` (`landscape`).
    pub fn check(&self, prefix: &str) -> Result<()> {
        let key = |k: &str| format!("{prefix}.{k}");
        positive(&key("rows"), self.rows)?;
        positive(&key("top_k"), self.top_k)?;
        positive(&key("chunk"), self.chunk)?;
        positive(&key("sharpness_steps"), self.sharpness_steps)?;
        if self.lanczos_steps < self.top_k {
            return Err(Error::config(
                key("lanczos_steps"),
                format!("{} steps for top_k = {}", self.lanczos_steps, self.top_k),
            ));
        }
        if self.density_probes > 0 {
            positive(&key("density_steps"), self.density_steps)?;
        }
        if self.grid == 1 {
            return Err(Error::config(
                key("grid"),
                "1 point (0 for no slices, or ≥ 2)",
            ));
        }
        if !(self.span.is_finite() && self.span > 0.0) {
            return Err(Error::config(
                key("span"),
                format!("{} is not positive", self.span),
            ));
        }
        self.bias(&key("bias_direction"))?;
        Ok(())
    }

    fn bias(&self, key: &str) -> Result<BiasDirection> {
        match self.bias_direction.as_str() {
            "zero" => Ok(BiasDirection::Zero),
            "weight" => Ok(BiasDirection::Weight),
            other => Err(Error::config(
                key,
                format!("`{other}` is not zero or weight"),
            )),
        }
    }
}

/// What one measurement found.
#[derive(Clone, Debug)]
pub struct LandscapeReport {
    /// The loss at the point.
    pub loss: f64,
    /// Top eigenvalues, descending.
    pub top_eigenvalues: Vec<f64>,
    /// Their residual bounds.
    pub residuals: Vec<f64>,
    /// `tr H` from the density's first moment (with its standard error), when a density was asked.
    pub trace: Option<(f64, f64)>,
    /// Parameters `n`.
    pub dim: usize,
    /// Seconds per Hessian-vector product (the mean of 3 timed products, each read back).
    pub hvp_seconds: f64,
    /// Seconds of the top-eigenvalue Lanczos run (host work and transfers included).
    pub lanczos_seconds: f64,
    /// Seconds of the slices (0 without).
    pub slice_seconds: f64,
    /// Mean effective and numerical rank of the input Jacobians, when asked for.
    pub jacobian_rank: Option<(f64, f64)>,
}

/// Where a measurement's figures go: `<dir>/<stem>_<figure>.png`, captioned `title`.
#[derive(Clone, Copy, Debug)]
pub struct FigureTarget<'a> {
    /// The folder.
    pub dir: &'a Path,
    /// The file-name prefix.
    pub stem: &'a str,
    /// The caption.
    pub title: &'a str,
}

impl FigureTarget<'_> {
    fn file(&self, figure: &str) -> std::path::PathBuf {
        self.dir.join(format!("{}_{figure}.png", self.stem))
    }
}

/// Measures the landscape of `model` on `batch` and writes `<stem>_density.png`,
/// `<stem>_slices.png`, `<stem>_contour.png` and `<stem>_surface.png` (as configured).
pub fn measure_landscape(
    model: &mut dyn Module,
    batch: &Batch,
    objective: &dyn Objective,
    config: &LandscapeConfig,
    seed: u64,
    figures: FigureTarget,
) -> Result<LandscapeReport> {
    config.check("landscape")?;
    let op = HessianOperator::of_model(model, batch, objective)?;
    let hvp_seconds = time_hvp(&op, seed)?;
    let started = Instant::now();
    let top = top_eigen(
        &op,
        TopEigenOptions {
            k: config.top_k,
            steps: config.lanczos_steps,
            vectors: config.grid > 0,
            seed,
        },
    )?;
    let lanczos_seconds = started.elapsed().as_secs_f64();
    let trace = match config.density_probes {
        0 => None,
        probes => {
            let density = spectral_density(
                &op,
                DensityOptions {
                    probes,
                    steps: config.density_steps,
                    seed: seed ^ 0xD,
                    ..DensityOptions::default()
                },
            )?;
            plot_density(figures.file("density"), figures.title, &density, Vec::new())?;
            let t = density.trace();
            Some((t.mean, t.std_error))
        }
    };
    drop(op);
    let eval = LossEval {
        batch,
        objective,
        chunk: config.chunk,
    };
    let loss = eval.loss(model)?.item()? as f64;
    let started = Instant::now();
    if let Some(vectors) = &top.vectors {
        write_slices(model, &eval, config, seed, &vectors[0], figures)?;
    }
    let slice_seconds = match config.grid {
        0 => 0.0,
        _ => started.elapsed().as_secs_f64(),
    };
    let jacobian_rank = match config.jacobian_examples {
        0 => None,
        n => Some(jacobian_rank(model, batch, n, &config.jacobian_tap, seed)?),
    };
    Ok(LandscapeReport {
        jacobian_rank,
        loss,
        top_eigenvalues: top.values,
        residuals: top.residuals,
        trace,
        dim: top_dim(model),
        hvp_seconds,
        lanczos_seconds,
        slice_seconds,
    })
}

/// Mean effective and numerical rank of `tap`'s input Jacobian over the first `n` rows.
fn jacobian_rank(
    model: &dyn Module,
    batch: &Batch,
    n: usize,
    tap: &str,
    seed: u64,
) -> Result<(f64, f64)> {
    let rows = n.min(batch.inputs.shape()[0]);
    let x = batch.inputs.narrow(0, 0, rows)?;
    let taps = vec![tap.to_string()];
    let features = |input: &Var| -> Result<Var> {
        let mut ctx = Ctx::eval().with_taps(&taps);
        model.forward(input, &mut ctx)?;
        ctx.take_taps().remove(tap).ok_or_else(|| {
            Error::value(
                "landscape::jacobian_rank",
                format!("no tap `{tap}`"),
                "a tap the model offers",
            )
        })
    };
    let width = features(&Var::constant(x.narrow(0, 0, 1)?))?
        .value()
        .numel();
    let inputs: usize = x.shape()[1..].iter().product();
    let plan = JacobianPlan {
        rows: match width <= MAX_JACOBIAN_ROWS {
            true => JacobianRows::All,
            false => JacobianRows::Projection {
                k: MAX_JACOBIAN_ROWS,
                seed,
            },
        },
        cols: match inputs <= MAX_JACOBIAN_COLS {
            true => JacobianCols::All,
            false => JacobianCols::Projection {
                k: MAX_JACOBIAN_COLS,
                seed: seed ^ 1,
            },
        },
        rows_per_pass: 16,
    };
    let ranks = jacobian_ranks(&input_jacobian(features, &x, &plan)?)?;
    let count = ranks.len() as f64;
    Ok((
        ranks.iter().map(|r| r.effective_rank).sum::<f64>() / count,
        ranks.iter().map(|r| r.numerical_rank as f64).sum::<f64>() / count,
    ))
}

/// The largest input Jacobian taken whole; larger ones are projected.
const MAX_JACOBIAN_ROWS: usize = 256;
const MAX_JACOBIAN_COLS: usize = 1024;

fn top_dim(model: &dyn Module) -> usize {
    model.params().iter().map(|(_, p)| p.value().numel()).sum()
}

/// The mean seconds of 3 Hessian-vector products, each read back (after one untimed warm-up).
fn time_hvp(op: &HessianOperator, seed: u64) -> Result<f64> {
    let mut rng = Rng::new(seed ^ 0x7);
    let v = op
        .shapes()
        .iter()
        .map(|s| Tensor::rand_normal(s, 0.0, 1.0, &mut rng, op.device()))
        .collect::<Result<Vec<_>>>()?;
    let sync = |hv: Vec<Tensor>| -> Result<()> {
        hv.last().map(|t| t.sum_all()?.item()).transpose()?;
        Ok(())
    };
    sync(op.apply(&v)?)?;
    let started = Instant::now();
    for _ in 0..3 {
        sync(op.apply(&v)?)?;
    }
    Ok(started.elapsed().as_secs_f64() / 3.0)
}

/// The 2-D slice along two random directions and the 1-D slices along the top eigenvector
/// (scaled to the filter-normalised direction's norm) and the first random direction.
fn write_slices(
    model: &mut dyn Module,
    eval: &LossEval,
    config: &LandscapeConfig,
    seed: u64,
    top_vector: &[Tensor],
    figures: FigureTarget,
) -> Result<()> {
    let mut rng = Rng::new(seed ^ 0x5);
    let bias = config.bias("landscape.bias_direction")?;
    let d1 = random_direction(model, &mut rng, bias)?;
    let d2 = random_direction(model, &mut rng, bias)?;
    let coefficients = symmetric_grid(config.span, config.grid)?;
    let plane = slice_2d(model, eval, [&d1, &d2], &coefficients, &coefficients)?;
    plot_slice_2d(figures.dir, figures.stem, figures.title, &plane)?;
    let scale = norm(&d1)? / norm(top_vector)?.max(1e-30);
    let eigen: Vec<Tensor> = top_vector
        .iter()
        .map(|t| t.mul_scalar(scale as f32))
        .collect::<Result<_>>()?;
    let along_eigen = slice_1d(model, eval, &eigen, &coefficients)?;
    let along_random = slice_1d(model, eval, &d1, &coefficients)?;
    plot_slices(
        figures.file("slices"),
        figures.title,
        "alpha",
        &[
            ("top eigenvector", &along_eigen),
            ("random (filter-normalised)", &along_random),
        ],
    )
}

fn norm(ts: &[Tensor]) -> Result<f64> {
    let mut sum = 0.0f64;
    for t in ts {
        sum += t.square()?.sum_all()?.item()? as f64;
    }
    Ok(sum.sqrt())
}
