//! The opset upgrade (`modc optimize --opset N`): moves a model's default-domain
//! (`ai.onnx`) opset to a newer version, converting every node whose op changed
//! form on the way, or refusing with an error that names the op, the node and the
//! change it cannot convert.
//!
//! How: the version table ([`super::opset_versions`], generated from the ONNX
//! schemas) lists, per op, the versions at which its schema changed and whether
//! the change is *compatible* (types added, constraints relaxed, attributes added
//! whose default keeps the old meaning: nothing to do) or needs a *conversion*.
//! Each node walks its op's steps between the model's opset and the target; the
//! conversions (in `opset_upgrade/convert.rs`) move attributes that became inputs
//! (ReduceSum/Squeeze/Unsqueeze/Split axes at 13, the other reductions at 18,
//! Clip and Pad at 11, Slice and TopK at 10, Dropout's ratio at 12), write out
//! defaults that changed (Resize-10's asymmetric coordinates, RoiAlign's
//! coordinate mode), replace deprecated ops (Upsample by Resize, Scatter by
//! ScatterElements) and keep the pre-13 meaning of Softmax, LogSoftmax and
//! Hardmax (a Flatten and a Reshape around the op, or an explicit axis where the
//! axis is the last one). Types the model does not declare come from shape
//! inference on a copy of the model.
//!
//! Also: subgraphs (If, Loop, Scan bodies) are converted with their graph;
//! model-local functions are converted too (their own default-domain import moves
//! to the target); nodes of other domains are left alone; the IR version is
//! raised to the lowest one the target opset needs (an IR 3 model's
//! initializers-as-inputs become plain constants then). On an error the model is
//! left unchanged.
//!
//! Not done: downgrades; opsets above [`MAX_OPSET`]; changes listed as
//! unsupported in the table (Scan-8's batch axis, Tile-1); the conversions refuse
//! a node where the newer form cannot be equal (a Softmax coercion is always
//! expressible, but e.g. Clip bounds need the input's element type, Resize-10
//! nearest needs constant scales, BatchNormalization's training outputs cannot
//! be kept).
//!
//! ```
//! let text = "opset _=11\ngraph @g(%x: f32[2,3]) -> (%y) {\n  %y = ReduceSum(%x) {axes=[1], keepdims=0}\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! let r = modc::upgrade_opset(&mut m, 13).unwrap();
//! assert_eq!((r.from, r.to), (11, 13));
//! assert_eq!(r.converted["ReduceSum"], 1);
//! assert_eq!(m.opset_version(""), Some(13));
//! assert!(modc::print_model(&m).contains("ReduceSum(%x, %"));
//! ```

mod convert;

use super::opset_versions::{Change, Step, MIN_IR_VERSION, OPS};
use crate::ir::graph::{Graph, NodeId};
use crate::ir::model::Model;
use crate::pass::edit::{self, NameGen};
use convert::{NodeEdit, Outcome, Refusal};
use std::collections::BTreeMap;
use std::fmt;

pub use super::opset_versions::MAX_OPSET;

/// What an upgrade did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpsetUpgrade {
    /// The model's default-domain opset before.
    pub from: i64,
    /// The opset it is at now.
    pub to: i64,
    /// Nodes rewritten, by their original op type (subgraphs and functions
    /// included). Ops whose steps were all compatible are not counted.
    pub converted: BTreeMap<String, usize>,
    /// Model-local functions whose bodies were upgraded.
    pub functions: usize,
}

impl OpsetUpgrade {
    /// Total number of nodes rewritten.
    pub fn converted_nodes(&self) -> usize {
        self.converted.values().sum()
    }
}

impl fmt::Display for OpsetUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "opset {} -> {}", self.from, self.to)?;
        if self.converted.is_empty() {
            write!(f, ": no node needed converting")?;
        } else {
            let ops: Vec<String> = self
                .converted
                .iter()
                .map(|(op, n)| format!("{op} {n}"))
                .collect();
            write!(
                f,
                ": {} nodes converted ({})",
                self.converted_nodes(),
                ops.join(", ")
            )?;
        }
        if self.functions > 0 {
            write!(f, ", {} functions upgraded", self.functions)?;
        }
        Ok(())
    }
}

/// Why an upgrade was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpsetError {
    #[error("opset {target} is older than the model's opset {current}: downgrading is not supported")]
    Downgrade { current: i64, target: i64 },
    #[error("opset {target} is newer than the newest opset modc knows ({max})")]
    TooNew { target: i64, max: i64 },
    #[error("the model imports no default-domain (ai.onnx) opset to upgrade")]
    NoDefaultOpset,
    #[error("cannot upgrade {op} node {node} in {scope} from opset {from} to {to}: {reason}")]
    Unconvertible {
        op: String,
        node: String,
        scope: String,
        from: i64,
        to: i64,
        reason: String,
    },
}

/// The schema history of a default-domain op.
fn history(op: &str) -> Option<&'static [Step]> {
    OPS.binary_search_by(|(name, _)| (*name).cmp(op))
        .ok()
        .map(|i| OPS[i].1)
}

/// Moves `m`'s default-domain opset to `target`, converting every node that needs
/// it (see the module docs). Returns what it did; on an error `m` is unchanged.
pub fn upgrade_opset(m: &mut Model, target: i64) -> Result<OpsetUpgrade, OpsetError> {
    let from = m.opset_version("").ok_or(OpsetError::NoDefaultOpset)?;
    if target < from {
        return Err(OpsetError::Downgrade {
            current: from,
            target,
        });
    }
    if target > MAX_OPSET {
        return Err(OpsetError::TooNew {
            target,
            max: MAX_OPSET,
        });
    }
    let mut report = OpsetUpgrade {
        from,
        to: target,
        ..Default::default()
    };
    if target == from {
        return Ok(report);
    }
    let mut work = m.clone();
    let min_ir = MIN_IR_VERSION[(target - 1) as usize];
    if work.ir_version.is_none_or(|v| v < min_ir) {
        // From IR 4 on, initializers are not graph inputs: the IR 3 convention
        // of listing them as inputs too ends here (every runtime treats them as
        // constants).
        if min_ir >= 4 {
            edit::ir3_inputs_to_consts(&mut work);
        }
        work.ir_version = Some(min_ir);
    }
    let mut twin = work.clone();
    crate::ops::shape_infer::infer_shapes(&mut twin);
    let mut walk = Walk {
        from,
        target,
        const_nodes: work.ir_version.is_some_and(|v| v < 4),
        converted: BTreeMap::new(),
    };
    let mut names = NameGen::new(&work.graph);
    let scope = format!("graph '{}'", work.graph.name);
    walk.graph(&mut work.graph, Some(&twin.graph), &mut names, &scope)?;
    for o in &mut work.opset_imports {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            o.version = target;
        }
    }
    for f in &mut work.functions {
        let own = f
            .opset_imports
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map(|o| o.version);
        let f_from = own.unwrap_or(from);
        if f_from >= target {
            continue;
        }
        let mut fwalk = Walk {
            from: f_from,
            target,
            const_nodes: true,
            converted: std::mem::take(&mut walk.converted),
        };
        let mut names = NameGen::new(&f.body);
        let scope = format!("function '{}::{}'", f.domain, f.name);
        fwalk.graph(&mut f.body, None, &mut names, &scope)?;
        walk.converted = fwalk.converted;
        for o in &mut f.opset_imports {
            if o.domain.is_empty() || o.domain == "ai.onnx" {
                o.version = target;
            }
        }
        report.functions += 1;
    }
    report.converted = walk.converted;
    *m = work;
    Ok(report)
}

/// One upgrade's walk over a graph and its subgraphs.
struct Walk {
    from: i64,
    target: i64,
    const_nodes: bool,
    converted: BTreeMap<String, usize>,
}

impl Walk {
    fn graph(
        &mut self,
        g: &mut Graph,
        twin: Option<&Graph>,
        names: &mut NameGen,
        scope: &str,
    ) -> Result<(), OpsetError> {
        let uses = edit::use_counts(g);
        let twin_values = twin.map(|t| t.value_ids().count()).unwrap_or(0);
        let mut dropped_outputs = false;
        let ids: Vec<NodeId> = g.node_ids().collect();
        for id in ids {
            let label = node_label(g, id);
            for ai in 0..g.node(id).attrs.len() {
                for gi in 0..g.node(id).attrs[ai].value.graphs().len() {
                    let sub_twin = twin.and_then(|t| twin_subgraph(t, id, ai, gi));
                    let n = g.node(id);
                    let sub_scope =
                        format!("{} of {} node {label} in {scope}", n.attrs[ai].name, n.op_type);
                    let Some(sub) = g.node_mut(id).attrs[ai].value.graphs_mut().into_iter().nth(gi)
                    else {
                        continue;
                    };
                    self.graph(sub, sub_twin, names, &sub_scope)?;
                }
            }
            if !edit::is_onnx(g.node(id)) {
                continue;
            }
            let mut e = NodeEdit {
                g: &mut *g,
                twin,
                twin_values,
                id,
                names: &mut *names,
                target: self.target,
                const_nodes: self.const_nodes,
                uses: &uses,
                dropped_outputs: false,
            };
            self.node(&mut e, scope, &label)?;
            dropped_outputs |= e.dropped_outputs;
        }
        if dropped_outputs {
            edit::tidy_value_info(g);
        }
        Ok(())
    }

    /// Walks the node through its op's steps in (from, target].
    fn node(&mut self, e: &mut NodeEdit, scope: &str, label: &str) -> Result<(), OpsetError> {
        let op0 = e.g.node(e.id).op_type.clone();
        let fail = |version: Option<i64>, reason: String| OpsetError::Unconvertible {
            op: op0.clone(),
            node: label.to_string(),
            scope: scope.to_string(),
            from: self.from,
            to: self.target,
            reason: match version {
                Some(v) => format!("at opset {v}, {reason}"),
                None => reason,
            },
        };
        let Some(first) = history(&op0) else {
            return Err(fail(
                None,
                format!("{op0} is not an ONNX operator modc knows (ONNX's experimental ops, removed at opset 10, are not converted)"),
            ));
        };
        if first[0].version > self.from {
            return Err(fail(
                None,
                format!(
                    "{op0} does not exist at opset {} (it was added at {})",
                    self.from, first[0].version
                ),
            ));
        }
        let mut op: String = op0.clone();
        let mut at = self.from;
        let mut changed = false;
        loop {
            let steps = history(&op).unwrap_or(&[]);
            let mut renamed = None;
            for st in steps
                .iter()
                .filter(|s| s.version > at && s.version <= self.target)
            {
                match st.change {
                    Change::Added | Change::Compatible => {}
                    Change::Unsupported => {
                        return Err(fail(Some(st.version), format!("{} ({op} changed in a way modc does not convert)", st.note)));
                    }
                    Change::Convert => match convert::convert(&op, st.version, e) {
                        Ok(Outcome::Unchanged) => {}
                        Ok(Outcome::Changed) => changed = true,
                        Ok(Outcome::Renamed(new)) => {
                            changed = true;
                            renamed = Some((new, st.version));
                            break;
                        }
                        Err(Refusal::Refused(why)) => {
                            return Err(fail(Some(st.version), format!("{}: {why}", st.note)));
                        }
                        Err(Refusal::NoConversion) => {
                            return Err(fail(
                                Some(st.version),
                                format!("{} (modc has no conversion for it)", st.note),
                            ));
                        }
                    },
                }
            }
            match renamed {
                Some((new, v)) => {
                    op = new.to_string();
                    at = v;
                }
                None => break,
            }
        }
        if changed {
            *self.converted.entry(op0).or_default() += 1;
        }
        Ok(())
    }
}

/// The subgraph of the twin graph that corresponds to attribute `ai`, graph `gi`
/// of node `id`.
fn twin_subgraph(t: &Graph, id: NodeId, ai: usize, gi: usize) -> Option<&Graph> {
    if !t.contains_node(id) {
        return None;
    }
    t.node(id).attrs.get(ai)?.value.graphs().into_iter().nth(gi)
}

/// A node as named in errors: its name, else its first output's.
fn node_label(g: &Graph, id: NodeId) -> String {
    let n = g.node(id);
    if let Some(name) = n.name.as_deref().filter(|s| !s.is_empty()) {
        return format!("'{name}'");
    }
    match n.outputs.iter().flatten().next() {
        Some(&v) => format!("with output '{}'", g.value(v).name),
        None => format!("#{}", id.0),
    }
}
