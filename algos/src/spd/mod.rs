//! Stochastic Parameter Decomposition (Bushnaq, Braun, Sharkey 2025, "Stochastic Parameter
//! Decomposition"; reference code `goodfire-ai/spd`, branch `spd-paper`).
//!
//! SPD approximates each weight matrix `W^l` of a trained network by `C` rank-one subcomponents
//! `W^l ≈ Σ_c V^l_{:,c} U^l_{c,:}` and learns, per input, a causal importance `g_c ∈ [0, 1]` for
//! each: how much of the subcomponent can be ablated without changing the output. Training draws
//! stochastic masks `m = g + (1 − g)·u` and asks the masked network to reproduce the target's
//! output ([`losses`]) while as few subcomponents as possible are important (`Σ g^p`). On toy
//! models of superposition the paper finds one live subcomponent per true feature (mean max cosine
//! similarity 1.000).
//!
//! - [`components`]: [`ComponentModel`] (decomposed `Linear` layers of any [`Module`] target,
//!   replaced by path), the gates, the hard sigmoids;
//! - [`losses`]: masks and the four losses;
//! - [`metrics`]: CI-L0, live subcomponents, MMCS/ML2R;
//! - [`targets`]: the toy targets' data and training (the models are `dynlab_models::spd_targets`);
//! - [`run`]: one experiment (train the target, decompose it, log, plot, summarise) under the
//!   harness's `run_experiment`.

pub mod components;
mod config;
pub mod figures;
pub mod losses;
pub mod metrics;
pub mod targets;

pub use components::{
    lower_leaky_hard_sigmoid, upper_leaky_hard_sigmoid, CiFnKind, ComponentInit, ComponentModel,
    Components, Gates, LayerComponents, Route, Run, TargetLayer,
};
pub use config::{DecompositionConfig, SpdConfig, SpdPlan, TargetConfig, TargetKind};
pub use losses::{spd_losses, LossSettings, MaskKind, SpdLosses};
pub use metrics::{
    ci_l0, direction_match, features_with_one_component, live_components, represented_features,
    DirectionMatch,
};
pub use targets::{init_target, sparse_features, train_target, Target, TargetTraining};

use dynlab_autodiff::Var;
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir, RunMode,
    RunOptions, Summary, Value,
};
use dynlab_models::{Module, Record, Stateful};
use dynlab_optim::Optimizer;
use dynlab_runtime::{Device, Result, Rng, Tensor};
use std::path::PathBuf;
use std::time::Instant;

history_row! {
    /// One row per log interval.
    pub struct SpdRow {
        /// Optimizer steps done.
        pub step: u64,
        /// Learning rate of the interval's last step.
        pub lr: f32,
        /// The weighted total loss of the interval's last step.
        pub loss: f32,
        /// Faithfulness of the last step (null when its coefficient is 0).
        pub faithfulness: Option<f32>,
        /// Stochastic reconstruction of the last step.
        pub stochastic_recon: Option<f32>,
        /// Layerwise stochastic reconstruction of the last step.
        pub stochastic_recon_layerwise: Option<f32>,
        /// Importance minimality of the last step.
        pub importance_minimality: Option<f32>,
        /// CI-L0 summed over layers, on the evaluation batch.
        pub ci_l0: f32,
        /// Live subcomponents summed over layers, on the evaluation batch.
        pub live: u64,
        /// TMS: MMCS of the first layer (null for other targets).
        pub mmcs: Option<f32>,
        /// TMS: ML2R of the first layer.
        pub ml2r: Option<f32>,
        /// Steps per second over the interval.
        pub steps_per_second: f32,
    }
}

/// Seed mixes of the streams derived from the config's seed.
const TARGET_SEED_MIX: u64 = 0x7A26_E7D0_0000_0001;
const SPD_SEED_MIX: u64 = 0x05D0_5EED_0000_0002;

/// What a run measured.
#[derive(Clone, Debug)]
pub struct SpdOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every log row (across resumes).
    pub history: History,
    /// The summary written.
    pub summary: Summary,
    /// Optimizer steps per second of this call.
    pub steps_per_second: f64,
    /// Wall-clock seconds of the whole run, across resumes.
    pub seconds: f64,
}

/// The experiment's state.
struct Spd<M: Module> {
    config: SpdConfig,
    plan: SpdPlan,
    device: Device,
    model: ComponentModel<M>,
    optimizer: Optimizer,
    rng: Rng,
    target_training: Option<TargetTraining>,
}

/// The metrics of the decomposition on an evaluation batch.
struct Evaluation {
    ci_l0: Vec<f64>,
    live: Vec<usize>,
    direction: Option<DirectionMatch>,
}

impl<M: Module> Spd<M> {
    fn step(&mut self) -> Result<SpdLosses> {
        let s = &self.config.spd;
        let x = sparse_features(
            s.batch_size,
            self.config.target.features,
            self.config.target.feature_probability,
            targets::feature_low(&self.plan.target),
            &mut self.rng,
            &self.device,
        )?;
        let losses = spd_losses(&self.model, &x, &self.plan.losses, &mut self.rng)?;
        let grads = losses.total.backward()?;
        let lr = self.plan.optim.schedule.at(self.optimizer.steps() + 1);
        self.optimizer
            .step(&mut self.model.components, &grads, lr, 1.0)?;
        Ok(losses)
    }

    /// CI-L0 and live subcomponents per layer on a fresh batch; MMCS/ML2R for TMS.
    fn evaluate(&mut self) -> Result<Evaluation> {
        let s = &self.config.spd;
        let x = sparse_features(
            s.eval_batch,
            self.config.target.features,
            self.config.target.feature_probability,
            targets::feature_low(&self.plan.target),
            &mut self.rng,
            &self.device,
        )?;
        let g = dynlab_autodiff::no_grad(|| importances(&self.model, &x))?;
        let (mut ci, mut live) = (Vec::new(), Vec::new());
        for g in &g {
            let host: Vec<f32> = g.to_vec()?;
            ci.push(ci_l0(&host, s.c, s.l0_threshold));
            live.push(live_components(&host, s.c, s.alive_threshold).len());
        }
        let direction = match self.plan.target {
            TargetKind::Tms { .. } => Some(first_layer_match(&self.model)?),
            TargetKind::ResidMlp { .. } => None,
        };
        Ok(Evaluation {
            ci_l0: ci,
            live,
            direction,
        })
    }
}

/// Each decomposed layer's causal importances `g = σ_lower(raw)` `[B, C]` for the batch `x`.
pub fn importances<M: Module>(model: &ComponentModel<M>, x: &Tensor) -> Result<Vec<Tensor>> {
    let run = model.run_target(&Var::constant(x.clone()))?;
    model
        .raw_importances(&run.inputs)?
        .iter()
        .map(|raw| Ok(lower_leaky_hard_sigmoid(raw)?.value().clone()))
        .collect()
}

/// MMCS and ML2R of the first decomposed layer against its target weight.
pub fn first_layer_match<M: Module>(model: &ComponentModel<M>) -> Result<DirectionMatch> {
    let (_, comps) = &model.components.layers[0];
    let w = &model.targets[0].weight;
    let (f, h, c) = (w.shape()[0], w.shape()[1], comps.c());
    Ok(direction_match(
        &comps.v.value().to_vec::<f32>()?,
        &comps.u.value().to_vec::<f32>()?,
        &w.to_vec::<f32>()?,
        f,
        c,
        h,
    ))
}

fn item(v: &Option<Var>) -> Result<Option<f32>> {
    v.as_ref().map(|v| v.value().item()).transpose()
}

impl<M: Module> Experiment for Spd<M> {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        self.config.spd.steps / self.config.spd.log_every
    }

    fn unit_name(&self) -> &str {
        "logs"
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.spd.checkpoint_every
    }

    fn run_unit(&mut self, _unit: u64, history: &mut History) -> Result<String> {
        let started = Instant::now();
        let every = self.config.spd.log_every;
        for _ in 1..every {
            self.step()?;
        }
        let last = self.step()?;
        let loss = last.total.value().item()?;
        if !loss.is_finite() {
            return Err(dynlab_runtime::Error::value(
                "spd",
                format!("loss {loss} at step {}", self.optimizer.steps()),
                "a finite loss (lower optim.lr?)",
            ));
        }
        let rate = every as f64 / started.elapsed().as_secs_f64().max(1e-9);
        let eval = self.evaluate()?;
        let row = SpdRow {
            step: self.optimizer.steps(),
            lr: self.plan.optim.schedule.at(self.optimizer.steps()),
            loss,
            faithfulness: item(&last.faithfulness)?,
            stochastic_recon: item(&last.stochastic_recon)?,
            stochastic_recon_layerwise: item(&last.stochastic_recon_layerwise)?,
            importance_minimality: item(&last.importance_minimality)?,
            ci_l0: eval.ci_l0.iter().sum::<f64>() as f32,
            live: eval.live.iter().sum::<usize>() as u64,
            mmcs: eval.direction.map(|d| d.mmcs as f32),
            ml2r: eval.direction.map(|d| d.ml2r as f32),
            steps_per_second: rate as f32,
        };
        history.push(&row)?;
        for (((path, _), ci), live) in self
            .model
            .components
            .layers
            .iter()
            .zip(&eval.ci_l0)
            .zip(&eval.live)
        {
            history.set(&format!("ci_l0.{path}"), Value::F32(*ci as f32))?;
            history.set(&format!("live.{path}"), Value::U64(*live as u64))?;
        }
        let mmcs = eval.direction.map_or(String::new(), |d| {
            format!(" mmcs {:.3} ml2r {:.3}", d.mmcs, d.ml2r)
        });
        Ok(format!(
            "loss {loss:.3e} ci-l0 {:.2} live {}{mmcs}",
            row.ci_l0, row.live
        ))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("target", Record::of_module(&self.model.target))
            .nest("components", Record::of_module(&self.model.components))
            .nest("optimizer", self.optimizer.save_state()?)
            .nest("rng", self.rng.save_state()?))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        record
            .part("target")
            .restore_module(&mut self.model.target)?;
        self.model.targets = frozen_weights(&self.model.target, &self.model.components)?;
        record
            .part("components")
            .restore_module(&mut self.model.components)?;
        self.optimizer.load_state(&record.part("optimizer"))?;
        self.rng.load_state(&record.part("rng"))
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        plot_history(run.file("curves.png"), history, &curves(&self.config))?;
        let eval = self.evaluate()?;
        for (((path, _), ci), live) in self
            .model
            .components
            .layers
            .iter()
            .zip(&eval.ci_l0)
            .zip(&eval.live)
        {
            summary.set(&format!("ci_l0.{path}"), (*ci * 1000.0).round() / 1000.0);
            summary.set(&format!("live.{path}"), *live as i64);
        }
        let one_hot = figures::one_hot_importances(&self.model, &self.device)?;
        for ((path, _), g) in self.model.components.layers.iter().zip(&one_hot) {
            let matched =
                features_with_one_component(g, self.config.spd.c, self.config.spd.alive_threshold);
            summary.set(&format!("one_component_features.{path}"), matched as i64);
        }
        if let Some(d) = eval.direction {
            let w = &self.model.targets[0].weight;
            let represented = represented_features(&w.to_vec::<f32>()?, w.shape()[1], 0.1);
            summary.set("represented_features", represented as i64);
            summary.set("mmcs", d.mmcs);
            summary.set("mmcs_std", d.mmcs_std);
            summary.set("ml2r", d.ml2r);
            summary.set("ml2r_std", d.ml2r_std);
        }
        if let Some(t) = self.target_training {
            summary.set("target_final_loss", t.final_loss as f64);
            summary.set(
                "target_steps_per_second",
                (t.steps_per_second * 10.0).round() / 10.0,
            );
        }
        let seconds = history.last("seconds").unwrap_or(0.0);
        let steps = history.last("step").unwrap_or(0.0);
        summary.set("spd_steps", steps as i64);
        summary.set(
            "spd_steps_per_second",
            (steps / seconds.max(1e-9) * 10.0).round() / 10.0,
        );
        figures::write_all(run, &self.model, &self.plan.target, &self.device)
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        let seed = self.config.seed;
        vec![
            ("target", seed ^ TARGET_SEED_MIX),
            ("decomposition", seed ^ SPD_SEED_MIX),
        ]
    }

    fn steps(&self) -> u64 {
        self.optimizer.steps()
    }
}

/// The frozen weights of the decomposed layers of `target`, read again (after a restore).
fn frozen_weights<M: Module>(target: &M, components: &Components) -> Result<Vec<TargetLayer>> {
    components
        .layers
        .iter()
        .map(|(path, _)| TargetLayer::read(target, path, "spd::restore"))
        .collect()
}

/// Loss terms, CI-L0 and (TMS) MMCS against the step.
fn curves(config: &SpdConfig) -> Figure {
    let mut panels = vec![
        Panel::new("losses", "loss")
            .line("faithfulness", "faithfulness")
            .line("stochastic_recon", "stochastic recon")
            .line("stochastic_recon_layerwise", "layerwise recon")
            .line("importance_minimality", "importance minimality")
            .log_y(),
        Panel::new("causal importance", "count")
            .line("ci_l0", "CI-L0 (all layers)")
            .line("live", "live subcomponents"),
    ];
    if config.target.model == "tms" {
        panels.push(
            Panel::new("first layer vs target", "value")
                .line("mmcs", "MMCS")
                .line("ml2r", "ML2R"),
        );
    }
    Figure {
        title: format!("{}: SPD, C = {}", config.name, config.spd.c),
        x: "step".into(),
        log_x: false,
        panels,
        markers: Vec::new(),
    }
}

/// Runs (or resumes) the experiment described by `config`: trains its target (not on resume: the
/// checkpoint holds it), decomposes it, and writes the history, figures and summary.
pub fn run(config: &SpdConfig, resolved_toml: &str, options: RunOptions) -> Result<SpdOutcome> {
    let plan = config.plan()?;
    let device = Device::default()?;
    let mut target_rng = Rng::new(config.seed ^ TARGET_SEED_MIX);
    let t = &config.target;
    let (target, training) = if options.mode == RunMode::Resume {
        (init_target(&plan.target, &mut target_rng, &device)?, None)
    } else {
        let (target, training) = train_target(
            &plan.target,
            t.feature_probability,
            t.steps,
            t.batch_size,
            &plan.target_optim,
            &mut target_rng,
            &device,
        )?;
        (target, Some(training))
    };
    match target {
        Target::Tms(m) => {
            let paths = m.layer_paths();
            run_with(
                m,
                paths,
                config,
                plan,
                device,
                training,
                resolved_toml,
                options,
            )
        }
        Target::ResidMlp(m) => {
            let paths = m.layer_paths();
            run_with(
                *m,
                paths,
                config,
                plan,
                device,
                training,
                resolved_toml,
                options,
            )
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_with<M: Module>(
    target: M,
    all_paths: Vec<String>,
    config: &SpdConfig,
    plan: SpdPlan,
    device: Device,
    target_training: Option<TargetTraining>,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<SpdOutcome> {
    let paths = match config.spd.target_modules.is_empty() {
        true => all_paths,
        false => config.spd.target_modules.clone(),
    };
    let mut rng = Rng::new(config.seed ^ SPD_SEED_MIX);
    let model = ComponentModel::new(
        target,
        &paths,
        config.spd.c,
        plan.init,
        plan.ci_fn,
        &mut rng,
        &device,
    )
    .map_err(|e| match e {
        dynlab_runtime::Error::Value { .. } => {
            dynlab_runtime::Error::config("spd.target_modules", e.to_string())
        }
        other => other,
    })?;
    let mut experiment = Spd {
        config: config.clone(),
        optimizer: plan.optim.optimizer()?,
        plan,
        device,
        model,
        rng,
        target_training,
    };
    let outcome = run_experiment(
        &mut experiment,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<SpdRow>(),
        options,
    )?;
    Ok(SpdOutcome {
        run_dir: outcome.run_dir,
        steps_per_second: outcome.units_per_second * config.spd.log_every as f64,
        seconds: outcome.seconds,
        summary: outcome.summary,
        history: outcome.history,
    })
}
