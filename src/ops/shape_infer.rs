//! Shape and type inference over a whole graph, ready to run as a pass.
//!
//! [`infer_shapes`] walks the graph in topological order and gives each node
//! output a type from its inputs' types, its attributes, and the values of small
//! constant inputs (initializers and Constant nodes: shapes, axes, pads ...).
//! Symbolic dimensions stay symbolic: `Add(f32[batch,3], f32[1,3])` is
//! `f32[batch,3]`. A type the file already declares is kept unless the inferred
//! one is more precise. Ops without a rule, or inputs of unknown type, leave the
//! output unknown; nothing is guessed. Subgraphs (If, Loop, Scan bodies) are
//! inferred too; a fused node's body is inferred with the node's input types, and
//! its outputs' types are the node's.
//!
//! Ops without a symbolic rule (or whose rule leaves a dimension unknown) fall back
//! to running their kernel when every input shape is fully known: the kernel runs
//! on zeros of those shapes and on the values of constant inputs, and the output
//! types are read off the result. Small inputs (64 elements or fewer), which may be
//! shapes, axes, counts, scales or range bounds deciding the output shape, must be
//! constants, and ops whose output shape depends on their data (NonZero, Unique
//! ...) are never run.
//!
//! The rules are one table, apart from the kernels, because they work on symbolic
//! types where the kernels work on values.
//!
//! ```
//! let mut m = modc::parse_model("opset _=17\ngraph @g(%x: f32[batch,3]) -> (%y) {\n  %0 = Relu(%x)\n  %y = Transpose(%0) {perm=[1,0]}\n  return %y\n}\n").unwrap();
//! let r = modc::infer_shapes(&mut m);
//! assert_eq!(r.inferred, 2);
//! let y = m.graph.outputs[0];
//! assert_eq!(m.graph.value(y).ty.as_ref().unwrap().to_string(), "f32[3,batch]");
//! ```

use crate::interp::value::TensorValue;
use crate::ir::attr::AttrValue;
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, ValueId};
use crate::ir::model::Model;
use crate::ir::types::{Dim, DimValue, Shape, Type, TypeKind};
use std::collections::HashMap;

mod recurrent;

/// What inference did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InferReport {
    /// Values that got a type or a more precise one.
    pub inferred: usize,
    /// Node outputs still without a type.
    pub unknown: usize,
}

/// Infers the types of every node output in the model (subgraphs included).
pub fn infer_shapes(m: &mut Model) -> InferReport {
    let opset = m.opset_version("").unwrap_or(1);
    infer_graph_shapes(&mut m.graph, opset)
}

/// Infers the types of every node output of one graph and its subgraphs.
pub(crate) fn infer_graph_shapes(g: &mut Graph, opset: i64) -> InferReport {
    let mut report = InferReport::default();
    let registry = crate::ops::OpRegistry::standard();
    infer_graph(g, opset, &registry, &mut report);
    report
}

fn infer_graph(
    g: &mut Graph,
    opset: i64,
    registry: &crate::ops::OpRegistry,
    report: &mut InferReport,
) {
    let Ok(order) = g.topo_order() else { return };
    let mut consts: HashMap<ValueId, TensorValue> = HashMap::new();
    let mut shape_vals: HashMap<ValueId, Vec<Dim>> = HashMap::new();
    for &v in &g.initializers {
        if let Some(Initializer::Dense(t)) = &g.value(v).init {
            if t.num_elements().is_some_and(|n| n <= 64) {
                if let Ok(tv) = TensorValue::from_tensor(t) {
                    consts.insert(v, tv);
                }
            }
        }
    }
    for n in order {
        // A fused body is inferred with the node's input types.
        if crate::fused::is_fused(g.node(n)) {
            seed_fused_inputs(g, n);
        }
        // Subgraphs first (their outputs may give Loop/If outputs their types).
        let ids: Vec<usize> = (0..g.node(n).attrs.len()).collect();
        for i in ids {
            let mut a = std::mem::replace(&mut g.node_mut(n).attrs[i].value, AttrValue::Int(0));
            for sub in a.graphs_mut() {
                infer_graph(sub, opset, registry, report);
            }
            g.node_mut(n).attrs[i].value = a;
        }
        let node = g.node(n);
        if node.op_type == "Constant" && (node.domain.is_empty() || node.domain == "ai.onnx") {
            if let Some(AttrValue::Tensor(t)) = node.attr("value").map(|a| &a.value) {
                if t.num_elements().is_some_and(|c| c <= 64) {
                    if let (Some(Some(out)), Ok(tv)) =
                        (node.outputs.first(), TensorValue::from_tensor(t))
                    {
                        consts.insert(*out, tv);
                    }
                }
            }
        }
        let in_types: Vec<Option<Type>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| value_type(g, v)))
            .collect();
        let in_consts: Vec<Option<&TensorValue>> = node
            .inputs
            .iter()
            .map(|v| v.and_then(|v| consts.get(&v)))
            .collect();
        let mut outs = if node.domain.is_empty() || node.domain == "ai.onnx" {
            infer_node(node, &in_types, &in_consts, opset)
        } else if let Some(body) = crate::fused::fused_body(node) {
            body.outputs
                .iter()
                .map(|&o| body.value(o).ty.clone())
                .collect()
        } else {
            vec![]
        };
        let known = |o: &Option<Type>| match o.as_ref().and_then(|t| t.as_tensor()) {
            Some((_, Some(shape))) => shape
                .dims
                .iter()
                .all(|d| !matches!(d.value, DimValue::Unknown)),
            _ => o.is_some(),
        };
        if node
            .outputs
            .iter()
            .enumerate()
            .any(|(i, o)| o.is_some() && !outs.get(i).is_some_and(known))
        {
            if let Some(run) = infer_by_running(node, &in_types, &in_consts, opset, registry) {
                for (i, t) in run.into_iter().enumerate() {
                    if i >= outs.len() {
                        outs.resize(i + 1, None);
                    }
                    let better = match (&outs[i], &t) {
                        (Some(old), Some(new)) => precision(new) > precision(old),
                        (None, Some(_)) => true,
                        _ => false,
                    };
                    if better {
                        outs[i] = t;
                    }
                }
            }
        }
        // Symbolic shape values (Shape -> Slice -> Concat ...) and the Expand /
        // Reshape outputs they describe.
        if node.domain.is_empty() || node.domain == "ai.onnx" {
            let in_shapes: Vec<Option<Vec<Dim>>> = in_types.iter().map(dims_of).collect();
            let in_vals: Vec<Option<Vec<Dim>>> = node
                .inputs
                .iter()
                .map(|v| {
                    v.and_then(|v| {
                        shape_vals.get(&v).cloned().or_else(|| {
                            consts
                                .get(&v)
                                .filter(|t| t.shape().len() <= 1)
                                .and_then(|t| t.to_i64_vec())
                                .map(|xs| xs.into_iter().map(Dim::fixed).collect())
                        })
                    })
                })
                .collect();
            if let [Some(out)] = node.outputs[..] {
                if let Some(d) = super::shape_values::propagate(
                    &node.op_type,
                    &node.attrs,
                    opset,
                    &in_shapes,
                    &in_vals,
                ) {
                    shape_vals.insert(out, d);
                }
                let elem = in_types
                    .first()
                    .cloned()
                    .flatten()
                    .and_then(|t| t.as_tensor().map(|p| p.0));
                let from_vals = match (
                    node.op_type.as_str(),
                    in_shapes.first().cloned().flatten(),
                    in_vals.get(1).cloned().flatten(),
                    elem,
                ) {
                    ("Expand", Some(x), Some(target), Some(e)) => {
                        broadcast(&x, &target).and_then(|d| tensor(e, d))
                    }
                    ("Reshape", Some(x), Some(target), Some(e))
                        if attr_int(node, "allowzero", 0) == 0 =>
                    {
                        super::shape_values::reshape_dims(&x, &target).and_then(|d| tensor(e, d))
                    }
                    _ => None,
                };
                if let Some(t) = from_vals {
                    let better = outs
                        .first()
                        .cloned()
                        .flatten()
                        .is_none_or(|old| precision(&t) > precision(&old));
                    if better {
                        if outs.is_empty() {
                            outs.push(None);
                        }
                        outs[0] = Some(t);
                    }
                }
            }
        }
        let node_outputs = node.outputs.clone();
        for (slot, out) in node_outputs.iter().enumerate() {
            let Some(v) = out else { continue };
            let new = outs.get(slot).cloned().flatten();
            let val = g.value_mut(*v);
            match (&val.ty, new) {
                (_, None) => {
                    if val.ty.is_none() {
                        report.unknown += 1;
                    }
                }
                (Some(old), Some(t)) if precision(old) >= precision(&t) => {}
                (_, Some(t)) => {
                    val.ty = Some(t);
                    report.inferred += 1;
                }
            }
        }
    }
}

/// A value's type; an initializer without a declared type has its tensor's.
fn value_type(g: &Graph, v: ValueId) -> Option<Type> {
    let val = g.value(v);
    val.ty.clone().or_else(|| match &val.init {
        Some(Initializer::Dense(t)) => Some(Type::tensor(t.dtype, Shape::fixed(&t.dims))),
        _ => None,
    })
}

/// The dims of a tensor type with a known rank.
fn dims_of(t: &Option<Type>) -> Option<Vec<Dim>> {
    Some(t.as_ref()?.as_tensor()?.1?.dims.clone())
}

/// Gives the inputs of fused node `n`'s body the types of the node's inputs where
/// those say more.
fn seed_fused_inputs(g: &mut Graph, n: crate::ir::graph::NodeId) {
    let types: Vec<Option<Type>> = g
        .node(n)
        .inputs
        .iter()
        .map(|v| v.and_then(|v| g.value(v).ty.clone()))
        .collect();
    let Some(body) = crate::fused::fused_body_mut(g.node_mut(n)) else {
        return;
    };
    for (&b, t) in body.inputs.clone().iter().zip(types) {
        let Some(t) = t else { continue };
        let val = body.value_mut(b);
        if val
            .ty
            .as_ref()
            .is_none_or(|old| precision(&t) > precision(old))
        {
            val.ty = Some(t);
        }
    }
}

/// Ops whose output shape depends on the values of their data inputs, which the
/// fallback below cannot know.
const DATA_DEPENDENT: &[&str] = &[
    "NonZero",
    "Unique",
    "Compress",
    "NonMaxSuppression",
    "StringSplit",
    "TfIdfVectorizer",
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
];

/// The fallback for ops without a symbolic rule: when every input's shape is fully
/// known, run the op's kernel on zeros of those shapes (and on the real values of
/// constant inputs) and read the output types off the result. Small inputs must be
/// constants, since their values may decide the output shape; ops whose output
/// shape depends on their data are never run.
fn infer_by_running(
    n: &Node,
    ins: &[Option<Type>],
    consts: &[Option<&TensorValue>],
    opset: i64,
    registry: &crate::ops::OpRegistry,
) -> Option<Vec<Option<Type>>> {
    use crate::interp::value::RtValue;
    if DATA_DEPENDENT.contains(&n.op_type.as_str())
        || n.attrs.iter().any(|a| !a.value.graphs().is_empty())
    {
        return None;
    }
    let kernel = registry.get(&n.domain, &n.op_type)?;
    let mut args: Vec<Option<RtValue>> = Vec::with_capacity(n.inputs.len());
    for (i, v) in n.inputs.iter().enumerate() {
        if v.is_none() {
            args.push(None);
            continue;
        }
        if let Some(c) = consts.get(i).copied().flatten() {
            args.push(Some(RtValue::Tensor(c.clone())));
            continue;
        }
        let (elem, dims) = parts(ins.get(i)?)?;
        let dims: Vec<usize> = dims?
            .iter()
            .map(|d| d.as_fixed().filter(|&x| x >= 0).map(|x| x as usize))
            .collect::<Option<_>>()?;
        let count: usize = dims.iter().product();
        // A small input may be a shape, axes, a count, scales or a range bound whose
        // value decides the output shape: only constants of that size are used.
        if count <= 64 || count > 1 << 20 {
            return None;
        }
        args.push(Some(RtValue::Tensor(TensorValue::zeros(elem, &dims).ok()?)));
    }
    let ctx = crate::ops::OpCtx { node: n, opset };
    let outs = kernel(&ctx, &args).ok()?;
    Some(
        outs.iter()
            .map(|o| match o {
                RtValue::Tensor(t) => tensor(
                    t.dtype(),
                    t.shape().iter().map(|&d| Dim::fixed(d as i64)).collect(),
                ),
                _ => None,
            })
            .collect(),
    )
}

/// Slice with constant starts, ends, axes and steps: sliced axes of fixed size get
/// their length, the others keep their dimension (symbolic ones stay symbolic).
fn slice_dims(
    n: &Node,
    ins: &[Option<Type>],
    consts: &[Option<&TensorValue>],
    opset: i64,
) -> Option<(DType, Vec<Dim>)> {
    let (e, d) = parts(ins.first()?)?;
    let dims = d?;
    let ci = |i: usize| {
        consts
            .get(i)
            .copied()
            .flatten()
            .and_then(|t| t.to_i64_vec())
    };
    let attr = |name: &str| {
        n.attr(name)
            .and_then(|a| a.value.as_ints())
            .map(|v| v.to_vec())
    };
    let (starts, ends, axes, steps) = if opset < 10 {
        (attr("starts")?, attr("ends")?, attr("axes"), None)
    } else {
        let present = |i: usize| n.inputs.get(i).copied().flatten().is_some();
        let axes = if present(3) { Some(ci(3)?) } else { None };
        let steps = if present(4) { Some(ci(4)?) } else { None };
        (ci(1)?, ci(2)?, axes, steps)
    };
    let rank = dims.len() as i64;
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || ends.len() != starts.len() || steps.len() != starts.len() {
        return None;
    }
    let mut out = dims.clone();
    for k in 0..starts.len() {
        let ax = if axes[k] < 0 { axes[k] + rank } else { axes[k] };
        if !(0..rank).contains(&ax) || steps[k] == 0 {
            return None;
        }
        let ax = ax as usize;
        out[ax] = match dims[ax].as_fixed() {
            Some(len) if len >= 0 => {
                let (st, en, step) = (starts[k], ends[k], steps[k]);
                let clamp = |v: i64, lo: i64, hi: i64| v.max(lo).min(hi);
                let norm = |v: i64| if v < 0 { v + len } else { v };
                let count = if step > 0 {
                    let (a, b) = (clamp(norm(st), 0, len), clamp(norm(en), 0, len));
                    if b > a {
                        (b - a + step - 1) / step
                    } else {
                        0
                    }
                } else {
                    let (a, b) = (clamp(norm(st), -1, len - 1), clamp(norm(en), -1, len - 1));
                    if a > b {
                        (a - b + (-step) - 1) / (-step)
                    } else {
                        0
                    }
                };
                Dim::fixed(count)
            }
            // A symbolic dim sliced from the start to "the end" (exporters write
            // INT_MAX-like ends, or 10^9) keeps its name.
            _ if starts[k] == 0 && ends[k] >= 1_000_000_000 && steps[k] == 1 => dims[ax].clone(),
            _ => Dim::unknown(),
        };
    }
    Some((e, out))
}

/// How much a type says: a higher number is more precise.
fn precision(t: &Type) -> usize {
    match &t.kind {
        TypeKind::Tensor { elem, shape } => {
            let e = usize::from(*elem != DType::Undefined);
            e + shape
                .as_ref()
                .map(|s| {
                    1 + s
                        .dims
                        .iter()
                        .map(|d| match d.value {
                            DimValue::Fixed(_) => 2,
                            DimValue::Param(_) => 1,
                            DimValue::Unknown => 0,
                        })
                        .sum::<usize>()
                })
                .unwrap_or(0)
        }
        _ => 1,
    }
}

fn tensor(elem: DType, dims: Vec<Dim>) -> Option<Type> {
    Some(Type::tensor(elem, Shape::from_dims(dims)))
}

fn unranked(elem: DType) -> Option<Type> {
    Some(Type {
        kind: TypeKind::Tensor { elem, shape: None },
        denotation: None,
    })
}

/// Element type and dims of a tensor type (dims `None` when the rank is unknown).
fn parts(t: &Option<Type>) -> Option<(DType, Option<Vec<Dim>>)> {
    let (e, s) = t.as_ref()?.as_tensor()?;
    // A negative fixed dimension (some exporters write -1) means unknown.
    let dim = |d: &Dim| match d.value {
        DimValue::Fixed(n) if n < 0 => Dim::unknown(),
        _ => Dim {
            value: d.value.clone(),
            denotation: None,
        },
    };
    Some((e, s.map(|s| s.dims.iter().map(dim).collect())))
}

fn attr_int(n: &Node, name: &str, default: i64) -> i64 {
    n.attr(name)
        .and_then(|a| a.value.as_int())
        .unwrap_or(default)
}

fn attr_ints(n: &Node, name: &str) -> Option<Vec<i64>> {
    n.attr(name)
        .and_then(|a| a.value.as_ints())
        .map(|v| v.to_vec())
}

fn norm(axis: i64, rank: usize) -> Option<usize> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    (a >= 0 && (a as usize) < rank.max(1)).then_some(a as usize)
}

/// Broadcasts two symbolic shapes (numpy rules).
fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n].clone()
        } else {
            Dim::fixed(1)
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n].clone()
        } else {
            Dim::fixed(1)
        };
        out.push(match (&da.value, &db.value) {
            (DimValue::Fixed(1), _) => db,
            (_, DimValue::Fixed(1)) => da,
            (x, y) if x == y => da,
            (DimValue::Fixed(_), DimValue::Fixed(_)) => return None,
            (DimValue::Fixed(_), _) => da,
            (_, DimValue::Fixed(_)) => db,
            _ => Dim::unknown(),
        });
    }
    Some(out)
}

/// Output types of one node of the default domain.
fn infer_node(
    n: &Node,
    ins: &[Option<Type>],
    consts: &[Option<&TensorValue>],
    opset: i64,
) -> Vec<Option<Type>> {
    let first = || parts(ins.first().unwrap_or(&None));
    let same_as_first = || vec![ins.first().cloned().flatten()];
    let const_ints = |i: usize| {
        consts
            .get(i)
            .copied()
            .flatten()
            .and_then(|t| t.to_i64_vec())
    };
    let op = n.op_type.as_str();
    match op {
        // Same type and shape as the first input.
        "Relu"
        | "LeakyRelu"
        | "Sigmoid"
        | "Tanh"
        | "Exp"
        | "Log"
        | "Sqrt"
        | "Abs"
        | "Neg"
        | "Reciprocal"
        | "Floor"
        | "Ceil"
        | "Round"
        | "Sign"
        | "Sin"
        | "Cos"
        | "Tan"
        | "Asin"
        | "Acos"
        | "Atan"
        | "Sinh"
        | "Cosh"
        | "Asinh"
        | "Acosh"
        | "Atanh"
        | "Erf"
        | "HardSigmoid"
        | "HardSwish"
        | "Softplus"
        | "Softsign"
        | "Elu"
        | "Selu"
        | "Celu"
        | "ThresholdedRelu"
        | "Gelu"
        | "Mish"
        | "Identity"
        | "Softmax"
        | "LogSoftmax"
        | "Hardmax"
        | "BatchNormalization"
        | "InstanceNormalization"
        | "LRN"
        | "LpNormalization"
        | "MeanVarianceNormalization"
        | "Clip"
        | "Dropout"
        | "Not"
        | "BitwiseNot"
        | "CumSum"
        | "Shrink"
        | "Trilu"
        | "PRelu"
        | "RMSNormalization"
        | "GroupNormalization" => {
            let mut v = same_as_first();
            if op == "Dropout" {
                v.push(first().and_then(|(_, d)| match d {
                    Some(d) => tensor(DType::Bool, d),
                    None => unranked(DType::Bool),
                }));
            }
            v
        }
        "LayerNormalization" => same_as_first(),
        "IsNaN" | "IsInf" => vec![first()
            .and_then(|(_, d)| d)
            .and_then(|d| tensor(DType::Bool, d))],
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Mod" | "Max" | "Min" | "Sum" | "Mean"
        | "BitShift" | "BitwiseAnd" | "BitwiseOr" | "BitwiseXor" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Where" => {
            let all: Option<Vec<(DType, Option<Vec<Dim>>)>> = ins.iter().map(parts).collect();
            let Some(all) = all else { return vec![None] };
            let elem = match op {
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or"
                | "Xor" => DType::Bool,
                "Where" => all.get(1).map(|p| p.0).unwrap_or(DType::Undefined),
                _ => all.first().map(|p| p.0).unwrap_or(DType::Undefined),
            };
            let mut shape: Option<Vec<Dim>> = Some(vec![]);
            for (_, d) in &all {
                shape = match (shape, d) {
                    (Some(s), Some(d)) => broadcast(&s, d),
                    _ => None,
                };
            }
            vec![match shape {
                Some(s) => tensor(elem, s),
                None => unranked(elem),
            }]
        }
        "Cast" => {
            let to = DType::from_onnx(attr_int(n, "to", 0) as i32);
            vec![match first() {
                Some((_, Some(d))) => tensor(to, d),
                _ => unranked(to),
            }]
        }
        "CastLike" => {
            let to = parts(ins.get(1).unwrap_or(&None)).map(|p| p.0);
            vec![match (first(), to) {
                (Some((_, Some(d))), Some(to)) => tensor(to, d),
                _ => None,
            }]
        }
        "Shape" => {
            let rank = first().and_then(|(_, d)| d).map(|d| d.len() as i64);
            let Some(r) = rank else {
                return vec![tensor(DType::I64, vec![Dim::unknown()])];
            };
            let clamp = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
            let start = clamp(attr_int(n, "start", 0));
            let end = clamp(attr_int(n, "end", r));
            vec![tensor(DType::I64, vec![Dim::fixed((end - start).max(0))])]
        }
        "Size" => vec![tensor(DType::I64, vec![])],
        "Transpose" => {
            let Some((e, Some(d))) = first() else {
                return vec![first().map(|p| p.0).and_then(unranked)];
            };
            let perm = attr_ints(n, "perm").unwrap_or_else(|| (0..d.len() as i64).rev().collect());
            let out: Option<Vec<Dim>> = perm.iter().map(|&p| d.get(p as usize).cloned()).collect();
            vec![out.and_then(|o| tensor(e, o))]
        }
        "Reshape" => {
            let Some((e, d)) = first() else {
                return vec![None];
            };
            let Some(shape) = const_ints(1) else {
                return vec![unranked(e)];
            };
            let allowzero = attr_int(n, "allowzero", 0) != 0;
            let mut out: Vec<Dim> = Vec::new();
            for (i, &s) in shape.iter().enumerate() {
                out.push(match s {
                    0 if !allowzero => d
                        .as_ref()
                        .and_then(|d| d.get(i).cloned())
                        .unwrap_or_else(Dim::unknown),
                    -1 => Dim::unknown(),
                    s => Dim::fixed(s),
                });
            }
            // Resolve one -1 when every other dimension is known.
            if let (Some(pos), Some(total)) = (
                shape.iter().position(|&s| s == -1),
                d.as_ref()
                    .and_then(|d| Shape::from_dims(d.clone()).num_elements()),
            ) {
                let rest: Option<u64> = out
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != pos)
                    .map(|(_, x)| x.as_fixed().map(|v| v as u64))
                    .product();
                if let Some(r) = rest.filter(|&r| r > 0) {
                    out[pos] = Dim::fixed((total / r) as i64);
                }
            }
            vec![tensor(e, out)]
        }
        "Flatten" => {
            let Some((e, Some(d))) = first() else {
                return vec![None];
            };
            // Flatten's axis is in [-r, r].
            let a = attr_int(n, "axis", 1);
            let axis = if a < 0 { a + d.len() as i64 } else { a };
            if axis < 0 || axis as usize > d.len() {
                return vec![None];
            }
            let axis = axis as usize;
            let prod = |s: &[Dim]| -> Dim {
                match s {
                    [one] => one.clone(),
                    _ => Shape::from_dims(s.to_vec())
                        .num_elements()
                        .map(|v| Dim::fixed(v as i64))
                        .unwrap_or_else(Dim::unknown),
                }
            };
            vec![tensor(e, vec![prod(&d[..axis]), prod(&d[axis..])])]
        }
        "Squeeze" | "Unsqueeze" => {
            let Some((e, Some(d))) = first() else {
                return vec![None];
            };
            let axes = attr_ints(n, "axes").or_else(|| const_ints(1));
            if op == "Squeeze" {
                let Some(axes) = axes else {
                    // Without axes every dimension of size 1 goes, which needs fixed dims.
                    if d.iter().all(|x| x.as_fixed().is_some()) {
                        return vec![tensor(
                            e,
                            d.into_iter().filter(|x| x.as_fixed() != Some(1)).collect(),
                        )];
                    }
                    return vec![unranked(e)];
                };
                let axes: Vec<usize> = axes.iter().filter_map(|&a| norm(a, d.len())).collect();
                vec![tensor(
                    e,
                    d.into_iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, x)| x)
                        .collect(),
                )]
            } else {
                let Some(axes) = axes else {
                    return vec![unranked(e)];
                };
                let r = d.len() + axes.len();
                let axes: Vec<usize> = axes.iter().filter_map(|&a| norm(a, r)).collect();
                let mut it = d.into_iter();
                let out: Vec<Dim> = (0..r)
                    .map(|i| {
                        if axes.contains(&i) {
                            Dim::fixed(1)
                        } else {
                            it.next().unwrap_or_else(Dim::unknown)
                        }
                    })
                    .collect();
                vec![tensor(e, out)]
            }
        }
        "Concat" => {
            let all: Option<Vec<(DType, Option<Vec<Dim>>)>> = ins.iter().map(parts).collect();
            let Some(all) = all else { return vec![None] };
            let Some(e) = all.first().map(|p| p.0) else {
                return vec![None];
            };
            let dims: Option<Vec<Vec<Dim>>> = all.into_iter().map(|p| p.1).collect();
            let Some(dims) = dims else {
                return vec![unranked(e)];
            };
            let r = dims[0].len();
            let Some(axis) = norm(attr_int(n, "axis", 0), r) else {
                return vec![None];
            };
            let mut out = dims[0].clone();
            let total: Option<i64> = dims
                .iter()
                .map(|d| d.get(axis).and_then(|x| x.as_fixed()))
                .sum();
            out[axis] = total.map(Dim::fixed).unwrap_or_else(Dim::unknown);
            vec![tensor(e, out)]
        }
        "MatMul" => {
            let (Some((e, Some(a))), Some((_, Some(b)))) =
                (first(), parts(ins.get(1).unwrap_or(&None)))
            else {
                return vec![first().map(|p| p.0).and_then(unranked)];
            };
            if a.is_empty() || b.is_empty() {
                return vec![None];
            }
            let (mut a2, mut b2) = (a.clone(), b.clone());
            if a2.len() == 1 {
                a2.insert(0, Dim::fixed(1));
            }
            if b2.len() == 1 {
                b2.push(Dim::fixed(1));
            }
            let batch = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
            let Some(mut out) = batch else {
                return vec![None];
            };
            if a.len() > 1 {
                out.push(a2[a2.len() - 2].clone());
            }
            if b.len() > 1 {
                out.push(b2[b2.len() - 1].clone());
            }
            vec![tensor(e, out)]
        }
        "Gemm" => {
            let (Some((e, Some(a))), Some((_, Some(b)))) =
                (first(), parts(ins.get(1).unwrap_or(&None)))
            else {
                return vec![None];
            };
            if a.len() != 2 || b.len() != 2 {
                return vec![None];
            }
            let m = if attr_int(n, "transA", 0) != 0 {
                a[1].clone()
            } else {
                a[0].clone()
            };
            let nn = if attr_int(n, "transB", 0) != 0 {
                b[0].clone()
            } else {
                b[1].clone()
            };
            vec![tensor(e, vec![m, nn])]
        }
        "Conv" | "MaxPool" | "AveragePool" | "LpPool" => {
            let Some((e, Some(x))) = first() else {
                return vec![None];
            };
            if x.len() < 3 {
                return vec![None];
            }
            let spatial = x.len() - 2;
            let kernel: Vec<i64> = if op == "Conv" {
                match parts(ins.get(1).unwrap_or(&None)) {
                    Some((_, Some(w))) if w.len() == x.len() => match w[2..]
                        .iter()
                        .map(|d| d.as_fixed())
                        .collect::<Option<Vec<_>>>()
                    {
                        Some(k) => k,
                        None => attr_ints(n, "kernel_shape").unwrap_or_default(),
                    },
                    _ => attr_ints(n, "kernel_shape").unwrap_or_default(),
                }
            } else {
                attr_ints(n, "kernel_shape").unwrap_or_default()
            };
            if kernel.len() != spatial {
                return vec![None];
            }
            let channels = if op == "Conv" {
                match parts(ins.get(1).unwrap_or(&None)) {
                    Some((_, Some(w))) if !w.is_empty() => w[0].clone(),
                    _ => Dim::unknown(),
                }
            } else {
                x[1].clone()
            };
            let strides = attr_ints(n, "strides").unwrap_or_else(|| vec![1; spatial]);
            let dil = attr_ints(n, "dilations").unwrap_or_else(|| vec![1; spatial]);
            let pads = attr_ints(n, "pads").unwrap_or_else(|| vec![0; 2 * spatial]);
            let auto_pad = n
                .attr("auto_pad")
                .and_then(|a| a.value.as_str())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .unwrap_or_default();
            let ceil = attr_int(n, "ceil_mode", 0) != 0;
            let mut out = vec![x[0].clone(), channels];
            for i in 0..spatial {
                let (s, d) = (*strides.get(i).unwrap_or(&1), *dil.get(i).unwrap_or(&1));
                out.push(match x[2 + i].as_fixed() {
                    Some(len) if s > 0 => {
                        let ek = d * (kernel[i] - 1) + 1;
                        let v = match auto_pad.as_str() {
                            "SAME_UPPER" | "SAME_LOWER" => (len + s - 1) / s,
                            "VALID" => (len - ek) / s + 1,
                            _ => {
                                let p =
                                    pads.get(i).unwrap_or(&0) + pads.get(i + spatial).unwrap_or(&0);
                                let num = len + p - ek;
                                if ceil {
                                    (num + s - 1) / s + 1
                                } else {
                                    num / s + 1
                                }
                            }
                        };
                        Dim::fixed(v)
                    }
                    _ => Dim::unknown(),
                });
            }
            let mut v = vec![tensor(e, out.clone())];
            if op == "MaxPool" {
                v.push(tensor(DType::I64, out));
            }
            v
        }
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let Some((e, Some(x))) = first() else {
                return vec![None];
            };
            let mut out = x.clone();
            for d in out.iter_mut().skip(2) {
                *d = Dim::fixed(1);
            }
            vec![tensor(e, out)]
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL1"
        | "ReduceL2" | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" | "ArgMax"
        | "ArgMin" => {
            let Some((e, Some(x))) = first() else {
                return vec![None];
            };
            let keep = attr_int(n, "keepdims", 1) != 0;
            let e = if op.starts_with("Arg") { DType::I64 } else { e };
            let axes: Option<Vec<i64>> = if op.starts_with("Arg") {
                Some(vec![attr_int(n, "axis", 0)])
            } else {
                attr_ints(n, "axes").or_else(|| const_ints(1))
            };
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => a.iter().filter_map(|&a| norm(a, x.len())).collect(),
                // Axes given as an input whose value is not known here.
                Some(_) | None
                    if n.inputs.get(1).is_some_and(|v| v.is_some()) && !op.starts_with("Arg") =>
                {
                    return vec![None]
                }
                _ => {
                    if attr_int(n, "noop_with_empty_axes", 0) != 0 {
                        return vec![tensor(e, x)];
                    }
                    (0..x.len()).collect()
                }
            };
            let out: Vec<Dim> = x
                .into_iter()
                .enumerate()
                .filter_map(|(i, d)| {
                    if axes.contains(&i) {
                        keep.then(|| Dim::fixed(1))
                    } else {
                        Some(d)
                    }
                })
                .collect();
            vec![tensor(e, out)]
        }
        "Gather" => {
            let (Some((e, Some(x))), Some((_, Some(idx)))) =
                (first(), parts(ins.get(1).unwrap_or(&None)))
            else {
                return vec![None];
            };
            let Some(axis) = norm(attr_int(n, "axis", 0), x.len()) else {
                return vec![None];
            };
            let mut out = x[..axis].to_vec();
            out.extend(idx);
            out.extend_from_slice(&x[axis + 1..]);
            vec![tensor(e, out)]
        }
        "Unique" | "NonZero" | "Compress" => vec![],
        "ConstantOfShape" => {
            let elem = match n.attr("value").map(|a| &a.value) {
                Some(AttrValue::Tensor(t)) => t.dtype,
                _ => DType::F32,
            };
            match const_ints(0) {
                Some(s) => vec![tensor(elem, s.into_iter().map(Dim::fixed).collect())],
                None => vec![match parts(ins.first().unwrap_or(&None)) {
                    Some((_, Some(d))) if d.len() == 1 => match d[0].as_fixed() {
                        Some(r) => tensor(elem, vec![Dim::unknown(); r.max(0) as usize]),
                        None => unranked(elem),
                    },
                    _ => unranked(elem),
                }],
            }
        }
        "Constant" => {
            let t = n.attrs.first().map(|a| (&a.name, &a.value));
            vec![match t {
                Some((_, AttrValue::Tensor(t))) => {
                    tensor(t.dtype, t.dims.iter().map(|&d| Dim::fixed(d)).collect())
                }
                Some((k, AttrValue::Float(_))) if k == "value_float" => tensor(DType::F32, vec![]),
                Some((k, AttrValue::Int(_))) if k == "value_int" => tensor(DType::I64, vec![]),
                Some((_, AttrValue::Floats(v))) => {
                    tensor(DType::F32, vec![Dim::fixed(v.len() as i64)])
                }
                Some((_, AttrValue::Ints(v))) => {
                    tensor(DType::I64, vec![Dim::fixed(v.len() as i64)])
                }
                _ => None,
            }]
        }
        "Expand" => {
            let Some((e, d)) = first() else {
                return vec![None];
            };
            match (d, const_ints(1)) {
                (Some(d), Some(s)) => {
                    let s: Vec<Dim> = s.into_iter().map(Dim::fixed).collect();
                    vec![broadcast(&d, &s).and_then(|o| tensor(e, o))]
                }
                _ => vec![unranked(e)],
            }
        }
        "Slice" if slice_dims(n, ins, consts, opset).is_some() => {
            let (e, dims) = slice_dims(n, ins, consts, opset).expect("checked");
            vec![tensor(e, dims)]
        }
        "LSTM" | "GRU" | "RNN" => recurrent::infer(n, ins),
        "Slice" | "Pad" | "Tile" | "Resize" | "Upsample" | "Range" | "TopK" | "Split"
        | "OneHot" | "DepthToSpace" | "SpaceToDepth" | "ScatterND" | "ScatterElements"
        | "GatherElements" | "GatherND" | "ConvTranspose" | "Einsum" => {
            // The rank is known for the rank-preserving ops; dims need values.
            let Some((e, d)) = first() else {
                return vec![None];
            };
            match op {
                "Slice" | "Pad" | "Tile" | "Resize" | "Upsample" | "ScatterND"
                | "ScatterElements" | "DepthToSpace" | "SpaceToDepth" | "ConvTranspose" => {
                    let keep_rank = |d: Option<Vec<Dim>>| d.map(|d| vec![Dim::unknown(); d.len()]);
                    let out = if matches!(op, "ScatterND" | "ScatterElements") {
                        d
                    } else {
                        keep_rank(d)
                    };
                    vec![match out {
                        Some(o) => tensor(e, o),
                        None => unranked(e),
                    }]
                }
                _ => vec![],
            }
        }
        _ => vec![],
    }
}
