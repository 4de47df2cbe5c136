//! The optimizer: a method (SGD or Adam/AdamW), parameter groups by [`ParamKind`], a step count, and
//! per-parameter state tensors keyed by parameter name (so checkpoints and metrics can find them).

use dynlab_autodiff::Grads;
use dynlab_models::{Module, ParamKind};
use dynlab_runtime::{AdamStep, Error, Result, SgdStep, Tensor};
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    Sgd {
        momentum: f32,
        dampening: f32,
        nesterov: bool,
    },
    /// Adam (`decoupled: false`, decay as L2 in the gradient) or AdamW (`decoupled: true`).
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        decoupled: bool,
    },
}

/// Weight decay (and a learning-rate factor) for the parameters of the listed kinds.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamGroup {
    pub kinds: Vec<ParamKind>,
    pub weight_decay: f32,
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

#[derive(Clone, Debug)]
pub struct Optimizer {
    pub method: Method,
    pub groups: Vec<ParamGroup>,
    steps: u64,
    /// Per parameter: the momentum buffer (SGD) or the moments `m`, `v` (Adam).
    state: BTreeMap<String, Vec<Tensor>>,
}

impl Optimizer {
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
            steps: 0,
            state: BTreeMap::new(),
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Weight decay and learning-rate factor of parameters of this kind (0 and 1 when no group lists it).
    pub(super) fn group(&self, kind: ParamKind) -> (f32, f32) {
        self.groups
            .iter()
            .find(|g| g.kinds.contains(&kind))
            .map_or((0.0, 1.0), |g| (g.weight_decay, g.lr_scale))
    }

    /// One update of every parameter of `model` that has a gradient in `grads`, at learning rate
    /// `lr`, with the gradients multiplied by `grad_scale` (clipping; 1 otherwise).
    pub fn step(
        &mut self,
        model: &mut dyn Module,
        grads: &Grads,
        lr: f32,
        grad_scale: f32,
    ) -> Result<()> {
        if !(lr >= 0.0 && lr.is_finite()) {
            return Err(Error::value(
                "Optimizer::step",
                format!("lr {lr}"),
                "a finite lr >= 0",
            ));
        }
        self.steps += 1;
        let t = self.steps;
        for (name, param) in model.params_mut() {
            let Some(g) = grads.tensor(param.var()) else {
                continue;
            };
            let (decay, lr_scale) = self.group(param.kind());
            let lr = lr * lr_scale;
            let state = match self.state.get_mut(&name) {
                Some(s) => s,
                None => {
                    let n = if matches!(self.method, Method::Adam { .. }) {
                        2
                    } else {
                        1
                    };
                    let zeros = (0..n)
                        .map(|_| param.value().zeros_like())
                        .collect::<Result<Vec<_>>>()?;
                    self.state.entry(name.clone()).or_insert(zeros)
                }
            };
            let new = match self.method {
                Method::Sgd {
                    momentum,
                    dampening,
                    nesterov,
                } => {
                    let s = SgdStep {
                        lr,
                        grad_scale,
                        weight_decay: decay,
                        momentum,
                        dampening,
                        nesterov,
                        first: t == 1,
                    };
                    param.value().sgd_update(g, Some(&mut state[0]), &s)?
                }
                Method::Adam {
                    beta1,
                    beta2,
                    eps,
                    decoupled,
                } => {
                    let s = AdamStep {
                        lr,
                        grad_scale,
                        l2_decay: if decoupled { 0.0 } else { decay },
                        decoupled_decay: if decoupled { decay } else { 0.0 },
                        beta1,
                        beta2,
                        eps,
                        step: t,
                    };
                    let (m, v) = state.split_at_mut(1);
                    param.value().adam_update(g, &mut m[0], &mut v[0], &s)?
                }
            };
            param.set(new)?;
        }
        Ok(())
    }

    /// The Adam moments of a parameter (`None` before its first step or for SGD).
    pub fn moments(&self, name: &str) -> Option<(&Tensor, &Tensor)> {
        match (self.method, self.state.get(name)) {
            (Method::Adam { .. }, Some(s)) => Some((&s[0], &s[1])),
            _ => None,
        }
    }

    /// State tensors named `<param>.<slot>` (slot `momentum`, or `m` and `v`), for checkpoints.
    pub fn state_dict(&self) -> Vec<(String, Tensor)> {
        let slots: &[&str] = match self.method {
            Method::Sgd { .. } => &["momentum"],
            Method::Adam { .. } => &["m", "v"],
        };
        self.state
            .iter()
            .flat_map(|(name, s)| {
                s.iter()
                    .zip(slots)
                    .map(move |(t, slot)| (format!("{name}.{slot}"), t.clone()))
            })
            .collect()
    }

    /// Restores the step count and the state written by [`Optimizer::state_dict`].
    pub fn load_state_dict(
        &mut self,
        steps: u64,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<()> {
        let slots: &[&str] = match self.method {
            Method::Sgd { .. } => &["momentum"],
            Method::Adam { .. } => &["m", "v"],
        };
        let op = "Optimizer::load_state_dict";
        let mut state: BTreeMap<String, Vec<Tensor>> = BTreeMap::new();
        for key in tensors.keys() {
            let (name, slot) = key.rsplit_once('.').unwrap_or((key, ""));
            if !slots.contains(&slot) {
                return Err(Error::value(
                    op,
                    format!("entry `{key}`"),
                    format!("`<param>.<slot>` with slot in {slots:?}"),
                ));
            }
            if state.contains_key(name) {
                continue;
            }
            let values = slots
                .iter()
                .map(|slot| {
                    tensors
                        .get(&format!("{name}.{slot}"))
                        .cloned()
                        .ok_or_else(|| {
                            Error::value(
                                op,
                                format!("no `{name}.{slot}`"),
                                "every slot of a parameter",
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            state.insert(name.to_string(), values);
        }
        self.steps = steps;
        self.state = state;
        Ok(())
    }
}
