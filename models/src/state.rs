//! Named tensors and string metadata in the safetensors format (the Hugging Face layout: an 8-byte
//! header length, a JSON header, raw little-endian data), written atomically.

use dynlab_runtime::{write_atomic, DType, Device, Error, Result, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Tensors (f32 or i32) and metadata read from or written to one file.
#[derive(Clone, Debug, Default)]
pub struct TensorFile {
    /// Tensors by name.
    pub tensors: HashMap<String, Tensor>,
    /// String metadata by key.
    pub metadata: BTreeMap<String, String>,
}

/// Writes `tensors` and `metadata` to `path` (temporary file + rename).
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(String, Tensor)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let op = "save_safetensors";
    let path = path.as_ref();
    let mut bytes = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, data) = match t.dtype() {
            DType::F32 => (Dtype::F32, bytemuck_f32(&t.to_vec::<f32>()?)),
            DType::I32 => (Dtype::I32, bytemuck_i32(&t.to_vec::<i32>()?)),
            other => {
                return Err(Error::DType {
                    op,
                    got: format!("{other} for `{name}`"),
                    expected: "f32 or i32 tensors".into(),
                })
            }
        };
        bytes.push((name.clone(), dtype, t.shape().to_vec(), data));
    }
    let views = bytes
        .iter()
        .map(|(name, dtype, shape, data)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::io(op, path, e))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = metadata.clone().into_iter().collect();
    let file = safetensors::serialize(views, Some(meta)).map_err(|e| Error::io(op, path, e))?;
    write_atomic(path, &file)
}

/// Reads a file written by [`save_safetensors`] (or any safetensors file of f32/i32 tensors).
pub fn load_safetensors(path: impl AsRef<Path>, device: &Device) -> Result<TensorFile> {
    read_safetensors(path.as_ref(), Some(device))
}

/// [`load_safetensors`]; without a device, a file that holds tensors is an error.
pub(crate) fn read_safetensors(path: &Path, device: Option<&Device>) -> Result<TensorFile> {
    let op = "load_safetensors";
    let file = std::fs::read(path).map_err(|e| Error::io(op, path, e))?;
    let st = SafeTensors::deserialize(&file).map_err(|e| Error::io(op, path, e))?;
    let (_, header) = SafeTensors::read_metadata(&file).map_err(|e| Error::io(op, path, e))?;
    let mut tensors = HashMap::new();
    for (name, view) in st.tensors() {
        let Some(device) = device else {
            return Err(Error::io(
                op,
                path,
                format!("`{name}` is a tensor and no device was given to load it onto"),
            ));
        };
        let data = view.data();
        let t = match view.dtype() {
            Dtype::F32 => {
                let v: Vec<f32> = data
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_vec(v, view.shape(), device)?
            }
            Dtype::I32 => {
                let v: Vec<i32> = data
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                Tensor::from_vec(v, view.shape(), device)?
            }
            other => {
                return Err(Error::io(
                    op,
                    path,
                    format!("`{name}` has dtype {other:?}; dynlab reads f32 and i32"),
                ))
            }
        };
        tensors.insert(name, t);
    }
    let metadata = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(TensorFile { tensors, metadata })
}

fn bytemuck_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytemuck_i32(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
