//! Dead-code elimination and initializer cleanup.
//!
//! `dce` removes nodes none of whose outputs is read (by a node, as a graph
//! output, or by name from a subgraph), repeatedly, so whole dead chains go in one
//! run. `init-cleanup` removes initializers nothing reads and merges initializers
//! with the same type, shape and bytes into one (graph inputs with defaults are
//! never touched: a caller may override them).
//!
//! ```
//! let mut m = modc::parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Neg(%x)\n  %b = Exp(%a)\n  %y = Relu(%x)\n  return %y\n}\n").unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! ```

use crate::ir::graph::{Graph, Initializer, NodeId, ValueDef, ValueId};
use crate::pass::edit::{replace_value, tidy_value_info, use_counts};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::HashMap;

pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let mut uses = use_counts(g);
        let mut removed = 0;
        // Reverse topological order: a node's users are visited before it.
        let order: Vec<NodeId> = match g.topo_order() {
            Ok(o) => o.into_iter().rev().collect(),
            Err(_) => return Ok(false),
        };
        for n in order {
            let node = g.node(n);
            let live = node
                .outputs
                .iter()
                .flatten()
                .any(|v| uses.get(v).copied().unwrap_or(0) > 0);
            if live {
                continue;
            }
            let node = g.remove_node(n).expect("live node");
            for v in node.inputs.iter().flatten() {
                if let Some(c) = uses.get_mut(v) {
                    *c = c.saturating_sub(1);
                }
            }
            // A removed subgraph no longer reads outer names.
            if node.attrs.iter().any(|a| !a.value.graphs().is_empty()) {
                uses = use_counts(g);
            }
            removed += 1;
        }
        if removed > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += removed;
        Ok(removed > 0)
    }
}

pub struct InitCleanup;

impl Pass for InitCleanup {
    fn name(&self) -> &'static str {
        "init-cleanup"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let mut changed = 0;
        // Duplicates: same dtype, dims and bytes. Tensors are grouped by a cheap
        // key (type, dims, length and the bytes at both ends) and compared whole
        // only within a group, so big weights are not hashed on every run.
        type Key = (String, Vec<i64>, usize, Vec<u8>);
        let mut seen: HashMap<Key, Vec<(ValueId, bytes::Bytes)>> = HashMap::new();
        let outputs: Vec<ValueId> = g.outputs.clone();
        for v in g.initializers.clone() {
            let val = g.value(v);
            if val.def != ValueDef::Const || outputs.contains(&v) {
                continue;
            }
            let Some(Initializer::Dense(t)) = &val.init else {
                continue;
            };
            // External weights are compared only when small enough to be cheap.
            if t.is_external() && t.byte_size() > 1 << 20 {
                continue;
            }
            let Ok(bytes) = t.raw_bytes() else { continue };
            let ends: Vec<u8> = if bytes.len() <= 64 {
                bytes.to_vec()
            } else {
                [&bytes[..32], &bytes[bytes.len() - 32..]].concat()
            };
            let key = (format!("{:?}", t.dtype), t.dims.clone(), bytes.len(), ends);
            let group = seen.entry(key).or_default();
            match group.iter().find(|(_, b)| *b == bytes) {
                Some(&(first, _)) => {
                    replace_value(g, v, first);
                    changed += 1;
                }
                None => group.push((v, bytes)),
            }
        }
        // Unused.
        let uses = use_counts(g);
        let before = g.initializers.len();
        let keep: Vec<ValueId> = g
            .initializers
            .iter()
            .copied()
            .filter(|v| g.value(*v).def != ValueDef::Const || uses.get(v).copied().unwrap_or(0) > 0)
            .collect();
        let kept: std::collections::HashSet<ValueId> = keep.iter().copied().collect();
        for v in g.initializers.clone() {
            if !kept.contains(&v) {
                g.value_mut(v).init = None;
            }
        }
        changed += before - keep.len();
        g.initializers = keep;
        if changed > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += changed;
        Ok(changed > 0)
    }
}
