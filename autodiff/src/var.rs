//! The tape. A [`Var`] is a tensor plus, when it was computed from variables that need gradients, the
//! rule that maps the gradient of its value to gradients of its parents. Rules are written with `Var`
//! ops themselves, so running them with recording on (`create_graph`) puts the gradient computation on
//! the tape too, and it can be differentiated again (exact Hessian-vector products).
//!
//! Nodes are reference counted: the graph of an iteration lives as long as some `Var` reaches it and
//! is freed when the loss and its gradients are dropped. A rule (and the tensors it saved) is dropped as
//! soon as it has run unless the graph is retained.

use dynlab_runtime::{Result, Tensor};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Maps the gradient of a node's value to the gradients of its parents (`None`: no gradient flows).
pub(crate) type Rule = Box<dyn Fn(&Var) -> Result<Vec<Option<Var>>>>;

pub(crate) struct GradFn {
    pub name: &'static str,
    pub parents: Vec<Var>,
    pub rule: Rule,
}

pub(crate) struct Node {
    pub id: u64,
    pub value: Tensor,
    pub requires_grad: bool,
    pub grad_fn: RefCell<Option<GradFn>>,
    /// Set when a sweep dropped this node's rule; a second sweep through it is an error.
    pub released: Cell<bool>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Nodes are `Rc`s, created and dropped on one thread: the count is per thread.
    static LIVE_NODES: Cell<usize> = const { Cell::new(0) };
}

impl Drop for Node {
    fn drop(&mut self) {
        LIVE_NODES.with(|n| n.set(n.get() - 1));
    }
}

/// Number of tape nodes alive on this thread (for leak checks).
pub fn live_nodes() -> usize {
    LIVE_NODES.with(Cell::get)
}

/// A tensor on the tape.
#[derive(Clone)]
pub struct Var(pub(crate) Rc<Node>);

impl std::fmt::Debug for Var {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = self.0.grad_fn.borrow().as_ref().map(|g| g.name);
        write!(
            f,
            "Var(id={}, requires_grad={}, op={op:?}, {:?})",
            self.0.id, self.0.requires_grad, self.0.value
        )
    }
}

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(true) };
}

/// Runs `f` without recording: results of ops inside are constants.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    with_recording(false, f)
}

/// Runs `f` with recording on, also inside a backward rule (where the sweep turns it off): a custom
/// op's rule that needs gradients of its own (the adjoint method's vector–Jacobian products).
pub fn enable_grad<T>(f: impl FnOnce() -> T) -> T {
    with_recording(true, f)
}

pub(crate) fn with_recording<T>(on: bool, f: impl FnOnce() -> T) -> T {
    let previous = RECORDING.with(|r| r.replace(on));
    let out = f();
    RECORDING.with(|r| r.set(previous));
    out
}

pub(crate) fn recording() -> bool {
    RECORDING.with(Cell::get)
}

impl Var {
    fn new(value: Tensor, requires_grad: bool, grad_fn: Option<GradFn>) -> Var {
        LIVE_NODES.with(|n| n.set(n.get() + 1));
        Var(Rc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            value,
            requires_grad,
            grad_fn: RefCell::new(grad_fn),
            released: Cell::new(false),
        }))
    }

    /// A leaf that needs gradients (a parameter).
    pub fn param(value: Tensor) -> Var {
        Var::new(value, true, None)
    }

    /// A leaf without gradients (data, targets).
    pub fn constant(value: Tensor) -> Var {
        Var::new(value, false, None)
    }

    /// A differentiable op defined outside this crate (as `torch.autograd.Function`): `value`
    /// computed from `parents` by the caller, and `rule` mapping the output's gradient to one
    /// gradient (or `None`) per parent, in order. The rule's result is differentiated again only
    /// if it is itself built from `Var` ops of its input.
    pub fn custom(
        name: &'static str,
        value: Tensor,
        parents: &[&Var],
        rule: impl Fn(&Var) -> Result<Vec<Option<Var>>> + 'static,
    ) -> Var {
        Var::from_op(name, value, parents, rule)
    }

    /// The result of an op: recorded with `rule` when recording is on and a parent needs gradients.
    pub(crate) fn from_op(
        name: &'static str,
        value: Tensor,
        parents: &[&Var],
        rule: impl Fn(&Var) -> Result<Vec<Option<Var>>> + 'static,
    ) -> Var {
        let needs = recording() && parents.iter().any(|p| p.requires_grad());
        if !needs {
            return Var::constant(value);
        }
        let grad_fn = GradFn {
            name,
            parents: parents.iter().map(|&p| p.clone()).collect(),
            rule: Box::new(rule),
        };
        Var::new(value, true, Some(grad_fn))
    }

    /// The tensor this variable holds.
    pub fn value(&self) -> &Tensor {
        &self.0.value
    }

    /// Whether gradients flow to this variable (a parameter, or computed from one while recording).
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad
    }

    /// The same value, cut from the tape.
    pub fn detach(&self) -> Var {
        Var::constant(self.0.value.clone())
    }

    /// The shape of its value.
    pub fn shape(&self) -> &[usize] {
        self.0.value.shape()
    }

    pub(crate) fn id(&self) -> u64 {
        self.0.id
    }

    pub(crate) fn is_leaf(&self) -> bool {
        self.0.grad_fn.borrow().is_none() && !self.0.released.get()
    }
}
