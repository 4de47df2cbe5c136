//! dynlab's test tooling, shared by every crate's tests and never published:
//! - [`reference`]: f64 host oracles for the runtime's ops (plain loops over row-major data);
//! - [`device`] and [`device_test`]: the device a test runs on, with every kernel output poisoned
//!   with NaN before launch (so an element a kernel skips is caught), and a test per compiled backend;
//! - [`HostRng`], [`random`], [`SHAPES`], [`layouts`]: seeded inputs, the shape cases every
//!   elementwise test covers (empty, scalar, size 1, odd sizes) and layout variants of one tensor
//!   (contiguous, transposed, offset view);
//! - [`assert_close`]: comparison against the oracle with a stated tolerance, NaN never passing;
//! - [`check_gradients`]: a device op's gradient against central differences of its oracle.
//!
//! Tests that need no device (configs, data bookkeeping) do not call [`device`] and run anywhere.

mod cases;
mod gradcheck;
pub mod reference;

pub use cases::{assert_close, host_f64, layouts, random, HostRng, SHAPES};

pub use dynlab_test_macros::device_test;
pub use gradcheck::{check_gradients, check_output_gradients, weighted_sum};

use dynlab_runtime::Device;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Mutex;

thread_local! {
    /// The backend `#[device_test]` chose for the test running on this thread.
    static BACKEND: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The device of the running test, with output poisoning on: the backend of the `#[device_test]`
/// variant that is running (the device `DYNLAB_DEVICE` names when it is of that backend, else the
/// backend's default adapter), or `Device::default()` in a plain `#[test]`. Panics with the reason
/// when the device cannot be opened (a test on a backend is a claim that it runs there).
pub fn device() -> Device {
    let name = device_name();
    static OPEN: Mutex<Option<HashMap<String, Device>>> = Mutex::new(None);
    let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
    let open = open.get_or_insert_with(HashMap::new);
    if let Some(d) = open.get(&name) {
        return d.clone();
    }
    dynlab_runtime::set_poison_outputs(true);
    let d = Device::from_name(&name).unwrap_or_else(|e| panic!("test device `{name}`: {e}"));
    open.insert(name, d.clone());
    d
}

/// A handle of its own to the running test's device, with counters of its own: its
/// [`Device::stats`] count only what the test does on it while other tests run in parallel.
pub fn private_device() -> Device {
    let name = device_name();
    dynlab_runtime::set_poison_outputs(true);
    Device::from_name(&name).unwrap_or_else(|e| panic!("test device `{name}`: {e}"))
}

/// The name of the running test's device (see [`device`]).
fn device_name() -> String {
    let requested = std::env::var("DYNLAB_DEVICE").unwrap_or_default();
    let requested = requested.trim();
    match BACKEND.with(|b| b.borrow().clone()) {
        Some(backend) if backend_of(requested) == backend => requested.to_string(),
        Some(backend) => backend,
        None if requested.is_empty() => "wgpu".to_string(),
        None => requested.to_string(),
    }
}

/// The backend a device name belongs to (`wgpu`, `vulkan` and `metal` are wgpu adapters).
fn backend_of(name: &str) -> &str {
    match name.split(':').next().unwrap_or_default() {
        "wgpu" | "vulkan" | "metal" => "wgpu",
        other => other,
    }
}

/// Runs `test` with [`device`] bound to `backend` (what `#[device_test]` expands to).
pub fn run_on(backend: &str, test: fn()) {
    let previous = BACKEND.with(|b| b.replace(Some(backend.to_string())));
    let restore = Restore(previous);
    test();
    drop(restore);
}

/// Puts the previous backend back even when the test panics.
struct Restore(Option<String>);

impl Drop for Restore {
    fn drop(&mut self) {
        let previous = self.0.take();
        BACKEND.with(|b| *b.borrow_mut() = previous);
    }
}
