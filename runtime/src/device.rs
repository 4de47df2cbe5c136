//! Devices. One `Device` value (cheap to clone) stands for a compute client of one backend; every
//! tensor op dispatches on it once through [`dispatch!`], so the rest of the runtime is not generic.
//!
//! Selection: [`Device::default`] reads `DYNLAB_DEVICE` ([`crate::settings::device`]) and otherwise
//! takes the best wgpu adapter.
//! Names: `wgpu` (best adapter), `wgpu:cpu` (a software adapter such as Mesa lavapipe),
//! `wgpu:discrete:N`, `wgpu:integrated:N`, `vulkan` and `metal` (wgpu with the SPIR-V or MSL compiler;
//! need the `vulkan`/`metal` features), `cuda` / `cuda:N` (needs the `cuda` feature).

use crate::dtype::DType;
use crate::error::{Error, Result};
use cubecl::prelude::*;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[cfg(not(any(feature = "wgpu", feature = "cuda")))]
compile_error!("dynlab-runtime needs at least one backend feature: `wgpu` (default) or `cuda`");

#[derive(Clone)]
pub(crate) enum Backend {
    #[cfg(feature = "wgpu")]
    Wgpu(ComputeClient<cubecl::wgpu::WgpuRuntime>),
    #[cfg(feature = "cuda")]
    Cuda(ComputeClient<cubecl::cuda::CudaRuntime>),
}

/// Runs `$body` with `$client: &ComputeClient<$R>` for the device's backend.
macro_rules! dispatch {
    ($device:expr, |$client:ident, $R:ident| $body:expr) => {
        match $device.backend() {
            #[cfg(feature = "wgpu")]
            $crate::device::Backend::Wgpu($client) => {
                #[allow(dead_code)]
                type $R = cubecl::wgpu::WgpuRuntime;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::device::Backend::Cuda($client) => {
                #[allow(dead_code)]
                type $R = cubecl::cuda::CudaRuntime;
                $body
            }
        }
    };
}
pub(crate) use dispatch;

/// A compute device: a wgpu adapter (Vulkan, Metal, DX12) or a CUDA GPU.
#[derive(Clone)]
pub struct Device {
    backend: Backend,
    name: String,
    /// A CPU implementation of the API (e.g. Mesa lavapipe): kernels pick CPU-friendly launch shapes.
    cpu: bool,
    limits: DeviceLimits,
    counters: Arc<Counters>,
}

/// What a device has done since it opened or since [`Device::reset_stats`]: the work that bounds
/// small models' steps (each launch costs ~64 µs on Mesa lavapipe, each read-back a full sync).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceStats {
    /// Kernel launches.
    pub launches: u64,
    /// Host synchronisations: read-backs of tensors and explicit [`Device::sync`] calls.
    pub syncs: u64,
    /// Buffers allocated (outputs and uploads).
    pub allocations: u64,
    /// Bytes of those buffers.
    pub bytes_allocated: u64,
    /// Host-to-device uploads ([`crate::Tensor::from_slice`]).
    pub uploads: u64,
    /// Launches per kernel name.
    pub kernels: BTreeMap<&'static str, u64>,
    /// Output buffers per op name (which ops ran).
    pub ops: BTreeMap<&'static str, u64>,
    /// Seconds per kernel name, measured only while [`Device::set_profiling`] is on (each launch
    /// then waits for the device before and after, so the total runs slower).
    pub kernel_seconds: BTreeMap<&'static str, f64>,
}

impl DeviceStats {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &DeviceStats) -> DeviceStats {
        DeviceStats {
            launches: self.launches - earlier.launches,
            syncs: self.syncs - earlier.syncs,
            allocations: self.allocations - earlier.allocations,
            bytes_allocated: self.bytes_allocated - earlier.bytes_allocated,
            uploads: self.uploads - earlier.uploads,
            kernels: grown(&self.kernels, &earlier.kernels),
            ops: grown(&self.ops, &earlier.ops),
            kernel_seconds: grown(&self.kernel_seconds, &earlier.kernel_seconds),
        }
    }
}

/// The entries of `now` that grew since `then`, by how much.
fn grown<T>(
    now: &BTreeMap<&'static str, T>,
    then: &BTreeMap<&'static str, T>,
) -> BTreeMap<&'static str, T>
where
    T: Copy + Default + PartialOrd + std::ops::Sub<Output = T>,
{
    now.iter()
        .map(|(k, &n)| (*k, n - then.get(k).copied().unwrap_or_default()))
        .filter(|&(_, n)| n > T::default())
        .collect()
}

/// The counters behind [`DeviceStats`], shared by every clone of a device.
#[derive(Default)]
struct Counters {
    syncs: AtomicU64,
    bytes_allocated: AtomicU64,
    uploads: AtomicU64,
    kernels: Mutex<BTreeMap<&'static str, u64>>,
    ops: Mutex<BTreeMap<&'static str, u64>>,
    profiling: std::sync::atomic::AtomicBool,
    kernel_seconds: Mutex<BTreeMap<&'static str, f64>>,
}

/// What one device can hold and launch, read from the backend when the device opens. Every
/// allocation and launch is checked against them ([`Error::DeviceLimit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest single buffer in bytes (wgpu: the adapter's largest storage-buffer binding, 128 MiB
    /// on Mesa lavapipe; CUDA: a quarter of the device memory, cubecl's page size).
    pub max_buffer_bytes: u64,
    /// Most cubes per launch along x, y and z.
    pub max_cube_count: [u32; 3],
    /// Most units in one cube.
    pub max_units_per_cube: u32,
    /// Most buffers one kernel may bind (wgpu: the storage buffers per shader stage, less one).
    pub max_bindings: u32,
}

impl DeviceLimits {
    fn of<R: Runtime>(client: &ComputeClient<R>) -> DeviceLimits {
        let props = client.properties();
        let (x, y, z) = props.hardware.max_cube_count;
        DeviceLimits {
            max_buffer_bytes: props.memory.max_page_size,
            max_cube_count: [x, y, z],
            max_units_per_cube: props.hardware.max_units_per_cube,
            max_bindings: props.hardware.max_bindings,
        }
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Device({})", self.name)
    }
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// Points cubecl's compilation cache (kept by its SPIR-V and CUDA compilers) at
/// `<cache dir>/cubecl` when caching is on and neither a `cubecl.toml` nor the program has chosen
/// a place: compiled kernels then survive the process. Runs once, before the first client opens.
fn keep_compiled_kernels() {
    use cubecl::config::{cache::CacheConfig, CubeClRuntimeConfig, RuntimeConfig};
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Some(dir) = crate::settings::cache_dir() else {
            return;
        };
        if CubeClRuntimeConfig::storage().lock().is_some() {
            return;
        }
        let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
        if config.compilation.cache.is_none() {
            config.compilation.cache = Some(CacheConfig::File(dir.join("cubecl")));
        }
        // Set only if nothing read the configuration meanwhile (setting twice panics).
        let _ = std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config));
    });
}

const KNOWN_NAMES: &str =
    "wgpu, wgpu:cpu, wgpu:discrete:N, wgpu:integrated:N, vulkan, metal, cuda, cuda:N";

#[cfg(target_os = "linux")]
const NO_ADAPTER_HELP: &str =
    "no GPU adapter was found; on Linux without a GPU install a software Vulkan driver \
     (`apt-get install mesa-vulkan-drivers libvulkan1`), or install your GPU's Vulkan driver";
#[cfg(not(target_os = "linux"))]
const NO_ADAPTER_HELP: &str =
    "no GPU adapter was found; install a Vulkan, Metal or DX12 capable driver for your GPU";

impl Device {
    /// The device named by `DYNLAB_DEVICE`, or the best wgpu adapter when it is unset.
    #[allow(clippy::should_implement_trait)]
    pub fn default() -> Result<Device> {
        match crate::settings::device() {
            Some(name) => Device::from_name(&name),
            None => Device::from_name("wgpu"),
        }
    }

    /// Parses a device name (see the module docs) and opens that device.
    pub fn from_name(name: &str) -> Result<Device> {
        let lower = name.to_ascii_lowercase();
        let mut parts = lower.split(':');
        let kind = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        match (kind, rest.as_slice()) {
            ("wgpu", []) => Self::open_wgpu(name, WgpuChoice::Best),
            ("wgpu", ["cpu"]) => Self::open_wgpu(name, WgpuChoice::Cpu),
            ("wgpu", ["discrete", i]) => {
                Self::open_wgpu(name, WgpuChoice::Discrete(parse_index(name, i)?))
            }
            ("wgpu", ["integrated", i]) => {
                Self::open_wgpu(name, WgpuChoice::Integrated(parse_index(name, i)?))
            }
            ("vulkan", []) => Self::vulkan(),
            ("metal", []) => Self::metal(),
            ("cuda", []) => Self::cuda(0),
            ("cuda", [i]) => Self::cuda(parse_index(name, i)?),
            _ => Err(Error::NoDevice {
                requested: name.to_string(),
                help: format!("unknown device name; expected one of {KNOWN_NAMES}"),
            }),
        }
    }

    /// The best wgpu adapter.
    pub fn wgpu() -> Result<Device> {
        Self::open_wgpu("wgpu", WgpuChoice::Best)
    }

    /// wgpu on Vulkan with the SPIR-V compiler (feature `vulkan`).
    pub fn vulkan() -> Result<Device> {
        if cfg!(feature = "vulkan") {
            Self::open_wgpu("vulkan", WgpuChoice::Best)
        } else {
            Err(missing_feature("vulkan", "vulkan"))
        }
    }

    /// wgpu on Metal with the MSL compiler (feature `metal`, macOS).
    pub fn metal() -> Result<Device> {
        if cfg!(all(feature = "metal", target_os = "macos")) {
            Self::open_wgpu("metal", WgpuChoice::Best)
        } else {
            Err(missing_feature("metal", "metal (on macOS)"))
        }
    }

    /// CUDA GPU number `index` (feature `cuda`).
    pub fn cuda(index: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            use cubecl::cuda::{CudaDevice, CudaRuntime};
            let requested = format!("cuda:{index}");
            keep_compiled_kernels();
            let client =
                catch_backend_panic(&requested, || CudaRuntime::client(&CudaDevice::new(index)))?;
            Ok(Device {
                limits: DeviceLimits::of(&client),
                counters: Arc::default(),
                backend: Backend::Cuda(client),
                name: requested,
                cpu: false,
            })
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(missing_feature(&format!("cuda:{index}"), "cuda"))
        }
    }

    #[cfg(feature = "wgpu")]
    fn open_wgpu(requested: &str, choice: WgpuChoice) -> Result<Device> {
        use crate::adapters::{self, Kind};
        use cubecl::wgpu::{WgpuDevice, WgpuRuntime};
        keep_compiled_kernels();
        let listed = catch_backend_panic(requested, adapters::list)?;
        if listed.is_empty() {
            return Err(Error::NoDevice {
                requested: requested.to_string(),
                help: NO_ADAPTER_HELP.to_string(),
            });
        }
        let count = |kind: Kind| listed.iter().filter(|a| a.kind == kind).count();
        // cubecl falls back to an adapter of unknown type when none of the asked type exists.
        let (kind, index) = match choice {
            WgpuChoice::Best => (None, 0),
            WgpuChoice::Cpu => (Some(Kind::Cpu), 0),
            WgpuChoice::Discrete(i) => (Some(Kind::Discrete), i),
            WgpuChoice::Integrated(i) => (Some(Kind::Integrated), i),
        };
        if let Some(kind) = kind {
            if index >= count(kind) && index >= count(Kind::Other) {
                return Err(Error::NoDevice {
                    requested: requested.to_string(),
                    help: format!(
                        "this machine has {} such adapter(s); its adapters are {}; set \
                         DYNLAB_DEVICE to one of those names (or leave it unset for the best one)",
                        count(kind),
                        adapters::describe(&listed)
                    ),
                });
            }
        }
        let cpu = match choice {
            WgpuChoice::Cpu => true,
            WgpuChoice::Best => listed.iter().all(|a| a.kind == Kind::Cpu),
            _ => false,
        };
        let device = match choice {
            WgpuChoice::Best => WgpuDevice::DefaultDevice,
            WgpuChoice::Cpu => WgpuDevice::Cpu,
            WgpuChoice::Discrete(i) => WgpuDevice::DiscreteGpu(i),
            WgpuChoice::Integrated(i) => WgpuDevice::IntegratedGpu(i),
        };
        let client = catch_backend_panic(requested, || WgpuRuntime::client(&device))?;
        let name = format!("{requested} ({} {device:?})", WgpuRuntime::name(&client));
        Ok(Device {
            limits: DeviceLimits::of(&client),
            counters: Arc::default(),
            backend: Backend::Wgpu(client),
            name,
            cpu,
        })
    }

    #[cfg(not(feature = "wgpu"))]
    fn open_wgpu(requested: &str, _choice: WgpuChoice) -> Result<Device> {
        Err(missing_feature(requested, "wgpu"))
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// What the device can hold and launch.
    pub fn limits(&self) -> DeviceLimits {
        self.limits
    }

    /// What the device has done since it opened or since the last [`Device::reset_stats`].
    pub fn stats(&self) -> DeviceStats {
        let c = &self.counters;
        let kernels = c.kernels.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ops = c.ops.lock().unwrap_or_else(|e| e.into_inner()).clone();
        DeviceStats {
            launches: kernels.values().sum(),
            syncs: c.syncs.load(Ordering::Relaxed),
            allocations: ops.values().sum(),
            bytes_allocated: c.bytes_allocated.load(Ordering::Relaxed),
            uploads: c.uploads.load(Ordering::Relaxed),
            kernels,
            ops,
            kernel_seconds: c
                .kernel_seconds
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Sets every counter of [`Device::stats`] back to zero.
    pub fn reset_stats(&self) {
        let c = &self.counters;
        for counter in [&c.syncs, &c.bytes_allocated, &c.uploads] {
            counter.store(0, Ordering::Relaxed);
        }
        c.kernels.lock().unwrap_or_else(|e| e.into_inner()).clear();
        c.ops.lock().unwrap_or_else(|e| e.into_inner()).clear();
        c.kernel_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Turns timing every launch on or off (see [`DeviceStats::kernel_seconds`]).
    pub fn set_profiling(&self, on: bool) {
        self.counters.profiling.store(on, Ordering::Relaxed);
    }

    /// Whether launches are being timed.
    pub(crate) fn profiling(&self) -> bool {
        self.counters.profiling.load(Ordering::Relaxed)
    }

    /// Adds `seconds` to `kernel`'s measured time.
    pub(crate) fn add_kernel_time(&self, kernel: &'static str, seconds: f64) {
        let mut times = self
            .counters
            .kernel_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *times.entry(kernel).or_insert(0.0) += seconds;
    }

    /// Counts a launch of `kernel`.
    pub(crate) fn count_launch(&self, kernel: &'static str) {
        let mut kernels = self
            .counters
            .kernels
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *kernels.entry(kernel).or_insert(0) += 1;
    }

    /// Counts a host synchronisation.
    pub(crate) fn count_sync(&self) {
        self.counters.syncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a buffer of `bytes` made by `op` (an upload when `upload`).
    pub(crate) fn count_buffer(&self, op: &'static str, bytes: usize, upload: bool) {
        let c = &self.counters;
        *c.ops
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(op)
            .or_insert(0) += 1;
        c.bytes_allocated.fetch_add(bytes as u64, Ordering::Relaxed);
        if upload {
            c.uploads.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The byte size of a buffer of `elements` values of `dtype`, after checking that the device
    /// stores `dtype` and that the buffer fits its limit; `op` names the caller in errors.
    pub(crate) fn check_buffer(
        &self,
        op: &'static str,
        elements: usize,
        dtype: DType,
    ) -> Result<usize> {
        if !self.supports(dtype) {
            return Err(Error::Device {
                op,
                message: format!("{} cannot store {dtype} tensors", self.name()),
            });
        }
        let bytes = elements.max(1) * dtype.size();
        if bytes as u64 > self.limits.max_buffer_bytes {
            return Err(Error::DeviceLimit {
                op,
                requested: format!("a buffer of {elements} {dtype} values ({bytes} bytes)"),
                limit: format!("{} bytes per buffer", self.limits.max_buffer_bytes),
                device: self.name.clone(),
            });
        }
        Ok(bytes)
    }

    /// Checks that a launch of `count` cubes of `units` units fits the device.
    pub(crate) fn check_launch(&self, op: &'static str, count: [u32; 3], units: u32) -> Result<()> {
        let max = self.limits.max_cube_count;
        let fits = (0..3).all(|d| count[d] <= max[d]) && units <= self.limits.max_units_per_cube;
        if fits {
            return Ok(());
        }
        Err(Error::DeviceLimit {
            op,
            requested: format!("a launch of {count:?} cubes of {units} units"),
            limit: format!(
                "at most {max:?} cubes of {} units",
                self.limits.max_units_per_cube
            ),
            device: self.name.clone(),
        })
    }

    /// Whether the device is a CPU implementation of the graphics API (software Vulkan).
    pub fn is_cpu(&self) -> bool {
        self.cpu
    }

    /// A readable name: the requested name, the compiler and the adapter.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Blocks until every operation submitted to the device has finished.
    pub fn sync(&self) -> Result<()> {
        self.count_sync();
        dispatch!(self, |client, R| {
            cubecl::future::block_on(client.sync()).map_err(|e| Error::Backend {
                op: "Device::sync",
                message: format!("{e:?}"),
            })
        })
    }

    /// Bytes of device memory held by live tensors.
    pub fn memory_in_use(&self) -> Result<u64> {
        dispatch!(self, |client, R| {
            client
                .memory_usage()
                .map(|usage| usage.bytes_in_use)
                .map_err(|e| Error::Backend {
                    op: "Device::memory_in_use",
                    message: format!("{e:?}"),
                })
        })
    }

    /// Whether tensors of `dtype` can be stored on this device.
    pub fn supports(&self, dtype: DType) -> bool {
        use half::{bf16, f16};
        dispatch!(self, |client, R| {
            let props = client.properties();
            match dtype {
                DType::F32 => props.supports_type(f32::as_type_native_unchecked()),
                DType::I32 => props.supports_type(i32::as_type_native_unchecked()),
                DType::F16 => props.supports_type(f16::as_type_native_unchecked()),
                DType::BF16 => props.supports_type(bf16::as_type_native_unchecked()),
            }
        })
    }
}

enum WgpuChoice {
    Best,
    Cpu,
    Discrete(usize),
    Integrated(usize),
}

fn parse_index(name: &str, index: &str) -> Result<usize> {
    index.parse().map_err(|_| Error::NoDevice {
        requested: name.to_string(),
        help: format!("`{index}` is not a device index; expected one of {KNOWN_NAMES}"),
    })
}

fn missing_feature(requested: &str, feature: &str) -> Error {
    Error::NoDevice {
        requested: requested.to_string(),
        help: format!("dynlab was built without this backend; rebuild with `--features {feature}`"),
    }
}

/// Backends report a missing driver by panicking inside device creation; turn that into an error.
fn catch_backend_panic<T>(requested: &str, f: impl FnOnce() -> T) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| {
        let reason = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the backend failed to start".to_string());
        Error::NoDevice {
            requested: requested.to_string(),
            help: format!("{reason}; {NO_ADAPTER_HELP}"),
        }
    })
}
