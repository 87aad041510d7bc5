//! WGSL generation: kernel templates from `kernels/*.wgsl`, and a small typed
//! builder for fused elementwise chains. [`lower`] turns one node with concrete
//! shapes into the dispatches that compute it (see [`spec`]).

pub mod spec;
pub mod validate;

mod builder;
mod data;
mod elementwise;
mod linalg;
mod nn;
mod tile;

pub use linalg::matmul::{matmul_kernels, MatmulKernel, TileConfig};
pub use spec::{
    DeviceLimits, Dispatch, Lowering, NodeInfo, NodeKernels, Slot, Storage, TensorDesc,
};

/// Lowers a node: the first generator family that knows the op answers.
pub fn lower(info: &NodeInfo) -> Lowering {
    if info.outputs.iter().any(|o| Storage::of(o.dtype).is_none()) {
        return Lowering::Unsupported("an output's element type has no device storage".into());
    }
    if info
        .inputs
        .iter()
        .flatten()
        .any(|i| Storage::of(i.dtype).is_none())
    {
        return Lowering::Unsupported("an input's element type has no device storage".into());
    }
    elementwise::lower(info)
        .or_else(|| linalg::lower(info))
        .or_else(|| nn::lower(info))
        .or_else(|| data::lower(info))
        .unwrap_or_else(|| {
            Lowering::Unsupported(format!("no WGSL kernel for {}", info.node.op_type))
        })
}
