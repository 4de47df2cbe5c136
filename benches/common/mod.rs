//! What the benches share: where their result tables go.

/// Writes `text` atomically to `benches/results/<prefix><name>`, the prefix from
/// `DYNLAB_BENCH_RESULTS` (empty by default; `scripts/gpu-check.sh` sets `gpu-`), and says so.
pub fn write_results(name: &str, text: &str, device: &dynlab::Device) -> dynlab::Result<()> {
    let prefix = std::env::var("DYNLAB_BENCH_RESULTS").unwrap_or_default();
    let file = format!("{prefix}{name}");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches/results")
        .join(&file);
    dynlab::runtime::write_atomic(&path, text.as_bytes())?;
    println!("wrote benches/results/{file} ({})", device.name());
    Ok(())
}
