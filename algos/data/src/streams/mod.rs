//! Task streams for the loss-of-plasticity studies: sequences of tasks, each served as mini-batches,
//! where step `s` yields `(task of s, batch)`.
//!
//! Every stream has a [`Schedule`]: `tasks` tasks of `examples_per_task` examples each, served in
//! batches of `batch_size` rows; a task takes `⌈examples_per_task / batch_size⌉` steps (its last batch
//! may be smaller, and no batch mixes two tasks), so task `t` starts at step
//! `t · ⌈examples_per_task / batch_size⌉` ([`TaskStream::task_boundaries`]).
//!
//! A stream is a pure function of its configuration, its seed and the step: [`TaskStream::batch_at`]
//! gives any step's batch, [`TaskStream::next_step`] serves them in order, and
//! [`TaskStream::seek`] moves the position (resuming a run needs only the step). The structure of
//! each task (a pixel or label permutation, a pair of classes, the flipping bits) is drawn on the
//! host from the seed; the examples of a task that draws from a dataset run over the task's rows in
//! passes, each pass a fresh seeded shuffle of them.
//!
//! - [`PermutedInputs`]: a fixed random pixel permutation per task (permuted MNIST);
//! - [`PermutedLabels`]: a fixed random label permutation per task;
//! - [`ClassPairs`]: continual binary classification, two classes per task mapped to 0/1;
//! - [`ClassIncremental`]: classes added task by task, labels kept;
//! - [`SlowlyChangingRegression`]: Dohare et al.'s bit-flipping regression problem.
//!
//! [`PerTask`] serves a stream as a `BatchSource` whose passes are its tasks, so `Trainer::epoch`
//! trains one task.

mod classes;
mod permuted;
mod regression;

pub use classes::{ClassIncremental, ClassPairs};
pub use permuted::{PermutedInputs, PermutedLabels};
pub use regression::{LtuTarget, RegressionConfig, SlowlyChangingRegression};

use crate::host::{index_tensor, mix, HostRng};
use dynlab_runtime::{Error, Result, Rng};
use dynlab_train::{Batch, BatchSource, Dataset};

/// How many tasks, how many examples each, and in batches of what size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// Number of tasks.
    pub tasks: usize,
    /// Examples served per task.
    pub examples_per_task: usize,
    /// Rows per batch (the last batch of a task may be smaller).
    pub batch_size: usize,
}

impl Schedule {
    /// A schedule with every size ≥ 1 and a total number of steps that fits in `usize`.
    pub fn new(tasks: usize, examples_per_task: usize, batch_size: usize) -> Result<Schedule> {
        let s = Schedule {
            tasks,
            examples_per_task,
            batch_size,
        };
        let total = tasks.checked_mul(s.steps_per_task().max(1));
        if tasks == 0 || examples_per_task == 0 || batch_size == 0 || total.is_none() {
            return Err(Error::value(
                "Schedule::new",
                format!("{s:?}"),
                "tasks, examples_per_task and batch_size of at least 1, with a total step count that fits in usize",
            ));
        }
        Ok(s)
    }

    /// Steps per task: `⌈examples_per_task / batch_size⌉`.
    pub fn steps_per_task(&self) -> usize {
        self.examples_per_task.div_ceil(self.batch_size.max(1))
    }

    /// Steps of the whole stream.
    pub fn total_steps(&self) -> usize {
        self.tasks * self.steps_per_task()
    }

    /// The task that step `step` belongs to (`None` past the end).
    pub fn task_of_step(&self, step: usize) -> Option<usize> {
        (step < self.total_steps()).then(|| step / self.steps_per_task())
    }

    /// The first step of each task.
    pub fn task_boundaries(&self) -> Vec<usize> {
        (0..self.tasks).map(|t| t * self.steps_per_task()).collect()
    }

    /// Step `step` as (task, first example within the task, rows); an error past the end.
    pub fn locate(&self, op: &'static str, step: usize) -> Result<(usize, usize, usize)> {
        let Some(task) = self.task_of_step(step) else {
            return Err(Error::value(
                op,
                format!("step {step}"),
                format!("a step in 0..{}", self.total_steps()),
            ));
        };
        let start = (step - task * self.steps_per_task()) * self.batch_size;
        let rows = self.batch_size.min(self.examples_per_task - start);
        Ok((task, start, rows))
    }
}

/// A sequence of tasks served step by step (see the module doc).
pub trait TaskStream {
    /// The stream's tasks, examples per task and batch size.
    fn schedule(&self) -> Schedule;

    /// The task and the batch of step `step` (the same for the same seed, whatever was served
    /// before); an error past the end.
    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)>;

    /// The next step [`TaskStream::next_step`] serves.
    fn position(&self) -> usize;

    /// Makes `step` the next step served (`step ≤ total_steps`).
    fn seek(&mut self, step: usize) -> Result<()>;

    /// Another dataset of the base's kind (a held-out split, say) as task `task` shows its data:
    /// with the task's pixel or label permutation, only the rows of the task's classes (relabelled
    /// as the task relabels them), every row once, in order. Streams that do not draw from a
    /// dataset (the regression stream) have no such view: an error.
    fn task_view(&self, task: usize, data: &Dataset) -> Result<Dataset> {
        let _ = (task, data);
        Err(Error::value(
            "TaskStream::task_view",
            "a stream that does not draw from a dataset",
            "a stream over a dataset (permuted inputs or labels, class pairs, class-incremental)",
        ))
    }

    /// The next step's task and batch, or `None` after the last step.
    fn next_step(&mut self) -> Result<Option<(usize, Batch)>> {
        let step = self.position();
        if step >= self.total_steps() {
            return Ok(None);
        }
        let out = self.batch_at(step)?;
        self.seek(step + 1)?;
        Ok(Some(out))
    }

    /// Number of tasks.
    fn num_tasks(&self) -> usize {
        self.schedule().tasks
    }

    /// The first step of each task (task ids change exactly at these steps).
    fn task_boundaries(&self) -> Vec<usize> {
        self.schedule().task_boundaries()
    }

    /// The task of step `step` (`None` past the end).
    fn task_of_step(&self, step: usize) -> Option<usize> {
        self.schedule().task_of_step(step)
    }

    /// Steps of the whole stream.
    fn total_steps(&self) -> usize {
        self.schedule().total_steps()
    }
}

/// Errors unless `task` is one of the schedule's.
fn check_task(op: &'static str, task: usize, schedule: &Schedule) -> Result<()> {
    if task < schedule.tasks {
        return Ok(());
    }
    Err(Error::value(
        op,
        format!("task {task}"),
        format!("a task in 0..{}", schedule.tasks),
    ))
}

/// The step counter of a stream: checks [`TaskStream::seek`]'s argument.
#[derive(Clone, Copy, Debug, Default)]
struct Position(usize);

impl Position {
    fn seek(&mut self, op: &'static str, step: usize, schedule: &Schedule) -> Result<()> {
        if step > schedule.total_steps() {
            return Err(Error::value(
                op,
                format!("step {step}"),
                format!("a step in 0..={}", schedule.total_steps()),
            ));
        }
        self.0 = step;
        Ok(())
    }
}

/// Serves a [`TaskStream`] as a `BatchSource` whose passes are the tasks: the batches of the current
/// task, then `None` once, then the next task's; `None` for good after the last task. The `rng`
/// given to `next_batch` is not used (the stream draws from its seed).
pub struct PerTask<S> {
    stream: S,
    task_ended: bool,
}

impl<S: TaskStream> PerTask<S> {
    /// `stream`, one task per pass, from its current position.
    pub fn new(stream: S) -> PerTask<S> {
        PerTask {
            stream,
            task_ended: false,
        }
    }

    /// The stream.
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The stream, mutably (to seek it).
    pub fn stream_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// The task the next batch belongs to (`None` after the last).
    pub fn current_task(&self) -> Option<usize> {
        self.stream.task_of_step(self.stream.position())
    }
}

impl<S: TaskStream> BatchSource for PerTask<S> {
    fn next_batch(&mut self, _rng: &mut Rng) -> Result<Option<Batch>> {
        if std::mem::take(&mut self.task_ended) {
            return Ok(None);
        }
        let Some((task, batch)) = self.stream.next_step()? else {
            return Ok(None);
        };
        self.task_ended = self.current_task() != Some(task);
        Ok(Some(batch))
    }
}

/// Seed-mixing tags, one per purpose, so that no two draws share a sequence.
mod tag {
    pub const ORDER: u64 = 1;
    pub const PIXELS: u64 = 2;
    pub const LABELS: u64 = 3;
    pub const CLASSES: u64 = 4;
    pub const TARGET: u64 = 5;
    pub const FLIPS: u64 = 6;
    pub const BITS: u64 = 7;
}

/// Picks a task's examples from its pool of dataset rows: example `k` of task `t` is row
/// `pool[π_{t,p}(k mod n)]` for pass `p = ⌊k / n⌋` of the `n` pool rows, `π_{t,p}` a permutation
/// drawn from the seed (cached for the pass being served).
#[derive(Clone, Debug)]
struct Sampler {
    seed: u64,
    pass: Option<((usize, usize), Vec<usize>)>,
}

impl Sampler {
    fn new(seed: u64) -> Sampler {
        Sampler { seed, pass: None }
    }

    /// The dataset rows of examples `start..start + len` of `task`, whose rows are `pool`.
    fn rows(&mut self, task: usize, pool: &[usize], start: usize, len: usize) -> Vec<usize> {
        let n = pool.len();
        (start..start + len)
            .map(|k| {
                let key = (task, k / n);
                if self.pass.as_ref().map(|(k, _)| *k) != Some(key) {
                    let salt = [tag::ORDER, task as u64, key.1 as u64];
                    let order = HostRng::new(mix(self.seed, &salt)).permutation(n);
                    self.pass = Some((key, order));
                }
                let order = self.pass.as_ref().map_or(&[][..], |(_, o)| o.as_slice());
                pool[order[k % n]]
            })
            .collect()
    }

    /// The batch of examples `start..start + len` of `task` from `data`.
    fn batch(
        &mut self,
        op: &'static str,
        data: &Dataset,
        task: usize,
        pool: &[usize],
        start: usize,
        len: usize,
    ) -> Result<Batch> {
        if pool.is_empty() {
            return Err(Error::value(
                op,
                format!("task {task} with no rows"),
                "a task with rows to serve",
            ));
        }
        let rows = self.rows(task, pool, start, len);
        data.rows(&index_tensor(op, &rows, data.inputs.device())?)
    }
}
