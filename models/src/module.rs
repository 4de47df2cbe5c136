//! Parameters and the `Module` trait: every model lists its parameters by dotted path
//! (`layers.0.weight`) in a fixed order, which is what optimizers, checkpoints and metrics key on.

use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};
use std::collections::HashMap;

/// What a parameter is, for optimizer parameter groups (weight decay applies to `Weight` only by
/// default) and for metrics that look at weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Weight,
    Bias,
    Norm,
    Embedding,
}

/// A trainable tensor: a leaf [`Var`] that the optimizer replaces after each step.
#[derive(Clone, Debug)]
pub struct Param {
    var: Var,
    kind: ParamKind,
}

impl Param {
    pub fn new(value: Tensor, kind: ParamKind) -> Param {
        Param {
            var: Var::param(value),
            kind,
        }
    }

    /// The parameter on the tape (use it in the forward pass; gradients are keyed by it).
    pub fn var(&self) -> &Var {
        &self.var
    }

    pub fn value(&self) -> &Tensor {
        self.var.value()
    }

    pub fn kind(&self) -> ParamKind {
        self.kind
    }

    /// Replaces the value (a fresh leaf: graphs built from the old value are not affected).
    pub fn set(&mut self, value: Tensor) -> Result<()> {
        if value.shape() != self.value().shape() {
            return Err(Error::shape(
                "Param::set",
                format!("{:?}", value.shape()),
                format!("the parameter's shape {:?}", self.value().shape()),
            ));
        }
        self.var = Var::param(value);
        Ok(())
    }
}

/// A model or layer: a tree of named parameters, and a train/eval mode.
pub trait Module {
    /// Every parameter with its path relative to this module, in a fixed order.
    fn params(&self) -> Vec<(String, &Param)>;

    /// The same list, mutable (same names and order as [`Module::params`]).
    fn params_mut(&mut self) -> Vec<(String, &mut Param)>;

    /// Switches layers whose forward differs in training (dropout, batch statistics). Default: none.
    fn set_training(&mut self, _training: bool) {}

    /// Parameter values by name, for checkpoints.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        self.params()
            .into_iter()
            .map(|(name, p)| (name, p.value().clone()))
            .collect()
    }

    /// Sets every parameter from `state`: each name must be present with the parameter's shape, and
    /// `state` must hold nothing else.
    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let op = "Module::load_state_dict";
        let mut params = self.params_mut();
        let unexpected: Vec<&String> = state
            .keys()
            .filter(|k| !params.iter().any(|(n, _)| n == *k))
            .collect();
        if !unexpected.is_empty() {
            return Err(Error::value(
                op,
                format!("unexpected entries {unexpected:?}"),
                "only this model's parameter names",
            ));
        }
        for (name, param) in params.iter_mut() {
            let value = state
                .get(name)
                .ok_or_else(|| Error::value(op, format!("no entry `{name}`"), "every parameter"))?;
            param.set(value.clone()).map_err(|_| {
                Error::shape(
                    op,
                    format!("`{name}` of shape {:?}", value.shape()),
                    format!("{:?}", param.value().shape()),
                )
            })?;
        }
        Ok(())
    }

    /// Number of scalar parameters.
    fn num_params(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value().numel()).sum()
    }
}

/// Prefixes each child's parameter names with `prefix.` (used to compose modules).
pub fn prefixed<P>(prefix: &str, params: Vec<(String, P)>) -> Vec<(String, P)> {
    params
        .into_iter()
        .map(|(name, p)| (format!("{prefix}.{name}"), p))
        .collect()
}
