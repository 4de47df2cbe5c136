//! What a stateful part of a run saves: named tensors and named values (numbers written in their
//! shortest round-trip form, so a record read back is bit-identical). Checkpoints nest the records
//! of several parts under prefixes (`model.`, `optim.`, `rng.`) and store them in one safetensors
//! file.

use crate::module::Module;
use crate::state::{read_safetensors, save_safetensors};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::path::Path;
use std::str::FromStr;

/// Named tensors and named values.
#[derive(Clone, Debug, Default)]
pub struct Record {
    /// Tensors by name.
    pub tensors: BTreeMap<String, Tensor>,
    /// Values by name (numbers and short strings).
    pub values: BTreeMap<String, String>,
}

/// Something a checkpoint can save and restore: an optimizer, an RNG, a counter.
pub trait Stateful {
    /// Everything needed to continue exactly where this part stands.
    fn save_state(&self) -> Result<Record>;
    /// Restores what [`Stateful::save_state`] wrote.
    fn load_state(&mut self, record: &Record) -> Result<()>;
}

impl Record {
    /// Adds a tensor.
    pub fn with_tensor(mut self, name: impl Into<String>, t: Tensor) -> Record {
        self.tensors.insert(name.into(), t);
        self
    }

    /// Adds a value (written with `Display`; `f32`/`f64` print their shortest round-trip form).
    pub fn with_value(mut self, name: impl Into<String>, v: impl Display) -> Record {
        self.values.insert(name.into(), v.to_string());
        self
    }

    /// The tensor `name`, or an error naming it.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| missing(name, "tensor"))
    }

    /// The value `name` parsed as `T`, or an error naming it.
    pub fn value<T: FromStr>(&self, name: &str) -> Result<T>
    where
        T::Err: Display,
    {
        let text = self
            .values
            .get(name)
            .ok_or_else(|| missing(name, "value"))?;
        text.parse().map_err(|e| {
            Error::value(
                "Record::value",
                format!("`{name}` = `{text}` ({e})"),
                format!("a {}", std::any::type_name::<T>()),
            )
        })
    }

    /// Puts `inner`'s entries under `prefix.` in this record.
    pub fn nest(mut self, prefix: &str, inner: Record) -> Record {
        for (k, t) in inner.tensors {
            self.tensors.insert(format!("{prefix}.{k}"), t);
        }
        for (k, v) in inner.values {
            self.values.insert(format!("{prefix}.{k}"), v);
        }
        self
    }

    /// The entries under `prefix.`, with the prefix removed.
    pub fn part(&self, prefix: &str) -> Record {
        let p = format!("{prefix}.");
        let strip = |k: &String| k.strip_prefix(&p).map(str::to_string);
        Record {
            tensors: (self.tensors.iter())
                .filter_map(|(k, t)| Some((strip(k)?, t.clone())))
                .collect(),
            values: (self.values.iter())
                .filter_map(|(k, v)| Some((strip(k)?, v.clone())))
                .collect(),
        }
    }

    /// A module's parameters and buffers ([`Module::state_dict`]).
    pub fn of_module(module: &dyn Module) -> Record {
        Record {
            tensors: module.state_dict().into_iter().collect(),
            values: BTreeMap::new(),
        }
    }

    /// Sets a module's parameters and buffers from a record made by [`Record::of_module`].
    pub fn restore_module(&self, module: &mut dyn Module) -> Result<()> {
        let state: HashMap<String, Tensor> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        module.load_state_dict(&state)
    }

    /// Writes the record as one safetensors file (tensors, and values as metadata), atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        save_safetensors(path, &tensors, &self.values)
    }

    /// Reads a record written by [`Record::save`], its tensors onto `device` (a record of values
    /// only needs none).
    pub fn load(path: impl AsRef<Path>, device: Option<&Device>) -> Result<Record> {
        let file = read_safetensors(path.as_ref(), device)?;
        Ok(Record {
            tensors: file.tensors.into_iter().collect(),
            values: file.metadata,
        })
    }
}

fn missing(name: &str, what: &str) -> Error {
    Error::value(
        "Record",
        format!("no {what} `{name}`"),
        "a record written by the same part",
    )
}

/// The generator's seed and counter offset: a restored RNG continues the same stream.
impl Stateful for Rng {
    fn save_state(&self) -> Result<Record> {
        Ok(Record::default()
            .with_value("seed", self.seed())
            .with_value("offset", self.offset()))
    }

    fn load_state(&mut self, record: &Record) -> Result<()> {
        *self = Rng::from_state(record.value("seed")?, record.value("offset")?);
        Ok(())
    }
}
