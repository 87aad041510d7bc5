//! Lowering a model to a plan: a schedule of steps, tensor lifetimes, and a memory
//! plan that packs the tensors of a run into one arena with reuse.
//!
//! [`lower`] fixes the input shapes, folds what no longer depends on the input
//! data ([`fold`]: `Constant`, `Shape`, shape arithmetic, constant weights), and
//! infers every tensor's concrete shape. The remaining nodes, in the graph's
//! topological order, are the steps; each is lowered by
//! [`codegen::lower`](crate::codegen::lower) to WGSL dispatches, an alias of its
//! input (view ops), or a CPU fallback with the reason.
//!
//! Liveness: a tensor lives from the step that writes it to its last reader
//! (values that subgraphs read by name count as read by the node holding the
//! subgraph); graph inputs from step 0, graph outputs to the last step. An alias
//! output shares its input's allocation, whose lifetime is the union of the
//! chain's. Weights (initializers and folded values) are uploaded once and are
//! not in the arena. Scratch buffers of a step's kernels live during that step.
//! Every allocation is rounded up to [`DEFAULT_ALIGNMENT`] bytes (the storage
//! buffer offset alignment of wgpu's default limits) and packed by
//! [`memory::pack`].
//!
//! ```
//! use std::collections::HashMap;
//! let text = "opset _=17\ngraph @main(%x: f32[2,64]) -> (%y) {\n  %a = Relu(%x) : f32[2,64]\n  %b = Neg(%a) : f32[2,64]\n  %y = Relu(%b) : f32[2,64]\n  return %y\n}\n";
//! let model = modc::parse_model(text).unwrap();
//! let inputs = HashMap::from([("x".to_string(), vec![2, 64])]);
//! let plan = modc::plan::lower(&model, &inputs, Default::default()).unwrap();
//! assert_eq!(plan.steps.len(), 3);
//! assert!(plan.memory.peak >= plan.memory.lower_bound);
//! ```

mod fold;
pub mod memory;
mod print;
pub mod shapes;

pub use memory::{align_up, pack, Interval, Packing};
pub use shapes::ShapeError;

use crate::codegen::spec::{DeviceLimits, Lowering, NodeInfo, TensorDesc};
use crate::interp::value::TensorValue;
use crate::ir::graph::{Graph, NodeId, ValueDef, ValueId};
use crate::ir::model::Model;
use crate::ir::types::{Shape, Type};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Offsets in the arena are multiples of this (wgpu's default
/// `min_storage_buffer_offset_alignment`).
pub const DEFAULT_ALIGNMENT: u64 = 256;

/// A model lowered for one set of input shapes.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The nodes that run per inference, in order.
    pub steps: Vec<Step>,
    /// Every tensor the steps read or write, and the graph outputs.
    pub tensors: HashMap<ValueId, PlannedTensor>,
    pub memory: MemoryPlan,
    /// Values computed at plan time ([`TensorKind::Weight`] tensors that are not
    /// initializers of the model: outputs of `Constant` nodes and of folded nodes).
    pub constants: HashMap<ValueId, TensorValue>,
    /// The nodes computed at plan time (they have no step).
    pub folded: Vec<NodeId>,
    /// Tensors whose shape inference could not tell (data-dependent shapes, or
    /// outputs of `If`): their shapes were observed in a run of the interpreter
    /// on zero inputs. The runtime must check them when they are produced.
    pub observed: Vec<ValueId>,
    /// The graph inputs, in order, with the outputs; names for reports.
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Value names, for reports and errors.
    pub names: HashMap<ValueId, String>,
}

/// One node run per inference.
#[derive(Debug, Clone)]
pub struct Step {
    pub node: NodeId,
    pub op: String,
    /// The node's name (or its first output's name).
    pub name: String,
    pub lowering: Lowering,
    /// Bytes of the arena alive during this step (tensors and scratch buffers).
    pub live_bytes: u64,
    /// Arena offsets of the scratch buffers of the lowering (`NodeKernels::temps`).
    pub temp_offsets: Vec<u64>,
}

impl Step {
    /// Whether the step runs on the CPU interpreter.
    pub fn is_fallback(&self) -> bool {
        matches!(self.lowering, Lowering::Unsupported(_))
    }
}

/// What a tensor is to the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorKind {
    /// Uploaded once per session (initializers and values folded at plan time).
    Weight,
    Input,
    Intermediate,
    Output,
}

/// A tensor's shape, lifetime and place.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedTensor {
    pub desc: TensorDesc,
    pub kind: TensorKind,
    /// The first and last step at which the tensor is alive (inclusive).
    pub first: usize,
    pub last: usize,
    /// Offset in the arena (inputs, intermediates and outputs); `None` for weights.
    pub offset: Option<u64>,
    /// For an alias (view op output): the tensor whose bytes it shares.
    pub alias_of: Option<ValueId>,
}

/// The arena and its figures.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryPlan {
    /// Size of the arena buffer: `peak` rounded up to the alignment (at least one
    /// alignment unit, so the buffer is never empty).
    pub arena_bytes: u64,
    /// The arena's high-water mark.
    pub peak: u64,
    /// The largest sum of allocation sizes alive at one step.
    pub lower_bound: u64,
    /// Bytes alive at each step.
    pub per_step: Vec<u64>,
    pub alignment: u64,
    /// Bytes of the weights (on the device, 4 per element), outside the arena.
    pub weight_bytes: u64,
    /// The placement order that won (see [`memory`]).
    pub strategy: &'static str,
}

impl MemoryPlan {
    /// `peak / lower_bound` (1 when both are 0).
    pub fn ratio(&self) -> f64 {
        if self.lower_bound == 0 {
            1.0
        } else {
            self.peak as f64 / self.lower_bound as f64
        }
    }
}

/// Why a model could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error("the graph has a cycle through {0}")]
    Cycle(String),
    #[error("node '{node}' ({op}): no concrete tensor shape for '{tensor}' (its shape depends on the input data, or it is not a tensor); the plan needs concrete shapes")]
    UnknownShape {
        node: String,
        op: String,
        tensor: String,
    },
    #[error("node '{node}' ({op}): code generation failed: {message}")]
    Codegen {
        node: String,
        op: String,
        message: String,
    },
}

/// Lowers `model` for the given input shapes (name → dims) and device limits.
pub fn lower(
    model: &Model,
    inputs: &HashMap<String, Vec<usize>>,
    limits: DeviceLimits,
) -> Result<Plan, PlanError> {
    let mut m = model.clone();
    shapes::fix_inputs(&mut m, inputs)?;
    let folded = fold::fold(&mut m);
    let mut descs = shapes::descs(&m.graph);
    // An If whose condition is known only at run time: its outputs take the
    // shapes its branches agree on.
    let ifs: Vec<NodeId> = m
        .graph
        .nodes()
        .filter(|(_, n)| n.op_type == "If" && (n.domain.is_empty() || n.domain == "ai.onnx"))
        .map(|(id, _)| id)
        .collect();
    let mut typed = false;
    for n in ifs {
        let outs = shapes::if_outputs(&m, &m.graph, n, &descs);
        for (o, d) in m.graph.node(n).outputs.clone().iter().zip(outs) {
            if let (Some(o), Some(d)) = (o, d) {
                if !descs.contains_key(o) {
                    let dims: Vec<i64> = d.shape.iter().map(|&s| s as i64).collect();
                    m.graph.value_mut(*o).ty = Some(Type::tensor(d.dtype, Shape::fixed(&dims)));
                    typed = true;
                }
            }
        }
    }
    if typed {
        // The nodes after those Ifs.
        crate::ops::shape_infer::infer_shapes(&mut m);
        descs = shapes::descs(&m.graph);
    }
    let observed = shapes::observe_missing(model, inputs, &m.graph, &mut descs);
    let g = &m.graph;
    let order = g.topo_order().map_err(|cycle| {
        let names: Vec<String> = cycle.iter().map(|&n| node_name(g, n)).collect();
        PlanError::Cycle(names.join(", "))
    })?;
    let names_by_value: HashMap<&str, ValueId> = g
        .value_ids()
        .map(|v| (g.value(v).name.as_str(), v))
        .collect();

    let mut steps = Vec::with_capacity(order.len());
    // Per step: values read (inputs and subgraph captures).
    let mut reads: Vec<Vec<ValueId>> = Vec::with_capacity(order.len());
    for &n in &order {
        let node = g.node(n);
        let name = node_name(g, n);
        let desc_of = |v: ValueId| {
            descs
                .get(&v)
                .cloned()
                .ok_or_else(|| PlanError::UnknownShape {
                    node: name.clone(),
                    op: node.op_type.clone(),
                    tensor: g.value(v).name.clone(),
                })
        };
        let in_descs: Vec<Option<TensorDesc>> = node
            .inputs
            .iter()
            .map(|i| i.map(desc_of).transpose())
            .collect::<Result<_, _>>()?;
        let out_descs: Vec<TensorDesc> = node
            .outputs
            .iter()
            .map(|o| match o {
                Some(v) => desc_of(*v),
                // An absent optional output: nothing is written.
                None => Ok(TensorDesc::new(crate::ir::dtype::DType::F32, &[0])),
            })
            .collect::<Result<_, _>>()?;
        let const_values: Vec<Option<TensorValue>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| fold::const_value(g, v, &folded)))
            .collect();
        let info = NodeInfo {
            node,
            opset: m.opset_version(&node.domain).unwrap_or(1),
            inputs: in_descs,
            outputs: out_descs,
            consts: const_values.iter().map(|c| c.as_ref()).collect(),
            limits,
        };
        let lowering = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            crate::codegen::lower(&info)
        }))
        .map_err(|p| PlanError::Codegen {
            node: name.clone(),
            op: node.op_type.clone(),
            message: panic_message(&p),
        })?;
        let mut r: Vec<ValueId> = node.inputs.iter().flatten().copied().collect();
        for a in &node.attrs {
            for sub in a.value.graphs() {
                for outer in crate::fused::outer_reads(sub) {
                    if let Some(&v) = names_by_value.get(outer.as_str()) {
                        r.push(v);
                    }
                }
            }
        }
        reads.push(r);
        steps.push(Step {
            node: n,
            op: node.op_type.clone(),
            name,
            lowering,
            live_bytes: 0,
            temp_offsets: vec![],
        });
    }

    let mut plan = Plan {
        tensors: HashMap::new(),
        memory: MemoryPlan {
            arena_bytes: 0,
            peak: 0,
            lower_bound: 0,
            per_step: vec![],
            alignment: DEFAULT_ALIGNMENT,
            weight_bytes: 0,
            strategy: "",
        },
        constants: folded.values,
        folded: folded.nodes,
        observed,
        inputs: g.inputs.clone(),
        outputs: g.outputs.clone(),
        names: HashMap::new(),
        steps,
    };
    liveness(g, &descs, &order, &reads, &mut plan)?;
    place(&mut plan);
    for &v in plan.tensors.keys() {
        plan.names.insert(v, g.value(v).name.clone());
    }
    Ok(plan)
}

/// Fills `plan.tensors` with every tensor's kind, lifetime and alias root.
fn liveness(
    g: &Graph,
    descs: &HashMap<ValueId, TensorDesc>,
    order: &[NodeId],
    reads: &[Vec<ValueId>],
    plan: &mut Plan,
) -> Result<(), PlanError> {
    let end = order.len().saturating_sub(1);
    let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
    let kind_of = |v: ValueId| match g.value(v).def {
        ValueDef::Const => TensorKind::Weight,
        ValueDef::Input => TensorKind::Input,
        _ if outputs.contains(&v) => TensorKind::Output,
        _ => TensorKind::Intermediate,
    };
    let touch = |plan: &mut Plan, v: ValueId, step: usize| -> Result<(), PlanError> {
        if let Some(t) = plan.tensors.get_mut(&v) {
            t.first = t.first.min(step);
            t.last = t.last.max(step);
            return Ok(());
        }
        let desc = descs
            .get(&v)
            .cloned()
            .ok_or_else(|| PlanError::UnknownShape {
                node: "<graph>".into(),
                op: "-".into(),
                tensor: g.value(v).name.clone(),
            })?;
        plan.tensors.insert(
            v,
            PlannedTensor {
                desc,
                kind: kind_of(v),
                first: step,
                last: step,
                offset: None,
                alias_of: None,
            },
        );
        Ok(())
    };
    for &v in &g.inputs {
        touch(plan, v, 0)?;
    }
    for (s, &n) in order.iter().enumerate() {
        for &v in &reads[s] {
            if descs.contains_key(&v) {
                touch(plan, v, s)?;
            }
        }
        for v in g.node(n).outputs.iter().flatten() {
            touch(plan, *v, s)?;
        }
    }
    for &v in &g.outputs {
        touch(plan, v, end)?;
    }
    // Graph inputs are written before step 0; outputs read after the last step.
    for &v in &g.inputs {
        plan.tensors.get_mut(&v).expect("touched").first = 0;
    }
    // Alias roots: output 0 of an Alias step shares input 0's bytes.
    for (s, &n) in order.iter().enumerate() {
        if plan.steps[s].lowering != Lowering::Alias {
            continue;
        }
        let node = g.node(n);
        if let (Some(Some(x)), Some(Some(y))) = (node.inputs.first(), node.outputs.first()) {
            let root = plan.tensors[x].alias_of.unwrap_or(*x);
            let t = plan.tensors.get_mut(y).expect("touched");
            t.alias_of = Some(root);
            if plan.tensors[&root].kind == TensorKind::Weight {
                plan.tensors.get_mut(y).expect("touched").kind = TensorKind::Weight;
            }
        }
    }
    Ok(())
}

/// Packs the arena: one allocation per alias root (inputs, intermediates and
/// outputs) and per scratch buffer; sets offsets and the memory figures.
fn place(plan: &mut Plan) {
    let align = plan.memory.alignment;
    let alloc_size = |bytes: u64| align_up(bytes.max(4), align);
    // Allocation per root: (size, first, last).
    let mut roots: BTreeMap<ValueId, Interval> = BTreeMap::new();
    let mut weight_bytes = 0u64;
    for (&v, t) in &plan.tensors {
        if t.kind == TensorKind::Weight {
            if t.alias_of.is_none() {
                weight_bytes += t.desc.device_bytes();
            }
            continue;
        }
        let root = t.alias_of.unwrap_or(v);
        let e = roots.entry(root).or_insert(Interval {
            size: 0,
            first: t.first,
            last: t.last,
        });
        e.size = e.size.max(alloc_size(t.desc.device_bytes()));
        e.first = e.first.min(t.first);
        e.last = e.last.max(t.last);
    }
    let mut items: Vec<Interval> = roots.values().copied().collect();
    let mut temp_of: Vec<(usize, usize)> = vec![]; // (step, temp index) per item
    for (s, step) in plan.steps.iter().enumerate() {
        if let Lowering::Kernels(k) = &step.lowering {
            for (i, &bytes) in k.temps.iter().enumerate() {
                items.push(Interval {
                    size: alloc_size(bytes),
                    first: s,
                    last: s,
                });
                temp_of.push((s, i));
            }
        }
    }
    let packing = pack(&items, plan.steps.len());
    let root_offsets: HashMap<ValueId, u64> = roots
        .keys()
        .copied()
        .zip(packing.offsets.iter().copied())
        .collect();
    for (&v, t) in plan.tensors.iter_mut() {
        if t.kind != TensorKind::Weight {
            t.offset = Some(root_offsets[&t.alias_of.unwrap_or(v)]);
        }
    }
    for (k, &(s, i)) in temp_of.iter().enumerate() {
        let offs = &mut plan.steps[s].temp_offsets;
        if offs.len() <= i {
            offs.resize(i + 1, 0);
        }
        offs[i] = packing.offsets[roots.len() + k];
    }
    for (s, step) in plan.steps.iter_mut().enumerate() {
        step.live_bytes = packing.per_step.get(s).copied().unwrap_or(0);
    }
    plan.memory = MemoryPlan {
        arena_bytes: align_up(packing.peak, align).max(align),
        peak: packing.peak,
        lower_bound: packing.lower_bound,
        per_step: packing.per_step[..plan.steps.len().min(packing.per_step.len())].to_vec(),
        alignment: align,
        weight_bytes,
        strategy: packing.strategy,
    };
}

fn node_name(g: &Graph, n: NodeId) -> String {
    crate::interp::node_name(g, n)
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panicked".into())
}
