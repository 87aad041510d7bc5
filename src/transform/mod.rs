//! The passes: cleanup, folding, CSE and Conv/Gemm folding, registered by name.
//!
//! Each pass is one file; [`registry`] lists them with a one-line description (the
//! CLI's `--list-passes` prints it). Passes follow the same rules: they keep graph
//! inputs and outputs (names and order), keep symbolic dimensions symbolic, leave
//! ops of unknown domains alone, and count each rewrite in `PassCtx::rewrites`.

mod conv_fold;
mod cse;
mod dce;
mod fold;
pub(crate) mod fuse;
pub mod fuse_kernels;
mod gemm_fold;
pub(crate) mod if_fold;
mod infer;
mod merge_chains;
mod noop;
pub mod opset_upgrade;
mod opset_versions;
mod pad_fold;
mod shape_fold;

use crate::pass::Pass;

/// A pass's name, description and constructor.
pub type PassEntry = (&'static str, &'static str, fn() -> Box<dyn Pass>);

/// Every registered pass.
pub fn registry() -> Vec<PassEntry> {
    vec![
        ("infer", "shape and type inference (symbolic dims stay symbolic)", || Box::new(infer::InferShapes)),
        ("fold", "constant folding through the interpreter, with a size guard; Constant nodes become initializers", || Box::new(fold::Fold)),
        ("shape-fold", "Shape/Gather/Unsqueeze/Concat/Reshape chains with known dimensions collapse", || Box::new(shape_fold::ShapeFold)),
        ("dce", "dead-code elimination (subgraph reads count as uses)", || Box::new(dce::Dce)),
        ("init-cleanup", "unused and duplicate initializers", || Box::new(dce::InitCleanup)),
        ("cse", "common-subexpression elimination", || Box::new(cse::Cse)),
        ("noop", "removes no-ops: Identity, Dropout, same-type Cast, same-shape Reshape/Expand/Flatten, identity Transpose, zero Pad, full Slice, single Concat/Split, Squeeze/Unsqueeze pairs", || Box::new(noop::Noop)),
        ("merge-chains", "merges consecutive Transposes, Reshapes, Squeezes/Unsqueezes and Slices", || Box::new(merge_chains::MergeChains)),
        ("conv-fold", "folds BatchNormalization and constant Mul/Add into Conv and Gemm weights", || Box::new(conv_fold::ConvFold)),
        ("pad-fold", "folds Pad into Conv and pooling", || Box::new(pad_fold::PadFold)),
        ("gemm-fold", "MatMul + Add into Gemm where the ranks allow", || Box::new(gemm_fold::GemmFold)),
        ("fuse-std", "e-graph rewriting (passes/*.rules): algebra and recognitions that give standard ONNX ops (LayerNormalization, Gelu, Softmax ...) where the opset has them", || Box::new(fuse::Fuse { full: false })),
        ("fuse", "fuse-std, plus contrib ops for --target onnxruntime, then fused kernels for elementwise chains, reductions and reshapes", || Box::new(fuse::Fuse { full: true })),
        ("if-fold", "replaces an If with a constant condition by its branch", || Box::new(if_fold::IfFold)),
        ("fuse-kernels", "groups elementwise, reduction and reshape ops into fused kernel nodes (ai.modc::Fused, saved as ONNX local functions)", || Box::new(fuse_kernels::FuseKernels::default())),
    ]
}
