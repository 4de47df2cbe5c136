//! Shared scaffolding of the peer benchmarks in `benches/`: timings recorded per (case, pass, side)
//! while criterion drives the loops, a pass timed for both sides, and the result table written
//! atomically to `benches/results/`.

use burn::tensor::{Device as BurnDevice, DeviceKind};
use criterion::{BenchmarkId, Criterion};
use dynlab::Device;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// (case index, pass, side).
pub type Key = (usize, &'static str, &'static str);

/// Total iterations and time per key, summed over criterion's samples.
pub struct Timings(Mutex<BTreeMap<Key, (u64, Duration)>>);

impl Timings {
    pub const fn new() -> Timings {
        Timings(Mutex::new(BTreeMap::new()))
    }

    /// Times `iters` runs of `run` between two device syncs and records them under `key`.
    pub fn timed(&self, key: Key, iters: u64, mut run: impl FnMut(), sync: impl Fn()) -> Duration {
        sync();
        let start = Instant::now();
        for _ in 0..iters {
            run();
        }
        sync();
        let elapsed = start.elapsed();
        let mut t = self.0.lock().unwrap();
        let e = t.entry(key).or_default();
        e.0 += iters;
        e.1 += elapsed;
        elapsed
    }

    /// Mean seconds per call under `key` (NaN if never timed).
    pub fn seconds(&self, key: Key) -> f64 {
        self.0.lock().unwrap().get(&key).map_or(f64::NAN, |&(n, d)| d.as_secs_f64() / n as f64)
    }
}

impl Default for Timings {
    fn default() -> Self {
        Timings::new()
    }
}

/// Both sides of one pass: each run once untimed (compilation, tuning), then timed by criterion as
/// `{group}/dynlab` and `{group}/burn`.
#[allow(clippy::too_many_arguments)]
pub fn bench_pair(
    c: &mut Criterion,
    timings: &Timings,
    group: &str,
    index: usize,
    pass: &'static str,
    ours: &dyn Fn(),
    burn: &dyn Fn(),
    (device, burn_device): (&Device, &BurnDevice),
) {
    let mut group = c.benchmark_group(group);
    group.sample_size(10).warm_up_time(Duration::from_millis(200)).measurement_time(Duration::from_secs(2));
    ours();
    burn();
    let dsync = || device.sync().unwrap();
    let bsync = || burn_device.sync().unwrap();
    group.bench_function(BenchmarkId::from_parameter("dynlab"), |b| {
        b.iter_custom(|iters| timings.timed((index, pass, "dynlab"), iters, ours, dsync))
    });
    group.bench_function(BenchmarkId::from_parameter("burn"), |b| {
        b.iter_custom(|iters| timings.timed((index, pass, "burn"), iters, burn, bsync))
    });
    group.finish();
}

/// Writes `csv` to `benches/results/<prefix>{name}` (temp file + rename), the prefix from
/// `DYNLAB_BENCH_RESULTS` (empty by default; `scripts/gpu-check.sh` sets `gpu-`). Returns the file
/// name written.
pub fn write_csv(name: &str, csv: &str) -> std::io::Result<String> {
    let file = format!("{}{name}", std::env::var("DYNLAB_BENCH_RESULTS").unwrap_or_default());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../results");
    std::fs::create_dir_all(&dir)?;
    let tmp = dir.join(format!("{file}.tmp"));
    std::fs::File::create(&tmp)?.write_all(csv.as_bytes())?;
    std::fs::rename(&tmp, dir.join(&file))?;
    Ok(file)
}

/// [`write_csv`], then says so, naming dynlab's device.
pub fn write_result(name: &str, csv: &str, device: &Device) -> std::io::Result<()> {
    let file = write_csv(name, csv)?;
    println!("wrote benches/results/{file} ({})", device.name());
    Ok(())
}

/// The default dynlab device and Burn's wgpu default device (with Burn's autodiff when a bench
/// times backward passes), criterion from the command line; runs `bench`, then `report`.
pub fn run(
    autodiff: bool,
    bench: impl FnOnce(&mut Criterion, &Device, &BurnDevice),
    report: impl FnOnce(&Device) -> std::io::Result<()>,
) {
    let device = Device::default().expect("a compute device");
    let plain = BurnDevice::wgpu(DeviceKind::DefaultDevice);
    let burn_device = if autodiff { plain.autodiff() } else { plain };
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion, &device, &burn_device);
    criterion.final_summary();
    report(&device).expect("writing the results table");
}
