//! Stamps the crate with a hash of its kernel sources (`DYNLAB_KERNELS_HASH`), so that what is
//! cached across processes about the kernels (the tuners' choices) is keyed by the kernels it was
//! measured on.

use std::path::Path;

/// FNV-1a, 64 bits.
fn fnv(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

fn main() {
    let src = Path::new("src");
    println!("cargo:rerun-if-changed=src");
    let mut files: Vec<_> = std::fs::read_dir(src)
        .expect("kernels/src")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    files.sort();
    let mut hash = 0xcbf2_9ce4_8422_2325;
    for file in files {
        hash = fnv(hash, file.to_string_lossy().as_bytes());
        hash = fnv(hash, &std::fs::read(&file).expect("a kernel source"));
    }
    println!("cargo:rustc-env=DYNLAB_KERNELS_HASH={hash:016x}");
}
