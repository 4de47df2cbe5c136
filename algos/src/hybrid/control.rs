//! The phase machine, the monitor's recovery actions and the horizon bandit, on the host: what the
//! next step does, given what the last steps showed. Nothing here touches a device, so the whole
//! controller is tested on scripted loss sequences.
//!
//! ```text
//! Warmup ──warmup_steps──▶ Full ──min_full_steps, confidence ≥ threshold, loss falling,
//!                           ▲  ▲      no divergence in the last cooldown_steps──▶ Predict
//!                           │  └──────── correct_steps ── Correct ◀── horizon reached,
//!                           │                                 ▲       confidence dropped,
//!                           │                                 │       loss above the episode's best
//!                           └── divergence (roll back) ───────┴────── oscillation
//! ```
//!
//! In Predict every step applies the predicted update and only runs a forward pass, except every
//! `correction_interval`-th, a micro-correction: one full step inside the episode. The state is
//! saved before each episode and every `snapshot_every` healthy full steps, and a save becomes the
//! roll-back target once the loss at the saved point passed the monitor (a step's update shows only
//! in the next step's loss, so a state saved after a bad update never becomes the target). A signal
//! that rolls back (see [`super::monitor`]) restores the last such save, with the monitor's
//! statistics as they were there, and replays the steps since with full steps. A fault that comes
//! back during the replay is the real dynamics (a deterministic batch reproduces it): it is
//! recorded, its loss joins the statistics and training goes on, except a non-finite loss, which
//! is an error. The same holds for the signals that never roll back.

use super::bandit::LinUcb;
use super::dynamics::DynamicsConfig;
use super::monitor::{DivergenceMonitor, MonitorConfig, Signal, StepSignals};
use dynlab_runtime::{Error, Result};
use serde::{Deserialize, Serialize};

/// Where the trainer is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Full steps gathering the baseline statistics.
    Warmup,
    /// Full steps; the dynamics model learns.
    Full,
    /// Predicted updates without backward passes.
    Predict,
    /// Full steps right after an episode; their residuals feed the corrector.
    Correct,
}

impl Phase {
    /// Short name (history column values).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Warmup => "warmup",
            Phase::Full => "full",
            Phase::Predict => "predict",
            Phase::Correct => "correct",
        }
    }

    /// Index (history columns): 0 Warmup, 1 Full, 2 Predict, 3 Correct.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What one step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Forward, backward and optimizer step.
    Full,
    /// The predicted update, then a forward pass for monitoring.
    Predicted,
    /// A full step inside a prediction episode.
    MicroCorrection,
}

impl Action {
    /// Whether the step runs a backward pass.
    pub fn has_backward(self) -> bool {
        !matches!(self, Action::Predicted)
    }
}

/// The hybrid trainer's settings (`[hybrid]`): the controller's, the predictor's and, nested, the
/// monitor's and the dynamics model's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HybridConfig {
    /// Full steps before anything else.
    pub warmup_steps: u64,
    /// Full steps in each Full phase before an episode may start.
    pub min_full_steps: u64,
    /// Full steps of each Correct phase.
    pub correct_steps: u64,
    /// A micro-correction every this many predicted steps (0: none).
    pub correction_interval: u64,
    /// An episode starts (and continues) only with at least this confidence.
    pub confidence_threshold: f64,
    /// The bandit's arms: prediction horizons in steps, ascending (after a divergence only the
    /// shorter half stays allowed until an episode ends well).
    pub horizons: Vec<u64>,
    /// An episode ends when a predicted step's loss exceeds the episode's lowest by more than this
    /// fraction (the extrapolation stopped making progress).
    pub stall_tolerance: f64,
    /// Start an episode only while the loss falls (its mean `Δ log L` over the last 8 steps is
    /// negative): extrapolating a rising stretch of a noisy loss ends at the stall rule within a
    /// few steps. `false` starts on confidence alone.
    pub predict_only_while_falling: bool,
    /// No episode within this many steps of a divergence.
    pub cooldown_steps: u64,
    /// Save the state every this many healthy full steps (and before each episode).
    pub snapshot_every: u64,
    /// LinUCB's exploration weight.
    pub ucb_alpha: f64,
    /// Reward penalty per unit of relative loss increase over an episode.
    pub loss_penalty: f64,
    /// Give up (an error) after this many roll-backs.
    pub max_rollbacks: u64,
    /// EMA decay of the update direction the predicted steps follow.
    pub direction_beta: f64,
    /// The predicted per-step change of an update's norm, `log(‖Δθ_{t+1}‖/‖Δθ_t‖)`, is clamped to
    /// `±max_log_ratio`.
    pub max_log_ratio: f64,
    /// The divergence monitor.
    pub monitor: MonitorConfig,
    /// The dynamics model.
    pub dynamics: DynamicsConfig,
}

impl Default for HybridConfig {
    fn default() -> Self {
        HybridConfig {
            warmup_steps: 50,
            min_full_steps: 10,
            correct_steps: 3,
            correction_interval: 10,
            confidence_threshold: 0.5,
            horizons: vec![10, 20, 40, 80],
            stall_tolerance: 0.0,
            predict_only_while_falling: true,
            cooldown_steps: 20,
            snapshot_every: 25,
            ucb_alpha: 0.5,
            loss_penalty: 20.0,
            max_rollbacks: 50,
            direction_beta: 0.9,
            max_log_ratio: 0.1,
            monitor: MonitorConfig::default(),
            dynamics: DynamicsConfig::default(),
        }
    }
}

impl HybridConfig {
    /// Checks every value; errors name the key.
    pub fn check(&self) -> Result<()> {
        let bad = |key: &str, v: String| Error::config(key, format!("{v} is out of range"));
        if self.warmup_steps < 2 {
            return Err(bad("hybrid.warmup_steps", self.warmup_steps.to_string()));
        }
        if self.min_full_steps == 0 {
            return Err(bad("hybrid.min_full_steps", "0".into()));
        }
        if !(0.0..=1.0).contains(&self.confidence_threshold) {
            return Err(bad(
                "hybrid.confidence_threshold",
                self.confidence_threshold.to_string(),
            ));
        }
        let ascending = self.horizons.windows(2).all(|w| w[0] < w[1]);
        if self.horizons.is_empty() || self.horizons.contains(&0) || !ascending {
            return Err(bad("hybrid.horizons", format!("{:?}", self.horizons)));
        }
        if !(self.stall_tolerance >= 0.0 && self.stall_tolerance.is_finite()) {
            return Err(bad(
                "hybrid.stall_tolerance",
                self.stall_tolerance.to_string(),
            ));
        }
        if self.snapshot_every == 0 {
            return Err(bad("hybrid.snapshot_every", "0".into()));
        }
        if !(self.ucb_alpha >= 0.0 && self.ucb_alpha.is_finite()) {
            return Err(bad("hybrid.ucb_alpha", self.ucb_alpha.to_string()));
        }
        if !(self.loss_penalty >= 0.0 && self.loss_penalty.is_finite()) {
            return Err(bad("hybrid.loss_penalty", self.loss_penalty.to_string()));
        }
        if !(self.direction_beta >= 0.0 && self.direction_beta < 1.0) {
            return Err(bad(
                "hybrid.direction_beta",
                self.direction_beta.to_string(),
            ));
        }
        if !(self.max_log_ratio >= 0.0 && self.max_log_ratio.is_finite()) {
            return Err(bad("hybrid.max_log_ratio", self.max_log_ratio.to_string()));
        }
        self.monitor.check()?;
        self.dynamics.check()
    }
}

/// The bandit's context: `[1, confidence, loss slope, fraction of the run left]`.
pub const CONTEXT_DIM: usize = 4;

/// What the executor tells the controller before a step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outlook {
    /// The dynamics model's confidence now.
    pub confidence: f64,
    /// Recent `Δ log L` per step, standardised and clamped to ±3.
    pub loss_slope: f64,
    /// Fraction of the run's steps still to come.
    pub remaining: f64,
    /// Whether the loss fell over the recent steps (raw mean `Δ log L` below 0).
    pub falling: bool,
}

/// The next step: its action, and whether to save the state before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// What the step does.
    pub action: Action,
    /// Save the state (parameters, optimizer) before the step.
    pub snapshot: bool,
}

/// What the executor must do after a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Response {
    /// Nothing: go on.
    Continue,
    /// A signal fired; training goes on without a roll-back.
    Flagged(Signal),
    /// A signal fired: restore the last saved state (taken at this trajectory step).
    RollBack(Signal, u64),
}

#[derive(Clone, Debug, PartialEq)]
struct Episode {
    arm: usize,
    context: Vec<f64>,
    start_loss: Option<f64>,
    predicted: u64,
    micro_due: bool,
    best_loss: f64,
    stalled: bool,
}

/// A save point: the step the state was saved before, and the monitor as it was there (a roll-back
/// restores both).
#[derive(Clone, Debug)]
struct Save {
    step: u64,
    monitor: DivergenceMonitor,
}

/// The controller (see the module docs).
#[derive(Clone, Debug)]
pub struct Controller {
    config: HybridConfig,
    monitor: DivergenceMonitor,
    bandit: LinUcb,
    phase: Phase,
    in_phase: u64,
    step: u64,
    horizon: u64,
    cap: usize,
    episode: Option<Episode>,
    last_divergence: Option<u64>,
    healthy_full: u64,
    /// The roll-back target.
    snapshot: Option<Save>,
    /// The save asked for by the step being run (the target once its loss passes).
    pending: Option<Save>,
    replay_until: Option<u64>,
    rollbacks: u64,
    last_loss: Option<f64>,
    /// Rewards the bandit earned, in order (arm, reward).
    pub rewards: Vec<(usize, f64)>,
}

impl Controller {
    /// A controller in Warmup at step 0.
    pub fn new(config: HybridConfig) -> Result<Controller> {
        config.check()?;
        let bandit = LinUcb::new(config.horizons.len(), CONTEXT_DIM, config.ucb_alpha)?;
        let monitor = DivergenceMonitor::new(config.monitor.clone(), config.warmup_steps as usize);
        Ok(Controller {
            cap: config.horizons.len(),
            config,
            monitor,
            bandit,
            phase: Phase::Warmup,
            in_phase: 0,
            step: 0,
            horizon: 0,
            episode: None,
            last_divergence: None,
            healthy_full: 0,
            snapshot: None,
            pending: None,
            replay_until: None,
            rollbacks: 0,
            last_loss: None,
            rewards: Vec::new(),
        })
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Steps on the current trajectory (a roll-back returns to the saved step).
    pub fn step(&self) -> u64 {
        self.step
    }

    /// The current episode's horizon (0 outside Predict).
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// Roll-backs so far.
    pub fn rollbacks(&self) -> u64 {
        self.rollbacks
    }

    /// The monitor.
    pub fn monitor(&self) -> &DivergenceMonitor {
        &self.monitor
    }

    /// The horizon bandit.
    pub fn bandit(&self) -> &LinUcb {
        &self.bandit
    }

    /// Whether the step being planned is a replay after a roll-back.
    pub fn replaying(&self) -> bool {
        self.replay_until.is_some_and(|s| self.step < s)
    }

    /// Decides the next step.
    pub fn plan(&mut self, outlook: Outlook) -> Result<Plan> {
        self.advance_phase(outlook)?;
        let action = match self.phase {
            Phase::Predict => {
                let e = self.episode.as_mut().expect("an episode while predicting");
                if e.micro_due {
                    e.micro_due = false;
                    Action::MicroCorrection
                } else {
                    Action::Predicted
                }
            }
            _ => Action::Full,
        };
        let entering = self.phase == Phase::Predict && self.in_phase == 0;
        let periodic = action == Action::Full
            && !self.replaying()
            && self.healthy_full > 0
            && self.healthy_full.is_multiple_of(self.config.snapshot_every)
            && self.snapshot.as_ref().map(|s| s.step) != Some(self.step);
        let snapshot = entering || periodic || self.snapshot.is_none();
        self.pending = snapshot.then(|| Save {
            step: self.step,
            monitor: self.monitor.clone(),
        });
        Ok(Plan { action, snapshot })
    }

    fn advance_phase(&mut self, outlook: Outlook) -> Result<()> {
        let c = &self.config;
        let next = match self.phase {
            Phase::Warmup if self.in_phase >= c.warmup_steps => Some(Phase::Full),
            Phase::Full if self.may_predict(&outlook) => Some(Phase::Predict),
            Phase::Predict => {
                let e = self.episode.as_ref().expect("an episode while predicting");
                let done = e.predicted >= self.horizon;
                let unsure = outlook.confidence < c.confidence_threshold;
                (done || unsure || e.stalled).then_some(Phase::Correct)
            }
            Phase::Correct if self.in_phase >= c.correct_steps => Some(Phase::Full),
            _ => None,
        };
        if let Some(next) = next {
            if next == Phase::Predict {
                self.start_episode(&outlook)?;
            }
            self.enter(next);
        }
        Ok(())
    }

    fn may_predict(&self, o: &Outlook) -> bool {
        let c = &self.config;
        let calm = self
            .last_divergence
            .is_none_or(|d| self.step >= d + c.cooldown_steps);
        self.in_phase >= c.min_full_steps
            && o.confidence >= c.confidence_threshold
            && calm
            && (o.falling || !c.predict_only_while_falling)
            && !self.replaying()
    }

    fn start_episode(&mut self, o: &Outlook) -> Result<()> {
        let context = vec![1.0, o.confidence, o.loss_slope, o.remaining];
        let scores = self.bandit.scores(&context)?;
        let arm = (0..self.cap)
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(b.cmp(&a)))
            .unwrap_or(0);
        self.horizon = self.config.horizons[arm];
        self.episode = Some(Episode {
            arm,
            context,
            start_loss: self.last_loss,
            predicted: 0,
            micro_due: false,
            best_loss: f64::INFINITY,
            stalled: false,
        });
        Ok(())
    }

    fn enter(&mut self, phase: Phase) {
        if self.phase == Phase::Predict && phase != Phase::Predict {
            self.horizon = 0;
        }
        self.phase = phase;
        self.in_phase = 0;
    }

    /// Records what the step showed and says what to do about it.
    pub fn observe(&mut self, action: Action, signals: StepSignals) -> Result<Response> {
        let predicting = action == Action::Predicted;
        let replaying = self.replaying();
        let pending = self.pending.take();
        let signal = self.monitor.observe(signals, predicting);
        self.step += 1;
        self.in_phase += 1;
        if let Some(e) = self.episode.as_mut() {
            if action == Action::Predicted {
                e.predicted += 1;
                let k = self.config.correction_interval;
                e.micro_due = k > 0 && e.predicted.is_multiple_of(k);
                e.stalled = signals.loss > e.best_loss * (1.0 + self.config.stall_tolerance);
                e.best_loss = e.best_loss.min(signals.loss);
            }
        }
        let Some(signal) = signal else {
            // The saved state's own loss was healthy: it becomes the roll-back target.
            if pending.is_some() {
                self.snapshot = pending;
            }
            self.after_healthy(action, signals.loss)?;
            return Ok(Response::Continue);
        };
        self.last_divergence = Some(self.step);
        self.healthy_full = 0;
        if replaying || !signal.rolls_back() {
            if replaying && signal == Signal::NonFinite {
                return Err(Error::value(
                    "HybridTrainer",
                    format!(
                        "a non-finite loss again at step {} after a roll-back",
                        self.step
                    ),
                    "finite losses (the fault is in the full steps themselves)",
                ));
            }
            // The step stays on the trajectory, so its loss joins the statistics.
            self.monitor.accept(&signals);
            self.end_episode(Some(-1.0))?;
            let next = match signal {
                Signal::Oscillation => Phase::Correct,
                _ => Phase::Full,
            };
            self.shrink_cap();
            self.enter(next);
            return Ok(Response::Flagged(signal));
        }
        self.rollbacks += 1;
        if self.rollbacks > self.config.max_rollbacks {
            return Err(Error::value(
                "HybridTrainer",
                format!("{} roll-backs (last: {})", self.rollbacks, signal.name()),
                format!(
                    "at most hybrid.max_rollbacks = {}",
                    self.config.max_rollbacks
                ),
            ));
        }
        let target = match self.snapshot.clone().or(pending) {
            Some(save) => {
                self.monitor = save.monitor;
                save.step
            }
            None => 0,
        };
        self.replay_until = Some(self.step);
        self.end_episode(Some(-1.0))?;
        self.shrink_cap();
        self.step = target;
        self.enter(Phase::Full);
        self.monitor.after_rollback();
        self.last_loss = None;
        Ok(Response::RollBack(signal, target))
    }

    fn after_healthy(&mut self, action: Action, loss: f64) -> Result<()> {
        if action.has_backward() && !self.replaying() {
            self.healthy_full += 1;
        }
        self.last_loss = Some(loss);
        if self.phase == Phase::Correct && self.in_phase == 1 {
            self.end_episode(None)?;
        }
        if self.replay_until.is_some_and(|s| self.step >= s) {
            self.replay_until = None;
        }
        Ok(())
    }

    /// Closes the open episode and rewards its arm: `reward` when given (a divergence), else the
    /// saved share of the longest horizon minus the penalty for the loss increase since its start.
    fn end_episode(&mut self, reward: Option<f64>) -> Result<()> {
        let Some(e) = self.episode.take() else {
            return Ok(());
        };
        let longest = self.config.horizons.iter().copied().max().unwrap_or(1) as f64;
        let r = match (reward, e.start_loss, self.last_loss) {
            (Some(r), _, _) => r,
            (None, Some(start), Some(end)) if start > 0.0 => {
                let increase = ((end - start) / start).max(0.0);
                e.predicted as f64 / longest - self.config.loss_penalty * increase
            }
            _ => e.predicted as f64 / longest,
        };
        self.bandit.update(e.arm, &e.context, r)?;
        self.rewards.push((e.arm, r));
        if reward.is_none() && self.cap < self.config.horizons.len() {
            self.cap += 1;
        }
        Ok(())
    }

    fn shrink_cap(&mut self) {
        self.cap = (self.cap / 2).max(1);
    }
}
