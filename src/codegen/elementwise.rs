//! Elementwise kernels: one generated shader per node, or per fused node whose
//! body is all elementwise ops and views (one kernel for the whole chain).
//!
//! The kernel walks the output's elements with a grid-stride loop over a 2-D
//! dispatch (so any size fits the 65,535-workgroups-per-dimension limit). Inputs
//! are read with numpy broadcasting: an input with as many elements as the output
//! is read at the output's index, a one-element input at 0, any other through
//! per-dimension strides (0 where broadcast). Shapes and strides travel as uniform
//! parameters, so one pipeline serves every shape of the same rank and input
//! layout. Views (Identity, Reshape, Flatten, Squeeze, Unsqueeze) lower to
//! [`Lowering::Alias`]; inside a fused body a view of an input only changes the
//! shape the input is read with.
//!
//! A node with a tensor over the storage binding limit is tiled: the output is
//! cut into aligned element ranges, one dispatch each, with the same shader (see
//! `elementwise/kernel.rs`). An input of the output's size is bound over the same
//! range, a broadcast input whole when it fits, otherwise over the range of it the
//! chunk reads (chunks shrink until that range fits; if it never does, the node
//! is refused with the reason).
//!
//! Semantics follow the interpreter (`src/ops/unary.rs`, `binary.rs`, ...):
//! Round is half-to-even, integer Div truncates, Mod follows `fmod`, Pow of
//! integers wraps, Max/Min propagate NaN, uint8 arithmetic wraps at 8 bits, and
//! int64 computes in the device's 32 bits.

pub(crate) mod emit;
mod fused;
mod kernel;

use super::builder::{Ty, Val};
use super::spec::{Lowering, NodeInfo, NodeKernels, TensorDesc};
use crate::ir::dtype::DType;
use emit::{check_types, emit};
use fused::fused;
use kernel::{Gen, Sym};

/// Ops lowered to an alias of input 0.
const VIEWS: &[&str] = &["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"];

/// Ops with a generated elementwise kernel.
pub(crate) const OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Erf",
    "Gelu",
    "Mish",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "Where",
    "Less",
    "Greater",
    "Equal",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "Clip",
    "Cast",
    "Sin",
    "Cos",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "PRelu",
    "ThresholdedRelu",
    "Shrink",
    "IsNaN",
    "IsInf",
    "Mod",
    "BitShift",
    "Tan",
    "Atan",
    "Asin",
    "Acos",
    "Sinh",
    "Cosh",
];

const WORKGROUP: u32 = 256;

fn is_default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

pub(crate) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let node = info.node;
    if crate::fused::is_fused(node) {
        return fused(info);
    }
    if !is_default_domain(&node.domain) {
        return None;
    }
    let op = node.op_type.as_str();
    if VIEWS.contains(&op) {
        return Some(view(info));
    }
    if !OPS.contains(&op) {
        return None;
    }
    Some(single(info).unwrap_or_else(Lowering::Unsupported))
}

fn view(info: &NodeInfo) -> Lowering {
    match (
        info.inputs.first().and_then(|i| i.as_ref()),
        info.outputs.first(),
    ) {
        (Some(i), Some(o)) if i.dtype == o.dtype && i.len() == o.len() => Lowering::Alias,
        _ => Lowering::Unsupported(format!(
            "{}: the output is not a view of input 0",
            info.node.op_type
        )),
    }
}

fn ty_of(d: DType) -> Result<Ty, String> {
    Ok(match d {
        DType::F32 => Ty::F32,
        DType::I32 | DType::I64 => Ty::I32,
        DType::U8 => Ty::U32,
        DType::Bool => Ty::Bool,
        d => return Err(format!("element type {d} has no elementwise kernel")),
    })
}

/// numpy broadcasting of shapes.
fn broadcast(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; r];
    for s in shapes {
        for (k, &d) in s.iter().enumerate() {
            let o = &mut out[r - s.len() + k];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

/// One op as a kernel.
fn single(info: &NodeInfo) -> Result<Lowering, String> {
    let node = info.node;
    if node.attr("broadcast").is_some() || node.attr("axis").is_some() && node.op_type != "Clip" {
        return Err("the legacy broadcast/axis form".into());
    }
    let out = info.outputs.first().ok_or("no output")?.clone();
    if info.outputs.len() != 1 {
        return Err("more than one output".into());
    }
    let ins: Vec<Option<DType>> = info
        .inputs
        .iter()
        .map(|i| i.as_ref().map(|d| d.dtype))
        .collect();
    check_types(&node.op_type, &ins, out.dtype)?;
    let mut syms: Vec<Option<Sym>> = vec![];
    for (k, d) in info.inputs.iter().enumerate() {
        syms.push(d.as_ref().map(|d| {
            let mut shape = d.shape.clone();
            // PRelu's per-channel slope (the opset-6 form).
            if node.op_type == "PRelu"
                && k == 1
                && shape.len() == 1
                && out.shape.len() > 2
                && broadcast(&[&shape, &out.shape]).is_err()
                && out.shape[1] == shape[0]
            {
                shape = vec![shape[0]];
                shape.extend(std::iter::repeat_n(1, out.shape.len() - 2));
            }
            Sym::Input {
                k,
                shape,
                dtype: d.dtype,
            }
        }));
    }
    let kernels = generate(info, &out, |g| {
        let args = syms
            .iter()
            .map(|s| s.as_ref().map(|s| g.get(s)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let v = emit(&mut g.body, &mut g.helpers, node, &args, &ins, out.dtype)?;
        Ok(vec![(v, out.dtype)])
    })?;
    Ok(Lowering::Kernels(kernels))
}

fn generate(
    info: &NodeInfo,
    out: &TensorDesc,
    f: impl FnOnce(&mut Gen) -> Result<Vec<(Val, DType)>, String>,
) -> Result<NodeKernels, String> {
    if out.len() > u32::MAX as usize {
        return Err(format!(
            "{} elements exceed the kernel's 32-bit indices",
            out.len()
        ));
    }
    let mut g = Gen::new(&out.shape);
    let outs = f(&mut g)?;
    let label = format!("ew_{}", info.node.op_type.to_lowercase());
    Ok(NodeKernels {
        dispatches: g.finish(&label, &outs, info)?,
        temps: vec![],
    })
}
