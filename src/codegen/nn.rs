//! Kernels of reductions, softmax, normalization and recurrent layers: the
//! generators in `nn/reduce.rs`, `nn/softmax.rs`, `nn/norm.rs`, `nn/cumsum.rs`,
//! `nn/rnn.rs` over the templates `kernels/reduce*.wgsl`, `kernels/softmax.wgsl`,
//! `kernels/norm*.wgsl` and `kernels/rnn*.wgsl`. Their semantics are the
//! interpreter's (`ops/reduce.rs`, `ops/softmax.rs`, `ops/norm.rs`,
//! `ops/index.rs`, `ops/recurrent.rs`); the decisions are in each file's docs.
//! `nn/shader.rs` holds what these and the data-movement generators share.

use super::spec::{Lowering, NodeInfo};

mod cumsum;
mod norm;
mod reduce;
mod rnn;
pub(crate) mod shader;
mod softmax;

pub(crate) fn lower(info: &NodeInfo) -> Option<Lowering> {
    reduce::lower(info)
        .or_else(|| softmax::lower(info))
        .or_else(|| norm::lower(info))
        .or_else(|| cumsum::lower(info))
        .or_else(|| rnn::lower(info))
}
