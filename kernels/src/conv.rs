//! Convolution and pooling over NCHW images by gathers: `im2col` lays every receptive field out as
//! a column (so a convolution is one batched matmul `W · cols` whose output is already NCHW),
//! `col2im` is its adjoint (sums each column entry back into the pixel it came from), and the
//! pooling kernels with their adjoints. Every kernel writes each output element exactly once (no
//! atomics, deterministic).
//!
//! Every kernel takes the window's sizes as one [`Geometry`] launch argument (scalars, no buffer);
//! output size `Ho = ⌊(H + 2·PH − DH·(KH − 1) − 1) / SH⌋ + 1` (same for W).

use crate::num::is_nan;
use cubecl::prelude::*;

/// Comptime tiling of [`conv2d_implicit()`]: `tm` output channels per cube (weights read once per cube
/// step, lane-uniform) and `tn` output pixels per unit.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub struct ImplicitTiling {
    /// Output channels per cube.
    pub tm: u32,
    /// Output pixels per unit.
    pub tn: u32,
}

pub use kernels::*;

// `#[cube]` and `#[derive(CubeType)]` emit public items beside each kernel (its launcher module,
// `…Expand`/`…Launch` types) that take no doc attributes; the lint is allowed on this module only.
#[allow(missing_docs)]
mod kernels {
    use super::*;

    /// The sizes of a convolution or pooling window over an `[N, C, H, W]` input with output
    /// `[N, ·, Ho, Wo]`: kernel `KH × KW`, stride `SH, SW`, padding `PH, PW`, dilation `DH, DW`, `G`
    /// groups (pooling: 1). The host validates them (positive, `C` divisible by `G`) before a launch.
    #[derive(CubeType, CubeLaunch, Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Geometry {
        /// Images in the batch, `N`.
        pub n: u32,
        /// Input channels, `C`.
        pub c: u32,
        /// Input height, `H`.
        pub h: u32,
        /// Input width, `W`.
        pub w: u32,
        /// Output height, `Ho`.
        pub ho: u32,
        /// Output width, `Wo`.
        pub wo: u32,
        /// Kernel height, `KH`.
        pub kh: u32,
        /// Kernel width, `KW`.
        pub kw: u32,
        /// Vertical stride, `SH`.
        pub sh: u32,
        /// Horizontal stride, `SW`.
        pub sw: u32,
        /// Padding above and below, `PH`.
        pub ph: u32,
        /// Padding left and right, `PW`.
        pub pw: u32,
        /// Vertical dilation, `DH`.
        pub dh: u32,
        /// Horizontal dilation, `DW`.
        pub dw: u32,
        /// Channel groups, `G`.
        pub groups: u32,
    }

    impl Geometry {
        /// These sizes as a kernel launch argument.
        pub fn arg<R: Runtime>(&self) -> GeometryLaunch<R> {
            GeometryLaunch::new(
                self.n,
                self.c,
                self.h,
                self.w,
                self.ho,
                self.wo,
                self.kh,
                self.kw,
                self.sh,
                self.sw,
                self.ph,
                self.pw,
                self.dh,
                self.dw,
                self.groups,
            )
        }
    }

    /// No element of the window seen yet.
    const NONE: i32 = -1;

    /// Input row `h` (signed) of kernel tap `ki` for output row `ho`: `ho·S + ki·D − P`.
    #[cube]
    fn tap(o: u32, k: u32, stride: u32, dilation: u32, pad: u32) -> i32 {
        (o * stride + k * dilation) as i32 - pad as i32
    }

    /// The output index `o` whose tap `k` reads input `i`, if any: `(i + P − k·D) / S` when exact and in range.
    #[cube]
    fn source(i: u32, k: u32, stride: u32, dilation: u32, pad: u32, out_size: u32) -> (bool, u32) {
        let t = (i + pad) as i32 - (k * dilation) as i32;
        let o = t / stride as i32;
        let ok = t >= 0 && t % stride as i32 == 0 && o < out_size as i32;
        (ok, select(ok, o as u32, 0))
    }

    /// `cols[n, g, (c·KH + ki)·KW + kj, ho·Wo + wo] = x[n, g·Cg + c, tap(ho, ki), tap(wo, kj)]` (0 in
    /// the padding): each receptive field is a column, so consecutive units read consecutive pixels.
    ///
    /// Launched as a grid of rows × pixels: row `(n, g, k)` = `CUBE_POS_Y + CUBE_POS_Z · CUBE_COUNT_Y`
    /// is the same for every unit of a cube, so its decoding (most of the integer divisions, which CPU
    /// Vulkan runs lane by lane) is done once per cube; pixels run along `x`.
    #[cube(launch_unchecked)]
    pub fn im2col<F: Float>(x: &Array<F>, geometry: &Geometry, cols: &mut Array<F>) {
        let (c_all, h_in, w_in) = (geometry.c, geometry.h, geometry.w);
        let (wo_n, kh, kw) = (geometry.wo, geometry.kh, geometry.kw);
        let groups = geometry.groups;
        let cg = c_all / groups;
        let k_len = cg * kh * kw;
        let p_len = geometry.ho * wo_n;
        let row = CUBE_POS_Y + CUBE_POS_Z * CUBE_COUNT_Y;
        let p = ABSOLUTE_POS_X;
        if row < geometry.n * groups * k_len && p < p_len {
            let k = row % k_len;
            let ng = row / k_len;
            let (n, g) = (ng / groups, ng % groups);
            let c = k / (kh * kw);
            let (ki, kj) = ((k / kw) % kh, k % kw);
            let ho = p / wo_n;
            let h = tap(ho, ki, geometry.sh, geometry.dh, geometry.ph);
            let w = tap(p - ho * wo_n, kj, geometry.sw, geometry.dw, geometry.pw);
            let mut v = F::new(0.0);
            if h >= 0 && h < h_in as i32 && w >= 0 && w < w_in as i32 {
                let ch = n * c_all + g * cg + c;
                v = x[((ch * h_in + h as u32) * w_in + w as u32) as usize];
            }
            cols[(row * p_len + p) as usize] = v;
        }
    }

    /// `out[n, c, p] = x[n, c, p] + bias[c]` for contiguous `x` of `plane` pixels per channel, read
    /// `N` pixels per load (`plane` divisible by `N`). A grid of rows × pixels: row `(n, c)` is
    /// `CUBE_POS_Y + CUBE_POS_Z · CUBE_COUNT_Y`, so the bias element is one load per cube.
    #[cube(launch_unchecked)]
    pub fn add_channel_bias<F: Float, N: Size>(
        x: &Array<Vector<F, N>>,
        bias: &Array<F>,
        out: &mut Array<Vector<F, N>>,
        plane_vectors: u32,
        channels: u32,
    ) {
        let row = CUBE_POS_Y + CUBE_POS_Z * CUBE_COUNT_Y;
        let col = ABSOLUTE_POS_X;
        let i = (row * plane_vectors + col) as usize;
        if col < plane_vectors && i < out.len() {
            out[i] = x[i] + Vector::new(bias[(row % channels) as usize]);
        }
    }

    /// Implicit-GEMM convolution: the product `y[n, g] = W_g · cols[n, g]` of `im2col` + matmul, with each
    /// column entry gathered from `x` when the product uses it instead of being stored first. With
    /// `k = (c·KH + ki)·KW + kj` and output pixel `p = (ho, wo)`,
    /// `y[n, g·Og + o, p] = Σ_k W[g·Og + o, k] · x[n, g·Cg + c, ho·sh + ki·dh − ph, wo·sw + kj·dw − pw]`
    /// (zero outside the image). Cube `(x, y, z)`: pixels from `x·CUBE_DIM_X·tn` (unit `u` owns
    /// `.. + j·CUBE_DIM_X + u`), output channels `y·tm..` of group `z % G`, image `z / G`.
    #[cube(launch_unchecked)]
    pub fn conv2d_implicit<F: Float>(
        x: &Array<F>,
        w: &Array<F>,
        geometry: &Geometry,
        out: &mut Array<F>,
        out_channels: u32,
        #[comptime] tiling: ImplicitTiling,
    ) {
        let (tm, tn) = (tiling.tm as usize, tiling.tn as usize);
        let (c_all, h_in, w_in) = (geometry.c, geometry.h as i32, geometry.w as i32);
        let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
        let (sh, sw, ph, pw) = (geometry.sh, geometry.sw, geometry.ph, geometry.pw);
        let (dh, dw, groups) = (geometry.dh as i32, geometry.dw as i32, geometry.groups);
        let (cg, og) = (c_all / groups, out_channels / groups);
        let p_len = ho_n * wo_n;
        let k_len = (cg * kh * kw) as usize;
        let (n, g) = (CUBE_POS_Z / groups, CUBE_POS_Z % groups);
        let o0 = CUBE_POS_Y * tm as u32;
        let p0 = CUBE_POS_X * CUBE_DIM_X * tn as u32 + UNIT_POS_X;
        let mut top = Array::<i32>::new(tn);
        let mut left = Array::<i32>::new(tn);
        #[unroll]
        for j in 0..tn {
            let p = p0 + j as u32 * CUBE_DIM_X;
            let p = select(p < p_len, p, 0);
            top[j] = ((p / wo_n) * sh) as i32 - ph as i32;
            left[j] = ((p % wo_n) * sw) as i32 - pw as i32;
        }
        let mut w_row = Array::<usize>::new(tm);
        #[unroll]
        for i in 0..tm {
            let o = o0 + i as u32;
            w_row[i] = (g * og + select(o < og, o, 0)) as usize * k_len;
        }
        let mut acc = Array::<F>::new(comptime!(tm * tn));
        #[unroll]
        for r in 0..tm * tn {
            acc[r] = F::new(0.0);
        }
        let mut a_reg = Array::<F>::new(tm);
        let mut b_reg = Array::<F>::new(tn);
        let plane = (h_in * w_in) as usize;
        let mut k = 0usize;
        for c in 0..cg {
            let x_plane = ((n * c_all + g * cg + c) as usize) * plane;
            for ki in 0..kh {
                let dy = ki as i32 * dh;
                for kj in 0..kw {
                    let dx = kj as i32 * dw;
                    #[unroll]
                    for i in 0..tm {
                        a_reg[i] = w[w_row[i] + k];
                    }
                    #[unroll]
                    for j in 0..tn {
                        let (h, x_pos) = (top[j] + dy, left[j] + dx);
                        let inside = h >= 0 && h < h_in && x_pos >= 0 && x_pos < w_in;
                        let at = select(inside, (h * w_in + x_pos) as usize, 0);
                        b_reg[j] = select(inside, x[x_plane + at], F::new(0.0));
                    }
                    #[unroll]
                    for i in 0..tm {
                        #[unroll]
                        for j in 0..tn {
                            acc[i * tn + j] += a_reg[i] * b_reg[j];
                        }
                    }
                    k += 1;
                }
            }
        }
        #[unroll]
        for i in 0..tm {
            let o = o0 + i as u32;
            #[unroll]
            for j in 0..tn {
                let p = p0 + j as u32 * CUBE_DIM_X;
                if o < og && p < p_len {
                    out[((n * out_channels + g * og + o) * p_len + p) as usize] = acc[i * tn + j];
                }
            }
        }
    }

    /// Adjoint of `im2col`: `dx[n, c, h, w] = Σ` of the column entries that read `x[n, c, h, w]`.
    #[cube(launch_unchecked)]
    pub fn col2im<F: Float>(cols: &Array<F>, geometry: &Geometry, dx: &mut Array<F>) {
        let i = ABSOLUTE_POS;
        if i < dx.len() {
            let (c_all, h_in, w_in) = (geometry.c, geometry.h, geometry.w);
            let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
            let groups = geometry.groups;
            let cg = c_all / groups;
            let k_len = cg * kh * kw;
            let p_len = ho_n * wo_n;
            let iu = i as u32;
            let w = iu % w_in;
            let h = (iu / w_in) % h_in;
            let ch = (iu / (w_in * h_in)) % c_all;
            let n = iu / (w_in * h_in * c_all);
            let (g, c) = (ch / cg, ch % cg);
            let base = (n * groups + g) * k_len;
            let mut sum = F::new(0.0);
            for ki in 0..kh {
                let (ok_h, ho) = source(h, ki, geometry.sh, geometry.dh, geometry.ph, ho_n);
                for kj in 0..kw {
                    let (ok_w, wo) = source(w, kj, geometry.sw, geometry.dw, geometry.pw, wo_n);
                    if ok_h && ok_w {
                        let k = (c * kh + ki) * kw + kj;
                        sum += cols[((base + k) * p_len + ho * wo_n + wo) as usize];
                    }
                }
            }
            dx[i] = sum;
        }
    }

    /// Max over each window (padding excluded; NaN wins) and the winner's position `h·W + w` in its plane.
    #[cube(launch_unchecked)]
    pub fn max_pool2d<F: Float>(
        x: &Array<F>,
        geometry: &Geometry,
        out: &mut Array<F>,
        index: &mut Array<i32>,
    ) {
        let i = ABSOLUTE_POS;
        if i < out.len() {
            let (h_in, w_in) = (geometry.h, geometry.w);
            let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
            let iu = i as u32;
            let wo = iu % wo_n;
            let ho = (iu / wo_n) % ho_n;
            let plane = iu / (wo_n * ho_n);
            let mut best = F::new(0.0);
            let mut best_at = NONE.runtime();
            for ki in 0..kh {
                let h = tap(ho, ki, geometry.sh, geometry.dh, geometry.ph);
                for kj in 0..kw {
                    let w = tap(wo, kj, geometry.sw, geometry.dw, geometry.pw);
                    if h >= 0 && h < h_in as i32 && w >= 0 && w < w_in as i32 {
                        let at = h * w_in as i32 + w;
                        let v = x[(plane * h_in * w_in + at as u32) as usize];
                        let take = best_at < 0
                            || (v > best && !is_nan::<F>(best))
                            || (is_nan::<F>(v) && !is_nan::<F>(best));
                        if take {
                            best = v;
                            best_at = at;
                        }
                    }
                }
            }
            out[i] = best;
            index[i] = best_at;
        }
    }

    /// Adjoint of selecting the window maxima: `dx[plane, h, w] = Σ dy` over windows whose winner is `(h, w)`.
    #[cube(launch_unchecked)]
    pub fn max_pool2d_backward<F: Float>(
        dy: &Array<F>,
        index: &Array<i32>,
        geometry: &Geometry,
        dx: &mut Array<F>,
    ) {
        let i = ABSOLUTE_POS;
        if i < dx.len() {
            let (h_in, w_in) = (geometry.h, geometry.w);
            let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
            let iu = i as u32;
            let w = iu % w_in;
            let h = (iu / w_in) % h_in;
            let plane = iu / (w_in * h_in);
            let me = (h * w_in + w) as i32;
            let mut sum = F::new(0.0);
            for ki in 0..kh {
                let (ok_h, ho) = source(h, ki, geometry.sh, geometry.dh, geometry.ph, ho_n);
                for kj in 0..kw {
                    let (ok_w, wo) = source(w, kj, geometry.sw, geometry.dw, geometry.pw, wo_n);
                    if ok_h && ok_w {
                        let o = ((plane * ho_n + ho) * wo_n + wo) as usize;
                        if index[o] == me {
                            sum += dy[o];
                        }
                    }
                }
            }
            dx[i] = sum;
        }
    }

    /// Window mean with the padding counted (PyTorch's `count_include_pad=True`): `Σ x / (KH·KW)`.
    #[cube(launch_unchecked)]
    pub fn avg_pool2d<F: Float>(x: &Array<F>, geometry: &Geometry, out: &mut Array<F>) {
        let i = ABSOLUTE_POS;
        if i < out.len() {
            let (h_in, w_in) = (geometry.h, geometry.w);
            let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
            let iu = i as u32;
            let wo = iu % wo_n;
            let ho = (iu / wo_n) % ho_n;
            let plane = iu / (wo_n * ho_n);
            let mut sum = F::new(0.0);
            for ki in 0..kh {
                let h = tap(ho, ki, geometry.sh, geometry.dh, geometry.ph);
                for kj in 0..kw {
                    let w = tap(wo, kj, geometry.sw, geometry.dw, geometry.pw);
                    if h >= 0 && h < h_in as i32 && w >= 0 && w < w_in as i32 {
                        sum += x[((plane * h_in + h as u32) * w_in + w as u32) as usize];
                    }
                }
            }
            out[i] = sum / F::cast_from(kh * kw);
        }
    }

    /// Adjoint of `avg_pool2d`: `dx = Σ dy / (KH·KW)` over the windows containing the pixel.
    #[cube(launch_unchecked)]
    pub fn avg_pool2d_backward<F: Float>(dy: &Array<F>, geometry: &Geometry, dx: &mut Array<F>) {
        let i = ABSOLUTE_POS;
        if i < dx.len() {
            let (h_in, w_in) = (geometry.h, geometry.w);
            let (ho_n, wo_n, kh, kw) = (geometry.ho, geometry.wo, geometry.kh, geometry.kw);
            let iu = i as u32;
            let w = iu % w_in;
            let h = (iu / w_in) % h_in;
            let plane = iu / (w_in * h_in);
            let mut sum = F::new(0.0);
            for ki in 0..kh {
                let (ok_h, ho) = source(h, ki, geometry.sh, geometry.dh, geometry.ph, ho_n);
                for kj in 0..kw {
                    let (ok_w, wo) = source(w, kj, geometry.sw, geometry.dw, geometry.pw, wo_n);
                    if ok_h && ok_w {
                        sum += dy[((plane * ho_n + ho) * wo_n + wo) as usize];
                    }
                }
            }
            dx[i] = sum / F::cast_from(kh * kw);
        }
    }
}
