//! The slowly-changing regression problem (the bit-flipping problem of Dohare, Sutton & Mahmood,
//! 2021, and of Dohare et al., 2024), following the reference implementation
//! (`shibhansh/loss-of-plasticity`: `lop/slowly_changing_regression/slowly_changing_regression.py`
//! with `flip_one`, and `lop/nets/fix_ltu_net.py`).
//!
//! **Inputs.** Each example has `m` bits: the first `f` are the *flipping* bits, constant within a
//! task, and the other `m − f` are drawn uniformly from {0, 1} for every example. The flipping bits
//! of task 0 are uniform random; at the start of each later task (every `T` examples) exactly one of
//! them, chosen uniformly, flips. (The reference puts the flipping bits first, as here.) With
//! `bias_input` (the default) a constant 1 is appended, as the bias input of the papers' learner:
//! the learner sees `[N, m + 1]`, the target network the `m` bits.
//!
//! **Targets.** A fixed random target network of linear threshold units (LTUs): `W ∈ {±1}^{h×m}`,
//! `b ∈ {±1}^h`, `v ∈ {±1}^h`, `c ∈ {±1}`, every sign a fair coin. With
//! `S_i = (m − Σ_j W_ij + b_i) / 2` (the reference's expression, roughly the number of negative
//! input weights) and threshold `τ_i = β (m + 1) − S_i`, the hidden features are
//! `φ_i(x) = [ (W x + b)_i > τ_i ]` and the target is `y = v · φ(x) + c`.
//!
//! Defaults: `m = 20`, `f = 15`, `T = 10000`, `h = 100`, `β = 0.7`, batch size 1, 100 tasks
//! (10⁶ examples, the reference's learner runs). Inputs and targets are generated on the device a
//! chunk of up to 4096 examples at a time (the random bits from a seeded `Rng` per task and chunk,
//! the products and thresholds as tensor ops) and served as views.

use super::{tag, Position, Schedule, TaskStream};
use crate::host::{mix, HostRng};
use dynlab_runtime::{DType, Device, Error, Result, Rng, Tensor};
use dynlab_train::Batch;

/// Examples generated at once (rounded down to whole batches, at least one batch).
const CHUNK_ROWS: usize = 4096;

/// The problem's sizes, the seed and the batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RegressionConfig {
    /// `m`: input bits seen by the target network.
    pub inputs: usize,
    /// `f`: flipping bits (the first `f` inputs), `f ≤ m`.
    pub flipping: usize,
    /// `T`: examples per task (between two flips).
    pub flip_every: usize,
    /// `h`: LTUs of the target network.
    pub hidden: usize,
    /// `β`: the LTU threshold's fraction.
    pub beta: f32,
    /// Examples per step.
    pub batch_size: usize,
    /// Number of tasks (flip periods).
    pub tasks: usize,
    /// Append a constant-1 input column (the learner's bias input).
    pub bias_input: bool,
    /// At each task change re-draw all `f` flipping bits uniformly (the reference code's default,
    /// `flip_one = False`) instead of flipping one (the paper's description, the default here).
    pub redraw_all: bool,
    /// Seed of the target network, the flips and the random bits.
    pub seed: u64,
}

impl Default for RegressionConfig {
    fn default() -> Self {
        RegressionConfig {
            inputs: 20,
            flipping: 15,
            flip_every: 10_000,
            hidden: 100,
            beta: 0.7,
            batch_size: 1,
            tasks: 100,
            bias_input: true,
            redraw_all: false,
            seed: 0,
        }
    }
}

/// The target network of LTUs (see the module doc), row-major on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct LtuTarget {
    /// `W`, `[h, m]`, entries ±1.
    pub weights: Vec<f32>,
    /// `b`, `[h]`, entries ±1.
    pub bias: Vec<f32>,
    /// `τ`, `[h]`: `β (m + 1) − (m − Σ_j W_ij + b_i) / 2`.
    pub thresholds: Vec<f32>,
    /// `v`, `[h]`, entries ±1.
    pub out_weights: Vec<f32>,
    /// `c`, ±1.
    pub out_bias: f32,
}

impl LtuTarget {
    /// Draws the signs from `rng` (weights row by row, then `b`, `v`, `c`) and sets the thresholds.
    fn draw(rng: &mut HostRng, m: usize, h: usize, beta: f32) -> LtuTarget {
        let mut sign = || if rng.bit() { 1.0f32 } else { -1.0 };
        let weights: Vec<f32> = (0..h * m).map(|_| sign()).collect();
        let bias: Vec<f32> = (0..h).map(|_| sign()).collect();
        let out_weights: Vec<f32> = (0..h).map(|_| sign()).collect();
        let out_bias = sign();
        let thresholds = (0..h)
            .map(|i| {
                let sum: f64 = weights[i * m..(i + 1) * m]
                    .iter()
                    .map(|&w| f64::from(w))
                    .sum();
                let s = (m as f64 - sum + f64::from(bias[i])) / 2.0;
                (f64::from(beta) * (m as f64 + 1.0) - s) as f32
            })
            .collect();
        LtuTarget {
            weights,
            bias,
            thresholds,
            out_weights,
            out_bias,
        }
    }
}

/// The target network's tensors on the device.
#[derive(Clone, Debug)]
struct DeviceTarget {
    /// `Wᵀ`, `[m, h]`.
    weights_t: Tensor,
    bias: Tensor,
    thresholds: Tensor,
    /// `v` as a column `[h, 1]`.
    out_weights: Tensor,
    out_bias: f32,
}

impl DeviceTarget {
    fn upload(t: &LtuTarget, m: usize, h: usize, device: &Device) -> Result<DeviceTarget> {
        let wt: Vec<f32> = (0..m * h).map(|k| t.weights[(k % h) * m + k / h]).collect();
        Ok(DeviceTarget {
            weights_t: Tensor::from_vec(wt, &[m, h], device)?,
            bias: Tensor::from_slice(&t.bias, &[h], device)?,
            thresholds: Tensor::from_slice(&t.thresholds, &[h], device)?,
            out_weights: Tensor::from_slice(&t.out_weights, &[h, 1], device)?,
            out_bias: t.out_bias,
        })
    }

    /// `y = v · [x Wᵀ + b > τ] + c` for bits `x [r, m]`: `[r, 1]`.
    fn targets(&self, x: &Tensor) -> Result<Tensor> {
        let features = x
            .matmul(&self.weights_t)?
            .add(&self.bias)?
            .gt(&self.thresholds)?;
        features
            .matmul(&self.out_weights)?
            .add_scalar(self.out_bias)
    }
}

/// The slowly-changing regression stream (see the module doc).
#[derive(Clone, Debug)]
pub struct SlowlyChangingRegression {
    config: RegressionConfig,
    schedule: Schedule,
    target: LtuTarget,
    device_target: DeviceTarget,
    device: Device,
    /// The chunk being served: (task, chunk index), inputs and targets.
    chunk: Option<((usize, usize), Tensor, Tensor)>,
    position: Position,
}

impl SlowlyChangingRegression {
    /// The stream of `config` on `device`.
    pub fn new(config: RegressionConfig, device: &Device) -> Result<SlowlyChangingRegression> {
        let op = "SlowlyChangingRegression::new";
        let c = config;
        let weights_len = c.hidden.checked_mul(c.inputs);
        if c.inputs == 0
            || c.flipping > c.inputs
            || c.hidden == 0
            || !c.beta.is_finite()
            || weights_len.is_none()
        {
            return Err(Error::value(
                op,
                format!("{c:?}"),
                "inputs >= 1, flipping <= inputs, hidden >= 1, a finite beta",
            ));
        }
        let schedule = Schedule::new(c.tasks, c.flip_every, c.batch_size)?;
        let target = LtuTarget::draw(
            &mut HostRng::new(mix(c.seed, &[tag::TARGET])),
            c.inputs,
            c.hidden,
            c.beta,
        );
        let device_target = DeviceTarget::upload(&target, c.inputs, c.hidden, device)?;
        Ok(SlowlyChangingRegression {
            config,
            schedule,
            target,
            device_target,
            device: device.clone(),
            chunk: None,
            position: Position::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RegressionConfig {
        &self.config
    }

    /// The target network.
    pub fn target(&self) -> &LtuTarget {
        &self.target
    }

    /// The flipping bits (0/1) of `task` (`None` past the last task): task 0's drawn from the seed,
    /// then for each later task `t` the bit [`SlowlyChangingRegression::flipped_bit`]`(t)` flipped
    /// (replays the flips, `O(task)`); with `redraw_all`, task `t`'s own uniform draw.
    pub fn flipping_bits(&self, task: usize) -> Option<Vec<u8>> {
        let c = &self.config;
        if task >= c.tasks {
            return None;
        }
        if c.redraw_all && task > 0 {
            let mut rng = HostRng::new(mix(c.seed, &[tag::FLIPS, task as u64, 1]));
            return Some((0..c.flipping).map(|_| u8::from(rng.bit())).collect());
        }
        let mut rng = HostRng::new(mix(c.seed, &[tag::FLIPS]));
        let mut bits: Vec<u8> = (0..c.flipping).map(|_| u8::from(rng.bit())).collect();
        for t in 1..=task {
            if let Some(i) = self.flipped_bit(t) {
                bits[i] ^= 1;
            }
        }
        Some(bits)
    }

    /// The flipping bit that changes at the start of `task` (`None` for task 0, without flipping
    /// bits, or with `redraw_all`), uniform on `0..f`.
    pub fn flipped_bit(&self, task: usize) -> Option<usize> {
        let f = self.config.flipping;
        let salt = [tag::FLIPS, task as u64];
        let flips = task > 0 && f > 0 && !self.config.redraw_all;
        flips.then(|| HostRng::new(mix(self.config.seed, &salt)).below(f))
    }

    /// Input columns served: `m`, plus 1 with the bias input.
    pub fn input_width(&self) -> usize {
        self.config.inputs + usize::from(self.config.bias_input)
    }

    /// Rows per generated chunk: whole batches, about [`CHUNK_ROWS`].
    fn chunk_rows(&self) -> usize {
        let b = self.config.batch_size;
        (CHUNK_ROWS / b).max(1) * b
    }

    /// Inputs `[r, width]` and targets `[r, 1]` of chunk `chunk` of `task`.
    fn generate(&self, task: usize, chunk: usize) -> Result<(Tensor, Tensor)> {
        let c = &self.config;
        let start = chunk * self.chunk_rows();
        let rows = self.chunk_rows().min(c.flip_every - start);
        let mut parts = Vec::new();
        if let Some(bits) = self.flipping_bits(task).filter(|b| !b.is_empty()) {
            let bits: Vec<f32> = bits.iter().map(|&b| f32::from(b)).collect();
            let row = Tensor::from_vec(bits, &[1, c.flipping], &self.device)?;
            parts.push(row.expand(&[rows, c.flipping])?);
        }
        if c.inputs > c.flipping {
            let mut rng = Rng::new(mix(c.seed, &[tag::BITS, task as u64, chunk as u64]));
            let shape = [rows, c.inputs - c.flipping];
            let random = Tensor::randint(&shape, 0, 2, &mut rng, &self.device)?;
            parts.push(random.to_dtype(DType::F32)?);
        }
        let x = Tensor::cat(&parts.iter().collect::<Vec<_>>(), 1)?;
        let y = self.device_target.targets(&x)?;
        let inputs = match c.bias_input {
            true => Tensor::cat(&[&x, &Tensor::ones(&[rows, 1], &self.device)?], 1)?,
            false => x,
        };
        Ok((inputs, y))
    }
}

impl TaskStream for SlowlyChangingRegression {
    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)> {
        let op = "SlowlyChangingRegression::batch_at";
        let (task, start, len) = self.schedule.locate(op, step)?;
        let per_chunk = self.chunk_rows();
        let key = (task, start / per_chunk);
        let (inputs, targets) = match &self.chunk {
            Some((k, x, y)) if *k == key => (x.clone(), y.clone()),
            _ => {
                let (x, y) = self.generate(task, key.1)?;
                self.chunk = Some((key, x.clone(), y.clone()));
                (x, y)
            }
        };
        let offset = start - key.1 * per_chunk;
        Ok((
            task,
            Batch {
                inputs: inputs.narrow(0, offset, len)?,
                targets: targets.narrow(0, offset, len)?,
            },
        ))
    }

    fn position(&self) -> usize {
        self.position.0
    }

    fn seek(&mut self, step: usize) -> Result<()> {
        self.position
            .seek("SlowlyChangingRegression::seek", step, &self.schedule)
    }
}
