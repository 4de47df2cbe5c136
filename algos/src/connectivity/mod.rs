//! Recovering a neural circuit's connectivity from its activity (Allier, Saalfeld et al., the
//! NeuralGraph study; reference code `saalfeldlab/neural-gnn`).
//!
//! A network of `n` neurons of `K` types, coupled by a dense random matrix `W`, is simulated
//! ([`simulate`]); a graph network ([`model::SignalPropagation`])
//!
//! ```text
//! du_i/dt ≈ φ(u_i, a_i) + Σ_{j ≠ i} W_ij ψ(u_j)
//! ```
//!
//! is trained to predict the recorded rates `du/dt` from the frames `u`. With `g = 10` absorbed,
//! the learned `W` (corrected by the plateau of `ψ`) should equal the true one: connectivity
//! R² ≈ 1 at `n = 1000` in the published Fig. 2e. Training (`data_train_signal`): each iteration
//! draws `batch_size` = 8 random frames; the loss is the L2 norm `‖pred − y‖₂` (not squared, not
//! averaged) plus `coeff_w_l1 ‖W‖₁ + coeff_lin_phi_zero ‖φ([0, a])‖₂ + coeff_edge_diff
//! ‖ReLU(ψ(u) − ψ(u + xnorm/150))‖₂` with `xnorm = round(1.5·std(u))`; Adam with learning rates
//! `W` 1e-3, embeddings 7.5e-4, MLPs 5e-4. Evaluation ([`metrics`]): connectivity R² and slope,
//! embedding cluster accuracy, and at the end an open-loop rollout beside the true simulator
//! (rollout R², Pearson).
//!
//! Recurrent training (`training.time_step = T > 1`, after `recurrent_start_iteration`): start
//! frames `k` aligned to multiples of `T`, `T` Euler steps `û ← û + dt·pred(û) + σ·ε` on the
//! model's own predictions, loss `‖(û(k + T) − u(k + T)) / (dt·T)‖₂`; backpropagation runs through
//! the whole rollout. Neural-ODE training (`training.neural_ode`, [`ode`]) integrates the same
//! `T·dt` with a Runge–Kutta solver (`dopri5` adaptive by default) and the adjoint method.
//!
//! [`run`] does it all under the harness's `run_experiment`: the run folder gets the recording
//! (`data/chunk_<k>.safetensors`), `analysis.log` in the published `key: value` form
//! (`spectral_radius` of `W`, `svd_rank` — singular components of the activity for 99% of its
//! variance, from at most 10,000 evenly spaced frames — and `svd_rank_90`, then `connectivity_R2`, `test_R2`, `test_pearson`,
//! `cluster_accuracy`, `final_loss`, `training_time_min`), the history, `curves.png`,
//! `connectivity.png` (learned against true `W`) and `summary.toml`. On resume the recording is
//! simulated again from the seed (bitwise the same: the simulator's sums run in a fixed order).

pub mod config;
pub mod metrics;
pub mod model;
pub mod ode;
pub mod simulate;

pub use config::{
    ConnectivityConfig, ConnectivityPlan, ModelConfig, SimulationConfig, TrainingConfig,
};
pub use model::{MessagePassing, SignalPropagation};
pub use simulate::{ConnectivityKind, ConnectivitySpec, Recording, Simulator, FIG2_TYPES};

use dynlab_autodiff::{no_grad, Var};
use dynlab_data::HostRng;
use dynlab_harness::{
    history_row, plot_history, plot_scatter, run_experiment, Experiment, Figure, History, Panel,
    RunDir, RunOptions, Scatter, Summary,
};
use dynlab_models::{Ctx, Module, Record, Stateful};
use dynlab_optim::{Method, Optimizer, ParamGroup};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

history_row! {
    /// One row per log interval.
    pub struct ConnectivityRow {
        /// Training iterations done.
        pub iteration: u64,
        /// `‖pred − y‖₂` of the interval's last iteration.
        pub loss: f32,
        /// The regularisers of the last iteration.
        pub regularisation: f32,
        /// Connectivity R² (learned against true `W`, all entries).
        pub connectivity_r2: f32,
        /// Slope of the corrected learned `W` against the true one.
        pub slope: f32,
        /// Cluster accuracy of the embeddings against the true types.
        pub cluster_accuracy: f32,
        /// Iterations per second over the interval.
        pub iterations_per_second: f32,
    }
}

/// Seed mixes of the streams derived from the config's seed.
const CONNECTIVITY_MIX: u64 = 0xC0DE_C0DE_0000_0001;
const SIMULATION_MIX: u64 = 0xC0DE_C0DE_0000_0002;
const MODEL_MIX: u64 = 0xC0DE_C0DE_0000_0003;
const DRAWS_MIX: u64 = 0xC0DE_C0DE_0000_0004;
const NOISE_MIX: u64 = 0xC0DE_C0DE_0000_0005;

/// Frames of the closing open-loop rollout, and the spacing of its R² fits.
const ROLLOUT_FRAMES: usize = 600;
const ROLLOUT_STEP: usize = 15;

/// What a run measured.
#[derive(Clone, Debug)]
pub struct ConnectivityOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every log row (across resumes).
    pub history: History,
    /// The summary written.
    pub summary: Summary,
    /// Training iterations per second of this call.
    pub iterations_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
}

/// The simulated ground truth.
pub struct GroundTruth {
    /// The simulator (true `W`, neuron parameters, `dt`).
    pub simulator: Simulator,
    /// Type of each neuron.
    pub types: Vec<usize>,
    /// The recording.
    pub recording: Recording,
    /// `round(1.5 · std(u))` over all frames.
    pub xnorm: f32,
    /// Seconds the simulation took.
    pub seconds: f64,
}

/// Simulates the network `config` describes (on `device`, from the config's seed).
pub fn simulate_network(
    config: &ConnectivityConfig,
    plan: &ConnectivityPlan,
    device: &Device,
) -> Result<GroundTruth> {
    let s = &config.simulation;
    let started = Instant::now();
    let mut host = HostRng::new(config.seed ^ CONNECTIVITY_MIX);
    let w = simulate::connectivity(s.neurons, plan.connectivity, &mut host);
    let types = simulate::neuron_types(s.neurons, s.types.len());
    let simulator = Simulator {
        w,
        params: simulate::neuron_params(&types, &s.types),
        dt: s.dt,
    };
    let mut rng = Rng::new(config.seed ^ SIMULATION_MIX);
    let recording = simulator.record(
        s.frames,
        s.burn_in,
        s.chunk_frames,
        s.u0_scale,
        &mut rng,
        device,
    )?;
    let xnorm = (1.5 * frame_std(&recording)?).round() as f32;
    Ok(GroundTruth {
        simulator,
        types,
        recording,
        xnorm,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The standard deviation of every recorded value (chunk sums on the device, combined in f64).
fn frame_std(recording: &Recording) -> Result<f64> {
    let (mut s1, mut s2, mut count) = (0.0f64, 0.0f64, 0.0f64);
    for (u, _) in &recording.chunks {
        s1 += u.sum_all()?.item()? as f64;
        s2 += u.square()?.sum_all()?.item()? as f64;
        count += u.numel() as f64;
    }
    let mean = s1 / count;
    Ok((s2 / count - mean * mean).max(0.0).sqrt())
}

/// The evaluation of the current model.
#[derive(Clone, Copy, Debug)]
pub struct Evaluation {
    /// The corrected learned `W` against the true one.
    pub fit: metrics::LinearFit,
    /// The slope without the `ψ`-plateau correction.
    pub slope_raw: f64,
    /// The plateau of `ψ` on `[0.8·xnorm, xnorm]`.
    pub upper: f64,
    /// Embedding cluster accuracy.
    pub cluster_accuracy: f64,
    /// Clusters the embeddings form (1: not separated, and the accuracy is degenerate).
    pub clusters: usize,
}

/// Connectivity fit and cluster accuracy of `model` against `truth`.
pub fn evaluate(model: &SignalPropagation, truth: &GroundTruth) -> Result<Evaluation> {
    let learned = model.dense_w()?.to_vec::<f32>()?;
    let x = truth.xnorm as f64;
    let points = metrics::linspace(0.8 * x, x, 1000);
    let device = model.a.value().device().clone();
    let u = Var::constant(Tensor::from_vec(points, &[1, 1000], &device)?);
    let psi = no_grad(|| model.edge_function(&u, &mut Ctx::eval()))?;
    let upper = metrics::mean(&psi.value().to_vec::<f32>()?);
    let fit = metrics::connectivity_fit(&learned, &truth.simulator.w, upper);
    let raw = metrics::connectivity_fit(&learned, &truth.simulator.w, 10.0);
    let embeddings = model.a.value().to_vec::<f32>()?;
    Ok(Evaluation {
        fit,
        slope_raw: raw.slope,
        upper,
        cluster_accuracy: metrics::cluster_accuracy(&embeddings, 2, &truth.types),
        clusters: metrics::embedding_clusters(&embeddings, 2)
            .into_iter()
            .max()
            .map_or(0, |m| m + 1),
    })
}

/// The open-loop Euler rollout `u ← u + dt·pred(u)` of `frames` frames from `u0 [n]`: `[frames, n]`
/// on the host (row 0 is `u0`).
pub fn model_rollout(
    model: &SignalPropagation,
    u0: &Tensor,
    frames: usize,
    dt: f32,
) -> Result<Vec<f32>> {
    let n = u0.numel();
    let mut u = u0.reshape(&[1, n as isize])?;
    let mut rows = Vec::with_capacity(frames);
    no_grad(|| {
        for _ in 0..frames {
            rows.push(u.clone());
            let pred = model.forward(&Var::constant(u.clone()), &mut Ctx::eval())?;
            u = u.add(&pred.value().mul_scalar(dt)?)?;
        }
        Ok::<(), Error>(())
    })?;
    let stacked = Tensor::cat(&rows.iter().collect::<Vec<_>>(), 0)?;
    stacked.to_vec::<f32>()
}

/// The training step of `data_train_signal`: the model, its optimizer and the frame draws.
pub struct SignalTrainer {
    /// The graph network.
    pub model: SignalPropagation,
    /// Adam with the per-group learning rates.
    pub optimizer: Optimizer,
    /// The generator of the frames each iteration draws.
    pub draws: HostRng,
    /// The generator of the recurrent rollouts' noise.
    pub noise: Rng,
    training: TrainingConfig,
    ode: Option<ode::OdeOptions>,
    xnorm: f32,
    dt: f32,
}

/// The loss terms of one iteration.
pub struct StepLoss {
    /// `‖pred − y‖₂`.
    pub fit: Var,
    /// The regularisers (None when every coefficient is 0).
    pub regularisation: Option<Var>,
}

impl SignalTrainer {
    /// A fresh model and optimizer for `config` (seeded from the config's seed), for frames with
    /// `xnorm` (the edge-difference regulariser's shift is `xnorm / 150`).
    pub fn new(
        config: &ConnectivityConfig,
        plan: &ConnectivityPlan,
        xnorm: f32,
        device: &Device,
    ) -> Result<SignalTrainer> {
        let mut rng = Rng::new(config.seed ^ MODEL_MIX);
        let model = SignalPropagation::new(
            config.simulation.neurons,
            config.model.hidden,
            config.model.hidden_layers,
            plan.passing,
            &mut rng,
            device,
        )?;
        Ok(SignalTrainer {
            model,
            optimizer: optimizer(config)?,
            draws: HostRng::new(config.seed ^ DRAWS_MIX),
            noise: Rng::new(config.seed ^ NOISE_MIX),
            training: config.training.clone(),
            ode: plan.ode,
            xnorm,
            dt: config.simulation.dt,
        })
    }

    /// One iteration: `batch_size` random frames of `recording`, the loss, backward, Adam.
    pub fn step(&mut self, recording: &Recording) -> Result<StepLoss> {
        let t = self.training.time_step;
        let recurrent = t > 1 && self.optimizer.steps() >= self.training.recurrent_start_iteration;
        let mut ctx = Ctx::train();
        let (u, fit) = if self.ode.is_some() {
            self.ode_fit(recording, t)?
        } else if recurrent {
            self.recurrent_fit(recording, t, &mut ctx)?
        } else {
            let frames: Vec<usize> = (0..self.training.batch_size)
                .map(|_| self.draws.below(recording.frames))
                .collect();
            let (u, y) = recording.gather(&frames)?;
            let u = Var::constant(u);
            let pred = self.model.forward(&u, &mut ctx)?;
            let fit = l2(&pred.sub(&Var::constant(y))?)?;
            (u, fit)
        };
        let regularisation = self.regularisers(&u, &mut ctx)?;
        let total = match &regularisation {
            Some(r) => fit.add(r)?,
            None => fit.clone(),
        };
        let grads = total.backward()?;
        self.optimizer.step(&mut self.model, &grads, 1.0, 1.0)?;
        Ok(StepLoss {
            fit,
            regularisation,
        })
    }

    /// The recurrent loss `‖(û(k + T) − u(k + T)) / (dt·T)‖₂` from frames `k` aligned to
    /// multiples of `T`, `û ← û + dt·pred(û) + noise` for `T` steps; returns the start frames too.
    fn recurrent_fit(
        &mut self,
        recording: &Recording,
        t: usize,
        ctx: &mut Ctx,
    ) -> Result<(Var, Var)> {
        let (u0, target) = self.aligned_frames(recording, t)?;
        let u0 = Var::constant(u0);
        let mut u = u0.clone();
        for _ in 0..t {
            let pred = self.model.forward(&u, ctx)?;
            u = u.add(&pred.mul_scalar(self.dt)?)?;
            if self.training.noise_recurrent_level > 0.0 {
                let noise = Tensor::rand_normal(
                    u.shape(),
                    0.0,
                    self.training.noise_recurrent_level,
                    &mut self.noise,
                    recording.last.device(),
                )?;
                u = u.add(&Var::constant(noise))?;
            }
        }
        let fit = l2(&u.sub(&Var::constant(target))?)?.div_scalar(self.dt * t as f32)?;
        Ok((u0, fit))
    }

    /// Start frames aligned to multiples of `t` and the frames `t` later.
    fn aligned_frames(&mut self, recording: &Recording, t: usize) -> Result<(Tensor, Tensor)> {
        let starts: Vec<usize> = (0..self.training.batch_size)
            .map(|_| {
                let k = self.draws.below(recording.frames - t);
                k - k % t
            })
            .collect();
        let ends: Vec<usize> = starts.iter().map(|k| k + t).collect();
        Ok((recording.gather(&starts)?.0, recording.gather(&ends)?.0))
    }

    /// The neural-ODE loss `‖(u(t_k + T·dt) − u_{k+T}) / (dt·T)‖₂`, the state integrated by the
    /// configured solver (adjoint or backpropagated gradients).
    fn ode_fit(&mut self, recording: &Recording, t: usize) -> Result<(Var, Var)> {
        let options = self.ode.expect("ode_fit runs with a solver");
        let (u0, target) = self.aligned_frames(recording, t)?;
        let u0 = Var::constant(u0);
        let end = if self.training.ode_adjoint {
            let model = self.model.clone();
            let f: ode::Dynamics =
                std::rc::Rc::new(move |u: &Var| model.forward(u, &mut Ctx::train()));
            let params = self
                .model
                .params()
                .iter()
                .map(|(_, p)| p.var().clone())
                .collect();
            ode::odeint_adjoint(f, params, &u0, t, self.dt, &options)?
        } else {
            let model = &self.model;
            let mut f = |u: &Var| model.forward(u, &mut Ctx::train());
            ode::odeint(&mut f, &u0, t, self.dt, &options)?
        };
        let fit = l2(&end.sub(&Var::constant(target))?)?.div_scalar(self.dt * t as f32)?;
        Ok((u0, fit))
    }

    /// The configured regularisers at frames `u` (None when every coefficient is 0).
    fn regularisers(&self, u: &Var, ctx: &mut Ctx) -> Result<Option<Var>> {
        let t = &self.training;
        let mut terms = Vec::new();
        if t.coeff_w_l1 > 0.0 {
            terms.push(
                self.model
                    .w
                    .var()
                    .abs()?
                    .sum_all()?
                    .mul_scalar(t.coeff_w_l1)?,
            );
        }
        if t.coeff_lin_phi_zero > 0.0 {
            terms.push(
                self.model
                    .phi_at_zero_norm(ctx)?
                    .mul_scalar(t.coeff_lin_phi_zero)?,
            );
        }
        if t.coeff_edge_diff > 0.0 {
            let shifted = u.add_scalar(self.xnorm / 150.0)?;
            let diff = self
                .model
                .edge_function(u, ctx)?
                .sub(&self.model.edge_function(&shifted, ctx)?)?
                .relu()?;
            terms.push(l2(&diff)?.mul_scalar(t.coeff_edge_diff)?);
        }
        let mut it = terms.into_iter();
        let Some(first) = it.next() else {
            return Ok(None);
        };
        it.try_fold(first, |acc, term| acc.add(&term)).map(Some)
    }
}

/// The experiment's state.
struct Study {
    config: ConnectivityConfig,
    plan: ConnectivityPlan,
    device: Device,
    truth: GroundTruth,
    trainer: SignalTrainer,
    data_written: bool,
}

impl Study {
    /// Writes the recording and the simulation's analysis into the run folder (once per call).
    fn write_data(&mut self) -> Result<()> {
        let dir = PathBuf::from(&self.config.runs_dir).join(&self.config.name);
        for (k, (u, du)) in self.truth.recording.chunks.iter().enumerate() {
            Record::default()
                .with_tensor("u", u.clone())
                .with_tensor("du", du.clone())
                .save(dir.join("data").join(format!("chunk_{k:03}.safetensors")))?;
        }
        let n = self.truth.recording.neurons;
        let radius = simulate::spectral_radius(&self.truth.simulator.w, n)?;
        let eigenvalues = simulate::activity_spectrum(&self.truth.recording)?;
        // The published analysis.log: one `key: value` per line.
        let mut log = String::new();
        let _ = writeln!(log, "spectral_radius: {radius:.4}");
        let _ = writeln!(
            log,
            "svd_rank: {}",
            simulate::effective_rank(&eigenvalues, 0.99)
        );
        let _ = writeln!(
            log,
            "svd_rank_90: {}",
            simulate::effective_rank(&eigenvalues, 0.90)
        );
        let _ = writeln!(log, "xnorm: {}", self.truth.xnorm);
        let _ = writeln!(log, "simulation_time_s: {:.1}", self.truth.seconds);
        dynlab_runtime::write_atomic(dir.join("analysis.log"), log.as_bytes())?;
        self.data_written = true;
        Ok(())
    }
}

/// `‖x‖₂` over every element.
fn l2(x: &Var) -> Result<Var> {
    x.reshape(&[-1])?.norm(2.0, 0, false)
}

impl Experiment for Study {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.plan.iterations / self.config.training.log_every
    }

    fn unit_name(&self) -> &str {
        "logs"
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.training.checkpoint_every
    }

    fn run_unit(&mut self, _unit: u64, history: &mut History) -> Result<String> {
        if !self.data_written {
            self.write_data()?;
        }
        let started = Instant::now();
        let every = self.config.training.log_every;
        for _ in 1..every {
            self.trainer.step(&self.truth.recording)?;
        }
        let last = self.trainer.step(&self.truth.recording)?;
        let loss = last.fit.value().item()?;
        if !loss.is_finite() {
            return Err(Error::value(
                "connectivity",
                format!(
                    "loss {loss} at iteration {}",
                    self.trainer.optimizer.steps()
                ),
                "a finite loss (lower training.lr_w?)",
            ));
        }
        let regularisation = match &last.regularisation {
            Some(r) => r.value().item()?,
            None => 0.0,
        };
        let rate = every as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let eval = evaluate(&self.trainer.model, &self.truth)?;
        let row = ConnectivityRow {
            iteration: self.trainer.optimizer.steps(),
            loss,
            regularisation,
            connectivity_r2: eval.fit.r2 as f32,
            slope: eval.fit.slope as f32,
            cluster_accuracy: eval.cluster_accuracy as f32,
            iterations_per_second: rate as f32,
        };
        history.push(&row)?;
        Ok(format!(
            "loss {loss:.3e} R² {:.4} slope {:.3} clusters {:.2}",
            eval.fit.r2, eval.fit.slope, eval.cluster_accuracy
        ))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("model", Record::of_module(&self.trainer.model))
            .nest("optimizer", self.trainer.optimizer.save_state()?)
            .nest("noise", self.trainer.noise.save_state()?)
            .with_value("draws", self.trainer.draws.state()))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        record
            .part("model")
            .restore_module(&mut self.trainer.model)?;
        self.trainer
            .optimizer
            .load_state(&record.part("optimizer"))?;
        self.trainer.draws = HostRng::new(record.value("draws")?);
        Ok(())
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        plot_history(run.file("curves.png"), history, &curves(&self.config))?;
        let eval = evaluate(&self.trainer.model, &self.truth)?;
        let n = self.truth.recording.neurons;
        let dt = self.truth.simulator.dt;
        let start = &self.truth.recording.last;
        let wt = Tensor::from_vec(
            simulate::transpose(&self.truth.simulator.w, n),
            &[n, n],
            &self.device,
        )?;
        let params = Tensor::from_slice(&self.truth.simulator.params, &[3, n], &self.device)?;
        let (true_frames, _) = start.signal_rollout(&wt, &params, ROLLOUT_FRAMES - 1, dt)?;
        let true_frames = true_frames.to_vec::<f32>()?;
        let predicted = model_rollout(&self.trainer.model, start, ROLLOUT_FRAMES, dt)?;
        let rollout_r2 = metrics::rollout_r2(&true_frames, &predicted, n, ROLLOUT_STEP);
        let pearson = metrics::mean_pearson(&true_frames, &predicted, n);
        let round = |v: f64, digits: i32| {
            let f = 10f64.powi(digits);
            (v * f).round() / f
        };
        summary.set("connectivity_r2", round(eval.fit.r2, 5));
        summary.set("connectivity_slope", round(eval.fit.slope, 4));
        summary.set("connectivity_slope_uncorrected", round(eval.slope_raw, 4));
        summary.set("psi_plateau", round(eval.upper, 4));
        summary.set("cluster_accuracy", round(eval.cluster_accuracy, 4));
        summary.set("embedding_clusters", eval.clusters as i64);
        summary.set("rollout_r2", round(rollout_r2, 4));
        summary.set("rollout_pearson", round(pearson, 4));
        summary.set("iterations", self.trainer.optimizer.steps() as i64);
        summary.set("xnorm", self.truth.xnorm as f64);
        summary.set("simulation_seconds", round(self.truth.seconds, 1));
        if let Some(loss) = history.last("loss") {
            summary.set("final_loss", loss);
        }
        let seconds = history.last("seconds").unwrap_or(0.0);
        summary.set("training_seconds", round(seconds, 1));
        let mut log = std::fs::read_to_string(run.file("analysis.log")).unwrap_or_default();
        let _ = writeln!(log, "connectivity_R2: {:.4}", eval.fit.r2);
        let _ = writeln!(log, "connectivity_slope: {:.4}", eval.fit.slope);
        let _ = writeln!(log, "test_R2: {rollout_r2:.4}");
        let _ = writeln!(log, "test_pearson: {pearson:.4}");
        let _ = writeln!(log, "cluster_accuracy: {:.4}", eval.cluster_accuracy);
        let _ = writeln!(log, "embedding_n_clusters: {}", eval.clusters);
        let _ = writeln!(
            log,
            "final_loss: {:.4e}",
            history.last("loss").unwrap_or(f64::NAN)
        );
        let _ = writeln!(log, "iterations: {}", self.trainer.optimizer.steps());
        let _ = writeln!(log, "training_time_min: {:.2}", seconds / 60.0);
        run.write("analysis.log", log.as_bytes())?;
        let learned = self.trainer.model.dense_w()?.to_vec::<f32>()?;
        let scale = eval.upper / 10.0;
        let points: Vec<(f64, f64)> = self
            .truth
            .simulator
            .w
            .iter()
            .zip(&learned)
            .map(|(&t, &l)| (t as f64, l as f64 * scale))
            .collect();
        plot_scatter(
            run.file("connectivity.png"),
            &Scatter {
                title: format!(
                    "{}: R² {:.4}, slope {:.3}",
                    self.config.name, eval.fit.r2, eval.fit.slope
                ),
                x: "true W".into(),
                y: "learned W (corrected)".into(),
                points,
                diagonal: true,
            },
        )
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        let seed = self.config.seed;
        vec![
            ("connectivity", seed ^ CONNECTIVITY_MIX),
            ("simulation", seed ^ SIMULATION_MIX),
            ("model", seed ^ MODEL_MIX),
            ("draws", seed ^ DRAWS_MIX),
            ("noise", seed ^ NOISE_MIX),
        ]
    }

    fn steps(&self) -> u64 {
        self.trainer.optimizer.steps()
    }
}

/// Loss, R² and cluster accuracy against the iteration.
fn curves(config: &ConnectivityConfig) -> Figure {
    Figure {
        title: format!("{}: n = {}", config.name, config.simulation.neurons),
        x: "iteration".into(),
        log_x: false,
        panels: vec![
            Panel::new("training loss", "‖pred − y‖₂")
                .line("loss", "loss")
                .log_y(),
            Panel::new("recovery", "value")
                .line("connectivity_r2", "connectivity R²")
                .line("slope", "slope")
                .line("cluster_accuracy", "cluster accuracy"),
        ],
        markers: Vec::new(),
    }
}

/// Adam over the model with the config's learning rate per parameter group.
fn optimizer(config: &ConnectivityConfig) -> Result<Optimizer> {
    let t = &config.training;
    Optimizer::new(
        Method::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            decoupled: false,
        },
        ParamGroup::all(0.0),
    )?
    .with_path_lr("W", t.lr_w)?
    .with_path_lr("a", t.lr_embedding)?
    .with_path_lr("lin_", t.lr_mlp)
}

/// Runs (or resumes) the experiment `config` describes: simulates the network, trains the graph
/// network, and writes the data, history, figures, `analysis.log` and summary.
pub fn run(
    config: &ConnectivityConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<ConnectivityOutcome> {
    let plan = config.plan()?;
    let device = Device::default()?;
    let truth = simulate_network(config, &plan, &device)?;
    let trainer = SignalTrainer::new(config, &plan, truth.xnorm, &device)?;
    let mut study = Study {
        config: config.clone(),
        plan,
        device,
        truth,
        trainer,
        data_written: false,
    };
    let outcome = run_experiment(
        &mut study,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<ConnectivityRow>(),
        options,
    )?;
    Ok(ConnectivityOutcome {
        run_dir: outcome.run_dir,
        iterations_per_second: outcome.units_per_second * config.training.log_every as f64,
        seconds: outcome.seconds,
        summary: outcome.summary,
        history: outcome.history,
    })
}
