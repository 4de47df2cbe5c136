//! Host-side helpers shared by the loaders and streams: a seeded host generator for the small
//! structures a task is made of (class orders, pixel and label permutations, example orders, the
//! target network's signs), seed mixing, file reading and format errors that name the loader, the
//! file, what it got and what it expected.

use dynlab_runtime::{Device, Error, Result, Tensor};
use dynlab_train::Dataset;
use std::path::Path;

/// SplitMix64: a small, fast, seeded generator for host-side draws (Steele, Lea & Flood, 2014).
/// Its whole state is one word ([`HostRng::state`]; `HostRng::new(state)` resumes it).
#[derive(Clone, Debug)]
pub struct HostRng(u64);

impl HostRng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> HostRng {
        HostRng(seed)
    }

    /// The state word (a generator made with `HostRng::new(state)` continues this one exactly).
    pub fn state(&self) -> u64 {
        self.0
    }

    /// Uniform on `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on `0..n` (`n ≥ 1`), without modulo bias (rejection of the incomplete last zone).
    pub fn below(&mut self, n: usize) -> usize {
        let n = n.max(1) as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }

    /// A fair coin.
    pub fn bit(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Shuffles `values` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, values: &mut [T]) {
        for i in (1..values.len()).rev() {
            let j = self.below(i + 1);
            values.swap(i, j);
        }
    }

    /// A uniformly random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

/// A seed derived from `seed` and the words of `parts` (one SplitMix64 step per word), so that each
/// (stream, purpose, task, pass) draws from its own independent sequence.
pub(crate) fn mix(seed: u64, parts: &[u64]) -> u64 {
    parts.iter().fold(HostRng::new(seed).next_u64(), |acc, &p| {
        HostRng::new(acc ^ p.wrapping_mul(0xD6E8_FEB8_6659_FD93)).next_u64()
    })
}

/// A format error of loader `op` on `path`: what it got and what it expected.
pub(crate) fn bad_file(
    op: &'static str,
    path: &Path,
    got: impl std::fmt::Display,
    expected: impl std::fmt::Display,
) -> Error {
    Error::io(op, path, format!("got {got}, expected {expected}"))
}

/// The whole file at `path`.
pub(crate) fn read_file(op: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io(op, path, e))
}

/// Bytes scaled to `[0, 1]`: `v / 255`.
pub(crate) fn unit_scale(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&v| f32::from(v) / 255.0).collect()
}

/// `value` as an i32, or an error of `op` naming `what`.
pub(crate) fn to_i32(op: &'static str, what: &str, value: usize) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::value(
            op,
            format!("{what} {value}"),
            format!("at most {}", i32::MAX),
        )
    })
}

/// Indices as an i32 tensor `[n]` (its value range is known from the upload, so index ops that take
/// it read nothing back).
pub(crate) fn index_tensor(op: &'static str, values: &[usize], device: &Device) -> Result<Tensor> {
    let v = values
        .iter()
        .map(|&i| to_i32(op, "index", i))
        .collect::<Result<Vec<i32>>>()?;
    Tensor::from_vec(v, &[values.len()], device)
}

/// The labels of `data` on the host: i32 targets `[N]`, else an error of `op`.
pub(crate) fn host_labels(op: &'static str, data: &Dataset) -> Result<Vec<i32>> {
    if data.targets.dtype() != dynlab_runtime::DType::I32 || data.targets.rank() != 1 {
        return Err(Error::value(
            op,
            format!(
                "{} targets {:?}",
                data.targets.dtype(),
                data.targets.shape()
            ),
            "i32 class labels [N]",
        ));
    }
    let labels = data.targets.to_vec::<i32>()?;
    if let Some(&bad) = labels.iter().find(|&&v| v < 0) {
        return Err(Error::value(
            op,
            format!("label {bad}"),
            "class labels >= 0",
        ));
    }
    Ok(labels)
}

/// The number of classes of `labels` (largest + 1), every class in `0..classes` present at least
/// once; else an error of `op`.
pub(crate) fn classes_present(op: &'static str, labels: &[i32]) -> Result<usize> {
    let classes = labels.iter().map(|&v| v as usize + 1).max().unwrap_or(0);
    if classes > labels.len() {
        return Err(Error::value(
            op,
            format!("labels up to {} in {} rows", classes - 1, labels.len()),
            "every class below the largest label present at least once",
        ));
    }
    let mut seen = vec![false; classes];
    for &v in labels {
        seen[v as usize] = true;
    }
    match seen.iter().position(|s| !s) {
        None if classes > 0 => Ok(classes),
        None => Err(Error::value(op, "no rows", "a dataset with labels")),
        Some(c) => Err(Error::value(
            op,
            format!("labels 0..{classes} with class {c} absent"),
            "every class below the largest label present at least once",
        )),
    }
}
