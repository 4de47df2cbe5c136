//! The slowly-changing regression benchmark ("bit-flipping"; Dohare et al. 2024, Extended Data
//! Fig. 2; reference `lop/slowly_changing_regression/`): a 20 → 5 → 1 learner trained online (batch 1,
//! MSE) on the stream of [`SlowlyChangingRegression`], whose target is fixed and whose first `f`
//! inputs change every `T` examples. Backprop's error rises over the stream (loss of plasticity);
//! continual backprop's stays low.
//!
//! Every learner of `[[learners]]` runs `seeds` times, and all of them train as replicas of one
//! stacked model (`dynlab_models::Replicas`): learner `l`, seed `s` is replica `l·seeds + s`, with
//! its step size and weight decay as per-replica optimizer multipliers, its Shrink & Perturb noise
//! and its replacement rate per replica (0 where the learner has none; one generate-and-test hook
//! per kind among `cbp`, `rr_cbp`, `rr_cbp2`, `rr_cbp_e_2`). Seed `s` fixes the data
//! stream and the initial network for every learner (paired comparisons).
//!
//! One history row per bin of `bin` examples: per learner, the squared error averaged over the bin
//! and over seeds (`<learner>_error`) and its standard error over seeds (`<learner>_se`), plus each
//! replica's (`<learner>_s<seed>`). `bit_flipping.png` plots the binned error.
//!
//! The learner (`lop/nets/ffnn.py`): hidden weights Kaiming-uniform for the activation (ReLU's gain
//! for swish and ELU), output weights Kaiming-uniform with the linear gain, biases 0; no constant
//! input bit (the layers' biases play that role).

use super::gnt::{GenerateAndTest, LayerUnits};
use super::learners::{check_learner, CbpConfig, Perturb, GNT_KINDS};
use dynlab_data::{RegressionConfig, SlowlyChangingRegression, TaskStream};
use dynlab_harness::{
    history_row, plot_history, run_experiment, Experiment, Figure, History, Panel, RunDir,
    RunOptions, Summary, Value,
};
use dynlab_models::{Activation, Init, Linear, Mlp, Record, Replicas, Stateful};
use dynlab_optim::{LrSchedule, Method, Optimizer, ParamGroup};
use dynlab_runtime::{Device, Error, ReplicaScale, Result, Rng, Tensor};
use dynlab_train::{Batch, Mse, Trainer};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The whole config (TOML).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BitFlippingConfig {
    /// Run name: results go to `<runs_dir>/<name>/`.
    pub name: String,
    /// Base seed (seed `s` of every learner derives from it).
    #[serde(default)]
    pub seed: u64,
    /// Folder of run folders.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: String,
    /// Runs per learner (replicas).
    #[serde(default = "default_seeds")]
    pub seeds: usize,
    /// The problem.
    #[serde(default)]
    pub problem: ProblemConfig,
    /// The learner's network.
    #[serde(default)]
    pub net: NetConfig,
    /// The learners compared.
    pub learners: Vec<LearnerEntry>,
    /// History bins and checkpoints.
    #[serde(default)]
    pub logging: BinConfig,
}

/// `[problem]` (every key optional; defaults: the reference's `cfg/prob.json` with the paper's one-bit flips).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProblemConfig {
    /// `m` input bits.
    pub inputs: usize,
    /// `f` flipping bits (the first `f`).
    pub flipping: usize,
    /// `T`: examples between changes.
    pub flip_every: usize,
    /// LTUs of the target network.
    pub target_hidden: usize,
    /// `β` of the LTU thresholds.
    pub beta: f32,
    /// Examples in the stream (a multiple of `flip_every`).
    pub examples: usize,
    /// `one` (one random flipping bit flips: the paper) or `all` (all re-drawn: the reference
    /// code's default).
    pub flip: String,
    /// Examples per step.
    pub batch_size: usize,
}

impl Default for ProblemConfig {
    fn default() -> Self {
        ProblemConfig {
            inputs: 20,
            flipping: 15,
            flip_every: 10_000,
            target_hidden: 100,
            beta: 0.7,
            examples: 1_000_000,
            flip: "one".into(),
            batch_size: 1,
        }
    }
}

/// `[net]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Hidden units.
    pub hidden: usize,
    /// Hidden activation (`relu`, `tanh`, `sigmoid`, `leaky_relu`, `elu`, `selu`, `swish`, `gelu`).
    pub activation: String,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            hidden: 5,
            activation: "relu".into(),
        }
    }
}

/// One `[[learners]]` entry.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerEntry {
    /// Column prefix and legend label.
    pub name: String,
    /// `backprop`, `shrink_perturb` or `cbp`.
    #[serde(default = "default_kind")]
    pub kind: String,
    /// SGD step size.
    #[serde(default = "default_lr")]
    pub lr: f32,
    /// L2 weight decay (every weight and bias, as `torch.optim.SGD`).
    #[serde(default)]
    pub weight_decay: f32,
    /// Shrink & Perturb's noise std.
    #[serde(default)]
    pub noise_std: f32,
    /// Generate-and-test (`cbp`).
    #[serde(default)]
    pub cbp: CbpConfig,
}

/// `[logging]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BinConfig {
    /// Examples per history row (the reference bins 20,000 = 2T).
    pub bin: usize,
    /// Checkpoint every this many rows (and at the end).
    pub checkpoint_every: u64,
}

impl Default for BinConfig {
    fn default() -> Self {
        BinConfig {
            bin: 20_000,
            checkpoint_every: 5,
        }
    }
}

fn default_runs_dir() -> String {
    "runs".into()
}
fn default_seeds() -> usize {
    10
}
fn default_kind() -> String {
    "backprop".into()
}
fn default_lr() -> f32 {
    0.01
}

impl BitFlippingConfig {
    /// Checks every value, naming the key it rejects; returns the activation.
    pub fn validate(&self) -> Result<Activation> {
        let p = &self.problem;
        if p.batch_size == 0 || p.flip_every == 0 || !p.flip_every.is_multiple_of(p.batch_size) {
            return Err(Error::config(
                "problem.batch_size",
                format!(
                    "{} with flip_every {} (a divisor of flip_every, >= 1)",
                    p.batch_size, p.flip_every
                ),
            ));
        }
        if p.examples == 0 || !p.examples.is_multiple_of(p.flip_every) {
            return Err(Error::config(
                "problem.examples",
                format!(
                    "{} is not a positive multiple of flip_every {}",
                    p.examples, p.flip_every
                ),
            ));
        }
        if !["one", "all"].contains(&p.flip.as_str()) {
            return Err(Error::config(
                "problem.flip",
                format!("`{}` is not one of one, all", p.flip),
            ));
        }
        let bin = self.logging.bin;
        if bin == 0 || !bin.is_multiple_of(p.batch_size) || !p.examples.is_multiple_of(bin) {
            return Err(Error::config(
                "logging.bin",
                format!(
                    "{bin}: a multiple of batch_size {} dividing examples {}",
                    p.batch_size, p.examples
                ),
            ));
        }
        if self.seeds == 0 || self.learners.is_empty() || self.net.hidden == 0 {
            return Err(Error::config(
                "seeds",
                "seeds >= 1, net.hidden >= 1 and at least one [[learners]] entry",
            ));
        }
        let activation = Activation::parse(&self.net.activation).ok_or_else(|| {
            Error::config(
                "net.activation",
                format!("`{}` is not an activation", self.net.activation),
            )
        })?;
        for (i, l) in self.learners.iter().enumerate() {
            let key = format!("learners[{i}]");
            check_learner(&l.kind, l.noise_std, &key)?;
            if !(l.lr > 0.0 && l.lr.is_finite() && l.weight_decay >= 0.0) {
                return Err(Error::config(
                    key,
                    format!(
                        "lr {} and weight_decay {}: lr > 0, weight_decay >= 0",
                        l.lr, l.weight_decay
                    ),
                ));
            }
            if GNT_KINDS.contains(&l.kind.as_str()) {
                l.cbp
                    .gnt(&l.kind, activation, 0, &format!("learners[{i}].cbp"))?;
            }
            if self.learners[..i].iter().any(|o| o.name == l.name) {
                return Err(Error::config(key, format!("the name `{}` twice", l.name)));
            }
        }
        Ok(activation)
    }
}

history_row! {
    /// One row per bin.
    pub struct BinRow {
        /// Examples seen at the end of the bin.
        pub examples: u64,
        /// The task (flip period) of the bin's last example.
        pub task: u64,
    }
}

/// Where a run's results are.
#[derive(Clone, Debug)]
pub struct BitFlippingOutcome {
    /// The run folder.
    pub run_dir: PathBuf,
    /// Every bin's row (across resumes).
    pub history: History,
    /// Per learner (config order): its mean squared error over seeds in the last bin.
    pub last_bin_error: Vec<(String, f64)>,
    /// Optimizer steps per second of this call (all replicas at once).
    pub steps_per_second: f64,
    /// Kernel launches per optimizer step in this call.
    pub launches_per_step: Option<f64>,
}

/// Salt of the stream seeds.
const STREAM_SEED_MIX: u64 = 0xB17F_11B5_0000_0001;

/// Examples generated per stream chunk: the largest divisor of `flip_every` that is a multiple of
/// the batch size and at most 4096.
fn chunk_examples(p: &ProblemConfig) -> usize {
    (1..=4096usize.min(p.flip_every))
        .rev()
        .find(|c| p.flip_every.is_multiple_of(*c) && c.is_multiple_of(p.batch_size))
        .unwrap_or(p.batch_size)
}

/// The experiment's state.
struct BitFlipping {
    config: BitFlippingConfig,
    device: Device,
    trainer: Trainer<Replicas<Mlp>>,
    streams: Vec<SlowlyChangingRegression>,
    /// Chunk index, inputs `[C, R, d]`, targets `[C, R, 1]`.
    chunk: Option<(usize, Tensor, Tensor)>,
    step: u64,
    rng: Rng,
}

/// The learner network of seed `seed` (see the module docs).
fn learner_net(
    config: &BitFlippingConfig,
    activation: Activation,
    seed: u64,
    device: &Device,
) -> Result<Mlp> {
    let mut rng = Rng::new(seed);
    let inputs = config.problem.inputs;
    let hidden = Linear::new(
        inputs,
        config.net.hidden,
        true,
        Init::KaimingUniform,
        &mut rng,
        device,
    )?;
    // Init::KaimingUniform has ReLU's gain √2; rescale to the activation's.
    let gain = match activation {
        Activation::Swish | Activation::Elu => Activation::Relu.gain(),
        a => a.gain(),
    };
    let mut hidden = hidden;
    let scaled = hidden
        .weight
        .value()
        .mul_scalar(gain / std::f32::consts::SQRT_2)?;
    hidden.weight.set(scaled)?;
    let out = Linear::new(
        config.net.hidden,
        1,
        true,
        Init::LecunUniform,
        &mut rng,
        device,
    )?;
    Ok(Mlp {
        layers: vec![hidden, out],
        activation,
    })
}

impl BitFlipping {
    fn new(config: &BitFlippingConfig) -> Result<BitFlipping> {
        let activation = config.validate()?;
        let device = Device::default()?;
        let seeds: Vec<u64> = (0..config.seeds as u64)
            .map(|s| config.seed.wrapping_mul(1_000_003).wrapping_add(s))
            .collect();
        let nets = (0..config.learners.len())
            .flat_map(|_| seeds.iter())
            .map(|&s| learner_net(config, activation, s, &device))
            .collect::<Result<Vec<_>>>()?;
        let model = Replicas::stack(nets)?;
        let p = &config.problem;
        let streams = seeds
            .iter()
            .map(|&s| {
                SlowlyChangingRegression::new(
                    RegressionConfig {
                        inputs: p.inputs,
                        flipping: p.flipping,
                        flip_every: p.flip_every,
                        hidden: p.target_hidden,
                        beta: p.beta,
                        batch_size: chunk_examples(p),
                        tasks: p.examples / p.flip_every,
                        bias_input: false,
                        redraw_all: p.flip == "all",
                        seed: s ^ STREAM_SEED_MIX,
                    },
                    &device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let per_replica = |f: &dyn Fn(&LearnerEntry) -> f32| -> Vec<f32> {
            config
                .learners
                .iter()
                .flat_map(|l| std::iter::repeat_n(f(l), config.seeds))
                .collect()
        };
        let scales = per_replica(&|l| l.lr)
            .into_iter()
            .zip(per_replica(&|l| l.weight_decay))
            .map(|(lr, weight_decay)| ReplicaScale { lr, weight_decay })
            .collect();
        let method = Method::Sgd {
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
        };
        let optimizer = Optimizer::new(method, ParamGroup::all(1.0))?.with_replicas(scales)?;
        let mut trainer = Trainer::new(model, optimizer, LrSchedule::constant(1.0), Mse);
        let noise = per_replica(&|l| {
            if l.kind == "shrink_perturb" {
                l.noise_std
            } else {
                0.0
            }
        });
        if noise.iter().any(|&s| s > 0.0) {
            trainer = trainer.with_hook(Perturb::new(noise, config.seed ^ 0x5_4E70)?);
        }
        for kind in GNT_KINDS {
            let group: Vec<&LearnerEntry> = (config.learners.iter())
                .filter(|l| l.kind == kind)
                .collect();
            let Some(&first) = group.first() else {
                continue;
            };
            if group.iter().any(|l| !same_but_rate(&l.cbp, &first.cbp)) {
                return Err(Error::config(
                    "learners.cbp",
                    format!(
                        "{kind} learners that differ in more than replacement_rate (one \
                         generate-and-test runs every {kind} replica)"
                    ),
                ));
            }
            let seed = config.seed ^ 0xC_B000;
            let gnt = first.cbp.gnt(kind, activation, seed, "learners.cbp")?;
            let rates = per_replica(&|l| match l.kind == kind {
                true => l.cbp.replacement_rate,
                false => 0.0,
            });
            trainer = trainer.with_hook(
                GenerateAndTest::new(gnt, LayerUnits::stack(1))?.with_replica_rates(rates)?,
            );
        }
        Ok(BitFlipping {
            config: config.clone(),
            device,
            trainer,
            streams,
            chunk: None,
            step: 0,
            rng: Rng::new(config.seed),
        })
    }

    /// The batch of optimizer step `step`: `[R, b, m]` inputs and `[R, b, 1]` targets.
    fn batch(&mut self, step: u64) -> Result<(usize, Batch)> {
        let p = self.config.problem.clone();
        let chunk_len = chunk_examples(&p);
        let first = step as usize * p.batch_size;
        let index = first / chunk_len;
        if self.chunk.as_ref().map(|c| c.0) != Some(index) {
            self.chunk = Some(self.load_chunk(index)?);
        }
        let (_, x, y) = self.chunk.as_ref().expect("chunk loaded");
        let offset = first - index * chunk_len;
        let rows = |t: &Tensor| -> Result<Tensor> {
            let part = t.narrow(0, offset, p.batch_size)?;
            match p.batch_size {
                1 => part.reshape(&[part.shape()[1] as isize, 1, -1]),
                _ => part.permute(&[1, 0, 2])?.contiguous(),
            }
        };
        let task = first / p.flip_every;
        Ok((
            task,
            Batch {
                inputs: rows(x)?,
                targets: rows(y)?,
            },
        ))
    }

    /// Chunk `index` of every seed's stream, repeated for every learner: `[C, R, ·]`.
    fn load_chunk(&mut self, index: usize) -> Result<(usize, Tensor, Tensor)> {
        let learners = self.config.learners.len();
        let mut xs = Vec::new();
        let mut ys = Vec::new();
        for stream in &mut self.streams {
            let (_, batch) = stream.batch_at(index)?;
            xs.push(batch.inputs);
            ys.push(batch.targets);
        }
        let tile = |parts: Vec<Tensor>| -> Result<Tensor> {
            let stacked = Tensor::stack(&parts.iter().collect::<Vec<_>>(), 1)?; // [C, S, d]
            let s = stacked.shape().to_vec();
            stacked
                .unsqueeze(1)?
                .expand(&[s[0], learners, s[1], s[2]])?
                .contiguous()?
                .reshape(&[s[0] as isize, (learners * s[1]) as isize, s[2] as isize])
        };
        Ok((index, tile(xs)?, tile(ys)?))
    }
}

/// Whether two CBP configs differ at most in their replacement rate.
fn same_but_rate(a: &CbpConfig, b: &CbpConfig) -> bool {
    CbpConfig {
        replacement_rate: b.replacement_rate,
        ..a.clone()
    } == *b
}

impl Experiment for BitFlipping {
    fn device(&self) -> Option<&Device> {
        Some(&self.device)
    }

    fn units(&self) -> u64 {
        (self.config.problem.examples / self.config.logging.bin) as u64
    }

    fn unit_name(&self) -> &str {
        "bins"
    }

    fn checkpoint_every(&self) -> u64 {
        self.config.logging.checkpoint_every
    }

    fn run_unit(&mut self, _unit: u64, history: &mut History) -> Result<String> {
        let steps = (self.config.logging.bin / self.config.problem.batch_size) as u64;
        let mut task = 0;
        for _ in 0..steps {
            let (t, batch) = self.batch(self.step)?;
            self.trainer.step(&batch, &mut self.rng)?;
            self.step += 1;
            task = t;
        }
        let logs = self.trainer.log_replicas()?;
        let examples = self.step * self.config.problem.batch_size as u64;
        history.push(&BinRow {
            examples,
            task: task as u64,
        })?;
        let mut line = Vec::new();
        let seeds = self.config.seeds;
        for (l, learner) in self.config.learners.iter().enumerate() {
            let errors: Vec<f64> = logs[l * seeds..(l + 1) * seeds]
                .iter()
                .map(|m| f64::from(m.get("loss").copied().unwrap_or(f32::NAN)))
                .collect();
            let (mean, se) = mean_and_se(&errors);
            history.set(&format!("{}_error", learner.name), Value::F64(mean))?;
            history.set(&format!("{}_se", learner.name), Value::F64(se))?;
            for (s, e) in errors.iter().enumerate() {
                history.set(&format!("{}_s{s}", learner.name), Value::F64(*e))?;
            }
            line.push(format!("{} {mean:.3}", learner.name));
        }
        Ok(format!("{examples} examples: {}", line.join(", ")))
    }

    fn save(&self) -> Result<Record> {
        Ok(Record::default()
            .nest("trainer", self.trainer.save_state()?)
            .nest("rng", self.rng.save_state()?)
            .with_value("step", self.step))
    }

    fn restore(&mut self, record: &Record) -> Result<()> {
        self.trainer.load_state(&record.part("trainer"))?;
        self.rng.load_state(&record.part("rng"))?;
        self.step = record.value("step")?;
        self.chunk = None;
        Ok(())
    }

    fn finish(&mut self, run: &RunDir, history: &History, summary: &mut Summary) -> Result<()> {
        let c = &self.config;
        let panel = c.learners.iter().fold(
            Panel::new("squared error per bin (mean over seeds)", "squared error"),
            |p, l| p.line(&format!("{}_error", l.name), &l.name),
        );
        let figure = Figure {
            title: format!(
                "{}: bit-flipping, {} seeds, bins of {} examples",
                c.name, c.seeds, c.logging.bin
            ),
            x: "examples".into(),
            log_x: false,
            panels: vec![panel],
            markers: Vec::new(),
        };
        plot_history(run.file("bit_flipping.png"), history, &figure)?;
        for (name, error) in last_bin_errors(c, history) {
            summary.set(&format!("{name}_last_bin_error"), error);
        }
        summary.set("steps", self.step as i64);
        Ok(())
    }

    fn seeds(&self) -> Vec<(&'static str, u64)> {
        vec![("base", self.config.seed)]
    }

    fn steps(&self) -> u64 {
        self.step
    }
}

/// The mean and its standard error (`sd / √n`, 0 for one value).
fn mean_and_se(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (var / n).sqrt())
}

/// Each learner's error in the history's last row.
fn last_bin_errors(config: &BitFlippingConfig, history: &History) -> Vec<(String, f64)> {
    let last = history.rows().saturating_sub(1);
    config
        .learners
        .iter()
        .map(|l| {
            let error = history
                .cell(&format!("{}_error", l.name), last)
                .and_then(Value::as_f64)
                .unwrap_or(f64::NAN);
            (l.name.clone(), error)
        })
        .collect()
}

/// Runs (or resumes) the benchmark described by `config`; `resolved_toml` is saved as the run's
/// `config.toml`.
pub fn run_bit_flipping(
    config: &BitFlippingConfig,
    resolved_toml: &str,
    options: RunOptions,
) -> Result<BitFlippingOutcome> {
    let mut experiment = BitFlipping::new(config)?;
    let outcome = run_experiment(
        &mut experiment,
        &config.runs_dir,
        &config.name,
        resolved_toml,
        History::of::<BinRow>(),
        options,
    )?;
    let steps_run = outcome.units_run * (config.logging.bin / config.problem.batch_size) as u64;
    let seconds = outcome.units_run as f64 / outcome.units_per_second.max(1e-12);
    Ok(BitFlippingOutcome {
        run_dir: outcome.run_dir,
        last_bin_error: last_bin_errors(config, &outcome.history),
        steps_per_second: steps_run as f64 / seconds.max(1e-9),
        launches_per_step: outcome.launches_per_step,
        history: outcome.history,
    })
}
