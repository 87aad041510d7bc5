//! A session: one model on one GPU for fixed input shapes.
//!
//! [`Session::new`] infers every tensor's concrete shape, lowers each node of the
//! main graph once (kernels, an alias, or a CPU fallback with its reason),
//! compiles the pipelines and uploads the weights. [`Session::run`] walks the
//! schedule: consecutive GPU steps are encoded into one submission; a CPU step
//! (a node without a kernel, or whose shapes are only known at run time) reads its
//! inputs back, runs the interpreter's op kernel and leaves its outputs on the
//! host, uploaded when a GPU step needs them. An `If` reads its condition back
//! and runs the chosen branch's steps (lowered at build, see `program`); a fused
//! node that is not one kernel runs its body's steps. Device buffers return to a pool,
//! keyed by size, after their last use, so intermediates reuse memory.

use super::exec::{device_bytes, DeviceTensor, Prepared};
pub use super::program::OpBackends;
use super::program::{node_name, Exec, Key, Program, Step};
use super::{Gpu, RuntimeError};
use crate::codegen::spec::{NodeKernels, Slot, TensorDesc};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::graph::Graph;
use crate::ir::model::Model;
use crate::ops::{OpCtx, OpRegistry};
use std::collections::{BTreeMap, HashMap};

#[derive(Clone)]
enum Loc {
    Dev(DeviceTensor),
    Host(TensorValue),
}

/// The mutable state of one run.
#[derive(Default)]
struct RunState {
    locs: HashMap<Key, Loc>,
    pool: HashMap<u64, Vec<DeviceTensor>>,
    pending: Vec<Prepared>,
}

/// One model prepared on one device.
pub struct Session<'a> {
    gpu: &'a Gpu,
    model: &'a Model,
    scopes: Vec<&'a Graph>,
    main: Program,
    descs: HashMap<Key, TensorDesc>,
    /// Initializers and Constant-node outputs, on the device.
    weights: HashMap<Key, DeviceTensor>,
    host_consts: HashMap<Key, TensorValue>,
    registry: OpRegistry,
    report: BTreeMap<String, OpBackends>,
}

impl<'a> Session<'a> {
    /// Prepares `model` for inputs of the given shapes (by name).
    pub fn new(
        gpu: &'a Gpu,
        model: &'a Model,
        input_shapes: &HashMap<String, Vec<usize>>,
    ) -> Result<Session<'a>, RuntimeError> {
        let registry = OpRegistry::standard();
        let built = super::program::build(gpu, model, &registry, input_shapes)?;
        let mut weights = HashMap::new();
        for (&k, t) in &built.host_consts {
            if crate::codegen::spec::Storage::of(t.dtype()).is_some()
                && t.dtype() != crate::ir::dtype::DType::I64
                || t.to_i64_vec()
                    .is_some_and(|x| x.iter().all(|&y| i32::try_from(y).is_ok()))
            {
                if let Ok(d) = gpu.upload(&built.scopes[k.0].value(k.1).name, t) {
                    weights.insert(k, d);
                }
            }
        }
        Ok(Session {
            gpu,
            model,
            scopes: built.scopes,
            main: built.main,
            descs: built.descs,
            weights,
            host_consts: built.host_consts,
            registry,
            report: built.report,
        })
    }

    /// Per op type, how many nodes run on the GPU and how many on the CPU (and why).
    /// The nodes of both branches of an `If` and of fused bodies run node by node
    /// are counted too.
    pub fn backends(&self) -> &BTreeMap<String, OpBackends> {
        &self.report
    }

    /// Number of nodes that fall back to the CPU.
    pub fn fallback_count(&self) -> usize {
        self.report.values().map(|b| b.cpu).sum()
    }

    /// Number of GPU dispatches of one run's schedule, counting both branches of
    /// every `If` (a fused elementwise node is one).
    pub fn kernel_count(&self) -> usize {
        fn count(p: &Program) -> usize {
            p.steps
                .iter()
                .map(|s| match &s.exec {
                    Exec::Kernels(k) => k.dispatches.len(),
                    Exec::If {
                        then_branch,
                        else_branch,
                    } => count(then_branch) + count(else_branch),
                    Exec::Body(b) => count(b),
                    Exec::Alias | Exec::Cpu(_) => 0,
                })
                .sum()
        }
        count(&self.main)
    }

    /// Runs the model; returns the graph outputs by name, in order.
    pub fn run(
        &self,
        inputs: &[(String, TensorValue)],
    ) -> Result<Vec<(String, TensorValue)>, RuntimeError> {
        let g = &self.model.graph;
        let mut st = RunState::default();
        for &id in &g.inputs {
            let v = g.value(id);
            if let Some((_, t)) = inputs.iter().find(|(n, _)| *n == v.name) {
                st.locs.insert((0, id), Loc::Host(t.clone()));
            } else if v.init.is_none() {
                return Err(RuntimeError::Tensor {
                    name: v.name.clone(),
                    message: "the input is missing".into(),
                });
            }
        }
        self.exec(&self.main, &mut st)?;
        self.flush(&mut st)?;
        let mut out = Vec::with_capacity(g.outputs.len());
        for (&o, &k) in g.outputs.iter().zip(&self.main.results) {
            let name = g.value(o).name.clone();
            let t = self.host_of(k, &mut st)?;
            out.push((name, t));
        }
        Ok(out)
    }

    fn name_of(&self, k: Key) -> &str {
        &self.scopes[k.0].value(k.1).name
    }

    /// Submits the pending dispatches.
    fn flush(&self, st: &mut RunState) -> Result<(), RuntimeError> {
        if !st.pending.is_empty() {
            self.gpu.submit(&st.pending.iter().collect::<Vec<_>>())?;
            st.pending.clear();
        }
        Ok(())
    }

    fn exec(&self, prog: &Program, st: &mut RunState) -> Result<(), RuntimeError> {
        if let Some(why) = &prog.invalid {
            return Err(RuntimeError::Device(format!(
                "the branch taken cannot run with these input shapes: {why}"
            )));
        }
        for step in &prog.steps {
            let g = self.scopes[step.scope];
            let node = g.node(step.node);
            let fail = |e: RuntimeError| RuntimeError::Node {
                node: node_name(g, step.node),
                op: node.op_type.clone(),
                message: e.to_string(),
            };
            match &step.exec {
                Exec::Alias => {
                    let x = step
                        .inputs
                        .first()
                        .copied()
                        .flatten()
                        .ok_or_else(|| fail(RuntimeError::Device("no input".into())))?;
                    let d = self.device_of(x, st).map_err(fail)?;
                    if let Some(Some(o)) = step.outputs.first() {
                        st.locs.insert(*o, Loc::Dev(d));
                    }
                }
                Exec::Kernels(k) => self.exec_kernels(step, k, st).map_err(fail)?,
                Exec::Cpu(_) => self.exec_cpu(step, st).map_err(fail)?,
                Exec::If {
                    then_branch,
                    else_branch,
                } => {
                    let c = step.inputs.first().copied().flatten().ok_or_else(|| {
                        fail(RuntimeError::Device("If without a condition".into()))
                    })?;
                    self.flush(st)?;
                    let cond = self.host_of(c, st).map_err(fail)?;
                    let cond = cond.to_f64_vec().unwrap_or_default();
                    if cond.len() != 1 {
                        return Err(fail(RuntimeError::Tensor {
                            name: self.name_of(c).to_string(),
                            message: format!("the condition has {} elements, not one", cond.len()),
                        }));
                    }
                    let b = if cond[0] != 0.0 {
                        then_branch
                    } else {
                        else_branch
                    };
                    self.exec(b, st)?;
                    self.yield_results(b, step, st).map_err(fail)?;
                }
                Exec::Body(b) => {
                    self.exec(b, st)?;
                    self.yield_results(b, step, st).map_err(fail)?;
                }
            }
            for v in &step.frees {
                if let Some(Loc::Dev(d)) = st.locs.remove(v) {
                    // Aliases share buffers: only pool a buffer nothing else holds.
                    if !st.locs.values().any(|l| matches!(l, Loc::Dev(o) if std::sync::Arc::ptr_eq(&o.buffer, &d.buffer))) {
                        give(&mut st.pool, d);
                    }
                }
            }
        }
        Ok(())
    }

    /// Gives the outputs of `step` the results of its sub-program.
    fn yield_results(
        &self,
        sub: &Program,
        step: &Step,
        st: &mut RunState,
    ) -> Result<(), RuntimeError> {
        for (o, &r) in step.outputs.iter().zip(&sub.results) {
            let Some(o) = o else { continue };
            let loc = if r.0 == sub.scope {
                st.locs.remove(&r)
            } else {
                st.locs.get(&r).cloned()
            };
            let loc = match loc {
                Some(l) => l,
                None => Loc::Host(self.host_of(r, st)?),
            };
            // A result of another shape than the output's: keep it on the host,
            // where the tensor carries its shape.
            let loc = match loc {
                Loc::Dev(d) if self.descs.get(o) != self.descs.get(&r) => {
                    st.locs.insert(r, Loc::Dev(d));
                    self.flush(st)?;
                    let t = self.host_of(r, st)?;
                    if r.0 == sub.scope {
                        st.locs.remove(&r);
                    }
                    Loc::Host(t)
                }
                l => l,
            };
            st.locs.insert(*o, loc);
        }
        Ok(())
    }

    fn exec_kernels(
        &self,
        step: &Step,
        k: &NodeKernels,
        st: &mut RunState,
    ) -> Result<(), RuntimeError> {
        // Only the inputs a dispatch binds go to the device: the others (Slice's
        // ends, Reshape's shape ...) were read at lowering and may not even fit
        // the device's 32-bit integers.
        let bound: std::collections::HashSet<usize> = k
            .dispatches
            .iter()
            .flat_map(|d| d.slots.iter())
            .filter_map(|s| match s.base() {
                Slot::Input(i) => Some(i),
                _ => None,
            })
            .collect();
        let mut ins = Vec::with_capacity(step.inputs.len());
        for (j, i) in step.inputs.iter().enumerate() {
            ins.push(match i {
                Some(v) if bound.contains(&j) => Some(self.device_of(*v, st)?),
                _ => None,
            });
        }
        let mut outs = Vec::with_capacity(step.outputs.len());
        for o in &step.outputs {
            let n = o
                .and_then(|v| self.descs.get(&v))
                .map(|d| d.len())
                .unwrap_or(0);
            let t = take(&mut st.pool, self.gpu, device_bytes(n))?;
            if let Some(v) = o {
                st.locs.insert(*v, Loc::Dev(t.clone()));
            }
            outs.push(t);
        }
        let temps = k
            .temps
            .iter()
            .map(|&b| take(&mut st.pool, self.gpu, b))
            .collect::<Result<Vec<_>, _>>()?;
        let slot = |s: Slot| match s {
            Slot::Input(i) => ins.get(i).cloned().flatten(),
            Slot::Output(i) => outs.get(i).cloned(),
            Slot::Temp(i) => temps.get(i).cloned(),
            Slot::InputRange(..) | Slot::OutputRange(..) => None,
        };
        for d in &k.dispatches {
            st.pending.push(self.gpu.prepare(d, &slot)?);
        }
        for t in temps {
            give(&mut st.pool, t);
        }
        Ok(())
    }

    fn exec_cpu(&self, step: &Step, st: &mut RunState) -> Result<(), RuntimeError> {
        let node = self.scopes[step.scope].node(step.node);
        self.flush(st)?;
        let mut ins: Vec<Option<RtValue>> = Vec::with_capacity(step.inputs.len());
        for i in &step.inputs {
            ins.push(match i {
                Some(v) => Some(RtValue::Tensor(self.host_of(*v, st)?)),
                None => None,
            });
        }
        let k = self
            .registry
            .get(&node.domain, &node.op_type)
            .ok_or_else(|| RuntimeError::Device("no CPU kernel".into()))?;
        let ctx = OpCtx {
            node,
            opset: self.model.opset_version(&node.domain).unwrap_or(1),
        };
        let outs = k(&ctx, &ins).map_err(|e| RuntimeError::Device(e.to_string()))?;
        for (o, v) in step.outputs.iter().zip(outs) {
            if let (Some(o), RtValue::Tensor(t)) = (o, v) {
                st.locs.insert(*o, Loc::Host(t));
            }
        }
        Ok(())
    }

    /// A value on the device, uploading host values.
    ///
    /// Queue writes land before the next submission, so pending dispatches are
    /// submitted first: a pooled buffer they still read must not change under them.
    fn device_of(&self, v: Key, st: &mut RunState) -> Result<DeviceTensor, RuntimeError> {
        if let Some(d) = self.weights.get(&v) {
            return Ok(d.clone());
        }
        let name = self.name_of(v);
        let t = match st.locs.get(&v) {
            Some(Loc::Dev(d)) => return Ok(d.clone()),
            Some(Loc::Host(t)) => t.clone(),
            None => self
                .host_consts
                .get(&v)
                .cloned()
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: "no value".into(),
                })?,
        };
        self.flush(st)?;
        let d = take(&mut st.pool, self.gpu, device_bytes(t.len()))?;
        self.gpu.write(name, &d, &t)?;
        st.locs.insert(v, Loc::Dev(d.clone()));
        Ok(d)
    }

    /// A value on the host, reading device values back (pending dispatches must
    /// have been submitted).
    fn host_of(&self, v: Key, st: &mut RunState) -> Result<TensorValue, RuntimeError> {
        let name = self.name_of(v);
        match st.locs.get(&v) {
            Some(Loc::Host(t)) => Ok(t.clone()),
            Some(Loc::Dev(d)) => {
                let desc = self.descs.get(&v).ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: "no shape".into(),
                })?;
                let d = d.clone();
                self.flush(st)?;
                Ok(self.gpu.download(&[(name, &d, desc)])?.remove(0))
            }
            None => self
                .host_consts
                .get(&v)
                .cloned()
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
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
