//! The data suite: loaders on small files written here in the real formats (IDX, CIFAR binary,
//! `.npy`, safetensors), including truncated files and wrong magic numbers; the shipped digits;
//! splits; device transforms against plain f64 host implementations; and task streams (boundaries,
//! seeded determinism, permutations, class maps, and the slowly-changing regression's flips and
//! targets against a host recomputation of its LTU network).

mod digits;
mod loaders;
mod streams;
mod transforms;

use dynlab::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh, empty folder under the system's temporary folder, unique to this process and call.
pub fn scratch(name: &str) -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("dynlab-data-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts that `result` failed with an error whose message names `op` and contains every one of
/// `words`.
pub fn assert_fails<T: std::fmt::Debug>(result: dynlab::Result<T>, op: &str, words: &[&str]) {
    let err: Error = result.expect_err("expected an error");
    let text = err.to_string();
    assert!(text.starts_with(op), "{text:?} does not name {op}");
    for w in words {
        assert!(text.contains(w), "{text:?} lacks {w:?}");
    }
}
