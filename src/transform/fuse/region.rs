//! A graph region to an e-graph, and the extracted choice back to graph nodes.
//!
//! The region is every node of the default domain with one output, no subgraph
//! and attributes of plain kinds (no random ops, no Constant). Inputs from outside
//! it are leaves, or constants when they are small initializers. Reductions whose
//! axes are an attribute (ReduceSum before opset 13, the others before 18) get
//! them as a constant input inside the e-graph, so that one rule covers every
//! opset; they go back to the attribute when the opset needs it.
//!
//! Writing back removes the region's nodes and emits the chosen node of each
//! needed e-class once. A value the outside reads keeps its id and name; an
//! emitted node reuses the name of an original value of its e-class.

use super::extract::Choice;
use super::lang::{is_reduce, FuseGraph, Info, ONode, Region};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Node, NodeId, Value, ValueDef, ValueId};
use crate::ir::types::Type;
use crate::pass::edit;
use egg::{Id, Language, Symbol};
use std::collections::{HashMap, HashSet};

/// Constants up to this many elements are e-graph constants (with a value).
const CONST_MAX_ELEMS: u64 = 1 << 16;

const EXCLUDED: &[&str] = &[
    "Constant",
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
];

/// A converted region.
pub struct Built {
    pub eg: FuseGraph,
    /// The region's nodes.
    pub nodes: Vec<NodeId>,
    /// Values read from outside the region: (value, e-class).
    pub roots: Vec<(ValueId, Id)>,
    /// Every region value with its e-class and original e-node.
    pub values: Vec<(ValueId, Id, ONode)>,
    /// Leaves by name.
    pub leaves: HashMap<Symbol, ValueId>,
    /// Constant ids that came from a graph value.
    pub const_values: HashMap<u32, ValueId>,
}

fn in_region(n: &Node) -> bool {
    edit::is_onnx(n)
        && n.outputs.len() == 1
        && n.outputs[0].is_some()
        && !EXCLUDED.contains(&n.op_type.as_str())
        && !n.op_type.starts_with("Sequence")
        && !n.op_type.starts_with("Optional")
        && super::lang::convertible_attrs(&n.attrs)
}

fn info_of(ty: &Option<Type>) -> Info {
    match ty.as_ref().and_then(|t| t.as_tensor()) {
        Some((dtype, shape)) => Info {
            dtype: Some(dtype),
            shape: shape.map(|s| s.dims.clone()),
            ..Info::default()
        },
        None => Info::default(),
    }
}

/// Attribute defaults written out on conversion, so that rules can name them.
fn attr_defaults(op: &str) -> Vec<(&'static str, AttrValue)> {
    match op {
        "Elu" => vec![("alpha", AttrValue::Float(1.0))],
        "HardSigmoid" => vec![
            ("alpha", AttrValue::Float(0.2)),
            ("beta", AttrValue::Float(0.5)),
        ],
        "LeakyRelu" => vec![("alpha", AttrValue::Float(0.01))],
        _ => vec![],
    }
}

/// Writes a Softmax's or LogSoftmax's axis out, non-negative, when its input's
/// rank is known (one spelling per axis, so rules can name it: `Softmax{axis=3}`).
fn normalise_softmax_axis(
    g: &Graph,
    node: &crate::ir::graph::Node,
    opset: i64,
    attrs: &mut Vec<Attr>,
) {
    let rank = node.inputs.first().copied().flatten().and_then(|v| {
        g.value(v)
            .ty
            .as_ref()?
            .as_tensor()?
            .1
            .map(|s| s.rank() as i64)
    });
    let Some(rank) = rank else {
        return;
    };
    let given = attrs.iter().position(|a| a.name == "axis");
    let axis = match given {
        Some(i) => match attrs[i].value.as_int() {
            Some(a) => a,
            None => return,
        },
        None if opset >= 13 => -1,
        None => 1,
    };
    if !(-rank..rank).contains(&axis) {
        return;
    }
    let axis = if axis < 0 { axis + rank } else { axis };
    if let Some(i) = given {
        attrs.remove(i);
    }
    attrs.push(Attr::new("axis", AttrValue::Int(axis)));
}

/// Whether the reduction `op` takes `axes` as an input at `opset`.
fn axes_is_input(op: &str, opset: i64) -> bool {
    if op == "ReduceSum" {
        opset >= 13
    } else {
        opset >= 18
    }
}

/// Builds the e-graph of `g`'s region; `None` when the region is empty.
pub fn build(g: &Graph, opset: i64) -> Option<Built> {
    let order = g.topo_order().ok()?;
    let nodes: Vec<NodeId> = order
        .into_iter()
        .filter(|&n| in_region(g.node(n)))
        .collect();
    if nodes.is_empty() {
        return None;
    }
    let region_set: HashSet<NodeId> = nodes.iter().copied().collect();
    let mut eg = FuseGraph::new(Region {
        opset,
        ..Region::default()
    });
    let mut class_of: HashMap<ValueId, Id> = HashMap::new();
    let mut leaves: HashMap<Symbol, ValueId> = HashMap::new();
    let mut const_values: HashMap<u32, ValueId> = HashMap::new();
    let mut values = Vec::new();
    let mut outer = |eg: &mut FuseGraph, v: Option<ValueId>| -> Id {
        let Some(v) = v else {
            return eg.add(ONode::Leaf(Symbol::from("")));
        };
        let small = edit::const_tensor(g, v).is_some_and(|t| {
            t.dims
                .iter()
                .try_fold(1u64, |a, &d| a.checked_mul(d as u64))
                .is_some_and(|n| n <= CONST_MAX_ELEMS)
        });
        if small {
            if let Some(t) = edit::const_value(g, v) {
                let node = eg.analysis.intern_const(t);
                if let ONode::Const { id, .. } = node {
                    const_values.entry(id).or_insert(v);
                }
                return eg.add(node);
            }
        }
        let name = Symbol::from(g.value(v).name.as_str());
        leaves.insert(name, v);
        eg.analysis.leaf_info.insert(name, info_of(&g.value(v).ty));
        eg.add(ONode::Leaf(name))
    };
    for &n in &nodes {
        let node = g.node(n);
        let mut kids = Vec::with_capacity(node.inputs.len() + 1);
        for &inp in &node.inputs {
            let id = match inp.and_then(|v| class_of.get(&v).copied()) {
                Some(id) => id,
                None => outer(&mut eg, inp),
            };
            kids.push(id);
        }
        let mut attrs: Vec<Attr> = node.attrs.clone();
        for (name, value) in attr_defaults(&node.op_type) {
            if !attrs.iter().any(|a| a.name == *name) {
                attrs.push(Attr::new(name, value.clone()));
            }
        }
        if matches!(node.op_type.as_str(), "Softmax" | "LogSoftmax") {
            normalise_softmax_axis(g, node, opset, &mut attrs);
        }
        if is_reduce(&node.op_type) {
            let rank = node
                .inputs
                .first()
                .copied()
                .flatten()
                .and_then(|v| g.value(v).ty.as_ref()?.as_tensor()?.1.map(|s| s.rank()));
            let mut axes: Option<Vec<i64>> = None;
            if let Some(pos) = attrs.iter().position(|a| a.name == "axes") {
                let a = attrs.remove(pos);
                if let AttrValue::Ints(v) = &a.value {
                    if !axes_is_input(&node.op_type, opset) {
                        axes = Some(v.clone());
                    }
                }
            } else if kids.len() > 1 {
                axes = node.inputs[1].and_then(|v| edit::const_i64s(g, v));
            }
            // One spelling per axis set: sorted, non-negative.
            if let (Some(v), Some(rank)) = (axes.as_mut(), rank) {
                let r = rank as i64;
                if v.iter().all(|&a| (-r..r).contains(&a)) {
                    for a in v.iter_mut() {
                        if *a < 0 {
                            *a += r;
                        }
                    }
                    v.sort_unstable();
                    v.dedup();
                }
            }
            if let Some(axes) = axes.filter(|a| !a.is_empty()) {
                let t = crate::interp::value::TensorValue::from_i64(&[axes.len()], axes);
                let c = eg.analysis.intern_const(t);
                kids.truncate(1);
                kids.push(eg.add(c));
            }
            if !attrs.iter().any(|a| a.name == "keepdims") {
                attrs.push(Attr::new("keepdims", AttrValue::Int(1)));
            }
            let has_axes = kids.len() > 1;
            attrs.retain(|a| {
                !(a.name == "noop_with_empty_axes" && (has_axes || a.value.as_int() == Some(0)))
            });
        }
        let sym = eg.analysis.intern_attrs(attrs);
        let enode = ONode::op(&node.op_type, "", sym, kids);
        let id = eg.add(enode.clone());
        let out = node.outputs[0].expect("in_region checks");
        let known = info_of(&g.value(out).ty);
        let mut data = eg[id].data.clone();
        egg::Analysis::merge(&mut eg.analysis, &mut data, known);
        eg[id].data = data;
        class_of.insert(out, id);
        values.push((out, id, enode));
    }
    // Roots: region values read outside the region.
    let sub_reads = edit::subgraph_reads(g);
    let mut outside: HashSet<ValueId> = g.outputs.iter().copied().collect();
    for (id, n) in g.nodes() {
        if !region_set.contains(&id) {
            outside.extend(n.inputs.iter().flatten().copied());
        }
    }
    let roots = values
        .iter()
        .filter(|(v, _, _)| outside.contains(v) || sub_reads.contains(&g.value(*v).name))
        .map(|(v, id, _)| (*v, *id))
        .collect();
    eg.rebuild();
    Some(Built {
        eg,
        nodes,
        roots,
        values,
        leaves,
        const_values,
    })
}

/// The original graph as a choice (each value's own node).
pub fn original_choice(b: &Built) -> Choice {
    let mut c = Choice::new();
    for (_, id, n) in &b.values {
        let n = n.clone().map_children(|k| b.eg.find(k));
        c.entry(b.eg.find(*id)).or_insert(n);
    }
    // Leaves and constants choose themselves.
    for class in b.eg.classes() {
        if let Some(n) = class.nodes.iter().find(|n| n.is_leaf()) {
            c.entry(class.id).or_insert_with(|| n.clone());
        }
    }
    c
}

/// Error while writing back (the caller keeps the graph as it was).
#[derive(Debug)]
pub struct WriteError(pub String);

struct Writer<'a> {
    g: &'a mut Graph,
    b: &'a Built,
    choice: &'a Choice,
    opset: i64,
    emitted: HashMap<Id, Option<ValueId>>,
    /// Values available for reuse per class: roots first, then interior values.
    spare: HashMap<Id, Vec<ValueId>>,
    names: edit::NameGen,
    added: usize,
}

impl Writer<'_> {
    fn emit(&mut self, c: Id) -> Result<Option<ValueId>, WriteError> {
        let c = self.b.eg.find(c);
        if let Some(v) = self.emitted.get(&c) {
            return Ok(*v);
        }
        let node = self
            .choice
            .get(&c)
            .ok_or_else(|| WriteError(format!("no choice for e-class {c}")))?
            .clone();
        let v = match &node {
            ONode::Leaf(name) => {
                if name.as_str().is_empty() {
                    None
                } else {
                    Some(
                        *self
                            .b
                            .leaves
                            .get(name)
                            .ok_or_else(|| WriteError(format!("unknown leaf {name}")))?,
                    )
                }
            }
            ONode::Const { id, .. } => Some(match self.b.const_values.get(id) {
                Some(&v) => v,
                None => {
                    let t = self.b.eg.analysis.consts[*id as usize].clone();
                    edit::add_const_value(self.g, &mut self.names, "fused_const", &t)
                }
            }),
            ONode::Op {
                op,
                domain,
                attrs,
                children,
            } => {
                let mut inputs = Vec::with_capacity(children.len());
                for &k in children {
                    inputs.push(self.emit(k)?);
                }
                let mut attr_list = self
                    .b
                    .eg
                    .analysis
                    .attr_sets
                    .get(attrs)
                    .cloned()
                    .unwrap_or_default();
                if domain.as_str().is_empty()
                    && is_reduce(op.as_str())
                    && !axes_is_input(op.as_str(), self.opset)
                {
                    if inputs.len() > 1 {
                        let axes = inputs
                            .pop()
                            .flatten()
                            .and_then(|a| edit::const_i64s(self.g, a))
                            .ok_or_else(|| {
                                WriteError(format!(
                                    "{op}: axes are not constant at opset {}",
                                    self.opset
                                ))
                            })?;
                        attr_list.push(Attr::new("axes", AttrValue::Ints(axes)));
                    }
                    if op.as_str() != "ReduceSum" || self.opset < 13 {
                        attr_list.retain(|a| a.name != "noop_with_empty_axes");
                    }
                }
                attr_list.sort_by(|a, b| a.name.cmp(&b.name));
                while inputs.len() > 1 && inputs.last() == Some(&None) {
                    inputs.pop();
                }
                let out = match self.spare.get_mut(&c).and_then(|s| {
                    if s.is_empty() {
                        None
                    } else {
                        Some(s.remove(0))
                    }
                }) {
                    Some(v) => v,
                    None => {
                        let name = self
                            .names
                            .fresh(&format!("{}_fused", op.as_str().to_lowercase()));
                        let v = self.g.add_value(Value::new(&name, ValueDef::Outer));
                        let data = &self.b.eg[c].data;
                        if let (Some(dt), Some(shape)) = (data.dtype, &data.shape) {
                            self.g.value_mut(v).ty = Some(Type::tensor(
                                dt,
                                crate::ir::types::Shape::from_dims(shape.clone()),
                            ));
                        }
                        v
                    }
                };
                let n = Node {
                    inputs,
                    outputs: vec![Some(out)],
                    ..Node::new(op.as_str(), domain.as_str(), attr_list)
                };
                self.g.push_node(n);
                self.added += 1;
                Some(out)
            }
        };
        self.emitted.insert(c, v);
        Ok(v)
    }
}

/// Replaces the region by the chosen nodes. Returns the number of nodes written.
pub fn write_back(
    g: &mut Graph,
    b: &Built,
    choice: &Choice,
    opset: i64,
) -> Result<usize, WriteError> {
    let mut spare: HashMap<Id, Vec<ValueId>> = HashMap::new();
    for &(v, id) in &b.roots {
        spare.entry(b.eg.find(id)).or_default().push(v);
    }
    for (v, id, _) in &b.values {
        let e = spare.entry(b.eg.find(*id)).or_default();
        if !e.contains(v) {
            e.push(*v);
        }
    }
    for &n in &b.nodes {
        g.remove_node(n);
    }
    let names = edit::NameGen::new(g);
    let mut w = Writer {
        g,
        b,
        choice,
        opset,
        emitted: HashMap::new(),
        spare,
        names,
        added: 0,
    };
    let mut fixups = Vec::new();
    for &(v, id) in &b.roots {
        let got = w.emit(id)?;
        if got != Some(v) {
            fixups.push((v, got));
        }
    }
    let added = w.added;
    for (v, got) in fixups {
        let got = got.ok_or_else(|| WriteError("a root became an absent input".into()))?;
        edit::replace_value(g, v, got);
    }
    g.topo_order()
        .map_err(|_| WriteError("the rewrite would make a cycle".into()))?;
    Ok(added)
}
