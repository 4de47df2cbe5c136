//! What a module owns: trainable [`Param`]s (leaf variables the optimizer replaces after each
//! step) and [`Buffer`]s (non-trainable state the forward pass updates, such as running statistics).

use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};
use std::cell::RefCell;

/// What a parameter is, for optimizer parameter groups (weight decay applies to `Weight` only by
/// default) and for metrics that look at weight matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A weight matrix or filter bank.
    Weight,
    /// An additive bias.
    Bias,
    /// A normalisation layer's scale or shift.
    Norm,
    /// An embedding table.
    Embedding,
}

/// A trainable tensor: a leaf [`Var`] that the optimizer replaces after each step.
#[derive(Clone, Debug)]
pub struct Param {
    var: Var,
    kind: ParamKind,
}

impl Param {
    /// A parameter holding `value`.
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

    /// The current value.
    pub fn value(&self) -> &Tensor {
        self.var.value()
    }

    /// What the parameter is.
    pub fn kind(&self) -> ParamKind {
        self.kind
    }

    /// Replaces the value with one of another shape (stacking or unstacking replicas).
    pub(crate) fn reshape_to(&mut self, value: Tensor) {
        self.var = Var::param(value);
    }

    /// Replaces the value (a fresh leaf: graphs built from the old value are not affected).
    pub fn set(&mut self, value: Tensor) -> Result<()> {
        check_shape("Param::set", value.shape(), self.value().shape())?;
        self.var = Var::param(value);
        Ok(())
    }
}

/// Non-trainable state of a module that its forward pass may update (behind interior mutability,
/// since `forward` takes `&self`). A clone holds its own value from then on.
#[derive(Clone, Debug)]
pub struct Buffer(RefCell<Tensor>);

impl Buffer {
    /// A buffer holding `value`.
    pub fn new(value: Tensor) -> Buffer {
        Buffer(RefCell::new(value))
    }

    /// The current value (a cheap handle).
    pub fn get(&self) -> Tensor {
        self.0.borrow().clone()
    }

    /// Replaces the value; the shape must stay the same.
    pub fn set(&self, value: Tensor) -> Result<()> {
        check_shape("Buffer::set", value.shape(), self.0.borrow().shape())?;
        *self.0.borrow_mut() = value;
        Ok(())
    }
}

fn check_shape(op: &'static str, got: &[usize], want: &[usize]) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            op,
            format!("{got:?}"),
            format!("the current shape {want:?}"),
        ));
    }
    Ok(())
}
