//! Elementwise kernels: unary (with up to two scalar parameters), binary with broadcasting through
//! strides, and the ternary select behind `where_`.
//!
//! Every op has two launch shapes: a contiguous one that reads `Vector<F, N>` lanes (the vector size is
//! chosen by the launcher from the buffer's alignment), and a strided one that maps each output element
//! to its input positions with [`strided_offset_fast`](crate::layout::strided_offset_fast()).
//!
//! GELU: `gelu(x) = x Φ(x) = ½ x (1 + erf(x / √2))` (Hendrycks & Gimpel 2016) and its tanh
//! approximation `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))`. NaN propagates through every op, including
//! `relu`, `clamp`, `maximum` and `minimum` (as in PyTorch).

use crate::layout::strided_offset_fast;
use crate::num::is_nan;
use cubecl::prelude::*;
use cubecl::std::FastDivmod;

/// Comparison giving a 0/1 mask.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum CmpOp {
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
}

/// Unary elementwise ops. `p0`, `p1` are the scalar parameters named in each variant's doc.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum UnaryOp {
    /// `−x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `eˣ`.
    Exp,
    /// `ln x`.
    Log,
    /// `ln(1 + x)`.
    Log1p,
    /// `√x`.
    Sqrt,
    /// `1 / √x`.
    Rsqrt,
    /// `1 / x`.
    Recip,
    /// `x²`.
    Square,
    /// `max(x, 0)` (NaN propagates).
    Relu,
    /// `p0` = negative slope.
    LeakyRelu,
    /// The error function.
    Erf,
    /// GELU, erf form: `½ x (1 + erf(x / √2))`.
    GeluErf,
    /// GELU, tanh approximation: `½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    GeluTanh,
    /// `1 / (1 + e^{−x})`.
    Sigmoid,
    /// Hyperbolic tangent.
    Tanh,
    /// Sine.
    Sin,
    /// Cosine.
    Cos,
    /// −1, 0 or 1 (NaN stays NaN).
    Sign,
    /// `p0` = min, `p1` = max.
    Clamp,
    /// `x ^ p0`.
    Powf,
    /// `p0 ^ x`.
    ScalarPow,
    /// `x + p0`.
    AddScalar,
    /// `x * p0`.
    MulScalar,
    /// `x / p0`.
    DivScalar,
    /// `p0 - x`.
    RSubScalar,
    /// `p0 / x`.
    RDivScalar,
    /// `maximum(x, p0)`.
    MaxScalar,
    /// `minimum(x, p0)`.
    MinScalar,
    /// `x <cmp> p0` as 0/1.
    CmpScalar(CmpOp),
    /// `x` unchanged: the identity, used by copies.
    Identity,
}

/// Binary elementwise ops.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a − b`.
    Sub,
    /// `a · b`.
    Mul,
    /// `a / b`.
    Div,
    /// `a ^ b`.
    Pow,
    /// `maximum(a, b)` (NaN propagates).
    Maximum,
    /// `minimum(a, b)` (NaN propagates).
    Minimum,
    /// `a <cmp> b` as 0/1.
    Cmp(CmpOp),
    /// `b · GELU'(a)` with `GELU'(x) = Φ(x) + x·φ(x)`: the backward of exact GELU at `a` for the
    /// upstream gradient `b`.
    GeluGrad,
    /// `b · d/dx[½x(1 + tanh(k(x + c x³)))]` at `a`: the backward of tanh-approximated GELU.
    GeluTanhGrad,
    /// `b · (1 − a²)` with `a = tanh x` (the output): the backward of tanh.
    TanhGrad,
    /// `b · a(1 − a)` with `a = σ(x)` (the output): the backward of the sigmoid.
    SigmoidGrad,
    /// `b · [a > 0]`: the backward of ReLU at `a`.
    ReluGrad,
}

#[cube]
fn compare<F: Float>(a: F, b: F, #[comptime] op: CmpOp) -> F {
    let c = match op {
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
    };
    select(c, F::new(1.0), F::new(0.0))
}

/// `maximum` that propagates NaN from either side.
#[cube]
fn nan_max<F: Float>(a: F, b: F) -> F {
    select(a > b || is_nan::<F>(a), a, b)
}

/// `minimum` that propagates NaN from either side.
#[cube]
fn nan_min<F: Float>(a: F, b: F) -> F {
    select(a < b || is_nan::<F>(a), a, b)
}

pub use kernels::*;

// `#[cube]` and `#[derive(CubeType)]` emit public items beside each kernel (its launcher module,
// `…Expand`/`…Launch` types) that take no doc attributes; the lint is allowed on this module only.
#[allow(missing_docs)]
mod kernels {
    use super::*;

    /// `op` applied to `x` with its scalar parameters `p0`, `p1` (see [`UnaryOp`]); `op` is comptime, so
    /// each op compiles to its own kernel.
    #[cube]
    pub fn apply_unary<F: Float>(x: F, p0: F, p1: F, #[comptime] op: UnaryOp) -> F {
        match op {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            UnaryOp::Log1p => x.log1p(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Rsqrt => x.inverse_sqrt(),
            UnaryOp::Recip => F::new(1.0) / x,
            UnaryOp::Square => x * x,
            UnaryOp::Relu => select(x < F::new(0.0), F::new(0.0), x),
            UnaryOp::LeakyRelu => select(x < F::new(0.0), x * p0, x),
            UnaryOp::Erf => x.erf(),
            UnaryOp::GeluErf => F::new(0.5) * x * (F::new(1.0) + (x * F::new(0.707_106_77)).erf()),
            UnaryOp::GeluTanh => {
                let inner = F::new(0.797_884_6) * (x + F::new(0.044_715) * x * x * x);
                F::new(0.5) * x * (F::new(1.0) + inner.tanh())
            }
            UnaryOp::Sigmoid => F::new(1.0) / (F::new(1.0) + (-x).exp()),
            UnaryOp::Tanh => x.tanh(),
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            UnaryOp::Sign => {
                let pos = select(x > F::new(0.0), F::new(1.0), F::new(0.0));
                let neg = select(x < F::new(0.0), F::new(1.0), F::new(0.0));
                select(is_nan::<F>(x), x, pos - neg)
            }
            UnaryOp::Clamp => select(x < p0, p0, select(x > p1, p1, x)),
            UnaryOp::Powf => x.powf(p0),
            UnaryOp::ScalarPow => p0.powf(x),
            UnaryOp::AddScalar => x + p0,
            UnaryOp::MulScalar => x * p0,
            UnaryOp::DivScalar => x / p0,
            UnaryOp::RSubScalar => p0 - x,
            UnaryOp::RDivScalar => p0 / x,
            UnaryOp::MaxScalar => nan_max::<F>(x, p0),
            UnaryOp::MinScalar => nan_min::<F>(x, p0),
            UnaryOp::CmpScalar(c) => compare::<F>(x, p0, c),
            UnaryOp::Identity => x,
        }
    }

    /// `op` applied to `a` and `b` (see [`BinaryOp`]); `op` is comptime.
    #[cube]
    pub fn apply_binary<F: Float>(a: F, b: F, #[comptime] op: BinaryOp) -> F {
        match op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
            BinaryOp::Pow => a.powf(b),
            BinaryOp::Maximum => nan_max::<F>(a, b),
            BinaryOp::Minimum => nan_min::<F>(a, b),
            BinaryOp::Cmp(c) => compare::<F>(a, b, c),
            BinaryOp::GeluGrad => {
                let cdf = F::new(0.5) * (F::new(1.0) + (a * F::new(0.707_106_77)).erf());
                let pdf = F::new(0.398_942_3) * (F::new(-0.5) * a * a).exp();
                b * (cdf + a * pdf)
            }
            BinaryOp::GeluTanhGrad => {
                let k = F::new(0.797_884_6);
                let c = F::new(0.044_715);
                let t = (k * (a + c * a * a * a)).tanh();
                let du = k * (F::new(1.0) + F::new(3.0) * c * a * a);
                b * (F::new(0.5) * (F::new(1.0) + t) + F::new(0.5) * a * (F::new(1.0) - t * t) * du)
            }
            BinaryOp::TanhGrad => b * (F::new(1.0) - a * a),
            BinaryOp::SigmoidGrad => b * (a * (F::new(1.0) - a)),
            BinaryOp::ReluGrad => select(a > F::new(0.0), b, F::new(0.0)),
        }
    }

    /// Contiguous unary op over `Vector<F, N>` lanes; `in_offset` counts vectors.
    #[cube(launch_unchecked)]
    pub fn unary_contiguous<F: Float + CubeElement, N: Size>(
        input: &Array<Vector<F, N>>,
        output: &mut Array<Vector<F, N>>,
        in_offset: u32,
        p0: F,
        p1: F,
        #[comptime] op: UnaryOp,
    ) {
        let i = ABSOLUTE_POS;
        if i < output.len() {
            let mut v = input[i + in_offset as usize];
            #[unroll]
            for k in 0..N::value() {
                v[k] = apply_unary::<F>(v[k], p0, p1, op);
            }
            output[i] = v;
        }
    }

    /// Unary op on a strided view; the output is contiguous.
    #[cube(launch_unchecked)]
    pub fn unary_strided<F: Float + CubeElement>(
        input: &Tensor<F>,
        output: &mut Array<F>,
        sizes: Sequence<FastDivmod<u32>>,
        in_offset: u32,
        p0: F,
        p1: F,
        #[comptime] op: UnaryOp,
    ) {
        let i = ABSOLUTE_POS;
        if i < output.len() {
            let x = input[strided_offset_fast::<F>(input, &sizes, in_offset, i)];
            output[i] = apply_unary::<F>(x, p0, p1, op);
        }
    }

    /// Contiguous binary op on two inputs of the same shape; offsets count vectors.
    #[cube(launch_unchecked)]
    pub fn binary_contiguous<F: Float, N: Size>(
        lhs: &Array<Vector<F, N>>,
        rhs: &Array<Vector<F, N>>,
        output: &mut Array<Vector<F, N>>,
        lhs_offset: u32,
        rhs_offset: u32,
        #[comptime] op: BinaryOp,
    ) {
        let i = ABSOLUTE_POS;
        if i < output.len() {
            let a = lhs[i + lhs_offset as usize];
            let b = rhs[i + rhs_offset as usize];
            let mut v = a;
            #[unroll]
            for k in 0..N::value() {
                v[k] = apply_binary::<F>(a[k], b[k], op);
            }
            output[i] = v;
        }
    }

    /// Binary op on two views already broadcast to the output's shape (stride 0 on broadcast dims).
    #[cube(launch_unchecked)]
    pub fn binary_strided<F: Float>(
        lhs: &Tensor<F>,
        rhs: &Tensor<F>,
        output: &mut Array<F>,
        sizes: Sequence<FastDivmod<u32>>,
        lhs_offset: u32,
        rhs_offset: u32,
        #[comptime] op: BinaryOp,
    ) {
        let i = ABSOLUTE_POS;
        if i < output.len() {
            let a = lhs[strided_offset_fast::<F>(lhs, &sizes, lhs_offset, i)];
            let b = rhs[strided_offset_fast::<F>(rhs, &sizes, rhs_offset, i)];
            output[i] = apply_binary::<F>(a, b, op);
        }
    }

    /// `output = cond != 0 ? a : b`, all three views broadcast to the output's shape.
    #[cube(launch_unchecked)]
    pub fn where_strided<F: Float>(
        cond: &Tensor<F>,
        a: &Tensor<F>,
        b: &Tensor<F>,
        output: &mut Array<F>,
        sizes: Sequence<FastDivmod<u32>>,
        cond_offset: u32,
        a_offset: u32,
        b_offset: u32,
    ) {
        let i = ABSOLUTE_POS;
        if i < output.len() {
            let c = cond[strided_offset_fast::<F>(cond, &sizes, cond_offset, i)];
            let x = a[strided_offset_fast::<F>(a, &sizes, a_offset, i)];
            let y = b[strided_offset_fast::<F>(b, &sizes, b_offset, i)];
            output[i] = select(c != F::new(0.0), x, y);
        }
    }
}
