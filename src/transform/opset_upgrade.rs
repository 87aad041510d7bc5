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
mod node_edit;

use super::opset_versions::{Change, Step, MIN_IR_VERSION, OPS};
use crate::ir::graph::{Graph, NodeId};
use crate::ir::model::Model;
use crate::pass::edit::{self, NameGen};
use convert::{Outcome, Refusal};
use node_edit::NodeEdit;
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
    #[error(
        "opset {target} is older than the model's opset {current}: downgrading is not supported"
    )]
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
    let twin = typed_twin(&work, from, target);
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

/// A copy of the model with inferred types, read by value id for the types the
/// model does not declare. When a Softmax-like op must cross opset 13, its
/// input's rank decides between writing the axis out and a Flatten/Reshape pair;
/// plain inference often lacks it (a Reshape whose shape is computed from Shape
/// ops), so the copy also runs constant and shape folding first, as `-O1` would.
/// Passes keep value ids, so a type found on the copy is the type of the value
/// with the same id in the model.
fn typed_twin(m: &Model, from: i64, target: i64) -> Model {
    let mut twin = m.clone();
    crate::ops::shape_infer::infer_shapes(&mut twin);
    if from < 13 && target >= 13 && has_softmax_like(&twin.graph) {
        let folded = crate::pass::Pipeline::parse("(infer,fold,shape-fold)")
            .ok()
            .and_then(|p| {
                let mut t = twin.clone();
                crate::pass::PassManager::new(p).run(&mut t).ok().map(|_| t)
            });
        if let Some(t) = folded {
            twin = t;
        }
    }
    twin
}

fn has_softmax_like(g: &Graph) -> bool {
    g.nodes().any(|(_, n)| {
        (edit::is_onnx(n) && matches!(n.op_type.as_str(), "Softmax" | "LogSoftmax" | "Hardmax"))
            || n.attrs
                .iter()
                .any(|a| a.value.graphs().into_iter().any(has_softmax_like))
    })
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
                    let n = g.node(id);
                    let sub_twin = twin.and_then(|t| twin_subgraph(t, id, &n.attrs[ai].name, gi));
                    let sub_scope = format!(
                        "{} of {} node {label} in {scope}",
                        n.attrs[ai].name, n.op_type
                    );
                    let Some(sub) = g.node_mut(id).attrs[ai]
                        .value
                        .graphs_mut()
                        .into_iter()
                        .nth(gi)
                    else {
                        continue;
                    };
                    self.graph(sub, sub_twin, names, &sub_scope)?;
                }
            }
            if !edit::is_onnx(g.node(id)) {
                continue;
            }
            let origin = g.node(id).op_type.clone();
            let mut e = NodeEdit {
                g: &mut *g,
                twin,
                twin_values,
                id,
                origin,
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
                        return Err(fail(
                            Some(st.version),
                            format!("{} ({op} changed in a way modc does not convert)", st.note),
                        ));
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

/// The twin's subgraph `gi` of node `id`'s attribute `attr` (node ids are never
/// reused, so the twin's node with that id is the same node, if it is still there).
fn twin_subgraph<'t>(t: &'t Graph, id: NodeId, attr: &str, gi: usize) -> Option<&'t Graph> {
    if !t.contains_node(id) {
        return None;
    }
    t.node(id).attr(attr)?.value.graphs().into_iter().nth(gi)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::text::{parse_model, print_model};

    fn up(text: &str, target: i64) -> (String, OpsetUpgrade) {
        let mut m = parse_model(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let r = upgrade_opset(&mut m, target).unwrap_or_else(|e| panic!("{e}\n{text}"));
        crate::ir::verify::verify(&m.graph).unwrap();
        (print_model(&m), r)
    }

    fn refusal(text: &str, target: i64) -> String {
        let mut m = parse_model(text).unwrap();
        let before = m.clone();
        let e = upgrade_opset(&mut m, target).expect_err("should be refused");
        assert_eq!(m, before, "a refusal changed the model");
        e.to_string()
    }

    fn one(opset: i64, input: &str, node: &str) -> String {
        format!("opset _={opset}\ngraph @g({input}) -> (%y) {{\n  {node}\n  return %y\n}}\n")
    }

    #[test]
    fn the_table_is_sorted_and_consistent() {
        for w in OPS.windows(2) {
            assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
        }
        let mut newest = 0;
        for (op, steps) in OPS {
            assert_eq!(steps[0].change, Change::Added, "{op}");
            assert!(steps[1..].iter().all(|s| s.change != Change::Added), "{op}");
            for w in steps.windows(2) {
                assert!(w[0].version < w[1].version, "{op}");
            }
            newest = newest.max(steps.last().unwrap().version);
        }
        assert_eq!(newest, MAX_OPSET);
        assert!(MIN_IR_VERSION.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(history("ReduceSum").unwrap()[2].version, 13);
        assert!(history("NoSuchOp").is_none());
    }

    /// Every step the table marks Convert has a conversion (the code and the data
    /// cannot drift apart), and no conversion panics on a node without inputs
    /// or attributes.
    #[test]
    fn every_convert_step_has_a_conversion() {
        for (op, steps) in OPS {
            for st in steps.iter().filter(|s| s.change == Change::Convert) {
                let mut g = Graph::new("g");
                let (id, _) = g.add_node(op, "", vec![], &["y"], vec![]);
                let mut names = NameGen::new(&g);
                let uses = edit::use_counts(&g);
                let mut e = NodeEdit {
                    g: &mut g,
                    twin: None,
                    twin_values: 0,
                    id,
                    origin: op.to_string(),
                    names: &mut names,
                    target: st.version,
                    const_nodes: false,
                    uses: &uses,
                    dropped_outputs: false,
                };
                let r = convert::convert(op, st.version, &mut e);
                assert_ne!(r, Err(Refusal::NoConversion), "{op} at {}", st.version);
            }
        }
    }

    #[test]
    fn targets_outside_the_range_are_refused() {
        let m = one(13, "%x: f32[2]", "%y = Relu(%x)");
        assert!(refusal(&m, 12).contains("downgrading"));
        let e = refusal(&m, MAX_OPSET + 1);
        assert!(
            e.contains(&format!("newest opset modc knows ({MAX_OPSET})")),
            "{e}"
        );
        let (text, r) = up(&m, 13);
        assert_eq!(text, print_model(&parse_model(&m).unwrap()));
        assert_eq!(r.to_string(), "opset 13 -> 13: no node needed converting");
        let none = "opset com.example=1\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = com.example::Op(%x)\n  return %y\n}\n";
        assert_eq!(refusal(none, 17), OpsetError::NoDefaultOpset.to_string());
    }

    #[test]
    fn the_report_counts_converted_nodes() {
        let m = "opset _=11\ngraph @g(%x: f32[2,1]) -> (%y, %z) {\n  %y = Squeeze(%x) {axes=[1]}\n  %a = Unsqueeze(%x) {axes=[0]}\n  %z = Squeeze(%a) {axes=[0]}\n  return %y, %z\n}\n";
        let (_, r) = up(m, 13);
        assert_eq!(r.converted_nodes(), 3);
        assert_eq!(
            r.to_string(),
            "opset 11 -> 13: 3 nodes converted (Squeeze 2, Unsqueeze 1)"
        );
    }

    #[test]
    fn the_ir_version_rises_with_the_opset() {
        let text = "opset _=9\ngraph @g(%x: f32[2], %w: f32[2] = const f32[2] @w) -> (%y) {\n  %y = Add(%x, %w)\n  return %y\n}\n";
        let mut m = parse_model(text).unwrap();
        assert_eq!(m.graph.inputs.len(), 2);
        m.ir_version = Some(3);
        upgrade_opset(&mut m, 17).unwrap();
        assert_eq!(m.ir_version, Some(8));
        // The initializer listed as an input (IR 3) is a plain constant now.
        assert_eq!(m.graph.inputs.len(), 1);
        let mut m = parse_model(&one(9, "%x: f32[2]", "%y = Relu(%x)")).unwrap();
        m.ir_version = Some(10);
        upgrade_opset(&mut m, 17).unwrap();
        assert_eq!(m.ir_version, Some(10), "never lowered");
    }

    #[test]
    fn attribute_forms_move_to_inputs() {
        let (t, _) = up(
            &one(12, "%x: f32[2,3]", "%y = ReduceMean(%x) {axes=[1]}"),
            18,
        );
        assert!(
            t.contains("ReduceMean(%x, %") && !t.contains("axes="),
            "{t}"
        );
        // An empty list meant every axis: the newer form leaves the input out.
        let (t, _) = up(
            &one(12, "%x: f32[2,3]", "%y = ReduceMax(%x) {axes=ints[]}"),
            18,
        );
        assert!(t.contains("ReduceMax(%x)\n") && !t.contains("axes"), "{t}");
        let (t, _) = up(
            &one(11, "%x: f32[2,1]", "%y = Squeeze(%x) {axes=ints[]}"),
            13,
        );
        assert!(t.contains("Squeeze(%x)\n"), "{t}");
        let (t, _) = up(
            &one(9, "%x: f32[4]", "%y, %i = TopK(%x) {k=2}")
                .replace("-> (%y)", "-> (%y, %i)")
                .replace("return %y", "return %y, %i"),
            10,
        );
        assert!(
            t.contains("TopK(%x, %") && t.contains("const i64[1]"),
            "{t}"
        );
        let (t, _) = up(&one(17, "%x: f32[2,8]", "%y = DFT(%x) {axis=0}"), 20);
        assert!(
            t.contains("DFT(%x, _, %") && t.contains("const i64[]"),
            "{t}"
        );
        let (t, _) = up(
            &one(
                4,
                "%x: f32[2,3]",
                "%y = Reshape(%x) {shape=[3,2], consumed_inputs=[0]}",
            ),
            5,
        );
        assert!(
            t.contains("Reshape(%x, %") && !t.contains("consumed"),
            "{t}"
        );
        let e = refusal(&one(4, "%x: f32[2,3]", "%y = Reshape(%x)"), 5);
        assert!(
            e.contains("Reshape node with output 'y'") && e.contains("no shape"),
            "{e}"
        );
    }

    #[test]
    fn changed_defaults_are_written_out() {
        let (t, _) = up(&one(5, "%x: f32[3]", "%y = Selu(%x)"), 6);
        assert!(
            t.contains("alpha=1.6732") && t.contains("gamma=1.0507"),
            "{t}"
        );
        let (t, _) = up(
            &one(
                10,
                "%x: f32[1,1,4,4], %r: f32[1,4], %i: i64[1]",
                "%y = RoiAlign(%x, %r, %i)",
            ),
            16,
        );
        assert!(
            t.contains("coordinate_transformation_mode=\"output_half_pixel\""),
            "{t}"
        );
        let (t, _) = up(
            &one(
                16,
                "%x: f32[1,1,4,4], %g: f32[1,2,2,2]",
                "%y = GridSample(%x, %g) {mode=\"bicubic\"}",
            ),
            20,
        );
        assert!(t.contains("mode=\"cubic\""), "{t}");
        let (t, _) = up(&one(5, "%x: f32[3]", "%y = Cast(%x) {to=\"int64\"}"), 6);
        assert!(t.contains("to=7"), "{t}");
        let (t, _) = up(
            &one(
                1,
                "%x: f32[1,1,4,4]",
                "%y = LpPool(%x) {kernel_shape=[2,2], p=3.0}",
            ),
            2,
        );
        assert!(t.contains("p=3") && !t.contains("p=3.0"), "{t}");
        let (t, _) = up(
            &one(1, "%x: f32[2,2]", "%y = Pad(%x) {paddings=[0,1,0,1]}"),
            2,
        );
        assert!(t.contains("pads=[0, 1, 0, 1]"), "{t}");
        let (t, r) = up(
            &one(
                10,
                "%x: f32[3], %i: i64[1], %u: f32[1]",
                "%y = Scatter(%x, %i, %u)",
            ),
            11,
        );
        assert!(t.contains("ScatterElements(%x, %i, %u)"), "{t}");
        assert_eq!(r.converted["Scatter"], 1);
        let (t, _) = up(
            &one(
                26,
                "%a: f16[], %b: f16[], %c: f16[]",
                "%y = Range(%a, %b, %c)",
            ),
            27,
        );
        assert!(t.contains("stash_type=10"), "{t}");
    }

    #[test]
    fn unconvertible_uses_are_refused_with_the_reason() {
        let e = refusal(
            &one(
                10,
                "%x: f32[1,1,4,4], %w: f32[1,1,3,3]",
                "%y = ConvTranspose(%x, %w) {auto_pad=\"SAME_UPPER\", strides=[2,2]}",
            ),
            11,
        );
        assert!(
            e.contains("ConvTranspose") && e.contains("at opset 11") && e.contains("SAME_UPPER"),
            "{e}"
        );
        let e = refusal(
            &one(
                11,
                "%x: f32[1,1,2,2], %r: f32[0], %s: f32[4]",
                "%y = Resize(%x, %r, %s) {coordinate_transformation_mode=\"tf_half_pixel_for_nn\"}",
            ),
            13,
        );
        assert!(e.contains("tf_half_pixel_for_nn"), "{e}");
        let e = refusal("opset _=9\ngraph @g(%x: f32[4]) -> (%y, %m) {\n  %y, %m = Dropout(%x)\n  return %y, %m\n}\n", 10);
        assert!(e.contains("mask"), "{e}");
        let e = refusal(
            &one(10, "%x: f32[1,1,4,4], %s: f32[4]", "%y = Resize(%x, %s)"),
            11,
        );
        assert!(e.contains("constant scales"), "{e}");
        let e = refusal(
            &one(
                6,
                "%x: f32[*], %b: f32[*]",
                "%y = Add(%x, %b) {broadcast=1, axis=1}",
            ),
            7,
        );
        assert!(e.contains("ranks"), "{e}");
        let e = refusal(&one(6, "%x: ?", "%y = Clip(%x) {min=0.0}"), 11);
        assert!(e.contains("element type"), "{e}");
        let e = refusal(
            &one(
                5,
                "%x: f32[2,3,4], %r: i64[1], %a: i64[1]",
                "%y = Tile(%x, %r, %a)",
            ),
            6,
        );
        assert!(e.contains("Tile") && e.contains("does not convert"), "{e}");
        let e = refusal(&one(11, "%x: f32[2]", "%y = LayerNormalization(%x)"), 17);
        assert!(e.contains("does not exist at opset 11"), "{e}");
    }

    #[test]
    fn slopes_and_groups_change_layout() {
        // PRelu-6 with a per-channel slope of a rank-4 input gets [C,1,1].
        let (t, _) = up(
            &one(6, "%x: f32[1,3,2,2], %s: f32[3]", "%y = PRelu(%x, %s)"),
            7,
        );
        assert!(t.contains("Unsqueeze(%s) {axes=[1, 2]}"), "{t}");
        let (t, r) = up(
            &one(6, "%x: f32[1,3,2,3], %s: f32[3]", "%y = PRelu(%x, %s)"),
            7,
        );
        assert!(r.converted.is_empty(), "NumPy-style already: {t}");
        // GroupNormalization-18's per-group scale is repeated per channel.
        let g = "opset _=18\ngraph @g(%x: f32[1,4,2]) -> (%y) {\n  %s = const f32[2] @s [1.0, 2.0]\n  %b = const f32[2] @b [0.5, 0.0]\n  %y = GroupNormalization(%x, %s, %b) {num_groups=2}\n  return %y\n}\n";
        let mut m = parse_model(g).unwrap();
        upgrade_opset(&mut m, 21).unwrap();
        let y = m.graph.outputs[0];
        let n = m.graph.producer(y).unwrap();
        let s = m.graph.node(n).inputs[1].unwrap();
        let vals = edit::const_f64s(&m.graph, s).unwrap();
        assert_eq!(vals, vec![1.0, 1.0, 2.0, 2.0]);
    }

    #[test]
    fn nodes_are_named_in_errors() {
        let mut g = Graph::new("g");
        let (a, _) = g.add_node("Relu", "", vec![], &["out"], vec![]);
        let (b, _) = g.add_node("Relu", "", vec![], &[], vec![]);
        g.node_mut(b).name = Some("relu_b".into());
        let (c, _) = g.add_node("Relu", "", vec![], &[], vec![]);
        assert_eq!(node_label(&g, a), "with output 'out'");
        assert_eq!(node_label(&g, b), "'relu_b'");
        assert_eq!(node_label(&g, c), "#2");
    }
}
