//! Common-subexpression elimination: two nodes of the same op, domain, attributes
//! and inputs compute the same outputs, so the later one is dropped and its readers
//! read the first one's outputs. Runs in topological order, so merged inputs make
//! their users merge in the same run.
//!
//! Left alone: random ops (each node draws its own numbers), ops of other domains
//! (they may have effects modc does not know), nodes with subgraphs, and large
//! Constant nodes (constants are merged as initializers by `init-cleanup`).
//!
//! ```
//! let mut m = modc::parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Exp(%x)\n  %b = Exp(%x)\n  %y = Add(%a, %b)\n  return %y\n}\n").unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("cse").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 2);
//! ```

use crate::ir::attr::AttrValue;
use crate::ir::graph::{Graph, ValueId};
use crate::pass::edit::{is_onnx, replace_value, tidy_value_info};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::HashMap;

const NONDETERMINISTIC: &[&str] = &[
    "RandomNormal",
    "RandomUniform",
    "RandomNormalLike",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
];

pub struct Cse;

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let Ok(order) = g.topo_order() else {
            return Ok(false);
        };
        let mut seen: HashMap<String, Vec<Option<ValueId>>> = HashMap::new();
        let mut merged = 0;
        for n in order {
            let node = g.node(n);
            if !is_onnx(node)
                || NONDETERMINISTIC.contains(&node.op_type.as_str())
                || node.attrs.iter().any(|a| !a.value.graphs().is_empty())
            {
                continue;
            }
            if node.op_type == "Constant"
                && node.attrs.iter().any(|a| match &a.value {
                    AttrValue::Tensor(t) => t.byte_size() > 1024,
                    _ => false,
                })
            {
                continue;
            }
            let mut attrs: Vec<String> = node
                .attrs
                .iter()
                .map(|a| format!("{}={:?}", a.name, a.value))
                .collect();
            attrs.sort();
            let key = format!(
                "{}|{:?}|{:?}|{}|{}",
                node.op_type,
                node.overload,
                node.inputs,
                node.outputs
                    .iter()
                    .map(|o| o.is_some() as u8)
                    .map(|b| b.to_string())
                    .collect::<String>(),
                attrs.join(";")
            );
            match seen.get(&key) {
                Some(first) => {
                    let first = first.clone();
                    let outs = node.outputs.clone();
                    for (o, f) in outs.iter().zip(&first) {
                        if let (Some(o), Some(f)) = (o, f) {
                            replace_value(g, *o, *f);
                        }
                    }
                    // The duplicate is dead unless an output kept a graph output's name.
                    if g.node(n)
                        .outputs
                        .iter()
                        .flatten()
                        .all(|v| !g.outputs.contains(v))
                    {
                        g.remove_node(n);
                    }
                    merged += 1;
                }
                None => {
                    seen.insert(key, node.outputs.clone());
                }
            }
        }
        if merged > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += merged;
        Ok(merged > 0)
    }
}
