//! A session: one model on one GPU for fixed input shapes.
//!
//! [`Session::new`] infers every tensor's concrete shape, lowers each node of the
//! main graph once (kernels, an alias, or a CPU fallback with its reason),
//! compiles the pipelines, uploads the weights, plans where every intermediate
//! tensor lives (one arena buffer, see `arena`) and binds every dispatch once:
//! since a tensor's place never changes, each dispatch's bind group and uniform
//! parameters are made at build and reused by every run.
//!
//! [`Session::run`] writes the inputs into their places, then walks the schedule:
//! consecutive GPU steps are encoded into one submission; a CPU step (a node
//! without a kernel, or whose shapes are only known at run time) reads its inputs
//! back, runs the interpreter's op kernel and writes its outputs into their places
//! when a GPU step reads them. An `If` reads its condition back and runs the
//! chosen branch's steps (lowered at build, see `program`), then copies the
//! branch's results into the `If`'s outputs; a fused node that is not one kernel
//! runs its body's steps, whose results are its outputs' bytes.
//!
//! [`Session::profile`] runs once with a wait after every step and reports each
//! step's time.

use super::arena::SessionMemory;
use super::bind::BoundStep;
use super::exec::{DeviceTensor, Encoded};
pub use super::program::OpBackends;
use super::program::{node_name, Exec, Key, Program, Step};
use super::{Gpu, RuntimeError};
use crate::codegen::spec::TensorDesc;
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::graph::Graph;
use crate::ir::model::Model;
use crate::ops::{OpCtx, OpRegistry};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Where a value is during a run: on the device (at its place), on the host, or
/// both (an uploaded host value, or a read-back device value).
#[derive(Clone, Default)]
struct Loc {
    dev: Option<DeviceTensor>,
    host: Option<TensorValue>,
}

impl Loc {
    fn dev(d: DeviceTensor) -> Loc {
        Loc {
            dev: Some(d),
            host: None,
        }
    }
    fn host(t: TensorValue) -> Loc {
        Loc {
            dev: None,
            host: Some(t),
        }
    }
}

/// The mutable state of one run.
#[derive(Default)]
struct RunState<'s> {
    locs: HashMap<Key, Loc>,
    pending: Vec<Encoded<'s>>,
    /// Per-step times, when profiling.
    profile: Option<Vec<StepTime>>,
}

/// The time one step took in [`Session::profile`].
#[derive(Debug, Clone, PartialEq)]
pub struct StepTime {
    /// The node's name (or `<Op #id>`).
    pub node: String,
    pub op: String,
    /// Whether it ran on the GPU (else the interpreter's kernel on the CPU).
    pub gpu: bool,
    /// Labels of its dispatches.
    pub kernels: Vec<String>,
    /// Submission to completion (GPU), or reading inputs back, computing and
    /// uploading outputs (CPU).
    pub time: Duration,
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
    /// The place of every value the device holds: a range of an arena, or the
    /// buffer of the weight it aliases.
    homes: HashMap<Key, DeviceTensor>,
    /// Kernel steps, bound, by the step's first position.
    bound: HashMap<usize, BoundStep>,
    /// The graph inputs a run feeds.
    fed: Vec<Key>,
    /// Copies between two ranges of one arena go through this buffer (wgpu
    /// refuses a copy within one buffer).
    bounce: Option<DeviceTensor>,
    memory: SessionMemory,
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
        let g = &model.graph;
        let fed: Vec<Key> = g
            .inputs
            .iter()
            .map(|&v| (0, v))
            .filter(|k| !built.host_consts.contains_key(k))
            .collect();
        let super::bind::Bound {
            homes,
            steps: bound,
            bounce,
            memory,
        } = super::bind::bind(gpu, &built, &weights, &fed)?;
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
            homes,
            bound,
            fed,
            bounce,
            memory,
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

    /// Where the session keeps its tensors: the arena, its packing figures and
    /// every allocation in it.
    pub fn memory(&self) -> &SessionMemory {
        &self.memory
    }

    /// Number of GPU dispatches of one run's schedule, counting both branches of
    /// every `If` (a fused elementwise node is one).
    pub fn kernel_count(&self) -> usize {
        fn count(p: &Program) -> usize {
            p.steps
                .iter()
                .map(|s| match &s.exec {
                    Exec::Kernels(k) => k.dispatches.len(),
                    _ => s.subprograms().into_iter().map(count).sum(),
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
        let mut st = self.start(inputs)?;
        self.exec(&self.main, &mut st)?;
        self.finish(&mut st)
    }

    /// Runs the model once, waiting for the device after every step, and returns
    /// the time of each step that computes (kernels or CPU fallback), in schedule
    /// order. Aliases cost nothing and are left out; the steps of `If` branches
    /// and fused bodies are timed one by one.
    pub fn profile(&self, inputs: &[(String, TensorValue)]) -> Result<Vec<StepTime>, RuntimeError> {
        let mut st = self.start(inputs)?;
        st.profile = Some(vec![]);
        self.flush(&mut st)?;
        self.gpu.wait()?;
        self.exec(&self.main, &mut st)?;
        self.finish(&mut st)?;
        Ok(st.profile.unwrap_or_default())
    }

    fn name_of(&self, k: Key) -> &str {
        &self.scopes[k.0].value(k.1).name
    }

    /// A run's state with the inputs in their places.
    fn start(&self, inputs: &[(String, TensorValue)]) -> Result<RunState<'_>, RuntimeError> {
        let g = &self.model.graph;
        let mut st = RunState::default();
        for (n, _) in inputs {
            let known = self.fed.iter().any(|&k| self.name_of(k) == n);
            if !known {
                return Err(RuntimeError::Tensor {
                    name: n.clone(),
                    message: if g.inputs.iter().any(|&i| g.value(i).name == *n) {
                        "the session was built without this input's shape (it has an initializer); give its shape to feed it".into()
                    } else {
                        "the model has no input of this name".into()
                    },
                });
            }
        }
        for &k in &self.fed {
            let name = self.name_of(k);
            let t = inputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: "the input is missing".into(),
                })?;
            self.check_shape(k, t)?;
            let mut loc = Loc::host(t.clone());
            if let Some(h) = self.homes.get(&k) {
                self.gpu.write(name, h, t)?;
                loc.dev = Some(h.clone());
            }
            st.locs.insert(k, loc);
        }
        Ok(st)
    }

    /// Submits what is pending and reads the graph outputs (one read-back for
    /// all that are only on the device).
    fn finish(&self, st: &mut RunState) -> Result<Vec<(String, TensorValue)>, RuntimeError> {
        self.flush(st)?;
        let g = &self.model.graph;
        let mut out: Vec<Option<TensorValue>> = vec![None; self.main.results.len()];
        let mut reads = vec![];
        for (j, &k) in self.main.results.iter().enumerate() {
            match st.locs.get(&k) {
                Some(Loc { host: Some(t), .. }) => out[j] = Some(t.clone()),
                Some(Loc { dev: Some(d), .. }) => {
                    let desc = self.descs.get(&k).ok_or_else(|| RuntimeError::Tensor {
                        name: self.name_of(k).to_string(),
                        message: "no shape".into(),
                    })?;
                    reads.push((j, self.name_of(k), d.clone(), desc));
                }
                _ => out[j] = Some(self.host_of(k, st)?),
            }
        }
        if !reads.is_empty() {
            let list: Vec<(&str, &DeviceTensor, &TensorDesc)> =
                reads.iter().map(|(_, n, d, desc)| (*n, d, *desc)).collect();
            for ((j, ..), t) in reads.iter().zip(self.gpu.download(&list)?) {
                out[*j] = Some(t);
            }
        }
        g.outputs
            .iter()
            .zip(out)
            .map(|(&o, t)| {
                let name = g.value(o).name.clone();
                match t {
                    Some(t) => Ok((name, t)),
                    None => Err(RuntimeError::Tensor {
                        name,
                        message: "the output was not read back".into(),
                    }),
                }
            })
            .collect()
    }

    /// A host value must have the shape the session was built for.
    fn check_shape(&self, k: Key, t: &TensorValue) -> Result<(), RuntimeError> {
        match self.descs.get(&k) {
            Some(d) if d.shape != t.shape() => Err(RuntimeError::Tensor {
                name: self.name_of(k).to_string(),
                message: format!(
                    "shape {:?} differs from the session's {:?}",
                    t.shape(),
                    d.shape
                ),
            }),
            _ => Ok(()),
        }
    }

    /// Submits the pending work.
    fn flush(&self, st: &mut RunState) -> Result<(), RuntimeError> {
        if !st.pending.is_empty() {
            self.gpu.submit(&st.pending)?;
            st.pending.clear();
        }
        Ok(())
    }

    fn exec<'s>(&'s self, prog: &'s Program, st: &mut RunState<'s>) -> Result<(), RuntimeError> {
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
            let timed =
                st.profile.is_some() && matches!(step.exec, Exec::Kernels(_) | Exec::Cpu(_));
            if timed {
                self.flush(st)?;
                self.gpu.wait()?;
            }
            let t0 = Instant::now();
            match &step.exec {
                Exec::Alias => self.exec_alias(step, st).map_err(fail)?,
                Exec::Kernels(_) => self.exec_kernels(step, st).map_err(fail)?,
                Exec::Cpu(_) => self.exec_cpu(step, st).map_err(fail)?,
                Exec::If {
                    then_branch,
                    else_branch,
                } => {
                    let c = step.inputs.first().copied().flatten().ok_or_else(|| {
                        fail(RuntimeError::Device("If without a condition".into()))
                    })?;
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
            if timed {
                self.flush(st)?;
                self.gpu.wait()?;
                let (gpu, kernels) = match &step.exec {
                    Exec::Kernels(k) => {
                        (true, k.dispatches.iter().map(|d| d.label.clone()).collect())
                    }
                    _ => (false, vec![]),
                };
                let time = t0.elapsed();
                if let Some(p) = &mut st.profile {
                    p.push(StepTime {
                        node: node_name(g, step.node),
                        op: node.op_type.clone(),
                        gpu,
                        kernels,
                        time,
                    });
                }
            }
            for v in &step.frees {
                st.locs.remove(v);
            }
        }
        Ok(())
    }

    /// A view: the output is the input's bytes (on the device, where its place
    /// is the input's), else the input's host value with the output's shape.
    fn exec_alias(&self, step: &Step, st: &mut RunState) -> Result<(), RuntimeError> {
        let (Some(Some(x)), Some(Some(y))) = (step.inputs.first(), step.outputs.first()) else {
            return Err(RuntimeError::Device(
                "an alias needs input 0 and output 0".into(),
            ));
        };
        if self.homes.contains_key(y) {
            let d = self.device_of(*x, st)?;
            st.locs.insert(*y, Loc::dev(d));
        } else {
            let t = self.host_of(*x, st)?;
            let shape =
                self.descs
                    .get(y)
                    .map(|d| d.shape.clone())
                    .ok_or_else(|| RuntimeError::Tensor {
                        name: self.name_of(*y).to_string(),
                        message: "no shape".into(),
                    })?;
            let t = reshape(t, &shape).map_err(|message| RuntimeError::Tensor {
                name: self.name_of(*y).to_string(),
                message,
            })?;
            st.locs.insert(*y, Loc::host(t));
        }
        Ok(())
    }

    /// Gives the outputs of `step` the results of its sub-program: a result on
    /// the device is copied into the output's place unless it is already there
    /// (a fused body's results are); one of another shape than the output's
    /// stays on the host, where the tensor carries its shape.
    fn yield_results<'s>(
        &'s self,
        sub: &Program,
        step: &Step,
        st: &mut RunState<'s>,
    ) -> Result<(), RuntimeError> {
        for (o, &r) in step.outputs.iter().zip(&sub.results) {
            let Some(o) = o else { continue };
            let mut loc = match (st.locs.get(&r), self.weights.get(&r)) {
                (Some(l), _) => l.clone(),
                (None, Some(w)) => Loc::dev(w.clone()),
                (None, None) => Loc::host(self.host_of(r, st)?),
            };
            let same_shape = self.descs.contains_key(o) && self.descs.get(o) == self.descs.get(&r);
            if let Some(d) = loc.dev.clone() {
                match self.homes.get(o) {
                    Some(h) if same_shape => {
                        if !(std::sync::Arc::ptr_eq(&h.buffer, &d.buffer) && h.offset == d.offset) {
                            self.copy(d, h.clone(), st);
                        }
                        loc.dev = Some(h.clone());
                    }
                    _ => {
                        if loc.host.is_none() {
                            loc.host = Some(self.host_of(r, st)?);
                        }
                        loc.dev = None;
                    }
                }
            }
            if r.0 == sub.scope {
                st.locs.remove(&r);
            }
            st.locs.insert(*o, loc);
        }
        Ok(())
    }

    /// Queues a copy of `from` into `to` (through the bounce buffer when both are
    /// in one buffer).
    fn copy<'s>(&'s self, from: DeviceTensor, to: DeviceTensor, st: &mut RunState<'s>) {
        let bytes = from.size.min(to.size);
        match &self.bounce {
            Some(b) if std::sync::Arc::ptr_eq(&from.buffer, &to.buffer) => {
                st.pending.push(Encoded::Copy {
                    from,
                    to: b.clone(),
                    bytes,
                });
                st.pending.push(Encoded::Copy {
                    from: b.clone(),
                    to,
                    bytes,
                });
            }
            _ => st.pending.push(Encoded::Copy { from, to, bytes }),
        }
    }

    fn exec_kernels<'s>(&'s self, step: &Step, st: &mut RunState<'s>) -> Result<(), RuntimeError> {
        let b = self
            .bound
            .get(&step.span.0)
            .ok_or_else(|| RuntimeError::Device("the step was not bound at build".into()))?;
        for &v in &b.inputs {
            self.device_of(v, st)?;
        }
        for &o in step.outputs.iter().flatten() {
            if let Some(h) = self.homes.get(&o) {
                st.locs.insert(o, Loc::dev(h.clone()));
            }
        }
        st.pending.extend(b.prepared.iter().map(Encoded::Dispatch));
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
                let mut loc = Loc::host(t);
                // Nothing is pending (flushed above), so the output's place is
                // free to write. A value that cannot go to the device (another
                // shape, an int64 beyond 32 bits) stays on the host; a GPU step
                // that reads it reports why.
                if let (Some(h), Some(t)) = (self.homes.get(o), &loc.host) {
                    if self.check_shape(*o, t).is_ok()
                        && self.gpu.write(self.name_of(*o), h, t).is_ok()
                    {
                        loc.dev = Some(h.clone());
                    }
                }
                st.locs.insert(*o, loc);
            }
        }
        Ok(())
    }

    /// A value on the device, writing host values into their place.
    ///
    /// Queue writes land before the next submission, so pending work is
    /// submitted first: the place may still be read by it (a former tenant).
    fn device_of(&self, v: Key, st: &mut RunState) -> Result<DeviceTensor, RuntimeError> {
        if let Some(d) = self.weights.get(&v) {
            return Ok(d.clone());
        }
        let name = self.name_of(v);
        let t = match st.locs.get(&v) {
            Some(Loc { dev: Some(d), .. }) => return Ok(d.clone()),
            Some(Loc { host: Some(t), .. }) => t.clone(),
            _ => self
                .host_consts
                .get(&v)
                .cloned()
                .ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: "no value".into(),
                })?,
        };
        let h = self.homes.get(&v).ok_or_else(|| RuntimeError::Tensor {
            name: name.to_string(),
            message: "no place on the device".into(),
        })?;
        self.check_shape(v, &t)?;
        self.flush(st)?;
        self.gpu.write(name, h, &t)?;
        let loc = st.locs.entry(v).or_default();
        loc.dev = Some(h.clone());
        loc.host = Some(t);
        Ok(h.clone())
    }

    /// A value on the host, reading device values back (and keeping the copy).
    fn host_of(&self, v: Key, st: &mut RunState) -> Result<TensorValue, RuntimeError> {
        let name = self.name_of(v);
        match st.locs.get(&v) {
            Some(Loc { host: Some(t), .. }) => Ok(t.clone()),
            Some(Loc { dev: Some(d), .. }) => {
                let desc = self.descs.get(&v).ok_or_else(|| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: "no shape".into(),
                })?;
                let d = d.clone();
                self.flush(st)?;
                let t = self.gpu.download(&[(name, &d, desc)])?.remove(0);
                if let Some(l) = st.locs.get_mut(&v) {
                    l.host = Some(t.clone());
                }
                Ok(t)
            }
            _ => self
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

/// `t` with another shape of as many elements.
fn reshape(t: TensorValue, shape: &[usize]) -> Result<TensorValue, String> {
    use ndarray::IxDyn;
    Ok(crate::map_tensor_same!(t, a => a
        .into_shape_with_order(IxDyn(shape))
        .map_err(|e| format!("as {shape:?}: {e}"))?))
}
