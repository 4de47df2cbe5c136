//! Elementwise ops: unary (with scalar parameters), binary with NumPy broadcasting, comparisons as
//! 0/1 masks, `where_` and `masked_fill`. Contiguous operands take the vectorised kernels.

use crate::dtype::DType;
use crate::error::Result;
use crate::launch::{launch, units_grid};
use crate::shape::broadcast_shapes;
use crate::tensor::Tensor;
use dynlab_kernels::elementwise::{
    binary_contiguous, binary_strided, unary_contiguous, unary_strided, where_strided, BinaryOp,
    CmpOp, UnaryOp,
};

/// Widest vector (4, 2 or 1 elements) that divides every listed length/offset.
pub(crate) fn vector_width(values: &[usize]) -> usize {
    [4, 2]
        .into_iter()
        .find(|w| values.iter().all(|v| v % w == 0))
        .unwrap_or(1)
}

macro_rules! unary_methods {
    ($($(#[$doc:meta])* $name:ident => $kind:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self) -> Result<Tensor> {
                self.unary(concat!("Tensor::", stringify!($name)), $kind, 0.0, 0.0)
            }
        )*
    };
}

macro_rules! scalar_methods {
    ($($(#[$doc:meta])* $name:ident => $kind:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self, s: f32) -> Result<Tensor> {
                self.unary(concat!("Tensor::", stringify!($name)), $kind, s, 0.0)
            }
        )*
    };
}

macro_rules! binary_methods {
    ($($(#[$doc:meta])* $name:ident => $kind:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(&self, other: &Tensor) -> Result<Tensor> {
                self.binary(concat!("Tensor::", stringify!($name)), other, $kind)
            }
        )*
    };
}

impl Tensor {
    pub(crate) fn unary(
        &self,
        op: &'static str,
        kind: UnaryOp,
        p0: f32,
        p1: f32,
    ) -> Result<Tensor> {
        self.expect_f32(op)?;
        let out = Tensor::alloc(op, &self.shape, DType::F32, &self.device)?;
        let n = self.numel();
        if n == 0 {
            return Ok(out);
        }
        if self.is_contiguous() {
            let vec = vector_width(&[n, self.offset]);
            let (count, dim) = units_grid(n / vec);
            let off = (self.offset / vec) as u32;
            launch!(
                self.device,
                unary_contiguous::<f32>,
                count,
                dim,
                vec,
                self.buffer_arg(),
                out.buffer_arg(),
                off,
                p0,
                p1,
                kind
            );
        } else {
            let (count, dim) = units_grid(n);
            launch!(
                self.device,
                unary_strided::<f32>,
                count,
                dim,
                self.view_arg(),
                out.buffer_arg(),
                self.sizes_arg(),
                self.offset_u32(),
                p0,
                p1,
                kind
            );
        }
        Ok(out)
    }

    pub(crate) fn binary(
        &self,
        op: &'static str,
        other: &Tensor,
        kind: BinaryOp,
    ) -> Result<Tensor> {
        self.expect_f32(op)?;
        other.expect_f32(op)?;
        self.expect_same_device(op, other)?;
        let shape = broadcast_shapes(op, &self.shape, &other.shape)?;
        let out = Tensor::alloc(op, &shape, DType::F32, &self.device)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let same = self.shape == shape && other.shape == shape;
        if same && self.is_contiguous() && other.is_contiguous() {
            let vec = vector_width(&[n, self.offset, other.offset]);
            let (count, dim) = units_grid(n / vec);
            let (a_off, b_off) = ((self.offset / vec) as u32, (other.offset / vec) as u32);
            launch!(
                self.device,
                binary_contiguous::<f32>,
                count,
                dim,
                vec,
                self.buffer_arg(),
                other.buffer_arg(),
                out.buffer_arg(),
                a_off,
                b_off,
                kind
            );
        } else {
            let (a, b) = (self.expand(&shape)?, other.expand(&shape)?);
            let (count, dim) = units_grid(n);
            launch!(
                self.device,
                binary_strided::<f32>,
                count,
                dim,
                a.view_arg(),
                b.view_arg(),
                out.buffer_arg(),
                out.sizes_arg(),
                a.offset_u32(),
                b.offset_u32(),
                kind
            );
        }
        Ok(out)
    }

    /// `cond != 0 ? a : b`, broadcasting all three.
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let op = "Tensor::where_";
        for t in [cond, a, b] {
            t.expect_f32(op)?;
            cond.expect_same_device(op, t)?;
        }
        let shape = broadcast_shapes(op, &broadcast_shapes(op, &cond.shape, &a.shape)?, &b.shape)?;
        let out = Tensor::alloc(op, &shape, DType::F32, &cond.device)?;
        let n = out.numel();
        if n == 0 {
            return Ok(out);
        }
        let (c, a, b) = (cond.expand(&shape)?, a.expand(&shape)?, b.expand(&shape)?);
        let (count, dim) = units_grid(n);
        launch!(
            cond.device,
            where_strided::<f32>,
            count,
            dim,
            c.view_arg(),
            a.view_arg(),
            b.view_arg(),
            out.buffer_arg(),
            out.sizes_arg(),
            c.offset_u32(),
            a.offset_u32(),
            b.offset_u32()
        );
        Ok(out)
    }

    /// `value` where `mask != 0`, this tensor elsewhere (mask broadcasts).
    pub fn masked_fill(&self, mask: &Tensor, value: f32) -> Result<Tensor> {
        let fill = Tensor::scalar(value, &self.device)?;
        Tensor::where_(mask, &fill, self)
    }

    unary_methods! {
        /// `−x`.
        neg => UnaryOp::Neg;
        /// `|x|`.
        abs => UnaryOp::Abs;
        /// `eˣ`.
        exp => UnaryOp::Exp;
        /// Natural logarithm.
        log => UnaryOp::Log;
        /// `ln(1 + x)`, accurate near 0.
        log1p => UnaryOp::Log1p;
        /// `√x`.
        sqrt => UnaryOp::Sqrt;
        /// `1 / sqrt(x)`.
        rsqrt => UnaryOp::Rsqrt;
        /// `1 / x`.
        recip => UnaryOp::Recip;
        /// `x²`.
        square => UnaryOp::Square;
        /// `max(x, 0)` (NaN stays NaN).
        relu => UnaryOp::Relu;
        /// The error function.
        erf => UnaryOp::Erf;
        /// GELU with the exact erf form.
        gelu => UnaryOp::GeluErf;
        /// GELU with the tanh approximation.
        gelu_tanh => UnaryOp::GeluTanh;
        /// The logistic function `1 / (1 + e^{−x})`.
        sigmoid => UnaryOp::Sigmoid;
        /// Hyperbolic tangent.
        tanh => UnaryOp::Tanh;
        /// Sine (radians).
        sin => UnaryOp::Sin;
        /// Cosine (radians).
        cos => UnaryOp::Cos;
        /// -1, 0 or 1 (NaN stays NaN).
        sign => UnaryOp::Sign;
    }

    scalar_methods! {
        /// `x` for `x >= 0`, `slope · x` otherwise.
        leaky_relu => UnaryOp::LeakyRelu;
        /// `x ^ p`.
        powf => UnaryOp::Powf;
        /// `x + s`.
        add_scalar => UnaryOp::AddScalar;
        /// `x · s`.
        mul_scalar => UnaryOp::MulScalar;
        /// `x / s`.
        div_scalar => UnaryOp::DivScalar;
        /// `s - x`.
        rsub_scalar => UnaryOp::RSubScalar;
        /// `s / x`.
        rdiv_scalar => UnaryOp::RDivScalar;
        /// `s ^ x`.
        scalar_pow => UnaryOp::ScalarPow;
        /// `maximum(x, s)` (NaN propagates).
        maximum_scalar => UnaryOp::MaxScalar;
        /// `minimum(x, s)` (NaN propagates).
        minimum_scalar => UnaryOp::MinScalar;
        /// `x == s` as f32 0/1.
        eq_scalar => UnaryOp::CmpScalar(CmpOp::Eq);
        /// `x != s` as f32 0/1.
        ne_scalar => UnaryOp::CmpScalar(CmpOp::Ne);
        /// `x < s` as f32 0/1.
        lt_scalar => UnaryOp::CmpScalar(CmpOp::Lt);
        /// `x <= s` as f32 0/1.
        le_scalar => UnaryOp::CmpScalar(CmpOp::Le);
        /// `x > s` as f32 0/1.
        gt_scalar => UnaryOp::CmpScalar(CmpOp::Gt);
        /// `x >= s` as f32 0/1.
        ge_scalar => UnaryOp::CmpScalar(CmpOp::Ge);
    }

    /// A new buffer holding a row-major copy of this tensor (the vectorised contiguous kernel when
    /// the view is contiguous, the strided one otherwise).
    pub fn copy(&self) -> Result<Tensor> {
        self.unary("Tensor::copy", UnaryOp::Identity, 0.0, 0.0)
    }

    /// `x - s`.
    pub fn sub_scalar(&self, s: f32) -> Result<Tensor> {
        self.unary("Tensor::sub_scalar", UnaryOp::AddScalar, -s, 0.0)
    }

    /// Limits to `[min, max]`.
    pub fn clamp(&self, min: f32, max: f32) -> Result<Tensor> {
        if min.is_nan() || max.is_nan() || min > max {
            return Err(crate::Error::value(
                "Tensor::clamp",
                format!("min={min}, max={max}"),
                "min <= max, neither NaN",
            ));
        }
        self.unary("Tensor::clamp", UnaryOp::Clamp, min, max)
    }

    binary_methods! {
        /// `self + other`, broadcasting.
        add => BinaryOp::Add;
        /// `self − other`, broadcasting.
        sub => BinaryOp::Sub;
        /// `self · other` elementwise, broadcasting.
        mul => BinaryOp::Mul;
        /// `self / other`, broadcasting.
        div => BinaryOp::Div;
        /// `self ^ other` elementwise, broadcasting.
        pow => BinaryOp::Pow;
        /// Elementwise maximum (NaN propagates).
        maximum => BinaryOp::Maximum;
        /// Elementwise minimum (NaN propagates).
        minimum => BinaryOp::Minimum;
        /// `self == other` as f32 0/1, broadcasting.
        eq => BinaryOp::Cmp(CmpOp::Eq);
        /// `self != other` as f32 0/1, broadcasting.
        ne => BinaryOp::Cmp(CmpOp::Ne);
        /// `self < other` as f32 0/1, broadcasting.
        lt => BinaryOp::Cmp(CmpOp::Lt);
        /// `self <= other` as f32 0/1, broadcasting.
        le => BinaryOp::Cmp(CmpOp::Le);
        /// `self > other` as f32 0/1, broadcasting.
        gt => BinaryOp::Cmp(CmpOp::Gt);
        /// `self >= other` as f32 0/1, broadcasting.
        ge => BinaryOp::Cmp(CmpOp::Ge);
        /// `grad · GELU'(self)` (exact GELU's backward at `self`), in one pass.
        gelu_backward => BinaryOp::GeluGrad;
        /// `grad · d/dx GELU_tanh(self)` (the tanh approximation's backward), in one pass.
        gelu_tanh_backward => BinaryOp::GeluTanhGrad;
        /// `grad · (1 − self²)` for `self = tanh x` (tanh's backward from its output).
        tanh_backward => BinaryOp::TanhGrad;
        /// `grad · self(1 − self)` for `self = σ(x)` (the sigmoid's backward from its output).
        sigmoid_backward => BinaryOp::SigmoidGrad;
        /// `grad · [self > 0]` (ReLU's backward at `self`); a NaN `self` passes no gradient.
        relu_backward => BinaryOp::ReluGrad;
    }
}
