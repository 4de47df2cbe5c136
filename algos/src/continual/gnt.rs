//! Generate-and-test, the unit replacement of continual backprop (CBP; Dohare, Hernandez-Garcia,
//! Lan, Rahman, Mahmood & Sutton, "Loss of plasticity in deep continual learning", Nature 632,
//! 2024, Algorithm 1; reference code `shibhansh/loss-of-plasticity`, `lop/algos/gnt.py`).
//!
//! Every step, after the optimizer step, for each hidden unit `i` of a layer (features `h` of this
//! step, decay `η`), on the device in one launch per layer (`Tensor::unit_utility_step`):
//!
//! ```text
//! age_i ← age_i + 1
//! f_i ← η f_i + (1 − η) mean_b h_bi            f̂_i = f_i / (1 − η^age_i)
//! u_i ← η u_i + (1 − η) y_i                     û_i = u_i / (1 − η^age_i)
//! ```
//!
//! with the instantaneous utility `y_i` one of [`UnitUtility`]: contribution `|w_out,i|·mean|h_i|`,
//! zero contribution `|w_out,i|·mean|h_i − f̂_i|`, adaptable contribution
//! `|w_out,i|·mean|h_i − f̂_i| / |w_in,i|` (`|·|` the mean magnitude of the unit's outgoing or
//! incoming weights).
//!
//! **Replacement.** With `n` eligible units (age above the maturity threshold `m`) the layer owes
//! `ρ n` replacements this step. With `accumulate` the owed fraction accumulates and `⌊acc⌋` units are
//! replaced (`acc −= ⌊acc⌋`); without it (the reference's default) `⌊ρ n⌋` are, and when `ρ n < 1` one
//! unit with probability `ρ n`. The eligible units of lowest `û` are replaced: input weights redrawn
//! from the layer's initial distribution `U(−b, b)` ([`FreshInit`]), input bias 0, the next layer's
//! bias corrected by the unit's mean contribution `b_next += W_next[i, :]·f̂_i`, output weights 0,
//! `u = f = age = 0`, and Adam's moments and per-element step counts zeroed for the unit's input
//! weights, input bias and output weights. Choosing the units reads the layer's utilities back once
//! (only on steps that replace); everything else is a handful of masked device ops per layer.
//!
//! **Reference quirks, behind flags.** `gnt.py` zeroes `f` before it applies the bias correction, so
//! its correction adds nothing: `bias_transfer = false` reproduces that (the default applies the
//! correction the algorithm describes). SGD momentum buffers are left as they are (as in the
//! reference, which resets only AdamGnT's state). The bit-flipping reference config's
//! `maturity_threshold: 100` is read under another key, so its runs used maturity 10: the configs
//! here default to the paper's 100 and say so.
//!
//! **Rank restoring** (RR-CBP2, `GntConfig::rank_restoring`): the same utilities and choice, with
//! fresh input weights generated in directions the kept units do not span, in the geometry of the
//! layer's input covariance, and biases that centre the new units ([`super::rank_restoring`]).
//!
//! **Layers** ([`UnitShape`]): dense layers (`[in, units]` weights, `[R, in, units]` for stacked
//! replicas, the next layer's `[units, out]`), each replica replacing its own units at its own rate
//! (0: backprop alone); and convolutions, whose units are output channels (`[units, C, kh, kw]`
//! weights, features `[N, units, H, W]` averaged over positions as well as examples), followed by a
//! convolution (`[out, units, kh', kw']`: the unit's input-channel slice) or, flattened, by a dense
//! layer (`[units·S, out]`: the unit's `S` rows), as `lop/algos/convGnT.py` has them. For a
//! convolution the bias transfer sums the next layer's slice over its kernel positions (or its `S`
//! rows), `b_next,o += f̂_i Σ_k W_next[o, i, k]`, and fresh weights are drawn with fan-in `C·kh·kw`.

use super::rank_restoring::{self, RrConfig, RrCounts};
use dynlab_data::HostRng;
use dynlab_models::{Module, Param, Record, Stateful};
use dynlab_optim::{Optimizer, ParamState};
use dynlab_runtime::{Error, Result, Rng, Tensor, UnitLayout, UnitStats, UnitUtility, WeightView};
use dynlab_train::{Hook, LogView, StepView};

/// Distribution of a replaced unit's input weights: `U(−b, b)` with `b` from the layer's fan-in
/// (and fan-out) as `gnt.py`'s `compute_bounds` has it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FreshInit {
    /// `b = gain·√(3 / fan_in)` (Kaiming uniform; gain √2 for ReLU).
    Kaiming {
        /// The activation's gain.
        gain: f32,
    },
    /// `b = √(1 / fan_in)` (PyTorch's default linear init).
    Default,
    /// `b = √(3 / fan_in)` (LeCun; the reference uses it for SELU).
    Lecun,
    /// `b = gain·√(6 / (fan_in + fan_out))` (Xavier uniform).
    Xavier {
        /// The activation's gain.
        gain: f32,
    },
}

impl FreshInit {
    /// The half-width `b` for a layer of `fan_in` inputs and `fan_out` units.
    pub fn bound(self, fan_in: usize, fan_out: usize) -> f32 {
        let fan_in = fan_in.max(1) as f32;
        match self {
            FreshInit::Kaiming { gain } => gain * (3.0 / fan_in).sqrt(),
            FreshInit::Default => (1.0 / fan_in).sqrt(),
            FreshInit::Lecun => (3.0 / fan_in).sqrt(),
            FreshInit::Xavier { gain } => gain * (6.0 / (fan_in + fan_out as f32)).sqrt(),
        }
    }
}

/// Generate-and-test's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GntConfig {
    /// Replacement rate `ρ`: replacements owed per eligible unit and step.
    pub replacement_rate: f32,
    /// Decay `η` of the running utility and mean feature, in `[0, 1)`.
    pub decay: f32,
    /// Maturity threshold `m`: units older than this are eligible.
    pub maturity: u64,
    /// The utility units are ranked by.
    pub utility: UnitUtility,
    /// Accumulate fractional replacements (else: replace one with probability `ρ n` when `ρ n < 1`).
    pub accumulate: bool,
    /// Correct the next layer's bias by a replaced unit's mean contribution (`false`: the
    /// reference code's effective behaviour, no correction).
    pub bias_transfer: bool,
    /// Distribution of fresh input weights.
    pub init: FreshInit,
    /// Generate fresh input weights by rank restoring (RR-CBP2, [`super::rank_restoring`]) instead
    /// of drawing them from `init`.
    pub rank_restoring: Option<RrConfig>,
    /// Seed of the fresh weights and of the replacement coin.
    pub seed: u64,
}

impl GntConfig {
    /// Checks the values, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        let op = "GntConfig";
        if !(self.replacement_rate >= 0.0 && self.replacement_rate.is_finite()) {
            return Err(Error::value(
                op,
                format!("replacement_rate {}", self.replacement_rate),
                "a finite rate >= 0",
            ));
        }
        if !(0.0..1.0).contains(&self.decay) {
            return Err(Error::value(
                op,
                format!("decay {}", self.decay),
                "a decay in [0, 1)",
            ));
        }
        Ok(())
    }
}

/// The name [`GenerateAndTest::generate_and_test`]'s `features` gives the model's input under.
pub const MODEL_INPUT: &str = "input";

/// How a hidden layer and the layer after it hold its units.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum UnitShape {
    /// A dense layer `[R?, in, units]` followed by a dense `[R?, units, out]`.
    #[default]
    Dense,
    /// A convolution `[units, C, kh, kw]` followed by a convolution `[out, units, kh', kw']`.
    Conv,
    /// A convolution `[units, C, kh, kw]` whose features, flattened to `S` values per unit, feed a
    /// dense layer `[units·S, out]`.
    ConvToDense,
}

/// One hidden layer generate-and-test works on: the tap of its features and the names of its
/// parameters and of the next layer's.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerUnits {
    /// How the two layers hold the units.
    pub shape: UnitShape,
    /// The tap holding the layer's inputs ([`MODEL_INPUT`] for the model's input).
    pub input: String,
    /// The tap holding the layer's features (after the activation), `[N, units]` or `[R, N, units]`
    /// for a dense layer, `[N, units, H, W]` or `[N, units·H·W]` for a convolution.
    pub tap: String,
    /// The layer's weight, `[in, units]` (`[units, C, kh, kw]` for a convolution).
    pub weight_in: String,
    /// The layer's bias, `[units]`.
    pub bias_in: Option<String>,
    /// The next layer's weight, `[units, out]` (see [`UnitShape`]).
    pub weight_out: String,
    /// The next layer's bias, `[out]`.
    pub bias_out: Option<String>,
}

impl LayerUnits {
    /// The hidden layers of a stack of dense layers `layers.0 … layers.{hidden}` whose features are
    /// tapped `hidden.i` (the zoo's `Mlp` and `DeepFfnn`).
    pub fn stack(hidden: usize) -> Vec<LayerUnits> {
        (0..hidden)
            .map(|i| LayerUnits {
                shape: UnitShape::Dense,
                input: match i {
                    0 => MODEL_INPUT.to_string(),
                    _ => format!("hidden.{}", i - 1),
                },
                tap: format!("hidden.{i}"),
                weight_in: format!("layers.{i}.weight"),
                bias_in: Some(format!("layers.{i}.bias")),
                weight_out: format!("layers.{}.weight", i + 1),
                bias_out: Some(format!("layers.{}.bias", i + 1)),
            })
            .collect()
    }
}

impl LayerUnits {
    /// The five hidden layers of the zoo's plain `ConvNet` (`conv1 … conv3`, `fc1`, `fc2`, features
    /// tapped `hidden.0 … hidden.4` after each pooling or activation), as `convGnT.py` walks them.
    pub fn convnet() -> Vec<LayerUnits> {
        let layer = |i: usize, shape, own: &str, next: &str| LayerUnits {
            shape,
            input: match i {
                0 => MODEL_INPUT.to_string(),
                _ => format!("hidden.{}", i - 1),
            },
            tap: format!("hidden.{i}"),
            weight_in: format!("{own}.weight"),
            bias_in: Some(format!("{own}.bias")),
            weight_out: format!("{next}.weight"),
            bias_out: Some(format!("{next}.bias")),
        };
        vec![
            layer(0, UnitShape::Conv, "conv1", "conv2"),
            layer(1, UnitShape::Conv, "conv2", "conv3"),
            layer(2, UnitShape::ConvToDense, "conv3", "fc1"),
            layer(3, UnitShape::Dense, "fc1", "fc2"),
            layer(4, UnitShape::Dense, "fc2", "fc3"),
        ]
    }
}

/// How many units a layer replaces this step, given `eligible` units, rate `rate` and the layer's
/// owed fraction `owed` (updated), with the coin for the probabilistic case (see the module docs).
pub fn replacement_count(
    eligible: usize,
    rate: f32,
    accumulate: bool,
    owed: &mut f64,
    coin: &mut HostRng,
) -> usize {
    if eligible == 0 || rate == 0.0 {
        return 0;
    }
    let new = f64::from(rate) * eligible as f64;
    *owed += new;
    let count = if accumulate {
        let whole = owed.floor();
        *owed -= whole;
        whole as usize
    } else if new < 1.0 {
        usize::from(coin.uniform() <= new)
    } else {
        new as usize
    };
    count.min(eligible)
}

/// The `count` eligible units (age above `maturity`) of lowest utility, lowest index first among
/// equals, in increasing order of utility.
pub fn lowest_utility_units(
    utility: &[f32],
    ages: &[u64],
    maturity: u64,
    count: usize,
) -> Vec<usize> {
    let mut eligible: Vec<usize> = (0..utility.len()).filter(|&i| ages[i] > maturity).collect();
    eligible.sort_by(|&a, &b| utility[a].total_cmp(&utility[b]).then(a.cmp(&b)));
    eligible.truncate(count);
    eligible
}

/// One layer's statistics: on the device, and each unit's birth step on the host.
#[derive(Clone, Debug)]
struct LayerState {
    stats: UnitStats,
    /// Step at which each unit (replica-major) was last (re)born.
    births: Vec<u64>,
    /// Owed fractional replacements per replica.
    owed: Vec<f64>,
    /// Units replaced per replica since the last log.
    replaced: Vec<u64>,
    /// Units replaced in total, per replica.
    total: Vec<u64>,
    /// The EMA covariance of the layer's inputs `[R?, d, d]` (rank restoring).
    sigma: Option<Tensor>,
    /// What rank restoring did since the last log.
    rr: RrCounts,
}

/// The generate-and-test hook (see the module docs): add it to a `Trainer` with
/// `with_hook(GenerateAndTest::new(config, layers)?)`.
pub struct GenerateAndTest {
    config: GntConfig,
    layers: Vec<LayerUnits>,
    /// Per-replica replacement rates (`None`: the config's for every replica).
    rates: Option<Vec<f32>>,
    state: Vec<LayerState>,
    steps: u64,
    coin: HostRng,
    draws: Rng,
    /// Rank restoring's direction draws.
    directions: HostRng,
}

/// Salt of the replacement coin's seed.
const COIN_SEED_MIX: u64 = 0xC01D_C0FF_EE00_0003;
/// Salt of rank restoring's direction draws.
const DIRECTION_SEED_MIX: u64 = 0xD12E_C710_0000_0005;

impl GenerateAndTest {
    /// Generate-and-test on `layers` (at least one).
    pub fn new(config: GntConfig, layers: Vec<LayerUnits>) -> Result<GenerateAndTest> {
        config.validate()?;
        if layers.is_empty() {
            return Err(Error::value(
                "GenerateAndTest::new",
                "no layers",
                "at least one hidden layer",
            ));
        }
        if config.rank_restoring.is_some() && layers.iter().any(|l| l.shape != UnitShape::Dense) {
            return Err(Error::value(
                "GenerateAndTest::new",
                "rank restoring on a convolution",
                "rank restoring on dense layers (UnitShape::Dense)",
            ));
        }
        Ok(GenerateAndTest {
            config,
            layers,
            rates: None,
            state: Vec::new(),
            steps: 0,
            coin: HostRng::new(config.seed ^ COIN_SEED_MIX),
            draws: Rng::new(config.seed),
            directions: HostRng::new(config.seed ^ DIRECTION_SEED_MIX),
        })
    }

    /// A replacement rate per replica of a stacked model (0 turns replacement off for a replica,
    /// which then trains by backprop alone).
    pub fn with_replica_rates(mut self, rates: Vec<f32>) -> Result<GenerateAndTest> {
        if let Some(bad) = rates.iter().find(|r| !(**r >= 0.0 && r.is_finite())) {
            return Err(Error::value(
                "GenerateAndTest::with_replica_rates",
                format!("rate {bad}"),
                "finite rates >= 0",
            ));
        }
        self.rates = Some(rates);
        Ok(self)
    }

    /// Units replaced so far in layer `layer`, per replica.
    pub fn replaced(&self, layer: usize) -> Vec<u64> {
        self.state
            .get(layer)
            .map_or_else(Vec::new, |s| s.total.clone())
    }

    /// The device statistics of layer `layer` (after the first step).
    pub fn stats(&self, layer: usize) -> Option<&UnitStats> {
        self.state.get(layer).map(|s| &s.stats)
    }

    /// The EMA covariance of layer `layer`'s inputs (rank restoring, after the first step).
    pub fn covariance(&self, layer: usize) -> Option<&Tensor> {
        self.state.get(layer).and_then(|s| s.sigma.as_ref())
    }

    /// Ages of layer `layer`'s units (replica-major), from the host's birth steps.
    pub fn ages(&self, layer: usize) -> Vec<u64> {
        self.state.get(layer).map_or_else(Vec::new, |s| {
            s.births.iter().map(|&b| self.steps - b).collect()
        })
    }

    /// One step of generate-and-test on `model` (after its optimizer step): the unit statistics
    /// from `features(tap)` (this step's features of each layer) and the weights as they are now,
    /// then the replacements (see the module docs). The trainer calls it after every step.
    pub fn generate_and_test(
        &mut self,
        model: &mut dyn Module,
        optimizer: &mut Optimizer,
        features: &dyn Fn(&str) -> Result<Tensor>,
    ) -> Result<()> {
        let replicas = model.replicas();
        let mut layouts = Vec::new();
        let mut weights = Vec::new();
        let mut hidden = Vec::new();
        for (i, spec) in self.layers.iter().enumerate() {
            let w_in = param(model, &spec.weight_in)?.value().clone();
            let h = features(&spec.tap)?;
            layouts.push(self.layout(i, &w_in, h.shape(), replicas)?);
            weights.push(w_in);
            hidden.push(h);
        }
        self.ensure_state(&layouts, &weights)?;
        self.steps += 1;
        for (i, ((layout, w_in), h)) in layouts.into_iter().zip(weights).zip(hidden).enumerate() {
            let spec = &self.layers[i];
            let w_out = param(model, &spec.weight_out)?.value().clone();
            let (in_view, out_view) = views(spec.shape, &w_in, &w_out, layout);
            h.unit_utility_step(
                layout,
                (&w_in, in_view),
                (&w_out, out_view),
                &mut self.state[i].stats,
                self.config.decay,
                self.config.utility,
            )?;
            let inputs = match self.config.rank_restoring {
                Some(rr) => Some(self.track_covariance(i, &w_in, &features(&spec.input)?, rr)?),
                None => None,
            };
            let counts = self.counts(i, layout);
            if counts.iter().any(|&c| c > 0) {
                let chosen = self.choose(i, layout, &counts)?;
                let fresh = match (self.config.rank_restoring, inputs) {
                    (Some(rr), Some(h)) => Some(self.restored(i, layout, &chosen, &w_in, &h, rr)?),
                    _ => None,
                };
                self.replace(
                    i,
                    layout,
                    &chosen,
                    model,
                    optimizer,
                    replicas.is_some(),
                    fresh,
                )?;
                if self.config.rank_restoring.is_some_and(|rr| rr.reset_owed) {
                    for (owed, _) in (self.state[i].owed.iter_mut())
                        .zip(&counts)
                        .filter(|(_, &c)| c > 0)
                    {
                        *owed = 0.0;
                    }
                }
            }
        }
        Ok(())
    }

    /// Updates layer `layer`'s input covariance from this step's inputs `h` (`[R?, N, d]`) and
    /// returns them.
    fn track_covariance(
        &mut self,
        layer: usize,
        w_in: &Tensor,
        h: &Tensor,
        rr: RrConfig,
    ) -> Result<Tensor> {
        let s = w_in.shape();
        let d = s[s.len() - 2];
        let state = &mut self.state[layer];
        let sigma = match state.sigma.take() {
            Some(sigma) => sigma,
            None => {
                let dims: Vec<usize> = s[..s.len() - 2].iter().copied().chain([d, d]).collect();
                Tensor::zeros(&dims, w_in.device())?
            }
        };
        state.sigma = Some(rank_restoring::update_covariance(&sigma, h, rr.beta)?);
        Ok(h.clone())
    }

    /// Rank-restored input weights (as a tensor of `w_in`'s shape, set at the chosen units'
    /// columns) and biases (`[R?, units]`) for the `chosen` units of layer `layer`.
    fn restored(
        &mut self,
        layer: usize,
        layout: UnitLayout,
        chosen: &[usize],
        w_in: &Tensor,
        h: &Tensor,
        rr: RrConfig,
    ) -> Result<(Tensor, Tensor)> {
        let (r, n) = (layout.replicas, layout.units);
        let d = w_in.shape()[w_in.rank() - 2];
        let state = &mut self.state[layer];
        let sigma = state
            .sigma
            .as_ref()
            .expect("covariance tracked")
            .to_vec::<f32>()?;
        let mut weights = w_in.to_vec::<f32>()?;
        let inputs = h.to_vec::<f32>()?;
        let rows = inputs.len() / (r * d);
        let mut biases = vec![0f32; r * n];
        for replica in 0..r {
            let new: Vec<usize> = (chosen.iter())
                .filter(|&&i| i / n == replica)
                .map(|&i| i % n)
                .collect();
            if new.is_empty() {
                continue;
            }
            let block = &sigma[replica * d * d..(replica + 1) * d * d];
            let sigma64: Vec<f64> = block.iter().map(|&v| f64::from(v)).collect();
            let spectrum =
                rank_restoring::spectrum(&sigma64, d, f64::from(rr.ridge), w_in.device());
            let w_base = replica * d * n;
            let column = |j: usize| -> Vec<f64> {
                (0..d)
                    .map(|i| f64::from(weights[w_base + i * n + j]))
                    .collect()
            };
            let kept: Vec<Vec<f64>> = (0..n).filter(|j| !new.contains(j)).map(column).collect();
            let h_base = replica * rows * d;
            let mean: Vec<f64> = (0..d)
                .map(|k| {
                    let sum: f64 = (0..rows)
                        .map(|b| f64::from(inputs[h_base + b * d + k]))
                        .sum();
                    sum / rows.max(1) as f64
                })
                .collect();
            let g = rank_restoring::generate(
                &spectrum,
                &kept,
                new.len(),
                n,
                &mean,
                &rr,
                &mut self.directions,
            );
            state.rr.add(&g, spectrum.rung);
            for (k, &j) in new.iter().enumerate() {
                for i in 0..d {
                    weights[w_base + i * n + j] = g.weights[k][i] as f32;
                }
                biases[replica * n + j] = g.biases[k] as f32;
            }
        }
        let device = w_in.device();
        let bias_shape: Vec<usize> = w_in.shape()[..w_in.rank() - 2]
            .iter()
            .copied()
            .chain([n])
            .collect();
        Ok((
            Tensor::from_vec(weights, w_in.shape(), device)?,
            Tensor::from_vec(biases, &bias_shape, device)?,
        ))
    }

    fn rate(&self, replica: usize) -> f32 {
        match &self.rates {
            Some(r) => r.get(replica).copied().unwrap_or(0.0),
            None => self.config.replacement_rate,
        }
    }

    /// The layout of `layer`'s units from its weight (`[R?, in, units]` or `[units, C, kh, kw]`)
    /// and the shape of its features.
    fn layout(
        &self,
        layer: usize,
        w_in: &Tensor,
        features: &[usize],
        replicas: Option<usize>,
    ) -> Result<UnitLayout> {
        let spec = &self.layers[layer];
        let shape = w_in.shape();
        let (rank, what) = match spec.shape {
            UnitShape::Dense => (2 + usize::from(replicas.is_some()), "[R?, in, units]"),
            _ => (4, "[units, C, kh, kw] of a model without replicas"),
        };
        if shape.len() != rank || (spec.shape != UnitShape::Dense && replicas.is_some()) {
            return Err(Error::shape(
                "GenerateAndTest",
                format!("`{}` of shape {shape:?}", spec.weight_in),
                format!("a weight of rank {rank} ({what})"),
            ));
        }
        let units = match spec.shape {
            UnitShape::Dense => shape[rank - 1],
            _ => shape[0],
        };
        let replicas = replicas.unwrap_or(1);
        let examples = match spec.shape {
            UnitShape::Dense => features.iter().rev().skip(1).product::<usize>() / replicas,
            _ => features.first().copied().unwrap_or(0),
        };
        let numel: usize = features.iter().product();
        let per_example = replicas * units;
        if examples == 0 || per_example == 0 || !numel.is_multiple_of(examples * per_example) {
            return Err(Error::shape(
                "GenerateAndTest",
                format!("features `{}` of shape {features:?}", spec.tap),
                format!(
                    "[R?, N, {units}] or [N, {units}, …] features of `{}`",
                    spec.weight_in
                ),
            ));
        }
        Ok(UnitLayout {
            replicas,
            units,
            spatial: numel / (examples * per_example),
        })
    }

    fn ensure_state(&mut self, layouts: &[UnitLayout], w_in: &[Tensor]) -> Result<()> {
        if !self.state.is_empty() {
            return Ok(());
        }
        if let Some(rates) = &self.rates {
            if rates.len() != layouts[0].replicas {
                return Err(Error::value(
                    "GenerateAndTest",
                    format!("{} replica rates", rates.len()),
                    format!("one per replica ({})", layouts[0].replicas),
                ));
            }
        }
        for (layout, w) in layouts.iter().zip(w_in) {
            let count = layout.replicas * layout.units;
            let zeros = || Tensor::zeros(&[count], w.device());
            self.state.push(LayerState {
                stats: UnitStats {
                    util: zeros()?,
                    mean_act: zeros()?,
                    ages: zeros()?,
                },
                births: vec![0; count],
                owed: vec![0.0; layout.replicas],
                replaced: vec![0; layout.replicas],
                total: vec![0; layout.replicas],
                sigma: None,
                rr: RrCounts::default(),
            });
        }
        Ok(())
    }

    /// How many units each replica of layer `layer` replaces this step.
    fn counts(&mut self, layer: usize, layout: UnitLayout) -> Vec<usize> {
        let (maturity, accumulate) = (self.config.maturity, self.config.accumulate);
        (0..layout.replicas)
            .map(|r| {
                let rate = self.rate(r);
                let state = &mut self.state[layer];
                let births = &state.births[r * layout.units..(r + 1) * layout.units];
                let eligible = births
                    .iter()
                    .filter(|&&b| self.steps - b > maturity)
                    .count();
                replacement_count(
                    eligible,
                    rate,
                    accumulate,
                    &mut state.owed[r],
                    &mut self.coin,
                )
            })
            .collect()
    }

    /// The units each replica replaces (replica-major indices into the layer's units).
    fn choose(&self, layer: usize, layout: UnitLayout, counts: &[usize]) -> Result<Vec<usize>> {
        let state = &self.state[layer];
        let util = state.stats.util.to_vec::<f32>()?;
        let ages: Vec<u64> = state.births.iter().map(|&b| self.steps - b).collect();
        let decay = f64::from(self.config.decay);
        let corrected: Vec<f32> = util
            .iter()
            .zip(&ages)
            .map(|(&u, &a)| (f64::from(u) / (1.0 - decay.powf(a as f64))) as f32)
            .collect();
        let n = layout.units;
        let mut chosen = Vec::new();
        for (r, &count) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            let span = r * n..(r + 1) * n;
            let units = lowest_utility_units(
                &corrected[span.clone()],
                &ages[span],
                self.config.maturity,
                count,
            );
            chosen.extend(units.into_iter().map(|i| r * n + i));
        }
        Ok(chosen)
    }

    /// Replaces `chosen` units of layer `layer` (see the module docs), with `fresh` input weights
    /// and biases when given (rank restoring), else uniform draws and zero biases.
    #[allow(clippy::too_many_arguments)]
    fn replace(
        &mut self,
        layer: usize,
        layout: UnitLayout,
        chosen: &[usize],
        model: &mut dyn Module,
        optimizer: &mut Optimizer,
        replicated: bool,
        fresh: Option<(Tensor, Tensor)>,
    ) -> Result<()> {
        let spec = self.layers[layer].clone();
        let (r, n) = (layout.replicas, layout.units);
        let mut mask = vec![0f32; r * n];
        for &i in chosen {
            mask[i] = 1.0;
        }
        let w_in = param(model, &spec.weight_in)?.value().clone();
        let device = w_in.device().clone();
        let lead: Vec<usize> = if replicated { vec![r] } else { Vec::new() };
        let shaped = |dims: &[usize]| -> Vec<usize> { lead.iter().chain(dims).copied().collect() };
        let unit_mask = Tensor::from_vec(mask.clone(), &shaped(&[n]), &device)?;
        let w_out_shape = param(model, &spec.weight_out)?.value().shape().to_vec();
        let (in_mask, out_mask) = unit_masks(spec.shape, &unit_mask, &shaped, &w_out_shape)?;
        let state = &mut self.state[layer];
        if self.config.bias_transfer {
            if let Some(bias_out) = &spec.bias_out {
                // b_next += Σ_i mask_i f̂_i W_next[i, :], f̂_i = f_i / (1 − η^age_i).
                let decay = f64::from(self.config.decay);
                let scale: Vec<f32> = (0..r * n)
                    .map(|i| {
                        let age = (self.steps - state.births[i]) as f64;
                        (f64::from(mask[i]) / (1.0 - decay.powf(age))) as f32
                    })
                    .collect();
                let scale = Tensor::from_vec(scale, &shaped(&[1, n]), &device)?;
                let f_hat = state
                    .stats
                    .mean_act
                    .reshape(&as_isize(&shaped(&[1, n])))?
                    .mul(&scale)?;
                let w_out = param(model, &spec.weight_out)?.value().clone();
                let delta = f_hat.matmul(&per_unit_rows(spec.shape, &w_out, n)?)?;
                let b = param(model, bias_out)?;
                let shift = delta.reshape(&as_isize(b.value().shape()))?;
                b.set(b.value().add(&shift)?)?;
            }
        }
        let (fresh, fresh_bias) = match fresh {
            Some((w, b)) => (w, Some(b)),
            None => {
                let fan_in = match spec.shape {
                    UnitShape::Dense => w_in.shape()[w_in.rank() - 2],
                    _ => w_in.numel() / n.max(1),
                };
                let bound = self.config.init.bound(fan_in, n);
                let w =
                    Tensor::rand_uniform(w_in.shape(), -bound, bound, &mut self.draws, &device)?;
                (w, None)
            }
        };
        param(model, &spec.weight_in)?.set(Tensor::where_(&in_mask, &fresh, &w_in)?)?;
        if let Some(bias_in) = &spec.bias_in {
            let b = param(model, bias_in)?;
            let new = match &fresh_bias {
                Some(fb) => Tensor::where_(&unit_mask, fb, b.value())?,
                None => b.value().masked_fill(&unit_mask, 0.0)?,
            };
            b.set(new)?;
        }
        let w_out = param(model, &spec.weight_out)?;
        let mut cleared = w_out.value().masked_fill(&out_mask, 0.0)?;
        if let Some(scale) = self.config.rank_restoring.and_then(|rr| rr.micro_seed) {
            let seeds = micro_seeds(cleared.shape(), chosen, scale, &mut self.directions);
            cleared = cleared.add(&Tensor::from_vec(seeds, cleared.shape(), &device)?)?;
        }
        w_out.set(cleared)?;
        let flat = unit_mask.reshape(&[-1])?;
        for t in [
            &mut state.stats.util,
            &mut state.stats.mean_act,
            &mut state.stats.ages,
        ] {
            *t = t.masked_fill(&flat, 0.0)?;
        }
        for &i in chosen {
            state.births[i] = self.steps;
            state.replaced[i / n] += 1;
            state.total[i / n] += 1;
        }
        reset_adam(optimizer, &spec.weight_in, &in_mask)?;
        if let Some(bias_in) = &spec.bias_in {
            reset_adam(optimizer, bias_in, &unit_mask)?;
        }
        reset_adam(optimizer, &spec.weight_out, &out_mask)
    }
}

/// RR-CBP v1's outgoing weights for the `chosen` units (replica-major) of a dense next layer
/// `[R?, n, out]`: row `scale·(z − mean z)/‖z − mean z‖` with `z ~ N(0, I)`, zeros elsewhere.
fn micro_seeds(shape: &[usize], chosen: &[usize], scale: f32, rng: &mut HostRng) -> Vec<f32> {
    let out = shape.last().copied().unwrap_or(0);
    let mut seeds = vec![0f32; shape.iter().product()];
    for &unit in chosen {
        let z: Vec<f64> = (0..out).map(|_| rank_restoring::normal(rng)).collect();
        let mean = z.iter().sum::<f64>() / out.max(1) as f64;
        let norm = z.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt();
        if norm > 0.0 {
            for (o, v) in z.iter().enumerate() {
                seeds[unit * out + o] = (f64::from(scale) * (v - mean) / norm) as f32;
            }
        }
    }
    seeds
}

/// The masks of the replaced units' input weights and output weights, from the per-unit mask
/// `[R?, n]` (`shaped` prepends the replica dimension where there is one).
fn unit_masks(
    shape: UnitShape,
    unit_mask: &Tensor,
    shaped: &dyn Fn(&[usize]) -> Vec<usize>,
    w_out: &[usize],
) -> Result<(Tensor, Tensor)> {
    let n = unit_mask.numel();
    Ok(match shape {
        UnitShape::Dense => {
            let n = unit_mask.shape()[unit_mask.rank() - 1];
            (
                unit_mask.reshape(&as_isize(&shaped(&[1, n])))?,
                unit_mask.reshape(&as_isize(&shaped(&[n, 1])))?,
            )
        }
        UnitShape::Conv => (
            unit_mask.reshape(&[n as isize, 1, 1, 1])?,
            unit_mask.reshape(&[1, n as isize, 1, 1])?,
        ),
        UnitShape::ConvToDense => {
            // Unit i owns rows i·S … i·S + S − 1 of the next layer's `[n·S, out]` weight.
            let rows = w_out.first().copied().unwrap_or(0);
            let spatial = rows / n.max(1);
            let rows_mask = unit_mask
                .reshape(&[n as isize, 1])?
                .expand(&[n, spatial])?
                .reshape(&[rows as isize, 1])?;
            (unit_mask.reshape(&[n as isize, 1, 1, 1])?, rows_mask)
        }
    })
}

/// The next layer's weights as one row per unit, `[R?, n, out]`, summed over what else the unit
/// owns (a convolution's kernel positions, a flattened channel's `S` rows): the rows the mean
/// feature `f̂` multiplies in the bias transfer.
fn per_unit_rows(shape: UnitShape, w_out: &Tensor, n: usize) -> Result<Tensor> {
    match shape {
        UnitShape::Dense => Ok(w_out.clone()),
        UnitShape::Conv => {
            // [out, n, kh, kw] → Σ over kernel positions → [out, n] → [n, out].
            let out = w_out.shape()[0] as isize;
            w_out
                .reshape(&[out, n as isize, -1])?
                .sum(2, false)?
                .transpose(0, 1)
        }
        UnitShape::ConvToDense => {
            // [n·S, out] → [n, S, out] → Σ over S → [n, out].
            let out = w_out.shape()[1] as isize;
            w_out.reshape(&[n as isize, -1, out])?.sum(1, false)
        }
    }
}

/// The statistics kernel's views of a layer's input weights and the next layer's weights.
fn views(
    shape: UnitShape,
    w_in: &Tensor,
    w_out: &Tensor,
    layout: UnitLayout,
) -> (WeightView, WeightView) {
    match shape {
        UnitShape::Dense => (dense_in_view(w_in, layout), dense_out_view(w_out, layout)),
        UnitShape::Conv => (conv_in_view(w_in, layout), conv_out_view(w_out, layout)),
        UnitShape::ConvToDense => {
            // Unit i's S·out contiguous entries of the `[n·S, out]` weight.
            let block = (w_out.numel() / layout.units.max(1)) as u32;
            let view = WeightView {
                replica_stride: w_out.numel() as u32,
                unit_stride: block,
                outer: block,
                outer_stride: 1,
                inner: 1,
                inner_stride: 1,
            };
            (conv_in_view(w_in, layout), view)
        }
    }
}

/// A convolution's weights `[units, C, kh, kw]`: unit `j`'s are the `C·kh·kw` entries of row `j`.
fn conv_in_view(w: &Tensor, layout: UnitLayout) -> WeightView {
    let per_unit = (w.numel() / layout.units.max(1)) as u32;
    WeightView {
        replica_stride: w.numel() as u32,
        unit_stride: per_unit,
        outer: per_unit,
        outer_stride: 1,
        inner: 1,
        inner_stride: 1,
    }
}

/// The next convolution's weights `[out, units, kh, kw]`: unit `j`'s are the `kh·kw` entries of
/// input channel `j` in every output channel's filter.
fn conv_out_view(w: &Tensor, layout: UnitLayout) -> WeightView {
    let s = w.shape();
    let kernel = (s[2] * s[3]) as u32;
    WeightView {
        replica_stride: w.numel() as u32,
        unit_stride: kernel,
        outer: s[0] as u32,
        outer_stride: layout.units as u32 * kernel,
        inner: kernel,
        inner_stride: 1,
    }
}

fn as_isize(dims: &[usize]) -> Vec<isize> {
    dims.iter().map(|&d| d as isize).collect()
}

/// The parameter named `name` of `model`.
fn param<'a>(model: &'a mut dyn Module, name: &str) -> Result<&'a mut Param> {
    model
        .params_mut()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
        .ok_or_else(|| {
            Error::value(
                "GenerateAndTest",
                format!("no parameter `{name}`"),
                "the layers' parameter names (LayerUnits)",
            )
        })
}

/// Zeroes Adam's state of `name` under `mask`; SGD's momentum is left alone (as the reference).
fn reset_adam(optimizer: &mut Optimizer, name: &str, mask: &Tensor) -> Result<()> {
    match optimizer.state(name) {
        Some(ParamState::Adam(_)) => optimizer.reset_masked(name, mask),
        _ => Ok(()),
    }
}

impl Hook for GenerateAndTest {
    fn taps(&self) -> Vec<String> {
        let mut taps: Vec<String> = self.layers.iter().map(|l| l.tap.clone()).collect();
        if self.config.rank_restoring.is_some() {
            let inputs = self.layers.iter().map(|l| &l.input);
            taps.extend(inputs.filter(|t| *t != MODEL_INPUT).cloned());
        }
        taps
    }

    fn after_step(&mut self, step: &mut StepView) -> Result<()> {
        let (forward, batch) = (step.forward, step.batch);
        let features = |tap: &str| match tap {
            MODEL_INPUT => Ok(batch.inputs.clone()),
            _ => Ok(forward.tap(tap)?.value().clone()),
        };
        self.generate_and_test(step.model, step.optimizer, &features)
    }

    fn on_log(&mut self, log: &mut LogView) -> Result<()> {
        for (i, state) in self.state.iter().enumerate() {
            if let Some(sigma) = &state.sigma {
                let w = param(log.model, &self.layers[i].weight_in)?.value().clone();
                let (ranks, minima) = feature_gram_spectrum(&w, sigma)?;
                log.metrics
                    .set_host_replicas(&format!("rr_gram_rank_l{i}"), ranks)?;
                log.metrics
                    .set_host_replicas(&format!("rr_gram_lambda_min_l{i}"), minima)?;
            }
        }
        for (i, state) in self.state.iter_mut().enumerate() {
            let counts = state.replaced.iter().map(|&c| c as f32).collect();
            log.metrics
                .set_host_replicas(&format!("replaced_l{i}"), counts)?;
            state.replaced.iter_mut().for_each(|c| *c = 0);
            if self.config.rank_restoring.is_some() {
                log_rank_restoring(log, i, &std::mem::take(&mut state.rr));
            }
        }
        Ok(())
    }

    fn save_state(&self) -> Result<Record> {
        let mut record = Record::default()
            .with_value("steps", self.steps)
            .with_value("coin", self.coin.state())
            .with_value("directions", self.directions.state())
            .nest("draws", self.draws.save_state()?);
        for (i, s) in self.state.iter().enumerate() {
            record = record
                .with_tensor(format!("l{i}.util"), s.stats.util.clone())
                .with_tensor(format!("l{i}.mean_act"), s.stats.mean_act.clone())
                .with_tensor(format!("l{i}.ages"), s.stats.ages.clone())
                .with_value(format!("l{i}.births"), join(&s.births))
                .with_value(format!("l{i}.owed"), join(&s.owed))
                .with_value(format!("l{i}.replaced"), join(&s.replaced))
                .with_value(format!("l{i}.total"), join(&s.total));
            if let Some(sigma) = &s.sigma {
                record = record.with_tensor(format!("l{i}.sigma"), sigma.clone());
            }
        }
        Ok(record)
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        self.steps = record.value("steps")?;
        self.coin = HostRng::new(record.value("coin")?);
        self.directions = HostRng::new(record.value("directions")?);
        self.draws.load_state(&record.part("draws"))?;
        self.state.clear();
        for i in 0..self.layers.len() {
            if record.tensor(&format!("l{i}.util")).is_err() {
                break;
            }
            let tensor = |k: &str| record.tensor(&format!("l{i}.{k}")).cloned();
            let text = |k: &str| record.value::<String>(&format!("l{i}.{k}"));
            self.state.push(LayerState {
                stats: UnitStats {
                    util: tensor("util")?,
                    mean_act: tensor("mean_act")?,
                    ages: tensor("ages")?,
                },
                births: split(&text("births")?)?,
                owed: split(&text("owed")?)?,
                replaced: split(&text("replaced")?)?,
                total: split(&text("total")?)?,
                sigma: record.tensor(&format!("l{i}.sigma")).ok().cloned(),
                rr: RrCounts::default(),
            });
        }
        Ok(())
    }
}

/// Rank restoring's counts of layer `layer` since the last log, as metrics `rr_<what>_l<layer>`.
/// Per replica, the numerical rank (eigenvalues above `units · ε_f32 · λ_max`) and the smallest
/// eigenvalue of the units' feature Gram `Wᵀ Σ W` (the covariance of the pre-activations `Wᵀh`),
/// from the weights `[R?, in, units]` and the input covariance `[R?, in, in]`.
fn feature_gram_spectrum(w: &Tensor, sigma: &Tensor) -> Result<(Vec<f32>, Vec<f32>)> {
    let gram = w.transpose(-1, -2)?.matmul(sigma)?.matmul(w)?;
    let units = w.shape()[w.rank() - 1];
    let values: Vec<f64> = gram.to_vec::<f32>()?.into_iter().map(f64::from).collect();
    let (mut ranks, mut minima) = (Vec::new(), Vec::new());
    for g in values.chunks(units * units) {
        let (eigenvalues, _) = dynlab_runtime::linalg::host::eigh_f64(g, units)?;
        let top = eigenvalues.iter().fold(0f64, |m, &v| m.max(v.abs()));
        let tol = units as f64 * f64::from(f32::EPSILON) * top;
        ranks.push(eigenvalues.iter().filter(|&&v| v > tol).count() as f32);
        minima.push(eigenvalues.iter().fold(f64::INFINITY, |m, &v| m.min(v)) as f32);
    }
    Ok((ranks, minima))
}

fn log_rank_restoring(log: &mut LogView, layer: usize, c: &RrCounts) {
    let mut set = |what: &str, v: f64| {
        log.metrics
            .set_host(&format!("rr_{what}_l{layer}"), v as f32)
    };
    set("units", c.units as f64);
    set("fallbacks", c.fallbacks as f64);
    set("mean_q", c.energy / c.units.max(1) as f64);
    set(
        "energy_ratio",
        c.energy_ratio.0 / c.energy_ratio.1.max(1) as f64,
    );
    for (name, n) in ["device", "host", "larger_ridge", "diagonal"]
        .iter()
        .zip(c.rungs)
    {
        set(&format!("eigh_{name}"), n as f64);
    }
}

/// A dense layer's input weights `[R?, in, units]`: unit `j`'s are column `j`.
fn dense_in_view(w: &Tensor, layout: UnitLayout) -> WeightView {
    let s = w.shape();
    let (inputs, units) = (s[s.len() - 2], s[s.len() - 1]);
    WeightView {
        replica_stride: (inputs * units) as u32,
        unit_stride: 1,
        outer: inputs as u32,
        outer_stride: layout.units as u32,
        inner: 1,
        inner_stride: 1,
    }
}

/// The next dense layer's weights `[R?, units, out]`: unit `j`'s are row `j`.
fn dense_out_view(w: &Tensor, layout: UnitLayout) -> WeightView {
    let s = w.shape();
    let out = s[s.len() - 1];
    WeightView {
        replica_stride: (layout.units * out) as u32,
        unit_stride: out as u32,
        outer: out as u32,
        outer_stride: 1,
        inner: 1,
        inner_stride: 1,
    }
}

fn join<T: ToString>(values: &[T]) -> String {
    values
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn split<T: std::str::FromStr>(text: &str) -> Result<Vec<T>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    text.split(',')
        .map(|v| {
            v.parse().map_err(|_| {
                Error::value(
                    "GenerateAndTest::load_state",
                    format!("`{v}` in a saved list"),
                    format!("a {}", std::any::type_name::<T>()),
                )
            })
        })
        .collect()
}
