//! Turning a session's memory plan (`arena`) into device tensors, and binding
//! every kernel step's dispatches to them once, at build: bind groups and
//! uniform parameters are made here and reused by every run.
//!
//! A value's place (its "home") is a range of an arena buffer, or the buffer of
//! the weight it aliases; a kernel step's scratch buffers and unnamed outputs
//! have places of their own. Copies between two places of one arena (an `If`
//! output taking its branch's result) go through a bounce buffer, since wgpu
//! refuses a copy within one buffer.

use super::arena::{self, ArenaSlot, Owner, PlanInput, SessionMemory};
use super::exec::{DeviceTensor, Prepared};
use super::program::{node_name, Built, Exec, Key, Program};
use super::{Gpu, RuntimeError};
use crate::codegen::spec::Slot;
use crate::ir::graph::Graph;
use std::collections::HashMap;

/// A kernel step's own tensors, by the step's first position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scratch {
    Temp(usize),
    /// An output the graph leaves unnamed.
    Output(usize),
}

/// The dispatches of one kernel step, bound at build.
pub(crate) struct BoundStep {
    pub prepared: Vec<Prepared>,
    /// The inputs the dispatches bind (must be on the device before they run).
    pub inputs: Vec<Key>,
}

/// A session's places and bound steps.
pub(crate) struct Bound {
    /// The place of every value the device holds.
    pub homes: HashMap<Key, DeviceTensor>,
    /// Kernel steps, bound, by the step's first position.
    pub steps: HashMap<usize, BoundStep>,
    /// For copies within one arena (`None` when no `If` output needs one).
    pub bounce: Option<DeviceTensor>,
    pub memory: SessionMemory,
}

/// Plans the memory of `built` (the session's program; `weights` on the
/// device; `fed` the graph inputs a run writes), allocates the arenas and binds
/// every kernel step.
pub(crate) fn bind(
    gpu: &Gpu,
    built: &Built,
    weights: &HashMap<Key, DeviceTensor>,
    fed: &[Key],
) -> Result<Bound, RuntimeError> {
    let placement = arena::place(&PlanInput {
        main: &built.main,
        positions: built.positions,
        fed,
        descs: &built.descs,
        is_weight: &|k| weights.contains_key(&k),
        alignment: gpu.storage_offset_alignment().max(256),
        max_buffer: gpu.max_buffer_size(),
    })
    .map_err(|m| RuntimeError::Device(format!("memory plan: {m}")))?;
    let buffers = placement
        .arenas
        .iter()
        .enumerate()
        .map(|(i, &b)| gpu.storage_buffer(&format!("modc-arena-{i}"), b))
        .collect::<Result<Vec<_>, _>>()?;
    let name = |k: Key| built.scopes[k.0].value(k.1).name.clone();
    let mut labels = HashMap::new();
    step_labels(&built.main, &built.scopes, &mut labels);
    let label = |step: usize| labels.get(&step).cloned().unwrap_or_default();
    let mut homes = HashMap::new();
    let mut scratch: HashMap<(usize, Scratch), DeviceTensor> = HashMap::new();
    let mut slots = Vec::with_capacity(placement.items.len());
    for it in &placement.items {
        let at = |size: u64| DeviceTensor {
            buffer: buffers[it.arena].buffer.clone(),
            offset: it.offset,
            size,
        };
        let tensors = match &it.owner {
            Owner::Values(members) => {
                for &m in members {
                    let size = built
                        .descs
                        .get(&m)
                        .map(arena::tensor_bytes)
                        .unwrap_or(it.interval.size);
                    homes.insert(m, at(size));
                }
                members.iter().map(|&m| name(m)).collect()
            }
            &Owner::Temp { step, index } => {
                scratch.insert((step, Scratch::Temp(index)), at(it.interval.size));
                vec![format!("temp {index} of {}", label(step))]
            }
            &Owner::Unnamed { step, index } => {
                scratch.insert((step, Scratch::Output(index)), at(it.interval.size));
                vec![format!("output {index} of {}", label(step))]
            }
        };
        slots.push(ArenaSlot {
            tensors,
            arena: it.arena,
            offset: it.offset,
            size: it.interval.size,
            first: it.interval.first,
            last: it.interval.last,
        });
    }
    for (&v, w) in &placement.on_weights {
        if let Some(d) = weights.get(w) {
            homes.insert(v, d.clone());
        }
    }
    let mut bound = HashMap::new();
    let mut bounce_bytes = 0;
    bind_program(
        &Binder {
            gpu,
            scopes: &built.scopes,
            weights,
            homes: &homes,
            scratch: &scratch,
        },
        &built.main,
        &mut bound,
        &mut bounce_bytes,
    )?;
    let bounce = if bounce_bytes > 0 {
        Some(gpu.storage_buffer("modc-bounce", bounce_bytes)?)
    } else {
        None
    };
    let memory = SessionMemory {
        arena_bytes: placement.arenas.iter().sum(),
        arenas: placement.arenas.clone(),
        peak: placement.peak,
        lower_bound: placement.lower_bound,
        weight_bytes: weights.values().map(|w| w.size).sum(),
        positions: placement.positions,
        slots,
    };
    Ok(Bound {
        homes,
        steps: bound,
        bounce,
        memory,
    })
}

/// The name of the node of every step, by the step's first position.
fn step_labels(p: &Program, scopes: &[&Graph], out: &mut HashMap<usize, String>) {
    for s in &p.steps {
        out.insert(s.span.0, node_name(scopes[s.scope], s.node));
        for sub in s.subprograms() {
            step_labels(sub, scopes, out);
        }
    }
}

/// What binding a session's dispatches needs.
struct Binder<'b> {
    gpu: &'b Gpu,
    scopes: &'b [&'b Graph],
    weights: &'b HashMap<Key, DeviceTensor>,
    homes: &'b HashMap<Key, DeviceTensor>,
    scratch: &'b HashMap<(usize, Scratch), DeviceTensor>,
}

/// Binds every kernel step of `p` and its sub-programs to the tensors' places
/// (`out`, by the step's first position); `bounce` grows to the largest output
/// a sub-program's result may be copied into.
fn bind_program(
    b: &Binder,
    p: &Program,
    out: &mut HashMap<usize, BoundStep>,
    bounce: &mut u64,
) -> Result<(), RuntimeError> {
    for s in &p.steps {
        for sub in s.subprograms() {
            bind_program(b, sub, out, bounce)?;
        }
        if matches!(s.exec, Exec::If { .. }) {
            for o in s.outputs.iter().flatten() {
                if let Some(h) = b.homes.get(o) {
                    *bounce = (*bounce).max(h.size);
                }
            }
        }
        let Exec::Kernels(k) = &s.exec else { continue };
        let place = |v: Key| b.weights.get(&v).or_else(|| b.homes.get(&v)).cloned();
        let begin = s.span.0;
        let slot = |slot: Slot| match slot {
            Slot::Input(i) => s.inputs.get(i).copied().flatten().and_then(place),
            Slot::Output(i) => match s.outputs.get(i) {
                Some(Some(v)) => place(*v),
                _ => b.scratch.get(&(begin, Scratch::Output(i))).cloned(),
            },
            Slot::Temp(i) => b.scratch.get(&(begin, Scratch::Temp(i))).cloned(),
            Slot::InputRange(..) | Slot::OutputRange(..) => None,
        };
        let g = b.scopes[s.scope];
        let prepared = k
            .dispatches
            .iter()
            .map(|d| b.gpu.prepare(d, &slot))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RuntimeError::Node {
                node: node_name(g, s.node),
                op: g.node(s.node).op_type.clone(),
                message: e.to_string(),
            })?;
        let mut inputs: Vec<Key> = vec![];
        for d in &k.dispatches {
            for sl in &d.slots {
                if let Slot::Input(i) = sl.base() {
                    if let Some(Some(v)) = s.inputs.get(i) {
                        if !inputs.contains(v) {
                            inputs.push(*v);
                        }
                    }
                }
            }
        }
        out.insert(begin, BoundStep { prepared, inputs });
    }
    Ok(())
}
