//! The wgpu adapters of this machine under the names dynlab selects them by, so that a device that
//! cannot be opened is reported with what does exist. The numbering follows cubecl's: the `N`-th
//! adapter of a type (discrete, integrated) in the order wgpu enumerates them.

use cubecl::wgpu::{AutoGraphicsApi, GraphicsApi};
use std::fmt;

/// The kinds of adapter dynlab names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Discrete,
    Integrated,
    Cpu,
    /// Virtual or unknown: selectable only as the default adapter.
    Other,
}

/// One adapter: its kind, its index among adapters of that kind, and what wgpu calls it.
#[derive(Clone, Debug)]
pub(crate) struct Adapter {
    pub kind: Kind,
    pub index: usize,
    pub description: String,
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Discrete => write!(f, "`wgpu:discrete:{}`", self.index)?,
            Kind::Integrated => write!(f, "`wgpu:integrated:{}`", self.index)?,
            Kind::Cpu => write!(f, "`wgpu:cpu`")?,
            Kind::Other => write!(f, "(default only)")?,
        }
        write!(f, " {}", self.description)
    }
}

/// Every adapter wgpu finds for the backend cubecl uses, in enumeration order.
pub(crate) fn list() -> Vec<Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: wgpu::Backends::all(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let backend = AutoGraphicsApi::backend();
    let adapters = cubecl::future::block_on(instance.enumerate_adapters(backend.into()));
    let mut counts = [0usize; 4];
    adapters
        .iter()
        .map(|a| {
            let info = a.get_info();
            let kind = match info.device_type {
                wgpu::DeviceType::DiscreteGpu => Kind::Discrete,
                wgpu::DeviceType::IntegratedGpu => Kind::Integrated,
                wgpu::DeviceType::Cpu => Kind::Cpu,
                wgpu::DeviceType::VirtualGpu | wgpu::DeviceType::Other => Kind::Other,
            };
            let slot = &mut counts[kind as usize];
            *slot += 1;
            Adapter {
                kind,
                index: *slot - 1,
                description: format!("({}, {:?})", info.name, info.backend),
            }
        })
        .collect()
}

/// The listing as one line for an error message.
pub(crate) fn describe(adapters: &[Adapter]) -> String {
    let names: Vec<String> = adapters.iter().map(Adapter::to_string).collect();
    names.join(", ")
}
