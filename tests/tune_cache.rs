//! The matmul tuner's choices outlive the process: a first process measures a product's shape class
//! and writes its choice to `DYNLAB_CACHE_DIR`; a second process finds it there and launches the
//! product once, without measuring. A binary of its own: each run is a fresh child process of it.

use dynlab::{Device, Rng, Tensor};
use dynlab_test_support::device_test;
use std::process::Command;

/// Set in the child processes: run one product and print its launches.
const CHILD: &str = "DYNLAB_TUNE_CACHE_CHILD";

/// One product large enough to be tuned (2²¹ multiply-adds); prints the launches it took.
fn child_product() {
    let device = Device::default().unwrap();
    let mut rng = Rng::new(0);
    let a = Tensor::rand_normal(&[128, 128], 0.0, 1.0, &mut rng, &device).unwrap();
    let b = Tensor::rand_normal(&[128, 128], 0.0, 1.0, &mut rng, &device).unwrap();
    let before = device.stats();
    a.matmul(&b).unwrap().to_vec::<f32>().unwrap();
    let used = device.stats().since(&before);
    let matmul: u64 = used
        .kernels
        .iter()
        .filter(|(k, _)| k.starts_with("matmul"))
        .map(|(_, n)| n)
        .sum();
    println!("matmul launches: {matmul}");
}

/// Runs this test in a fresh process with the cache in `dir`; its matmul launch count.
fn run_child(dir: &std::path::Path) -> u64 {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "tuning_choices_outlive_the_process_wgpu",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .env("DYNLAB_CACHE_DIR", dir)
        .env_remove("DYNLAB_MATMUL_TUNE")
        .env_remove("DYNLAB_CACHE")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("matmul launches: "))
        .unwrap_or_else(|| panic!("no count in {text}"));
    line.trim().parse().unwrap()
}

#[device_test]
fn tuning_choices_outlive_the_process() {
    if std::env::var_os(CHILD).is_some() {
        return child_product();
    }
    let dir = std::env::temp_dir().join(format!("dynlab-tune-cache-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = run_child(&dir);
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("tune-")
        })
        .collect();
    assert_eq!(files.len(), 1, "one tune-<kernels version>.tsv: {files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        text.lines().any(|l| l.split('\t').nth(1) == Some("matmul")),
        "{text}"
    );
    let second = run_child(&dir);
    assert!(
        first > 1,
        "the first process measured candidates ({first} launches)"
    );
    assert_eq!(second, 1, "the second process reused the stored choice");
    std::fs::remove_dir_all(&dir).unwrap();
}
