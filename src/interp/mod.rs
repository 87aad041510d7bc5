//! The reference interpreter: runs a model on the CPU with the kernels of `ops/`.
//!
//! It defines what a graph computes; optimizations and the GPU runtime are checked
//! against it. Nodes run in topological order; each value is freed after its last
//! use (uses by subgraphs included). If, Loop and Scan run their subgraphs with the
//! enclosing values visible by name; calls to model-local functions run the
//! function body with the call's attributes bound.
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
use std::collections::{HashMap, HashSet};
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
    trace: Option<std::cell::RefCell<HashMap<String, (crate::DType, Vec<usize>)>>>,
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
        }
    }

    /// Runs the model and also returns the element type and shape of every tensor
    /// the nodes produced, by value name.
    #[allow(clippy::type_complexity)]
    pub fn run_traced(
        model: &'m Model,
        inputs: Vec<(String, RtValue)>,
    ) -> Result<(Vec<(String, RtValue)>, HashMap<String, (crate::DType, Vec<usize>)>), InterpError> {
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
        let gerr = |m: String| InterpError::Graph {
            graph: g.name.clone(),
            message: m,
        };
        let order = g
            .topo_order()
            .map_err(|_| gerr("the graph has a cycle".into()))?;
        let mut env: HashMap<ValueId, RtValue> = HashMap::new();
        if inputs.len() > g.inputs.len() {
            return Err(gerr(format!(
                "{} inputs given, the graph has {}",
                inputs.len(),
                g.inputs.len()
            )));
        }
        for (k, &id) in g.inputs.iter().enumerate() {
            match inputs.get(k).cloned().flatten() {
                Some(v) => {
                    env.insert(id, v);
                }
                None => {
                    if let Some(Initializer::Dense(t)) = &g.value(id).init {
                        env.insert(
                            id,
                            RtValue::Tensor(
                                TensorValue::from_tensor(t).map_err(|e| gerr(e.to_string()))?,
                            ),
                        );
                    }
                }
            }
        }
        // Last use of every value, so it can be freed.
        let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
        let mut last_use: HashMap<ValueId, usize> = HashMap::new();
        let names: HashMap<&str, ValueId> = g
            .value_ids()
            .map(|v| (g.value(v).name.as_str(), v))
            .collect();
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
                        }
                    }
                }
            }
        }
        for (step, &n) in order.iter().enumerate() {
            let node = g.node(n);
            let mut args: Vec<Option<RtValue>> = Vec::with_capacity(node.inputs.len());
            for v in &node.inputs {
                args.push(match v {
                    None => None,
                    Some(v) => Some(
                        self.fetch(g, *v, &env, outer)
                            .map_err(|m| node_err(g, n, m))?,
                    ),
                });
            }
            let results = self.run_node(g, n, opsets, &env, outer, args)?;
            for (slot, o) in node.outputs.iter().enumerate() {
                if o.is_some() && slot >= results.len() {
                    return Err(node_err(
                        g,
                        n,
                        format!("produced {} outputs, output {slot} is used", results.len()),
                    ));
                }
            }
            for (slot, r) in results.into_iter().enumerate() {
                if let Some(Some(v)) = node.outputs.get(slot) {
                    if let (Some(trace), RtValue::Tensor(t)) = (&self.trace, &r) {
                        trace.borrow_mut().insert(g.value(*v).name.clone(), (t.dtype(), t.shape().to_vec()));
                    }
                    env.insert(*v, r);
                }
            }
            for v in node.inputs.iter().flatten() {
                if last_use.get(v) == Some(&step) && !outputs.contains(v) {
                    env.remove(v);
                }
            }
        }
        g.outputs
            .iter()
            .map(|&o| {
                self.fetch(g, o, &env, outer)
                    .map_err(|m| gerr(format!("output '{}': {m}", g.value(o).name)))
            })
            .collect()
    }

    fn fetch(
        &self,
        g: &Graph,
        v: ValueId,
        env: &HashMap<ValueId, RtValue>,
        outer: &Frame,
    ) -> Result<RtValue, String> {
        if let Some(x) = env.get(&v) {
            return Ok(x.clone());
        }
        let val = g.value(v);
        match (&val.def, &val.init) {
            (_, Some(Initializer::Dense(t))) => TensorValue::from_tensor(t)
                .map(RtValue::Tensor)
                .map_err(|e| e.to_string()),
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

    fn run_node(
        &self,
        g: &Graph,
        n: NodeId,
        opsets: &[OpsetImport],
        env: &HashMap<ValueId, RtValue>,
        outer: &Frame,
        args: Vec<Option<RtValue>>,
    ) -> Result<Vec<RtValue>, InterpError> {
        let node = g.node(n);
        let norm = |d: &str| {
            if d == "ai.onnx" {
                String::new()
            } else {
                d.to_string()
            }
        };
        let opset = opsets
            .iter()
            .find(|o| norm(&o.domain) == norm(&node.domain))
            .map(|o| o.version)
            .unwrap_or(1);
        let has_subgraph = node.attrs.iter().any(|a| !a.value.graphs().is_empty());
        if has_subgraph || matches!(node.op_type.as_str(), "If" | "Loop" | "Scan") {
            // The enclosing values, by name, for the subgraphs.
            let mut values: HashMap<&str, &RtValue> = HashMap::new();
            for (id, v) in env {
                values.insert(g.value(*id).name.as_str(), v);
            }
            let frame = Frame {
                values,
                parent: Some(outer),
            };
            let consts = self.constants_for(g);
            let mut frame = frame;
            for (name, v) in &consts {
                frame.values.entry(name.as_str()).or_insert(v);
            }
            return control::run(self, g, n, opsets, opset, &frame, args);
        }
        if let Some(f) = self
            .model
            .functions
            .iter()
            .find(|f| f.name == node.op_type && norm(&f.domain) == norm(&node.domain))
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

    /// The constants of `g` (initializers) as values, for subgraphs that read them.
    fn constants_for(&self, g: &Graph) -> Vec<(String, RtValue)> {
        g.initializers
            .iter()
            .filter(|&&v| g.value(v).def == ValueDef::Const)
            .filter_map(|&v| match &g.value(v).init {
                Some(Initializer::Dense(t)) => TensorValue::from_tensor(t)
                    .ok()
                    .map(|t| (g.value(v).name.clone(), RtValue::Tensor(t))),
                _ => None,
            })
            .collect()
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
