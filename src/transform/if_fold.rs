//! `if-fold`: an If whose condition is a constant is replaced by the nodes of the
//! branch it takes. The branch's values keep their names unless a name is taken
//! in the enclosing graph; its constants become initializers; the names it read
//! from the enclosing scope are resolved there.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %c = const bool[] @c [true]\n  %y = If(%c) {then_branch=graph @t() -> (%a) {\n    %a = Neg(%x)\n    return %a\n  }, else_branch=graph @e() -> (%b) {\n    %b = Exp(%x)\n    return %b\n  }}\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("if-fold,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert!(modc::print_model(&m).contains("Neg(%x)"));
//! ```

use crate::ir::attr::AttrValue;
use crate::ir::graph::{Graph, Initializer, Node, NodeId, Value, ValueDef, ValueId};
use crate::pass::edit::{const_value, is_op, rename_in_subgraph, replace_value, NameGen};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::HashMap;

pub struct IfFold;

impl Pass for IfFold {
    fn name(&self) -> &'static str {
        "if-fold"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let ifs: Vec<NodeId> = g
            .nodes()
            .filter(|(_, n)| is_op(n, "If"))
            .map(|(id, _)| id)
            .collect();
        let mut changed = false;
        for n in ifs {
            let Some(cond) = g.node(n).inputs.first().copied().flatten() else {
                continue;
            };
            let Some(c) = const_value(g, cond) else {
                continue;
            };
            if !inline_taken(g, n, &c) {
                continue;
            }
            cx.rewrites += 1;
            changed = true;
        }
        Ok(changed)
    }
}

/// Replaces If node `n` by the branch its condition `cond` (one element)
/// takes; returns whether it did (not for another condition size, a missing
/// branch, or a branch whose outputs do not match the node's).
pub(crate) fn inline_taken(
    g: &mut Graph,
    n: NodeId,
    cond: &crate::interp::value::TensorValue,
) -> bool {
    let Some(vals) = cond.to_f64_vec().filter(|v| v.len() == 1) else {
        return false;
    };
    let name = if vals[0] != 0.0 {
        "then_branch"
    } else {
        "else_branch"
    };
    let Some(AttrValue::Graph(branch)) = g.node(n).attr(name).map(|a| a.value.clone()) else {
        return false;
    };
    if branch.outputs.len() != g.node(n).outputs.len() {
        return false;
    }
    inline_branch(g, n, &branch);
    true
}

/// Copies `branch`'s constants and nodes into `g` and makes the If's readers read
/// the branch's outputs; removes the If.
fn inline_branch(g: &mut Graph, if_node: NodeId, branch: &Graph) {
    // Names defined in `g` itself (not in its subgraphs) must not be reused.
    let mut taken: std::collections::HashSet<String> =
        g.value_ids().map(|v| g.value(v).name.clone()).collect();
    let mut names = NameGen::new(g);
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let mut renames: Vec<(String, String)> = vec![];
    let mut local_name = |name: &str, names: &mut NameGen, renames: &mut Vec<(String, String)>| {
        if taken.insert(name.to_string()) {
            name.to_string()
        } else {
            let fresh = names.fresh(name);
            taken.insert(fresh.clone());
            renames.push((name.to_string(), fresh.clone()));
            fresh
        }
    };
    for v in branch.value_ids() {
        let val = branch.value(v);
        match val.def {
            ValueDef::Outer => {
                let id = match g
                    .value_ids()
                    .find(|&p| g.value(p).name == val.name && g.value(p).def != ValueDef::Outer)
                {
                    Some(p) => p,
                    None => match g.find_value(&val.name) {
                        Some(p) => p,
                        None => g.add_value(Value::new(&val.name, ValueDef::Outer)),
                    },
                };
                map.insert(v, id);
            }
            ValueDef::Const if branch.initializers.contains(&v) => {
                let name = local_name(&val.name, &mut names, &mut renames);
                let mut nv = val.clone();
                nv.name = name.clone();
                if let Some(Initializer::Dense(t)) = &mut nv.init {
                    t.name = name;
                }
                let id = g.add_value(nv);
                g.initializers.push(id);
                map.insert(v, id);
            }
            _ => {}
        }
    }
    let order = branch
        .topo_order()
        .unwrap_or_else(|_| branch.node_ids().collect());
    for bn in order {
        let node = branch.node(bn);
        let mut copy: Node = node.clone();
        copy.inputs = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| map.get(&v).copied()))
            .collect();
        copy.outputs = vec![];
        let mut outs = vec![];
        for o in &node.outputs {
            match o {
                Some(v) => {
                    let val = branch.value(*v);
                    let name = local_name(&val.name, &mut names, &mut renames);
                    let mut nv = Value::new(&name, ValueDef::Input);
                    nv.ty = val.ty.clone();
                    let id = g.add_value(nv);
                    map.insert(*v, id);
                    outs.push(Some(id));
                }
                None => outs.push(None),
            }
        }
        copy.outputs = outs;
        for (from, to) in &renames {
            for a in &mut copy.attrs {
                for sub in a.value.graphs_mut() {
                    rename_in_subgraph(sub, from, to);
                }
            }
        }
        g.push_node(copy);
    }
    let if_outs = g.node(if_node).outputs.clone();
    g.remove_node(if_node);
    for (o, b) in if_outs.iter().zip(&branch.outputs) {
        if let (Some(o), Some(&nv)) = (o, map.get(b)) {
            replace_value(g, *o, nv);
        }
    }
}
