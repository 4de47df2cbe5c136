//! A run folder, `<runs_dir>/<name>/`: the resolved `config.toml`, `checkpoint.safetensors` (every
//! stateful part of the run in one file), `history.csv` and `history.parquet`, plots and
//! `summary.toml`. A run of several replicas (a history with a `replica` column) also gets each
//! replica's rows in `replicas/<r>/history.csv` and `.parquet`. Every file is written to a temporary name and renamed, so a crash never leaves a
//! half-written one; the checkpoint holds the history too, so resuming restores it exactly.

use crate::history::History;
use crate::parquet::to_parquet;
use dynlab_models::Record;
use dynlab_runtime::{write_atomic, Device, Error, Result};
use std::path::{Path, PathBuf};

/// What to do with an existing run folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunMode {
    /// Start a run; an existing folder is an error (it would be overwritten).
    #[default]
    New,
    /// Continue from the folder's checkpoint.
    Resume,
    /// Delete the folder and start again.
    Overwrite,
}

/// An open run folder (see the module docs).
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

const CHECKPOINT: &str = "checkpoint.safetensors";

/// The history column that names a row's replica.
pub const REPLICA: &str = "replica";

impl RunDir {
    /// Opens `<runs_dir>/<name>` for `mode`: creates it (`New`, `Overwrite`) or checks that it has
    /// a checkpoint (`Resume`).
    pub fn open(runs_dir: impl AsRef<Path>, name: &str, mode: RunMode) -> Result<RunDir> {
        let op = "RunDir::open";
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::config(
                "name",
                format!("`{name}` is not a folder name"),
            ));
        }
        let path = runs_dir.as_ref().join(name);
        match mode {
            RunMode::Resume if !path.join(CHECKPOINT).is_file() => {
                return Err(Error::io(
                    op,
                    path.join(CHECKPOINT),
                    "no checkpoint to resume from; start the run without --resume",
                ))
            }
            RunMode::Resume => {}
            RunMode::New if path.exists() => {
                return Err(Error::io(
                    op,
                    &path,
                    "exists; pass --resume to continue it, --overwrite to start again, or --set name=<new>",
                ))
            }
            RunMode::Overwrite if path.exists() => {
                std::fs::remove_dir_all(&path).map_err(|e| Error::io(op, &path, e))?
            }
            RunMode::New | RunMode::Overwrite => {}
        }
        std::fs::create_dir_all(&path).map_err(|e| Error::io(op, &path, e))?;
        Ok(RunDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `file` in the folder.
    pub fn file(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }

    /// Writes `file` atomically.
    pub fn write(&self, file: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(self.file(file), bytes)
    }

    /// Writes the checkpoint (atomically).
    pub fn save_checkpoint(&self, record: &Record) -> Result<()> {
        record.save(self.file(CHECKPOINT))
    }

    /// Reads the checkpoint, its tensors onto `device` (`None` for runs that keep no tensors).
    pub fn load_checkpoint(&self, device: Option<&Device>) -> Result<Record> {
        Record::load(self.file(CHECKPOINT), device)
    }

    /// Writes `history.csv` and `history.parquet`, and with several replicas each replica's
    /// history under `replicas/<r>/`.
    pub fn write_history(&self, history: &History) -> Result<()> {
        self.write("history.csv", history.to_csv().as_bytes())?;
        self.write("history.parquet", &to_parquet(history))?;
        let replicas = history.distinct(REPLICA);
        if replicas.len() > 1 {
            for r in replicas {
                let one = history.rows_where(REPLICA, r);
                let dir = format!("replicas/{r}");
                self.write(&format!("{dir}/history.csv"), one.to_csv().as_bytes())?;
                self.write(&format!("{dir}/history.parquet"), &to_parquet(&one))?;
            }
        }
        Ok(())
    }
}
