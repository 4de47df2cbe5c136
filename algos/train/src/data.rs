//! Batches and where they come from. A [`BatchSource`] yields the batches of one pass over its data
//! and then `None`; a stream that never ends is a source whose passes never end. [`Loader`] serves
//! a [`Dataset`] whole (full batch) or in mini-batches of a random permutation drawn on the device
//! at the start of each pass.

use dynlab_runtime::{DType, Error, Result, Rng, Tensor};

/// Inputs and targets, rows along axis 0.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Model inputs `[N, …]`.
    pub inputs: Tensor,
    /// Targets `[N, …]`: i32 class labels `[N]`, or f32 regression targets.
    pub targets: Tensor,
}

impl Batch {
    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.targets.shape().first().copied().unwrap_or(0)
    }

    /// This batch for every one of `replicas` stacked models: inputs and targets with a leading
    /// replica axis, as views of the same data (no copy).
    pub fn for_replicas(&self, replicas: usize) -> Result<Batch> {
        let lead = |t: &Tensor| {
            let shape: Vec<usize> = std::iter::once(replicas)
                .chain(t.shape().iter().copied())
                .collect();
            t.unsqueeze(0)?.expand(&shape)
        };
        Ok(Batch {
            inputs: lead(&self.inputs)?,
            targets: lead(&self.targets)?,
        })
    }
}

/// Yields batches, one pass at a time.
pub trait BatchSource {
    /// The next batch of the current pass, or `None` at its end (the next call starts a new pass).
    /// Shuffling draws from `rng`.
    fn next_batch(&mut self, rng: &mut Rng) -> Result<Option<Batch>>;
}

/// A whole dataset on the device.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Inputs `[N, …]`.
    pub inputs: Tensor,
    /// Targets `[N, …]` (i32 labels `[N]` or f32 values).
    pub targets: Tensor,
}

impl Dataset {
    /// Inputs and targets with the same number of rows; integer targets must be labels `[N]`.
    pub fn new(inputs: Tensor, targets: Tensor) -> Result<Dataset> {
        let rows_match = inputs.shape().first() == targets.shape().first();
        let labels_ok = targets.dtype() != DType::I32 || targets.rank() == 1;
        if !rows_match || !labels_ok || inputs.rank() == 0 {
            return Err(Error::shape(
                "Dataset::new",
                format!(
                    "inputs {:?}, {} targets {:?}",
                    inputs.shape(),
                    targets.dtype(),
                    targets.shape()
                ),
                "inputs [N, ...] and targets [N, ...] (i32 labels [N])",
            ));
        }
        Ok(Dataset { inputs, targets })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.inputs.shape()[0]
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole dataset as one batch.
    pub fn batch(&self) -> Batch {
        Batch {
            inputs: self.inputs.clone(),
            targets: self.targets.clone(),
        }
    }

    /// The rows at `indices` (an i32 tensor).
    pub fn rows(&self, indices: &Tensor) -> Result<Batch> {
        Ok(Batch {
            inputs: self.inputs.index_select(0, indices)?,
            targets: self.targets.index_select(0, indices)?,
        })
    }
}

/// Serves a [`Dataset`] in passes: whole, or in mini-batches of a fresh random permutation each pass
/// (the last batch of a pass may be smaller).
#[derive(Clone, Debug)]
pub struct Loader {
    data: Dataset,
    batch_size: usize,
    /// Serve each batch to this many stacked replicas (`Batch::for_replicas`); 1: as it is.
    replicas: usize,
    /// Position in the current pass and its permutation; `None` between passes.
    pass: Option<(usize, Option<Tensor>)>,
}

impl Loader {
    /// Batches of `batch_size` rows (`None`, or a size ≥ the dataset: the whole dataset).
    pub fn new(data: Dataset, batch_size: Option<usize>) -> Result<Loader> {
        let n = data.len();
        if n == 0 {
            return Err(Error::value(
                "Loader::new",
                "an empty dataset",
                "at least one row",
            ));
        }
        Ok(Loader {
            batch_size: batch_size.unwrap_or(n).clamp(1, n),
            data,
            replicas: 1,
            pass: None,
        })
    }

    /// Serves every batch to `replicas` stacked models (the same rows for each; see
    /// [`Batch::for_replicas`]).
    pub fn with_replicas(mut self, replicas: usize) -> Loader {
        self.replicas = replicas.max(1);
        self
    }

    /// Batches per pass.
    pub fn batches_per_pass(&self) -> usize {
        self.data.len().div_ceil(self.batch_size)
    }

    /// The dataset.
    pub fn data(&self) -> &Dataset {
        &self.data
    }
}

impl BatchSource for Loader {
    fn next_batch(&mut self, rng: &mut Rng) -> Result<Option<Batch>> {
        let n = self.data.len();
        let (start, order) = match self.pass.take() {
            Some(pass) => pass,
            None if self.batch_size < n => {
                let perm = Tensor::randperm(n, rng, self.data.inputs.device())?;
                (0, Some(perm))
            }
            None => (0, None),
        };
        if start >= n {
            return Ok(None);
        }
        let len = self.batch_size.min(n - start);
        let batch = match &order {
            Some(perm) => self.data.rows(&perm.narrow(0, start, len)?)?,
            None => self.data.batch(),
        };
        self.pass = Some((start + len, order));
        match self.replicas {
            1 => Ok(Some(batch)),
            r => Ok(Some(batch.for_replicas(r)?)),
        }
    }
}
