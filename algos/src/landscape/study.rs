//! The deep linear experiment: gradient descent on a deep linear network (see [`super::deep_linear`])
//! from a small random start (entries `N(0, ε²/d)`) or from the balanced minimum itself. Gradient
//! flow conserves the imbalances `M_l M_lᵀ − M_{l+1}ᵀ M_{l+1}` (Arora, Cohen & Hazan 2018), which are
//! `O(ε²)` at a small start, so the minimum reached is balanced up to `O(ε²)` and its spectrum is
//! the closed form up to that. (Every factor `ε I` would keep the product's determinant positive
//! and stall at a saddle for a target with a negative determinant: Bartlett, Helmbold & Long
//! 2018.) Every `log_every` steps: the loss, sharpness against `2/η`, the
//! gradient-Lipschitz estimate and the effective learning rate; at the
//! end, the Hessian spectrum at the point reached against the closed form: the dense Hessian
//! (f64 eigh), the top-k Lanczos values, the SLQ density and trace, slices along the top two
//! eigenvectors against the quadratic model `L + ½ λ α²`, and the figures.
//!
//! `cargo run --release --example landscape -- --config examples/configs/landscape_deep_linear.toml`.

use super::deep_linear::{closed_form_spectrum, target_singular_values, whitened_data, DeepLinear};
use super::figures::{plot_density, plot_slice_2d, plot_slices};
use super::hessian::{
    model_loss, spectral_density, top_eigen, DensityOptions, HessianOperator, TopEigenOptions,
    MAX_DENSE,
};
use super::slices::{
    parameter_values, set_parameters, slice_1d, slice_2d, symmetric_grid, LossEval, Slice1d,
};
use super::trajectory::{sharpness, smoothness, snapshot};
use crate::checks::positive;
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir,
    RunOptions, Summary,
};
use dynlab_models::Record;
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use dynlab_train::{Batch, Mse};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The experiment's config (TOML).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeepLinearConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Seed of the target (Gaussian entries) and of the Lanczos probes.
    #[serde(default)]
    pub seed: u64,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// `d`: inputs, outputs and every hidden width.
    pub width: usize,
    /// `L`: factors.
    pub depth: usize,
    /// `small` (entries `N(0, init_scale²/d)`) or `minimum` (the balanced minimum itself).
    #[serde(default = "default_start")]
    pub start: String,
    /// `ε` of the small start.
    #[serde(default = "default_init_scale")]
    pub init_scale: f32,
    /// Gradient descent's step size `η`.
    pub lr: f32,
    /// Gradient descent steps.
    pub steps: u64,
    /// Steps per history row.
    pub log_every: u64,
    /// Lanczos steps of the sharpness in each row.
    #[serde(default = "default_sharpness_steps")]
    pub sharpness_steps: usize,
    /// Top eigenvalues by Lanczos at the end.
    pub top_k: usize,
    /// Lanczos steps of that run.
    pub lanczos_steps: usize,
    /// SLQ probes.
    pub density_probes: usize,
    /// Lanczos steps per SLQ probe.
    pub density_steps: usize,
    /// Points per axis of the slices.
    pub grid: usize,
    /// The slices reach `±span` along the unit eigenvectors.
    pub span: f64,
}

fn default_runs_dir() -> String {
    "runs".to_string()
}
fn default_start() -> String {
    "small".to_string()
}
fn default_init_scale() -> f32 {
    0.1
}
fn default_sharpness_steps() -> usize {
    8
}

impl DeepLinearConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        positive("width", self.width)?;
        positive("depth", self.depth)?;
        positive("log_every", self.log_every as usize)?;
        positive("top_k", self.top_k)?;
        positive("density_probes", self.density_probes)?;
        positive("density_steps", self.density_steps)?;
        positive("sharpness_steps", self.sharpness_steps)?;
        if !["small", "minimum"].contains(&self.start.as_str()) {
            return Err(Error::config(
                "start",
                format!("`{}` is not small or minimum", self.start),
            ));
        }
        if self.lanczos_steps < self.top_k {
            return Err(Error::config(
                "lanczos_steps",
                format!("{} < top_k", self.lanczos_steps),
            ));
        }
        if !(self.init_scale.is_finite() && self.init_scale > 0.0) {
            return Err(Error::config(
                "init_scale",
                format!("{} is not positive", self.init_scale),
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(Error::config("lr", format!("{} is not positive", self.lr)));
        }
        if self.grid < 2 {
            return Err(Error::config(
                "grid",
                format!("{} points (at least 2)", self.grid),
            ));
        }
        if !(self.span.is_finite() && self.span > 0.0) {
            return Err(Error::config(
                "span",
                format!("{} is not positive", self.span),
            ));
        }
        Ok(())
    }
}

history_row! {
    /// One row every `log_every` steps.
    pub struct DeepLinearRow {
        /// Gradient descent steps taken.
        pub step: u64,
        /// The loss before the row's last step.
        pub loss: f64,
        /// `λ_max` of the Hessian after the row's last step.
        pub sharpness: f64,
        /// `2/η`.
        pub two_over_lr: f64,
        /// `‖Δg‖/‖Δθ‖` over the row's last step.
        pub gradient_lipschitz: f64,
        /// `‖Δθ‖/‖g‖` over the row's last step.
        pub effective_lr: f64,
    }
}

/// What the run found at its end.
#[derive(Clone, Debug)]
pub struct DeepLinearOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// The closed-form spectrum (descending).
    pub closed_form: Vec<f64>,
    /// The dense Hessian's spectrum at the point reached (descending).
    pub dense: Vec<f64>,
    /// The top-k Lanczos values.
    pub lanczos: Vec<f64>,
    /// SLQ's trace estimate and its standard error.
    pub slq_trace: (f64, f64),
    /// The final loss.
    pub final_loss: f64,
}

struct Study {
    config: DeepLinearConfig,
    device: Device,
    model: DeepLinear,
    batch: Batch,
    target: Vec<f64>,
    steps: u64,
    outcome: Option<DeepLinearOutcome>,
}

impl Study {
    fn new(config: &DeepLinearConfig) -> Result<Study> {
        config.check()?;
        let device = Device::default()?;
        let (d, depth) = (config.width, config.depth);
        let mut rng = Rng::new(config.seed);
        let target: Vec<f64> = Tensor::rand_normal(&[d * d], 0.0, 1.0, &mut rng, &device)?
            .to_vec::<f32>()?
            .into_iter()
            .map(f64::from)
            .collect();
        let batch = whitened_data(&target, d, &device)?;
        let model = match config.start.as_str() {
            "minimum" => DeepLinear::balanced(&target, d, depth, &device)?,
            _ => {
                let mut m = DeepLinear::balanced(&identity(d), d, depth, &device)?;
                let std = config.init_scale / (d as f32).sqrt();
                for layer in &mut m.layers {
                    layer
                        .weight
                        .set(Tensor::rand_normal(&[d, d], 0.0, std, &mut rng, &device)?)?;
                }
                m
            }
        };
        Ok(Study {
            config: config.clone(),
            device,
            model,
            batch,
            target,
            steps: 0,
            outcome: None,
        })
    }

    fn gd_step(&mut self) -> Result<f64> {
        let s = snapshot(&self.model, &self.batch, &Mse)?;
        let loss = model_loss(&self.model, &self.batch, &Mse)?.value().item()? as f64;
        let next = s
            .params
            .iter()
            .zip(&s.gradient)
            .map(|(p, g)| p.sub(&g.mul_scalar(self.config.lr)?))
            .collect::<Result<Vec<_>>>()?;
        set_parameters(&mut self.model, &next)?;
        self.steps += 1;
        Ok(loss)
    }
}

fn identity(d: usize) -> Vec<f64> {
    (0..d * d)
        .map(|i| if i % (d + 1) == 0 { 1.0 } else { 0.0 })
        .collect()
}

impl Experiment for Study {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.config.steps.div_ceil(self.config.log_every).max(1)
    }

    fn unit_name(&self) -> &str {
        "rows"
    }

    fn checkpoint_every(&self) -> u64 {
        10
    }

    fn run_unit(&mut self, _unit: u64, history: &mut History) -> Result<String> {
        let todo = self
            .config
            .log_every
            .min(self.config.steps - self.steps.min(self.config.steps));
        for _ in 1..todo {
            self.gd_step()?;
        }
        let before = snapshot(&self.model, &self.batch, &Mse)?;
        let loss = match todo {
            0 => model_loss(&self.model, &self.batch, &Mse)?.value().item()? as f64,
            _ => self.gd_step()?,
        };
        let after = snapshot(&self.model, &self.batch, &Mse)?;
        let s = smoothness(&before, &after)?;
        let c = &self.config;
        let top = sharpness(&self.model, &self.batch, &Mse, c.sharpness_steps, c.seed)?;
        let row = DeepLinearRow {
            step: self.steps,
            loss,
            sharpness: top,
            two_over_lr: 2.0 / c.lr as f64,
            gradient_lipschitz: s.gradient_lipschitz,
            effective_lr: s.effective_lr,
        };
        history.push(&row)?;
        Ok(format!(
            "step {} loss {loss:.3e} λ_max {top:.4}",
            self.steps
        ))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("model", Record::of_module(&self.model))
            .with_value("steps", self.steps))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        record.part("model").restore_module(&mut self.model)?;
        self.steps = record.value("steps")?;
        Ok(())
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let c = self.config.clone();
        let title = format!("deep linear, d = {}, L = {}", c.width, c.depth);
        plot_history(run.file("training.png"), history, &training_figure(&title))?;
        let s = target_singular_values(&self.target, c.width)?;
        let closed_form = closed_form_spectrum(&s, c.depth)?;
        let op = HessianOperator::of_model(&self.model, &self.batch, &Mse)?;
        let dense = match op.dim() <= MAX_DENSE {
            true => descending(&op.dense()?, op.dim())?,
            false => Vec::new(),
        };
        let options = TopEigenOptions {
            k: c.top_k,
            steps: c.lanczos_steps,
            vectors: true,
            seed: c.seed,
        };
        let top = top_eigen(&op, options)?;
        let density = spectral_density(
            &op,
            DensityOptions {
                probes: c.density_probes,
                steps: c.density_steps,
                seed: c.seed ^ 0xD,
                ..DensityOptions::default()
            },
        )?;
        drop(op);
        let markers = distinct(&closed_form)
            .into_iter()
            .take(6)
            .map(|v| (format!("{v:.3}"), v))
            .collect();
        let caption = format!(
            "d = {}, L = {}: SLQ density, closed form marked",
            c.width, c.depth
        );
        plot_density(run.file("spectrum.png"), &caption, &density, markers)?;
        let vectors = top.vectors.clone().unwrap_or_default();
        let final_loss = model_loss(&self.model, &self.batch, &Mse)?.value().item()? as f64;
        if vectors.len() >= 2 {
            self.eigen_slices(run, &title, &vectors, &top.values, final_loss)?;
        }
        let trace = density.trace();
        let max_error = dense
            .iter()
            .zip(&closed_form)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        summary.set(
            "closed_form_top",
            closed_form[..c.top_k.min(closed_form.len())].to_vec(),
        );
        summary.set("dense_top", dense[..c.top_k.min(dense.len())].to_vec());
        summary.set("lanczos_top", top.values.clone());
        if !dense.is_empty() {
            summary.set("dense_max_abs_error", max_error);
        }
        summary.set("closed_form_trace", closed_form.iter().sum::<f64>());
        summary.set("slq_trace", trace.mean);
        summary.set("slq_trace_std_error", trace.std_error);
        summary.set("final_loss", final_loss);
        self.outcome = Some(DeepLinearOutcome {
            run_dir: run.path().to_path_buf(),
            closed_form,
            dense,
            lanczos: top.values,
            slq_trace: (trace.mean, trace.std_error),
            final_loss,
        });
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        vec![("target_and_probes", self.config.seed)]
    }

    fn steps(&self) -> u64 {
        self.steps
    }
}

impl Study {
    /// 1-D slices along the top two eigenvectors against `L + ½ λ α²`, and the 2-D slice.
    fn eigen_slices(
        &mut self,
        run: &RunDir,
        title: &str,
        vectors: &[Vec<Tensor>],
        values: &[f64],
        loss: f64,
    ) -> Result<()> {
        let c = &self.config;
        let alphas = symmetric_grid(c.span, c.grid)?;
        let batch = self.batch.clone();
        let eval = LossEval {
            batch: &batch,
            objective: &Mse,
            chunk: c.width,
        };
        let center = parameter_values(&self.model);
        let first = slice_1d(&mut self.model, &eval, &vectors[0], &alphas)?;
        let second = slice_1d(&mut self.model, &eval, &vectors[1], &alphas)?;
        let quadratic = |lambda: f64| Slice1d {
            alphas: alphas.clone(),
            losses: alphas.iter().map(|a| loss + 0.5 * lambda * a * a).collect(),
        };
        let (q1, q2) = (quadratic(values[0]), quadratic(values[1]));
        plot_slices(
            run.file("eigen_slices.png"),
            title,
            "alpha",
            &[
                ("along u1", &first),
                ("L + λ1 α²/2", &q1),
                ("along u2", &second),
                ("L + λ2 α²/2", &q2),
            ],
        )?;
        let plane = slice_2d(
            &mut self.model,
            &eval,
            [&vectors[0], &vectors[1]],
            &alphas,
            &alphas,
        )?;
        plot_slice_2d(run.path(), "eigen_plane", title, &plane)?;
        set_parameters(&mut self.model, &center)
    }
}

fn descending(h: &[f64], n: usize) -> Result<Vec<f64>> {
    let (mut values, _) = dynlab_runtime::linalg::host::eigh_f64(h, n)?;
    values.reverse();
    Ok(values)
}

/// The distinct non-zero values of a descending list (within 1e-9 relative).
fn distinct(values: &[f64]) -> Vec<f64> {
    let top = values.first().copied().unwrap_or(0.0).abs().max(1e-300);
    let mut out: Vec<f64> = Vec::new();
    for &v in values {
        let new = out.last().is_none_or(|&l| (l - v).abs() > 1e-9 * top);
        if v.abs() > 1e-9 * top && new {
            out.push(v);
        }
    }
    out
}

fn training_figure(title: &str) -> Figure {
    Figure {
        title: title.to_string(),
        x: "step".to_string(),
        log_x: false,
        panels: vec![
            Panel::new("loss", "loss").line("loss", "L").log_y(),
            Panel::new("sharpness vs 2/η", "λ_max")
                .line("sharpness", "λ_max")
                .line("two_over_lr", "2/η")
                .log_y(),
            Panel::new("gradient-Lipschitz estimate", "‖Δg‖/‖Δθ‖").line("gradient_lipschitz", "β̂"),
        ],
        markers: Vec::new(),
    }
}

/// Runs (or resumes) the experiment; `resolved_toml` is saved as the run's `config.toml`.
pub fn run_deep_linear(
    config: &DeepLinearConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<DeepLinearOutcome> {
    let mut study = Study::new(config)?;
    run_experiment(
        &mut study,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<DeepLinearRow>(),
        options,
    )?;
    study.outcome.ok_or_else(|| {
        Error::value(
            "run_deep_linear",
            "a run that did not finish",
            "a finished run",
        )
    })
}
