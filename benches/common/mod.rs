//! What the benches share: where their result tables go.

/// `benches/results/<prefix><name>` and its file name, the prefix from `DYNLAB_BENCH_RESULTS`
/// (empty by default; `scripts/gpu-check.sh` sets `gpu-`).
pub fn results_path(name: &str) -> (std::path::PathBuf, String) {
    let prefix = std::env::var("DYNLAB_BENCH_RESULTS").unwrap_or_default();
    let file = format!("{prefix}{name}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/results");
    (dir.join(&file), file)
}

/// Writes `text` atomically to [`results_path`]`(name)` and says so.
pub fn write_results(name: &str, text: &str, device: &dynlab::Device) -> dynlab::Result<()> {
    let (path, file) = results_path(name);
    dynlab::runtime::write_atomic(&path, text.as_bytes())?;
    println!("wrote benches/results/{file} ({})", device.name());
    Ok(())
}
