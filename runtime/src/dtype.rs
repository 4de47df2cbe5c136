//! Element types. Compute kernels run in f32; f16 and bf16 are storage types reached by casts where
//! the device stores them; i32 holds indices and labels.

use std::fmt;

/// Element type of a tensor's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit IEEE float, the type every compute kernel works in.
    F32,
    /// 16-bit IEEE half float (storage only).
    F16,
    /// bfloat16: f32's exponent with a 7-bit mantissa (storage only).
    BF16,
    /// 32-bit signed integer, for indices and labels.
    I32,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// Whether the type is a floating-point type (every type but `I32`).
    pub fn is_float(self) -> bool {
        !matches!(self, DType::I32)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I32 => "i32",
        };
        f.write_str(name)
    }
}

/// Host element types a tensor can be built from and read back into.
pub trait Element: bytemuck::Pod + Copy + Send + Sync + 'static {
    /// The tensor element type matching this host type.
    const DTYPE: DType;

    /// The values as i32, for the integer element type (index tensors); `None` otherwise.
    fn as_i32(_values: &[Self]) -> Option<&[i32]> {
        None
    }
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for half::f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for half::bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for i32 {
    const DTYPE: DType = DType::I32;

    fn as_i32(values: &[Self]) -> Option<&[i32]> {
        Some(values)
    }
}
