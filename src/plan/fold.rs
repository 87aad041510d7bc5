//! Plan-time constant folding.
//!
//! Once the input shapes are fixed, much of a graph no longer depends on the
//! input data: `Constant` nodes, `Shape` and `Size` of tensors whose shape is
//! known, and every deterministic node whose inputs are all constants (the shape
//! arithmetic of exported models, `ConstantOfShape` weights). Those nodes are
//! computed once here with the reference kernels, and their outputs become
//! weights: they never run per inference, on the GPU or on the CPU.
//!
//! Folding and shape inference alternate until nothing changes, because a folded
//! shape makes a `Reshape`'s output concrete, which lets a later `Shape` fold.

use crate::interp::value::{RtValue, TensorValue};
use crate::ir::graph::{Graph, Initializer, NodeId, ValueDef, ValueId};
use crate::ir::model::Model;
use crate::ir::types::{Shape, Type};
use crate::ops::{OpCtx, OpRegistry};
use std::collections::HashMap;

/// Ops whose results are drawn at random: never folded.
const RANDOM: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

/// Outputs larger than this are not folded (they would be weights the model did
/// not have, uploaded to the device).
const MAX_FOLDED_BYTES: u64 = 256 << 20;

/// Rounds of folding and shape inference at most (each round folds every chain
/// it can; a new round is needed only where folding made a shape concrete).
const MAX_ROUNDS: usize = 8;

/// What folding computed.
#[derive(Debug, Default)]
pub struct Folded {
    /// The value of every folded output.
    pub values: HashMap<ValueId, TensorValue>,
    /// The nodes folded away, in the order they were computed.
    pub nodes: Vec<NodeId>,
    /// The `If` nodes whose condition became a constant, replaced by the nodes
    /// of the branch it takes (so the shapes after them can be inferred).
    pub ifs: Vec<NodeId>,
}

/// Replaces node `n` by the branch it takes when it is an `If` whose condition
/// is a constant; returns whether it did.
fn inline_if(g: &mut Graph, n: NodeId, folded: &Folded) -> bool {
    let node = g.node(n);
    if node.op_type != "If" || !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return false;
    }
    let Some(c) = node
        .inputs
        .first()
        .copied()
        .flatten()
        .and_then(|c| const_value(g, c, folded))
    else {
        return false;
    };
    crate::transform::if_fold::inline_taken(g, n, &c)
}

/// Folds `m` in place (nodes are removed; their outputs become initializers),
/// running shape inference before each round.
pub fn fold(m: &mut Model) -> Folded {
    let registry = OpRegistry::standard();
    let mut folded = Folded::default();
    for _ in 0..MAX_ROUNDS {
        crate::ops::shape_infer::infer_shapes(m);
        let Ok(order) = m.graph.topo_order() else {
            break;
        };
        let before = folded.nodes.len() + folded.ifs.len();
        for n in order {
            if inline_if(&mut m.graph, n, &folded) {
                folded.ifs.push(n);
                continue;
            }
            let opset = m.opset_version(&m.graph.node(n).domain).unwrap_or(1);
            if let Some(outs) = evaluate(&m.graph, n, opset, &registry, &folded) {
                let node = m.graph.remove_node(n).expect("live node");
                for (v, t) in node.outputs.iter().zip(outs) {
                    if let Some(v) = v {
                        make_const(&mut m.graph, *v, &t);
                        folded.values.insert(*v, t);
                    }
                }
                folded.nodes.push(n);
            }
        }
        if folded.nodes.len() + folded.ifs.len() == before {
            break;
        }
    }
    folded
}

/// The value of a constant tensor of `g`: folded, or a dense initializer.
pub fn const_value(g: &Graph, v: ValueId, folded: &Folded) -> Option<TensorValue> {
    if let Some(t) = folded.values.get(&v) {
        return Some(t.clone());
    }
    let val = g.value(v);
    match (&val.def, &val.init) {
        (ValueDef::Const, Some(Initializer::Dense(t))) => TensorValue::from_tensor(t).ok(),
        _ => None,
    }
}

fn is_const(g: &Graph, v: ValueId) -> bool {
    let val = g.value(v);
    val.def == ValueDef::Const && matches!(val.init, Some(Initializer::Dense(_)))
}

/// The outputs of node `n` when it can be computed now.
fn evaluate(
    g: &Graph,
    n: NodeId,
    opset: i64,
    registry: &OpRegistry,
    folded: &Folded,
) -> Option<Vec<TensorValue>> {
    let node = g.node(n);
    if !(node.domain.is_empty() || node.domain == "ai.onnx")
        || node.overload.is_some()
        || RANDOM.contains(&node.op_type.as_str())
        || node.attrs.iter().any(|a| !a.value.graphs().is_empty())
        || node.outputs.iter().all(|o| o.is_none())
    {
        return None;
    }
    match node.op_type.as_str() {
        "Shape" | "Size" => return shape_of(g, node, opset),
        "Constant" => {}
        _ => {
            if node.inputs.iter().all(|i| i.is_none())
                || !node.inputs.iter().flatten().all(|&v| is_const(g, v))
            {
                return None;
            }
        }
    }
    let declared: u64 = node
        .outputs
        .iter()
        .flatten()
        .filter_map(|&v| declared_bytes(g, v))
        .sum();
    if declared > MAX_FOLDED_BYTES {
        return None;
    }
    let kernel = registry.get(&node.domain, &node.op_type)?;
    let inputs: Vec<Option<RtValue>> = node
        .inputs
        .iter()
        .map(|i| match i {
            Some(v) => const_value(g, *v, folded).map(|t| Some(RtValue::Tensor(t))),
            None => Some(None),
        })
        .collect::<Option<_>>()?;
    let outs = kernel(&OpCtx { node, opset }, &inputs).ok()?;
    let tensors: Vec<TensorValue> = outs
        .into_iter()
        .map(|o| o.into_tensor())
        .collect::<Option<_>>()?;
    let bytes: u64 = tensors.iter().map(|t| t.byte_size() as u64).sum();
    (tensors.len() >= node.outputs.iter().flatten().count() && bytes <= MAX_FOLDED_BYTES)
        .then_some(tensors)
}

/// `Shape` (with opset 15's `start`/`end`) or `Size` of a tensor of known shape.
fn shape_of(g: &Graph, node: &crate::ir::graph::Node, opset: i64) -> Option<Vec<TensorValue>> {
    let x = (*node.inputs.first()?)?;
    let (_, shape) = g.value(x).ty.as_ref()?.as_tensor()?;
    let dims: Vec<i64> = shape?
        .dims
        .iter()
        .map(|d| d.as_fixed())
        .collect::<Option<_>>()?;
    if node.op_type == "Size" {
        return Some(vec![TensorValue::from_i64(
            &[],
            vec![dims.iter().product()],
        )]);
    }
    let rank = dims.len() as i64;
    let attr = |name: &str, default: i64| -> i64 {
        if opset < 15 {
            return default;
        }
        node.attr(name)
            .and_then(|a| a.value.as_int())
            .unwrap_or(default)
    };
    let clamp = |i: i64| (if i < 0 { i + rank } else { i }).clamp(0, rank) as usize;
    let (start, end) = (clamp(attr("start", 0)), clamp(attr("end", rank)));
    let sel: Vec<i64> = dims[start..end.max(start)].to_vec();
    Some(vec![TensorValue::from_i64(&[sel.len()], sel)])
}

fn declared_bytes(g: &Graph, v: ValueId) -> Option<u64> {
    let (dtype, shape) = g.value(v).ty.as_ref()?.as_tensor()?;
    let n = shape?.num_elements()?;
    dtype.storage_bytes(n)
}

/// Makes `v` a constant holding `t`, with `t`'s exact type.
fn make_const(g: &mut Graph, v: ValueId, t: &TensorValue) {
    let name = g.value(v).name.clone();
    let tensor = t.to_tensor(&name);
    let dims: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
    let val = g.value_mut(v);
    val.def = ValueDef::Const;
    val.init = Some(Initializer::Dense(tensor));
    val.ty = Some(Type::tensor(t.dtype(), Shape::fixed(&dims)));
    // Listed with the graph's initializers, where shape inference reads constant
    // pads, axes, scales and counts.
    if !g.initializers.contains(&v) {
        g.initializers.push(v);
    }
}
