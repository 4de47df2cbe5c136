//! The tensor: a device buffer seen through a strided view (shape, strides, element offset).
//! Views (`reshape`, `permute`, `narrow`, `expand`, ...) share the buffer; ops write fresh contiguous
//! outputs. Construction and reading back live here; ops live in `ops/`.

use crate::device::dispatch;
use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::launch::{launch, units_grid};
use crate::shape::check_shape;
use crate::shape::{contiguous_strides, numel};
use crate::Device;
use cubecl::server::Handle;
use std::fmt;
use std::sync::{Arc, OnceLock};

/// An n-dimensional array on a [`Device`]: a shared buffer seen through a strided view (shape,
/// strides in elements, element offset). Cloning shares the buffer.
#[derive(Clone)]
pub struct Tensor {
    pub(crate) handle: Handle,
    /// Elements in the buffer (at least 1, so empty tensors still own a valid binding).
    pub(crate) buffer_len: usize,
    pub(crate) shape: Vec<usize>,
    pub(crate) strides: Vec<usize>,
    pub(crate) offset: usize,
    pub(crate) dtype: DType,
    pub(crate) device: Device,
    /// Bounds on the values this view of an i32 tensor can see, once known (set at upload, by ops
    /// whose outputs are bounded, inherited by views and copies, or found by the first index check):
    /// index checks read nothing back when it settles them. Buffers are not rewritten after they
    /// are filled, so it stays true; clones share it, views start from a copy.
    pub(crate) range: Arc<OnceLock<(i32, i32)>>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, strides={:?}, offset={}, dtype={}, device={})",
            self.shape,
            self.strides,
            self.offset,
            self.dtype,
            self.device.name()
        )
    }
}

impl Tensor {
    /// A tensor holding `data` (row-major) with `shape`.
    pub fn from_slice<E: Element>(data: &[E], shape: &[usize], device: &Device) -> Result<Tensor> {
        let op = "Tensor::from_slice";
        let n = check_shape(op, shape)?;
        if n != data.len() {
            return Err(Error::shape(
                "Tensor::from_slice",
                format!("{} values for shape {shape:?}", data.len()),
                format!("{n} values (the product of the shape)"),
            ));
        }
        let size = device.check_buffer(op, n, E::DTYPE)?;
        device.count_buffer(op, size, true);
        let mut bytes: Vec<u8> = bytemuck::cast_slice(data).to_vec();
        if bytes.is_empty() {
            bytes = vec![0; E::DTYPE.size()];
        }
        let handle = dispatch!(device, |client, R| client.create_from_slice(&bytes));
        let t = Tensor {
            handle,
            buffer_len: n.max(1),
            shape: shape.to_vec(),
            strides: contiguous_strides(shape),
            offset: 0,
            dtype: E::DTYPE,
            device: device.clone(),
            range: Arc::default(),
        };
        if let Some(values) = E::as_i32(data) {
            t.set_range(values.iter().copied().fold(None, crate::ops::index::widen));
        }
        Ok(t)
    }

    /// Same as [`Tensor::from_slice`], taking the data by value.
    pub fn from_vec<E: Element>(data: Vec<E>, shape: &[usize], device: &Device) -> Result<Tensor> {
        Self::from_slice(&data, shape, device)
    }

    /// A 0-dimensional f32 tensor.
    pub fn scalar(value: f32, device: &Device) -> Result<Tensor> {
        Self::from_slice(&[value], &[], device)
    }

    /// Reads the elements back in row-major order (blocks until the device is done).
    pub fn to_vec<E: Element>(&self) -> Result<Vec<E>> {
        if self.dtype != E::DTYPE {
            return Err(Error::dtype(
                "Tensor::to_vec",
                self.dtype,
                format!("{} (the requested element type); cast first", E::DTYPE),
            ));
        }
        let n = self.numel();
        if n == 0 {
            return Ok(Vec::new());
        }
        let t = self.contiguous()?;
        t.device.count_sync();
        let bytes =
            dispatch!(t.device, |client, R| client.read_one(t.handle.clone())).map_err(|e| {
                Error::Backend {
                    op: "Tensor::to_vec",
                    message: format!("{e:?}"),
                }
            })?;
        let start = t.offset * E::DTYPE.size();
        let end = start + n * E::DTYPE.size();
        Ok(bytemuck::pod_collect_to_vec(&bytes[start..end]))
    }

    /// The known smallest and largest value of an i32 tensor's buffer.
    pub(crate) fn known_range(&self) -> Option<(i32, i32)> {
        self.range.get().copied()
    }

    /// Records bounds on this view's values (`None`: no values, nothing to record).
    pub(crate) fn set_range(&self, range: Option<(i32, i32)>) {
        if let Some(r) = range {
            let _ = self.range.set(r);
        }
    }

    /// Reads several f32 tensors of one device back with a single synchronisation (no copies on
    /// the device): their elements in row-major order, one vector per tensor.
    pub fn read_many(tensors: &[&Tensor]) -> Result<Vec<Vec<f32>>> {
        let op = "Tensor::read_many";
        let Some(first) = tensors.first() else {
            return Ok(Vec::new());
        };
        let views = tensors
            .iter()
            .map(|t| {
                t.expect_f32(op)?;
                first.expect_same_device(op, t)?;
                t.contiguous()
            })
            .collect::<Result<Vec<_>>>()?;
        let handles = views.iter().map(|t| t.handle.clone()).collect();
        first.device.count_sync();
        let bytes = dispatch!(first.device, |client, R| {
            cubecl::future::block_on(client.read_async(handles))
        })
        .map_err(|e| Error::Backend {
            op,
            message: format!("{e:?}"),
        })?;
        Ok(views
            .iter()
            .zip(&bytes)
            .map(|(t, b)| {
                let start = t.offset * 4;
                bytemuck::pod_collect_to_vec(&b[start..start + t.numel() * 4])
            })
            .collect())
    }

    /// The single value of a one-element f32 tensor.
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "Tensor::item",
                format!("{:?}", self.shape),
                "exactly one element",
            ));
        }
        Ok(self.to_vec::<f32>()?[0])
    }

    /// An f32 tensor filled with `value`.
    pub fn full(shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        Self::filled("Tensor::full", shape, value, device)
    }

    /// An f32 tensor of zeros.
    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Self::filled("Tensor::zeros", shape, 0.0, device)
    }

    /// An f32 tensor of ones.
    pub fn ones(shape: &[usize], device: &Device) -> Result<Tensor> {
        Self::filled("Tensor::ones", shape, 1.0, device)
    }

    /// [`Tensor::full`] reporting errors as `op`. Small tensors are uploaded (no launch).
    fn filled(op: &'static str, shape: &[usize], value: f32, device: &Device) -> Result<Tensor> {
        use dynlab_kernels::fill::fill;
        const UPLOAD_MAX: usize = 256;
        if check_shape(op, shape)? <= UPLOAD_MAX {
            return Tensor::from_vec(vec![value; numel(shape)], shape, device);
        }
        let out = Tensor::alloc(op, shape, DType::F32, device)?;
        let n = out.numel();
        if n > 0 {
            let (count, dim) = units_grid(n);
            launch!(device, fill::<f32>, count, dim, out.buffer_arg(), value);
        }
        Ok(out)
    }

    /// f32 zeros with this tensor's shape and device.
    pub fn zeros_like(&self) -> Result<Tensor> {
        Self::zeros(&self.shape, &self.device)
    }

    /// `[start, start + step, ...]` up to but excluding `end`, as f32.
    pub fn arange(start: f32, end: f32, step: f32, device: &Device) -> Result<Tensor> {
        use dynlab_kernels::fill::arange;
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(Error::value(
                "Tensor::arange",
                format!("start={start}, end={end}, step={step}"),
                "finite bounds and a finite non-zero step",
            ));
        }
        let n = ((end as f64 - start as f64) / step as f64).ceil().max(0.0) as usize;
        let out = Tensor::alloc("Tensor::arange", &[n], DType::F32, device)?;
        if n > 0 {
            let (count, dim) = units_grid(n);
            launch!(
                device,
                arange::<f32>,
                count,
                dim,
                out.buffer_arg(),
                start,
                step
            );
        }
        Ok(out)
    }

    /// The `n × n` identity.
    pub fn eye(n: usize, device: &Device) -> Result<Tensor> {
        use dynlab_kernels::fill::eye;
        let out = Tensor::alloc("Tensor::eye", &[n, n], DType::F32, device)?;
        if n > 0 {
            let (count, dim) = units_grid(n * n);
            launch!(device, eye::<f32>, count, dim, out.buffer_arg(), n as u32);
        }
        Ok(out)
    }

    /// Size of each dimension.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Step in elements between neighbours along each dimension (0 along broadcast dimensions).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements, the product of the shape (1 for a 0-d tensor).
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device holding the buffer.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Whether the view is row-major with no gaps (its offset may be non-zero).
    pub fn is_contiguous(&self) -> bool {
        let mut expected = 1;
        for (&size, &stride) in self.shape.iter().zip(&self.strides).rev() {
            if size != 1 && stride != expected {
                return false;
            }
            expected *= size;
        }
        true
    }

    /// Errors unless the tensor is f32.
    pub(crate) fn expect_f32(&self, op: &'static str) -> Result<()> {
        if self.dtype == DType::F32 {
            Ok(())
        } else {
            Err(Error::dtype(
                op,
                self.dtype,
                "f32 (cast with .to_dtype(DType::F32))",
            ))
        }
    }

    /// Errors unless `other` lives on the same device.
    pub(crate) fn expect_same_device(&self, op: &'static str, other: &Tensor) -> Result<()> {
        if self.device == other.device {
            Ok(())
        } else {
            Err(Error::Device {
                op,
                message: format!(
                    "operands are on different devices: {} and {}",
                    self.device.name(),
                    other.device.name()
                ),
            })
        }
    }
}
