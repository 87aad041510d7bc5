//! The memory plan of a session: where every device tensor lives.
//!
//! A session's steps run in one fixed linear order (see
//! [`Step::span`](super::program::Step)), so every intermediate tensor has a
//! known lifetime: from the step that produces it (position 0 for a graph input)
//! to the end of the last step that reads it, or to its program's yield
//! position for a result (the final read-back for a graph output; the end of a
//! branch for the branch's result, which is copied into the `If`'s output
//! there). A value read inside a sub-program (an `If` branch, a fused body) from
//! outside lives until the step holding the sub-program ends. The two branches
//! of an `If` are laid out one after the other, so values local to one branch
//! and values local to the other never live at the same time and may share
//! bytes (only one branch runs).
//!
//! What is placed:
//! - outputs of kernel steps, their scratch buffers (`temps`) and outputs that
//!   the graph leaves unnamed but a kernel still writes;
//! - values a kernel binds that come from elsewhere: graph inputs (written at
//!   the start of a run), outputs of CPU fallback steps (uploaded after the step)
//!   and constants that have no weight buffer;
//! - outputs of `If` steps (the chosen branch's result is copied there).
//!
//! Aliases share their input's bytes: an alias output (a view op) and the result
//! of a fused body that the body's node yields join their source's class, which
//! is placed once with the union of the members' lifetimes. A class whose source
//! is a weight lives in the weight's own buffer (weights are uploaded once, not
//! placed). Classes are trees grown from one source, since every output is new
//! when it joins, so no class has two writers.
//!
//! The classes are packed by [`plan::pack`](crate::plan::pack) (best fit, sizes
//! rounded to the storage offset alignment) into one arena. Where the packing
//! exceeds the device's largest buffer, the items that fit below the limit stay
//! in arena 0 and the rest are packed again into the next arena, until all fit.

use super::program::{Exec, Key, Program};
use crate::codegen::spec::{Slot, Storage, TensorDesc};
use crate::plan::memory::{align_up, pack, Interval};
use std::collections::{HashMap, HashSet};

/// One allocation of a session's arena.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArenaSlot {
    /// What it holds: the names of a value and of the values that alias it (the
    /// source first), or a kernel step's scratch (`temp K of NODE`) or unnamed
    /// output (`output K of NODE`).
    pub tensors: Vec<String>,
    /// Which arena (0 unless the plan exceeds the device's largest buffer).
    pub arena: usize,
    pub offset: u64,
    /// Bytes reserved: the largest member, rounded up to the storage offset
    /// alignment.
    pub size: u64,
    /// The lifetime: first and last position (inclusive) in the session's
    /// linear order of steps.
    pub first: usize,
    pub last: usize,
}

/// Where a session keeps its device tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionMemory {
    /// Bytes of all arenas.
    pub arena_bytes: u64,
    /// Bytes of each arena (one unless one would exceed the device's largest buffer).
    pub arenas: Vec<u64>,
    /// The packing's high-water mark.
    pub peak: u64,
    /// The largest sum of sizes alive at one position: no placement needs less.
    pub lower_bound: u64,
    /// Bytes of the weights' own buffers (uploaded once, not in the arena).
    pub weight_bytes: u64,
    /// Positions of the linear order of steps (the final read-back is the last).
    pub positions: usize,
    /// Every allocation.
    pub slots: Vec<ArenaSlot>,
}

/// What an arena item holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A value and the values that alias it (the source first).
    Values(Vec<Key>),
    /// Scratch buffer `index` of the kernel step beginning at position `step`.
    Temp { step: usize, index: usize },
    /// Output `index` of the kernel step at `step`, which the graph leaves
    /// unnamed (the kernel still writes it).
    Unnamed { step: usize, index: usize },
}

/// One placed allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item {
    pub owner: Owner,
    pub interval: Interval,
    /// Which arena, and where in it.
    pub arena: usize,
    pub offset: u64,
}

/// The memory plan of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placement {
    pub items: Vec<Item>,
    /// Bytes of each arena.
    pub arenas: Vec<u64>,
    /// The packing's high-water mark and lower bound (over all arenas).
    pub peak: u64,
    pub lower_bound: u64,
    /// Positions of the linear order, the final read-back the last.
    pub positions: usize,
    /// Values that live in a weight's buffer (aliases of a weight): value → weight.
    pub on_weights: HashMap<Key, Key>,
}

/// What the planner needs to know about the session.
pub(crate) struct PlanInput<'a> {
    pub main: &'a Program,
    /// Positions of the steps' linear order (the main program's yield last).
    pub positions: usize,
    /// Graph inputs the caller feeds.
    pub fed: &'a [Key],
    pub descs: &'a HashMap<Key, TensorDesc>,
    /// Whether a value is a weight uploaded into its own buffer.
    pub is_weight: &'a dyn Fn(Key) -> bool,
    /// Storage offset alignment (a multiple of 4).
    pub alignment: u64,
    /// Largest buffer the device allows.
    pub max_buffer: u64,
}

/// Bytes of a device tensor of `desc` (4 per element, never 0).
pub(crate) fn tensor_bytes(desc: &TensorDesc) -> u64 {
    super::exec::device_bytes(desc.len())
}

/// Lifetimes, alias classes and the values that must be on the device.
#[derive(Default)]
struct Walk {
    first: HashMap<Key, usize>,
    last: HashMap<Key, usize>,
    /// Alias parent of a value (towards its class's source).
    parent: HashMap<Key, Key>,
    needs_device: HashSet<Key>,
    scratch: Vec<(Owner, Interval)>,
}

impl Walk {
    fn def(&mut self, k: Key, at: usize) {
        let f = self.first.entry(k).or_insert(at);
        *f = (*f).min(at);
    }

    fn read(&mut self, k: Key, at: usize) {
        let l = self.last.entry(k).or_insert(at);
        *l = (*l).max(at);
        let f = self.first.entry(k).or_insert(at);
        *f = (*f).min(at);
    }

    fn source(&self, mut k: Key) -> Key {
        while let Some(&p) = self.parent.get(&k) {
            k = p;
        }
        k
    }

    fn program(&mut self, p: &Program, input: &PlanInput) {
        for s in &p.steps {
            let (begin, end) = s.span;
            for &o in s.outputs.iter().flatten() {
                self.def(o, begin);
            }
            for &i in s.inputs.iter().flatten() {
                self.read(i, end);
            }
            for sub in s.subprograms() {
                self.program(sub, input);
                for &k in &sub.external {
                    self.read(k, end);
                }
                for &k in &sub.results {
                    // A result from outside the sub-program is external too.
                    self.read(k, sub.yield_at);
                }
            }
            match &s.exec {
                Exec::Kernels(k) => {
                    let slots: Vec<Slot> = k
                        .dispatches
                        .iter()
                        .flat_map(|d| d.slots.iter().map(|s| s.base()))
                        .collect();
                    for slot in slots {
                        match slot {
                            Slot::Input(i) => {
                                if let Some(Some(v)) = s.inputs.get(i) {
                                    self.needs_device.insert(*v);
                                }
                            }
                            Slot::Output(i) => match s.outputs.get(i) {
                                Some(Some(v)) => {
                                    self.needs_device.insert(*v);
                                }
                                _ => {
                                    let owner = Owner::Unnamed {
                                        step: begin,
                                        index: i,
                                    };
                                    if !self.scratch.iter().any(|(o, _)| *o == owner) {
                                        let iv = Interval {
                                            size: align_up(4, input.alignment),
                                            first: begin,
                                            last: end,
                                        };
                                        self.scratch.push((owner, iv));
                                    }
                                }
                            },
                            _ => {}
                        }
                    }
                    for (index, &bytes) in k.temps.iter().enumerate() {
                        let iv = Interval {
                            size: align_up(bytes.max(4), input.alignment),
                            first: begin,
                            last: end,
                        };
                        self.scratch.push((Owner::Temp { step: begin, index }, iv));
                    }
                    for &o in s.outputs.iter().flatten() {
                        self.needs_device.insert(o);
                    }
                }
                Exec::Alias => {
                    if let (Some(Some(x)), Some(Some(y))) = (s.inputs.first(), s.outputs.first()) {
                        self.parent.insert(*y, *x);
                    }
                }
                Exec::If { .. } => {
                    for &o in s.outputs.iter().flatten() {
                        if input
                            .descs
                            .get(&o)
                            .is_some_and(|d| Storage::of(d.dtype).is_some())
                        {
                            self.needs_device.insert(o);
                        }
                    }
                }
                Exec::Body(b) => {
                    for (o, r) in s.outputs.iter().zip(&b.results) {
                        let Some(o) = o else { continue };
                        match (input.descs.get(o), input.descs.get(r)) {
                            (Some(a), Some(b)) if a == b => {
                                self.parent.insert(*o, *r);
                            }
                            _ => {}
                        }
                    }
                }
                Exec::Cpu(_) => {}
            }
        }
    }
}

/// Plans where every device tensor of a session lives (see the module docs).
pub(crate) fn place(input: &PlanInput) -> Result<Placement, String> {
    let mut w = Walk::default();
    for &k in input.fed {
        w.def(k, 0);
    }
    w.program(input.main, input);
    for &r in &input.main.results {
        w.read(r, input.main.yield_at);
    }
    // Classes by source, in a deterministic order.
    let mut keys: Vec<Key> = w.first.keys().copied().collect();
    keys.sort();
    let mut classes: HashMap<Key, Vec<Key>> = HashMap::new();
    let mut order: Vec<Key> = vec![];
    for k in keys {
        let src = w.source(k);
        let members = classes.entry(src).or_insert_with(|| {
            order.push(src);
            vec![]
        });
        members.push(k);
    }
    let mut on_weights = HashMap::new();
    let mut owners: Vec<(Owner, Interval)> = vec![];
    for src in order {
        let mut members = classes.remove(&src).unwrap_or_default();
        if !members.iter().any(|m| w.needs_device.contains(m)) {
            continue;
        }
        if (input.is_weight)(src) {
            for m in members {
                if m != src {
                    on_weights.insert(m, src);
                }
            }
            continue;
        }
        members.sort_by_key(|&m| (m != src, m));
        let mut iv = Interval {
            size: 0,
            first: usize::MAX,
            last: 0,
        };
        for m in &members {
            let first = w.first.get(m).copied().unwrap_or(0);
            iv.first = iv.first.min(first);
            iv.last = iv.last.max(w.last.get(m).copied().unwrap_or(first));
            if let Some(d) = input.descs.get(m) {
                iv.size = iv.size.max(align_up(tensor_bytes(d), input.alignment));
            }
        }
        if iv.size == 0 {
            // No member has a known shape; the step binding it reports that.
            continue;
        }
        owners.push((Owner::Values(members), iv));
    }
    owners.append(&mut w.scratch);
    let intervals: Vec<Interval> = owners.iter().map(|(_, iv)| *iv).collect();
    let steps = input.positions;
    let Arenas {
        places,
        sizes: arenas,
        peak,
        lower_bound,
    } = split_arenas(&intervals, steps, input.max_buffer)?;
    let items = owners
        .into_iter()
        .zip(places)
        .map(|((owner, interval), (arena, offset))| Item {
            owner,
            interval,
            arena,
            offset,
        })
        .collect();
    Ok(Placement {
        items,
        arenas,
        peak,
        lower_bound,
        positions: steps,
        on_weights,
    })
}

/// Items packed into arenas.
struct Arenas {
    /// (arena, offset) per item.
    places: Vec<(usize, u64)>,
    /// Bytes of each arena.
    sizes: Vec<u64>,
    /// The first packing's (all items') peak and lower bound.
    peak: u64,
    lower_bound: u64,
}

/// Packs `items` into arenas of at most `max` bytes.
fn split_arenas(items: &[Interval], steps: usize, max: u64) -> Result<Arenas, String> {
    if let Some(big) = items.iter().find(|i| i.size > max) {
        return Err(format!(
            "a tensor of {} bytes exceeds the device's largest buffer ({max} bytes)",
            big.size
        ));
    }
    let mut places = vec![(0usize, 0u64); items.len()];
    let mut arenas = vec![];
    let mut left: Vec<usize> = (0..items.len()).collect();
    let mut figures = None;
    while !left.is_empty() {
        let sub: Vec<Interval> = left.iter().map(|&i| items[i]).collect();
        let p = pack(&sub, steps);
        figures.get_or_insert((p.peak, p.lower_bound));
        let arena = arenas.len();
        let mut size = 0u64;
        let mut rest = vec![];
        for (j, &i) in left.iter().enumerate() {
            let top = p.offsets[j] + items[i].size;
            if top <= max {
                places[i] = (arena, p.offsets[j]);
                size = size.max(top);
            } else {
                rest.push(i);
            }
        }
        // The largest item is placed first, at offset 0, so each round places
        // at least one item.
        if rest.len() == left.len() {
            return Err("the memory plan does not fit the device's buffers".into());
        }
        arenas.push(size);
        left = rest;
    }
    let (peak, lower_bound) = figures.unwrap_or((0, 0));
    Ok(Arenas {
        places,
        sizes: arenas,
        peak,
        lower_bound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(size: u64, first: usize, last: usize) -> Interval {
        Interval { size, first, last }
    }

    #[test]
    fn one_arena_when_it_fits() {
        let items = vec![iv(512, 0, 1), iv(256, 1, 2), iv(512, 2, 3)];
        let a = split_arenas(&items, 4, 1 << 20).unwrap();
        assert_eq!(a.sizes, vec![768]);
        assert_eq!((a.peak, a.lower_bound), (768, 768));
        assert!(a.places.iter().all(|p| p.0 == 0));
    }

    #[test]
    fn splits_into_arenas_below_the_limit() {
        // Three tensors alive together, 1024 bytes each, at most 2048 per buffer.
        let items = vec![
            iv(1024, 0, 2),
            iv(1024, 0, 2),
            iv(1024, 0, 2),
            iv(256, 3, 3),
        ];
        let Arenas {
            places,
            sizes: arenas,
            peak,
            ..
        } = split_arenas(&items, 4, 2048).unwrap();
        assert_eq!(peak, 3072);
        assert_eq!(arenas.len(), 2);
        assert!(arenas.iter().all(|&a| a <= 2048), "{arenas:?}");
        for (i, a) in items.iter().enumerate() {
            for (j, b) in items.iter().enumerate().skip(i + 1) {
                let live = a.first <= b.last && b.first <= a.last;
                let (pa, pb) = (places[i], places[j]);
                if live && pa.0 == pb.0 {
                    assert!(pa.1 + a.size <= pb.1 || pb.1 + b.size <= pa.1);
                }
            }
        }
    }

    #[test]
    fn a_tensor_above_the_limit_is_an_error() {
        let Err(e) = split_arenas(&[iv(4096, 0, 0)], 1, 2048) else {
            panic!("a 4096-byte tensor fits 2048-byte buffers");
        };
        assert!(e.contains("4096") && e.contains("2048"), "{e}");
    }
}
