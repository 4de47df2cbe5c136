//! Choosing a kernel by measurement: a process-wide cache of choices per shape key, the timing loop
//! and the per-thread override for tests, shared by the matmul tuner and the convolution algorithm
//! choice.

use crate::error::Result;
use crate::Device;
use std::cell::Cell;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::thread::LocalKey;
use std::time::Instant;

/// Choices already measured, per key (a poisoned lock is still read: the map holds only choices).
pub(crate) struct TuneCache<K, V>(Mutex<Option<HashMap<K, V>>>);

impl<K: Hash + Eq, V: Copy> TuneCache<K, V> {
    pub(crate) const fn new() -> Self {
        TuneCache(Mutex::new(None))
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        self.with_map(|map| map.get(key).copied())
    }

    pub(crate) fn insert(&self, key: K, value: V) {
        self.with_map(|map| map.insert(key, value));
    }

    /// Every choice made so far, as `(key, choice)`.
    pub(crate) fn entries(&self) -> Vec<(K, V)>
    where
        K: Clone,
    {
        self.with_map(|map| map.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<K, V>) -> T) -> T {
        f(self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new))
    }
}

/// Times each candidate (one untimed run compiles it, then the best of two timed runs, each
/// between device syncs) and returns the fastest, or `fallback` when there is none.
pub(crate) fn fastest<C: Copy>(
    device: &Device,
    candidates: impl IntoIterator<Item = C>,
    fallback: C,
    mut run: impl FnMut(C) -> Result<()>,
) -> Result<C> {
    let mut best = (f64::INFINITY, fallback);
    for candidate in candidates {
        run(candidate)?;
        device.sync()?;
        for _ in 0..2 {
            let start = Instant::now();
            run(candidate)?;
            device.sync()?;
            let seconds = start.elapsed().as_secs_f64();
            if seconds < best.0 {
                best = (seconds, candidate);
            }
        }
    }
    Ok(best.1)
}

/// Runs `f` with `forced` holding `choice` on this thread, then restores what it held (so forcing
/// nests), for tests that must cover every choice.
pub(crate) fn with_forced<C: Copy + 'static, T>(
    forced: &'static LocalKey<Cell<Option<C>>>,
    choice: C,
    f: impl FnOnce() -> T,
) -> T {
    let previous = forced.with(|c| c.replace(Some(choice)));
    let out = f();
    forced.with(|c| c.set(previous));
    out
}

/// The kernel choices the tuners have made in this process, one line each (`matmul …` per shape
/// class, `conv2d …` per shape), sorted: what a run records so that its numbers can be traced to
/// the kernels that produced them.
pub fn tuned_choices() -> Vec<String> {
    let mut lines = crate::ops::matmul::tuned_choices();
    lines.extend(crate::ops::conv_algorithm::tuned_choices());
    lines.sort();
    lines
}
