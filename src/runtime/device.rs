//! The wgpu device: instance (honouring `WGPU_BACKEND` and the other `WGPU_*`
//! variables), adapter choice by name, device and queue, and a cache of compute
//! pipelines keyed by their WGSL text.
//!
//! Pipeline layouts are derived from the shader itself (naga reflection): binding
//! `i` of group 0 is a storage buffer or a uniform buffer as the WGSL declares
//! it, so kernel writers only write WGSL.
//!
//! Storage bindings are all created read-write. A session keeps its tensors in
//! one arena buffer (see `arena`), so a dispatch binds ranges of the same buffer
//! for its inputs and its outputs, and wgpu refuses a buffer used as read-only
//! and as read-write storage in one dispatch (a usage conflict; two read-write
//! uses of one buffer are allowed, and wgpu does not check that writable ranges
//! are disjoint). So kernels keep declaring their inputs `var<storage, read>`,
//! and naga validates that text, which proves the kernel never writes them; the
//! pipeline is then created from the same text with every `var<storage, read>`
//! promoted to `var<storage, read_write>` ([`promote_read_only`]). The
//! promotion changes access qualifiers only, and what it yields is validated too.
//! The cost: drivers cannot use read-only caches for inputs.

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

/// What binding `i` of a shader is, as declared (before promotion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BindingKind {
    ReadOnly,
    ReadWrite,
    Uniform,
}

/// `wgsl` with every read-only storage declaration (`var<storage, read>`, any
/// spacing) made `var<storage, read_write>`; nothing else changes. Shaders are
/// validated as written first, so the promoted bindings are still never written.
pub(crate) fn promote_read_only(wgsl: &str) -> String {
    let mut out = String::with_capacity(wgsl.len() + 64);
    let mut rest = wgsl;
    while let Some(at) = rest.find("var<") {
        let (head, tail) = rest.split_at(at + 4);
        out.push_str(head);
        rest = tail;
        // storage , read >   (WGSL allows blanks between the tokens)
        let mut t = rest.trim_start();
        let ok = (|| {
            t = t.strip_prefix("storage")?.trim_start();
            t = t.strip_prefix(',')?.trim_start();
            t = t.strip_prefix("read")?.trim_start();
            t.strip_prefix('>')
        })();
        if let Some(after) = ok {
            out.push_str("storage, read_write>");
            rest = after;
        }
    }
    out.push_str(rest);
    out
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
        let validate = |module: &naga::Module, text: &str| {
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::all(),
            )
            .validate(module)
            .map(drop)
            .map_err(|e| shader_err(e.emit_to_string(text)))
        };
        validate(&module, wgsl)?;
        let promoted = promote_read_only(wgsl);
        let pmodule = naga::front::wgsl::parse_str(&promoted).map_err(|e| {
            shader_err(format!(
                "after promoting inputs to read_write: {}",
                e.emit_to_string(&promoted)
            ))
        })?;
        validate(&pmodule, &promoted)?;
        if pmodule.global_variables.iter().any(|(_, g)| {
            matches!(g.space, naga::AddressSpace::Storage { access } if !access.contains(naga::StorageAccess::STORE))
        }) {
            return Err(shader_err(
                "a read-only storage binding is left after promotion to read_write".into(),
            ));
        }
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
                        // Promoted: see the module docs.
                        BindingKind::ReadOnly | BindingKind::ReadWrite => {
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
                source: wgpu::ShaderSource::Wgsl(promoted.as_str().into()),
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

#[cfg(test)]
mod tests {
    use super::promote_read_only;

    #[test]
    fn promotes_read_only_storage_only() {
        let src = "@group(0) @binding(0) var<storage, read> x: array<f32>;\n\
                   @group(0) @binding(1) var< storage ,read > b: array<f32>;\n\
                   @group(0) @binding(2) var<storage, read_write> y: array<f32>;\n\
                   @group(0) @binding(3) var<uniform> p: P;\n\
                   var<workgroup> tile: array<f32, 64>;\n\
                   var<private> read_only_var: f32;";
        let out = promote_read_only(src);
        assert_eq!(out.matches("var<storage, read_write>").count(), 3, "{out}");
        assert!(!out.contains("read>"), "{out}");
        assert!(out.contains("var<uniform> p"), "{out}");
        assert!(out.contains("var<workgroup> tile"), "{out}");
        assert!(out.contains("var<private> read_only_var"), "{out}");
        assert_eq!(promote_read_only("no vars"), "no vars");
    }
}
