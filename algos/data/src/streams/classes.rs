//! Streams over class subsets of a base [`Dataset`] with i32 labels in `0..K` (every class present).
//!
//! [`ClassPairs`] (continual binary classification, as in Dohare et al.'s Continual ImageNet): task
//! `t` shows only the rows of two classes `(a_t, b_t)`, relabelled `a_t → 0`, `b_t → 1`. The pairs
//! come from successive seeded permutations `π_0, π_1, …` of the classes: with `P = ⌊K/2⌋` pairs per
//! permutation, task `t` uses permutation `r = ⌊t/P⌋` and `j = t mod P`:
//! `(a_t, b_t) = (π_r(2j), π_r(2j+1))`, so every block of `P` tasks uses disjoint pairs.
//!
//! [`ClassIncremental`] (class-incremental learning, as in the reference's incremental CIFAR): the
//! classes in a seeded random order `π`; task `t` shows the rows of the first
//! `min(K, initial + t · per_task)` classes of `π`, with their original labels.

use super::{check_task, tag, Position, Sampler, Schedule, TaskStream};
use crate::host::{classes_present, host_labels, index_tensor, mix, HostRng};
use dynlab_runtime::{Error, Result, Tensor};
use dynlab_train::{Batch, Dataset};

/// The rows of each class `0..K` of `data`, in dataset order, and `K`.
fn rows_by_class(op: &'static str, data: &Dataset) -> Result<Vec<Vec<usize>>> {
    let labels = host_labels(op, data)?;
    let classes = classes_present(op, &labels)?;
    let mut rows = vec![Vec::new(); classes];
    for (i, &y) in labels.iter().enumerate() {
        rows[y as usize].push(i);
    }
    Ok(rows)
}

/// The rows of `classes`, in dataset order.
fn pool_of(by_class: &[Vec<usize>], classes: &[usize]) -> Vec<usize> {
    let mut rows: Vec<usize> = classes
        .iter()
        .flat_map(|&c| by_class[c].iter().copied())
        .collect();
    rows.sort_unstable();
    rows
}

/// Two classes per task, relabelled 0/1 (see the module doc).
#[derive(Clone, Debug)]
pub struct ClassPairs {
    data: Dataset,
    schedule: Schedule,
    by_class: Vec<Vec<usize>>,
    seed: u64,
    sampler: Sampler,
    /// The task being served, its pool of rows and its label map `[K]` on the device.
    current: Option<usize>,
    pool: Vec<usize>,
    map: Tensor,
    position: Position,
}

impl ClassPairs {
    /// Tasks over `data` (i32 labels in `0..K`, `K ≥ 2`, every class present) on `schedule`, pairs
    /// drawn from `seed`.
    pub fn new(data: Dataset, schedule: Schedule, seed: u64) -> Result<ClassPairs> {
        let op = "ClassPairs::new";
        let schedule = Schedule::new(
            schedule.tasks,
            schedule.examples_per_task,
            schedule.batch_size,
        )?;
        let by_class = rows_by_class(op, &data)?;
        if by_class.len() < 2 {
            return Err(Error::value(
                op,
                format!("{} class", by_class.len()),
                "at least 2 classes",
            ));
        }
        let map = Tensor::from_vec(
            vec![0i32; by_class.len()],
            &[by_class.len()],
            data.inputs.device(),
        )?;
        let mut pairs = ClassPairs {
            data,
            schedule,
            by_class,
            seed,
            sampler: Sampler::new(seed),
            current: None,
            pool: Vec::new(),
            map,
            position: Position::default(),
        };
        pairs.load(op, 0)?;
        Ok(pairs)
    }

    /// The classes `(a, b)` of `task`, served as labels 0 and 1.
    pub fn pair(&self, task: usize) -> (usize, usize) {
        let per_block = self.by_class.len() / 2;
        let (block, j) = (task / per_block, task % per_block);
        let salt = [tag::CLASSES, block as u64];
        let order = HostRng::new(mix(self.seed, &salt)).permutation(self.by_class.len());
        (order[2 * j], order[2 * j + 1])
    }

    /// Makes `task` the one served: its pool of rows and its label map.
    fn load(&mut self, op: &'static str, task: usize) -> Result<()> {
        if self.current == Some(task) {
            return Ok(());
        }
        let (a, b) = self.pair(task);
        let map: Vec<usize> = (0..self.by_class.len())
            .map(|c| usize::from(c == b))
            .collect();
        self.map = index_tensor(op, &map, self.data.inputs.device())?;
        self.pool = pool_of(&self.by_class, &[a, b]);
        self.current = Some(task);
        Ok(())
    }
}

impl TaskStream for ClassPairs {
    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)> {
        let op = "ClassPairs::batch_at";
        let (task, start, len) = self.schedule.locate(op, step)?;
        self.load(op, task)?;
        let batch = self
            .sampler
            .batch(op, &self.data, task, &self.pool, start, len)?;
        let targets = self.map.index_select(0, &batch.targets)?;
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
        self.position.seek("ClassPairs::seek", step, &self.schedule)
    }

    fn task_view(&self, task: usize, data: &Dataset) -> Result<Dataset> {
        let op = "ClassPairs::task_view";
        check_task(op, task, &self.schedule)?;
        let (a, b) = self.pair(task);
        let view = rows_of_classes(op, data, &[a, b])?;
        let map: Vec<usize> = (0..self.by_class.len())
            .map(|c| usize::from(c == b))
            .collect();
        let map = index_tensor(op, &map, data.inputs.device())?;
        Dataset::new(view.inputs, map.index_select(0, &view.targets)?)
    }
}

/// Classes added task by task, labels kept (see the module doc).
#[derive(Clone, Debug)]
pub struct ClassIncremental {
    data: Dataset,
    schedule: Schedule,
    by_class: Vec<Vec<usize>>,
    order: Vec<usize>,
    initial: usize,
    per_task: usize,
    sampler: Sampler,
    /// The task being served and its pool of rows.
    current: Option<usize>,
    pool: Vec<usize>,
    position: Position,
}

impl ClassIncremental {
    /// Tasks over `data` (i32 labels in `0..K`, every class present) on `schedule`: task 0 has
    /// `initial` classes (≥ 1) and each later task `per_task` more, in an order drawn from `seed`.
    pub fn new(
        data: Dataset,
        schedule: Schedule,
        initial: usize,
        per_task: usize,
        seed: u64,
    ) -> Result<ClassIncremental> {
        let op = "ClassIncremental::new";
        let schedule = Schedule::new(
            schedule.tasks,
            schedule.examples_per_task,
            schedule.batch_size,
        )?;
        let by_class = rows_by_class(op, &data)?;
        if initial == 0 || initial > by_class.len() {
            return Err(Error::value(
                op,
                format!("{initial} initial classes of {}", by_class.len()),
                format!("1..={} initial classes", by_class.len()),
            ));
        }
        let order = HostRng::new(mix(seed, &[tag::CLASSES])).permutation(by_class.len());
        Ok(ClassIncremental {
            data,
            schedule,
            by_class,
            order,
            initial,
            per_task,
            sampler: Sampler::new(seed),
            current: None,
            pool: Vec::new(),
            position: Position::default(),
        })
    }

    /// The order in which classes are added.
    pub fn class_order(&self) -> &[usize] {
        &self.order
    }

    /// The classes of `task`: the first `min(K, initial + task · per_task)` of the order.
    pub fn classes(&self, task: usize) -> &[usize] {
        let k = task
            .saturating_mul(self.per_task)
            .saturating_add(self.initial)
            .min(self.order.len());
        &self.order[..k]
    }

    /// Makes `task` the one served: its pool of rows.
    fn load(&mut self, task: usize) {
        if self.current != Some(task) {
            self.pool = pool_of(&self.by_class, self.classes(task));
            self.current = Some(task);
        }
    }
}

impl TaskStream for ClassIncremental {
    fn schedule(&self) -> Schedule {
        self.schedule
    }

    fn batch_at(&mut self, step: usize) -> Result<(usize, Batch)> {
        let op = "ClassIncremental::batch_at";
        let (task, start, len) = self.schedule.locate(op, step)?;
        self.load(task);
        let batch = self
            .sampler
            .batch(op, &self.data, task, &self.pool, start, len)?;
        Ok((task, batch))
    }

    fn position(&self) -> usize {
        self.position.0
    }

    fn seek(&mut self, step: usize) -> Result<()> {
        self.position
            .seek("ClassIncremental::seek", step, &self.schedule)
    }

    fn task_view(&self, task: usize, data: &Dataset) -> Result<Dataset> {
        let op = "ClassIncremental::task_view";
        check_task(op, task, &self.schedule)?;
        rows_of_classes(op, data, self.classes(task))
    }
}

/// The rows of `data` whose label is one of `classes`, in order; an error when there are none.
fn rows_of_classes(op: &'static str, data: &Dataset, classes: &[usize]) -> Result<Dataset> {
    let labels = host_labels(op, data)?;
    let rows: Vec<usize> = (0..labels.len())
        .filter(|&i| classes.contains(&(labels[i] as usize)))
        .collect();
    if rows.is_empty() {
        return Err(Error::value(
            op,
            format!("no rows of classes {classes:?}"),
            "a dataset with rows of the task's classes",
        ));
    }
    let b = data.rows(&index_tensor(op, &rows, data.inputs.device())?)?;
    Dataset::new(b.inputs, b.targets)
}
