//! Graph edits shared by the passes: reading constants, counting uses (including
//! the names subgraphs read from their enclosing graph), replacing a value by
//! another while keeping graph outputs' names, fresh names, and tidying.
//!
//! ```
//! use modc::pass::edit;
//! let mut m = modc::parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Identity(%x)\n  %y = Relu(%a)\n  return %y\n}\n").unwrap();
//! let g = &mut m.graph;
//! let y = g.outputs[0];
//! let relu = g.producer(y).unwrap();
//! let a = g.node(relu).inputs[0].unwrap();
//! let x = g.inputs[0];
//! edit::replace_value(g, a, x);
//! assert_eq!(g.node(relu).inputs[0], Some(x));
//! ```

use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Initializer, Node, NodeId, Value, ValueDef, ValueId};
use crate::ir::tensor::Tensor;
use std::collections::{HashMap, HashSet};

/// True for ops of the default ONNX domain.
pub fn is_onnx(n: &Node) -> bool {
    n.domain.is_empty() || n.domain == "ai.onnx"
}

/// True when `n` is the default-domain op `op`.
pub fn is_op(n: &Node, op: &str) -> bool {
    n.op_type == op && is_onnx(n)
}

/// The tensor of a constant value: a dense initializer that is not a graph input
/// (an input's default can be overridden), or the `value` of a Constant node.
pub fn const_tensor(g: &Graph, v: ValueId) -> Option<&Tensor> {
    let val = g.value(v);
    match val.def {
        ValueDef::Const => match &val.init {
            Some(Initializer::Dense(t)) => Some(t),
            _ => None,
        },
        ValueDef::Node { node, .. } if g.contains_node(node) => {
            let n = g.node(node);
            if !is_op(n, "Constant") {
                return None;
            }
            match n.attr("value").map(|a| &a.value) {
                Some(AttrValue::Tensor(t)) => Some(t),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The value of a constant (see [`const_tensor`]) converted for computing, and the
/// other forms of Constant (`value_float`, `value_ints`, ...).
pub fn const_value(g: &Graph, v: ValueId) -> Option<TensorValue> {
    if let Some(t) = const_tensor(g, v) {
        return TensorValue::from_tensor(t).ok();
    }
    let ValueDef::Node { node, .. } = g.value(v).def else {
        return None;
    };
    if !g.contains_node(node) || !is_op(g.node(node), "Constant") {
        return None;
    }
    let a = g.node(node).attrs.first()?;
    if a.ref_attr_name.is_some() {
        return None;
    }
    match (a.name.as_str(), &a.value) {
        ("value_float", AttrValue::Float(f)) => Some(TensorValue::from_f32(&[], vec![*f])),
        ("value_floats", AttrValue::Floats(f)) => {
            Some(TensorValue::from_f32(&[f.len()], f.clone()))
        }
        ("value_int", AttrValue::Int(i)) => Some(TensorValue::from_i64(&[], vec![*i])),
        ("value_ints", AttrValue::Ints(i)) => Some(TensorValue::from_i64(&[i.len()], i.clone())),
        _ => None,
    }
}

/// The constant as a list of integers (shapes, axes, pads), when it is one.
pub fn const_i64s(g: &Graph, v: ValueId) -> Option<Vec<i64>> {
    const_value(g, v)?.to_i64_vec()
}

/// The constant as f64s, when it is a numeric constant.
pub fn const_f64s(g: &Graph, v: ValueId) -> Option<Vec<f64>> {
    const_value(g, v)?.to_f64_vec()
}

/// True when `v` is a constant (initializer or Constant node output).
pub fn is_const(g: &Graph, v: ValueId) -> bool {
    const_tensor(g, v).is_some() || const_value(g, v).is_some()
}

/// Names read by the subgraphs of `g`'s nodes from enclosing scopes (nested
/// subgraphs included).
pub fn subgraph_reads(g: &Graph) -> HashSet<String> {
    let mut out = HashSet::new();
    for (_, n) in g.nodes() {
        for a in &n.attrs {
            for sub in a.value.graphs() {
                collect_outer_reads(sub, &mut out);
            }
        }
    }
    out
}

fn collect_outer_reads(g: &Graph, out: &mut HashSet<String>) {
    for v in g.outer_values() {
        out.insert(g.value(v).name.clone());
    }
    for (_, n) in g.nodes() {
        for a in &n.attrs {
            for sub in a.value.graphs() {
                collect_outer_reads(sub, out);
            }
        }
    }
}

/// How often each value is read: by node inputs, as a graph output, and by name
/// from subgraphs.
pub fn use_counts(g: &Graph) -> HashMap<ValueId, usize> {
    let mut m: HashMap<ValueId, usize> = HashMap::new();
    for (_, n) in g.nodes() {
        for v in n.inputs.iter().flatten() {
            *m.entry(*v).or_default() += 1;
        }
    }
    for v in &g.outputs {
        *m.entry(*v).or_default() += 1;
    }
    let reads = subgraph_reads(g);
    if !reads.is_empty() {
        for v in g.value_ids() {
            if reads.contains(&g.value(v).name) {
                *m.entry(v).or_default() += 1;
            }
        }
    }
    m
}

/// Renames the outer reads of `from` to `to` in every subgraph of `g`.
pub fn rename_outer_reads(g: &mut Graph, from: &str, to: &str) {
    let ids: Vec<NodeId> = g.node_ids().collect();
    for n in ids {
        for a in &mut g.node_mut(n).attrs {
            for sub in a.value.graphs_mut() {
                rename_in_subgraph(sub, from, to);
            }
        }
    }
}

/// Renames the reads of the outer name `from` to `to` inside the subgraph `g` (and
/// its own subgraphs).
pub fn rename_in_subgraph(g: &mut Graph, from: &str, to: &str) {
    let outer: Vec<ValueId> = g.outer_values();
    for v in outer {
        if g.value(v).name == from {
            g.value_mut(v).name = to.to_string();
        }
    }
    rename_outer_reads(g, from, to);
}

/// Makes every reader of `old` read `new` instead: node inputs, subgraphs that read
/// `old` by name, and graph outputs. A graph output keeps its name: `new` takes the
/// name when it is an ordinary node output, otherwise an Identity node gives
/// `new`'s data the output's name. `old`'s producer is left in place (dead-code
/// elimination removes it).
pub fn replace_value(g: &mut Graph, old: ValueId, new: ValueId) {
    if old == new {
        return;
    }
    let ids: Vec<NodeId> = g.node_ids().collect();
    for n in ids {
        for slot in g.node_mut(n).inputs.iter_mut() {
            if *slot == Some(old) {
                *slot = Some(new);
            }
        }
    }
    let old_name = g.value(old).name.clone();
    let is_output = g.outputs.contains(&old);
    if !is_output {
        let new_name = g.value(new).name.clone();
        rename_outer_reads(g, &old_name, &new_name);
        return;
    }
    let new_is_plain = matches!(g.value(new).def, ValueDef::Node { .. })
        && !g.outputs.contains(&new)
        && !g.inputs.contains(&new);
    if new_is_plain {
        // `new` takes the output's name; `old` gets a spare name.
        let new_name = g.value(new).name.clone();
        let spare = NameGen::new(g).fresh(&format!("{old_name}_replaced"));
        g.value_mut(old).name = spare;
        g.value_mut(new).name = old_name.clone();
        if g.value(new).ty.is_none() {
            g.value_mut(new).ty = g.value(old).ty.clone();
        }
        rename_outer_reads(g, &new_name, &old_name);
        for o in g.outputs.iter_mut() {
            if *o == old {
                *o = new;
            }
        }
    } else {
        // Detach `old` from its producer and define it by Identity(new).
        if let ValueDef::Node { node, slot } = g.value(old).def {
            if g.contains_node(node) {
                let spare_name = NameGen::new(g).fresh(&format!("{old_name}_unused"));
                let spare = g.add_value(Value::new(&spare_name, ValueDef::Node { node, slot }));
                g.value_mut(spare).ty = g.value(old).ty.clone();
                g.node_mut(node).outputs[slot] = Some(spare);
            }
        }
        let id = Node {
            inputs: vec![Some(new)],
            outputs: vec![Some(old)],
            ..Node::new("Identity", "", vec![])
        };
        g.push_node(id);
        g.value_mut(old).init = None;
        g.initializers.retain(|&v| v != old);
    }
}

/// Fresh value names that collide with nothing in a graph (or its subgraphs).
pub struct NameGen {
    taken: HashSet<String>,
}

impl NameGen {
    pub fn new(g: &Graph) -> NameGen {
        let mut taken = HashSet::new();
        collect_names(g, &mut taken);
        NameGen { taken }
    }

    /// `base` if free, else `base_1`, `base_2`, ...
    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 1;
        while self.taken.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

fn collect_names(g: &Graph, out: &mut HashSet<String>) {
    for v in g.value_ids() {
        out.insert(g.value(v).name.clone());
    }
    for (_, n) in g.nodes() {
        for a in &n.attrs {
            for sub in a.value.graphs() {
                collect_names(sub, out);
            }
        }
    }
}

/// Adds a constant initializer holding `t`, named after `base` (fresh).
pub fn add_const_value(g: &mut Graph, names: &mut NameGen, base: &str, t: &TensorValue) -> ValueId {
    let name = names.fresh(base);
    let tensor = t.to_tensor(&name);
    let id = g.add_const(tensor);
    g.value_mut(id).ty = Some(crate::ir::types::Type::tensor(
        t.dtype(),
        crate::ir::types::Shape::fixed(&t.shape().iter().map(|&d| d as i64).collect::<Vec<_>>()),
    ));
    id
}

/// Adds a node reading `inputs` with one fresh output named after `base`; returns
/// the node and its output.
pub fn add_node1(
    g: &mut Graph,
    names: &mut NameGen,
    op: &str,
    inputs: Vec<Option<ValueId>>,
    attrs: Vec<Attr>,
    base: &str,
) -> (NodeId, ValueId) {
    let name = names.fresh(base);
    let (id, outs) = g.add_node(op, "", inputs, &[name.as_str()], attrs);
    (id, outs[0])
}

/// Drops `value_info` entries of values no longer defined (their node removed).
pub fn tidy_value_info(g: &mut Graph) {
    let keep: Vec<ValueId> = g
        .value_info
        .iter()
        .copied()
        .filter(|&v| match g.value(v).def {
            ValueDef::Node { node, slot } => {
                g.contains_node(node) && g.node(node).outputs.get(slot) == Some(&Some(v))
            }
            ValueDef::Const => g.initializers.contains(&v),
            _ => true,
        })
        .collect();
    g.value_info = keep;
}

/// Nodes counted the way the optimizer comparisons count them: every node,
/// subgraphs included, except Constant nodes and ConstantOfShape nodes whose shape
/// is constant (both are stored weights in another form). A fused node counts as
/// one: it is one kernel, and its body is that kernel's implementation, not nodes
/// of the graph.
pub fn counted_nodes(g: &Graph) -> usize {
    g.nodes()
        .map(|(_, n)| {
            if crate::fused::is_fused(n) {
                return 1;
            }
            let own = if is_op(n, "Constant")
                || (is_op(n, "ConstantOfShape")
                    && n.inputs
                        .first()
                        .copied()
                        .flatten()
                        .is_some_and(|s| is_const(g, s)))
            {
                0
            } else {
                1
            };
            own + n
                .attrs
                .iter()
                .flat_map(|a| a.value.graphs())
                .map(counted_nodes)
                .sum::<usize>()
        })
        .sum()
}

/// True when [`replace_value`] would have to add an Identity node (`old` is a graph
/// output and `new` is a graph input, an initializer, another graph output or an
/// outer value): a pass removing a no-op must then keep it.
pub fn replace_needs_identity(g: &Graph, old: ValueId, new: ValueId) -> bool {
    g.outputs.contains(&old)
        && (!matches!(g.value(new).def, ValueDef::Node { .. })
            || g.outputs.contains(&new)
            || g.inputs.contains(&new))
}

/// IR versions before 4 list every initializer as a graph input too. Inside
/// passes such inputs are constants (as every ONNX runtime treats them); this
/// turns them into `Const` values. [`ir3_consts_to_inputs`] undoes it.
pub fn ir3_inputs_to_consts(m: &mut crate::ir::model::Model) {
    if m.ir_version.is_some_and(|v| v >= 4) {
        return;
    }
    let g = &mut m.graph;
    let inits: HashSet<ValueId> = g.initializers.iter().copied().collect();
    let promoted: Vec<ValueId> = g
        .inputs
        .iter()
        .copied()
        .filter(|v| inits.contains(v))
        .collect();
    for v in &promoted {
        g.value_mut(*v).def = ValueDef::Const;
    }
    g.inputs.retain(|v| !promoted.contains(v));
}

/// Lists every constant initializer of the main graph as a graph input again
/// when the model's IR version is before 4 (see [`ir3_inputs_to_consts`]).
pub fn ir3_consts_to_inputs(m: &mut crate::ir::model::Model) {
    if m.ir_version.is_some_and(|v| v >= 4) {
        return;
    }
    let g = &mut m.graph;
    for v in g.initializers.clone() {
        if g.value(v).def != ValueDef::Const {
            continue;
        }
        if let Some(Initializer::Dense(t)) = &g.value(v).init {
            let ty =
                crate::ir::types::Type::tensor(t.dtype, crate::ir::types::Shape::fixed(&t.dims));
            g.value_mut(v).ty = Some(ty);
        }
        g.value_mut(v).def = ValueDef::Input;
        g.inputs.push(v);
    }
}
