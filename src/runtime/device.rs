//! The wgpu device: instance (honouring `WGPU_BACKEND` and the other `WGPU_*`
//! variables), adapter choice by name, device and queue, and a cache of compute
//! pipelines keyed by their WGSL text.
//!
//! Pipeline layouts are derived from the shader itself (naga reflection): binding
//! `i` of group 0 is a read-only storage buffer, a read-write one or a uniform
//! buffer exactly as the WGSL declares it, so kernel writers only write WGSL.

use super::RuntimeError;
use crate::codegen::spec::DeviceLimits;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How to pick the device.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// A substring of the adapter's name (case-insensitive); `None`: the
    /// `WGPU_ADAPTER_NAME` variable when set, else wgpu's preferred adapter.
    pub adapter: Option<String>,
}

/// What binding `i` of a shader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindingKind {
    ReadOnly,
    ReadWrite,
    Uniform,
}

/// A compiled compute pipeline and the bindings its shader declares.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// (binding index, kind), sorted by index.
    pub bindings: Vec<(u32, BindingKind)>,
}

/// A GPU: adapter, device, queue and compiled pipelines.
pub struct Gpu {
    adapter: wgpu::Adapter,
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pipelines: Mutex<HashMap<String, Arc<Pipeline>>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({})", self.adapter_name())
    }
}

fn adapter_label(a: &wgpu::Adapter) -> String {
    let i = a.get_info();
    format!("{} ({:?}, {:?})", i.name, i.backend, i.device_type)
}

impl Gpu {
    /// Opens a device. No adapter, or none matching the wanted name, is an error
    /// listing what there is.
    pub fn new(opts: &GpuOptions) -> Result<Gpu, RuntimeError> {
        // The primary backends (Vulkan, Metal, DX12) unless WGPU_BACKEND says
        // otherwise: probing GL too makes libEGL print errors on machines without
        // a display, and every primary backend serves compute better.
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        if wgpu::Backends::from_env().is_none() {
            desc.backends = wgpu::Backends::PRIMARY;
        }
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let wanted = opts.adapter.clone().or_else(|| {
            std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.is_empty())
        });
        let adapter = match wanted {
            Some(name) => {
                let all = pollster::block_on(instance.enumerate_adapters(backends));
                let needle = name.to_lowercase();
                let available: Vec<String> = all.iter().map(adapter_label).collect();
                all.into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&needle))
                    .ok_or(RuntimeError::NoMatchingAdapter { name, available })?
            }
            None => pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            }))
            .map_err(|e| RuntimeError::NoAdapter(e.to_string()))?,
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("modc"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .map_err(|e| RuntimeError::Device(format!("{}: {e}", adapter_label(&adapter))))?;
        Ok(Gpu {
            adapter,
            device,
            queue,
            pipelines: Mutex::new(HashMap::new()),
        })
    }

    /// The adapter's name, backend and type, e.g. `llvmpipe (LLVM 19.1.7, 256 bits) (Vulkan, Cpu)`.
    pub fn adapter_name(&self) -> String {
        adapter_label(&self.adapter)
    }

    /// The limits kernels must respect on this device.
    pub fn limits(&self) -> DeviceLimits {
        let l = self.device.limits();
        DeviceLimits {
            max_workgroups_per_dim: l.max_compute_workgroups_per_dimension,
            max_storage_binding: l.max_storage_buffer_binding_size,
            max_invocations: l.max_compute_invocations_per_workgroup,
            max_workgroup_storage: l.max_compute_workgroup_storage_size,
        }
    }

    /// Alignment of storage binding offsets (256 on most devices).
    pub fn storage_offset_alignment(&self) -> u64 {
        self.device.limits().min_storage_buffer_offset_alignment as u64
    }

    /// Largest single buffer.
    pub fn max_buffer_size(&self) -> u64 {
        self.device.limits().max_buffer_size
    }

    /// Number of distinct pipelines compiled so far.
    pub fn pipeline_count(&self) -> usize {
        self.pipelines.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The pipeline of a shader, compiled on first use. Errors name the kernel.
    pub(crate) fn pipeline(&self, label: &str, wgsl: &str) -> Result<Arc<Pipeline>, RuntimeError> {
        if let Some(p) = self
            .pipelines
            .lock()
            .ok()
            .and_then(|m| m.get(wgsl).cloned())
        {
            return Ok(p);
        }
        let p = Arc::new(self.compile(label, wgsl)?);
        if let Ok(mut m) = self.pipelines.lock() {
            m.insert(wgsl.to_string(), p.clone());
        }
        Ok(p)
    }

    fn compile(&self, label: &str, wgsl: &str) -> Result<Pipeline, RuntimeError> {
        let shader_err = |message: String| RuntimeError::Shader {
            label: label.to_string(),
            message,
        };
        let module =
            naga::front::wgsl::parse_str(wgsl).map_err(|e| shader_err(e.emit_to_string(wgsl)))?;
        naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| shader_err(e.emit_to_string(wgsl)))?;
        let mut bindings = Vec::new();
        for (_, g) in module.global_variables.iter() {
            let Some(b) = &g.binding else { continue };
            if b.group != 0 {
                return Err(shader_err(format!(
                    "binding {} is in group {}; kernels use group 0 only",
                    b.binding, b.group
                )));
            }
            let kind = match g.space {
                naga::AddressSpace::Uniform => BindingKind::Uniform,
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        BindingKind::ReadWrite
                    } else {
                        BindingKind::ReadOnly
                    }
                }
                s => {
                    return Err(shader_err(format!(
                        "binding {}: address space {s:?} is not supported",
                        b.binding
                    )))
                }
            };
            bindings.push((b.binding, kind));
        }
        bindings.sort_by_key(|b| b.0);
        let entries: Vec<wgpu::BindGroupLayoutEntry> = bindings
            .iter()
            .map(|&(binding, kind)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match kind {
                        BindingKind::Uniform => wgpu::BufferBindingType::Uniform,
                        BindingKind::ReadOnly => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        BindingKind::ReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(label),
                entries: &entries,
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let shader = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(label),
                source: wgpu::ShaderSource::Wgsl(wgsl.into()),
            });
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(label),
                layout: Some(&pipeline_layout),
                module: &shader,
                entry_point: Some("main"),
                compilation_options: Default::default(),
                cache: None,
            });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(shader_err(e.to_string()));
        }
        Ok(Pipeline {
            pipeline,
            layout,
            bindings,
        })
    }
}
