//! Fused scaled dot-product attention, forward and backward (equations and layout in
//! `dynlab_kernels::attention`): `softmax(Q Kᵀ / √d [hidden → −1e30]) V` without storing the scores.

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, placeholder};
use crate::ops::elementwise::vector_width;
use crate::tensor::Tensor;
use cubecl::prelude::*;
use dynlab_kernels::attention::{
    flash_attention_backward_key, flash_attention_backward_query, flash_attention_forward,
    AttentionDims,
};

/// Largest query/key and value width the kernels keep in registers.
pub const MAX_HEAD_DIM: usize = 128;

/// Queries (or keys) per cube.
const BLOCK: u32 = 16;

/// Register floats per unit the row count is sized for: `rows · (d + e)`.
const ROW_REGISTERS: usize = 512;

/// Queries (or keys) per unit, so that each key (or query) load serves that many: 4 up to
/// `d + e = 128`, fewer for wider heads, whose unrolled kernels lavapipe compiles superlinearly
/// slowly (head width 128 with 4 rows: 25 s forward, 64 s backward, once per process).
fn rows(dims: AttentionDims) -> usize {
    (ROW_REGISTERS / (dims.d + dims.e) as usize).clamp(1, 4)
}

/// What [`Tensor::flash_attention`] returns.
#[derive(Clone, Debug)]
pub struct FlashAttention {
    /// `[..., T, e]`.
    pub out: Tensor,
    /// `[..., T, 2]`: each query row's maximum score `m` and `Σ_j exp(s_j − m)`, for the backward.
    pub stats: Tensor,
}

/// Gradients from [`Tensor::flash_attention_backward`].
#[derive(Clone, Debug)]
pub struct FlashAttentionGrads {
    /// Gradient with respect to the queries, shaped like them.
    pub dq: Tensor,
    /// Gradient with respect to the keys, shaped like them.
    pub dk: Tensor,
    /// Gradient with respect to the values, shaped like them.
    pub dv: Tensor,
}

/// Validated geometry: `N` batch entries (the flattened leading dimensions), `T` queries, `S` keys.
struct Geometry {
    lead: Vec<usize>,
    n: usize,
    t: usize,
    s: usize,
    dims: AttentionDims,
}

fn geometry(
    op: &'static str,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    causal: bool,
    mask: Option<&Tensor>,
) -> Result<Geometry> {
    for t in [q, k, v] {
        t.expect_f32(op)?;
        t.expect_same_device(op, q)?;
    }
    let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
    let r = qs.len();
    let fits = r >= 2
        && ks.len() == r
        && vs.len() == r
        && qs[..r - 2] == ks[..r - 2]
        && qs[..r - 2] == vs[..r - 2]
        && qs[r - 1] == ks[r - 1]
        && ks[r - 2] == vs[r - 2];
    if !fits {
        return Err(Error::shape(
            op,
            format!("q {qs:?}, k {ks:?}, v {vs:?}"),
            "q [..., T, d], k [..., S, d], v [..., S, e] with the same leading dimensions",
        ));
    }
    let (t, s, d, e) = (qs[r - 2], ks[r - 2], qs[r - 1], vs[r - 1]);
    if s == 0 || d == 0 || e == 0 || d > MAX_HEAD_DIM || e > MAX_HEAD_DIM {
        return Err(Error::shape(
            op,
            format!("q {qs:?}, k {ks:?}, v {vs:?}"),
            format!(
                "S >= 1 keys and widths d, e in 1..={MAX_HEAD_DIM} (Var::attention has no limit)"
            ),
        ));
    }
    let lead = qs[..r - 2].to_vec();
    let n: usize = lead.iter().product();
    if n > 65_535 {
        return Err(Error::value(
            op,
            format!("{n} batch entries"),
            "at most 65535",
        ));
    }
    if let Some(m) = mask {
        m.expect_f32(op)?;
        m.expect_same_device(op, q)?;
    }
    Ok(Geometry {
        lead,
        n,
        t,
        s,
        dims: AttentionDims {
            d: d as u32,
            e: e as u32,
            causal,
            masked: mask.is_some(),
        },
    })
}

impl Geometry {
    fn shape(&self, tail: &[usize]) -> Vec<usize> {
        self.lead.iter().chain(tail).copied().collect()
    }

    fn scale(&self) -> f32 {
        1.0 / (self.dims.d as f32).sqrt()
    }

    /// The mask as a view of `[..., T, S]` (a 1-element placeholder without one).
    fn mask_view(&self, op: &'static str, q: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        match mask {
            Some(m) => m.expand(&self.shape(&[self.t, self.s])).map_err(|_| {
                Error::shape(
                    op,
                    format!("mask {:?}", m.shape()),
                    format!("broadcastable to {:?}", self.shape(&[self.t, self.s])),
                )
            }),
            None => placeholder(&q.device, DType::F32),
        }
    }

    fn grid(&self, rows: usize) -> (CubeCount, CubeDim) {
        let blocks = rows.div_ceil(BLOCK as usize) as u32;
        (
            CubeCount::Static(blocks, self.n as u32, 1),
            CubeDim::new_1d(BLOCK),
        )
    }
}

impl Tensor {
    /// `softmax(self · kᵀ / √d [+ hidden]) · v` in one pass over the keys per query, never storing
    /// the `T × S` scores. `self [..., T, d]`, `k [..., S, d]`, `v [..., S, e]` (same leading
    /// dimensions, `d, e ≤ 128`); `causal` hides keys `j > i`; `mask` (f32, 1 = hidden) broadcasts
    /// to `[..., T, S]`. A fully hidden row averages all values, as [`Tensor::softmax`] of equal
    /// scores would.
    pub fn flash_attention(
        &self,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        mask: Option<&Tensor>,
    ) -> Result<FlashAttention> {
        let op = "Tensor::flash_attention";
        let g = geometry(op, self, k, v, causal, mask)?;
        let mask = g.mask_view(op, self, mask)?;
        let (q, k, v) = (
            self.contiguous_from_zero()?,
            k.contiguous_from_zero()?,
            v.contiguous_from_zero()?,
        );
        let out = Tensor::alloc(
            op,
            &g.shape(&[g.t, g.dims.e as usize]),
            DType::F32,
            &q.device,
        )?;
        let stats = Tensor::alloc(op, &g.shape(&[g.t, 2]), DType::F32, &q.device)?;
        if g.n * g.t > 0 {
            let (count, dim) = g.grid(g.t.div_ceil(rows(g.dims)));
            let vec = vector_width(&[g.dims.d as usize, g.dims.e as usize]);
            launch!(
                q.device,
                flash_attention_forward,
                count,
                dim,
                vec,
                q.buffer_arg(),
                k.buffer_arg(),
                v.buffer_arg(),
                mask.view_arg(),
                out.buffer_arg(),
                stats.buffer_arg(),
                g.t as u32,
                g.s as u32,
                g.scale(),
                mask.offset_u32(),
                g.dims,
                rows(g.dims)
            );
        }
        Ok(FlashAttention { out, stats })
    }

    /// Gradients of [`Tensor::flash_attention`] for `self = q`, given the forward's `forward`
    /// result and `d_out = ∂L/∂out`.
    #[allow(clippy::too_many_arguments)]
    pub fn flash_attention_backward(
        &self,
        k: &Tensor,
        v: &Tensor,
        causal: bool,
        mask: Option<&Tensor>,
        forward: &FlashAttention,
        d_out: &Tensor,
    ) -> Result<FlashAttentionGrads> {
        let op = "Tensor::flash_attention_backward";
        let g = geometry(op, self, k, v, causal, mask)?;
        let out_shape = g.shape(&[g.t, g.dims.e as usize]);
        if d_out.shape() != out_shape
            || forward.out.shape() != out_shape
            || forward.stats.shape() != g.shape(&[g.t, 2])
        {
            return Err(Error::shape(
                op,
                format!(
                    "d_out {:?}, out {:?}, stats {:?}",
                    d_out.shape(),
                    forward.out.shape(),
                    forward.stats.shape()
                ),
                format!(
                    "out and d_out {out_shape:?}, stats {:?}",
                    g.shape(&[g.t, 2])
                ),
            ));
        }
        d_out.expect_f32(op)?;
        let mask = g.mask_view(op, self, mask)?;
        let [q, k, v, out, stats, d_out] =
            [self, k, v, &forward.out, &forward.stats, d_out].map(|t| t.contiguous_from_zero());
        let (q, k, v, out, stats, d_out) = (q?, k?, v?, out?, stats?, d_out?);
        let dq = Tensor::alloc(op, q.shape(), DType::F32, &q.device)?;
        let dk = Tensor::alloc(op, k.shape(), DType::F32, &q.device)?;
        let dv = Tensor::alloc(op, v.shape(), DType::F32, &q.device)?;
        let delta = Tensor::alloc(op, &g.shape(&[g.t]), DType::F32, &q.device)?;
        let vec = vector_width(&[g.dims.d as usize, g.dims.e as usize]);
        if g.n * g.t > 0 {
            let (count, dim) = g.grid(g.t.div_ceil(rows(g.dims)));
            launch!(
                q.device,
                flash_attention_backward_query,
                count,
                dim,
                vec,
                q.buffer_arg(),
                k.buffer_arg(),
                v.buffer_arg(),
                mask.view_arg(),
                out.buffer_arg(),
                d_out.buffer_arg(),
                stats.buffer_arg(),
                dq.buffer_arg(),
                delta.buffer_arg(),
                g.t as u32,
                g.s as u32,
                g.scale(),
                mask.offset_u32(),
                g.dims,
                rows(g.dims)
            );
        }
        if g.n * g.s > 0 {
            let (count, dim) = g.grid(g.s.div_ceil(rows(g.dims)));
            launch!(
                q.device,
                flash_attention_backward_key,
                count,
                dim,
                vec,
                q.buffer_arg(),
                k.buffer_arg(),
                v.buffer_arg(),
                mask.view_arg(),
                d_out.buffer_arg(),
                stats.buffer_arg(),
                delta.buffer_arg(),
                dk.buffer_arg(),
                dv.buffer_arg(),
                g.t as u32,
                g.s as u32,
                g.scale(),
                mask.offset_u32(),
                g.dims,
                rows(g.dims)
            );
        }
        Ok(FlashAttentionGrads { dq, dk, dv })
    }
}
