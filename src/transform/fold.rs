//! `fold`: constant folding through the interpreter's kernels.
//!
//! First every Constant node becomes an initializer of the same name (all its
//! forms: `value`, `value_float(s)`, `value_int(s)`, `value_string(s)`, and
//! `sparse_value` when its dense form passes the size guard), so readers, graph
//! outputs and subgraphs reading it by name are unaffected. A Constant whose output
//! is a graph output stays a node (ONNX outputs are node outputs), and so does one
//! with a `ref_attr_name` (a function body's attribute reference).
//!
//! Then, in topological order, a default-domain node whose inputs are all
//! constants (absent optional inputs allowed) runs with its kernel and its outputs
//! become initializers of the same names; an output that is a graph output becomes
//! a Constant node instead. The size guard ([`crate::pass::PassOptions::may_fold`])
//! compares the bytes of the node's constant inputs with the bytes of its outputs,
//! so a `ConstantOfShape` that would turn a few bytes into megabytes stays (unless
//! the guard is off), while replacing a weight by its transpose folds. A
//! `ConstantOfShape` of a constant shape is itself a compressed constant: under
//! the guard it folds only when a reader of it then folds too (writing out a bias
//! that a Conv reads would only grow the model).
//!
//! Not folded: nodes with subgraphs, random ops, ops of other domains, nodes
//! without inputs, nodes whose kernel is missing or fails, nodes with a sequence or
//! optional output, and nodes whose result disagrees with a declared element type.
//! In a subgraph, values of the enclosing graph are not constants (their data is
//! not this graph's).
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %a = const f32[2] @a [1.0, 2.0]\n  %b = Constant() {value_floats=[3.0, 4.0]}\n  %c = Mul(%a, %b)\n  %y = Add(%x, %c)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("fold,dce,init-cleanup").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert!(modc::print_model(&m).contains("Add(%x,"));
//! ```

use crate::interp::value::{RtValue, TensorValue};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, NodeId, ValueDef, ValueId};
use crate::ir::tensor::Tensor;
use crate::ir::types::{Shape, Type};
use crate::ops::{OpCtx, OpRegistry};
use crate::pass::edit::{const_tensor, const_value, is_onnx, is_op, tidy_value_info};
use crate::pass::{Pass, PassCtx, PassError};

/// Ops whose results are drawn at random: never folded.
const RANDOM: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
];

pub struct Fold;

impl Pass for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let mut rewrites = constants_to_initializers(g, cx);
        let Ok(order) = g.topo_order() else {
            cx.rewrites += rewrites;
            return Ok(rewrites > 0);
        };
        let registry = OpRegistry::standard();
        for n in order {
            if g.contains_node(n) && fold_node(g, n, &registry, cx) {
                rewrites += 1;
            }
        }
        if rewrites > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += rewrites;
        Ok(rewrites > 0)
    }
}

/// Turns Constant nodes into initializers; returns how many.
fn constants_to_initializers(g: &mut Graph, cx: &PassCtx) -> usize {
    let ids: Vec<NodeId> = g
        .nodes()
        .filter(|(_, n)| is_op(n, "Constant"))
        .map(|(id, _)| id)
        .collect();
    let mut count = 0;
    for id in ids {
        let node = g.node(id);
        if !node.inputs.iter().all(|i| i.is_none())
            || node.outputs.len() != 1
            || node.attrs.len() != 1
            || node.attrs.iter().any(|a| a.ref_attr_name.is_some())
        {
            continue;
        }
        let Some(out) = node.outputs[0] else { continue };
        if g.outputs.contains(&out) {
            continue;
        }
        let name = g.value(out).name.clone();
        let tensor = match &node.attrs[0].value {
            AttrValue::Tensor(t) => {
                let mut t = t.clone();
                t.name = name;
                t
            }
            AttrValue::SparseTensor(sp) => {
                let Some(v) = run_constant(node, cx.opset) else {
                    continue;
                };
                let sparse_bytes = sp.values.byte_size() + sp.indices.byte_size();
                if !cx.options.may_fold(sparse_bytes, v.byte_size() as u64) {
                    continue;
                }
                v.to_tensor(&name)
            }
            _ => match run_constant(node, cx.opset) {
                Some(v) => v.to_tensor(&name),
                None => continue,
            },
        };
        g.remove_node(id);
        make_const(g, out, tensor);
        count += 1;
    }
    count
}

/// The value of a Constant node, computed by its kernel.
fn run_constant(node: &Node, opset: i64) -> Option<TensorValue> {
    let ctx = OpCtx { node, opset };
    let kernel = OpRegistry::standard().get("", "Constant")?;
    kernel(&ctx, &[]).ok()?.into_iter().next()?.into_tensor()
}

/// Makes `v` (an output of a removed node) an initializer holding `t` (named after
/// `v`); its type becomes the tensor's exact type.
pub(super) fn make_const(g: &mut Graph, v: ValueId, mut t: Tensor) {
    t.name = g.value(v).name.clone();
    let ty = Type::tensor(t.dtype, Shape::fixed(&t.dims));
    let val = g.value_mut(v);
    val.def = ValueDef::Const;
    val.init = Some(Initializer::Dense(t));
    match &mut val.ty {
        Some(old) => old.kind = ty.kind,
        None => val.ty = Some(ty),
    }
    g.initializers.push(v);
    g.value_info.retain(|&x| x != v);
}

/// Replaces node `n` by constants: each `(output, value)` becomes an initializer
/// of the output's name, or, for a graph output, the output of a Constant node.
pub(super) fn replace_by_consts(g: &mut Graph, n: NodeId, outs: Vec<(ValueId, TensorValue)>) {
    let mut node = g.remove_node(n).expect("live node");
    for (v, t) in outs {
        let name = g.value(v).name.clone();
        let tensor = t.to_tensor(&name);
        if g.outputs.contains(&v) {
            let c = Node {
                name: node.name.take(),
                outputs: vec![Some(v)],
                ..Node::new(
                    "Constant",
                    "",
                    vec![Attr::new("value", AttrValue::Tensor(tensor))],
                )
            };
            g.push_node(c);
        } else {
            make_const(g, v, tensor);
        }
    }
}

/// True when `v` is a constant, without decoding its data.
fn is_const_cheap(g: &Graph, v: ValueId) -> bool {
    if const_tensor(g, v).is_some() {
        return true;
    }
    match g.value(v).def {
        ValueDef::Node { node, .. } => g.contains_node(node) && is_op(g.node(node), "Constant"),
        _ => false,
    }
}

/// The bytes of a value's declared type, when its shape is fully known.
fn declared_bytes(g: &Graph, v: ValueId) -> Option<u64> {
    let (dtype, shape) = g.value(v).ty.as_ref()?.as_tensor()?;
    if dtype == DType::Str {
        return None;
    }
    dtype.storage_bytes(shape?.num_elements()?)
}

/// Whether a kernel's result fits the declared type of `v` (element type, rank and
/// fixed dimensions).
fn fits_declared(g: &Graph, v: ValueId, t: &TensorValue) -> bool {
    let Some(ty) = g.value(v).ty.as_ref() else {
        return true;
    };
    let Some((dtype, shape)) = ty.as_tensor() else {
        return false;
    };
    if dtype != t.dtype() {
        return false;
    }
    match shape {
        None => true,
        Some(s) => {
            s.rank() == t.shape().len()
                && s.dims
                    .iter()
                    .zip(t.shape())
                    .all(|(d, &n)| d.as_fixed().is_none_or(|f| f == n as i64))
        }
    }
}

/// Whether a reader of `n`'s output would fold once that output is a constant: a
/// ConstantOfShape of a constant shape is a compressed constant (node counts skip
/// it), so writing its data out only pays when it lets a reader fold.
fn feeds_a_fold(g: &Graph, n: NodeId, registry: &OpRegistry) -> bool {
    let Some(out) = g.node(n).outputs.first().copied().flatten() else {
        return false;
    };
    g.nodes().any(|(_, r)| {
        r.inputs.contains(&Some(out))
            && is_onnx(r)
            && r.overload.is_none()
            && !RANDOM.contains(&r.op_type.as_str())
            && r.attrs.iter().all(|a| a.value.graphs().is_empty())
            && registry.get(&r.domain, &r.op_type).is_some()
            && r.inputs
                .iter()
                .flatten()
                .all(|&v| v == out || is_const_cheap(g, v))
    })
}

/// Folds node `n` when it qualifies; returns whether it did.
fn fold_node(g: &mut Graph, n: NodeId, registry: &OpRegistry, cx: &PassCtx) -> bool {
    let node = g.node(n);
    if !is_onnx(node)
        || node.overload.is_some()
        || node.op_type == "Constant"
        || RANDOM.contains(&node.op_type.as_str())
        || node.attrs.iter().any(|a| !a.value.graphs().is_empty())
        || node.inputs.iter().all(|i| i.is_none())
        || node.outputs.iter().all(|o| o.is_none())
        || !node.inputs.iter().flatten().all(|&v| is_const_cheap(g, v))
    {
        return false;
    }
    let Some(kernel) = registry.get(&node.domain, &node.op_type) else {
        return false;
    };
    if node.op_type == "ConstantOfShape" && cx.options.size_guard && !feeds_a_fold(g, n, registry) {
        return false;
    }
    // A quick look at declared output sizes: no need to compute what the guard refuses.
    let in_declared: u64 = node
        .inputs
        .iter()
        .flatten()
        .map(|&v| const_tensor(g, v).map(|t| t.byte_size()).unwrap_or(0))
        .sum();
    let out_declared: Option<u64> = node
        .outputs
        .iter()
        .flatten()
        .map(|&v| declared_bytes(g, v))
        .sum();
    if let Some(out) = out_declared {
        if !cx.options.may_fold(in_declared, out) {
            return false;
        }
    }
    let mut inputs: Vec<Option<RtValue>> = Vec::with_capacity(node.inputs.len());
    let mut in_bytes = 0u64;
    for i in &node.inputs {
        match i {
            None => inputs.push(None),
            Some(v) => match const_value(g, *v) {
                Some(t) => {
                    in_bytes += t.byte_size() as u64;
                    inputs.push(Some(RtValue::Tensor(t)));
                }
                None => return false,
            },
        }
    }
    let ctx = OpCtx {
        node,
        opset: cx.opset,
    };
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel(&ctx, &inputs)));
    let Ok(Ok(results)) = result else {
        return false;
    };
    let mut outs: Vec<(ValueId, TensorValue)> = vec![];
    let mut out_bytes = 0u64;
    for (slot, o) in node.outputs.iter().enumerate() {
        let Some(o) = o else { continue };
        let Some(RtValue::Tensor(t)) = results.get(slot) else {
            return false;
        };
        if !fits_declared(g, *o, t) {
            return false;
        }
        out_bytes += t.byte_size() as u64;
        outs.push((*o, t.clone()));
    }
    if !cx.options.may_fold(in_bytes, out_bytes) {
        return false;
    }
    replace_by_consts(g, n, outs);
    true
}

#[cfg(test)]
mod tests {
    use crate::{parse_model, print_model, PassManager, Pipeline};

    fn run(text: &str, pipeline: &str, guard: bool) -> crate::ir::model::Model {
        let mut m = parse_model(text).unwrap();
        let mut pm = PassManager::new(Pipeline::parse(pipeline).unwrap());
        pm.verify_each = true;
        pm.options.size_guard = guard;
        pm.run(&mut m).unwrap();
        m
    }

    #[test]
    fn constant_forms_become_initializers() {
        let text = "opset _=17\ngraph @g(%x: f32[2]) -> (%y, %k) {\n  %a = Constant() {value_float=2.0}\n  %b = Constant() {value_ints=[1, 2]}\n  %s = Constant() {value_strings=[\"a\"]}\n  %k = Constant() {value_int=3}\n  %c = Cast(%b) {to=1}\n  %d = Mul(%c, %a)\n  %y = Add(%x, %d)\n  return %y, %k\n}\n";
        let m = run(text, "fold,dce,init-cleanup", true);
        let out = print_model(&m);
        // The graph output %k stays a Constant node; the rest fold into one constant.
        assert_eq!(m.graph.node_count(), 2, "{out}");
        assert!(out.contains("Constant()"), "{out}");
        let y = m.graph.outputs[0];
        let add = m.graph.producer(y).unwrap();
        let d = m.graph.node(add).inputs[1].unwrap();
        let v = crate::pass::edit::const_f64s(&m.graph, d).unwrap();
        assert_eq!(v, vec![2.0, 4.0]);
    }

    #[test]
    fn folded_graph_output_becomes_a_constant_node_and_converges() {
        let text = "opset _=17\ngraph @g(%x: f32[2]) -> (%y, %z) {\n  %a = const f32[2] @a [1.0, 2.0]\n  %z = Neg(%a)\n  %y = Add(%x, %z)\n  return %y, %z\n}\n";
        let m = run(text, "(fold,dce)", true);
        let out = print_model(&m);
        assert!(out.contains("%z = Constant()"), "{out}");
        let mut again = m.clone();
        let mut pm = PassManager::new(Pipeline::parse("fold").unwrap());
        let r = pm.run(&mut again).unwrap();
        assert_eq!(r.per_pass().iter().map(|p| p.3).sum::<usize>(), 0);
        assert_eq!(again, m);
    }

    #[test]
    fn size_guard_keeps_big_outputs() {
        let text = "opset _=17\ngraph @g(%x: f32[64,64,8]) -> (%y) {\n  %s = const i64[3] @s [64, 64, 8]\n  %c = ConstantOfShape(%s) {value=tensor f32[1] @v [0.5]}\n  %y = Add(%x, %c)\n  return %y\n}\n";
        let m = run(text, "fold,dce", true);
        assert!(print_model(&m).contains("ConstantOfShape"));
        let m = run(text, "fold,dce", false);
        assert!(!print_model(&m).contains("ConstantOfShape"));
        assert_eq!(m.graph.node_count(), 1);
    }

    #[test]
    fn failing_kernel_and_outer_values_stay() {
        // Reshape to an impossible shape: the kernel fails, the node stays.
        let text = "opset _=17\ngraph @g(%x: f32[3]) -> (%y) {\n  %a = const f32[3] @a [1.0, 2.0, 3.0]\n  %s = const i64[1] @s [4]\n  %r = Reshape(%a, %s)\n  %y = Add(%x, %r)\n  return %y\n}\n";
        let mut m = parse_model(text).unwrap();
        PassManager::new(Pipeline::parse("fold").unwrap())
            .run(&mut m)
            .unwrap();
        assert!(print_model(&m).contains("Reshape"));
    }
}
