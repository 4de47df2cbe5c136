//! Launch plumbing: grid sizes, kernel arguments from tensors, output allocation (optionally poisoned
//! with NaN so a kernel that skips an element is caught by the tests).

use crate::device::dispatch;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::shape::contiguous_strides;
use crate::tensor::Tensor;
use crate::Device;
use cubecl::prelude::*;
use cubecl::std::FastDivmod;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Units per cube for one-unit-per-element kernels.
pub(crate) const BLOCK: u32 = 256;
const MAX_GRID_X: usize = 65_535;

/// A grid of `cubes` cubes, folded into two dimensions past the 65535 per-dimension limit.
pub(crate) fn grid(cubes: usize) -> CubeCount {
    let cubes = cubes.max(1);
    if cubes <= MAX_GRID_X {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        CubeCount::Static(MAX_GRID_X as u32, cubes.div_ceil(MAX_GRID_X) as u32, 1)
    }
}

/// Grid and cube size for `units` independent units.
pub(crate) fn units_grid(units: usize) -> (CubeCount, CubeDim) {
    (grid(units.div_ceil(BLOCK as usize)), CubeDim::new_1d(BLOCK))
}

/// A grid of `rows` × `len` units for kernels that give each row its own cubes: pixels along `x`
/// (a cube of 32 to 256 units, the power of two covering `len` where it fits), row
/// `CUBE_POS_Y + CUBE_POS_Z · CUBE_COUNT_Y` (rows past 65535 fold into `z`).
pub(crate) fn rows_grid(rows: usize, len: usize) -> (CubeCount, CubeDim) {
    let width = len.next_power_of_two().clamp(32, BLOCK as usize);
    let y = rows.clamp(1, MAX_GRID_X);
    let count = CubeCount::Static(
        len.div_ceil(width).max(1) as u32,
        y as u32,
        rows.div_ceil(y).max(1) as u32,
    );
    (count, CubeDim::new_1d(width as u32))
}

static POISON: AtomicBool = AtomicBool::new(false);
static POISON_ENV: OnceLock<bool> = OnceLock::new();

/// When on, every output buffer is filled with NaN (i32::MIN for integers) before its kernel runs,
/// so an element a kernel fails to write shows up as NaN. Also on when `DYNLAB_POISON=1`.
pub fn set_poison_outputs(on: bool) {
    POISON.store(on, Ordering::SeqCst);
}

fn poison_enabled() -> bool {
    POISON.load(Ordering::SeqCst)
        || *POISON_ENV.get_or_init(|| std::env::var("DYNLAB_POISON").is_ok_and(|v| v == "1"))
}

/// Largest element count a tensor may have: kernels address with 32-bit offsets, and the fast
/// division of `strided_offset_fast` is exact for dividends below 2³¹.
const MAX_ELEMENTS: usize = i32::MAX as usize;

pub(crate) fn check_size(op: &'static str, shape: &[usize]) -> Result<usize> {
    let n = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            Error::value(
                op,
                format!("shape {shape:?}"),
                format!("at most {MAX_ELEMENTS} elements"),
            )
        })?;
    Ok(n)
}

impl Tensor {
    /// A fresh contiguous tensor whose contents are unspecified (NaN when poisoning is on).
    pub(crate) fn alloc(
        op: &'static str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let n = check_size(op, shape)?;
        if !device.supports(dtype) {
            return Err(Error::Device {
                op,
                message: format!("{} cannot store {dtype} tensors", device.name()),
            });
        }
        let bytes = n.max(1) * dtype.size();
        let handle = dispatch!(device, |client, R| client.empty(bytes));
        let t = Tensor {
            handle,
            buffer_len: n.max(1),
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
            dtype,
            device: device.clone(),
        };
        if poison_enabled() && n > 0 {
            t.fill_buffer_poison();
        }
        Ok(t)
    }

    fn fill_buffer_poison(&self) {
        use dynlab_kernels::fill::fill;
        let (count, dim) = units_grid(self.buffer_len);
        let len = self.buffer_len;
        dispatch!(self.device, |client, R| unsafe {
            let out = ArrayArg::from_raw_parts(self.handle.clone(), len);
            match self.dtype {
                DType::F32 => fill::launch_unchecked::<f32, R>(client, count, dim, out, f32::NAN),
                DType::F16 => {
                    fill::launch_unchecked::<half::f16, R>(client, count, dim, out, half::f16::NAN)
                }
                DType::BF16 => fill::launch_unchecked::<half::bf16, R>(
                    client,
                    count,
                    dim,
                    out,
                    half::bf16::NAN,
                ),
                DType::I32 => fill::launch_unchecked::<i32, R>(client, count, dim, out, i32::MIN),
            }
        })
    }

    /// This view as a kernel's `Tensor<T>` argument (rank 0 passes as shape `[1]`).
    pub(crate) fn view_arg<R: Runtime>(&self) -> TensorArg<R> {
        let (shape, strides) = if self.shape.is_empty() {
            (vec![1], vec![1])
        } else {
            (self.shape.clone(), self.strides.clone())
        };
        unsafe { TensorArg::from_raw_parts(self.handle.clone(), strides.into(), shape.into()) }
    }

    /// The view's sizes as fast dividers for `strided_offset_fast` (a 0-d view is `[1]`, as in
    /// [`Tensor::view_arg`]).
    pub(crate) fn sizes_arg<R: Runtime>(&self) -> SequenceArg<R, FastDivmod<u32>> {
        let mut sizes = SequenceArg::new();
        for &size in self.shape.iter() {
            sizes.push(size as u32);
        }
        if self.shape.is_empty() {
            sizes.push(1);
        }
        sizes
    }

    /// The whole buffer as a kernel's `Array<T>` (or `Array<Vector<T, N>>`) argument. The length
    /// is in scalar elements; a vectorised kernel sees `len / N` vectors.
    pub(crate) fn buffer_arg<R: Runtime>(&self) -> ArrayArg<R> {
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.buffer_len) }
    }

    pub(crate) fn offset_u32(&self) -> u32 {
        self.offset as u32
    }
}
