//! Building a session's program: every node of the main graph, of each `If`
//! branch and of each fused body that is not one kernel, lowered once for the
//! concrete shapes of the session's inputs.
//!
//! Values of different graphs share one key space, [`Key`] = (scope, value): scope
//! 0 is the main graph, each branch or body that becomes a sub-program gets the
//! next number. Names a branch reads from an enclosing graph (`Outer` values) and
//! a fused body's inputs are resolved at build time to the key of the enclosing
//! value, so a sub-program reads the very tensor its parent computed. A branch's
//! shapes come from shape inference on a copy of the branch whose outer values are
//! inputs with the parent's concrete shapes (constants with their values), so each
//! branch node is lowered with concrete shapes like any other.
//!
//! A step frees the values of its own scope at their last use; a value read by a
//! sub-program is used, in its own scope, by the step that holds the sub-program.
//!
//! Every step has a span in one linear order of all the steps of all programs
//! (see [`Step::span`]), which the memory plan (`arena`) measures lifetimes in.

use super::{Gpu, RuntimeError};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, TensorDesc};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::graph::{Graph, Initializer, NodeId, ValueDef, ValueId};
use crate::ir::model::Model;
use crate::ir::types::{Dim, Shape, Type};
use crate::ops::{OpCtx, OpRegistry};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// A value of one of the session's graphs: (scope, value id in that graph).
pub(crate) type Key = (usize, ValueId);

/// How a node runs.
pub(crate) enum Exec {
    Kernels(NodeKernels),
    Alias,
    Cpu(String),
    /// Reads the condition back and runs one branch.
    If {
        then_branch: Program,
        else_branch: Program,
    },
    /// A fused node that is not one kernel: its body, node by node.
    Body(Program),
}

pub(crate) struct Step {
    pub scope: usize,
    pub node: NodeId,
    pub exec: Exec,
    pub inputs: Vec<Option<Key>>,
    pub outputs: Vec<Option<Key>>,
    /// Values of this scope whose last use is this step (freed after it).
    pub frees: Vec<Key>,
    /// (begin, end) positions in the linear order of all steps: a plain step is
    /// one position (begin = end); a step holding sub-programs begins before
    /// their steps (and their [`Program::yield_at`]) and ends after them, an
    /// `If`'s then branch before its else branch (only one runs, so their values
    /// may share memory).
    pub span: (usize, usize),
}

impl Step {
    /// The sub-programs the step runs (both branches of an `If`).
    pub fn subprograms(&self) -> Vec<&Program> {
        match &self.exec {
            Exec::If {
                then_branch,
                else_branch,
            } => vec![then_branch, else_branch],
            Exec::Body(b) => vec![b],
            _ => vec![],
        }
    }
}

/// The steps of one graph.
pub(crate) struct Program {
    pub scope: usize,
    pub steps: Vec<Step>,
    /// The graph's outputs, resolved (for a sub-program: what its node yields).
    pub results: Vec<Key>,
    /// The position, after its steps, where the program's results are read
    /// (yielded to the node holding it; for the main program, read back).
    pub yield_at: usize,
    /// Keys of enclosing scopes that the program reads.
    pub external: BTreeSet<Key>,
    /// Why the program could not be lowered (an `If` branch invalid for the
    /// session's shapes): running it is an error.
    pub invalid: Option<String>,
}

/// Per op type: nodes on the GPU, nodes on the CPU, and why they fell back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpBackends {
    pub gpu: usize,
    pub cpu: usize,
    pub reasons: Vec<String>,
}

pub(crate) struct Built<'a> {
    pub scopes: Vec<&'a Graph>,
    pub descs: HashMap<Key, TensorDesc>,
    pub host_consts: HashMap<Key, TensorValue>,
    pub report: BTreeMap<String, OpBackends>,
    pub main: Program,
    /// Positions of the linear order (see [`Step::span`]).
    pub positions: usize,
}

/// Numbers the steps of `p` and its sub-programs from `*next` on, then `p`'s
/// yield position.
fn number(p: &mut Program, next: &mut usize) {
    for s in &mut p.steps {
        let begin = *next;
        *next += 1;
        let mut nested = false;
        match &mut s.exec {
            Exec::If {
                then_branch,
                else_branch,
            } => {
                number(then_branch, next);
                number(else_branch, next);
                nested = true;
            }
            Exec::Body(b) => {
                number(b, next);
                nested = true;
            }
            _ => {}
        }
        if nested {
            s.span = (begin, *next);
            *next += 1;
        } else {
            s.span = (begin, begin);
        }
    }
    p.yield_at = *next;
    *next += 1;
}

pub(crate) fn node_name(g: &Graph, id: NodeId) -> String {
    let n = g.node(id);
    n.name
        .clone()
        .unwrap_or_else(|| format!("<{} #{}>", n.op_type, id.0))
}

struct Builder<'a, 'g> {
    gpu: &'g Gpu,
    model: &'a Model,
    registry: &'g OpRegistry,
    scopes: Vec<&'a Graph>,
    descs: HashMap<Key, TensorDesc>,
    host_consts: HashMap<Key, TensorValue>,
    report: BTreeMap<String, OpBackends>,
}

/// Builds the main program of `model` for inputs of the given shapes.
pub(crate) fn build<'a>(
    gpu: &Gpu,
    model: &'a Model,
    registry: &OpRegistry,
    input_shapes: &HashMap<String, Vec<usize>>,
) -> Result<Built<'a>, RuntimeError> {
    let g = &model.graph;
    let (descs, folded) =
        crate::plan::shapes::concrete_folded(model, input_shapes).map_err(|e| {
            RuntimeError::Node {
                node: "<inputs>".into(),
                op: "shape inference".into(),
                message: e.to_string(),
            }
        })?;
    let mut b = Builder {
        gpu,
        model,
        registry,
        scopes: vec![g],
        descs: descs.into_iter().map(|(v, d)| ((0, v), d)).collect(),
        // What no longer depends on the input data was computed at build: those
        // nodes never run.
        host_consts: folded.into_iter().map(|(v, t)| ((0, v), t)).collect(),
        report: BTreeMap::new(),
    };
    for v in g.value_ids() {
        let val = g.value(v);
        if val.def == ValueDef::Const
            || (val.def == ValueDef::Input
                && val.init.is_some()
                && !input_shapes.contains_key(&val.name))
        {
            b.add_init(0, g, v)?;
        }
    }
    let mut main = b.program(0, &HashMap::new())?;
    let mut positions = 0;
    number(&mut main, &mut positions);
    Ok(Built {
        scopes: b.scopes,
        descs: b.descs,
        host_consts: b.host_consts,
        report: b.report,
        main,
        positions,
    })
}

impl<'a> Builder<'a, '_> {
    fn add_init(&mut self, scope: usize, g: &Graph, v: ValueId) -> Result<(), RuntimeError> {
        let val = g.value(v);
        if let Some(Initializer::Dense(t)) = &val.init {
            let tv = TensorValue::from_tensor(t).map_err(|e| RuntimeError::Tensor {
                name: val.name.clone(),
                message: e.to_string(),
            })?;
            self.host_consts.insert((scope, v), tv);
        }
        Ok(())
    }

    /// The program of scope `scope`; `bound` resolves the values that come from
    /// outside it (outer values of a branch, inputs of a fused body).
    fn program(
        &mut self,
        scope: usize,
        bound: &HashMap<ValueId, Key>,
    ) -> Result<Program, RuntimeError> {
        let g = self.scopes[scope];
        let res = |v: ValueId| bound.get(&v).copied().unwrap_or((scope, v));
        let order = g.topo_order().map_err(|_| RuntimeError::Node {
            node: format!("<graph {}>", g.name),
            op: "schedule".into(),
            message: "the graph has a cycle".into(),
        })?;
        let mut steps: Vec<Step> = Vec::with_capacity(order.len());
        let mut uses: Vec<BTreeSet<Key>> = vec![];
        for &n in &order {
            let node = g.node(n);
            let opset = self.model.opset_version(&node.domain).unwrap_or(1);
            // Constant nodes: evaluated once on the host.
            if node.op_type == "Constant" && (node.domain.is_empty() || node.domain == "ai.onnx") {
                if let Some(k) = self.registry.get("", "Constant") {
                    if let Ok(out) = k(&OpCtx { node, opset }, &[]) {
                        if let (Some(Some(v)), Some(RtValue::Tensor(t))) =
                            (node.outputs.first(), out.into_iter().next())
                        {
                            self.descs
                                .insert((scope, *v), TensorDesc::new(t.dtype(), t.shape()));
                            self.host_consts.insert((scope, *v), t);
                            continue;
                        }
                    }
                }
            }
            // Folded at build (see `build`): a constant, like a Constant node.
            if !node.outputs.is_empty()
                && node
                    .outputs
                    .iter()
                    .all(|o| o.is_some_and(|v| self.host_consts.contains_key(&(scope, v))))
            {
                continue;
            }
            let inputs: Vec<Option<Key>> = node.inputs.iter().map(|i| i.map(res)).collect();
            let outputs: Vec<Option<Key>> =
                node.outputs.iter().map(|o| o.map(|v| (scope, v))).collect();
            let exec = self.lower(scope, n, &inputs, &outputs, &res)?;
            let mut used: BTreeSet<Key> = inputs.iter().flatten().copied().collect();
            match &exec {
                Exec::If {
                    then_branch,
                    else_branch,
                } => {
                    used.extend(&then_branch.external);
                    used.extend(&else_branch.external);
                }
                Exec::Body(p) => used.extend(&p.external),
                _ => {}
            }
            uses.push(used);
            steps.push(Step {
                scope,
                node: n,
                exec,
                inputs,
                outputs,
                frees: vec![],
                span: (0, 0),
            });
        }
        let results: Vec<Key> = g.outputs.iter().map(|&v| res(v)).collect();
        let mut last: HashMap<Key, usize> = HashMap::new();
        let mut external = BTreeSet::new();
        for (s, u) in uses.iter().enumerate() {
            for &k in u {
                if k.0 == scope {
                    last.insert(k, s);
                } else {
                    external.insert(k);
                }
            }
        }
        for r in &results {
            if r.0 != scope {
                external.insert(*r);
            }
        }
        for (s, (step, u)) in steps.iter_mut().zip(&uses).enumerate() {
            step.frees = u
                .iter()
                .copied()
                .filter(|k| {
                    last.get(k) == Some(&s)
                        && !results.contains(k)
                        && !self.host_consts.contains_key(k)
                })
                .collect();
        }
        Ok(Program {
            scope,
            steps,
            results,
            yield_at: 0,
            external,
            invalid: None,
        })
    }

    /// Chooses how node `n` of scope `scope` runs and records it in the report.
    fn lower(
        &mut self,
        scope: usize,
        n: NodeId,
        inputs: &[Option<Key>],
        outputs: &[Option<Key>],
        res: &dyn Fn(ValueId) -> Key,
    ) -> Result<Exec, RuntimeError> {
        let g = self.scopes[scope];
        let node = g.node(n);
        let opset = self.model.opset_version(&node.domain).unwrap_or(1);
        let in_descs: Vec<Option<TensorDesc>> = inputs
            .iter()
            .map(|i| i.and_then(|k| self.descs.get(&k).cloned()))
            .collect();
        let known = inputs
            .iter()
            .zip(&in_descs)
            .all(|(i, d)| i.is_none() || d.is_some());
        if known
            && outputs
                .iter()
                .flatten()
                .any(|k| !self.descs.contains_key(k))
        {
            // Shapes found while lowering (an If's outputs from its branches)
            // reach the nodes after it here.
            self.infer_outputs(node, inputs, &in_descs, outputs);
        }
        let out_descs: Option<Vec<TensorDesc>> = outputs
            .iter()
            .map(|o| match o {
                Some(k) => self.descs.get(k).cloned(),
                // An absent optional output: nothing is written.
                None => Some(TensorDesc::new(crate::ir::dtype::DType::F32, &[0])),
            })
            .collect();
        let fused = crate::fused::is_fused(node);
        let has_subgraph = node.attrs.iter().any(|a| !a.value.graphs().is_empty()) && !fused;
        let is_if = node.op_type == "If" && (node.domain.is_empty() || node.domain == "ai.onnx");
        let mut exec = if is_if {
            match self.lower_if(scope, n, res) {
                Ok(e) => e,
                Err(r) => Exec::Cpu(r),
            }
        } else if has_subgraph {
            Exec::Cpu(format!(
                "{} has subgraphs (only If runs its branches on the GPU)",
                node.op_type
            ))
        } else {
            match (known, out_descs) {
                (true, Some(out_descs)) => {
                    let info = NodeInfo {
                        node,
                        opset,
                        inputs: in_descs.clone(),
                        outputs: out_descs,
                        consts: inputs
                            .iter()
                            .map(|i| i.and_then(|k| self.host_consts.get(&k)))
                            .collect(),
                        limits: self.gpu.limits(),
                    };
                    match crate::codegen::lower(&info) {
                        Lowering::Kernels(k) => {
                            for d in &k.dispatches {
                                self.gpu.pipeline(&d.label, &d.wgsl).map_err(|e| {
                                    RuntimeError::Node {
                                        node: node_name(g, n),
                                        op: node.op_type.clone(),
                                        message: e.to_string(),
                                    }
                                })?;
                            }
                            Exec::Kernels(k)
                        }
                        Lowering::Alias => Exec::Alias,
                        Lowering::Unsupported(r) => Exec::Cpu(r),
                    }
                }
                _ => Exec::Cpu("shapes known only at run time".into()),
            }
        };
        if fused {
            if let Exec::Cpu(why) = &exec {
                // Not one kernel: run the body node by node.
                exec = match self.lower_body(scope, n, inputs, &in_descs) {
                    Ok(p) => Exec::Body(p),
                    Err(e) => Exec::Cpu(format!("{why}; its body: {e}")),
                };
            }
        }
        let e = self.report.entry(node.op_type.clone()).or_default();
        match &exec {
            Exec::Cpu(r) => {
                if self.registry.get(&node.domain, &node.op_type).is_none() {
                    return Err(RuntimeError::Unsupported {
                        node: node_name(g, n),
                        op: node.op_type.clone(),
                        reason: format!("{r}, and the session has no CPU kernel for it"),
                    });
                }
                e.cpu += 1;
                if !e.reasons.contains(r) {
                    e.reasons.push(r.clone());
                }
            }
            _ => e.gpu += 1,
        }
        Ok(exec)
    }

    /// Infers the output shapes of `node` from its inputs' concrete shapes and
    /// constant values, on a one-node model; records what it finds.
    fn infer_outputs(
        &mut self,
        node: &crate::ir::graph::Node,
        inputs: &[Option<Key>],
        in_descs: &[Option<TensorDesc>],
        outputs: &[Option<Key>],
    ) {
        if node.attrs.iter().any(|a| !a.value.graphs().is_empty()) {
            return;
        }
        let mut g = Graph::new("infer");
        let mut shapes = HashMap::new();
        let mut ins = vec![];
        for (j, (i, d)) in inputs.iter().zip(in_descs).enumerate() {
            let (Some(k), Some(d)) = (i, d) else {
                ins.push(None);
                continue;
            };
            let name = format!("in{j}");
            let v = match self.host_consts.get(k) {
                Some(t) => g.add_const(t.to_tensor(&name)),
                None => {
                    let dims = d.shape.iter().map(|&s| Dim::fixed(s as i64)).collect();
                    shapes.insert(name.clone(), d.shape.clone());
                    g.add_input(&name, Some(Type::tensor(d.dtype, Shape::from_dims(dims))))
                }
            };
            ins.push(Some(v));
        }
        let names: Vec<String> = (0..node.outputs.len()).map(|j| format!("out{j}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (_, outs) = g.add_node(&node.op_type, &node.domain, ins, &refs, node.attrs.clone());
        g.outputs = outs.clone();
        let m = Model {
            opset_imports: self.model.opset_imports.clone(),
            graph: g,
            ..self.model_header()
        };
        let Ok((descs, folded)) = crate::plan::shapes::concrete_folded(&m, &shapes) else {
            return;
        };
        for (o, v) in outputs.iter().zip(&outs) {
            let Some(o) = o else { continue };
            if let Some(d) = descs.get(v) {
                self.descs.entry(*o).or_insert_with(|| d.clone());
            }
            if let Some(t) = folded.get(v) {
                self.host_consts.entry(*o).or_insert_with(|| t.clone());
            }
        }
    }

    /// A model with `self.model`'s header and an empty graph.
    fn model_header(&self) -> Model {
        Model {
            ir_version: self.model.ir_version,
            opset_imports: self.model.opset_imports.clone(),
            producer_name: None,
            producer_version: None,
            domain: None,
            model_version: None,
            doc_string: None,
            metadata_props: vec![],
            graph: Graph::new("empty"),
            functions: self.model.functions.clone(),
            training_info: vec![],
            configuration: vec![],
        }
    }

    /// A new scope for `graph`, with the concrete shapes of its values given
    /// those of the values bound from outside (`outside`: value → its key).
    fn scope_for(&mut self, graph: &'a Graph, outside: &[(ValueId, Key)]) -> Result<usize, String> {
        let known: Vec<(ValueId, Option<crate::plan::shapes::OuterValue>)> = outside
            .iter()
            .map(|&(v, k)| {
                let d = self.descs.get(&k).cloned();
                (v, d.map(|d| (d, self.host_consts.get(&k).cloned())))
            })
            .collect();
        let (descs, folded) = crate::plan::shapes::subgraph(&self.model_header(), graph, &known)?;
        let scope = self.scopes.len();
        self.scopes.push(graph);
        for (v, d) in descs {
            self.descs.insert((scope, v), d);
        }
        for (v, t) in folded {
            self.host_consts.insert((scope, v), t);
        }
        for v in graph.value_ids() {
            let val = graph.value(v);
            if val.def == ValueDef::Const && !outside.iter().any(|&(o, _)| o == v) {
                self.add_init(scope, graph, v).map_err(|e| e.to_string())?;
            }
        }
        Ok(scope)
    }

    fn lower_if(
        &mut self,
        scope: usize,
        n: NodeId,
        res: &dyn Fn(ValueId) -> Key,
    ) -> Result<Exec, String> {
        let g: &'a Graph = self.scopes[scope];
        let node = g.node(n);
        let branch = |name: &str| -> Result<&'a Graph, String> {
            node.attr(name)
                .and_then(|a| a.value.graphs().into_iter().next())
                .ok_or_else(|| format!("If without {name}"))
        };
        let (t, e) = (branch("then_branch")?, branch("else_branch")?);
        // A condition known at build (folded, e.g. from a Shape): only the branch
        // taken is lowered, and the If runs it like a body.
        let cond = node.inputs.first().copied().flatten().map(res);
        let known = cond
            .and_then(|c| self.host_consts.get(&c))
            .and_then(|c| c.to_f64_vec())
            .filter(|v| v.len() == 1)
            .map(|v| v[0] != 0.0);
        let branches = match known {
            Some(true) => vec![t],
            Some(false) => vec![e],
            None => vec![t, e],
        };
        let mut progs = vec![];
        for b in branches {
            let saved = self.report.clone();
            match self.lower_branch(g, b, res) {
                Ok(p) => progs.push(p),
                // A branch that cannot be lowered for these shapes is an error
                // only if it is taken (silero-vad's 8 kHz branch is invalid for
                // 512 samples, and onnxruntime fails on it too).
                Err(e) if known.is_none() => {
                    self.report = saved;
                    progs.push(Program {
                        scope,
                        steps: vec![],
                        results: vec![],
                        external: BTreeSet::new(),
                        yield_at: 0,
                        invalid: Some(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if progs.iter().all(|p| p.invalid.is_some()) {
            let why: Vec<&str> = progs.iter().filter_map(|p| p.invalid.as_deref()).collect();
            return Err(why.join("; "));
        }
        if known.is_some() {
            let taken = progs.pop().ok_or("no branch")?;
            for (o, r) in node.outputs.iter().zip(&taken.results) {
                if let (Some(o), Some(d)) = (o, self.descs.get(r).cloned()) {
                    self.descs.entry((scope, *o)).or_insert(d);
                }
            }
            return Ok(Exec::Body(taken));
        }
        let else_branch = progs.pop().ok_or("no else branch")?;
        let then_branch = progs.pop().ok_or("no then branch")?;
        // The If's outputs take the shapes of the branches that can run, when
        // they agree.
        for (j, o) in node.outputs.iter().enumerate() {
            let Some(o) = o else { continue };
            let shapes: Vec<Option<&TensorDesc>> = [&then_branch, &else_branch]
                .into_iter()
                .filter(|p| p.invalid.is_none())
                .map(|p| p.results.get(j).and_then(|r| self.descs.get(r)))
                .collect();
            if let Some(Some(d)) = shapes.first() {
                if shapes.iter().all(|x| *x == Some(*d)) && !self.descs.contains_key(&(scope, *o)) {
                    let d = (*d).clone();
                    self.descs.insert((scope, *o), d);
                }
            }
        }
        Ok(Exec::If {
            then_branch,
            else_branch,
        })
    }

    /// The program of branch `b` of an `If` in graph `g`.
    fn lower_branch(
        &mut self,
        g: &'a Graph,
        b: &'a Graph,
        res: &dyn Fn(ValueId) -> Key,
    ) -> Result<Program, String> {
        let mut outside = vec![];
        for v in b.value_ids() {
            let val = b.value(v);
            if val.def != ValueDef::Outer {
                continue;
            }
            let found = g
                .value_ids()
                .filter(|&w| g.value(w).name == val.name)
                .max_by_key(|&w| g.value(w).def != ValueDef::Outer)
                .ok_or_else(|| format!("branch value '{}' is not defined outside", val.name))?;
            outside.push((v, res(found)));
        }
        let s = self.scope_for(b, &outside)?;
        let bound: HashMap<ValueId, Key> = outside.into_iter().collect();
        self.program(s, &bound).map_err(|e| e.to_string())
    }

    fn lower_body(
        &mut self,
        scope: usize,
        n: NodeId,
        inputs: &[Option<Key>],
        in_descs: &[Option<TensorDesc>],
    ) -> Result<Program, String> {
        let g: &'a Graph = self.scopes[scope];
        let node = g.node(n);
        let body = crate::fused::fused_body(node).ok_or("a fused node without a body")?;
        if body.inputs.len() != inputs.len() || body.outputs.len() != node.outputs.len() {
            return Err("the body's inputs or outputs do not match the node's".into());
        }
        let mut outside = vec![];
        for ((&v, i), d) in body.inputs.iter().zip(inputs).zip(in_descs) {
            if let (Some(k), Some(_)) = (i, d) {
                outside.push((v, *k));
            }
        }
        let s = self.scope_for(body, &outside)?;
        let bound: HashMap<ValueId, Key> = outside.into_iter().collect();
        self.program(s, &bound).map_err(|e| e.to_string())
    }
}
