//! The Signal_Propagation graph network (neural-gnn `models/Signal_Propagation.py`, `MLP.py`):
//!
//! ```text
//! pred_i = lin_phi([u_i, a_i]) + Σ_{j ≠ i} W_ij · lin_edge(u_j)
//! ```
//!
//! - `W` (`n × n`, `N(0, 1)` init, diagonal zero and masked out of the sum): the learned
//!   connectivity. Dense path: the parameter `W_t` holds `Wᵀ` (`W_t[j, i] = W_ij`) and the sum is
//!   `ψ(U) (W_t ⊙ M)` for a batch of frames `U [B, n]`: one matmul whose operands and gradient are
//!   all contiguous (on lavapipe `ψ Wᵀ` through a transposed view takes 16 ms, `W ψᵀ` 62 ms, and a
//!   strided mask product in the backward 34 ms). Sparse path: `W` is held as one value per edge
//!   of the complete graph without self-loops and the sum is a CSR product (`Var::spmm`), the form
//!   a sparse connectome takes. [`SignalPropagation::dense_w`] gives `W` either way.
//! - `a ∈ ℝ^{n×2}` node embeddings, initialised to ones.
//! - `lin_edge = MLP(1 → 64 → 64 → 1)` on `u_j` alone, `lin_phi = MLP(3 → 64 → 64 → 1)` on
//!   `[u_i, a_i]`, ReLU; first layer PyTorch's default init, later layers `N(0, 0.1²)` weights
//!   and zero bias.

use dynlab_autodiff::Var;
use dynlab_models::{Activation, Ctx, Init, Mlp, Module, Param, ParamKind, Parts, PartsMut};
use dynlab_runtime::{Device, Error, Graph, Result, Rng, Tensor};

/// How the message sum is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessagePassing {
    /// `ψ(U) (W ⊙ M)ᵀ`: one matmul (the complete graph).
    Dense,
    /// CSR product over the edge list.
    Sparse,
}

/// The model (see the module docs).
#[derive(Clone, Debug)]
pub struct SignalPropagation {
    /// Learned connectivity: `Wᵀ [n, n]` (dense: `w[j, i] = W_ij`) or `[E]` edge values (sparse,
    /// edge `e` of the complete graph `j → i`, destination-major).
    pub w: Param,
    /// Node embeddings `a [n, 2]`.
    pub a: Param,
    /// `ψ`: the edge function on `u_j`.
    pub lin_edge: Mlp,
    /// `φ`: the node function on `[u_i, a_i]`.
    pub lin_phi: Mlp,
    mask: Tensor,
    graph: Option<Graph>,
}

/// An MLP of widths `dims` with ReLU, the first layer PyTorch's default init and later layers
/// `N(0, 0.1²)` with zero bias (neural-gnn `MLP.py`).
pub fn reference_mlp(dims: &[usize], rng: &mut Rng, device: &Device) -> Result<Mlp> {
    let mut mlp = Mlp::new(
        dims,
        Activation::Relu,
        Init::PytorchDefault,
        true,
        rng,
        device,
    )?;
    for layer in mlp.layers.iter_mut().skip(1) {
        let shape = layer.weight.value().shape().to_vec();
        layer
            .weight
            .set(Tensor::rand_normal(&shape, 0.0, 0.1, rng, device)?)?;
        if let Some(b) = layer.bias.as_mut() {
            let len = b.value().numel();
            b.set(Tensor::zeros(&[len], device)?)?;
        }
    }
    Ok(mlp)
}

impl SignalPropagation {
    /// The model for `n` neurons with hidden width `hidden` and `hidden_layers` hidden layers in
    /// each MLP (the reference: 64 and 2).
    pub fn new(
        n: usize,
        hidden: usize,
        hidden_layers: usize,
        passing: MessagePassing,
        rng: &mut Rng,
        device: &Device,
    ) -> Result<SignalPropagation> {
        if n < 2 || hidden == 0 {
            return Err(Error::value(
                "SignalPropagation::new",
                format!("{n} neurons, hidden width {hidden}"),
                "at least 2 neurons and a hidden width ≥ 1",
            ));
        }
        let dims = |inputs: usize| {
            let mut d = vec![inputs];
            d.extend(std::iter::repeat_n(hidden, hidden_layers));
            d.push(1);
            d
        };
        let lin_edge = reference_mlp(&dims(1), rng, device)?;
        let lin_phi = reference_mlp(&dims(3), rng, device)?;
        let off_diagonal: Vec<f32> = (0..n * n)
            .map(|k| if k / n == k % n { 0.0 } else { 1.0 })
            .collect();
        let mask = Tensor::from_vec(off_diagonal, &[n, n], device)?;
        let w = Tensor::rand_normal(&[n, n], 0.0, 1.0, rng, device)?.mul(&mask)?;
        let (w, graph) = match passing {
            MessagePassing::Dense => (w.transpose(0, 1)?.contiguous()?, None),
            MessagePassing::Sparse => {
                let graph = Graph::complete(n, device)?;
                let values = graph_values(&w, &graph)?;
                (values, Some(graph))
            }
        };
        Ok(SignalPropagation {
            w: Param::new(w, ParamKind::Weight),
            a: Param::new(Tensor::ones(&[n, 2], device)?, ParamKind::Embedding),
            lin_edge,
            lin_phi,
            mask,
            graph,
        })
    }

    /// The connectivity parameter's name: `W_t` (dense, transposed) or `W` (edge values).
    fn w_name(&self) -> &'static str {
        match self.graph {
            None => "W_t",
            Some(_) => "W",
        }
    }

    /// Neurons.
    pub fn neurons(&self) -> usize {
        self.a.value().shape()[0]
    }

    /// The learned connectivity as a dense `[n, n]` tensor (zero diagonal).
    pub fn dense_w(&self) -> Result<Tensor> {
        match &self.graph {
            None => self
                .w
                .value()
                .mul(&self.mask)?
                .transpose(0, 1)?
                .contiguous(),
            Some(graph) => {
                let n = self.neurons();
                let values = self.w.value().to_vec::<f32>()?;
                let (src, dst) = (
                    graph.sources().to_vec::<i32>()?,
                    graph.destinations().to_vec::<i32>()?,
                );
                let mut dense = vec![0.0f32; n * n];
                for ((&s, &d), &v) in src.iter().zip(&dst).zip(&values) {
                    dense[d as usize * n + s as usize] += v;
                }
                Tensor::from_vec(dense, &[n, n], self.a.value().device())
            }
        }
    }

    /// `ψ(u)` elementwise for any shape of `u`.
    pub fn edge_function(&self, u: &Var, ctx: &mut Ctx) -> Result<Var> {
        let shape: Vec<isize> = u.shape().iter().map(|&d| d as isize).collect();
        let flat = u.reshape(&[-1, 1])?;
        ctx.call("lin_edge", &self.lin_edge, &flat)?.reshape(&shape)
    }

    /// `φ([u_i, a_i])` for frames `u [B, n]`: `[B, n]`.
    pub fn node_function(&self, u: &Var, ctx: &mut Ctx) -> Result<Var> {
        let (b, n) = (u.shape()[0], u.shape()[1]);
        let a = self.a.var().unsqueeze(0)?.expand(&[b, n, 2])?;
        let x = Var::cat(&[&u.unsqueeze(-1)?, &a], -1)?.reshape(&[(b * n) as isize, 3])?;
        ctx.call("lin_phi", &self.lin_phi, &x)?
            .reshape(&[b as isize, n as isize])
    }

    /// `Σ_{j ≠ i} W_ij ψ_j` for edge outputs `psi [B, n]`: `[B, n]`.
    fn messages(&self, psi: &Var) -> Result<Var> {
        match &self.graph {
            None => psi.matmul(&self.w.var().mul(&Var::constant(self.mask.clone()))?),
            Some(graph) => self
                .w
                .var()
                .spmm(graph, &psi.transpose(0, 1)?)?
                .transpose(0, 1),
        }
    }

    /// `‖φ([0, a_i])‖₂` over neurons (the `lin_phi_zero` regulariser).
    pub fn phi_at_zero_norm(&self, ctx: &mut Ctx) -> Result<Var> {
        let n = self.neurons();
        let zeros = Var::constant(Tensor::zeros(&[1, n], self.a.value().device())?);
        self.node_function(&zeros, ctx)?
            .norm(2.0, -1, false)?
            .sum_all()
    }
}

/// The values of dense `w [n, n]` on the edges of `graph` (`w[dst_e, src_e]`).
fn graph_values(w: &Tensor, graph: &Graph) -> Result<Tensor> {
    let n = graph.nodes();
    let index: Vec<i32> = graph
        .destinations()
        .to_vec::<i32>()?
        .iter()
        .zip(graph.sources().to_vec::<i32>()?)
        .map(|(&d, s)| d * n as i32 + s)
        .collect();
    let index = Tensor::from_slice(&index, &[index.len()], w.device())?;
    w.reshape(&[(n * n) as isize])?.index_select(0, &index)
}

impl Module for SignalPropagation {
    /// Frames `u [B, n]` → predicted `du/dt [B, n]`.
    fn forward(&self, u: &Var, ctx: &mut Ctx) -> Result<Var> {
        let n = self.neurons();
        if u.shape().len() != 2 || u.shape()[1] != n {
            return Err(Error::shape(
                "SignalPropagation::forward",
                format!("frames {:?}", u.shape()),
                format!("[B, {n}]"),
            ));
        }
        let psi = self.edge_function(u, ctx)?;
        let messages = self.messages(&psi)?;
        self.node_function(u, ctx)?.add(&messages)
    }

    fn parts(&self) -> Parts<'_> {
        Parts::default()
            .param(self.w_name(), &self.w)
            .param("a", &self.a)
            .child("lin_edge", &self.lin_edge)
            .child("lin_phi", &self.lin_phi)
    }

    fn parts_mut(&mut self) -> PartsMut<'_> {
        PartsMut::default()
            .param(self.w_name(), &mut self.w)
            .param("a", &mut self.a)
            .child("lin_edge", &mut self.lin_edge)
            .child("lin_phi", &mut self.lin_phi)
    }
}
