//! Reverse-mode sweep over the tape: topological order from the output, then each rule once, with
//! gradients accumulated per node. With `create_graph` the rules run with recording on, so the
//! gradients are themselves `Var`s on a new tape and can be differentiated again.
//!
//! Broadcasting is undone here, once for every op: a rule returns the gradient of a broadcast
//! operand in the shape the op saw it (the output's), and the sweep sums it back to the operand's
//! shape ([`Var::sum_to`]) under the rule's recording setting, so the sum is on the tape whenever
//! the rule's ops are.

use crate::var::{with_recording, Var};
use dynlab_runtime::{Error, Result, Tensor};
use std::collections::{HashMap, HashSet};

/// Options of a backward sweep.
#[derive(Clone, Copy, Debug, Default)]
pub struct GradOptions {
    /// Record the gradient computation so it can be differentiated (Hessian-vector products).
    pub create_graph: bool,
    /// Keep the rules (and the tensors they saved) for another sweep over the same graph. Implied by
    /// `create_graph`: the recorded gradients refer back into the graph.
    pub retain_graph: bool,
}

/// Gradients of the leaves reached by a sweep, looked up by variable.
pub struct Grads {
    map: HashMap<u64, Var>,
}

impl Grads {
    /// The gradient of `v`, if the output depends on it.
    pub fn get(&self, v: &Var) -> Option<&Var> {
        self.map.get(&v.id())
    }

    /// The gradient of `v` as a tensor.
    pub fn tensor(&self, v: &Var) -> Option<&Tensor> {
        self.get(v).map(Var::value)
    }
}

impl Var {
    /// Gradients of this scalar with respect to every parameter it depends on; frees the graph's
    /// saved tensors as it goes.
    pub fn backward(&self) -> Result<Grads> {
        self.backward_with(GradOptions::default())
    }

    /// [`Var::backward`] with options: `create_graph` records the gradients so they can be
    /// differentiated again; `retain_graph` keeps the graph for another sweep.
    pub fn backward_with(&self, options: GradOptions) -> Result<Grads> {
        let map = sweep(self, options, |v| v.is_leaf())?;
        Ok(Grads { map })
    }
}

/// Gradients of the scalar `output` with respect to `wrt` (zeros where it does not depend on them).
pub fn grad(output: &Var, wrt: &[&Var], options: GradOptions) -> Result<Vec<Var>> {
    let wanted: HashSet<u64> = wrt.iter().map(|v| v.id()).collect();
    let mut map = sweep(output, options, |v| wanted.contains(&v.id()))?;
    wrt.iter()
        .map(|v| match map.remove(&v.id()) {
            Some(g) => Ok(g),
            None => Ok(Var::constant(v.value().zeros_like()?)),
        })
        .collect()
}

/// Nodes reachable from `output` through recorded ops, parents before children.
fn topological_order(output: &Var) -> Vec<Var> {
    let mut order = Vec::new();
    let mut visited = HashSet::new();
    let mut stack: Vec<(Var, bool)> = vec![(output.clone(), false)];
    while let Some((v, expanded)) = stack.pop() {
        if expanded {
            order.push(v);
            continue;
        }
        if !v.requires_grad() || !visited.insert(v.id()) {
            continue;
        }
        stack.push((v.clone(), true));
        if let Some(g) = v.0.grad_fn.borrow().as_ref() {
            for p in &g.parents {
                stack.push((p.clone(), false));
            }
        }
    }
    order
}

fn sweep(
    output: &Var,
    options: GradOptions,
    keep: impl Fn(&Var) -> bool,
) -> Result<HashMap<u64, Var>> {
    let op = "autodiff::backward";
    if output.value().numel() != 1 {
        return Err(Error::Shape {
            op,
            got: format!("an output of shape {:?}", output.shape()),
            expected: "a scalar output (reduce it first, e.g. with sum_all or mean_all)"
                .to_string(),
        });
    }
    if !output.requires_grad() {
        return Err(Error::Value {
            op,
            got: "an output that does not depend on any parameter".to_string(),
            expected: "an output computed from a Var::param while recording".to_string(),
        });
    }
    if output.0.released.get() {
        return Err(released_error());
    }
    let seed = Var::constant(Tensor::ones(output.shape(), output.value().device())?);
    let mut grads: HashMap<u64, Var> = HashMap::from([(output.id(), seed)]);
    let mut kept = HashMap::new();
    for node in topological_order(output).into_iter().rev() {
        let Some(g) = grads.remove(&node.id()) else {
            continue;
        };
        let run = |grad_fn: &crate::var::GradFn| -> Result<Vec<(Var, Option<Var>)>> {
            let parent_grads = with_recording(options.create_graph, || (grad_fn.rule)(&g))?;
            Ok(grad_fn.parents.iter().cloned().zip(parent_grads).collect())
        };
        let flows = if options.retain_graph || options.create_graph {
            node.0.grad_fn.borrow().as_ref().map(run).transpose()?
        } else {
            let taken = node.0.grad_fn.borrow_mut().take();
            if taken.is_some() {
                node.0.released.set(true);
            }
            taken.as_ref().map(run).transpose()?
        };
        if node.0.released.get() && flows.is_none() {
            return Err(released_error());
        }
        for (parent, pg) in flows.into_iter().flatten() {
            let Some(pg) = pg else { continue };
            if !parent.requires_grad() {
                continue;
            }
            let pg = sum_back(pg, &parent, options.create_graph)?;
            let total = match grads.remove(&parent.id()) {
                Some(existing) => with_recording(options.create_graph, || existing.add(&pg))?,
                None => pg,
            };
            grads.insert(parent.id(), total);
        }
        if keep(&node) {
            kept.insert(node.id(), g);
        }
    }
    Ok(kept)
}

/// `pg` summed back to `parent`'s shape over the dimensions broadcasting added or stretched
/// (recorded when `create_graph`); an error when broadcasting cannot explain the difference (a
/// rule's bug).
fn sum_back(pg: Var, parent: &Var, create_graph: bool) -> Result<Var> {
    if pg.shape() == parent.shape() {
        return Ok(pg);
    }
    let summed = with_recording(create_graph, || pg.sum_to(parent.shape()))?;
    if summed.shape() != parent.shape() {
        return Err(Error::Shape {
            op: "autodiff::backward",
            got: format!(
                "a gradient of shape {:?} for an operand of shape {:?}",
                pg.shape(),
                parent.shape()
            ),
            expected: "a gradient whose shape the operand broadcasts to".to_string(),
        });
    }
    Ok(summed)
}

fn released_error() -> Error {
    Error::Value {
        op: "autodiff::backward",
        got: "a second backward sweep through a graph whose saved tensors were freed".to_string(),
        expected: "GradOptions { retain_graph: true } on the first sweep".to_string(),
    }
}
