//! Running the dispatches of one node on device buffers: bind groups from the
//! shader's declared bindings, uniform parameters, encoding, upload and read-back.

use super::device::{BindingKind, Gpu};
use super::transfer::{from_words, to_words};
use super::RuntimeError;
use crate::codegen::spec::{Dispatch, NodeKernels, Slot, TensorDesc};
use crate::interp::value::TensorValue;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// A tensor on the device: a range of a buffer (offset aligned to the device's
/// storage offset alignment; size in bytes, at least 4).
#[derive(Clone, Debug)]
pub(crate) struct DeviceTensor {
    pub buffer: Arc<wgpu::Buffer>,
    pub offset: u64,
    pub size: u64,
}

impl DeviceTensor {
    fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.size),
        })
    }
}

/// Bytes a tensor of `n` elements occupies on the device (never 0: wgpu cannot
/// bind an empty range).
pub(crate) fn device_bytes(n: usize) -> u64 {
    (4 * n as u64).max(4)
}

/// Work to encode: a prepared dispatch, or a copy between two tensors in
/// different buffers.
pub(crate) enum Encoded<'p> {
    Dispatch(&'p Prepared),
    Copy {
        from: DeviceTensor,
        to: DeviceTensor,
        bytes: u64,
    },
}

/// A dispatch ready to encode: pipeline, bind group (its tensors and uniform
/// parameters bound), workgroups.
pub(crate) struct Prepared {
    pub label: String,
    pub pipeline: Arc<super::device::Pipeline>,
    pub bind_group: wgpu::BindGroup,
    pub workgroups: [u32; 3],
    /// Keeps the uniform buffer alive.
    _params: Option<wgpu::Buffer>,
}

impl Gpu {
    /// A storage buffer of at least `bytes` bytes (rounded up to 4).
    pub(crate) fn storage_buffer(
        &self,
        label: &str,
        bytes: u64,
    ) -> Result<DeviceTensor, RuntimeError> {
        let size = bytes.max(4).div_ceil(4) * 4;
        if size > self.max_buffer_size() {
            return Err(RuntimeError::Tensor {
                name: label.to_string(),
                message: format!(
                    "{size} bytes exceed the device's largest buffer ({} bytes)",
                    self.max_buffer_size()
                ),
            });
        }
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(DeviceTensor {
            buffer: Arc::new(buffer),
            offset: 0,
            size,
        })
    }

    /// Uploads a host tensor into a new buffer.
    pub(crate) fn upload(&self, name: &str, t: &TensorValue) -> Result<DeviceTensor, RuntimeError> {
        let d = self.storage_buffer(name, device_bytes(t.len()))?;
        self.write(name, &d, t)?;
        Ok(d)
    }

    /// Writes a host tensor into an existing device tensor.
    pub(crate) fn write(
        &self,
        name: &str,
        d: &DeviceTensor,
        t: &TensorValue,
    ) -> Result<(), RuntimeError> {
        let words = to_words(name, t)?;
        if words.is_empty() {
            return Ok(());
        }
        if 4 * words.len() as u64 > d.size {
            return Err(RuntimeError::Tensor {
                name: name.to_string(),
                message: format!(
                    "{} elements do not fit its {} device bytes",
                    words.len(),
                    d.size
                ),
            });
        }
        self.queue
            .write_buffer(&d.buffer, d.offset, bytemuck::cast_slice(&words));
        Ok(())
    }

    /// Reads device tensors back (one copy, one map), converting to each desc.
    pub(crate) fn download(
        &self,
        tensors: &[(&str, &DeviceTensor, &TensorDesc)],
    ) -> Result<Vec<TensorValue>, RuntimeError> {
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut total = 0u64;
        for (_, _, desc) in tensors {
            offsets.push(total);
            total += 4 * desc.len() as u64;
        }
        if total == 0 {
            return tensors
                .iter()
                .map(|(n, _, d)| from_words(n, d, &[]))
                .collect();
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("modc-readback"),
            size: total,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        for ((_, d, desc), &off) in tensors.iter().zip(&offsets) {
            let bytes = 4 * desc.len() as u64;
            if bytes > 0 {
                enc.copy_buffer_to_buffer(&d.buffer, d.offset, &staging, off, bytes);
            }
        }
        self.queue.submit([enc.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| RuntimeError::Device(format!("read-back: {e}")))?
            .map_err(|e| RuntimeError::Device(format!("read-back: {e}")))?;
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| RuntimeError::Device(format!("read-back: {e}")))?;
        let words: &[u32] = bytemuck::cast_slice(&view);
        let mut out = Vec::with_capacity(tensors.len());
        for ((name, _, desc), &off) in tensors.iter().zip(&offsets) {
            let start = (off / 4) as usize;
            out.push(from_words(name, desc, &words[start..start + desc.len()])?);
        }
        drop(view);
        staging.unmap();
        Ok(out)
    }

    /// Waits until the queue is idle.
    pub(crate) fn wait(&self) -> Result<(), RuntimeError> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| RuntimeError::Device(format!("waiting for the device: {e}")))
    }

    /// Compiles a dispatch and binds its slots; `slot` maps a slot to its tensor.
    pub(crate) fn prepare(
        &self,
        d: &Dispatch,
        slot: &dyn Fn(Slot) -> Option<DeviceTensor>,
    ) -> Result<Prepared, RuntimeError> {
        let err = |message: String| RuntimeError::Dispatch {
            label: d.label.clone(),
            message,
        };
        let pipeline = self.pipeline(&d.label, &d.wgsl)?;
        let params = if d.params.is_empty() {
            None
        } else {
            // Uniform buffers need 16-byte sizes.
            let mut words = d.params.clone();
            words.resize(words.len().div_ceil(4) * 4, 0);
            Some(
                self.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some(&d.label),
                        contents: bytemuck::cast_slice(&words),
                        usage: wgpu::BufferUsages::UNIFORM,
                    }),
            )
        };
        let mut tensors: Vec<(u32, DeviceTensor)> = Vec::new();
        for &(b, kind) in &pipeline.bindings {
            let i = b as usize;
            if i < d.slots.len() {
                if kind == BindingKind::Uniform {
                    return Err(err(format!(
                        "binding {b} is a uniform but slot {:?} is a tensor",
                        d.slots[i]
                    )));
                }
                let s = d.slots[i];
                let t = slot(s.base())
                    .ok_or_else(|| err(format!("binding {b}: slot {s:?} has no tensor")))?;
                let t = match s.range() {
                    None => t,
                    Some(r) => {
                        if r.offset % 256 != 0 || r.size == 0 || r.offset + r.size > t.size {
                            return Err(err(format!(
                                "binding {b}: slot {s:?} is not an aligned part of its {} bytes",
                                t.size
                            )));
                        }
                        DeviceTensor {
                            buffer: t.buffer.clone(),
                            offset: t.offset + r.offset,
                            size: r.size,
                        }
                    }
                };
                tensors.push((b, t));
            } else if i == d.slots.len() && kind == BindingKind::Uniform {
                if params.is_none() {
                    return Err(err(format!(
                        "binding {b} is the parameter uniform but the dispatch has no params"
                    )));
                }
            } else {
                return Err(err(format!(
                    "binding {b} has no slot ({} slots)",
                    d.slots.len()
                )));
            }
        }
        let mut entries: Vec<wgpu::BindGroupEntry> = tensors
            .iter()
            .map(|(b, t)| wgpu::BindGroupEntry {
                binding: *b,
                resource: t.binding(),
            })
            .collect();
        if let Some(p) = &params {
            if pipeline
                .bindings
                .iter()
                .any(|&(b, _)| b as usize == d.slots.len())
            {
                entries.push(wgpu::BindGroupEntry {
                    binding: d.slots.len() as u32,
                    resource: p.as_entire_binding(),
                });
            }
        }
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&d.label),
            layout: &pipeline.layout,
            entries: &entries,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(err(e.to_string()));
        }
        Ok(Prepared {
            label: d.label.clone(),
            pipeline,
            bind_group,
            workgroups: d.workgroups,
            _params: params,
        })
    }

    /// Encodes the work in order and submits it: consecutive dispatches share
    /// one compute pass, where wgpu puts a barrier between two dispatches that
    /// use a buffer read-write (every storage binding is, see `device`), so
    /// each dispatch sees the previous one's writes; a copy ends the pass.
    /// Validation errors name the kernels.
    pub(crate) fn submit(&self, work: &[Encoded]) -> Result<(), RuntimeError> {
        let scope = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("modc"),
            });
        let mut i = 0;
        while i < work.len() {
            if let Encoded::Copy { from, to, bytes } = &work[i] {
                if *bytes > 0 {
                    enc.copy_buffer_to_buffer(
                        &from.buffer,
                        from.offset,
                        &to.buffer,
                        to.offset,
                        *bytes,
                    );
                }
                i += 1;
                continue;
            }
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("modc-dispatches"),
                timestamp_writes: None,
            });
            while let Some(Encoded::Dispatch(p)) = work.get(i) {
                i += 1;
                let [x, y, z] = p.workgroups;
                if x == 0 || y == 0 || z == 0 {
                    continue;
                }
                pass.set_pipeline(&p.pipeline.pipeline);
                pass.set_bind_group(0, &p.bind_group, &[]);
                pass.dispatch_workgroups(x, y, z);
            }
        }
        self.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            let labels: Vec<&str> = work
                .iter()
                .map(|w| match w {
                    Encoded::Dispatch(p) => p.label.as_str(),
                    Encoded::Copy { .. } => "copy",
                })
                .collect();
            return Err(RuntimeError::Dispatch {
                label: labels.join(", "),
                message: e.to_string(),
            });
        }
        Ok(())
    }

    fn check_workgroups(&self, k: &NodeKernels) -> Result<(), RuntimeError> {
        let max = self.limits().max_workgroups_per_dim;
        for d in &k.dispatches {
            if d.workgroups.iter().any(|&w| w > max) {
                return Err(RuntimeError::Dispatch {
                    label: d.label.clone(),
                    message: format!(
                        "workgroups {:?} exceed the device's {max} per dimension",
                        d.workgroups
                    ),
                });
            }
        }
        Ok(())
    }

    /// Uploads the inputs and allocates outputs and temps for one node's kernels.
    fn node_buffers(
        &self,
        k: &NodeKernels,
        inputs: &[Option<TensorValue>],
        outputs: &[TensorDesc],
    ) -> Result<NodeBuffers, RuntimeError> {
        self.check_workgroups(k)?;
        // Inputs no dispatch binds (read at lowering) are not uploaded.
        let bound = |i: usize| {
            k.dispatches
                .iter()
                .any(|d| d.slots.iter().any(|s| s.base() == Slot::Input(i)))
        };
        let ins = inputs
            .iter()
            .enumerate()
            .map(|(i, t)| {
                t.as_ref()
                    .filter(|_| bound(i))
                    .map(|t| self.upload(&format!("input {i}"), t))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outs = outputs
            .iter()
            .enumerate()
            .map(|(i, o)| self.storage_buffer(&format!("output {i}"), device_bytes(o.len())))
            .collect::<Result<Vec<_>, _>>()?;
        let temps = k
            .temps
            .iter()
            .enumerate()
            .map(|(i, &b)| self.storage_buffer(&format!("temp {i}"), b))
            .collect::<Result<Vec<_>, _>>()?;
        let bufs = NodeBuffers {
            ins,
            outs,
            temps,
            prepared: vec![],
        };
        let prepared = k
            .dispatches
            .iter()
            .map(|d| self.prepare(d, &|s| bufs.slot(s)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NodeBuffers { prepared, ..bufs })
    }

    /// Runs kernels on host inputs and reads the outputs back.
    pub fn run_kernels(
        &self,
        k: &NodeKernels,
        inputs: &[Option<TensorValue>],
        outputs: &[TensorDesc],
    ) -> Result<Vec<TensorValue>, RuntimeError> {
        if outputs.iter().all(|o| o.is_empty()) {
            return outputs
                .iter()
                .enumerate()
                .map(|(i, o)| from_words(&format!("output {i}"), o, &[]))
                .collect();
        }
        let b = self.node_buffers(k, inputs, outputs)?;
        self.submit(&b.prepared.iter().map(Encoded::Dispatch).collect::<Vec<_>>())?;
        let names: Vec<String> = (0..outputs.len()).map(|i| format!("output {i}")).collect();
        let list: Vec<(&str, &DeviceTensor, &TensorDesc)> = names
            .iter()
            .zip(&b.outs)
            .zip(outputs)
            .map(|((n, d), o)| (n.as_str(), d, o))
            .collect();
        self.download(&list)
    }

    /// Runs kernels `reps` times after one warm-up (inputs uploaded once) and
    /// returns the median wall time of one run, waiting for the device each time.
    pub fn time_kernels(
        &self,
        k: &NodeKernels,
        inputs: &[Option<TensorValue>],
        outputs: &[TensorDesc],
        reps: usize,
    ) -> Result<std::time::Duration, RuntimeError> {
        let b = self.node_buffers(k, inputs, outputs)?;
        let all: Vec<Encoded> = b.prepared.iter().map(Encoded::Dispatch).collect();
        self.submit(&all)?;
        self.wait()?;
        let mut times = Vec::with_capacity(reps.max(1));
        for _ in 0..reps.max(1) {
            let t0 = std::time::Instant::now();
            self.submit(&all)?;
            self.wait()?;
            times.push(t0.elapsed());
        }
        times.sort();
        Ok(times[times.len() / 2])
    }
}

#[derive(Default)]
struct NodeBuffers {
    ins: Vec<Option<DeviceTensor>>,
    outs: Vec<DeviceTensor>,
    temps: Vec<DeviceTensor>,
    prepared: Vec<Prepared>,
}

impl NodeBuffers {
    fn slot(&self, s: Slot) -> Option<DeviceTensor> {
        match s {
            Slot::Input(i) => self.ins.get(i)?.clone(),
            Slot::Output(i) => self.outs.get(i).cloned(),
            Slot::Temp(i) => self.temps.get(i).cloned(),
            Slot::InputRange(..) | Slot::OutputRange(..) => None,
        }
    }
}
