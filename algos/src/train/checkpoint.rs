//! A checkpoint holds everything a run needs to continue as if it had not stopped: parameters,
//! optimizer state and step count, the RNG state (seed and counter offset), the epoch reached, the
//! wall time so far, and the history up to that epoch. One safetensors file, written atomically.

use super::history::History;
use dynlab_models::{load_safetensors, save_safetensors};
use dynlab_runtime::{Device, Error, Result, Rng, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub epoch: u64,
    pub optimizer_steps: u64,
    pub rng: Rng,
    pub seconds: f64,
    pub model: HashMap<String, Tensor>,
    pub optimizer: BTreeMap<String, Tensor>,
    pub history: History,
}

const MODEL: &str = "model.";
const OPTIM: &str = "optim.";

impl Checkpoint {
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let tensors: Vec<(String, Tensor)> = self
            .model
            .iter()
            .map(|(k, t)| (format!("{MODEL}{k}"), t.clone()))
            .chain(
                self.optimizer
                    .iter()
                    .map(|(k, t)| (format!("{OPTIM}{k}"), t.clone())),
            )
            .collect();
        let metadata = BTreeMap::from([
            ("epoch".to_string(), self.epoch.to_string()),
            (
                "optimizer_steps".to_string(),
                self.optimizer_steps.to_string(),
            ),
            ("rng_seed".to_string(), self.rng.seed().to_string()),
            ("rng_offset".to_string(), self.rng.offset().to_string()),
            ("seconds".to_string(), self.seconds.to_string()),
            ("history".to_string(), self.history.to_csv()),
        ]);
        save_safetensors(path, &tensors, &metadata)
    }

    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Checkpoint> {
        let path = path.as_ref();
        let file = load_safetensors(path, device)?;
        let meta = |key: &str| {
            file.metadata.get(key).ok_or_else(|| {
                Error::io(
                    "Checkpoint::load",
                    path,
                    format!("no `{key}` in the metadata"),
                )
            })
        };
        let number = |key: &str| -> Result<u64> {
            meta(key)?
                .parse()
                .map_err(|e| Error::io("Checkpoint::load", path, format!("{key}: {e}")))
        };
        let mut model = HashMap::new();
        let mut optimizer = BTreeMap::new();
        for (k, t) in file.tensors {
            if let Some(name) = k.strip_prefix(MODEL) {
                model.insert(name.to_string(), t);
            } else if let Some(name) = k.strip_prefix(OPTIM) {
                optimizer.insert(name.to_string(), t);
            } else {
                return Err(Error::io(
                    "Checkpoint::load",
                    path,
                    format!("unexpected tensor `{k}`"),
                ));
            }
        }
        Ok(Checkpoint {
            epoch: number("epoch")?,
            optimizer_steps: number("optimizer_steps")?,
            rng: Rng::from_state(number("rng_seed")?, number("rng_offset")?),
            seconds: meta("seconds")?
                .parse()
                .map_err(|e| Error::io("Checkpoint::load", path, format!("seconds: {e}")))?,
            model,
            optimizer,
            history: History::from_csv(meta("history")?)?,
        })
    }
}
