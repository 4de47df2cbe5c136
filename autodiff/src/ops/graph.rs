//! Message passing on [`Var`] over a fixed [`Graph`]. The rules close over each other: the
//! adjoint of a gather along edges is a segment sum and back; the CSR product `A x`, its transpose
//! `Aᵀ g` and the edge-wise dot product `⟨a[dst], b[src]⟩` are each other's gradients:
//!
//! - `y = A x`: `∂x = Aᵀ ḡ`, `∂w_e = ⟨ḡ[dst_e], x[src_e]⟩`;
//! - `y = Aᵀ g`: `∂g = A ḡ`, `∂w_e = ⟨g[dst_e], ḡ[src_e]⟩`;
//! - `y_e = ⟨a[dst_e], b[src_e]⟩`: `∂a = A_ḡ b`, `∂b = A_ḡᵀ a` (edge values `ḡ`).

use crate::var::Var;
use dynlab_runtime::{Graph, Result};

impl Var {
    /// `x[src_e]` for each edge: `[n, F] → [E, F]`; backward sums by source.
    pub fn gather_sources(&self, graph: &Graph) -> Result<Var> {
        let value = graph.gather_sources(self.value())?;
        let graph = graph.clone();
        Ok(Var::from_op("gather_sources", value, &[self], move |g| {
            Ok(vec![Some(g.aggregate_by_source(&graph)?)])
        }))
    }

    /// `x[dst_e]` for each edge: `[n, F] → [E, F]`; backward sums by destination.
    pub fn gather_destinations(&self, graph: &Graph) -> Result<Var> {
        let value = graph.gather_destinations(self.value())?;
        let graph = graph.clone();
        Ok(Var::from_op(
            "gather_destinations",
            value,
            &[self],
            move |g| Ok(vec![Some(g.aggregate(&graph)?)]),
        ))
    }

    /// `out[i] = Σ_{e: dst_e = i} self[e]`: `[E, F] → [n, F]`; backward gathers by destination.
    pub fn aggregate(&self, graph: &Graph) -> Result<Var> {
        let value = graph.aggregate(self.value())?;
        let graph = graph.clone();
        Ok(Var::from_op("aggregate", value, &[self], move |g| {
            Ok(vec![Some(g.gather_destinations(&graph)?)])
        }))
    }

    /// `out[j] = Σ_{e: src_e = j} self[e]`: `[E, F] → [n, F]`; backward gathers by source.
    pub fn aggregate_by_source(&self, graph: &Graph) -> Result<Var> {
        let value = graph.aggregate_by_source(self.value())?;
        let graph = graph.clone();
        Ok(Var::from_op(
            "aggregate_by_source",
            value,
            &[self],
            move |g| Ok(vec![Some(g.gather_sources(&graph)?)]),
        ))
    }

    /// `A x` with edge values `self [E]`: `out[i] = Σ_{e: dst_e = i} w_e x[src_e]`.
    pub fn spmm(&self, graph: &Graph, x: &Var) -> Result<Var> {
        let value = graph.spmm(self.value(), x.value())?;
        let (graph, w, xc) = (graph.clone(), self.clone(), x.clone());
        Ok(Var::from_op("spmm", value, &[self, x], move |g| {
            Ok(vec![
                Some(g.edge_dot(&graph, &xc)?),
                Some(w.spmm_transposed(&graph, g)?),
            ])
        }))
    }

    /// `Aᵀ g` with edge values `self [E]`: `out[j] = Σ_{e: src_e = j} w_e g[dst_e]`.
    pub fn spmm_transposed(&self, graph: &Graph, g: &Var) -> Result<Var> {
        let value = graph.spmm_transposed(self.value(), g.value())?;
        let (graph, w, gc) = (graph.clone(), self.clone(), g.clone());
        Ok(Var::from_op(
            "spmm_transposed",
            value,
            &[self, g],
            move |h| {
                Ok(vec![
                    Some(gc.edge_dot(&graph, h)?),
                    Some(w.spmm(&graph, h)?),
                ])
            },
        ))
    }

    /// `out[e] = ⟨self[dst_e], b[src_e]⟩`: `[n, F] × [n, F] → [E]`.
    pub fn edge_dot(&self, graph: &Graph, b: &Var) -> Result<Var> {
        let value = graph.edge_dot(self.value(), b.value())?;
        let (graph, a, bc) = (graph.clone(), self.clone(), b.clone());
        Ok(Var::from_op("edge_dot", value, &[self, b], move |h| {
            Ok(vec![
                Some(h.spmm(&graph, &bc)?),
                Some(h.spmm_transposed(&graph, &a)?),
            ])
        }))
    }
}
