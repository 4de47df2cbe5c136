//! Launch plumbing: grid sizes, kernel arguments from tensors, output allocation (optionally poisoned
//! with NaN so a kernel that skips an element is caught by the tests).

use crate::device::dispatch;
use crate::dtype::DType;
use crate::error::Result;
use crate::settings;
use crate::shape::{check_shape, contiguous_strides};
use crate::tensor::Tensor;
use crate::Device;
use cubecl::prelude::*;
use cubecl::std::FastDivmod;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

/// Launches the `#[cube(launch_unchecked)]` kernel `$kernel` on `$device`: its generic arguments
/// come first (`kernel::<f32>`, `kernel::<E, f32>`, or none), the device's runtime is appended, and
/// the launch gets the grid `$count`, the cube size `$dim` and the kernel's arguments in order.
/// This is the runtime's only kernel launch site.
///
/// # Safety
///
/// The launches skip cubecl's checked bounds, which is sound here because:
/// - every output buffer comes from [`Tensor::alloc`], whose size is checked ([`check_shape`](crate::shape::check_shape):
///   the element count fits 32-bit kernel offsets) and which the op sizes from the shapes it
///   launches over;
/// - every kernel guards each read and write with a bound derived from the lengths, shapes and
///   offsets it is given, so units past the end of the work (the grid is rounded up) do nothing;
/// - scalar arguments (axes, offsets, window geometry, tilings, indices) are validated by the op
///   before the launch;
/// - in the tests every output is poisoned ([`set_poison_outputs`], `DYNLAB_POISON=1`), so an
///   element a kernel fails to write shows up as NaN instead of passing unnoticed.
macro_rules! launch {
    ($device:expr, $kernel:ident $(::<$($generic:ty),+ $(,)?>)?, $count:expr, $dim:expr $(, $arg:expr)* $(,)?) => {{
        let (count, dim) = ($count, $dim);
        $crate::launch::check_launch(&$device, stringify!($kernel), &count, &dim)?;
        $device.count_launch(stringify!($kernel));
        let timer = $crate::launch::start_timer(&$device)?;
        $crate::device::dispatch!($device, |client, R| unsafe {
            $kernel::launch_unchecked::<$($($generic,)+)? R>(client, count, dim $(, $arg)*)
        });
        $crate::launch::stop_timer(&$device, stringify!($kernel), timer)?;
    }};
}
pub(crate) use launch;

/// Checks a launch's grid and cube size against the device's limits (the `launch!` macro calls it
/// before every launch); `kernel` names the kernel in the error.
pub(crate) fn check_launch(
    device: &Device,
    kernel: &'static str,
    count: &CubeCount,
    dim: &CubeDim,
) -> Result<()> {
    let count = match count {
        CubeCount::Static(x, y, z) => [*x, *y, *z],
        CubeCount::Dynamic(_) => return Ok(()),
    };
    device.check_launch(kernel, count, dim.num_elems())
}

/// When the device is profiling: waits for it and starts a clock.
pub(crate) fn start_timer(device: &Device) -> Result<Option<std::time::Instant>> {
    if !device.profiling() {
        return Ok(None);
    }
    device.sync()?;
    Ok(Some(std::time::Instant::now()))
}

/// When a clock was started: waits for the device and books the time to `kernel`.
pub(crate) fn stop_timer(
    device: &Device,
    kernel: &'static str,
    timer: Option<std::time::Instant>,
) -> Result<()> {
    if let Some(start) = timer {
        device.sync()?;
        device.add_kernel_time(kernel, start.elapsed().as_secs_f64());
    }
    Ok(())
}

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

/// When on, every output buffer is filled with NaN (i32::MIN for integers) before its kernel runs,
/// so an element a kernel fails to write shows up as NaN. Also on when `DYNLAB_POISON=1`
/// ([`crate::settings::poison`]).
pub fn set_poison_outputs(on: bool) {
    POISON.store(on, Ordering::SeqCst);
}

fn poison_enabled() -> bool {
    POISON.load(Ordering::SeqCst) || settings::poison()
}

impl Tensor {
    /// A fresh contiguous tensor whose contents are unspecified (NaN when poisoning is on).
    pub(crate) fn alloc(
        op: &'static str,
        shape: &[usize],
        dtype: DType,
        device: &Device,
    ) -> Result<Tensor> {
        let n = check_shape(op, shape)?;
        let bytes = device.check_buffer(op, n, dtype)?;
        device.count_buffer(op, bytes, false);
        let handle = dispatch!(device, |client, R| client.empty(bytes));
        let t = Tensor {
            handle,
            buffer_len: n.max(1),
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
            dtype,
            device: device.clone(),
            range: Default::default(),
        };
        if poison_enabled() && n > 0 {
            t.fill_buffer_poison()?;
        }
        Ok(t)
    }

    fn fill_buffer_poison(&self) -> Result<()> {
        use dynlab_kernels::fill::fill;
        let (count, dim) = units_grid(self.buffer_len);
        macro_rules! fill {
            ($t:ty, $poison:expr) => {
                launch!(
                    self.device,
                    fill::<$t>,
                    count,
                    dim,
                    self.buffer_arg(),
                    $poison
                )
            };
        }
        match self.dtype {
            DType::F32 => fill!(f32, f32::NAN),
            DType::F16 => fill!(half::f16, half::f16::NAN),
            DType::BF16 => fill!(half::bf16, half::bf16::NAN),
            DType::I32 => fill!(i32, i32::MIN),
        }
        Ok(())
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

thread_local! {
    /// The placeholders of [`placeholder`], by device name and dtype.
    static PLACEHOLDERS: RefCell<HashMap<(String, DType), Tensor>> = Default::default();
}

/// A `[1]` zero tensor of `dtype` (f32 or i32), one per device (and thread), bound where a kernel
/// takes a buffer it does not read — a product without accumulator or bias, a layer norm without
/// γ and β, a row kernel without labels, attention without a mask: made once instead of an upload
/// per call.
pub(crate) fn placeholder(device: &Device, dtype: DType) -> Result<Tensor> {
    let key = (device.name().to_string(), dtype);
    if let Some(t) = PLACEHOLDERS.with(|cache| cache.borrow().get(&key).cloned()) {
        return Ok(t);
    }
    let t = match dtype {
        DType::I32 => Tensor::from_slice(&[0i32], &[1], device)?,
        _ => Tensor::from_slice(&[0f32], &[1], device)?,
    };
    PLACEHOLDERS.with(|cache| cache.borrow_mut().insert(key, t.clone()));
    Ok(t)
}
