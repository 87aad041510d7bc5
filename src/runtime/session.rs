//! A session: one model on one GPU for fixed input shapes.
//!
//! [`Session::new`] infers every tensor's concrete shape, lowers each node of the
//! main graph once (kernels, an alias, or a CPU fallback with its reason),
//! compiles the pipelines and uploads the weights. [`Session::run`] walks the
//! schedule: consecutive GPU steps are encoded into one submission; a CPU step
//! (a node without a kernel, or whose shapes are only known at run time) reads its
//! inputs back, runs the interpreter's op kernel and leaves its outputs on the
//! host, uploaded when a GPU step needs them. Device buffers return to a pool,
//! keyed by size, after their last use, so intermediates reuse memory.

use super::exec::{device_bytes, DeviceTensor, Prepared};
use super::{Gpu, RuntimeError};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, TensorDesc};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::graph::{Initializer, NodeId, ValueDef, ValueId};
use crate::ir::model::Model;
use crate::ops::{OpCtx, OpRegistry};
use std::collections::{BTreeMap, HashMap};

/// How a node runs.
#[derive(Debug, Clone)]
enum Exec {
    Kernels(NodeKernels),
    Alias,
    Cpu(String),
}

struct Step {
    node: NodeId,
    exec: Exec,
    /// Values whose last use is this step (freed after it).
    frees: Vec<ValueId>,
}

/// Per op type: nodes on the GPU, nodes on the CPU, and why they fell back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OpBackends {
    pub gpu: usize,
    pub cpu: usize,
    pub reasons: Vec<String>,
}

enum Loc {
    Dev(DeviceTensor),
    Host(TensorValue),
}

/// One model prepared on one device.
pub struct Session<'a> {
    gpu: &'a Gpu,
    model: &'a Model,
    steps: Vec<Step>,
    descs: HashMap<ValueId, TensorDesc>,
    /// Initializers and Constant-node outputs, on the device.
    weights: HashMap<ValueId, DeviceTensor>,
    host_consts: HashMap<ValueId, TensorValue>,
    registry: OpRegistry,
    report: BTreeMap<String, OpBackends>,
}

fn node_name(model: &Model, id: NodeId) -> String {
    let n = model.graph.node(id);
    n.name
        .clone()
        .unwrap_or_else(|| format!("<{} #{}>", n.op_type, id.0))
}

impl<'a> Session<'a> {
    /// Prepares `model` for inputs of the given shapes (by name).
    pub fn new(
        gpu: &'a Gpu,
        model: &'a Model,
        input_shapes: &HashMap<String, Vec<usize>>,
    ) -> Result<Session<'a>, RuntimeError> {
        let g = &model.graph;
        let descs =
            crate::plan::shapes::concrete(model, input_shapes).map_err(|e| RuntimeError::Node {
                node: "<inputs>".into(),
                op: "shape inference".into(),
                message: e.to_string(),
            })?;
        let registry = OpRegistry::standard();
        let mut host_consts: HashMap<ValueId, TensorValue> = HashMap::new();
        for v in g.value_ids() {
            let val = g.value(v);
            if val.def == ValueDef::Const
                || (val.def == ValueDef::Input
                    && val.init.is_some()
                    && !input_shapes.contains_key(&val.name))
            {
                if let Some(Initializer::Dense(t)) = &val.init {
                    let tv = TensorValue::from_tensor(t).map_err(|e| RuntimeError::Tensor {
                        name: val.name.clone(),
                        message: e.to_string(),
                    })?;
                    host_consts.insert(v, tv);
                }
            }
        }
        let order = g.topo_order().map_err(|_| RuntimeError::Node {
            node: "<graph>".into(),
            op: "schedule".into(),
            message: "the graph has a cycle".into(),
        })?;
        let mut last_use: HashMap<ValueId, usize> = HashMap::new();
        for (s, &n) in order.iter().enumerate() {
            for v in g.node(n).inputs.iter().flatten() {
                last_use.insert(*v, s);
            }
        }
        let mut steps = Vec::with_capacity(order.len());
        let mut report: BTreeMap<String, OpBackends> = BTreeMap::new();
        let limits = gpu.limits();
        for (s, &n) in order.iter().enumerate() {
            let node = g.node(n);
            let opset = model.opset_version(&node.domain).unwrap_or(1);
            // Constant nodes: evaluated once on the host.
            if node.op_type == "Constant" && (node.domain.is_empty() || node.domain == "ai.onnx") {
                if let Some(k) = registry.get("", "Constant") {
                    let ctx = OpCtx { node, opset };
                    if let Ok(out) = k(&ctx, &[]) {
                        if let (Some(Some(v)), Some(RtValue::Tensor(t))) =
                            (node.outputs.first(), out.into_iter().next())
                        {
                            host_consts.insert(*v, t);
                            continue;
                        }
                    }
                }
            }
            let inputs: Vec<Option<TensorDesc>> = node
                .inputs
                .iter()
                .map(|i| i.and_then(|v| descs.get(&v).cloned()))
                .collect();
            let outputs: Option<Vec<TensorDesc>> = node
                .outputs
                .iter()
                .map(|o| o.and_then(|v| descs.get(&v).cloned()))
                .collect();
            let known = node
                .inputs
                .iter()
                .zip(&inputs)
                .all(|(i, d)| i.is_none() || d.is_some());
            let has_subgraph = node.attrs.iter().any(|a| !a.value.graphs().is_empty())
                && !crate::fused::is_fused(node);
            let exec = match (known, outputs) {
                _ if has_subgraph => Exec::Cpu(format!("{} has subgraphs", node.op_type)),
                (true, Some(outputs)) => {
                    let info = NodeInfo {
                        node,
                        opset,
                        inputs,
                        outputs,
                        consts: node
                            .inputs
                            .iter()
                            .map(|i| i.and_then(|v| host_consts.get(&v)))
                            .collect(),
                        limits,
                    };
                    match crate::codegen::lower(&info) {
                        Lowering::Kernels(k) => {
                            for d in &k.dispatches {
                                gpu.pipeline(&d.label, &d.wgsl).map_err(|e| {
                                    RuntimeError::Node {
                                        node: node_name(model, n),
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
            };
            let e = report.entry(node.op_type.clone()).or_default();
            match &exec {
                Exec::Cpu(r) => {
                    if registry.get(&node.domain, &node.op_type).is_none() {
                        return Err(RuntimeError::Unsupported {
                            node: node_name(model, n),
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
            let outs: std::collections::HashSet<ValueId> = g.outputs.iter().copied().collect();
            let mut frees: Vec<ValueId> = node
                .inputs
                .iter()
                .flatten()
                .copied()
                .filter(|v| {
                    last_use.get(v) == Some(&s) && !outs.contains(v) && !host_consts.contains_key(v)
                })
                .collect();
            frees.sort();
            frees.dedup();
            steps.push(Step {
                node: n,
                exec,
                frees,
            });
        }
        let mut weights = HashMap::new();
        for (&v, t) in &host_consts {
            if crate::codegen::spec::Storage::of(t.dtype()).is_some()
                && t.dtype() != crate::ir::dtype::DType::I64
                || t.to_i64_vec()
                    .is_some_and(|x| x.iter().all(|&y| i32::try_from(y).is_ok()))
            {
                if let Ok(d) = gpu.upload(&g.value(v).name, t) {
                    weights.insert(v, d);
                }
            }
        }
        Ok(Session {
            gpu,
            model,
            steps,
            descs,
            weights,
            host_consts,
            registry,
            report,
        })
    }

    /// Per op type, how many nodes run on the GPU and how many on the CPU (and why).
    pub fn backends(&self) -> &BTreeMap<String, OpBackends> {
        &self.report
    }

    /// Number of nodes that fall back to the CPU.
    pub fn fallback_count(&self) -> usize {
        self.report.values().map(|b| b.cpu).sum()
    }

    /// Runs the model; returns the graph outputs by name, in order.
    pub fn run(
        &self,
        inputs: &[(String, TensorValue)],
    ) -> Result<Vec<(String, TensorValue)>, RuntimeError> {
        let g = &self.model.graph;
        let mut locs: HashMap<ValueId, Loc> = HashMap::new();
        for &id in &g.inputs {
            let v = g.value(id);
            if let Some((_, t)) = inputs.iter().find(|(n, _)| *n == v.name) {
                locs.insert(id, Loc::Host(t.clone()));
            } else if v.init.is_none() {
                return Err(RuntimeError::Tensor {
                    name: v.name.clone(),
                    message: "the input is missing".into(),
                });
            }
        }
        let mut pool: HashMap<u64, Vec<DeviceTensor>> = HashMap::new();
        let mut pending: Vec<Prepared> = vec![];
        for step in &self.steps {
            let node = g.node(step.node);
            let name = || node_name(self.model, step.node);
            let fail = |e: RuntimeError| RuntimeError::Node {
                node: name(),
                op: node.op_type.clone(),
                message: e.to_string(),
            };
            match &step.exec {
                Exec::Alias => {
                    let x = node
                        .inputs
                        .first()
                        .copied()
                        .flatten()
                        .ok_or_else(|| fail(RuntimeError::Device("no input".into())))?;
                    let d = self
                        .device_of(x, &mut locs, &mut pool, &mut pending)
                        .map_err(fail)?;
                    if let Some(Some(o)) = node.outputs.first() {
                        locs.insert(*o, Loc::Dev(d));
                    }
                }
                Exec::Kernels(k) => {
                    let mut ins = Vec::with_capacity(node.inputs.len());
                    for i in &node.inputs {
                        ins.push(match i {
                            Some(v) => Some(
                                self.device_of(*v, &mut locs, &mut pool, &mut pending)
                                    .map_err(fail)?,
                            ),
                            None => None,
                        });
                    }
                    let mut outs = Vec::with_capacity(node.outputs.len());
                    for o in &node.outputs {
                        let n = o
                            .and_then(|v| self.descs.get(&v))
                            .map(|d| d.len())
                            .unwrap_or(0);
                        let t = take(&mut pool, self.gpu, device_bytes(n)).map_err(fail)?;
                        if let Some(v) = o {
                            locs.insert(*v, Loc::Dev(t.clone()));
                        }
                        outs.push(t);
                    }
                    let temps = k
                        .temps
                        .iter()
                        .map(|&b| take(&mut pool, self.gpu, b))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(fail)?;
                    let slot = |s: Slot| match s {
                        Slot::Input(i) => ins.get(i).cloned().flatten(),
                        Slot::Output(i) => outs.get(i).cloned(),
                        Slot::Temp(i) => temps.get(i).cloned(),
                    };
                    for d in &k.dispatches {
                        pending.push(self.gpu.prepare(d, &slot).map_err(fail)?);
                    }
                    for t in temps {
                        give(&mut pool, t);
                    }
                }
                Exec::Cpu(_) => {
                    if !pending.is_empty() {
                        self.gpu.submit(&pending.iter().collect::<Vec<_>>())?;
                        pending.clear();
                    }
                    let mut ins: Vec<Option<RtValue>> = Vec::with_capacity(node.inputs.len());
                    for i in &node.inputs {
                        ins.push(match i {
                            Some(v) => {
                                Some(RtValue::Tensor(self.host_of(*v, &locs).map_err(fail)?))
                            }
                            None => None,
                        });
                    }
                    let k = self
                        .registry
                        .get(&node.domain, &node.op_type)
                        .ok_or_else(|| fail(RuntimeError::Device("no CPU kernel".into())))?;
                    let ctx = OpCtx {
                        node,
                        opset: self.model.opset_version(&node.domain).unwrap_or(1),
                    };
                    let outs = k(&ctx, &ins).map_err(|e| RuntimeError::Node {
                        node: name(),
                        op: node.op_type.clone(),
                        message: e.to_string(),
                    })?;
                    for (o, v) in node.outputs.iter().zip(outs) {
                        if let (Some(o), RtValue::Tensor(t)) = (o, v) {
                            locs.insert(*o, Loc::Host(t));
                        }
                    }
                }
            }
            for v in &step.frees {
                if let Some(Loc::Dev(d)) = locs.remove(v) {
                    // Aliases share buffers: only pool a buffer nothing else holds.
                    if !locs.values().any(|l| matches!(l, Loc::Dev(o) if std::sync::Arc::ptr_eq(&o.buffer, &d.buffer))) {
                        give(&mut pool, d);
                    }
                }
            }
        }
        if !pending.is_empty() {
            self.gpu.submit(&pending.iter().collect::<Vec<_>>())?;
        }
        let mut out = Vec::with_capacity(g.outputs.len());
        for &o in &g.outputs {
            let name = g.value(o).name.clone();
            let t = self.host_of(o, &locs)?;
            out.push((name, t));
        }
        Ok(out)
    }

    /// A value on the device, uploading host values.
    ///
    /// Queue writes land before the next submission, so pending dispatches are
    /// submitted first: a pooled buffer they still read must not change under them.
    fn device_of(
        &self,
        v: ValueId,
        locs: &mut HashMap<ValueId, Loc>,
        pool: &mut HashMap<u64, Vec<DeviceTensor>>,
        pending: &mut Vec<Prepared>,
    ) -> Result<DeviceTensor, RuntimeError> {
        if let Some(d) = self.weights.get(&v) {
            return Ok(d.clone());
        }
        let name = &self.model.graph.value(v).name;
        let t = match locs.get(&v) {
            Some(Loc::Dev(d)) => return Ok(d.clone()),
            Some(Loc::Host(t)) => t.clone(),
            None => self
                .host_consts
                .get(&v)
                .cloned()
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.clone(),
                    message: "no value".into(),
                })?,
        };
        if !pending.is_empty() {
            self.gpu.submit(&pending.iter().collect::<Vec<_>>())?;
            pending.clear();
        }
        let d = take(pool, self.gpu, device_bytes(t.len()))?;
        self.gpu.write(name, &d, &t)?;
        locs.insert(v, Loc::Dev(d.clone()));
        Ok(d)
    }

    /// A value on the host, reading device values back.
    fn host_of(
        &self,
        v: ValueId,
        locs: &HashMap<ValueId, Loc>,
    ) -> Result<TensorValue, RuntimeError> {
        let name = &self.model.graph.value(v).name;
        match locs.get(&v) {
            Some(Loc::Host(t)) => Ok(t.clone()),
            Some(Loc::Dev(d)) => {
                let desc = self.descs.get(&v).ok_or_else(|| RuntimeError::Tensor {
                    name: name.clone(),
                    message: "no shape".into(),
                })?;
                Ok(self.gpu.download(&[(name, d, desc)])?.remove(0))
            }
            None => self
                .host_consts
                .get(&v)
                .cloned()
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.clone(),
                    message: "no value".into(),
                }),
        }
    }
}

fn take(
    pool: &mut HashMap<u64, Vec<DeviceTensor>>,
    gpu: &Gpu,
    bytes: u64,
) -> Result<DeviceTensor, RuntimeError> {
    let size = bytes.max(4).div_ceil(256) * 256;
    if let Some(d) = pool.get_mut(&size).and_then(|v| v.pop()) {
        return Ok(d);
    }
    gpu.storage_buffer("intermediate", size)
}

fn give(pool: &mut HashMap<u64, Vec<DeviceTensor>>, d: DeviceTensor) {
    pool.entry(d.size).or_default().push(d);
}
