//! The contract between code generation and the runtime: what a node lowers to.
//!
//! A node with concrete input and output shapes lowers to zero or more compute
//! dispatches ([`Dispatch`]), to an alias of its first input (a view op: the output
//! is the same bytes with another shape), or is unsupported (the runtime runs it on
//! the CPU interpreter and the plan reports the fallback).
//!
//! On the device every tensor is stored with a 32-bit element ([`Storage`]):
//! `f32` as `f32`; `int32`, and `int64` whose values fit in 32 bits, as `i32`;
//! `bool` and `uint8` as `u32` (one element per word). Other element types have no
//! kernels and fall back to the CPU.

use crate::interp::value::TensorValue;
use crate::ir::dtype::DType;
use crate::ir::graph::Node;

/// The WGSL element type a tensor is stored as on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    F32,
    I32,
    U32,
}

impl Storage {
    /// The storage of an ONNX element type, `None` where the device has none.
    pub fn of(dtype: DType) -> Option<Storage> {
        match dtype {
            DType::F32 => Some(Storage::F32),
            DType::I32 | DType::I64 => Some(Storage::I32),
            DType::Bool | DType::U8 => Some(Storage::U32),
            _ => None,
        }
    }

    /// The WGSL scalar type name.
    pub fn wgsl(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::I32 => "i32",
            Storage::U32 => "u32",
        }
    }
}

/// A tensor with a concrete shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorDesc {
    pub fn new(dtype: DType, shape: &[usize]) -> TensorDesc {
        TensorDesc {
            dtype,
            shape: shape.to_vec(),
        }
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Bytes on the device (4 per element, see [`Storage`]).
    pub fn device_bytes(&self) -> u64 {
        4 * self.len() as u64
    }
}

/// Limits of the device the kernels must respect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Workgroups per dispatch dimension (65,535 on lavapipe and most GPUs).
    pub max_workgroups_per_dim: u32,
    /// Largest storage buffer binding in bytes (128 MiB on lavapipe).
    pub max_storage_binding: u64,
    /// Invocations per workgroup.
    pub max_invocations: u32,
    /// Workgroup (shared) memory in bytes.
    pub max_workgroup_storage: u32,
}

impl Default for DeviceLimits {
    fn default() -> Self {
        DeviceLimits {
            max_workgroups_per_dim: 65_535,
            max_storage_binding: 128 << 20,
            max_invocations: 256,
            max_workgroup_storage: 16 << 10,
        }
    }
}

/// Bytes `[offset, offset + size)` of a tensor's device storage. `offset` is a
/// multiple of 256 (the storage offset alignment of every wgpu device) and
/// `size` a multiple of 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ByteRange {
    pub offset: u64,
    pub size: u64,
}

/// What a binding of a dispatch refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The node's input `k` (read-only storage buffer).
    Input(usize),
    /// The node's output `k` (read-write storage buffer).
    Output(usize),
    /// Scratch buffer `k` of [`NodeKernels::temps`] (read-write).
    Temp(usize),
    /// A part of input `k` (read-only): how a tensor larger than one storage
    /// binding ([`DeviceLimits::max_storage_binding`]) is tiled.
    InputRange(usize, ByteRange),
    /// A part of output `k` (read-write).
    OutputRange(usize, ByteRange),
}

impl Slot {
    /// The whole tensor this slot binds (a part of, for the range slots).
    pub fn base(self) -> Slot {
        match self {
            Slot::InputRange(i, _) => Slot::Input(i),
            Slot::OutputRange(i, _) => Slot::Output(i),
            s => s,
        }
    }

    /// The part of the tensor bound, `None` for the whole tensor.
    pub fn range(self) -> Option<ByteRange> {
        match self {
            Slot::InputRange(_, r) | Slot::OutputRange(_, r) => Some(r),
            _ => None,
        }
    }

    /// Whether the slot is (part of) a node input, bound read-only.
    pub fn is_input(self) -> bool {
        matches!(self, Slot::Input(_) | Slot::InputRange(..))
    }
}

/// One compute dispatch. The shader's entry point is `main`; binding `i` of group 0
/// is `slots[i]`; when `params` is not empty it is a uniform buffer of u32 words at
/// binding `slots.len()` (f32 parameters travel as their bits).
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// Names the kernel in reports and errors (e.g. `matmul_tiled_4x4`).
    pub label: String,
    pub wgsl: String,
    pub slots: Vec<Slot>,
    pub params: Vec<u32>,
    pub workgroups: [u32; 3],
}

/// The dispatches of one node, run in order, and the scratch buffers they share.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NodeKernels {
    pub dispatches: Vec<Dispatch>,
    /// Sizes in bytes of the scratch buffers.
    pub temps: Vec<u64>,
}

/// What code generation knows about a node.
pub struct NodeInfo<'a> {
    pub node: &'a Node,
    /// The opset version of the node's domain.
    pub opset: i64,
    /// `None` for an absent optional input.
    pub inputs: Vec<Option<TensorDesc>>,
    pub outputs: Vec<TensorDesc>,
    /// The values of inputs that are constants (initializers), where known.
    pub consts: Vec<Option<&'a TensorValue>>,
    pub limits: DeviceLimits,
}

/// The result of lowering a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Lowering {
    Kernels(NodeKernels),
    /// Output 0 is input 0's bytes with the output's shape (Reshape, Flatten,
    /// Squeeze, Unsqueeze, Identity).
    Alias,
    /// No kernel: the reason, reported with the CPU fallback.
    Unsupported(String),
}
