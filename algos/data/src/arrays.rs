//! Image arrays saved from NumPy or by the safetensors library, the form downsampled ImageNet
//! (32×32, Chrabaszcz et al., 2017) is usually kept in: u8 images `[N, H, W, C]` (NHWC, converted to
//! NCHW here) or `[N, C, H, W]`, and labels `[N]` of int64, int32 or uint8.
//!
//! `.npy` files (format versions 1.0, 2.0 and 3.0): the magic `\x93NUMPY`, the version, the header
//! length (u16 little-endian in 1.0, u32 in 2.0 and 3.0), a Python dict literal with `descr`,
//! `fortran_order` and `shape`, then the raw data. Read here: C order only (`fortran_order: True`
//! is an error), little-endian or byte-order-free element types `u1`, `i4`, `i8`; the data must be
//! exactly `product(shape) × itemsize` bytes. safetensors files: tensors named `images` (`U8`) and
//! `labels` (`I64`, `I32` or `U8`).
//!
//! Images are scaled to `[0, 1]` by `v / 255`; labels must lie in `0..=i32::MAX`.

use crate::host::{bad_file, read_file, unit_scale};
use dynlab_runtime::{Device, Error, Result, Tensor};
use dynlab_train::Dataset;
use safetensors::tensor::Dtype;
use safetensors::SafeTensors;
use std::path::Path;

/// How the axes of a rank-4 images array are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageLayout {
    /// `[N, H, W, C]` (NumPy and TensorFlow images), converted to `[N, C, H, W]`.
    Nhwc,
    /// `[N, C, H, W]`, kept as it is.
    Nchw,
}

/// Element types read from arrays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Elem {
    U8,
    I32,
    I64,
}

impl Elem {
    fn size(self) -> usize {
        match self {
            Elem::U8 => 1,
            Elem::I32 => 4,
            Elem::I64 => 8,
        }
    }
}

/// An array on the host: shape, element type and little-endian data.
struct Array {
    shape: Vec<usize>,
    elem: Elem,
    data: Vec<u8>,
}

/// Reads the `.npy` file at `path` (loader `op`).
fn read_npy(op: &'static str, path: &Path) -> Result<Array> {
    let bytes = read_file(op, path)?;
    let (header, start) = npy_header(op, path, &bytes)?;
    let descr = dict_value(&header, "descr")
        .and_then(quoted)
        .ok_or_else(|| bad_file(op, path, format!("header {header:?}"), "a 'descr' string"))?;
    let elem = npy_elem(&descr).ok_or_else(|| {
        bad_file(
            op,
            path,
            format!("dtype {descr:?}"),
            "'|u1', '<i4' or '<i8' (little-endian uint8, int32 or int64)",
        )
    })?;
    match dict_value(&header, "fortran_order").map(|v| v.starts_with("True")) {
        Some(false) => {}
        Some(true) => {
            return Err(bad_file(
                op,
                path,
                "fortran_order: True (a column-major array)",
                "a C-order array: save np.ascontiguousarray(a)",
            ))
        }
        None => {
            return Err(bad_file(
                op,
                path,
                format!("header {header:?}"),
                "a 'fortran_order' of True or False",
            ))
        }
    }
    let shape = dict_value(&header, "shape")
        .and_then(tuple)
        .ok_or_else(|| bad_file(op, path, format!("header {header:?}"), "a 'shape' tuple"))?;
    let data = &bytes[start..];
    check_len(op, path, &shape, elem, data.len())?;
    Ok(Array {
        shape,
        elem,
        data: data.to_vec(),
    })
}

/// The header text and the offset of the data.
fn npy_header(op: &'static str, path: &Path, bytes: &[u8]) -> Result<(String, usize)> {
    const MAGIC: &[u8] = b"\x93NUMPY";
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad_file(
            op,
            path,
            format!("a file starting {:?}", &bytes[..bytes.len().min(6)]),
            "the .npy magic \\x93NUMPY",
        ));
    }
    let (len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10usize),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => {
            return Err(bad_file(
                op,
                path,
                format!("format version {v}.{} ({} bytes)", bytes[7], bytes.len()),
                ".npy format version 1.0, 2.0 or 3.0",
            ))
        }
    };
    let end = start.checked_add(len).filter(|&e| e <= bytes.len());
    let Some(end) = end else {
        return Err(bad_file(
            op,
            path,
            format!("a header of {len} bytes in a file of {}", bytes.len()),
            "the whole header inside the file",
        ));
    };
    let header = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok((header, end))
}

/// The text after `'key':` in a Python dict literal.
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = header[at + key.len() + 2..].trim_start();
    Some(rest.strip_prefix(':')?.trim_start())
}

/// The contents of a leading quoted string.
fn quoted(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &text[1..];
    Some(body[..body.find(quote)?].to_string())
}

/// The integers of a leading tuple `(a, b, …)` (a trailing comma allowed, `()` a scalar).
fn tuple(text: &str) -> Option<Vec<usize>> {
    let inner = text.strip_prefix('(')?;
    let body = &inner[..inner.find(')')?];
    body.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('L').parse().ok())
        .collect()
}

/// The element type of a NumPy `descr`.
fn npy_elem(descr: &str) -> Option<Elem> {
    match descr {
        "|u1" | "<u1" | "u1" => Some(Elem::U8),
        "<i4" | "i4" => Some(Elem::I32),
        "<i8" | "i8" => Some(Elem::I64),
        _ => None,
    }
}

/// Errors unless `len` is exactly the bytes of `shape` in `elem`.
fn check_len(op: &'static str, path: &Path, shape: &[usize], elem: Elem, len: usize) -> Result<()> {
    let want = shape
        .iter()
        .try_fold(elem.size(), |acc, &d| acc.checked_mul(d));
    if want == Some(len) {
        return Ok(());
    }
    Err(bad_file(
        op,
        path,
        format!("{len} data bytes"),
        format!(
            "{} bytes for shape {shape:?} of {elem:?} (a truncated or padded file)",
            want.map_or("more than usize::MAX".to_string(), |w| w.to_string())
        ),
    ))
}

/// Images `[N, C, H, W]` f32 in `[0, 1]` from a u8 array in `layout`.
fn images_tensor(
    op: &'static str,
    path: &Path,
    a: &Array,
    layout: ImageLayout,
    device: &Device,
) -> Result<Tensor> {
    if a.elem != Elem::U8 || a.shape.len() != 4 {
        return Err(bad_file(
            op,
            path,
            format!("images of {:?} with shape {:?}", a.elem, a.shape),
            "u8 images of rank 4 ([N, H, W, C] or [N, C, H, W])",
        ));
    }
    let t = Tensor::from_vec(unit_scale(&a.data), &a.shape, device)?;
    match layout {
        ImageLayout::Nchw => Ok(t),
        ImageLayout::Nhwc => t.permute(&[0, 3, 1, 2])?.contiguous(),
    }
}

/// Labels `[N]` as i32, each in `0..=i32::MAX`.
fn label_values(op: &'static str, path: &Path, a: &Array) -> Result<Vec<i32>> {
    if a.shape.len() != 1 {
        return Err(bad_file(
            op,
            path,
            format!("labels of shape {:?}", a.shape),
            "labels of rank 1 ([N])",
        ));
    }
    let wide: Vec<i64> = match a.elem {
        Elem::U8 => a.data.iter().map(|&v| i64::from(v)).collect(),
        Elem::I32 => a
            .data
            .chunks_exact(4)
            .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        Elem::I64 => a
            .data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
    };
    wide.iter()
        .enumerate()
        .map(|(i, &v)| {
            i32::try_from(v).ok().filter(|&v| v >= 0).ok_or_else(|| {
                bad_file(
                    op,
                    path,
                    format!("label {v} at row {i}"),
                    format!("labels in 0..={}", i32::MAX),
                )
            })
        })
        .collect()
}

/// Images and labels as one dataset, with one label per image.
fn dataset(
    op: &'static str,
    paths: (&Path, &Path),
    images: Tensor,
    labels: Vec<i32>,
) -> Result<Dataset> {
    let n = images.shape()[0];
    if labels.len() != n {
        return Err(Error::value(
            op,
            format!(
                "{} labels in {} for {n} images in {}",
                labels.len(),
                paths.1.display(),
                paths.0.display()
            ),
            "one label per image",
        ));
    }
    let targets = Tensor::from_vec(labels, &[n], images.device())?;
    Dataset::new(images, targets)
}

/// A u8 images `.npy` file and a labels `.npy` file (int64, int32 or uint8 `[N]`) as one
/// [`Dataset`]: inputs f32 `[N, C, H, W]` in `[0, 1]`, labels i32 `[N]`.
pub fn load_npy(
    images: impl AsRef<Path>,
    labels: impl AsRef<Path>,
    layout: ImageLayout,
    device: &Device,
) -> Result<Dataset> {
    let op = "load_npy";
    let (ip, lp) = (images.as_ref(), labels.as_ref());
    let (ia, la) = (read_npy(op, ip)?, read_npy(op, lp)?);
    let values = label_values(op, lp, &la)?;
    let images = images_tensor(op, ip, &ia, layout, device)?;
    dataset(op, (ip, lp), images, values)
}

/// A safetensors file holding `images` (u8, rank 4, in `layout`) and `labels` (i64, i32 or u8,
/// `[N]`) as one [`Dataset`]: inputs f32 `[N, C, H, W]` in `[0, 1]`, labels i32 `[N]`.
pub fn load_safetensors_images(
    path: impl AsRef<Path>,
    layout: ImageLayout,
    device: &Device,
) -> Result<Dataset> {
    let op = "load_safetensors_images";
    let path = path.as_ref();
    let bytes = read_file(op, path)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| {
        bad_file(
            op,
            path,
            format!("an unreadable file ({e})"),
            "a safetensors file",
        )
    })?;
    let array = |name: &str| -> Result<Array> {
        let view = st.tensor(name).map_err(|_| {
            bad_file(
                op,
                path,
                format!("tensors {:?}", st.names()),
                format!("a tensor named `{name}`"),
            )
        })?;
        let elem = match view.dtype() {
            Dtype::U8 => Elem::U8,
            Dtype::I32 => Elem::I32,
            Dtype::I64 => Elem::I64,
            other => {
                return Err(bad_file(
                    op,
                    path,
                    format!("`{name}` of dtype {other:?}"),
                    "U8 images and I64, I32 or U8 labels",
                ))
            }
        };
        check_len(op, path, view.shape(), elem, view.data().len())?;
        Ok(Array {
            shape: view.shape().to_vec(),
            elem,
            data: view.data().to_vec(),
        })
    };
    let (ia, la) = (array("images")?, array("labels")?);
    let values = label_values(op, path, &la)?;
    let images = images_tensor(op, path, &ia, layout, device)?;
    dataset(op, (path, path), images, values)
}
