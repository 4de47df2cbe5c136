//! Every `DYNLAB_*` environment variable the runtime reads, each through one function here.
//!
//! | variable | meaning | default | read |
//! |---|---|---|---|
//! | `DYNLAB_DEVICE` | the device [`Device::default`](crate::Device::default) opens (names in the `Device` docs: `wgpu`, `wgpu:cpu`, `cuda:N`, ...) | unset or blank: `wgpu`, the best wgpu adapter | on each call |
//! | `DYNLAB_MATMUL_TUNE` | `0` turns off timing the matmul kernels per shape class: a fixed rule picks them (bit-identical reruns) | on | on each product that could be tuned |
//! | `DYNLAB_CONV_TUNE` | `0` turns off timing im2col against the implicit GEMM per convolution shape: im2col is always used | on | on each convolution that could be tuned |
//! | `DYNLAB_FORCE_HOST_EIGH` | `1` sends every eigendecomposition and SVD to the f64 host solver | off | on each call |
//! | `DYNLAB_FUSION` | `0` turns off the fused first-order backward rules (each rule then runs its chain of ops) | on | once per process, then cached |
//! | `DYNLAB_CACHE_DIR` | where choices measured by the tuners (and, on the SPIR-V and CUDA compilers, compiled kernels) are kept across processes | `$XDG_CACHE_HOME/dynlab`, else `$HOME/.cache/dynlab` | once per process, then cached |
//! | `DYNLAB_CACHE` | `0` keeps nothing across processes (every process tunes afresh) | on | once per process, then cached |
//! | `DYNLAB_POISON` | `1` fills every fresh output buffer with NaN (`i32::MIN` for integers) before its kernel runs, as [`set_poison_outputs`](crate::set_poison_outputs)`(true)` does | off | once per process, then cached |
//!
//! For the switches, any value other than the one named (or one that is not Unicode) leaves the
//! default in place. Knobs of the benches and tests are not runtime settings and are read where
//! they are used: `DYNLAB_BENCH_DEVICE_LIMIT` by `benches/linalg.rs`, `DYNLAB_PROPERTY_CALLS` and
//! `DYNLAB_PROPERTY_SEED` (how many calls the bad-input property suite makes, and its seed) by
//! `tests/runtime/properties.rs`.

use std::sync::OnceLock;

/// `DYNLAB_DEVICE`, trimmed: the name of the device [`Device::default`](crate::Device::default)
/// opens, or `None` when it is unset, blank or not Unicode (the best wgpu adapter is then used).
/// Read on each call.
pub fn device() -> Option<String> {
    match std::env::var("DYNLAB_DEVICE") {
        Ok(name) if !name.trim().is_empty() => Some(name.trim().to_string()),
        _ => None,
    }
}

/// Whether the matmul kernel is chosen by timing per shape class: true unless
/// `DYNLAB_MATMUL_TUNE=0`. Read on each call.
pub fn matmul_tune() -> bool {
    std::env::var("DYNLAB_MATMUL_TUNE").map_or(true, |v| v != "0")
}

/// Whether a convolution's algorithm (im2col or implicit GEMM) is chosen by timing per shape:
/// true unless `DYNLAB_CONV_TUNE=0`. Read on each call.
pub fn conv_tune() -> bool {
    std::env::var("DYNLAB_CONV_TUNE").map_or(true, |v| v != "0")
}

/// Whether every eigendecomposition and SVD runs on the f64 host solver: true when
/// `DYNLAB_FORCE_HOST_EIGH=1`. Read on each call, so a process may switch it at run time.
pub fn force_host_eigh() -> bool {
    std::env::var("DYNLAB_FORCE_HOST_EIGH").is_ok_and(|v| v == "1")
}

/// Whether first-order backward rules run their fused kernels (GELU, tanh, sigmoid and ReLU
/// derivatives, the cross-entropy's gradient): true unless `DYNLAB_FUSION=0`. Read on the first
/// call and cached for the process (the autodiff reads it in every rule).
pub fn fusion() -> bool {
    static FUSION: OnceLock<bool> = OnceLock::new();
    *FUSION.get_or_init(|| std::env::var("DYNLAB_FUSION").map_or(true, |v| v != "0"))
}

/// The folder of what is kept across processes (`DYNLAB_CACHE_DIR`, else `$XDG_CACHE_HOME/dynlab`,
/// else `$HOME/.cache/dynlab`), or `None` when `DYNLAB_CACHE=0` or no folder can be named. Read on
/// the first call and cached for the process.
pub fn cache_dir() -> Option<std::path::PathBuf> {
    static DIR: OnceLock<Option<std::path::PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        if std::env::var("DYNLAB_CACHE").is_ok_and(|v| v == "0") {
            return None;
        }
        let set = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        set("DYNLAB_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .or_else(|| set("XDG_CACHE_HOME").map(|d| std::path::PathBuf::from(d).join("dynlab")))
            .or_else(|| set("HOME").map(|d| std::path::PathBuf::from(d).join(".cache/dynlab")))
    })
    .clone()
}

/// Whether fresh output buffers are poisoned with NaN: true when `DYNLAB_POISON=1`. Read on the
/// first call and cached for the process (the check runs on every allocation).
pub fn poison() -> bool {
    static POISON: OnceLock<bool> = OnceLock::new();
    *POISON.get_or_init(|| std::env::var("DYNLAB_POISON").is_ok_and(|v| v == "1"))
}
