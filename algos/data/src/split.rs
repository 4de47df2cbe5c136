//! Train/test splits of a labelled [`Dataset`], stratified by class, and class counts. Shuffled
//! mini-batches of a split come from `dynlab_train::Loader` (a fresh device permutation each pass,
//! seeded by the `Rng` it is given); this module only decides which rows go where.
//!
//! - [`SplitRule::FirstPerClass`]`(k)`: the first `k` rows of each class (in file order) train, the
//!   rest test; no randomness.
//! - [`SplitRule::Fraction`]`(f)`: for each class `c` with `n_c` rows, `round(f · n_c)` rows drawn
//!   uniformly without replacement (a seeded shuffle of the class's rows) train, the rest test.
//!
//! Both parts keep the rows in their original order, so a split is a partition fixed by the rule
//! and the seed.

use crate::host::{host_labels, index_tensor, mix, HostRng};
use dynlab_runtime::{Error, Result};
use dynlab_train::Dataset;
use std::collections::BTreeMap;

/// How [`split_per_class`] picks each class's training rows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SplitRule {
    /// The first `k` rows of each class (in dataset order); a class with `k` rows or fewer goes
    /// wholly to training.
    FirstPerClass(usize),
    /// A seeded random `round(f · n_c)` of each class's `n_c` rows, `f` in `[0, 1]`.
    Fraction(f64),
}

/// Largest label [`class_counts`] counts (exclusive): 2²⁴.
pub const MAX_CLASSES: usize = 1 << 24;

/// The number of rows of each class `0..=max label` of a dataset with i32 labels `[N]` in
/// `0..MAX_CLASSES`.
pub fn class_counts(data: &Dataset) -> Result<Vec<usize>> {
    let op = "class_counts";
    let labels = host_labels(op, data)?;
    let classes = labels.iter().map(|&v| v as usize + 1).max().unwrap_or(0);
    if classes > MAX_CLASSES {
        return Err(Error::value(
            op,
            format!("label {}", classes - 1),
            format!("labels in 0..{MAX_CLASSES}"),
        ));
    }
    let mut counts = vec![0; classes];
    for &v in &labels {
        counts[v as usize] += 1;
    }
    Ok(counts)
}

/// Splits `data` (i32 labels `[N]`) into `(train, test)` by `rule`, class by class; `seed` drives
/// [`SplitRule::Fraction`]'s draw. Either part may be empty only if that is what the rule asks (an
/// empty part is an error: a [`Dataset`] with no rows cannot be served).
pub fn split_per_class(data: &Dataset, rule: SplitRule, seed: u64) -> Result<(Dataset, Dataset)> {
    let op = "split_per_class";
    if let SplitRule::Fraction(f) = rule {
        if !(0.0..=1.0).contains(&f) {
            return Err(Error::value(
                op,
                format!("fraction {f}"),
                "a fraction in [0, 1]",
            ));
        }
    }
    let labels = host_labels(op, data)?;
    let mut is_train = vec![false; labels.len()];
    for (class, rows) in rows_by_class(&labels) {
        for row in train_rows(rule, seed, class, rows) {
            is_train[row] = true;
        }
    }
    let pick = |want: bool| -> Result<Dataset> {
        let rows: Vec<usize> = (0..labels.len()).filter(|&i| is_train[i] == want).collect();
        if rows.is_empty() {
            let part = if want { "training" } else { "test" };
            return Err(Error::value(
                op,
                format!("{rule:?} leaves the {part} part empty"),
                "a rule that puts rows in both parts",
            ));
        }
        let b = data.rows(&index_tensor(op, &rows, data.inputs.device())?)?;
        Dataset::new(b.inputs, b.targets)
    };
    Ok((pick(true)?, pick(false)?))
}

/// The rows of each class present, in dataset order.
fn rows_by_class(labels: &[i32]) -> BTreeMap<i32, Vec<usize>> {
    let mut rows: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for (i, &v) in labels.iter().enumerate() {
        rows.entry(v).or_default().push(i);
    }
    rows
}

/// The rows of one class that go to training.
fn train_rows(rule: SplitRule, seed: u64, class: i32, mut rows: Vec<usize>) -> Vec<usize> {
    match rule {
        SplitRule::FirstPerClass(k) => rows.into_iter().take(k).collect(),
        SplitRule::Fraction(f) => {
            let k = (f * rows.len() as f64).round() as usize;
            HostRng::new(mix(seed, &[SPLIT_STREAM, class as u64])).shuffle(&mut rows);
            rows.truncate(k);
            rows
        }
    }
}

/// Seed-mixing tag of the split's draws.
const SPLIT_STREAM: u64 = 8;
