//! The layer contract. Every layer and model is a [`Module`]: one [`Module::forward`] taking a
//! [`Var`] and a [`Ctx`] (train/eval mode, an RNG for stochastic layers, taps), its own parameters
//! and buffers, and its children by name. What every algorithm needs is derived from those:
//! parameters by dotted path (`layers.0.weight`) in a fixed order (what optimizers, checkpoints and
//! metrics key on), state dicts, and [`Module::find`] / [`Module::visit`] over submodules by path,
//! so an algorithm can reach a layer (and its successor) and downcast it to its type.
//!
//! A container runs a child with [`Ctx::call`], which extends the path, captures the child's output
//! when a tap asks for it, runs a replacement registered for that path instead of the child (how a
//! wrapper such as SPD's component model substitutes a layer without changing its type), and names
//! the path in any error raised inside (`convnet.fc1: Tensor::matmul: …`).

mod ctx;
mod param;

pub use ctx::{Ctx, Mode, Replacement};
pub use param::{Buffer, Param, ParamKind};

use dynlab_autodiff::Var;
use dynlab_runtime::{Error, Result, Tensor};
use std::any::Any;
use std::collections::HashMap;

/// Conversions every module has (implemented for all of them): to a trait object, and to `Any`
/// so that `&dyn Module` can be downcast to the layer type it is.
pub trait AsModule: Any {
    /// `self` as a trait object.
    fn as_dyn(&self) -> &dyn Module;
    /// `self` as a mutable trait object.
    fn as_dyn_mut(&mut self) -> &mut dyn Module;
    /// `self` as `&dyn Any`.
    fn as_any(&self) -> &dyn Any;
    /// `self` as `&mut dyn Any`.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T: Module> AsModule for T {
    fn as_dyn(&self) -> &dyn Module {
        self
    }
    fn as_dyn_mut(&mut self) -> &mut dyn Module {
        self
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// A layer or model: a forward computation over a tree of named parameters, buffers and children.
///
/// Implementors write [`Module::forward`] and list what they own in [`Module::parts`] and
/// [`Module::parts_mut`] (same names and order in both); everything else is provided.
pub trait Module: AsModule {
    /// The output for `input`. Children are run through [`Ctx::call`] so that taps, replacements
    /// and error paths see them.
    fn forward(&self, input: &Var, ctx: &mut Ctx) -> Result<Var>;

    /// This module's own parameters and buffers and its direct children, in a fixed order.
    fn parts(&self) -> Parts<'_> {
        Parts::default()
    }

    /// This module's own parameters and its direct children, mutable (same names and order as
    /// [`Module::parts`]).
    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
    }

    /// Direct submodules by name (`fc1`, `layers.2`), in a fixed order.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.parts().children
    }

    /// Every parameter with its path relative to this module, in a fixed order: own parameters
    /// first, then each child's, depth first.
    fn params(&self) -> Vec<(String, &Param)> {
        let parts = self.parts();
        let mut out: Vec<(String, &Param)> = named(parts.params);
        for (name, child) in parts.children {
            out.extend(prefixed(&name, child.params()));
        }
        out
    }

    /// The same list, mutable (same names and order as [`Module::params`]).
    fn params_mut(&mut self) -> Vec<(String, &mut Param)> {
        let parts = self.parts_mut();
        let mut out: Vec<(String, &mut Param)> = named(parts.params);
        for (name, child) in parts.children {
            out.extend(prefixed(&name, child.params_mut()));
        }
        out
    }

    /// Every buffer with its path, in the same order rule as [`Module::params`].
    fn buffers(&self) -> Vec<(String, &Buffer)> {
        let parts = self.parts();
        let mut out: Vec<(String, &Buffer)> = named(parts.buffers);
        for (name, child) in parts.children {
            out.extend(prefixed(&name, child.buffers()));
        }
        out
    }

    /// Calls `f` with every submodule's path and the submodule, this module first (path `""`),
    /// then depth first in [`Module::children`] order.
    fn visit(&self, f: &mut dyn FnMut(&str, &dyn Module)) {
        fn walk(path: &str, m: &dyn Module, f: &mut dyn FnMut(&str, &dyn Module)) {
            f(path, m);
            for (name, child) in m.children() {
                walk(&join(path, &name), child, f);
            }
        }
        walk("", self.as_dyn(), f)
    }

    /// The submodule at `path` (`""` is this module; `layers.2`, `block.conv1`). Child names may
    /// contain dots (`layers.2`), so the path is matched against whole child names.
    fn find(&self, path: &str) -> Option<&dyn Module> {
        if path.is_empty() {
            return Some(self.as_dyn());
        }
        self.children()
            .into_iter()
            .find_map(|(name, child)| rest_of(path, &name).and_then(|rest| child.find(rest)))
    }

    /// The submodule at `path`, mutable.
    fn find_mut(&mut self, path: &str) -> Option<&mut dyn Module> {
        if path.is_empty() {
            return Some(self.as_dyn_mut());
        }
        self.parts_mut()
            .children
            .into_iter()
            .find_map(|(name, child)| rest_of(path, &name).and_then(|rest| child.find_mut(rest)))
    }

    /// Parameter and buffer values by path, for checkpoints.
    fn state_dict(&self) -> Vec<(String, Tensor)> {
        let params = self
            .params()
            .into_iter()
            .map(|(name, p)| (name, p.value().clone()));
        let buffers = self.buffers().into_iter().map(|(name, b)| (name, b.get()));
        params.chain(buffers).collect()
    }

    /// Sets every parameter and buffer from `state`: each path must be present with its shape, and
    /// `state` must hold nothing else.
    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) -> Result<()> {
        let op = "Module::load_state_dict";
        let buffers: Vec<String> = self.buffers().into_iter().map(|(n, _)| n).collect();
        let mut params = self.params_mut();
        let known = |k: &String| params.iter().any(|(n, _)| n == k) || buffers.contains(k);
        let unexpected: Vec<&String> = state.keys().filter(|k| !known(k)).collect();
        if !unexpected.is_empty() {
            return Err(Error::value(
                op,
                format!("unexpected entries {unexpected:?}"),
                "only this model's parameter and buffer names",
            ));
        }
        let entry = |name: &str| {
            state
                .get(name)
                .ok_or_else(|| Error::value(op, format!("no entry `{name}`"), "every parameter"))
        };
        for (name, param) in params.iter_mut() {
            let value = entry(name)?;
            param
                .set(value.clone())
                .map_err(|_| mismatch(op, name, value.shape(), param.value().shape()))?;
        }
        drop(params);
        for name in buffers {
            let value = entry(&name)?;
            let found = self.buffers().into_iter().find(|(n, _)| *n == name);
            let (_, buffer) = found.expect("buffer listed above");
            buffer
                .set(value.clone())
                .map_err(|_| mismatch(op, &name, value.shape(), buffer.get().shape()))?;
        }
        Ok(())
    }

    /// The tap `path` of an evaluation-mode forward pass on `input` (a constant), or an error
    /// naming what the module offers.
    fn eval_tap(&self, input: &Tensor, path: &str) -> Result<Var> {
        let mut ctx = Ctx::eval().with_all_taps();
        self.forward(&Var::constant(input.clone()), &mut ctx)?;
        let taps = ctx.take_taps();
        taps.get(path).cloned().ok_or_else(|| {
            Error::value(
                "Module::eval_tap",
                format!("no tap `{path}`"),
                format!("one of {:?}", taps.keys().collect::<Vec<_>>()),
            )
        })
    }

    /// Number of scalar parameters.
    fn num_params(&self) -> usize {
        self.params().iter().map(|(_, p)| p.value().numel()).sum()
    }

    /// Whether this module can run as stacked replicas ([`crate::Replicas`]): layers that handle a
    /// leading replica axis say so (Linear, Embedding, LayerNorm, TMS); a container can when all
    /// its children can and it owns no parameters or buffers of its own.
    fn replicable(&self) -> bool {
        let parts = self.parts();
        parts.params.is_empty()
            && parts.buffers.is_empty()
            && parts.children.iter().all(|(_, c)| c.replicable())
    }

    /// `Some(R)` for a model of `R` stacked replicas ([`crate::Replicas`]), `None` for one model.
    fn replicas(&self) -> Option<usize> {
        None
    }
}

impl dyn Module {
    /// This module as its concrete type, if it is a `T`.
    pub fn downcast_ref<T: Module>(&self) -> Option<&T> {
        self.as_any().downcast_ref::<T>()
    }

    /// This module as its concrete type, mutable, if it is a `T`.
    pub fn downcast_mut<T: Module>(&mut self) -> Option<&mut T> {
        self.as_any_mut().downcast_mut::<T>()
    }
}

/// What a module owns, as [`Module::parts`] lists it: built with [`Parts::param`],
/// [`Parts::buffer`] and [`Parts::child`].
#[derive(Default)]
pub struct Parts<'a> {
    /// Own parameters by name.
    pub params: Vec<(&'static str, &'a Param)>,
    /// Own buffers by name.
    pub buffers: Vec<(&'static str, &'a Buffer)>,
    /// Direct submodules by name.
    pub children: Vec<(String, &'a dyn Module)>,
}

impl<'a> Parts<'a> {
    /// Adds a parameter (nothing when `None`, e.g. an absent bias).
    pub fn param(mut self, name: &'static str, p: impl Into<Option<&'a Param>>) -> Self {
        self.params.extend(p.into().map(|p| (name, p)));
        self
    }

    /// Adds a buffer.
    pub fn buffer(mut self, name: &'static str, b: &'a Buffer) -> Self {
        self.buffers.push((name, b));
        self
    }

    /// Adds a child (nothing when `None`).
    pub fn child<M: Module>(
        mut self,
        name: impl Into<String>,
        m: impl Into<Option<&'a M>>,
    ) -> Self {
        if let Some(m) = m.into() {
            self.children.push((name.into(), m));
        }
        self
    }

    /// Adds a child known only as a trait object (a layer chosen at run time).
    pub fn child_dyn(mut self, name: impl Into<String>, m: &'a dyn Module) -> Self {
        self.children.push((name.into(), m));
        self
    }

    /// Adds children `prefix.0`, `prefix.1`, … (a list of layers).
    pub fn children<M: Module>(mut self, prefix: &str, ms: &'a [M]) -> Self {
        let named = ms.iter().enumerate();
        self.children
            .extend(named.map(|(i, m)| (format!("{prefix}.{i}"), m as &dyn Module)));
        self
    }
}

/// What a module owns, mutable, as [`Module::parts_mut`] lists it.
#[derive(Default)]
pub struct PartsMut<'a> {
    /// Own parameters by name.
    pub params: Vec<(&'static str, &'a mut Param)>,
    /// Direct submodules by name.
    pub children: Vec<(String, &'a mut dyn Module)>,
}

impl<'a> PartsMut<'a> {
    /// Adds a parameter (nothing when `None`).
    pub fn param(mut self, name: &'static str, p: impl Into<Option<&'a mut Param>>) -> Self {
        self.params.extend(p.into().map(|p| (name, p)));
        self
    }

    /// Adds a child (nothing when `None`).
    pub fn child<M: Module>(
        mut self,
        name: impl Into<String>,
        m: impl Into<Option<&'a mut M>>,
    ) -> Self {
        if let Some(m) = m.into() {
            self.children.push((name.into(), m));
        }
        self
    }

    /// Adds a child known only as a trait object.
    pub fn child_dyn(mut self, name: impl Into<String>, m: &'a mut dyn Module) -> Self {
        self.children.push((name.into(), m));
        self
    }

    /// Adds children `prefix.0`, `prefix.1`, ….
    pub fn children<M: Module>(mut self, prefix: &str, ms: &'a mut [M]) -> Self {
        let named = ms.iter_mut().enumerate();
        self.children
            .extend(named.map(|(i, m)| (format!("{prefix}.{i}"), m as &mut dyn Module)));
        self
    }
}

fn named<T>(items: Vec<(&'static str, T)>) -> Vec<(String, T)> {
    items.into_iter().map(|(n, t)| (n.to_string(), t)).collect()
}

fn mismatch(op: &'static str, name: &str, got: &[usize], want: &[usize]) -> Error {
    Error::shape(
        op,
        format!("`{name}` of shape {got:?}"),
        format!("{want:?}"),
    )
}

/// `prefix.name`, or `name` when the prefix is empty.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// What is left of `path` below the child `name`: `""` when it is the child, the rest after
/// `name.` when it lies inside it.
fn rest_of<'p>(path: &'p str, name: &str) -> Option<&'p str> {
    let rest = path.strip_prefix(name)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('.')
    }
}

/// Prefixes each child's names with `prefix.` (used to compose modules).
pub fn prefixed<P>(prefix: &str, items: Vec<(String, P)>) -> Vec<(String, P)> {
    items
        .into_iter()
        .map(|(name, p)| (join(prefix, &name), p))
        .collect()
}
