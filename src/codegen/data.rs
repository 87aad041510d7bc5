//! Kernels of data movement: strided copies (`data/copy.rs`: Transpose, Slice,
//! Expand, Tile, Concat, Split, DepthToSpace, SpaceToDepth), indexed reads
//! (`data/gather.rs`: Gather, GatherElements), Pad (`data/pad.rs`) and generated
//! values (`data/fill.rs`: Range, ConstantOfShape, Shape, Size, Trilu), over the
//! templates `kernels/data_*.wgsl`. Semantics are the interpreter's
//! (`ops/shape.rs`, `ops/gather.rs`). Inputs that choose the kernel (starts,
//! repeats, pads, axes ...) must be constants; otherwise the node falls back to
//! the CPU with the reason.

use super::spec::{Lowering, NodeInfo};

mod copy;
mod fill;
mod gather;
mod pad;
mod resize;

pub(crate) fn lower(info: &NodeInfo) -> Option<Lowering> {
    copy::lower(info)
        .or_else(|| gather::lower(info))
        .or_else(|| pad::lower(info))
        .or_else(|| fill::lower(info))
        .or_else(|| resize::lower(info))
}
