//! Permuted-input and permuted-label streams over a base [`Dataset`].
//!
//! [`PermutedInputs`] (permuted MNIST, Goodfellow et al. 2013; Dohare et al. 2024): task `t` shows
//! the base dataset's images with their `D = C·H·W` values reordered by a fixed permutation `σ_t` of
//! `0..D`: `x'[n, i] = x[n, σ_t(i)]` over the flattened image, reshaped back to the base's shape;
//! labels are kept. `σ_t` is drawn from the seed for every task, including task 0 as in the
//! reference (`lop/permuted_mnist/online_expr.py`); [`PermutedInputs::with_identity_first`] makes
//! task 0 the unpermuted images instead. The permutation is applied on the device by one
//! `index_select` over the flattened pixels.
//!
//! [`PermutedLabels`]: task `t` relabels class `y` as `τ_t(y)` for a fixed permutation `τ_t` of the
//! `K` classes (`K` = largest label + 1), applied on the device by an `index_select` of `τ_t` at the
//! labels; inputs are kept.

use super::{check_task, tag, Position, Sampler, Schedule, TaskStream};
use crate::host::{classes_present, host_labels, index_tensor, mix, HostRng};
use dynlab_runtime::{Error, Result, Tensor};
use dynlab_train::{Batch, Dataset};

/// A permutation per task, cached as an i32 tensor for the task being served.
#[derive(Clone, Debug)]
struct TaskPermutations {
    seed: u64,
    tag: u64,
    len: usize,
    identity_first: bool,
    cached: Option<(usize, Tensor)>,
}

impl TaskPermutations {
    /// The permutation of `task` on the host.
    fn host(&self, task: usize) -> Vec<usize> {
        if task == 0 && self.identity_first {
            return (0..self.len).collect();
        }
        HostRng::new(mix(self.seed, &[self.tag, task as u64])).permutation(self.len)
    }

    /// The permutation of `task` on `data`'s device.
    fn tensor(&mut self, op: &'static str, task: usize, data: &Dataset) -> Result<Tensor> {
        match &self.cached {
            Some((t, p)) if *t == task => Ok(p.clone()),
            _ => {
                let p = index_tensor(op, &self.host(task), data.inputs.device())?;
                self.cached = Some((task, p.clone()));
                Ok(p)
            }
        }
    }
}

/// Every row of `data` (the pool of a stream whose tasks all see the whole dataset).
fn all_rows(op: &'static str, data: &Dataset) -> Result<Vec<usize>> {
    if data.is_empty() {
        return Err(Error::value(op, "an empty dataset", "at least one row"));
    }
    Ok((0..data.len()).collect())
}

/// Permuted inputs: a fixed random pixel permutation per task (see the module doc).
#[derive(Clone, Debug)]
pub struct PermutedInputs {
    data: Dataset,
    schedule: Schedule,
    pool: Vec<usize>,
    sampler: Sampler,
    perms: TaskPermutations,
    position: Position,
}

impl PermutedInputs {
    /// Tasks over `data` (inputs `[N, …]`) on `schedule`, drawn from `seed`.
    pub fn new(data: Dataset, schedule: Schedule, seed: u64) -> Result<PermutedInputs> {
        let op = "PermutedInputs::new";
        let schedule = Schedule::new(
            schedule.tasks,
            schedule.examples_per_task,
            schedule.batch_size,
        )?;
        let pool = all_rows(op, &data)?;
        let len = data.inputs.shape()[1..].iter().product();
        Ok(PermutedInputs {
            data,
            schedule,
            pool,
            sampler: Sampler::new(seed),
            perms: TaskPermutations {
                seed,
                tag: tag::PIXELS,
                len,
                identity_first: false,
                cached: None,
            },
            position: Position::default(),
        })
    }

    /// Task 0 shows the images unpermuted (`σ₀` the identity) when `identity` is true.
    pub fn with_identity_first(mut self, identity: bool) -> PermutedInputs {
        self.perms.identity_first = identity;
        self.perms.cached = None;
        self
    }

    /// The pixel permutation `σ_t` of `task` (over the flattened image): `x'[i] = x[σ_t(i)]`.
    pub fn permutation(&self, task: usize) -> Vec<usize> {
        self.perms.host(task)
    }

    /// The base dataset.
    pub fn data(&self) -> &Dataset {
        &self.data
    }
}

impl TaskStream for PermutedInputs {
    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)> {
        let op = "PermutedInputs::batch_at";
        let (task, start, len) = self.schedule.locate(op, step)?;
        let batch = self
            .sampler
            .batch(op, &self.data, task, &self.pool, start, len)?;
        let perm = self.perms.tensor(op, task, &self.data)?;
        let shape: Vec<isize> = batch.inputs.shape().iter().map(|&d| d as isize).collect();
        let flat = batch
            .inputs
            .reshape(&[len as isize, self.perms.len as isize])?;
        let inputs = flat.index_select(1, &perm)?.reshape(&shape)?;
        Ok((
            task,
            Batch {
                inputs,
                targets: batch.targets,
            },
        ))
    }

    fn position(&self) -> usize {
        self.position.0
    }

    fn seek(&mut self, step: usize) -> Result<()> {
        self.position
            .seek("PermutedInputs::seek", step, &self.schedule)
    }

    fn task_view(&self, task: usize, data: &Dataset) -> Result<Dataset> {
        let op = "PermutedInputs::task_view";
        check_task(op, task, &self.schedule)?;
        let d = self.perms.len;
        let n = data.len();
        if data.inputs.shape()[1..].iter().product::<usize>() != d {
            return Err(Error::shape(
                op,
                format!("inputs {:?}", data.inputs.shape()),
                format!("{d} values per row, as in the base dataset"),
            ));
        }
        let perm = index_tensor(op, &self.perms.host(task), data.inputs.device())?;
        let shape: Vec<isize> = data.inputs.shape().iter().map(|&s| s as isize).collect();
        let flat = data.inputs.reshape(&[n as isize, d as isize])?;
        let inputs = flat.index_select(1, &perm)?.reshape(&shape)?;
        Dataset::new(inputs, data.targets.clone())
    }
}

/// Permuted labels: a fixed random permutation of the classes per task (see the module doc).
#[derive(Clone, Debug)]
pub struct PermutedLabels {
    data: Dataset,
    schedule: Schedule,
    pool: Vec<usize>,
    sampler: Sampler,
    perms: TaskPermutations,
    position: Position,
}

impl PermutedLabels {
    /// Tasks over `data` (i32 labels `[N]`, every class `0..K` present) on `schedule`, drawn from
    /// `seed`.
    pub fn new(data: Dataset, schedule: Schedule, seed: u64) -> Result<PermutedLabels> {
        let op = "PermutedLabels::new";
        let schedule = Schedule::new(
            schedule.tasks,
            schedule.examples_per_task,
            schedule.batch_size,
        )?;
        let classes = classes_present(op, &host_labels(op, &data)?)?;
        let pool = all_rows(op, &data)?;
        Ok(PermutedLabels {
            data,
            schedule,
            pool,
            sampler: Sampler::new(seed),
            perms: TaskPermutations {
                seed,
                tag: tag::LABELS,
                len: classes,
                identity_first: false,
                cached: None,
            },
            position: Position::default(),
        })
    }

    /// Task 0 keeps the original labels (`τ₀` the identity) when `identity` is true.
    pub fn with_identity_first(mut self, identity: bool) -> PermutedLabels {
        self.perms.identity_first = identity;
        self.perms.cached = None;
        self
    }

    /// The label permutation `τ_t` of `task`: class `y` is served as `τ_t(y)`.
    pub fn permutation(&self, task: usize) -> Vec<usize> {
        self.perms.host(task)
    }

    /// Number of classes `K`.
    pub fn classes(&self) -> usize {
        self.perms.len
    }
}

impl TaskStream for PermutedLabels {
    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)> {
        let op = "PermutedLabels::batch_at";
        let (task, start, len) = self.schedule.locate(op, step)?;
        let batch = self
            .sampler
            .batch(op, &self.data, task, &self.pool, start, len)?;
        let perm = self.perms.tensor(op, task, &self.data)?;
        let targets = perm.index_select(0, &batch.targets)?;
        Ok((
            task,
            Batch {
                inputs: batch.inputs,
                targets,
            },
        ))
    }

    fn position(&self) -> usize {
        self.position.0
    }

    fn seek(&mut self, step: usize) -> Result<()> {
        self.position
            .seek("PermutedLabels::seek", step, &self.schedule)
    }

    fn task_view(&self, task: usize, data: &Dataset) -> Result<Dataset> {
        let op = "PermutedLabels::task_view";
        check_task(op, task, &self.schedule)?;
        let perm = index_tensor(op, &self.perms.host(task), data.inputs.device())?;
        let targets = perm.index_select(0, &data.targets)?;
        Dataset::new(data.inputs.clone(), targets)
    }
}
