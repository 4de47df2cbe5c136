//! The step benches' kernel profile: the kernels that took the most device time per step.

/// Prints the ten kernels of `stats` with the most device time, per step of `steps`.
pub fn print_top_kernels(stats: &dynlab::DeviceStats, steps: usize) {
    let mut times: Vec<_> = stats.kernel_seconds.iter().collect();
    times.sort_by(|a, b| b.1.total_cmp(a.1));
    for (kernel, seconds) in times.iter().take(10) {
        let launches = stats.kernels.get(*kernel).copied().unwrap_or(0) as f64 / steps as f64;
        println!(
            "    {kernel:<40} {:>8.2} ms/step {launches:>6.1} launches/step",
            **seconds * 1e3 / steps as f64
        );
    }
}
