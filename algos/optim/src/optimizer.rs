//! The optimizer: a method (SGD or Adam/AdamW), parameter groups by [`ParamKind`], the number of
//! steps taken (what schedules read), and typed state per parameter keyed by parameter name (so
//! checkpoints, metrics and unit-replacing algorithms can find it).

use crate::state::{AdamState, ParamState, SgdState};
use dynlab_autodiff::Grads;
use dynlab_models::{Module, ParamKind, Record, Stateful};
use dynlab_runtime::{AdamTensor, Error, GradScale, ReplicaScale, Result, SgdTensor, Tensor};
use std::collections::BTreeMap;

/// The update rule and its hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// SGD with (Nesterov) momentum, PyTorch's convention.
    Sgd {
        /// `μ` (0: plain SGD).
        momentum: f32,
        /// `τ`: the gradient enters the buffer as `(1 − τ)·g`.
        dampening: f32,
        /// Step `g + μ·b` instead of `b`.
        nesterov: bool,
    },
    /// Adam (`decoupled: false`, decay as L2 in the gradient) or AdamW (`decoupled: true`).
    Adam {
        /// `β₁`.
        beta1: f32,
        /// `β₂`.
        beta2: f32,
        /// `ε`.
        eps: f32,
        /// Decoupled (AdamW) weight decay.
        decoupled: bool,
    },
}

/// Weight decay (and a learning-rate factor) for the parameters of the listed kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    /// The kinds of parameter in the group.
    pub kinds: Vec<ParamKind>,
    /// Weight decay `λ` of the group.
    pub weight_decay: f32,
    /// Factor on the learning rate.
    pub lr_scale: f32,
}

impl ParamGroup {
    /// The usual split: decay on weight matrices, none on biases, norms and embeddings.
    pub fn standard(weight_decay: f32) -> Vec<ParamGroup> {
        vec![
            ParamGroup {
                kinds: vec![ParamKind::Weight],
                weight_decay,
                lr_scale: 1.0,
            },
            ParamGroup {
                kinds: vec![ParamKind::Bias, ParamKind::Norm, ParamKind::Embedding],
                weight_decay: 0.0,
                lr_scale: 1.0,
            },
        ]
    }

    /// One group with the same decay on every parameter.
    pub fn all(weight_decay: f32) -> Vec<ParamGroup> {
        vec![ParamGroup {
            kinds: vec![
                ParamKind::Weight,
                ParamKind::Bias,
                ParamKind::Norm,
                ParamKind::Embedding,
            ],
            weight_decay,
            lr_scale: 1.0,
        }]
    }
}

/// An optimizer over a model's parameters (see the module docs).
#[derive(Clone, Debug)]
pub struct Optimizer {
    /// The update rule.
    pub method: Method,
    /// Decay and learning-rate factor by parameter kind.
    pub groups: Vec<ParamGroup>,
    /// Adam keeps a step count per element (see [`AdamState::element_steps`]).
    element_steps: bool,
    /// With element steps, the reference AdamGnT update (see [`Optimizer::with_reference_adamgnt`]).
    reference_gnt: bool,
    /// Per-replica multipliers when the model stacks replicas (empty: one model).
    replicas: Vec<ReplicaScale>,
    /// Learning-rate factors by parameter-path prefix (see [`Optimizer::with_path_lr`]).
    path_lr: Vec<(String, f32)>,
    steps: u64,
    state: BTreeMap<String, ParamState>,
}

impl Optimizer {
    /// An optimizer with no state yet; hyperparameters out of their domain are errors.
    pub fn new(method: Method, groups: Vec<ParamGroup>) -> Result<Optimizer> {
        let op = "Optimizer::new";
        let bad = |got: String, expected: &str| Err(Error::value(op, got, expected));
        match method {
            Method::Sgd {
                momentum,
                dampening,
                ..
            } if !(0.0..1.0).contains(&momentum) || !(0.0..=1.0).contains(&dampening) => {
                return bad(
                    format!("momentum {momentum}, dampening {dampening}"),
                    "momentum in [0, 1) and dampening in [0, 1]",
                )
            }
            Method::Adam {
                beta1, beta2, eps, ..
            } if !((0.0..1.0).contains(&beta1)
                && (0.0..1.0).contains(&beta2)
                && eps > 0.0
                && eps.is_finite()) =>
            {
                return bad(
                    format!("betas ({beta1}, {beta2}), eps {eps}"),
                    "betas in [0, 1) and a positive finite eps",
                )
            }
            _ => {}
        }
        for g in &groups {
            if !(g.weight_decay >= 0.0 && g.weight_decay.is_finite() && g.lr_scale >= 0.0) {
                return bad(
                    format!("group {:?}", g),
                    "a finite non-negative weight decay and lr scale",
                );
            }
        }
        Ok(Optimizer {
            method,
            groups,
            element_steps: false,
            reference_gnt: false,
            replicas: Vec::new(),
            path_lr: Vec::new(),
            steps: 0,
            state: BTreeMap::new(),
        })
    }

    /// Updates a model of `scales.len()` stacked replicas (see `dynlab_models::Replicas`), replica
    /// `r` with its learning rate and weight decay multiplied by `scales[r]` — a sweep of those
    /// hyperparameters trained as one model. Each replica keeps its own state (every state is
    /// per element) and is clipped by its own gradient norm.
    pub fn with_replicas(mut self, scales: Vec<ReplicaScale>) -> Result<Optimizer> {
        let usable = |f: f32| f >= 0.0 && f.is_finite();
        if scales.is_empty()
            || !scales
                .iter()
                .all(|s| usable(s.lr) && usable(s.weight_decay))
        {
            return Err(Error::value(
                "Optimizer::with_replicas",
                format!("{scales:?}"),
                "at least one replica, with finite non-negative factors",
            ));
        }
        self.replicas = scales;
        Ok(self)
    }

    /// The replicas' multipliers (empty for one model).
    pub fn replicas(&self) -> &[ReplicaScale] {
        &self.replicas
    }

    /// Makes this optimizer update `count` replicas: unit multipliers when none were set, else an
    /// error unless `count` were set (what a trainer calls for a replicated model).
    pub fn expect_replicas(&mut self, count: usize) -> Result<()> {
        if self.replicas.is_empty() && count > 1 {
            self.replicas = vec![ReplicaScale::ONE; count];
        }
        let set = self.replicas.len().max(1);
        if set != count {
            return Err(Error::value(
                "Optimizer::expect_replicas",
                format!("multipliers for {set} replica(s)"),
                format!("{count}, one per replica of the model"),
            ));
        }
        Ok(())
    }

    /// Keeps Adam's step count per element, so that [`Optimizer::reset_units`] restarts the bias
    /// correction of the elements it resets (an error for SGD, which has no bias correction).
    pub fn with_element_steps(mut self) -> Result<Optimizer> {
        if !matches!(self.method, Method::Adam { .. }) {
            return Err(Error::value(
                "Optimizer::with_element_steps",
                format!("{:?}", self.method),
                "Adam or AdamW (per-element steps drive Adam's bias correction)",
            ));
        }
        self.element_steps = true;
        Ok(self)
    }

    /// Per-element steps with the reference AdamGnT update (`lop/utils/AdamGnT.py`, whose bias
    /// correction is computed and discarded): `θ −= lr·(1 − β₂ⁿ)·m / (√v + ε)` with `n` the
    /// element's step count — no first-moment correction, and `(1 − β₂ⁿ)` where Adam has
    /// `√(1 − β₂ⁿ)/(1 − β₁ⁿ)`. For reproducing the reference's runs; the default
    /// ([`Optimizer::with_element_steps`]) is bias-corrected Adam.
    pub fn with_reference_adamgnt(self) -> Result<Optimizer> {
        let mut o = self.with_element_steps()?;
        o.reference_gnt = true;
        Ok(o)
    }

    /// Multiplies the learning rate of every parameter whose path starts with `prefix` by `factor`
    /// (on top of its kind's group factor; the first matching prefix wins): per-module learning
    /// rates, such as the connectivity GNN's groups (W 1e-3, embeddings 7.5e-4, MLPs 5e-4).
    pub fn with_path_lr(mut self, prefix: &str, factor: f32) -> Result<Optimizer> {
        if !(factor >= 0.0 && factor.is_finite()) {
            return Err(Error::value(
                "Optimizer::with_path_lr",
                format!("factor {factor} for `{prefix}`"),
                "a finite factor >= 0",
            ));
        }
        self.path_lr.push((prefix.to_string(), factor));
        Ok(self)
    }

    /// The learning-rate factor of the parameter at `path` (1 when no prefix matches).
    fn path_factor(&self, path: &str) -> f32 {
        self.path_lr
            .iter()
            .find(|(prefix, _)| path.starts_with(prefix.as_str()))
            .map_or(1.0, |(_, f)| *f)
    }

    /// Steps taken so far (calls of [`Optimizer::step`]; what schedules read).
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Weight decay and learning-rate factor of parameters of this kind (0 and 1 when no group lists it).
    pub fn group(&self, kind: ParamKind) -> (f32, f32) {
        self.groups
            .iter()
            .find(|g| g.kinds.contains(&kind))
            .map_or((0.0, 1.0), |g| (g.weight_decay, g.lr_scale))
    }

    /// One update of every parameter of `model` that has a gradient in `grads`, at learning rate
    /// `lr`, with the gradients multiplied by `grad_scale` (1: unchanged).
    pub fn step(
        &mut self,
        model: &mut dyn Module,
        grads: &Grads,
        lr: f32,
        grad_scale: f32,
    ) -> Result<()> {
        self.step_scaled(model, grads, lr, GradScale::Constant(grad_scale))
    }

    /// [`Optimizer::step`] with the gradients scaled as `scale` says — clipping to a global norm
    /// that stays on the device. Every parameter is updated by the multi-tensor kernels: one launch
    /// per chunk of parameters (four Adam parameters on Mesa lavapipe).
    pub fn step_scaled(
        &mut self,
        model: &mut dyn Module,
        grads: &Grads,
        lr: f32,
        scale: GradScale,
    ) -> Result<()> {
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(Error::value(
                "Optimizer::step",
                format!("lr {lr}"),
                "a finite lr >= 0",
            ));
        }
        self.steps += 1;
        // Each parameter with a gradient: its value, gradient, learning rate and decay.
        let mut todo: BTreeMap<String, (Tensor, Tensor, f32, f32)> = BTreeMap::new();
        for (name, param) in model.params() {
            let Some(g) = grads.tensor(param.var()) else {
                continue;
            };
            let (decay, lr_scale) = self.group(param.kind());
            let lr_scale = lr_scale * self.path_factor(&name);
            if !self.state.contains_key(&name) {
                let fresh = self.fresh_state(param.value())?;
                self.state.insert(name.clone(), fresh);
            }
            todo.insert(
                name,
                (param.value().clone(), g.clone(), lr * lr_scale, decay),
            );
        }
        let updated = match self.method {
            Method::Sgd {
                momentum,
                dampening,
                nesterov,
            } => self.sgd(&todo, momentum, dampening, nesterov, scale)?,
            Method::Adam {
                beta1,
                beta2,
                eps,
                decoupled,
            } => self.adam(&todo, beta1, beta2, eps, decoupled, scale)?,
        };
        for (name, param) in model.params_mut() {
            if let Some(new) = updated.get(&name) {
                param.set(new.clone())?;
            }
        }
        Ok(())
    }

    fn sgd(
        &mut self,
        todo: &BTreeMap<String, (Tensor, Tensor, f32, f32)>,
        momentum: f32,
        dampening: f32,
        nesterov: bool,
        scale: GradScale,
    ) -> Result<BTreeMap<String, Tensor>> {
        let mut names = Vec::new();
        let mut items = Vec::new();
        for (name, state) in self.state.iter_mut() {
            let Some((value, grad, lr, decay)) = todo.get(name) else {
                continue;
            };
            let ParamState::Sgd(s) = state else {
                return Err(method_mismatch(name, self.method, state));
            };
            let first = s.momentum.is_none();
            if momentum > 0.0 && first {
                s.momentum = Some(value.zeros_like()?);
            }
            names.push(name.clone());
            items.push(SgdTensor {
                param: value,
                grad,
                buf: s.momentum.as_mut(),
                lr: *lr,
                weight_decay: *decay,
                first,
            });
        }
        let new = Tensor::sgd_update_multi(
            &mut items,
            momentum,
            dampening,
            nesterov,
            scale,
            &self.replicas,
        )?;
        Ok(names.into_iter().zip(new).collect())
    }

    #[allow(clippy::too_many_arguments)]
    fn adam(
        &mut self,
        todo: &BTreeMap<String, (Tensor, Tensor, f32, f32)>,
        beta1: f32,
        beta2: f32,
        eps: f32,
        decoupled: bool,
        scale: GradScale,
    ) -> Result<BTreeMap<String, Tensor>> {
        let mut names = Vec::new();
        let mut items = Vec::new();
        for (name, state) in self.state.iter_mut() {
            let Some((value, grad, lr, decay)) = todo.get(name) else {
                continue;
            };
            let ParamState::Adam(s) = state else {
                return Err(method_mismatch(name, self.method, state));
            };
            s.step += 1;
            names.push(name.clone());
            items.push(AdamTensor {
                param: value,
                grad,
                m: &mut s.m,
                v: &mut s.v,
                steps: s.element_steps.as_mut(),
                reference_gnt: self.reference_gnt,
                lr: *lr,
                l2_decay: if decoupled { 0.0 } else { *decay },
                decoupled_decay: if decoupled { *decay } else { 0.0 },
                step: s.step,
            });
        }
        let new = Tensor::adam_update_multi(&mut items, beta1, beta2, eps, scale, &self.replicas)?;
        Ok(names.into_iter().zip(new).collect())
    }

    /// The state a parameter starts with.
    fn fresh_state(&self, value: &Tensor) -> Result<ParamState> {
        Ok(match self.method {
            Method::Sgd { .. } => ParamState::Sgd(SgdState { momentum: None }),
            Method::Adam { .. } => ParamState::Adam(AdamState {
                m: value.zeros_like()?,
                v: value.zeros_like()?,
                step: 0,
                element_steps: self.element_steps.then(|| value.zeros_like()).transpose()?,
            }),
        })
    }

    /// The state of parameter `name` (`None` before its first step).
    pub fn state(&self, name: &str) -> Option<&ParamState> {
        self.state.get(name)
    }

    /// The state of parameter `name`, mutable.
    pub fn state_mut(&mut self, name: &str) -> Option<&mut ParamState> {
        self.state.get_mut(name)
    }

    /// Every parameter's state by name.
    pub fn states(&self) -> &BTreeMap<String, ParamState> {
        &self.state
    }

    /// The state tensor `slot` (`momentum`, `m`, `v`, `steps`) of parameter `name`.
    pub fn slot(&self, name: &str, slot: &str) -> Option<&Tensor> {
        let state = self.state.get(name)?;
        state
            .slots()
            .into_iter()
            .find(|(s, _)| *s == slot)
            .map(|(_, t)| t)
    }

    /// The Adam moments of a parameter (`None` before its first step or for SGD).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        match self.state.get(name) {
            Some(ParamState::Adam(s)) => Some((&s.m, &s.v)),
            _ => None,
        }
    }

    /// Zeroes the state of the units at `indices` along `axis` of parameter `param` (rows with
    /// `axis` 0, columns with 1): its momentum, or its moments and per-element step counts. A
    /// parameter that has no state yet has nothing to reset.
    pub fn reset_units(&mut self, param: &str, axis: usize, indices: &[usize]) -> Result<()> {
        match self.state.get_mut(param) {
            Some(state) => state.reset_units(param, axis, indices),
            None => Ok(()),
        }
    }

    /// Zeroes the state of parameter `param` where `mask` (broadcast to its shape) is non-zero:
    /// the entries of replaced units, for any layout (replicas, filter banks). A parameter that has
    /// no state yet has nothing to reset.
    pub fn reset_masked(&mut self, param: &str, mask: &Tensor) -> Result<()> {
        match self.state.get_mut(param) {
            Some(state) => state.reset_masked(mask),
            None => Ok(()),
        }
    }
}

fn method_mismatch(name: &str, method: Method, state: &ParamState) -> Error {
    Error::value(
        "Optimizer::step",
        format!("state of `{name}` kept by another method ({state:?})"),
        format!("state of {method:?}"),
    )
}

/// The step count (`steps`), each Adam parameter's step (`<param>.step`) and every slot tensor
/// (`<param>.<slot>`).
impl Stateful for Optimizer {
    fn save_state(&self) -> Result<Record> {
        let mut record = Record::default().with_value("steps", self.steps);
        for (name, state) in &self.state {
            if let Some(step) = state.step() {
                record = record.with_value(format!("{name}.step"), step);
            }
            for (slot, t) in state.slots() {
                record = record.with_tensor(format!("{name}.{slot}"), t.clone());
            }
        }
        Ok(record)
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        let op = "Optimizer::load_state";
        let mut state = BTreeMap::new();
        for key in record.tensors.keys() {
            let (name, slot) = key.rsplit_once('.').unwrap_or((key, ""));
            if state.contains_key(name) {
                continue;
            }
            let tensor = |slot: &str| record.tensor(&format!("{name}.{slot}")).cloned();
            let entry = match self.method {
                Method::Sgd { .. } if slot == "momentum" => ParamState::Sgd(SgdState {
                    momentum: Some(tensor("momentum")?),
                }),
                Method::Adam { .. } if ["m", "v", "steps"].contains(&slot) => {
                    let has_counts = record.tensors.contains_key(&format!("{name}.steps"));
                    if has_counts != self.element_steps {
                        return Err(Error::value(
                            op,
                            format!("`{name}` with per-element steps: {has_counts}"),
                            format!("per-element steps: {}", self.element_steps),
                        ));
                    }
                    ParamState::Adam(AdamState {
                        m: tensor("m")?,
                        v: tensor("v")?,
                        step: record.value(&format!("{name}.step"))?,
                        element_steps: has_counts.then(|| tensor("steps")).transpose()?,
                    })
                }
                _ => {
                    return Err(Error::value(
                        op,
                        format!("entry `{key}`"),
                        format!("`<param>.<slot>` with a slot of {:?}", self.method),
                    ))
                }
            };
            state.insert(name.to_string(), entry);
        }
        self.steps = record.value("steps")?;
        self.state = state;
        Ok(())
    }
}
