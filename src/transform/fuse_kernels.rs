//! Kernel grouping: connected groups of elementwise, reduction and view ops become
//! one fused node each (the `fuse-kernels` pass).
//!
//! [`group_kernels`] walks the graph in topological order. A node of a kernel
//! class (see [`KernelClasses`]) joins the groups of the nodes that produce its
//! inputs, one group at a time, as long as the merged group stays convex: no path
//! may leave it and come back, counting every other group as already contracted to
//! one node, so that the fused nodes never form a cycle among themselves either.
//! Each group of two or more nodes with at least one computing node (not only
//! views) then becomes one fused node (see [`crate::fused`]) with as many outputs
//! as values read outside it. An elementwise chain, a normalization or a softmax
//! written out in basic ops, with the reshapes around them, each end as one node.
//!
//! A group stops growing at [`MAX_GROUP_NODES`]; the next node starts a new one.
//!
//! What it does not do: choose between groupings by cost (it is greedy, in graph
//! order), join siblings that only share an input, touch ops of other domains,
//! nodes with subgraphs, or fused nodes (so running it again changes nothing), or
//! look inside fused bodies. Whether a group makes a good kernel (how its
//! reductions line up) is for the code generator to decide.
//!
//! ```
//! use modc::{group_kernels, parse_model, KernelClasses};
//! let mut m = parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Neg(%x)\n  %b = Exp(%a)\n  %y = Sigmoid(%b)\n  return %y\n}\n").unwrap();
//! assert_eq!(group_kernels(&mut m.graph, &KernelClasses::default()), 1);
//! assert_eq!(m.graph.node_count(), 1);
//! ```

use crate::fused::{is_fused, make_fused, Deps};
use crate::ir::graph::{Graph, NodeId};
use crate::ir::types::DimValue;
use crate::pass::edit::{is_const, is_onnx};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::{BTreeSet, HashMap, HashSet};

/// The most nodes one group may hold.
pub const MAX_GROUP_NODES: usize = 256;

/// The classes of ops a kernel may group, by op type of the default domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelClasses {
    /// One output element from the matching input elements (broadcasting allowed).
    pub elementwise: BTreeSet<String>,
    /// Reductions over axes, and the normalizations built on them.
    pub reduce: BTreeSet<String>,
    /// Data movement without arithmetic; grouped only with constant shape or axes
    /// inputs.
    pub view: BTreeSet<String>,
    /// Heavy ops (Conv, MatMul, Gemm) that may take an elementwise epilogue: the
    /// elementwise ops that follow one, at its output's shape, join its kernel.
    pub anchor: BTreeSet<String>,
}

/// The class of one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelClass {
    Elementwise,
    Reduce,
    View,
    Anchor,
}

impl Default for KernelClasses {
    /// The classes `passes/fusion.rules` declares (the one list of them).
    fn default() -> Self {
        crate::transform::fuse::rules::builtin_rules()
            .map(|set| crate::transform::fuse::kernel_classes(&set))
            .unwrap_or_else(|_| KernelClasses::empty())
    }
}

impl KernelClasses {
    /// No op in any class.
    pub fn empty() -> KernelClasses {
        KernelClasses {
            elementwise: BTreeSet::new(),
            reduce: BTreeSet::new(),
            view: BTreeSet::new(),
            anchor: BTreeSet::new(),
        }
    }

    /// Adds `op` to the class named `class` (`elementwise`, `reduce`, `view` or
    /// `anchor`).
    pub fn insert(&mut self, class: &str, op: &str) -> Result<(), String> {
        if op.is_empty() {
            return Err("an op type must not be empty".into());
        }
        let set = match class {
            "elementwise" => &mut self.elementwise,
            "reduce" => &mut self.reduce,
            "view" => &mut self.view,
            "anchor" => &mut self.anchor,
            _ => {
                return Err(format!(
                    "unknown kernel class '{class}' (known: elementwise, reduce, view, anchor)"
                ))
            }
        };
        set.insert(op.to_string());
        Ok(())
    }

    /// The class of `op`, if it has one.
    pub fn class_of(&self, op: &str) -> Option<KernelClass> {
        if self.elementwise.contains(op) {
            Some(KernelClass::Elementwise)
        } else if self.reduce.contains(op) {
            Some(KernelClass::Reduce)
        } else if self.view.contains(op) {
            Some(KernelClass::View)
        } else if self.anchor.contains(op) {
            Some(KernelClass::Anchor)
        } else {
            None
        }
    }
}

/// The class of node `n` when it may join a kernel group.
fn member_class(g: &Graph, n: NodeId, classes: &KernelClasses, deps: &Deps) -> Option<KernelClass> {
    let node = g.node(n);
    if !is_onnx(node) || node.attrs.iter().any(|a| !a.value.graphs().is_empty()) {
        return None;
    }
    let class = classes.class_of(&node.op_type)?;
    // A value a subgraph reads by name cannot become a fused node's output.
    if node
        .outputs
        .iter()
        .flatten()
        .any(|v| deps.read_by_name.contains(v))
    {
        return None;
    }
    let const_from = |k: usize| {
        node.inputs
            .iter()
            .skip(k)
            .flatten()
            .all(|&v| is_const(g, v))
    };
    let fits = match class {
        KernelClass::View => const_from(1),
        KernelClass::Reduce if node.op_type.starts_with("Reduce") => const_from(1),
        _ => true,
    };
    fits.then_some(class)
}

/// Groups kernels in `g` (not in its subgraphs) and replaces each group of two or
/// more nodes by one fused node; returns how many fused nodes it made.
///
/// Subgraphs that read values of `g` by name need those values computed first,
/// but `Graph::topo_order` (which runs and saves graphs) orders nodes by their
/// inputs only, with ties broken by node id; a fused node, added last, can move a
/// producer after such a reader. When the grouped graph would order a reader
/// before its producer, grouping is done again without the nodes such values
/// depend on, and if that does not help either, `g` is left as it was.
pub fn group_kernels(g: &mut Graph, classes: &KernelClasses) -> usize {
    let deps = Deps::new(g);
    if deps.read_by_name.is_empty() {
        return group_with(g, classes, &deps, false);
    }
    for keep_ancestors in [false, true] {
        let mut trial = g.clone();
        let made = group_with(&mut trial, classes, &deps, keep_ancestors);
        if made == 0 {
            return 0;
        }
        if name_reads_follow_producers(&trial) {
            *g = trial;
            return made;
        }
    }
    0
}

/// Whether `g`'s topological order runs the producer of every value a subgraph
/// reads by name before the node holding that subgraph.
fn name_reads_follow_producers(g: &Graph) -> bool {
    let Ok(order) = g.topo_order() else {
        return false;
    };
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let deps = Deps::new(g);
    order.iter().all(|&n| {
        deps.preds_of(n)
            .iter()
            .all(|p| pos.get(p).is_some_and(|&pp| pp < pos[&n]))
    })
}

fn group_with(g: &mut Graph, classes: &KernelClasses, deps: &Deps, keep_ancestors: bool) -> usize {
    let Some(order) = deps.order(g) else {
        return 0;
    };
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    // Nodes values read by name depend on (when those must keep their order).
    let mut pinned: HashSet<NodeId> = HashSet::new();
    if keep_ancestors {
        let mut stack: Vec<NodeId> = deps
            .read_by_name
            .iter()
            .filter_map(|&v| g.producer(v))
            .collect();
        while let Some(n) = stack.pop() {
            if pinned.insert(n) {
                stack.extend(deps.preds_of(n).iter().copied());
            }
        }
    }
    let mut class: HashMap<NodeId, KernelClass> = HashMap::new();
    for &n in &order {
        if pinned.contains(&n) {
            continue;
        }
        if let Some(c) = member_class(g, n, classes, deps) {
            class.insert(n, c);
        }
    }
    // Groups by index; merged groups are emptied.
    let mut groups: Vec<Vec<NodeId>> = Vec::new();
    let mut group_of: HashMap<NodeId, usize> = HashMap::new();
    // The anchor node of the groups that hold one.
    let mut anchor_of: HashMap<usize, NodeId> = HashMap::new();
    for &n in &order {
        let Some(&cls) = class.get(&n) else {
            continue;
        };
        let mut producer_groups: Vec<usize> = Vec::new();
        if cls != KernelClass::Anchor {
            // An anchor never takes its producers in: its kernel starts at it.
            for p in deps.preds_of(n) {
                if let Some(&k) = group_of.get(p) {
                    if !producer_groups.contains(&k) {
                        producer_groups.push(k);
                    }
                }
            }
        }
        // Only an elementwise op of the anchor's output shape joins an anchor's
        // group (its epilogue), and then no other group joins with it.
        if let Some(&k) = producer_groups.iter().find(|k| anchor_of.contains_key(k)) {
            if cls == KernelClass::Elementwise
                && keeps_anchor_shape(g, n, anchor_of[&k], &groups[k])
            {
                producer_groups = vec![k];
            } else {
                producer_groups.retain(|k| !anchor_of.contains_key(k));
            }
        }
        let mut members: Vec<NodeId> = vec![n];
        let mut merged: Vec<usize> = Vec::new();
        for k in producer_groups {
            if members.len() + groups[k].len() > MAX_GROUP_NODES {
                continue;
            }
            let trial: HashSet<NodeId> = members.iter().chain(&groups[k]).copied().collect();
            if !comes_back(&trial, pos[&n], deps, &pos, &group_of, &groups) {
                members.extend(groups[k].iter().copied());
                merged.push(k);
            }
        }
        let id = groups.len();
        for k in merged {
            groups[k].clear();
            if let Some(a) = anchor_of.remove(&k) {
                anchor_of.insert(id, a);
            }
        }
        if cls == KernelClass::Anchor {
            anchor_of.insert(id, n);
        }
        for &m in &members {
            group_of.insert(m, id);
        }
        groups.push(members);
    }
    let mut made = 0;
    for members in groups {
        let computes = members
            .iter()
            .any(|m| class.get(m) != Some(&KernelClass::View));
        if members.len() < 2 || !computes {
            continue;
        }
        let mut members = members;
        members.sort_by_key(|m| pos[m]);
        // The checks above make this succeed; a refusal only leaves the group as is.
        if make_fused(g, &members).is_ok() {
            made += 1;
        }
    }
    made
}

/// Whether elementwise node `n` computes at the shape of `anchor`'s output: each
/// input comes from the anchor's group (whose members all keep that shape) or
/// broadcasts into it without growing it (each of its dims, right-aligned, is 1 or
/// the same known dim). Dims unknown to inference only match a 1.
fn keeps_anchor_shape(g: &Graph, n: NodeId, anchor: NodeId, group: &[NodeId]) -> bool {
    let shape_of = |v| {
        if let Some(t) = crate::pass::edit::const_tensor(g, v) {
            return Some(t.dims.iter().map(|&d| DimValue::Fixed(d)).collect());
        }
        let s = g.value(v).ty.as_ref()?.as_tensor()?.1?;
        Some(
            s.dims
                .iter()
                .map(|d| d.value.clone())
                .collect::<Vec<DimValue>>(),
        )
    };
    let Some(out) = g
        .node(anchor)
        .outputs
        .first()
        .copied()
        .flatten()
        .and_then(shape_of)
    else {
        return false;
    };
    g.node(n).inputs.iter().all(|inp| {
        let Some(v) = *inp else {
            return true;
        };
        if g.producer(v).is_some_and(|p| group.contains(&p)) {
            return true;
        }
        let Some(s) = shape_of(v) else {
            return false;
        };
        s.len() <= out.len()
            && s.iter()
                .rev()
                .zip(out.iter().rev())
                .all(|(a, o)| match (a, o) {
                    (DimValue::Fixed(1), _) => true,
                    (DimValue::Unknown, _) | (_, DimValue::Unknown) => false,
                    (a, o) => a == o,
                })
    })
}

/// Whether a path leaves `trial` and comes back into it, with every other group
/// contracted to one node. `last` is the position of the newest member: every
/// other group lies before it, so a node after it can no longer lead back.
fn comes_back(
    trial: &HashSet<NodeId>,
    last: usize,
    deps: &Deps,
    pos: &HashMap<NodeId, usize>,
    group_of: &HashMap<NodeId, usize>,
    groups: &[Vec<NodeId>],
) -> bool {
    let mut stack: Vec<NodeId> = Vec::new();
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut seen_groups: HashSet<usize> = HashSet::new();
    for &m in trial {
        for &s in deps.succs_of(m) {
            if !trial.contains(&s) && seen.insert(s) {
                stack.push(s);
            }
        }
    }
    while let Some(w) = stack.pop() {
        if pos[&w] > last {
            continue;
        }
        let from: Vec<NodeId> = match group_of.get(&w) {
            Some(&k) if !groups[k].is_empty() => {
                if !seen_groups.insert(k) {
                    continue;
                }
                groups[k].clone()
            }
            _ => vec![w],
        };
        for f in from {
            for &s in deps.succs_of(f) {
                if trial.contains(&s) {
                    return true;
                }
                if seen.insert(s) {
                    stack.push(s);
                }
            }
        }
    }
    false
}

/// The `fuse-kernels` pass: [`group_kernels`] with the default classes on the
/// graph and its If/Loop/Scan bodies (never inside fused bodies).
#[derive(Default)]
pub struct FuseKernels {
    pub classes: KernelClasses,
}

impl Pass for FuseKernels {
    fn name(&self) -> &'static str {
        "fuse-kernels"
    }
    fn recurse(&self) -> bool {
        false
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let made = fuse_tree(g, &self.classes);
        cx.rewrites += made;
        Ok(made > 0)
    }
}

fn fuse_tree(g: &mut Graph, classes: &KernelClasses) -> usize {
    let mut made = 0;
    let ids: Vec<NodeId> = g.node_ids().collect();
    for n in ids {
        if is_fused(g.node(n)) {
            continue;
        }
        for a in g.node_mut(n).attrs.iter_mut() {
            for sub in a.value.graphs_mut() {
                made += fuse_tree(sub, classes);
            }
        }
    }
    made + group_kernels(g, classes)
}

#[cfg(test)]
mod tests {
    use super::super::conv_fold::testing::check;
    use super::*;
    use crate::fused::fused_body;

    fn fused_nodes(g: &Graph) -> Vec<(usize, usize, usize)> {
        g.nodes()
            .filter(|(_, n)| is_fused(n))
            .map(|(_, n)| {
                let b = fused_body(n).unwrap();
                (b.node_count(), n.inputs.len(), n.outputs.len())
            })
            .collect()
    }

    #[test]
    fn classes_insert_and_look_up() {
        let mut c = KernelClasses::empty();
        assert_eq!(c.class_of("Relu"), None);
        c.insert("elementwise", "Relu").unwrap();
        c.insert("view", "Reshape").unwrap();
        assert_eq!(c.class_of("Relu"), Some(KernelClass::Elementwise));
        assert_eq!(c.class_of("Reshape"), Some(KernelClass::View));
        assert!(c.insert("matmul", "MatMul").unwrap_err().contains("matmul"));
        assert!(c.insert("reduce", "").is_err());
        let d = KernelClasses::default();
        assert_eq!(d.class_of("ReduceMean"), Some(KernelClass::Reduce));
        assert_eq!(d.class_of("MatMul"), Some(KernelClass::Anchor));
        assert_eq!(d.class_of("Conv"), Some(KernelClass::Anchor));
        assert_eq!(d.class_of("IsNaN"), Some(KernelClass::Elementwise));
        assert_eq!(d.class_of("Resize"), None);
    }

    #[test]
    fn a_written_out_layer_norm_becomes_one_node() {
        let t = "opset _=17\ngraph @g(%x: f32[2,3,4], %s: f32[4], %b: f32[4]) -> (%y) {\n  %shape = const i64[2] @shape [6, 4]\n  %back = const i64[3] @back [2, 3, 4]\n  %eps = const f32[] @eps [0.00001]\n  %f = Reshape(%x, %shape)\n  %m = ReduceMean(%f) {axes=[1]}\n  %d = Sub(%f, %m)\n  %q = Mul(%d, %d)\n  %v = ReduceMean(%q) {axes=[1]}\n  %e = Add(%v, %eps)\n  %r = Sqrt(%e)\n  %n = Div(%d, %r)\n  %u = Reshape(%n, %back)\n  %w = Mul(%u, %s)\n  %y = Add(%w, %b)\n  return %y\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 1);
        assert_eq!(m.graph.node_count(), 1);
        // Every constant is small: only x, s and b are inputs.
        assert_eq!(fused_nodes(&m.graph), [(11, 3, 1)]);
    }

    #[test]
    fn a_shared_intermediate_becomes_a_second_output() {
        let t = "opset _=17\ngraph @g(%x: f32[2,4], %w: f32[4,4]) -> (%y, %z) {\n  %a = Neg(%x)\n  %b = Exp(%a)\n  %y = Sigmoid(%b)\n  %z = MatMul(%b, %w)\n  return %y, %z\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 1);
        assert_eq!(fused_nodes(&m.graph), [(3, 1, 2)]);
    }

    #[test]
    fn convexity_keeps_a_path_through_an_outside_node_apart() {
        // Exp → MatMul → Add and Exp → Add: Exp and Add together would be a cycle.
        let t = "opset _=17\ngraph @g(%x: f32[2,2], %w: f32[2,2]) -> (%y) {\n  %a = Exp(%x)\n  %b = Neg(%a)\n  %m = MatMul(%b, %w)\n  %c = Add(%b, %m)\n  %y = Relu(%c)\n  return %y\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 2);
        let mut f = fused_nodes(&m.graph);
        f.sort();
        assert_eq!(f, [(2, 1, 1), (2, 2, 1)]);
        crate::ir::verify::verify(&m.graph).unwrap();
    }

    #[test]
    fn groups_never_form_a_cycle_between_them() {
        // {a1, a2, a3} and {b1, b2, b3} are each convex, but a1 → m1 → b1 and
        // b2 → m2 → a2 would make the two fused nodes depend on each other: b2
        // stays out.
        let t = "opset _=17\ngraph @g(%x: f32[2,2], %w: f32[2,2]) -> (%y, %z) {\n  %a1 = Exp(%x)\n  %m1 = MatMul(%a1, %w)\n  %b1 = Neg(%m1)\n  %b2 = Relu(%x)\n  %m2 = MatMul(%b2, %w)\n  %a2 = Sigmoid(%m2)\n  %y = Add(%a1, %a2)\n  %z = Mul(%b1, %b2)\n  return %y, %z\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 2);
        let mut sizes: Vec<usize> = fused_nodes(&m.graph).iter().map(|f| f.0).collect();
        sizes.sort();
        assert_eq!(sizes, [2, 3]);
        crate::ir::verify::verify(&m.graph).unwrap();
    }

    #[test]
    fn leaves_single_ops_views_and_other_ops_alone() {
        for t in [
            "opset _=17\ngraph @g(%x: f32[2,2], %w: f32[2,2]) -> (%y) {\n  %a = Relu(%x)\n  %y = MatMul(%a, %w)\n  return %y\n}\n",
            "opset _=17\ngraph @g(%x: f32[2,2]) -> (%y) {\n  %s = const i64[1] @s [4]\n  %a = Flatten(%x)\n  %y = Reshape(%a, %s)\n  return %y\n}\n",
        ] {
            let (m, made) = check(t, "fuse-kernels", true);
            assert_eq!(made, 0, "{}", crate::print_model(&m));
        }
        // A Reshape to a shape computed at run time, an op of another domain.
        for t in [
            "opset _=17\ngraph @g(%x: f32[2,2], %s: i64[1]) -> (%y) {\n  %a = Relu(%x)\n  %y = Reshape(%a, %s)\n  return %y\n}\n",
            "opset _=17, com.microsoft=1\ngraph @g(%x: f32[2,2]) -> (%y) {\n  %a = com.microsoft::Gelu(%x)\n  %y = Relu(%a)\n  return %y\n}\n",
        ] {
            let mut m = crate::parse_model(t).unwrap();
            assert_eq!(group_kernels(&mut m.graph, &KernelClasses::default()), 0);
        }
    }

    #[test]
    fn reaches_into_if_branches_but_not_fused_bodies() {
        let t = "opset _=17\ngraph @g(%c: bool[], %x: f32[2]) -> (%y) {\n  %y = If(%c) {then_branch=graph @t() -> (%p) {\n    %a = Neg(%x)\n    %p = Exp(%a)\n    return %p\n  }, else_branch=graph @e() -> (%q) {\n    %q = Relu(%x)\n    return %q\n  }}\n  return %y\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 1);
        let text = crate::print_model(&m);
        assert!(text.contains("ai.modc::Fused(%x)"), "{text}");
    }

    #[test]
    fn a_value_read_by_name_keeps_its_producer_before_the_reader() {
        // Fusing Exp and Sigmoid would add a node after the If, and the MatMul the
        // If's branch reads by name would then be ordered after the If.
        let t = "opset _=17\ngraph @g(%c: bool[], %x: f32[2,2], %w: f32[2,2]) -> (%y, %z) {\n  %a = Exp(%x)\n  %b = Sigmoid(%a)\n  %v = MatMul(%b, %w)\n  %y = If(%c) {then_branch=graph @t() -> (%p) {\n    %p = Relu(%v)\n    return %p\n  }, else_branch=graph @e() -> (%q) {\n    %q = Neg(%v)\n    return %q\n  }}\n  %n = Neg(%x)\n  %z = Relu(%n)\n  return %y, %z\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        // Graph::topo_order counts the branch's read of %v, so both chains fuse
        // and the MatMul still comes before the If.
        assert_eq!(made, 2);
        let g = &m.graph;
        let order = g.topo_order().unwrap();
        let pos = |op: &str| order.iter().position(|&n| g.node(n).op_type == op).unwrap();
        assert!(pos("MatMul") < pos("If"));
    }

    #[test]
    fn a_conv_takes_its_bias_residual_and_activation_as_epilogue() {
        // Conv → Add(bias) → Add(residual x) → Relu is one kernel; the Sigmoid in
        // front of the Conv stays out (an anchor never takes its producers in).
        let t = "opset _=17\ngraph @g(%x: f32[1,2,5,5], %w: f32[2,2,3,3]) -> (%y) {\n  %b = const f32[1,2,1,1] @b [0.5, -0.25]\n  %s = Sigmoid(%x)\n  %c = Conv(%s, %w) {pads=[1,1,1,1]} : f32[1,2,5,5]\n  %d = Add(%c, %b) : f32[1,2,5,5]\n  %e = Add(%d, %x) : f32[1,2,5,5]\n  %y = Relu(%e) : f32[1,2,5,5]\n  return %y\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 1);
        assert_eq!(m.graph.node_count(), 2);
        // Body: Conv, Add, Add, Relu; inputs s, w, x (the bias is a small constant).
        assert_eq!(fused_nodes(&m.graph), [(4, 3, 1)]);
    }

    #[test]
    fn an_epilogue_stays_at_the_anchors_shape_and_joins_one_anchor() {
        // The Add of two MatMuls joins only the first one's kernel; the Add that
        // broadcasts to a larger shape and the ReduceSum stay out of the second's.
        let t = "opset _=17\ngraph @g(%x: f32[2,3], %w: f32[3,3], %z: f32[4,2,3]) -> (%y, %r, %q) {\n  %a = MatMul(%x, %w) : f32[2,3]\n  %b = MatMul(%x, %w) : f32[2,3]\n  %s = Add(%a, %b) : f32[2,3]\n  %y = Relu(%s) : f32[2,3]\n  %c = MatMul(%y, %w) : f32[2,3]\n  %q = Add(%c, %z) : f32[4,2,3]\n  %r = ReduceSum(%c) {keepdims=0} : f32[]\n  return %y, %r, %q\n}\n";
        let (m, made) = check(t, "fuse-kernels", true);
        assert_eq!(made, 1);
        assert_eq!(fused_nodes(&m.graph), [(3, 3, 1)]);
        assert_eq!(m.graph.node_count(), 5);
    }

    #[test]
    fn unknown_dims_only_take_what_cannot_grow_the_anchors_shape() {
        // The Conv's output is [?,2,?,?]: the Relu and the per-channel bias join;
        // the Add of another [?,2,?,?] tensor might broadcast, so it stays out.
        let t = "opset _=17\ngraph @g(%x: f32[?,2,?,?], %w: f32[2,2,1,1], %z: f32[?,2,?,?]) -> (%y) {\n  %b = const f32[1,2,1,1] @b [0.5, -0.25]\n  %c = Conv(%x, %w) : f32[?,2,?,?]\n  %d = Add(%c, %b) : f32[?,2,?,?]\n  %r = Relu(%d) : f32[?,2,?,?]\n  %y = Add(%r, %z) : f32[?,2,?,?]\n  return %y\n}\n";
        let mut m = crate::parse_model(t).unwrap();
        assert_eq!(group_kernels(&mut m.graph, &KernelClasses::default()), 1);
        assert_eq!(fused_nodes(&m.graph), [(3, 2, 1)]);
        assert_eq!(m.graph.node_count(), 2);
    }

    #[test]
    fn large_groups_are_split() {
        let mut t = String::from("opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %v0 = Neg(%x)\n");
        for i in 1..300 {
            t.push_str(&format!("  %v{i} = Neg(%v{})\n", i - 1));
        }
        t.push_str("  %y = Neg(%v299)\n  return %y\n}\n");
        let (m, made) = check(&t, "fuse-kernels", true);
        assert_eq!(made, 2);
        let sizes: Vec<usize> = fused_nodes(&m.graph).iter().map(|f| f.0).collect();
        assert!(sizes.iter().all(|&s| s <= MAX_GROUP_NODES), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 301);
    }
}
