//! Fused nodes: a group of nodes that becomes one kernel.
//!
//! A fused node is a node of modc's own domain ([`FUSED_DOMAIN`], op
//! [`FUSED_OP`]) with one graph attribute, `body`: the nodes it stands for. The
//! body's inputs are the node's inputs, one for one and in order, and its outputs
//! are the node's outputs. Unlike an If branch the body reads nothing from the
//! enclosing graph: it runs like a function call, so whatever it needs is an input,
//! or a small constant kept inside it. The interpreter runs the body, shape
//! inference infers it with the node's input types, the verifier checks it, and
//! ONNX export writes each fused node as the call of a model-local function
//! (identical bodies share one), which import turns back into a fused node.
//!
//! [`make_fused`] moves a group of nodes of a graph into a new fused node. Names
//! seen outside the group stay as they are (the node's outputs are the very values
//! the group produced), and the body keeps the names and types of the values
//! inside it. It does not decide what to group (the `fuse-kernels` pass does), and
//! refuses a group that would make a cycle (a path that leaves the group and comes
//! back into it).
//!
//! ```
//! use modc::{fused_body, make_fused, parse_model};
//! let mut m = parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Neg(%x)\n  %y = Exp(%a)\n  return %y\n}\n").unwrap();
//! let g = &mut m.graph;
//! let nodes: Vec<_> = g.node_ids().collect();
//! let f = make_fused(g, &nodes).unwrap();
//! assert_eq!(g.node_count(), 1);
//! assert_eq!(fused_body(g.node(f)).unwrap().node_count(), 2);
//! modc::verify(g).unwrap();
//! ```

use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Initializer, Node, NodeId, Value, ValueDef, ValueId};
use crate::ir::types::{Shape, Type};
use std::collections::{BTreeSet, HashMap, HashSet};

/// The domain of modc's own ops.
pub const FUSED_DOMAIN: &str = "ai.modc";
/// The op type of a fused node.
pub const FUSED_OP: &str = "Fused";
/// The version of the fused domain written in opset imports.
pub const FUSED_OPSET: i64 = 1;
/// The name of a fused node's graph attribute.
pub const FUSED_BODY: &str = "body";
/// Initializers of at most this many elements that a group reads are copied into
/// the body instead of becoming inputs of the fused node.
pub const SMALL_CONST_ELEMENTS: u64 = 64;

/// Why a group of nodes cannot become a fused node.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("graph '{graph}': cannot fuse the group: {message}")]
pub struct FuseError {
    pub graph: String,
    pub message: String,
}

/// Whether `n` is a fused node (it may still lack a valid body; see the verifier).
pub fn is_fused(n: &Node) -> bool {
    n.domain == FUSED_DOMAIN && n.op_type == FUSED_OP
}

/// The body of a fused node (`None` for other nodes or a missing body).
pub fn fused_body(n: &Node) -> Option<&Graph> {
    if !is_fused(n) {
        return None;
    }
    match &n.attr(FUSED_BODY)?.value {
        AttrValue::Graph(g) => Some(g),
        _ => None,
    }
}

/// The body of a fused node, mutable.
pub fn fused_body_mut(n: &mut Node) -> Option<&mut Graph> {
    if !is_fused(n) {
        return None;
    }
    match &mut n.attrs.iter_mut().find(|a| a.name == FUSED_BODY)?.value {
        AttrValue::Graph(g) => Some(g),
        _ => None,
    }
}

/// What is wrong with a fused node, if anything: a missing body, input or output
/// counts that differ from the body's, or a body that reads names of an enclosing
/// graph.
pub fn check_fused(n: &Node) -> Result<(), String> {
    let body = fused_body(n).ok_or("a fused node needs a graph attribute 'body'")?;
    if body.inputs.len() != n.inputs.len() {
        return Err(format!(
            "the node has {} inputs, its body {}",
            n.inputs.len(),
            body.inputs.len()
        ));
    }
    if body.outputs.len() != n.outputs.len() {
        return Err(format!(
            "the node has {} outputs, its body {}",
            n.outputs.len(),
            body.outputs.len()
        ));
    }
    let reads = outer_reads(body);
    if !reads.is_empty() {
        let names: Vec<&str> = reads.iter().take(5).map(|s| s.as_str()).collect();
        return Err(format!(
            "the body reads names of the enclosing graph ({}); a fused body may only read its inputs",
            names.join(", ")
        ));
    }
    Ok(())
}

/// Names `g` (or a subgraph nested in it) reads from graphs enclosing `g`: its own
/// outer values, and the outer reads of its subgraphs that `g` does not define.
pub fn outer_reads(g: &Graph) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = g
        .outer_values()
        .into_iter()
        .map(|v| g.value(v).name.clone())
        .collect();
    let mut nested = BTreeSet::new();
    for (_, n) in g.nodes() {
        for a in &n.attrs {
            for sub in a.value.graphs() {
                nested.extend(outer_reads(sub));
            }
        }
    }
    if !nested.is_empty() {
        let defined: HashSet<&str> = g
            .value_ids()
            .filter(|&v| g.value(v).def != ValueDef::Outer)
            .map(|v| g.value(v).name.as_str())
            .collect();
        out.extend(nested.into_iter().filter(|n| !defined.contains(n.as_str())));
    }
    out
}

/// Names the subgraphs of node `n` read from the graph holding `n`.
fn node_subgraph_reads(n: &Node) -> BTreeSet<String> {
    n.attrs
        .iter()
        .flat_map(|a| a.value.graphs())
        .flat_map(outer_reads)
        .collect()
}

/// The dependencies between the nodes of one graph: through node inputs and
/// through names that subgraphs read.
pub(crate) struct Deps {
    pub preds: HashMap<NodeId, Vec<NodeId>>,
    pub succs: HashMap<NodeId, Vec<NodeId>>,
    /// Values some subgraph reads by name.
    pub read_by_name: HashSet<ValueId>,
    /// Users of each value (by input edge or by name), without repeats.
    pub users: HashMap<ValueId, Vec<NodeId>>,
    /// Defined values by name (graph inputs, constants, outer values, outputs of
    /// live nodes).
    pub by_name: HashMap<String, ValueId>,
}

impl Deps {
    pub fn new(g: &Graph) -> Deps {
        let mut by_name: HashMap<String, ValueId> = HashMap::new();
        for v in g.value_ids() {
            let live = match g.value(v).def {
                ValueDef::Node { node, slot } => {
                    g.contains_node(node) && g.node(node).outputs.get(slot) == Some(&Some(v))
                }
                _ => true,
            };
            if live {
                by_name.insert(g.value(v).name.clone(), v);
            }
        }
        let mut d = Deps {
            preds: HashMap::new(),
            succs: HashMap::new(),
            read_by_name: HashSet::new(),
            users: HashMap::new(),
            by_name: HashMap::new(),
        };
        for (id, n) in g.nodes() {
            let mut reads: Vec<ValueId> = n.inputs.iter().flatten().copied().collect();
            for name in node_subgraph_reads(n) {
                if let Some(&v) = by_name.get(&name) {
                    d.read_by_name.insert(v);
                    reads.push(v);
                }
            }
            let mut preds = Vec::new();
            for v in reads {
                let users = d.users.entry(v).or_default();
                if !users.contains(&id) {
                    users.push(id);
                }
                if let Some(p) = g.producer(v) {
                    if !preds.contains(&p) {
                        preds.push(p);
                    }
                }
            }
            for &p in &preds {
                d.succs.entry(p).or_default().push(id);
            }
            d.preds.insert(id, preds);
        }
        d.by_name = by_name;
        d
    }

    pub fn succs_of(&self, n: NodeId) -> &[NodeId] {
        self.succs.get(&n).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn preds_of(&self, n: NodeId) -> &[NodeId] {
        self.preds.get(&n).map(|v| v.as_slice()).unwrap_or(&[])
    }

    /// A topological order (insertion order where dependencies allow), or `None`
    /// on a cycle.
    pub fn order(&self, g: &Graph) -> Option<Vec<NodeId>> {
        let mut indegree: HashMap<NodeId, usize> =
            g.node_ids().map(|n| (n, self.preds_of(n).len())).collect();
        let mut ready: std::collections::BinaryHeap<std::cmp::Reverse<NodeId>> = indegree
            .iter()
            .filter(|(_, &d)| d == 0)
            .map(|(&n, _)| std::cmp::Reverse(n))
            .collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(std::cmp::Reverse(n)) = ready.pop() {
            order.push(n);
            for &s in self.succs_of(n) {
                let d = indegree.get_mut(&s)?;
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse(s));
                }
            }
        }
        (order.len() == indegree.len()).then_some(order)
    }
}

fn describe(g: &Graph, n: NodeId) -> String {
    let name = crate::interp::node_name(g, n);
    format!("node '{name}' ({})", g.node(n).op_type)
}

/// Moves the nodes `nodes` of `g` into one new fused node and returns its id.
///
/// The node's inputs are the values the group reads that are defined outside it
/// (graph inputs, outer values, outputs of other nodes, initializers), in the
/// order the group first reads them; constants (initializers and Constant nodes)
/// of at most [`SMALL_CONST_ELEMENTS`] elements are copied into the body instead
/// (an initializer nothing else reads is then removed from `g`). Its outputs
/// are the values the group produces that something outside reads (a node, a
/// graph output), in the group's order; they keep their ids, names and types. The
/// body keeps the names and types of the values inside it.
///
/// Refused: an empty group, a node that is not in `g` or is listed twice, a group
/// with a path that leaves it and comes back (the fused node would be on a cycle),
/// and a group producing a value that a subgraph outside reads by name (subgraph
/// reads do not order nodes, so the reader could run before the fused node).
pub fn make_fused(g: &mut Graph, nodes: &[NodeId]) -> Result<NodeId, FuseError> {
    let gname = g.name.clone();
    let err = |message: String| FuseError {
        graph: gname.clone(),
        message,
    };
    if nodes.is_empty() {
        return Err(err("the group is empty".into()));
    }
    let mut group: HashSet<NodeId> = HashSet::new();
    for &n in nodes {
        if !g.contains_node(n) {
            return Err(err(format!("node #{} is not in the graph", n.0)));
        }
        if !group.insert(n) {
            return Err(err(format!("{} is listed twice", describe(g, n))));
        }
    }
    let deps = Deps::new(g);
    let order = deps
        .order(g)
        .ok_or_else(|| err("the graph has a cycle".into()))?;
    if let Some((from, via)) = leaves_and_returns(&deps, &group) {
        return Err(err(format!(
            "{} leads to {} outside the group and back into it; the fused node would be on a cycle",
            describe(g, from),
            describe(g, via)
        )));
    }
    let members: Vec<NodeId> = order.into_iter().filter(|n| group.contains(n)).collect();

    // Outputs: values read outside the group.
    let graph_outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let mut outputs: Vec<ValueId> = Vec::new();
    for &n in &members {
        for v in g.node(n).outputs.iter().flatten() {
            let outside_users: Vec<NodeId> = deps
                .users
                .get(v)
                .map(|u| u.iter().copied().filter(|u| !group.contains(u)).collect())
                .unwrap_or_default();
            if deps.read_by_name.contains(v)
                && outside_users
                    .iter()
                    .any(|&u| node_subgraph_reads(g.node(u)).contains(&g.value(*v).name))
            {
                return Err(err(format!(
                    "'{}' is read by name by a subgraph outside the group",
                    g.value(*v).name
                )));
            }
            if !outside_users.is_empty() || graph_outputs.contains(v) {
                outputs.push(*v);
            }
        }
    }

    // Inputs (and small constants copied in), in the order the group reads them.
    let produced: HashSet<ValueId> = members
        .iter()
        .flat_map(|&n| g.node(n).outputs.iter().flatten().copied())
        .collect();
    let mut inputs: Vec<ValueId> = Vec::new();
    let mut copied: Vec<(ValueId, crate::ir::tensor::Tensor)> = Vec::new();
    let mut seen: HashSet<ValueId> = HashSet::new();
    for &n in &members {
        let mut reads: Vec<ValueId> = g.node(n).inputs.iter().flatten().copied().collect();
        for name in node_subgraph_reads(g.node(n)) {
            let v = match deps.by_name.get(&name) {
                Some(&v) => v,
                // Defined further out than `g` (which does not read it itself).
                None => g.add_value(Value::new(&name, ValueDef::Outer)),
            };
            reads.push(v);
        }
        for v in reads {
            if produced.contains(&v) || !seen.insert(v) {
                continue;
            }
            match small_const(g, v) {
                Some(t) => copied.push((v, t)),
                None => inputs.push(v),
            }
        }
    }

    // The body.
    let mut body = Graph::new("fused");
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    for &v in &inputs {
        let val = g.value(v);
        let id = body.add_input(&val.name, val.ty.clone());
        map.insert(v, id);
    }
    let copied_ids: Vec<ValueId> = copied.iter().map(|(v, _)| *v).collect();
    for (v, t) in copied {
        let val = g.value(v);
        let mut c = Value::new(&val.name, ValueDef::Const);
        c.ty = Some(
            val.ty
                .clone()
                .unwrap_or_else(|| Type::tensor(t.dtype, Shape::fixed(&t.dims))),
        );
        c.init = Some(Initializer::Dense(t));
        let id = body.add_value(c);
        body.initializers.push(id);
        map.insert(v, id);
    }
    let body_outputs: HashSet<ValueId> = outputs.iter().copied().collect();
    for &n in &members {
        let node = g.node(n).clone();
        let ins = node
            .inputs
            .iter()
            .map(|s| s.map(|v| map[&v]))
            .collect::<Vec<_>>();
        let mut outs = Vec::with_capacity(node.outputs.len());
        for s in &node.outputs {
            outs.push(s.map(|v| {
                let old = g.value(v);
                let mut nv = Value::new(&old.name, ValueDef::Outer);
                nv.ty = old.ty.clone();
                nv.doc_string = old.doc_string.clone();
                nv.metadata_props = old.metadata_props.clone();
                let id = body.add_value(nv);
                if old.ty.is_some() && !body_outputs.contains(&v) {
                    body.value_info.push(id);
                }
                map.insert(v, id);
                id
            }));
        }
        body.push_node(Node {
            inputs: ins,
            outputs: outs,
            ..node
        });
    }
    body.outputs = outputs.iter().map(|v| map[v]).collect();

    for &n in &members {
        g.remove_node(n);
    }
    // Initializers now only the body reads move into it for good.
    let still_read: HashSet<ValueId> = g
        .nodes()
        .flat_map(|(_, n)| n.inputs.iter().flatten().copied())
        .chain(g.outputs.iter().copied())
        .collect();
    let moved: HashSet<ValueId> = copied_ids
        .into_iter()
        .filter(|v| {
            g.value(*v).def == ValueDef::Const
                && !still_read.contains(v)
                && !deps.read_by_name.contains(v)
        })
        .collect();
    if !moved.is_empty() {
        g.initializers.retain(|v| !moved.contains(v));
        g.value_info.retain(|v| !moved.contains(v));
        for &v in &moved {
            g.value_mut(v).init = None;
        }
    }
    let fused = Node {
        inputs: inputs.iter().map(|&v| Some(v)).collect(),
        outputs: outputs.iter().map(|&v| Some(v)).collect(),
        ..Node::new(
            FUSED_OP,
            FUSED_DOMAIN,
            vec![Attr::new(FUSED_BODY, AttrValue::Graph(Box::new(body)))],
        )
    };
    let id = g.push_node(fused);
    crate::pass::edit::tidy_value_info(g);
    Ok(id)
}

/// The data of `v` when it is a constant of at most [`SMALL_CONST_ELEMENTS`]
/// elements: a dense initializer that is not a graph input, or a Constant node's
/// output.
fn small_const(g: &Graph, v: ValueId) -> Option<crate::ir::tensor::Tensor> {
    let small = |n: Option<u64>| n.is_some_and(|c| c <= SMALL_CONST_ELEMENTS);
    let val = g.value(v);
    if val.def == ValueDef::Const {
        return match &val.init {
            Some(Initializer::Dense(t)) if small(t.num_elements()) => Some(t.clone()),
            _ => None,
        };
    }
    let t = crate::pass::edit::const_value(g, v)?;
    small(Some(t.len() as u64)).then(|| t.to_tensor(&val.name))
}

/// A path that leaves `group` and comes back: the group node it starts from and
/// the first outside node on it.
fn leaves_and_returns(deps: &Deps, group: &HashSet<NodeId>) -> Option<(NodeId, NodeId)> {
    let mut visited: HashSet<NodeId> = HashSet::new();
    for &start in group {
        for &first in deps.succs_of(start) {
            if group.contains(&first) || visited.contains(&first) {
                continue;
            }
            let mut stack = vec![first];
            visited.insert(first);
            while let Some(n) = stack.pop() {
                for &s in deps.succs_of(n) {
                    if group.contains(&s) {
                        return Some((start, first));
                    }
                    if visited.insert(s) {
                        stack.push(s);
                    }
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{parse_model, print_model};

    fn fuse_ops(text: &str, ops: &[&str]) -> (crate::ir::model::Model, Result<NodeId, FuseError>) {
        let mut m = parse_model(text).unwrap();
        let g = &mut m.graph;
        let nodes: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| ops.contains(&n.op_type.as_str()))
            .map(|(id, _)| id)
            .collect();
        let r = make_fused(g, &nodes);
        (m, r)
    }

    #[test]
    fn inputs_outputs_and_small_constants() {
        let t = "opset _=17\ngraph @g(%x: f32[2,3], %w: f32[3]) -> (%y, %z) {\n  %c = const f32[3] @c [1.0, 2.0, 3.0]\n  %a = Add(%x, %c) : f32[2,3]\n  %b = Mul(%a, %w) : f32[2,3]\n  %y = Exp(%b) : f32[2,3]\n  %z = Neg(%a) : f32[2,3]\n  return %y, %z\n}\n";
        let (m, r) = fuse_ops(t, &["Add", "Mul", "Exp"]);
        let g = &m.graph;
        let f = r.unwrap();
        crate::ir::verify::verify(g).unwrap();
        let node = g.node(f);
        let body = fused_body(node).unwrap();
        let names = |vs: &[ValueId], g: &Graph| -> Vec<String> {
            vs.iter().map(|&v| g.value(v).name.clone()).collect()
        };
        // The constant moved in; x and w are inputs; a (read by Neg) and y are outputs.
        assert_eq!(names(&body.inputs, body), ["x", "w"]);
        assert_eq!(body.initializers.len(), 1);
        assert!(g.initializers.is_empty(), "the constant moved for good");
        let outs: Vec<ValueId> = node.outputs.iter().flatten().copied().collect();
        assert_eq!(names(&outs, g), ["a", "y"]);
        assert_eq!(names(&body.outputs, body), ["a", "y"]);
        // The intermediate keeps its type inside the body.
        let b = body.find_value("b").unwrap();
        assert_eq!(body.value(b).ty.as_ref().unwrap().to_string(), "f32[2,3]");
        assert!(body.value_info.contains(&b));
        check_fused(node).unwrap();
    }

    #[test]
    fn refuses_a_group_with_a_path_out_and_back() {
        let t = "opset _=17\ngraph @g(%x: f32[2,2], %w: f32[2,2]) -> (%y) {\n  %a = Exp(%x)\n  %m = MatMul(%a, %w)\n  %y = Add(%a, %m)\n  return %y\n}\n";
        let (m, r) = fuse_ops(t, &["Exp", "Add"]);
        let e = r.unwrap_err();
        assert!(e.message.contains("cycle"), "{e}");
        assert!(e.to_string().contains("MatMul"), "{e}");
        assert_eq!(m.graph.node_count(), 3);
    }

    #[test]
    fn refuses_empty_and_repeated() {
        let t = "opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = Exp(%x)\n  return %y\n}\n";
        let mut m = parse_model(t).unwrap();
        assert!(make_fused(&mut m.graph, &[]).is_err());
        let n = m.graph.node_ids().next().unwrap();
        assert!(make_fused(&mut m.graph, &[n, n])
            .unwrap_err()
            .message
            .contains("twice"));
        assert!(make_fused(&mut m.graph, &[NodeId(7)]).is_err());
    }

    #[test]
    fn refuses_an_output_read_by_name_from_a_subgraph() {
        let t = "opset _=17\ngraph @g(%c: bool[], %x: f32[2]) -> (%y) {\n  %a = Exp(%x)\n  %b = Neg(%a)\n  %y = If(%c) {then_branch=graph @t() -> (%p) {\n    %p = Relu(%b)\n    return %p\n  }, else_branch=graph @e() -> (%q) {\n    %q = Relu(%a)\n    return %q\n  }}\n  return %y\n}\n";
        let (_, r) = fuse_ops(t, &["Exp", "Neg"]);
        assert!(r.unwrap_err().message.contains("by name"));
    }

    #[test]
    fn a_subgraph_inside_the_group_gets_what_it_reads_as_inputs() {
        let t = "opset _=17\ngraph @g(%c: bool[], %x: f32[2]) -> (%y) {\n  %a = Exp(%x)\n  %b = If(%c) {then_branch=graph @t() -> (%p) {\n    %p = Relu(%a)\n    return %p\n  }, else_branch=graph @e() -> (%q) {\n    %q = Neg(%x)\n    return %q\n  }}\n  %y = Neg(%b)\n  return %y\n}\n";
        let (m, r) = fuse_ops(t, &["If", "Neg"]);
        let f = r.unwrap();
        crate::ir::verify::verify(&m.graph).unwrap();
        let body = fused_body(m.graph.node(f)).unwrap();
        let ins: Vec<&str> = body
            .inputs
            .iter()
            .map(|&v| body.value(v).name.as_str())
            .collect();
        assert_eq!(ins, ["c", "a", "x"]);
        assert!(outer_reads(body).is_empty());
        let text = print_model(&m);
        assert_eq!(print_model(&parse_model(&text).unwrap()), text);
    }

    #[test]
    fn outer_reads_resolve_through_nested_graphs() {
        let t = "opset _=17\ngraph @g(%c: bool[], %x: f32[2]) -> (%y) {\n  %y = If(%c) {then_branch=graph @t() -> (%p) {\n    %k = Neg(%x)\n    %p = If(%c) {then_branch=graph @t2() -> (%r) {\n      %r = Relu(%k)\n      return %r\n    }, else_branch=graph @e2() -> (%s) {\n      %s = Relu(%x)\n      return %s\n    }}\n    return %p\n  }, else_branch=graph @e() -> (%q) {\n    %q = Neg(%x)\n    return %q\n  }}\n  return %y\n}\n";
        let m = parse_model(t).unwrap();
        let n = m.graph.node_ids().next().unwrap();
        let reads = node_subgraph_reads(m.graph.node(n));
        assert_eq!(reads.into_iter().collect::<Vec<_>>(), ["c", "x"]);
    }

    /// A model with a layer-norm-like group and an elementwise chain, each fused.
    const TWO_GROUPS: &str = "opset _=17\ngraph @g(%x: f32[batch,4], %s: f32[4], %k: f32[4,3]) -> (%y, %z, %m) {\n  %eps = const f32[] @eps [0.00001]\n  %m = ReduceMean(%x) {axes=[-1]} : f32[batch,1]\n  %d = Sub(%x, %m) : f32[batch,4]\n  %q = Mul(%d, %d) : f32[batch,4]\n  %v = ReduceMean(%q) {axes=[-1]} : f32[batch,1]\n  %e = Add(%v, %eps) : f32[batch,1]\n  %r = Sqrt(%e) : f32[batch,1]\n  %n = Div(%d, %r) : f32[batch,4]\n  %y = Mul(%n, %s) : f32[batch,4]\n  %w = MatMul(%y, %k)\n  %a = Neg(%w)\n  %z = Exp(%a)\n  return %y, %z, %m\n}\n";

    fn fuse_two_groups() -> (crate::ir::model::Model, crate::ir::model::Model) {
        let original = parse_model(TWO_GROUPS).unwrap();
        let mut m = original.clone();
        let g = &mut m.graph;
        let pick = |g: &Graph, ops: &[&str]| -> Vec<NodeId> {
            g.nodes()
                .filter(|(_, n)| ops.contains(&n.op_type.as_str()))
                .map(|(id, _)| id)
                .collect()
        };
        let norm = pick(g, &["ReduceMean", "Sub", "Mul", "Add", "Sqrt", "Div"]);
        make_fused(g, &norm).unwrap();
        let chain = pick(g, &["Neg", "Exp"]);
        make_fused(g, &chain).unwrap();
        crate::ir::verify::verify(g).unwrap();
        (original, m)
    }

    fn same_outputs(a: &crate::ir::model::Model, b: &crate::ir::model::Model) {
        use crate::pass::equiv::{check_equivalent, EquivOptions};
        let r = check_equivalent(a, b, &EquivOptions::default()).unwrap();
        assert!(r.runs > 0, "{r:?}");
    }

    #[test]
    fn the_interpreter_runs_fused_nodes() {
        let (original, m) = fuse_two_groups();
        assert_eq!(m.graph.node_count(), 3);
        assert_eq!(crate::pass::edit::counted_nodes(&m.graph), 3);
        same_outputs(&original, &m);
    }

    #[test]
    fn the_text_form_round_trips() {
        let (_, m) = fuse_two_groups();
        let text = crate::ir::text::print_model_with_data(&m, 16);
        assert!(text.contains("ai.modc::Fused("), "{text}");
        let back = parse_model(&text).unwrap();
        crate::ir::verify::verify(&back.graph).unwrap();
        assert_eq!(crate::ir::text::print_model_with_data(&back, 16), text);
        same_outputs(&m, &back);
    }

    #[test]
    fn onnx_export_writes_functions_and_import_restores_fused_nodes() {
        let (original, m) = fuse_two_groups();
        let before = print_model(&m);
        let p = crate::onnx::to_proto(&m).unwrap();
        assert_eq!(print_model(&m), before, "export must not change the model");
        assert_eq!(p.functions.len(), 2);
        assert!(p
            .functions
            .iter()
            .all(|f| f.domain.as_deref() == Some(FUSED_DOMAIN)));
        assert!(p
            .opset_import
            .iter()
            .any(|o| o.domain.as_deref() == Some(FUSED_DOMAIN) && o.version == Some(1)));
        let calls: Vec<&str> = p
            .graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .filter(|n| n.domain.as_deref() == Some(FUSED_DOMAIN))
            .map(|n| n.op_type.as_deref().unwrap())
            .collect();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.starts_with("fused_")));
        // Functions have no initializers: the epsilon is a Constant node.
        assert!(p.functions.iter().any(|f| f
            .node
            .iter()
            .any(|n| n.op_type.as_deref() == Some("Constant"))));

        let policy = crate::security::LoadPolicy::default();
        let here = std::path::Path::new(".");
        let back = crate::onnx::from_proto(p, here, here, &policy).unwrap();
        assert!(back.functions.is_empty());
        assert_eq!(back.opset_imports, m.opset_imports);
        let fused: Vec<&Node> = back
            .graph
            .nodes()
            .map(|(_, n)| n)
            .filter(|n| is_fused(n))
            .collect();
        assert_eq!(fused.len(), 2);
        let sizes: Vec<usize> = fused
            .iter()
            .map(|n| fused_body(n).unwrap().node_count())
            .collect();
        assert!(sizes.contains(&8) && sizes.contains(&2), "{sizes:?}");
        // The epsilon is an initializer of the body again.
        assert!(fused
            .iter()
            .any(|n| fused_body(n).unwrap().initializers.len() == 1));
        crate::ir::verify::verify(&back.graph).unwrap();
        same_outputs(&original, &back);
        // A second round trip changes nothing.
        let again =
            crate::onnx::from_proto(crate::onnx::to_proto(&back).unwrap(), here, here, &policy)
                .unwrap();
        assert_eq!(print_model(&again), print_model(&back));
    }

    #[test]
    fn a_saved_file_loads_back_with_fused_nodes() {
        let (original, m) = fuse_two_groups();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fused.onnx");
        crate::onnx::save(&m, &path, &Default::default()).unwrap();
        let back = crate::onnx::load(&path, &crate::security::LoadPolicy::default()).unwrap();
        assert_eq!(back.graph.nodes().filter(|(_, n)| is_fused(n)).count(), 2);
        same_outputs(&original, &back);
    }

    #[test]
    fn calls_that_do_not_fit_stay_function_calls() {
        let (original, m) = fuse_two_groups();
        let mut p = crate::onnx::to_proto(&m).unwrap();
        // A call with an extra input is not the function's body any more.
        let g = p.graph.as_mut().unwrap();
        let call = g
            .node
            .iter_mut()
            .find(|n| n.input.len() == 1 && n.domain.as_deref() == Some(FUSED_DOMAIN))
            .unwrap();
        call.input.push(String::new());
        let here = std::path::Path::new(".");
        let policy = crate::security::LoadPolicy::default();
        let back = crate::onnx::from_proto(p, here, here, &policy).unwrap();
        assert_eq!(back.functions.len(), 1);
        assert_eq!(back.graph.nodes().filter(|(_, n)| is_fused(n)).count(), 1);
        assert!(back.opset_version(FUSED_DOMAIN).is_some());
        same_outputs(&original, &back);
    }

    #[test]
    fn identical_bodies_share_one_function() {
        // The constants have other names but the same value.
        let t = "opset _=17\ngraph @g(%x: f32[4], %u: f32[4]) -> (%y, %z) {\n  %k1 = const f32[] @k1 [2.0]\n  %k2 = const f32[] @k2 [2.0]\n  %a = Mul(%x, %k1)\n  %y = Exp(%a)\n  %b = Mul(%u, %k2)\n  %z = Exp(%b)\n  %c = Neg(%y)\n  %w = Sigmoid(%c)\n  return %y, %z\n}\n";
        let mut m = parse_model(t).unwrap();
        let g = &mut m.graph;
        let by_out = |g: &Graph, names: &[&str]| -> Vec<NodeId> {
            names
                .iter()
                .map(|n| g.producer(g.find_value(n).unwrap()).unwrap())
                .collect()
        };
        for group in [["a", "y"], ["b", "z"], ["c", "w"]] {
            let nodes = by_out(g, &group);
            make_fused(g, &nodes).unwrap();
        }
        let p = crate::onnx::to_proto(&m).unwrap();
        // Mul+Exp twice (one function), Neg+Sigmoid once.
        assert_eq!(p.functions.len(), 2);
        let names: Vec<String> = p
            .functions
            .iter()
            .map(|f| f.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["fused_0", "fused_1"]);
    }

    #[test]
    fn shape_inference_types_the_outputs_from_the_body() {
        let (_, mut m) = fuse_two_groups();
        let g = &mut m.graph;
        // Forget every type the fused nodes' outputs and bodies had.
        let ids: Vec<NodeId> = g.node_ids().collect();
        for id in ids {
            let outs: Vec<ValueId> = g.node(id).outputs.iter().flatten().copied().collect();
            for v in outs {
                if !g.outputs.contains(&v) {
                    g.value_mut(v).ty = None;
                }
            }
            if let Some(b) = fused_body_mut(g.node_mut(id)) {
                let vs: Vec<ValueId> = b.value_ids().collect();
                for v in vs {
                    b.value_mut(v).ty = None;
                }
            }
        }
        crate::ops::shape_infer::infer_shapes(&mut m);
        let ty = |name: &str| {
            let v = m.graph.find_value(name).unwrap();
            m.graph.value(v).ty.as_ref().map(|t| t.to_string())
        };
        assert_eq!(ty("m").as_deref(), Some("f32[batch,1]"));
        assert_eq!(ty("z").as_deref(), Some("f32[batch,3]"));
        let chain = m.graph.producer(m.graph.find_value("z").unwrap()).unwrap();
        let body = fused_body(m.graph.node(chain)).unwrap();
        let a = body.find_value("a").unwrap();
        assert_eq!(
            body.value(a).ty.as_ref().unwrap().to_string(),
            "f32[batch,3]"
        );
        let w = body.inputs[0];
        assert_eq!(
            body.value(w).ty.as_ref().unwrap().to_string(),
            "f32[batch,3]"
        );
    }

    #[test]
    fn verify_rejects_bad_fused_nodes() {
        let ok = "opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = ai.modc::Fused(%x) {body=graph @fused(%a: f32[2]) -> (%b) {\n    %b = Neg(%a)\n    return %b\n  }}\n  return %y\n}\n";
        crate::ir::verify::verify(&parse_model(ok).unwrap().graph).unwrap();
        let reads_outer = ok.replace("%b = Neg(%a)", "%b = Neg(%x)");
        let e = crate::ir::verify::verify(&parse_model(&reads_outer).unwrap().graph).unwrap_err();
        assert!(e.message.contains("enclosing graph"), "{e}");
        let two_inputs = ok.replace("Fused(%x)", "Fused(%x, %x)");
        let e = crate::ir::verify::verify(&parse_model(&two_inputs).unwrap().graph).unwrap_err();
        assert!(e.message.contains("2 inputs"), "{e}");
        let no_body = "opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = ai.modc::Fused(%x)\n  return %y\n}\n";
        assert!(crate::ir::verify::verify(&parse_model(no_body).unwrap().graph).is_err());
        // The interpreter says what is wrong rather than failing on an unknown op.
        let m = parse_model(no_body).unwrap();
        let x = crate::interp::value::RtValue::Tensor(crate::interp::value::TensorValue::from_f32(
            &[2],
            vec![1.0, 2.0],
        ));
        let e = crate::interp::Interpreter::new(&m)
            .run(vec![("x".into(), x)])
            .unwrap_err();
        assert!(e.to_string().contains("body"), "{e}");
    }
}
