//! Matrix products: `matmul` (2-D and batched with broadcast batch dimensions, transposed operands
//! through strides), `matmul_with` (`α · A B + β · C + bias`) and `addmm_` (accumulate into an
//! existing output, in place when its buffer is not shared). f16/bf16 inputs accumulate in f32.
//!
//! Which kernel runs is decided per shape class by measurement: the first product of a class times
//! every candidate (the dot-product kernel and several tilings) and caches the fastest for the
//! device; small products use a fixed rule instead of paying for timing. `DYNLAB_MATMUL_TUNE=0`
//! turns timing off (the rule is then used for every shape).

use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::launch::{launch, placeholder, units_grid};
use crate::settings;
use crate::shape::broadcast_shapes;
use crate::tensor::Tensor;
use crate::tune::{fastest, with_forced, TuneCache};
use crate::Device;
use cubecl::prelude::*;
pub use dynlab_kernels::matmul::Tiling;
use dynlab_kernels::matmul::{
    matmul_dot, matmul_register, matmul_register_vec, matmul_tiled, Epilogue,
};
use std::cell::Cell;

/// A matmul kernel choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatmulKernel {
    /// One unit per output element.
    Dot,
    /// Shared-memory tiles with register blocking.
    Tiled(Tiling),
    /// Register blocking straight from global memory (no shared memory, no barriers).
    Register(Tiling),
    /// [`MatmulKernel::Register`] reading `B` four columns per load; needs `B` with unit column
    /// stride and its other strides, offset and `N` divisible by 4, and no epilogue (else
    /// `Register` runs).
    RegisterVec(Tiling),
}

const fn tiling(bm: u32, bn: u32, bk: u32, tm: u32, tn: u32) -> Tiling {
    Tiling { bm, bn, bk, tm, tn }
}

/// The kernels the tuner times. Shared-memory tiles suit GPUs; register blocking straight from
/// global memory suits CPU Vulkan, where every lane-varying load is a gather and only large
/// register blocks (`TM·TN / (TM + TN)` multiply-adds per load) keep the FMA units busy; its
/// `BN / TN` must cover the 8 SIMD lanes. (`BK` is unused by the register kernel.)
pub const CANDIDATES: [MatmulKernel; 9] = [
    MatmulKernel::Dot,
    MatmulKernel::Tiled(tiling(64, 64, 16, 4, 4)),
    MatmulKernel::Tiled(tiling(128, 128, 8, 8, 8)),
    MatmulKernel::Register(tiling(64, 128, 1, 16, 16)),
    MatmulKernel::Register(tiling(32, 256, 1, 16, 32)),
    MatmulKernel::Register(tiling(32, 64, 1, 4, 8)),
    MatmulKernel::RegisterVec(tiling(16, 128, 1, 16, 16)),
    MatmulKernel::RegisterVec(tiling(16, 256, 1, 16, 32)),
    MatmulKernel::RegisterVec(tiling(32, 256, 1, 32, 32)),
];

/// Candidates whose unrolled bodies take lavapipe ~10 s to compile (vs 1–3 s for the others); the
/// tuner only times them for products of at least this many multiply-adds, where they can repay it.
const SLOW_TO_COMPILE_MIN_WORK: usize = 1 << 27;

fn slow_to_compile(kernel: MatmulKernel) -> bool {
    matches!(kernel, MatmulKernel::RegisterVec(t) if t.tm * t.tn >= 1024)
}

/// Vector width of [`MatmulKernel::RegisterVec`]'s `B` loads.
const B_VECTOR: usize = 4;

/// Whether `B` can be read `B_VECTOR` columns per load: unit column stride, every other stride,
/// the offset and the column count divisible by the width.
fn b_vectorisable(p: &Plan) -> bool {
    let strides = p.b.strides();
    let rank = strides.len();
    (strides[rank - 1] == 1 || p.n == 1)
        && strides[..rank - 1]
            .iter()
            .all(|s| s.is_multiple_of(B_VECTOR))
        && p.b.offset.is_multiple_of(B_VECTOR)
        && p.n.is_multiple_of(B_VECTOR)
}

/// `kernel`, or the scalar register kernel `CANDIDATES[3]` (16 × 16 blocks) when it needs a
/// vectorisable `B` that this product lacks, or when the product has an epilogue: each of the
/// vectorised kernel's hundreds of unrolled epilogue elements gathers `C` and the bias lane by lane,
/// which takes lavapipe 30–150 s to compile.
fn runnable(kernel: MatmulKernel, p: &Plan, epilogue: Epilogue) -> MatmulKernel {
    let plain = !epilogue.accumulate && !epilogue.bias;
    match kernel {
        MatmulKernel::RegisterVec(_) if !(plain && b_vectorisable(p)) => CANDIDATES[3],
        other => other,
    }
}

/// Options of [`Tensor::matmul_with`].
#[derive(Clone, Copy, Debug)]
pub struct MatmulOptions<'a> {
    /// Scale of the product: the result is `alpha · A B + beta · C (+ bias)`.
    pub alpha: f32,
    /// Weight of `accumulate` (ignored without it).
    pub beta: f32,
    /// `C`, broadcastable to the output's shape.
    pub accumulate: Option<&'a Tensor>,
    /// `[N]` added to every row.
    pub bias: Option<&'a Tensor>,
}

impl Default for MatmulOptions<'_> {
    fn default() -> Self {
        MatmulOptions {
            alpha: 1.0,
            beta: 1.0,
            accumulate: None,
            bias: None,
        }
    }
}

/// Validated geometry of one product.
struct Plan {
    a: Tensor,
    b: Tensor,
    out_shape: Vec<usize>,
    batches: usize,
    m: usize,
    n: usize,
    k: usize,
}

fn plan(op: &'static str, a: &Tensor, b: &Tensor) -> Result<Plan> {
    a.expect_same_device(op, b)?;
    if a.rank() < 2 || b.rank() < 2 {
        return Err(Error::shape(
            op,
            format!("{:?} and {:?}", a.shape(), b.shape()),
            "operands of rank >= 2 ([..., M, K] and [..., K, N])",
        ));
    }
    let float = |t: &Tensor| matches!(t.dtype(), DType::F32 | DType::F16 | DType::BF16);
    if !float(a) || a.dtype() != b.dtype() {
        return Err(Error::dtype(
            op,
            format!("{} and {}", a.dtype(), b.dtype()),
            "two f32, f16 or bf16 operands of one dtype",
        ));
    }
    let (ra, rb) = (a.rank(), b.rank());
    let (m, k, k2, n) = (
        a.shape()[ra - 2],
        a.shape()[ra - 1],
        b.shape()[rb - 2],
        b.shape()[rb - 1],
    );
    if k != k2 {
        return Err(Error::shape(
            op,
            format!("{:?} and {:?}", a.shape(), b.shape()),
            format!("inner dimensions equal ({k} vs {k2})"),
        ));
    }
    let batch = broadcast_shapes(op, &a.shape()[..ra - 2], &b.shape()[..rb - 2]).map_err(|_| {
        Error::shape(
            op,
            format!("{:?} and {:?}", a.shape(), b.shape()),
            format!(
                "batch dimensions that broadcast ({:?} and {:?} do not)",
                &a.shape()[..ra - 2],
                &b.shape()[..rb - 2]
            ),
        )
    })?;
    let batches = batch.iter().fold(1usize, |acc, &d| acc.saturating_mul(d));
    if batches > 65_535 {
        return Err(Error::value(
            op,
            format!("{batches} batches"),
            "at most 65535 batches",
        ));
    }
    let with = |tail: [usize; 2]| batch.iter().copied().chain(tail).collect::<Vec<_>>();
    Ok(Plan {
        a: a.expand(&with([m, k]))?,
        b: b.expand(&with([k, n]))?,
        out_shape: with([m, n]),
        batches,
        m,
        n,
        k,
    })
}

impl Plan {
    /// Multiply-adds of the product (saturating: only compared with thresholds).
    fn work(&self) -> usize {
        [self.batches, self.m, self.n, self.k]
            .iter()
            .fold(1usize, |acc, &d| acc.saturating_mul(d))
    }
}

thread_local! {
    static FORCED_KERNEL: Cell<Option<MatmulKernel>> = const { Cell::new(None) };
}

/// Runs `f` with every matmul on this thread using `kernel`, for tests that must cover each kernel.
pub fn with_matmul_kernel<T>(kernel: MatmulKernel, f: impl FnOnce() -> T) -> T {
    with_forced(&FORCED_KERNEL, kernel, f)
}

/// Shape class for the tuning cache: sizes rounded up to powers of two, plus the layout.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct TuneKey {
    device: String,
    dims: [usize; 4],
    unit_strides: [bool; 2],
    dtype: DType,
}

static TUNED: TuneCache<TuneKey, MatmulKernel> = TuneCache::new("matmul", || CANDIDATES.to_vec());

/// The measured choices so far, one line per shape class.
pub(crate) fn tuned_choices() -> Vec<String> {
    TUNED
        .entries()
        .into_iter()
        .map(|(k, kernel)| {
            format!(
                "matmul dims {:?} unit strides {:?} {} on {}: {kernel:?}",
                k.dims, k.unit_strides, k.dtype, k.device
            )
        })
        .collect()
}

/// Products smaller than this many multiply-adds use [`rule_of_thumb`] rather than timing.
const TUNE_MIN_WORK: usize = 1 << 21;

/// The untimed choice: one unit per output for skinny outputs; otherwise register blocking (CPU
/// devices) or shared-memory tiles. A short inner dimension alone does not pick the dot kernel:
/// on lavapipe an `[8000, 1] × [1, 64]` outer product takes 41 ms with it and 2.8 ms with the
/// vectorised register kernel (`K = 3`: 44 ms and 2.8 ms).
fn rule_of_thumb(p: &Plan) -> MatmulKernel {
    if p.m <= 16 || p.n <= 16 {
        CANDIDATES[0]
    } else if p.a.device().is_cpu() {
        CANDIDATES[6]
    } else {
        CANDIDATES[1]
    }
}

impl Tensor {
    /// `self [..., M, K] · other [..., K, N]`; batch dimensions broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_with(other, MatmulOptions::default())
    }

    /// `α · self · other + β · C + bias` in one launch.
    pub fn matmul_with(&self, other: &Tensor, options: MatmulOptions) -> Result<Tensor> {
        let op = "Tensor::matmul";
        if let Some(rows) = self.foldable_rows(other, &options) {
            // `[B…, M, K] · [K, N]` is one `[B·M, K] · [K, N]` product: one tall matrix instead of
            // `B` short ones (on lavapipe a `[144, 4, 128] · [128, 384]` product took 140 ms batched).
            let k = self.shape()[self.rank() - 1] as isize;
            let flat = self
                .reshape(&[rows as isize, k])?
                .matmul_with(other, options)?;
            let mut shape: Vec<isize> = self.shape()[..self.rank() - 1]
                .iter()
                .map(|&d| d as isize)
                .collect();
            shape.push(other.shape()[1] as isize);
            return flat.reshape(&shape);
        }
        let p = plan(op, self, other)?;
        let out = Tensor::alloc(op, &p.out_shape, DType::F32, &self.device)?;
        launch_product(op, &p, &out, options)?;
        Ok(out)
    }

    /// `self = α · a · b + β · self`, writing into this tensor's buffer when it is contiguous and
    /// not shared with another tensor (gradient accumulation), else into a new buffer.
    pub fn addmm_(&mut self, a: &Tensor, b: &Tensor, alpha: f32, beta: f32) -> Result<()> {
        let op = "Tensor::addmm_";
        let p = plan(op, a, b)?;
        self.expect_f32(op)?;
        self.expect_same_device(op, a)?;
        if self.shape() != p.out_shape.as_slice() {
            return Err(Error::shape(
                op,
                format!(
                    "output {:?} for {:?} · {:?}",
                    self.shape(),
                    a.shape(),
                    b.shape()
                ),
                format!("{:?}", p.out_shape),
            ));
        }
        let in_place = self.is_contiguous() && self.offset == 0 && self.handle.can_mut();
        let out = if in_place {
            self.clone()
        } else {
            Tensor::alloc(op, &p.out_shape, DType::F32, &self.device)?
        };
        let options = MatmulOptions {
            alpha,
            beta,
            accumulate: Some(self),
            bias: None,
        };
        launch_product(op, &p, &out, options)?;
        *self = out;
        Ok(())
    }
}

impl Tensor {
    /// The rows `B·M` when `self [B…, M, K]` (contiguous, rank ≥ 3) times a plain matrix can run
    /// as one `[B·M, K]` product (no accumulated operand, whose broadcast would need the batch).
    fn foldable_rows(&self, other: &Tensor, options: &MatmulOptions) -> Option<usize> {
        let foldable = self.rank() >= 3
            && other.rank() == 2
            && options.accumulate.is_none()
            && self.is_contiguous()
            && self.shape()[self.rank() - 1] == other.shape()[0];
        foldable.then(|| self.shape()[..self.rank() - 1].iter().product())
    }
}

fn launch_product(op: &'static str, p: &Plan, out: &Tensor, options: MatmulOptions) -> Result<()> {
    let dummy = placeholder(&p.a.device, DType::F32)?.reshape(&[1, 1])?;
    let c = match options.accumulate {
        Some(c) => {
            c.expect_f32(op)?;
            c.expect_same_device(op, &p.a)?;
            c.expand(&p.out_shape).map_err(|_| {
                Error::shape(
                    op,
                    format!("accumulate {:?}", c.shape()),
                    format!("broadcastable to {:?}", p.out_shape),
                )
            })?
        }
        None => dummy.clone(),
    };
    let bias = match options.bias {
        Some(bias) => {
            bias.expect_f32(op)?;
            bias.expect_same_device(op, &p.a)?;
            if bias.shape() != [p.n] {
                return Err(Error::shape(
                    op,
                    format!("bias {:?}", bias.shape()),
                    format!("[{}] (one per output column)", p.n),
                ));
            }
            bias.contiguous_from_zero()?
        }
        None => dummy.reshape(&[1])?,
    };
    if out.numel() == 0 {
        return Ok(());
    }
    let epilogue = Epilogue {
        accumulate: options.accumulate.is_some(),
        bias: options.bias.is_some(),
    };
    let args = LaunchArgs {
        p,
        out,
        c: &c,
        bias: &bias,
        alpha: options.alpha,
        beta: options.beta,
        epilogue,
    };
    let kernel = runnable(choose_kernel(&args)?, p, epilogue);
    args.run(kernel)
}

struct LaunchArgs<'a> {
    p: &'a Plan,
    out: &'a Tensor,
    c: &'a Tensor,
    bias: &'a Tensor,
    alpha: f32,
    beta: f32,
    epilogue: Epilogue,
}

impl LaunchArgs<'_> {
    fn run(&self, kernel: MatmulKernel) -> Result<()> {
        match self.p.a.dtype() {
            DType::F16 => self.run_typed::<half::f16>(kernel),
            DType::BF16 => self.run_typed::<half::bf16>(kernel),
            _ => self.run_typed::<f32>(kernel),
        }
    }

    fn run_typed<E: Float + CubeElement>(&self, kernel: MatmulKernel) -> Result<()> {
        let (p, out, c, bias) = (self.p, self.out, self.c, self.bias);
        let (alpha, beta, epilogue) = (self.alpha, self.beta, self.epilogue);
        let (a_off, b_off, c_off) = (p.a.offset_u32(), p.b.offset_u32(), c.offset_u32());
        let device = &p.a.device;
        // Every kernel takes the same operands; the tiled ones add their tiling before the epilogue.
        macro_rules! launch_matmul {
            ($kernel:ident, $grid:expr $(, $tiling:expr)?) => {{
                let (count, dim) = $grid;
                launch!(
                    device, $kernel::<E, f32>, count, dim, p.a.view_arg(), p.b.view_arg(),
                    out.buffer_arg(), c.view_arg(), bias.buffer_arg(), alpha, beta, a_off, b_off, c_off,
                    $($tiling,)? epilogue,
                )
            }};
        }
        match kernel {
            MatmulKernel::Dot => launch_matmul!(matmul_dot, units_grid(out.numel())),
            MatmulKernel::Tiled(t) => launch_matmul!(matmul_tiled, tile_grid(p, &t, false), t),
            MatmulKernel::Register(t) => {
                launch_matmul!(matmul_register, tile_grid(p, &t, false), t)
            }
            MatmulKernel::RegisterVec(t) => {
                let (count, dim) = tile_grid(p, &t, true);
                launch!(
                    device,
                    matmul_register_vec::<E, f32>,
                    count,
                    dim,
                    B_VECTOR,
                    p.a.view_arg(),
                    p.b.view_arg(),
                    p.b.buffer_arg(),
                    out.buffer_arg(),
                    c.view_arg(),
                    bias.buffer_arg(),
                    alpha,
                    beta,
                    a_off,
                    b_off,
                    c_off,
                    t,
                    epilogue,
                )
            }
        }
        Ok(())
    }
}

/// Cubes over (column blocks, row blocks, batches) and units per cube for a tiling; with
/// `rows_along_x`, (row blocks, column blocks, batches) instead: consecutive cubes then share a panel
/// of `B`, which stays in cache (the vectorised register kernel; at 2048² on lavapipe: 11.2–11.8
/// GFLOP/s against 7.6–9.2 with columns along `x`).
fn tile_grid(p: &Plan, t: &Tiling, rows_along_x: bool) -> (CubeCount, CubeDim) {
    let rows = p.m.div_ceil(t.bm as usize) as u32;
    let cols = p.n.div_ceil(t.bn as usize) as u32;
    let (x, y) = if rows_along_x {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let count = CubeCount::Static(x, y, p.batches as u32);
    (count, CubeDim::new_2d(t.bn / t.tn, t.bm / t.tm))
}

/// The forced kernel, the cached choice for this shape class, a fresh measurement, or the rule.
fn choose_kernel(args: &LaunchArgs) -> Result<MatmulKernel> {
    if let Some(kernel) = FORCED_KERNEL.with(Cell::get) {
        return Ok(kernel);
    }
    let p = args.p;
    if p.work() < TUNE_MIN_WORK || !settings::matmul_tune() {
        return Ok(rule_of_thumb(p));
    }
    let unit = |t: &Tensor| t.strides()[t.rank() - 1] == 1;
    let bucket = |x: usize| x.next_power_of_two();
    let key = TuneKey {
        device: p.a.device.name().to_string(),
        dims: [bucket(p.batches), bucket(p.m), bucket(p.n), bucket(p.k)],
        unit_strides: [unit(&p.a), unit(&p.b)],
        dtype: p.a.dtype(),
    };
    if let Some(kernel) = TUNED.get(&key) {
        return Ok(kernel);
    }
    let best = measure(args, &p.a.device)?;
    TUNED.insert(key, best);
    Ok(best)
}

/// Times each plausible candidate (`tune::fastest`: one untimed run compiles it, then three
/// interleaved rounds of timed batches) and returns the fastest. The dot-product kernel is only a candidate for skinny products; on CPU
/// devices the shared-memory kernels are skipped (they never won there: 0.9–3 GFLOP/s against
/// 9–14 for the vectorised register kernel at 512–2048 on lavapipe, and timing them costs seconds).
fn measure(args: &LaunchArgs, device: &Device) -> Result<MatmulKernel> {
    let skinny = args.p.m.min(args.p.n) <= 64;
    let cpu = device.is_cpu();
    let work = args.p.work();
    let candidates = CANDIDATES
        .into_iter()
        .filter(|&k| skinny || k != MatmulKernel::Dot)
        .filter(|&k| !(cpu && matches!(k, MatmulKernel::Tiled(_))))
        .filter(|&k| work >= SLOW_TO_COMPILE_MIN_WORK || !slow_to_compile(k))
        .filter(|&k| runnable(k, args.p, args.epilogue) == k);
    fastest(device, candidates, rule_of_thumb(args.p), |kernel| {
        args.run(kernel)
    })
}
