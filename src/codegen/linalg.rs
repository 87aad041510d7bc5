//! Linear algebra, convolution and pooling kernels: MatMul, Gemm, Conv, MaxPool,
//! AveragePool, GlobalAveragePool and GlobalMaxPool.
//!
//! Kernels are WGSL templates in `kernels/` (`matmul_tiled.wgsl`,
//! `matmul_naive.wgsl`, `conv.wgsl`, `pool.wgsl`, `pool_global.wgsl`) filled by
//! text substitution of `{{NAME}}` placeholders. Shapes, strides and attributes
//! are baked into each shader as WGSL `const`s rather than passed as uniforms: the
//! plan's shapes are concrete, and constant trip counts let the shader compiler
//! unroll window loops (a 3x3 convolution, a 4-wide vector tail), which matters on
//! lavapipe where every loop iteration is real CPU work. The cost is one pipeline
//! per distinct shape, compiled once per session.
//!
//! Semantics follow the interpreter (`ops/matmul.rs`, `ops/conv.rs`,
//! `ops/pool.rs`); the geometry of windows (auto_pad, pads, ceil_mode) comes from
//! the same functions the interpreter uses.
//!
//! Every kernel respects [`DeviceLimits`]: a dispatch's workgroups are laid out on
//! a 2-D or 3-D grid so that no dimension exceeds `max_workgroups_per_dim`, and the
//! shader recovers its flat workgroup index. MatMul and Gemm operands larger than
//! one storage binding (`max_storage_binding`) are tiled: the product is split
//! along the batch, rows, columns or k into dispatches that each bind windows of
//! the large operands (`linalg/matmul/split.rs`). Conv, ConvTranspose and the
//! pools still refuse a tensor over the limit, with the reason.
//!
//! ```text
//! MatMul f32[8,64,128] x f32[128,32]  ->  matmul_tiled_8x4 (1 dispatch, [8, 1, 1] workgroups)
//! ```

mod conv;
mod conv_transpose;
pub(crate) mod matmul;
mod pool;
mod template;

use super::spec::{DeviceLimits, Lowering, NodeInfo, Storage, TensorDesc};

pub(crate) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let domain = info.node.domain.as_str();
    if !(domain.is_empty() || domain == "ai.onnx") {
        return None;
    }
    let result = match info.node.op_type.as_str() {
        "MatMul" => matmul::lower_matmul(info),
        "Gemm" => matmul::lower_gemm(info),
        "Conv" => conv::lower_conv(info),
        "ConvTranspose" => conv_transpose::lower_conv_transpose(info),
        "MaxPool" | "AveragePool" => pool::lower_pool(info),
        "GlobalAveragePool" | "GlobalMaxPool" => pool::lower_global(info),
        _ => return None,
    };
    Some(match result {
        Ok(kernels) => Lowering::Kernels(kernels),
        Err(reason) => Lowering::Unsupported(reason),
    })
}

/// The interpreter's view of the node's attributes.
fn op_ctx<'a>(info: &NodeInfo<'a>) -> crate::ops::OpCtx<'a> {
    crate::ops::OpCtx {
        node: info.node,
        opset: info.opset,
    }
}

/// Input `k`, which must be present.
fn input<'a>(info: &'a NodeInfo, k: usize) -> Result<&'a TensorDesc, String> {
    info.inputs
        .get(k)
        .and_then(|i| i.as_ref())
        .ok_or_else(|| format!("{}: input {k} is missing", info.node.op_type))
}

/// Output `k`, which must exist.
fn output<'a>(info: &'a NodeInfo, k: usize) -> Result<&'a TensorDesc, String> {
    info.outputs
        .get(k)
        .ok_or_else(|| format!("{}: output {k} is missing", info.node.op_type))
}

/// The storage of a tensor, or why it has none.
fn storage(t: &TensorDesc, what: &str) -> Result<Storage, String> {
    Storage::of(t.dtype)
        .ok_or_else(|| format!("{what} of type {:?} has no device storage", t.dtype))
}

/// Refuses tensors that do not fit one storage binding.
fn check_binding(limits: &DeviceLimits, t: &TensorDesc, what: &str) -> Result<(), String> {
    if t.device_bytes() > limits.max_storage_binding {
        return Err(format!(
            "{what} {:?} takes {} bytes, over the {}-byte storage binding limit",
            t.shape,
            t.device_bytes(),
            limits.max_storage_binding
        ));
    }
    Ok(())
}

/// Checks every present input and every output against the binding limit.
/// The f32 operands of a Conv or ConvTranspose: x, w, the optional bias, y;
/// refuses other element types, tensors over the binding limit, and ranks other
/// than 1 to 3 spatial dims.
#[allow(clippy::type_complexity)]
fn conv_operands<'a>(
    info: &'a NodeInfo,
    op: &str,
) -> Result<
    (
        &'a TensorDesc,
        &'a TensorDesc,
        Option<&'a TensorDesc>,
        &'a TensorDesc,
    ),
    String,
> {
    let (x, w) = (input(info, 0)?, input(info, 1)?);
    let bias = info.inputs.get(2).and_then(|b| b.as_ref());
    let y = output(info, 0)?;
    if [x.dtype, w.dtype, y.dtype]
        .iter()
        .any(|&d| d != crate::ir::dtype::DType::F32)
        || bias.is_some_and(|b| b.dtype != crate::ir::dtype::DType::F32)
    {
        return Err(format!("{op} of {:?} (f32 only)", x.dtype));
    }
    check_all_bindings(info)?;
    let (xs, ws) = (&x.shape, &w.shape);
    if xs.len() < 3 || ws.len() != xs.len() || xs.len() > 5 {
        return Err(format!(
            "{op}: input {xs:?} and weight {ws:?} ranks do not fit (1 to 3 spatial dims)"
        ));
    }
    Ok((x, w, bias, y))
}

fn check_all_bindings(info: &NodeInfo) -> Result<(), String> {
    for (k, t) in info.inputs.iter().enumerate() {
        if let Some(t) = t {
            check_binding(&info.limits, t, &format!("input {k}"))?;
        }
    }
    for (k, t) in info.outputs.iter().enumerate() {
        check_binding(&info.limits, t, &format!("output {k}"))?;
    }
    Ok(())
}
