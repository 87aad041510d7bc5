//! The reference interpreter: runs a model on the CPU with the kernels of `ops/`.
//!
//! It defines what a graph computes; optimizations and the GPU runtime are checked
//! against it. Nodes run in topological order; each value is freed after its last
//! use (uses by subgraphs included). If, Loop and Scan run their subgraphs with the
//! enclosing values visible by name; calls to model-local functions run the
//! function body with the call's attributes bound; a fused node runs its body like
//! a function call (it sees only its inputs).
//!
//! ```
//! use modc::{Interpreter, RtValue, TensorValue};
//! let m = modc::parse_model("opset _=17\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n").unwrap();
//! let x = RtValue::Tensor(TensorValue::from_f32(&[2], vec![-1.0, 2.0]));
//! let out = Interpreter::new(&m).run(vec![("x".to_string(), x)]).unwrap();
//! assert_eq!(out[0].1, RtValue::Tensor(TensorValue::from_f32(&[2], vec![0.0, 2.0])));
//! ```

mod control;
pub mod io;
pub mod value;

use crate::ir::graph::{Graph, Initializer, NodeId, ValueDef, ValueId};
use crate::ir::model::{Model, OpsetImport};
use crate::ops::{OpCtx, OpError, OpRegistry};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use value::{RtValue, TensorValue};

/// An error while running a model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum InterpError {
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("node '{node}': op {op} is not supported{}", if domain.is_empty() { String::new() } else { format!(" (domain '{domain}')") })]
    Unsupported {
        node: String,
        op: String,
        domain: String,
    },
    #[error("input '{name}' is missing; the model expects {expected}")]
    MissingInput { name: String, expected: String },
    #[error("input '{name}': {message}")]
    BadInput { name: String, message: String },
    #[error("the model has no input named '{name}'")]
    UnknownInput { name: String },
    #[error("graph '{graph}': {message}")]
    Graph { graph: String, message: String },
}

/// Runs models on the CPU.
pub struct Interpreter<'m> {
    model: &'m Model,
    registry: OpRegistry,
    /// When set, the element type and shape of every tensor a node produces, by
    /// value name (all graphs), for checking shape inference and debugging.
    trace: Option<RefCell<Trace>>,
    /// Per graph (by address; only graphs of the model, which outlive `self`).
    plans: RefCell<HashMap<usize, Rc<GraphPlan>>>,
    /// Initializers converted to runtime values, by (graph address, value).
    initializers: RefCell<HashMap<(usize, ValueId), RtValue>>,
    /// Outputs of Constant nodes, by (graph address, node).
    constant_outputs: RefCell<HashMap<(usize, NodeId), RtValue>>,
    /// When set: calls and time per op type.
    profile: Option<RefCell<HashMap<String, (usize, std::time::Duration)>>>,
}

fn same_domain(a: &str, b: &str) -> bool {
    fn norm(d: &str) -> &str {
        if d == "ai.onnx" {
            ""
        } else {
            d
        }
    }
    norm(a) == norm(b)
}

/// Element type and shape of each produced tensor, by value name.
pub type Trace = HashMap<String, (crate::DType, Vec<usize>)>;

/// The static schedule of one graph.
struct GraphPlan {
    n_values: usize,
    order: Vec<NodeId>,
    /// Per step and input slot: the value dies here and may be moved, not cloned.
    take: Vec<Vec<bool>>,
    /// Per step: values to drop after the step.
    free_after: Vec<Vec<ValueId>>,
    /// Per step: a Constant node, whose output is computed once.
    constant_node: Vec<bool>,
    /// Per node with subgraphs: the values of this graph its subgraphs read.
    captured: HashMap<NodeId, Vec<ValueId>>,
}

impl GraphPlan {
    fn new(g: &Graph) -> Result<GraphPlan, String> {
        let order = g
            .topo_order()
            .map_err(|_| "the graph has a cycle".to_string())?;
        let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
        let names: HashMap<&str, ValueId> = g
            .value_ids()
            .map(|v| (g.value(v).name.as_str(), v))
            .collect();
        let mut last_use: HashMap<ValueId, usize> = HashMap::new();
        let mut captured: HashMap<NodeId, Vec<ValueId>> = HashMap::new();
        for (step, &n) in order.iter().enumerate() {
            let node = g.node(n);
            for v in node.inputs.iter().flatten() {
                last_use.insert(*v, step);
            }
            for a in &node.attrs {
                for sub in a.value.graphs() {
                    for name in captured_names(sub) {
                        if let Some(&v) = names.get(name.as_str()) {
                            last_use.insert(v, step);
                            captured.entry(n).or_default().push(v);
                        }
                    }
                }
            }
        }
        let mut take = Vec::with_capacity(order.len());
        let mut free_after = Vec::with_capacity(order.len());
        let mut constant_node = Vec::with_capacity(order.len());
        for (step, &n) in order.iter().enumerate() {
            let node = g.node(n);
            let dies = |v: &ValueId| {
                last_use.get(v) == Some(&step)
                    && !outputs.contains(v)
                    && g.value(*v).init.is_none()
                    && g.value(*v).def != ValueDef::Outer
                    && !captured.get(&n).is_some_and(|c| c.contains(v))
            };
            let mut t = vec![false; node.inputs.len()];
            for (slot, v) in node.inputs.iter().enumerate() {
                if let Some(v) = v {
                    // Only the last slot reading a dying value may move it.
                    let later = node.inputs[slot + 1..].contains(&Some(*v));
                    t[slot] = dies(v) && !later;
                }
            }
            take.push(t);
            let mut free: Vec<ValueId> = node
                .inputs
                .iter()
                .flatten()
                .filter(|v| last_use.get(v) == Some(&step) && !outputs.contains(v))
                .copied()
                .collect();
            free.extend(
                captured
                    .get(&n)
                    .into_iter()
                    .flatten()
                    .filter(|v| last_use.get(v) == Some(&step) && !outputs.contains(v)),
            );
            free_after.push(free);
            constant_node.push(
                node.op_type == "Constant"
                    && node.inputs.is_empty()
                    && (node.domain.is_empty() || node.domain == "ai.onnx"),
            );
        }
        Ok(GraphPlan {
            n_values: g.value_ids().count(),
            order,
            take,
            free_after,
            constant_node,
            captured,
        })
    }
}

/// Names visible from a subgraph: the values of the enclosing graphs.
pub(crate) struct Frame<'a> {
    values: HashMap<&'a str, &'a RtValue>,
    parent: Option<&'a Frame<'a>>,
}

impl<'a> Frame<'a> {
    fn lookup(&self, name: &str) -> Option<&'a RtValue> {
        match self.values.get(name) {
            Some(v) => Some(*v),
            None => self.parent.and_then(|p| p.lookup(name)),
        }
    }
}

impl<'m> Interpreter<'m> {
    pub fn new(model: &'m Model) -> Interpreter<'m> {
        Interpreter {
            model,
            registry: OpRegistry::standard(),
            trace: None,
            plans: Default::default(),
            initializers: Default::default(),
            constant_outputs: Default::default(),
            profile: None,
        }
    }

    /// Records calls and time per op type from now on (see [`Interpreter::profile`]).
    pub fn enable_profile(&mut self) {
        self.profile = Some(Default::default());
    }

    /// Op types with their call count and total time, slowest first.
    pub fn profile(&self) -> Vec<(String, usize, std::time::Duration)> {
        let mut v: Vec<_> = self
            .profile
            .as_ref()
            .map(|p| {
                p.borrow()
                    .iter()
                    .map(|(k, (c, d))| (k.clone(), *c, *d))
                    .collect()
            })
            .unwrap_or_default();
        v.sort_by_key(|e| std::cmp::Reverse(e.2));
        v
    }

    /// Runs the model and also returns the element type and shape of every tensor
    /// the nodes produced, by value name.
    pub fn run_traced(
        model: &'m Model,
        inputs: Vec<(String, RtValue)>,
    ) -> Result<(Vec<(String, RtValue)>, Trace), InterpError> {
        let mut me = Interpreter::new(model);
        me.trace = Some(Default::default());
        let outs = me.run(inputs)?;
        let trace = me.trace.take().map(|t| t.into_inner()).unwrap_or_default();
        Ok((outs, trace))
    }

    /// Runs the model. `inputs` are (name, value) pairs; every graph input without
    /// a default must be given. Returns the outputs in graph order.
    pub fn run(
        &self,
        inputs: Vec<(String, RtValue)>,
    ) -> Result<Vec<(String, RtValue)>, InterpError> {
        let g = &self.model.graph;
        let mut by_name: HashMap<String, RtValue> = HashMap::new();
        for (name, v) in inputs {
            if !g.inputs.iter().any(|&i| g.value(i).name == name) {
                return Err(InterpError::UnknownInput { name });
            }
            by_name.insert(name, v);
        }
        let mut args = Vec::new();
        for &i in &g.inputs {
            let val = g.value(i);
            match by_name.remove(&val.name) {
                Some(v) => {
                    check_input(&val.name, val.ty.as_ref(), &v)?;
                    args.push(Some(v));
                }
                None if val.init.is_some() => args.push(None),
                None => {
                    return Err(InterpError::MissingInput {
                        name: val.name.clone(),
                        expected: val
                            .ty
                            .as_ref()
                            .map(|t| t.to_string())
                            .unwrap_or_else(|| "a value".into()),
                    });
                }
            }
        }
        let root = Frame {
            values: HashMap::new(),
            parent: None,
        };
        let outs = self.run_graph(g, &self.model.opset_imports, &root, args)?;
        Ok(g.outputs
            .iter()
            .map(|&o| g.value(o).name.clone())
            .zip(outs)
            .collect())
    }

    /// Runs `g` with positional inputs (`None`: use the input's default).
    pub(crate) fn run_graph(
        &self,
        g: &Graph,
        opsets: &[OpsetImport],
        outer: &Frame,
        inputs: Vec<Option<RtValue>>,
    ) -> Result<Vec<RtValue>, InterpError> {
        self.run_graph_with(g, opsets, outer, inputs, true)
    }

    /// The static part of running `g` (order, when values die), computed once per
    /// graph of the model and reused by every run.
    fn plan_for(&self, g: &Graph, cache: bool) -> Result<Rc<GraphPlan>, InterpError> {
        let key = g as *const Graph as usize;
        if cache {
            if let Some(p) = self.plans.borrow().get(&key) {
                return Ok(p.clone());
            }
        }
        let plan = Rc::new(GraphPlan::new(g).map_err(|m| InterpError::Graph {
            graph: g.name.clone(),
            message: m,
        })?);
        if cache {
            self.plans.borrow_mut().insert(key, plan.clone());
        }
        Ok(plan)
    }

    /// Runs `g`. `cache`: whether `g` lives as long as the interpreter (false for
    /// function bodies instantiated per call), so its plan and constants may be kept.
    pub(crate) fn run_graph_with(
        &self,
        g: &Graph,
        opsets: &[OpsetImport],
        outer: &Frame,
        inputs: Vec<Option<RtValue>>,
        cache: bool,
    ) -> Result<Vec<RtValue>, InterpError> {
        let gerr = |m: String| InterpError::Graph {
            graph: g.name.clone(),
            message: m,
        };
        let plan = self.plan_for(g, cache)?;
        if inputs.len() > g.inputs.len() {
            return Err(gerr(format!(
                "{} inputs given, the graph has {}",
                inputs.len(),
                g.inputs.len()
            )));
        }
        let mut env: Vec<Option<RtValue>> = vec![None; plan.n_values];
        for (k, &id) in g.inputs.iter().enumerate() {
            match inputs.get(k).cloned().flatten() {
                Some(v) => env[id.0 as usize] = Some(v),
                None => {
                    if let Some(Initializer::Dense(t)) = &g.value(id).init {
                        env[id.0 as usize] = Some(RtValue::Tensor(
                            TensorValue::from_tensor(t).map_err(|e| gerr(e.to_string()))?,
                        ));
                    }
                }
            }
        }
        for (step, &n) in plan.order.iter().enumerate() {
            let node = g.node(n);
            let key = (g as *const Graph as usize, n);
            if cache && plan.constant_node[step] {
                if let Some(v) = self.constant_outputs.borrow().get(&key) {
                    if let Some(Some(o)) = node.outputs.first() {
                        env[o.0 as usize] = Some(v.clone());
                    }
                    continue;
                }
            }
            let mut args: Vec<Option<RtValue>> = Vec::with_capacity(node.inputs.len());
            for (slot, v) in node.inputs.iter().enumerate() {
                args.push(match v {
                    None => None,
                    Some(v) => {
                        let moved = if plan.take[step][slot] {
                            env[v.0 as usize].take()
                        } else {
                            None
                        };
                        match moved {
                            Some(x) => Some(x),
                            None => Some(
                                self.fetch(g, *v, &env, outer, cache)
                                    .map_err(|m| node_err(g, n, m))?,
                            ),
                        }
                    }
                });
            }
            let started = self.profile.as_ref().map(|_| std::time::Instant::now());
            let results = self.run_node(g, n, opsets, &env, outer, args, &plan)?;
            if let (Some(p), Some(t)) = (&self.profile, started) {
                let mut p = p.borrow_mut();
                let e = p.entry(node.op_type.clone()).or_default();
                e.0 += 1;
                e.1 += t.elapsed();
            }
            for (slot, o) in node.outputs.iter().enumerate() {
                if o.is_some() && slot >= results.len() {
                    return Err(node_err(
                        g,
                        n,
                        format!("produced {} outputs, output {slot} is used", results.len()),
                    ));
                }
            }
            if cache && plan.constant_node[step] {
                if let Some(r) = results.first() {
                    self.constant_outputs.borrow_mut().insert(key, r.clone());
                }
            }
            for (slot, r) in results.into_iter().enumerate() {
                if let Some(Some(v)) = node.outputs.get(slot) {
                    if let (Some(trace), RtValue::Tensor(t)) = (&self.trace, &r) {
                        trace
                            .borrow_mut()
                            .insert(g.value(*v).name.clone(), (t.dtype(), t.shape().to_vec()));
                    }
                    env[v.0 as usize] = Some(r);
                }
            }
            for v in &plan.free_after[step] {
                env[v.0 as usize] = None;
            }
        }
        g.outputs
            .iter()
            .map(|&o| {
                self.fetch(g, o, &env, outer, cache)
                    .map_err(|m| gerr(format!("output '{}': {m}", g.value(o).name)))
            })
            .collect()
    }

    fn fetch(
        &self,
        g: &Graph,
        v: ValueId,
        env: &[Option<RtValue>],
        outer: &Frame,
        cache: bool,
    ) -> Result<RtValue, String> {
        if let Some(Some(x)) = env.get(v.0 as usize) {
            return Ok(x.clone());
        }
        let val = g.value(v);
        match (&val.def, &val.init) {
            (_, Some(Initializer::Dense(t))) => {
                let key = (g as *const Graph as usize, v);
                if cache {
                    if let Some(c) = self.initializers.borrow().get(&key) {
                        return Ok(c.clone());
                    }
                }
                let c = TensorValue::from_tensor(t)
                    .map(RtValue::Tensor)
                    .map_err(|e| e.to_string())?;
                if cache {
                    self.initializers.borrow_mut().insert(key, c.clone());
                }
                Ok(c)
            }
            (_, Some(Initializer::Sparse(_))) => Err(format!(
                "sparse initializer '{}' is not supported",
                val.name
            )),
            (ValueDef::Outer, _) => outer
                .lookup(&val.name)
                .cloned()
                .ok_or_else(|| format!("'{}' is not defined in any enclosing graph", val.name)),
            _ => Err(format!("value '{}' has not been computed", val.name)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_node(
        &self,
        g: &Graph,
        n: NodeId,
        opsets: &[OpsetImport],
        env: &[Option<RtValue>],
        outer: &Frame,
        args: Vec<Option<RtValue>>,
        plan: &GraphPlan,
    ) -> Result<Vec<RtValue>, InterpError> {
        let node = g.node(n);
        let opset = opsets
            .iter()
            .find(|o| same_domain(&o.domain, &node.domain))
            .map(|o| o.version)
            .unwrap_or(1);
        let has_subgraph = node.attrs.iter().any(|a| !a.value.graphs().is_empty());
        if has_subgraph
            || matches!(node.op_type.as_str(), "If" | "Loop" | "Scan")
            || crate::fused::is_fused(node)
        {
            // The values the subgraphs read from this graph, by name.
            let mut owned: Vec<(&str, RtValue)> = Vec::new();
            for &v in plan.captured.get(&n).map(|v| v.as_slice()).unwrap_or(&[]) {
                if let Ok(x) = self.fetch(g, v, env, outer, true) {
                    owned.push((g.value(v).name.as_str(), x));
                }
            }
            let frame = Frame {
                values: owned.iter().map(|(k, v)| (*k, v)).collect(),
                parent: Some(outer),
            };
            return control::run(self, g, n, opsets, opset, &frame, args);
        }
        if let Some(f) = self
            .model
            .functions
            .iter()
            .find(|f| f.name == node.op_type && same_domain(&f.domain, &node.domain))
        {
            return control::call_function(self, g, n, f, args);
        }
        let kernel = self
            .registry
            .get(&node.domain, &node.op_type)
            .ok_or_else(|| InterpError::Unsupported {
                node: node_name(g, n),
                op: node.op_type.clone(),
                domain: node.domain.clone(),
            })?;
        let ctx = OpCtx { node, opset };
        kernel(&ctx, &args).map_err(|e| match e {
            OpError::Unsupported(m) => node_err(g, n, format!("not supported: {m}")),
            OpError::Invalid(m) => node_err(g, n, m),
        })
    }
}

/// Names a subgraph (or its own subgraphs) reads from enclosing graphs.
fn captured_names(g: &Graph) -> Vec<String> {
    let mut out: Vec<String> = g
        .outer_values()
        .into_iter()
        .map(|v| g.value(v).name.clone())
        .collect();
    for (_, n) in g.nodes() {
        for a in &n.attrs {
            for sub in a.value.graphs() {
                out.extend(captured_names(sub));
            }
        }
    }
    out
}

pub(crate) fn node_name(g: &Graph, n: NodeId) -> String {
    let node = g.node(n);
    match &node.name {
        Some(s) if !s.is_empty() => s.clone(),
        _ => node
            .outputs
            .iter()
            .flatten()
            .next()
            .map(|v| g.value(*v).name.clone())
            .unwrap_or_else(|| format!("#{}", n.0)),
    }
}

pub(crate) fn node_err(g: &Graph, n: NodeId, message: String) -> InterpError {
    InterpError::Node {
        node: node_name(g, n),
        op: g.node(n).op_type.clone(),
        message,
    }
}

/// Checks a given input against the declared type: element type and rank, and
/// every fixed dimension.
fn check_input(
    name: &str,
    ty: Option<&crate::ir::types::Type>,
    v: &RtValue,
) -> Result<(), InterpError> {
    let Some(ty) = ty else { return Ok(()) };
    let Some((elem, shape)) = ty.as_tensor() else {
        return Ok(());
    };
    let RtValue::Tensor(t) = v else {
        return Err(InterpError::BadInput {
            name: name.into(),
            message: format!("expected a tensor {ty}"),
        });
    };
    if elem != crate::DType::Undefined && t.dtype() != elem {
        return Err(InterpError::BadInput {
            name: name.into(),
            message: format!("expected element type {elem}, got {}", t.dtype()),
        });
    }
    if let Some(shape) = shape {
        if shape.rank() != t.shape().len() {
            return Err(InterpError::BadInput {
                name: name.into(),
                message: format!(
                    "expected rank {} ({ty}), got shape {:?}",
                    shape.rank(),
                    t.shape()
                ),
            });
        }
        for (i, (d, &n)) in shape.dims.iter().zip(t.shape()).enumerate() {
            if let Some(want) = d.as_fixed() {
                if want >= 0 && want as usize != n {
                    return Err(InterpError::BadInput {
                        name: name.into(),
                        message: format!(
                            "dimension {i} must be {want} ({ty}), got shape {:?}",
                            t.shape()
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}
