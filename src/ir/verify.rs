//! The verifier: structural invariants every pass must keep.
//!
//! Checks that each node input refers to a value that is defined (a graph input, a
//! constant, an outer value, or the output of a live node), that each value
//! defined by a node is listed at that node's output slot, that graph outputs are
//! defined, that the graph has no cycle, and the same for every subgraph. A fused
//! node must have a body with as many inputs and outputs as the node, reading no
//! name of an enclosing graph.
//!
//! ```
//! let m = modc::parse_model("graph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n").unwrap();
//! modc::verify(&m.graph).unwrap();
//! ```

use crate::ir::graph::{Graph, ValueDef, ValueId};

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("graph '{graph}': {message}")]
pub struct VerifyError {
    pub graph: String,
    pub message: String,
}

/// Verifies a graph and its subgraphs.
pub fn verify(g: &Graph) -> Result<(), VerifyError> {
    let err = |m: String| VerifyError {
        graph: g.name.clone(),
        message: m,
    };
    let defined = |v: ValueId| -> bool {
        match g.value(v).def {
            ValueDef::Input | ValueDef::Const | ValueDef::Outer => true,
            ValueDef::Node { node, slot } => {
                g.contains_node(node) && g.node(node).outputs.get(slot) == Some(&Some(v))
            }
        }
    };
    for (id, n) in g.nodes() {
        let who = || {
            format!(
                "node '{}' ({})",
                n.name.clone().unwrap_or_default(),
                n.op_type
            )
        };
        for (i, v) in n.inputs.iter().enumerate() {
            if let Some(v) = v {
                if v.0 as usize >= g.value_ids().count() || !defined(*v) {
                    return Err(err(format!(
                        "{}: input {i} ('{}') is not defined",
                        who(),
                        g.value(*v).name
                    )));
                }
            }
        }
        for (slot, v) in n.outputs.iter().enumerate() {
            if let Some(v) = v {
                if g.value(*v).def != (ValueDef::Node { node: id, slot }) {
                    return Err(err(format!(
                        "{}: output {slot} ('{}') is not defined by this node",
                        who(),
                        g.value(*v).name
                    )));
                }
            }
        }
        if crate::fused::is_fused(n) {
            crate::fused::check_fused(n).map_err(|m| err(format!("{}: {m}", who())))?;
        }
        for a in &n.attrs {
            for sub in a.value.graphs() {
                verify(sub)?;
            }
        }
    }
    for &o in &g.outputs {
        if !defined(o) {
            return Err(err(format!("output '{}' is not defined", g.value(o).name)));
        }
    }
    for &i in &g.initializers {
        if g.value(i).init.is_none() {
            return Err(err(format!(
                "initializer '{}' has no data",
                g.value(i).name
            )));
        }
    }
    if let Err(cycle) = g.topo_order() {
        let names: Vec<String> = cycle
            .iter()
            .take(5)
            .map(|&n| g.node(n).op_type.clone())
            .collect();
        return Err(err(format!(
            "the graph has a cycle through {} nodes ({} ...)",
            cycle.len(),
            names.join(", ")
        )));
    }
    if petgraph::algo::is_cyclic_directed(&g.dependency_graph()) {
        return Err(err("the graph has a cycle".into()));
    }
    Ok(())
}
