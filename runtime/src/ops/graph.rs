//! Message passing over a fixed graph, and the signal model's simulator step.
//!
//! A [`Graph`] keeps the caller's edge order (edge values `[E]` and edge features `[E, F]` are in
//! that order) and sorts the edges once on the host into [`Segments`] by destination and by
//! source. The ops (kernels in `dynlab_kernels::graph`) walk each node's segment in increasing
//! edge id, so every sum is deterministic:
//!
//! - [`Graph::aggregate`] `out[i] = Σ_{e: dst_e = i} m_e` (and [`Graph::aggregate_by_source`]);
//! - [`Graph::spmm`] `out[i] = Σ_{e: dst_e = i} w_e x[src_e]` (`A x` with `A_{ij} = w_e`) and
//!   [`Graph::spmm_transposed`] `out[j] = Σ_{e: src_e = j} w_e g[dst_e]` (`Aᵀ g`);
//! - [`Graph::edge_dot`] `out[e] = ⟨a[dst_e], b[src_e]⟩`, the gradient of `A x` in the edge values;
//! - [`Graph::gather_sources`] / [`Graph::gather_destinations`]: node rows along edges.
//!
//! Cost: each output element reads its segment once, O(E · F) in all (the general
//! `Tensor::scatter_add` is O(outputs · index length)).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::tensor::Tensor;
use crate::Device;
use cubecl::prelude::{CubeCount, CubeDim};
use dynlab_kernels::graph::{edge_dot, segment_sum, signal_activity, signal_step, spmm};

// Edges grouped by one endpoint: the edges of node `i` are `order[ptr[i]..ptr[i + 1]]` (increasing
// edge id), and `other[p]` is the far endpoint of edge `order[p]`.
#[derive(Clone, Debug)]
pub(crate) struct Segments {
    ptr: Tensor,
    order: Tensor,
    other: Tensor,
    nodes: usize,
}

impl Segments {
    /// Groups edges by `key[e]` (values in `0..nodes`); `far[e]` is each edge's other endpoint.
    fn new(key: &[usize], far: &[usize], nodes: usize, device: &Device) -> Result<Segments> {
        let mut counts = vec![0usize; nodes + 1];
        for &k in key {
            counts[k + 1] += 1;
        }
        for i in 0..nodes {
            counts[i + 1] += counts[i];
        }
        let mut next = counts.clone();
        let mut order = vec![0i32; key.len()];
        for (e, &k) in key.iter().enumerate() {
            order[next[k]] = e as i32;
            next[k] += 1;
        }
        let other: Vec<i32> = order.iter().map(|&e| far[e as usize] as i32).collect();
        let ptr: Vec<i32> = counts.iter().map(|&c| c as i32).collect();
        let upload = |v: &[i32]| -> Result<Tensor> {
            let t = Tensor::from_slice(v, &[v.len()], device)?;
            Ok(t)
        };
        Ok(Segments {
            ptr: upload(&ptr)?,
            order: upload(&order)?,
            other: upload(&other)?,
            nodes,
        })
    }
}

/// A directed graph with a fixed edge list (see the module docs).
#[derive(Clone, Debug)]
pub struct Graph {
    nodes: usize,
    src: Tensor,
    dst: Tensor,
    by_dst: Segments,
    by_src: Segments,
}

impl Graph {
    /// The graph of `nodes` nodes and edges `src[e] → dst[e]` (repeated edges and self-loops
    /// allowed; nodes may have no edges).
    pub fn new(src: &[usize], dst: &[usize], nodes: usize, device: &Device) -> Result<Graph> {
        let op = "Graph::new";
        if src.len() != dst.len() {
            return Err(Error::shape(
                op,
                format!("{} sources and {} destinations", src.len(), dst.len()),
                "one source and one destination per edge",
            ));
        }
        if nodes > i32::MAX as usize || src.len() > i32::MAX as usize {
            return Err(Error::value(
                op,
                format!("{nodes} nodes, {} edges", src.len()),
                "at most 2³¹ − 1 nodes and edges (i32 indices)",
            ));
        }
        if let Some((e, (s, d))) = src
            .iter()
            .zip(dst)
            .enumerate()
            .find(|(_, (&s, &d))| s >= nodes || d >= nodes)
        {
            return Err(Error::value(
                op,
                format!("edge {e}: {s} → {d}"),
                format!("endpoints in 0..{nodes}"),
            ));
        }
        let ints = |v: &[usize]| -> Result<Tensor> {
            let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
            let t = Tensor::from_slice(&v, &[v.len()], device)?;
            t.set_range((!v.is_empty()).then(|| (0, nodes.saturating_sub(1) as i32)));
            Ok(t)
        };
        Ok(Graph {
            nodes,
            src: ints(src)?,
            dst: ints(dst)?,
            by_dst: Segments::new(dst, src, nodes, device)?,
            by_src: Segments::new(src, dst, nodes, device)?,
        })
    }

    /// Every ordered pair `(j → i)` with `i ≠ j`, destination-major: edge `e` of node `i` is
    /// `j = e mod (n − 1)` skipping `i` (the fully connected graph of the signal model).
    pub fn complete(nodes: usize, device: &Device) -> Result<Graph> {
        let (mut src, mut dst) = (Vec::new(), Vec::new());
        for i in 0..nodes {
            for j in (0..nodes).filter(|&j| j != i) {
                src.push(j);
                dst.push(i);
            }
        }
        Graph::new(&src, &dst, nodes, device)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Number of edges.
    pub fn edges(&self) -> usize {
        self.src.numel()
    }

    /// Source node of each edge (i32 `[E]`).
    pub fn sources(&self) -> &Tensor {
        &self.src
    }

    /// Destination node of each edge (i32 `[E]`).
    pub fn destinations(&self) -> &Tensor {
        &self.dst
    }

    /// `x[src_e]` for each edge: `[n, F] → [E, F]`.
    pub fn gather_sources(&self, x: &Tensor) -> Result<Tensor> {
        self.expect_nodes("Graph::gather_sources", x)?;
        x.index_select(0, &self.src)
    }

    /// `x[dst_e]` for each edge: `[n, F] → [E, F]`.
    pub fn gather_destinations(&self, x: &Tensor) -> Result<Tensor> {
        self.expect_nodes("Graph::gather_destinations", x)?;
        x.index_select(0, &self.dst)
    }

    /// `out[i] = Σ_{e: dst_e = i} values[e]`: `[E, F] → [n, F]`.
    pub fn aggregate(&self, values: &Tensor) -> Result<Tensor> {
        let op = "Graph::aggregate";
        values.expect_same_device(op, &self.src)?;
        sum_segments(op, &self.by_dst, values)
    }

    /// `out[j] = Σ_{e: src_e = j} values[e]`: `[E, F] → [n, F]`.
    pub fn aggregate_by_source(&self, values: &Tensor) -> Result<Tensor> {
        let op = "Graph::aggregate_by_source";
        values.expect_same_device(op, &self.src)?;
        sum_segments(op, &self.by_src, values)
    }

    /// `out[i] = Σ_{e: dst_e = i} w_e x[src_e]`: edge values `[E]`, `x [n, F] → [n, F]`.
    pub fn spmm(&self, weights: &Tensor, x: &Tensor) -> Result<Tensor> {
        self.product("Graph::spmm", &self.by_dst, weights, x)
    }

    /// `out[j] = Σ_{e: src_e = j} w_e g[dst_e]` (`Aᵀ g`): edge values `[E]`, `g [n, F] → [n, F]`.
    pub fn spmm_transposed(&self, weights: &Tensor, g: &Tensor) -> Result<Tensor> {
        self.product("Graph::spmm_transposed", &self.by_src, weights, g)
    }

    /// `out[e] = Σ_f a[dst_e, f] · b[src_e, f]`: `a, b [n, F] → [E]`.
    pub fn edge_dot(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let op = "Graph::edge_dot";
        self.expect_nodes(op, a)?;
        self.expect_nodes(op, b)?;
        if a.shape() != b.shape() {
            return Err(Error::shape(
                op,
                format!("a {:?}, b {:?}", a.shape(), b.shape()),
                "a and b of one shape [n, F]",
            ));
        }
        let out = Tensor::alloc(op, &[self.edges()], DType::F32, &a.device)?;
        if self.edges() == 0 {
            return Ok(out);
        }
        let (a, b) = (a.contiguous_from_zero()?, b.contiguous_from_zero()?);
        let (count, dim) = units_grid(self.edges());
        launch!(
            a.device,
            edge_dot::<f32>,
            count,
            dim,
            self.src.buffer_arg(),
            self.dst.buffer_arg(),
            a.buffer_arg(),
            b.buffer_arg(),
            out.buffer_arg(),
            a.shape()[1],
        );
        Ok(out)
    }

    /// Errors unless `x` is f32 `[nodes, F]` on the graph's device.
    fn expect_nodes(&self, op: &'static str, x: &Tensor) -> Result<()> {
        x.expect_f32(op)?;
        x.expect_same_device(op, &self.src)?;
        if x.rank() != 2 || x.shape()[0] != self.nodes {
            return Err(Error::shape(
                op,
                format!("node features {:?}", x.shape()),
                format!("[{}, F] (one row per node)", self.nodes),
            ));
        }
        Ok(())
    }

    fn product(
        &self,
        op: &'static str,
        seg: &Segments,
        weights: &Tensor,
        x: &Tensor,
    ) -> Result<Tensor> {
        self.expect_nodes(op, x)?;
        weights.expect_f32(op)?;
        weights.expect_same_device(op, x)?;
        if weights.shape() != [self.edges()] {
            return Err(Error::shape(
                op,
                format!("edge values {:?}", weights.shape()),
                format!("[{}] (one per edge)", self.edges()),
            ));
        }
        let width = x.shape()[1];
        let out = Tensor::alloc(op, &[seg.nodes, width], DType::F32, &x.device)?;
        if out.numel() == 0 {
            return Ok(out);
        }
        if self.edges() == 0 {
            return Tensor::zeros(&[seg.nodes, width], &x.device);
        }
        let (w, x) = (weights.contiguous_from_zero()?, x.contiguous_from_zero()?);
        let (count, dim) = units_grid(out.numel());
        launch!(
            x.device,
            spmm::<f32>,
            count,
            dim,
            seg.ptr.buffer_arg(),
            seg.order.buffer_arg(),
            seg.other.buffer_arg(),
            w.buffer_arg(),
            x.buffer_arg(),
            out.buffer_arg(),
            width,
        );
        Ok(out)
    }
}

/// `out[i] = Σ_{p ∈ seg(i)} values[order[p]]`: `[E, F] → [nodes, F]`.
fn sum_segments(op: &'static str, seg: &Segments, values: &Tensor) -> Result<Tensor> {
    values.expect_f32(op)?;
    if values.rank() != 2 || values.shape()[0] != seg.order.numel() {
        return Err(Error::shape(
            op,
            format!("edge values {:?}", values.shape()),
            format!("[{}, F] (one row per edge)", seg.order.numel()),
        ));
    }
    let width = values.shape()[1];
    let out = Tensor::alloc(op, &[seg.nodes, width], DType::F32, &values.device)?;
    if out.numel() == 0 {
        return Ok(out);
    }
    let values = values.contiguous_from_zero()?;
    let (count, dim) = units_grid(out.numel());
    launch!(
        values.device,
        segment_sum::<f32>,
        count,
        dim,
        values.buffer_arg(),
        seg.ptr.buffer_arg(),
        seg.order.buffer_arg(),
        out.buffer_arg(),
        width,
    );
    Ok(out)
}

/// Above this many index comparisons (`outputs × index length`), [`Tensor::index_add`] sorts the
/// indices on the host (one read-back) and runs a segment sum instead of `scatter_add`; on
/// lavapipe a 2000 × 8 output from 20,000 indices takes 4.0 s by `scatter_add` and 2.1 ms as a
/// segment sum, while small sums (an embedding table's gradient) stay without a read-back.
const SCATTER_MAX_WORK: usize = 1 << 24;

/// Units per cube of the simulator's kernels.
const SIGNAL_CUBE: usize = 64;

impl Tensor {
    /// `out` of `size` along `dim`, zero but for `out[c with c_dim := indices[k]] += self[c with
    /// c_dim := k]`: the adjoint of `index_select(dim, indices)`, summed in increasing `k` (bitwise
    /// reproducible). Large sums run as a segment sum over the indices sorted on the host.
    pub fn index_add(&self, dim: isize, indices: &Tensor, size: usize) -> Result<Tensor> {
        let op = "Tensor::index_add";
        self.expect_f32(op)?;
        self.expect_same_device(op, indices)?;
        let d = crate::shape::normalize_axis(op, dim, self.rank())?;
        let count = self.shape()[d];
        if indices.rank() != 1 || indices.numel() != count {
            return Err(Error::shape(
                op,
                format!(
                    "indices {:?} for {:?} along dim {d}",
                    indices.shape(),
                    self.shape()
                ),
                format!("1-D indices, one per slice along dim {d} ({count})"),
            ));
        }
        crate::ops::index::check_indices(op, indices, size)?;
        let mut out_shape = self.shape().to_vec();
        out_shape[d] = size;
        let outputs: usize = out_shape.iter().product();
        if outputs.saturating_mul(count) <= SCATTER_MAX_WORK {
            let mut view = vec![1isize; self.rank()];
            view[d] = count as isize;
            let index = indices.reshape(&view)?.expand(self.shape())?;
            return Tensor::zeros(&out_shape, &self.device)?.scatter_add(d as isize, &index, self);
        }
        let keys: Vec<usize> = indices
            .to_vec::<i32>()?
            .iter()
            .map(|&k| k as usize)
            .collect();
        let seg = Segments::new(&keys, &keys, size, &self.device)?;
        // Slices along `dim` become rows: [count, rest] → [size, rest], then back in place.
        let mut order: Vec<usize> = (0..self.rank()).collect();
        order.remove(d);
        order.insert(0, d);
        let moved = self.permute(&order)?.contiguous()?;
        let moved_shape = moved.shape().to_vec();
        let rest = moved.numel() / count.max(1);
        let summed = sum_segments(op, &seg, &moved.reshape(&[count as isize, rest as isize])?)?;
        let mut summed_shape: Vec<isize> = moved_shape.iter().map(|&x| x as isize).collect();
        summed_shape[0] = size as isize;
        let mut back: Vec<usize> = (1..self.rank()).collect();
        back.insert(d, 0);
        summed.reshape(&summed_shape)?.permute(&back)?.contiguous()
    }

    /// `steps` Euler steps of the signal model `du/dt = −c u + s tanh(u) + g (W tanh(u))` from this
    /// state `u₀ [n]`, with `wt = Wᵀ [n, n]` and `params = [g; s; c] [3, n]`: returns the frames
    /// `[steps + 1, n]` (row 0 is `u₀`) and the rates `du/dt [steps, n]` at frames `0..steps`. Two
    /// launches per step (`tanh` of the frame, then the product and the update).
    pub fn signal_rollout(
        &self,
        wt: &Tensor,
        params: &Tensor,
        steps: usize,
        dt: f32,
    ) -> Result<(Tensor, Tensor)> {
        let op = "Tensor::signal_rollout";
        for t in [self, wt, params] {
            t.expect_f32(op)?;
            self.expect_same_device(op, t)?;
        }
        let n = self.numel();
        if self.rank() != 1 || wt.shape() != [n, n] || params.shape() != [3, n] {
            return Err(Error::shape(
                op,
                format!(
                    "u₀ {:?}, Wᵀ {:?}, params {:?}",
                    self.shape(),
                    wt.shape(),
                    params.shape()
                ),
                "u₀ [n], Wᵀ [n, n], params [3, n]",
            ));
        }
        if !dt.is_finite() {
            return Err(Error::value(op, format!("dt {dt}"), "a finite dt"));
        }
        let frames = Tensor::alloc(op, &[steps + 1, n], DType::F32, &self.device)?;
        let rates = Tensor::alloc(op, &[steps, n], DType::F32, &self.device)?;
        if n == 0 {
            return Ok((frames, rates));
        }
        crate::view::copy_into(self, &frames.narrow(0, 0, 1)?.reshape(&[n as isize])?)?;
        let (wt, params) = (wt.contiguous_from_zero()?, params.contiguous_from_zero()?);
        let act = Tensor::alloc(op, &[n], DType::F32, &self.device)?;
        // Cubes of 64 units: at n = 1000, 16 cubes keep every CPU thread of lavapipe busy.
        let count = CubeCount::Static(n.div_ceil(SIGNAL_CUBE) as u32, 1, 1);
        let dim = CubeDim::new_1d(SIGNAL_CUBE as u32);
        for t in 0..steps {
            launch!(
                self.device,
                signal_activity::<f32>,
                count.clone(),
                dim,
                frames.buffer_arg(),
                act.buffer_arg(),
                n,
                t,
            );
            launch!(
                self.device,
                signal_step::<f32>,
                count.clone(),
                dim,
                wt.buffer_arg(),
                params.buffer_arg(),
                act.buffer_arg(),
                frames.buffer_arg(),
                rates.buffer_arg(),
                n,
                t,
                dt,
            );
        }
        Ok((frames, rates))
    }
}
