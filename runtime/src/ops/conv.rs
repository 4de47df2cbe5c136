//! 2-D convolution (NCHW, stride, padding, dilation, groups) as the batched product
//! `y[n, g] = W_g · cols[n, g]` (`[O/G, K] · [K, Ho·Wo]`, so the product is already NCHW) of the
//! weights with the `im2col` columns (stored, or gathered inside an implicit GEMM: chosen per shape
//! by measurement, see `conv_algorithm`), and max/average pooling. The gathers and their adjoints
//! are separate public ops so that the autodiff can write convolution and pooling gradients as ops
//! too (higher-order derivatives come free).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, rows_grid, units_grid};
use crate::ops::conv_algorithm::conv2d_product;
use crate::ops::elementwise::vector_width;
use crate::shape::{checked_add, checked_mul};
use crate::tensor::Tensor;
use dynlab_kernels::conv::{
    add_channel_bias, avg_pool2d, avg_pool2d_backward, col2im, im2col, max_pool2d,
    max_pool2d_backward, Geometry,
};

/// Stride, padding, dilation (rows, columns) and groups of a convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2dOptions {
    /// Step between window positions (rows, columns).
    pub stride: [usize; 2],
    /// Zeros added on both sides of each spatial dimension (rows, columns).
    pub padding: [usize; 2],
    /// Spacing between kernel taps (rows, columns); 1 is a dense kernel.
    pub dilation: [usize; 2],
    /// Channel groups: input and output channels split into `groups` independent convolutions.
    pub groups: usize,
}

impl Default for Conv2dOptions {
    fn default() -> Self {
        Conv2dOptions {
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

/// Largest size, stride or extent of a window: the kernels locate taps with 32-bit signed
/// arithmetic.
const MAX_GEOMETRY: usize = i32::MAX as usize;

/// A window of `kernel` over an `[N, C, H, W]` input: every size the kernels need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Input shape `[N, C, H, W]`.
    pub input: [usize; 4],
    /// Kernel size `[KH, KW]`.
    pub kernel: [usize; 2],
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
    /// Output size `[Ho, Wo]`, `Ho = ⌊(H + 2·PH − DH·(KH − 1) − 1) / SH⌋ + 1` (same for W).
    pub out_hw: [usize; 2],
}

impl Window {
    /// Validates a window (positive sizes, strides, dilations and groups; channels divisible by
    /// groups; the dilated kernel fits the padded input) and computes its output size; `op` names
    /// the caller in errors.
    pub fn new(
        op: &'static str,
        input: &[usize],
        kernel: [usize; 2],
        options: Conv2dOptions,
    ) -> Result<Window> {
        if input.len() != 4 {
            return Err(Error::shape(
                op,
                format!("input {input:?}"),
                "an image batch [N, C, H, W]",
            ));
        }
        let o = &options;
        if o.stride.contains(&0) || o.dilation.contains(&0) || kernel.contains(&0) || o.groups == 0
        {
            return Err(Error::value(
                op,
                format!("kernel {kernel:?}, {o:?}"),
                "positive kernel sizes, strides, dilations and groups",
            ));
        }
        if !input[1].is_multiple_of(o.groups) {
            return Err(Error::value(
                op,
                format!("{} channels in {} groups", input[1], o.groups),
                "channels divisible by groups",
            ));
        }
        let mut out_hw = [0; 2];
        for d in 0..2 {
            let span = checked_mul(op, "dilation · (kernel − 1)", o.dilation[d], kernel[d] - 1)?;
            let span = checked_add(op, "the dilated kernel extent", span, 1)?;
            let pad = checked_mul(op, "2 · padding", 2, o.padding[d])?;
            let padded = checked_add(op, "the padded input size", input[2 + d], pad)?;
            // The kernels compute window positions in 32-bit signed arithmetic.
            let area = kernel[0].saturating_mul(kernel[1]);
            let widest = [padded, span, o.stride[d], o.dilation[d], area];
            if widest.iter().any(|&v| v > MAX_GEOMETRY) {
                return Err(Error::value(
                    op,
                    format!("input {input:?}, kernel {kernel:?}, {o:?}"),
                    format!(
                        "padded sizes, dilated kernel extents, strides and kernel areas of at \
                         most {MAX_GEOMETRY}"
                    ),
                ));
            }
            if padded < span {
                return Err(Error::shape(
                    op,
                    format!("input {input:?} padded by {:?}", o.padding),
                    format!("at least the dilated kernel extent {span} in each spatial dimension"),
                ));
            }
            out_hw[d] = (padded - span) / o.stride[d] + 1;
        }
        Ok(Window {
            input: [input[0], input[1], input[2], input[3]],
            kernel,
            options,
            out_hw,
        })
    }

    /// `[N, G, (C/G)·KH·KW, Ho·Wo]`: the shape `im2col` produces.
    pub fn cols_shape(&self) -> [usize; 4] {
        let g = self.options.groups;
        [
            self.input[0],
            g,
            self.input[1] / g * self.kernel[0] * self.kernel[1],
            self.out_hw[0] * self.out_hw[1],
        ]
    }

    /// `[N, C, Ho, Wo]`.
    pub fn pooled_shape(&self) -> [usize; 4] {
        [self.input[0], self.input[1], self.out_hw[0], self.out_hw[1]]
    }

    /// The sizes as the kernels' [`Geometry`] launch argument: every value fits in 31 bits
    /// (tensor sizes by the size limit, the rest checked by [`Window::new`]).
    pub(crate) fn geometry(&self) -> Geometry {
        let (i, k, o) = (self.input, self.kernel, &self.options);
        Geometry {
            n: i[0] as u32,
            c: i[1] as u32,
            h: i[2] as u32,
            w: i[3] as u32,
            ho: self.out_hw[0] as u32,
            wo: self.out_hw[1] as u32,
            kh: k[0] as u32,
            kw: k[1] as u32,
            sh: o.stride[0] as u32,
            sw: o.stride[1] as u32,
            ph: o.padding[0] as u32,
            pw: o.padding[1] as u32,
            dh: o.dilation[0] as u32,
            dw: o.dilation[1] as u32,
            groups: o.groups as u32,
        }
    }
}

fn checked_input(op: &'static str, x: &Tensor) -> Result<Tensor> {
    x.expect_f32(op)?;
    x.contiguous_from_zero()
}

/// Launches `kernel(input, geometry, output)` for `window` over `units` output elements (nothing
/// when there are none), one unit each, or on the grid given after `grid =`.
macro_rules! launch_window {
    ($kernel:ident, $device:expr, $units:expr, grid = $grid:expr, $input:expr, $window:expr, $output:expr) => {{
        if $units > 0 {
            let (count, dim) = $grid;
            let geometry = $window.geometry();
            launch!(
                $device,
                $kernel::<f32>,
                count,
                dim,
                $input.buffer_arg(),
                geometry.arg(),
                $output.buffer_arg()
            );
        }
    }};
    ($kernel:ident, $device:expr, $units:expr, $input:expr, $window:expr, $output:expr) => {
        launch_window!(
            $kernel,
            $device,
            $units,
            grid = units_grid($units),
            $input,
            $window,
            $output
        )
    };
}

impl Tensor {
    /// Receptive fields as columns: `[N, C, H, W] → [N, G, (C/G)·KH·KW, Ho·Wo]`.
    pub fn im2col(&self, window: &Window) -> Result<Tensor> {
        let op = "Tensor::im2col";
        let x = checked_input(op, self)?;
        check_input_shape(op, self, window)?;
        let out = Tensor::alloc(op, &window.cols_shape(), DType::F32, self.device())?;
        let [n, g, k, p] = window.cols_shape();
        let grid = rows_grid(n * g * k, p);
        launch_window!(
            im2col,
            self.device(),
            out.numel(),
            grid = grid,
            x,
            window,
            out
        );
        Ok(out)
    }

    /// Adjoint of [`Tensor::im2col`]: columns `[N, G, (C/G)·KH·KW, Ho·Wo]` summed back into `[N, C, H, W]`.
    pub fn col2im(&self, window: &Window) -> Result<Tensor> {
        let op = "Tensor::col2im";
        let cols = checked_input(op, self)?;
        if self.shape() != window.cols_shape() {
            return Err(Error::shape(
                op,
                format!("{:?}", self.shape()),
                format!("{:?}", window.cols_shape()),
            ));
        }
        let out = Tensor::alloc(op, &window.input, DType::F32, self.device())?;
        launch_window!(col2im, self.device(), out.numel(), cols, window, out);
        Ok(out)
    }

    /// `conv2d(x [N, C, H, W], w [O, C/G, KH, KW], bias [O]?) → [N, O, Ho, Wo]` by im2col and a
    /// batched matmul: `y[n, g] = W_g · cols[n, g]`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        options: Conv2dOptions,
    ) -> Result<Tensor> {
        let window = conv_window(self, weight, bias, options)?;
        let y = conv2d_product(self, weight, &window)?;
        match bias {
            Some(b) => y.add_channel_bias(b),
            None => Ok(y),
        }
    }

    /// `x [N, C, ...] + bias [C]` broadcast over the batch and every trailing dimension (a
    /// convolution's or batch norm's per-channel shift), reading contiguous `x` by vectors.
    pub fn add_channel_bias(&self, bias: &Tensor) -> Result<Tensor> {
        let op = "Tensor::add_channel_bias";
        self.expect_f32(op)?;
        bias.expect_f32(op)?;
        self.expect_same_device(op, bias)?;
        if self.rank() < 2 || bias.shape() != [self.shape()[1]] {
            return Err(Error::shape(
                op,
                format!("x {:?}, bias {:?}", self.shape(), bias.shape()),
                "x [N, C, ...] and bias [C]",
            ));
        }
        let x = self.contiguous_from_zero()?;
        let bias = bias.contiguous_from_zero()?;
        let out = Tensor::alloc(op, self.shape(), DType::F32, self.device())?;
        let channels = self.shape()[1];
        let plane: usize = self.shape()[2..].iter().product();
        let vec = vector_width(&[plane]);
        if out.numel() > 0 {
            let (count, dim) = rows_grid(self.shape()[0] * channels, plane / vec);
            launch!(
                self.device(),
                add_channel_bias::<f32>,
                count,
                dim,
                vec,
                x.buffer_arg(),
                bias.buffer_arg(),
                out.buffer_arg(),
                (plane / vec) as u32,
                channels as u32
            );
        }
        Ok(out)
    }

    /// Max over windows (padding excluded): values `[N, C, Ho, Wo]` and the winners' positions
    /// `h·W + w` in their plane (i32), for the backward pass.
    pub fn max_pool2d(
        &self,
        kernel: [usize; 2],
        options: Conv2dOptions,
    ) -> Result<(Tensor, Tensor)> {
        let op = "Tensor::max_pool2d";
        let window = pool_window(op, self, kernel, options)?;
        let x = checked_input(op, self)?;
        let out = Tensor::alloc(op, &window.pooled_shape(), DType::F32, self.device())?;
        let index = Tensor::alloc(op, &window.pooled_shape(), DType::I32, self.device())?;
        let units = out.numel();
        if units > 0 {
            let (count, dim) = units_grid(units);
            launch!(
                self.device(),
                max_pool2d::<f32>,
                count,
                dim,
                x.buffer_arg(),
                window.geometry().arg(),
                out.buffer_arg(),
                index.buffer_arg()
            );
        }
        Ok((out, index))
    }

    /// Adjoint of selecting window maxima: `self` is `dy [N, C, Ho, Wo]`, `index` from
    /// [`Tensor::max_pool2d`]; returns `dx [N, C, H, W]`.
    pub fn max_pool2d_backward(&self, index: &Tensor, window: &Window) -> Result<Tensor> {
        let op = "Tensor::max_pool2d_backward";
        let dy = checked_input(op, self)?;
        if self.shape() != window.pooled_shape()
            || index.shape() != window.pooled_shape()
            || index.dtype() != DType::I32
        {
            return Err(Error::shape(
                op,
                format!(
                    "dy {:?}, index {} {:?}",
                    self.shape(),
                    index.dtype(),
                    index.shape()
                ),
                format!("both {:?}, index i32", window.pooled_shape()),
            ));
        }
        let index = index.contiguous_from_zero()?;
        let out = Tensor::alloc(op, &window.input, DType::F32, self.device())?;
        let units = out.numel();
        if units > 0 {
            let (count, dim) = units_grid(units);
            launch!(
                self.device(),
                max_pool2d_backward::<f32>,
                count,
                dim,
                dy.buffer_arg(),
                index.buffer_arg(),
                window.geometry().arg(),
                out.buffer_arg()
            );
        }
        Ok(out)
    }

    /// Window means, padding counted as zeros (PyTorch's default `count_include_pad=True`).
    pub fn avg_pool2d(&self, kernel: [usize; 2], options: Conv2dOptions) -> Result<Tensor> {
        let op = "Tensor::avg_pool2d";
        let window = pool_window(op, self, kernel, options)?;
        let x = checked_input(op, self)?;
        let out = Tensor::alloc(op, &window.pooled_shape(), DType::F32, self.device())?;
        launch_window!(avg_pool2d, self.device(), out.numel(), x, window, out);
        Ok(out)
    }

    /// Adjoint of [`Tensor::avg_pool2d`]: `self` is `dy [N, C, Ho, Wo]`; returns `dx [N, C, H, W]`.
    pub fn avg_pool2d_backward(&self, window: &Window) -> Result<Tensor> {
        let op = "Tensor::avg_pool2d_backward";
        let dy = checked_input(op, self)?;
        if self.shape() != window.pooled_shape() {
            return Err(Error::shape(
                op,
                format!("{:?}", self.shape()),
                format!("{:?}", window.pooled_shape()),
            ));
        }
        let out = Tensor::alloc(op, &window.input, DType::F32, self.device())?;
        launch_window!(
            avg_pool2d_backward,
            self.device(),
            out.numel(),
            dy,
            window,
            out
        );
        Ok(out)
    }

    /// Mean over the spatial dimensions, kept as `[N, C, 1, 1]`.
    pub fn adaptive_avg_pool2d_1x1(&self) -> Result<Tensor> {
        if self.rank() != 4 {
            return Err(Error::shape(
                "Tensor::adaptive_avg_pool2d_1x1",
                format!("{:?}", self.shape()),
                "[N, C, H, W]",
            ));
        }
        self.mean(3, true)?.mean(2, true)
    }
}

fn check_input_shape(op: &'static str, x: &Tensor, window: &Window) -> Result<()> {
    if x.shape() != window.input {
        return Err(Error::shape(
            op,
            format!("{:?}", x.shape()),
            format!("{:?}", window.input),
        ));
    }
    Ok(())
}

fn pool_window(
    op: &'static str,
    x: &Tensor,
    kernel: [usize; 2],
    options: Conv2dOptions,
) -> Result<Window> {
    if options.groups != 1 {
        return Err(Error::value(
            op,
            format!("groups {}", options.groups),
            "1 (pooling has no groups)",
        ));
    }
    let w = Window::new(op, x.shape(), kernel, options)?;
    for d in 0..2 {
        if options.padding[d] * 2 > kernel[d] {
            return Err(Error::value(
                op,
                format!("padding {:?} for kernel {kernel:?}", options.padding),
                "padding at most half the kernel (as in PyTorch)",
            ));
        }
    }
    Ok(w)
}

/// Validates a convolution's operands and returns its window.
pub fn conv_window(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    options: Conv2dOptions,
) -> Result<Window> {
    let op = "conv2d";
    let ws = weight.shape();
    if ws.len() != 4 {
        return Err(Error::shape(
            op,
            format!("weight {ws:?}"),
            "[O, C/G, KH, KW]",
        ));
    }
    let window = Window::new(op, x.shape(), [ws[2], ws[3]], options)?;
    let g = options.groups;
    if ws[1].checked_mul(g) != Some(x.shape()[1]) || !ws[0].is_multiple_of(g) {
        return Err(Error::shape(
            op,
            format!("input {:?}, weight {ws:?}, groups {g}", x.shape()),
            format!(
                "weight [O, {}, KH, KW] with O divisible by {g}",
                x.shape()[1] / g.max(1)
            ),
        ));
    }
    if let Some(b) = bias {
        if b.shape() != [ws[0]] {
            return Err(Error::shape(
                op,
                format!("bias {:?}", b.shape()),
                format!("[{}]", ws[0]),
            ));
        }
    }
    Ok(window)
}

/// `[N, O, Ho, Wo]`, the shape of the `[N, G, O/G, Ho·Wo]` products.
pub fn conv_output_shape(window: &Window, out_channels: usize) -> [isize; 4] {
    let [ho, wo] = window.out_hw;
    [
        window.input[0] as isize,
        out_channels as isize,
        ho as isize,
        wo as isize,
    ]
}
