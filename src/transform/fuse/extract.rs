//! Extraction: the cost model, greedy extraction and an exact one for small
//! regions.
//!
//! A node costs one kernel launch, the bytes it reads and writes through memory,
//! and its arithmetic: `LAUNCH + bytes_in + bytes_out + FLOP_WEIGHT * flops`
//! (in byte-equivalents). Constants and leaves cost nothing. A recognised op
//! (LayerNormalization) reads its input once and writes once, where its
//! decomposition writes and rereads every intermediate: the model prefers it, and
//! a chain that keeps intermediates out of memory wins.
//!
//! Greedy extraction (egg's `Extractor`) picks the cheapest node per e-class by
//! tree cost, which counts a shared subexpression once per use. The exact
//! extraction searches every combination of choices for the DAG cost (each
//! e-class once), up to a limit of combinations; past it, it keeps the greedy
//! choice and says so.

use super::lang::{FuseGraph, Info, ONode};
use crate::ir::types::DimValue;
use egg::{CostFunction, Id, Language};
use std::collections::{HashMap, HashSet};

/// Cost of one kernel launch, in bytes moved.
pub const LAUNCH: f64 = 4096.0;
/// Weight of one arithmetic operation against one byte moved.
pub const FLOP_WEIGHT: f64 = 0.25;
/// Elements assumed for a tensor of unknown size.
const UNKNOWN_ELEMS: f64 = 1024.0;

fn elems(i: &Info) -> f64 {
    match &i.shape {
        Some(s) => s
            .iter()
            .map(|d| match d.value {
                DimValue::Fixed(n) => n.max(0) as f64,
                // A named dim (batch): counted as 1, the usual inference batch.
                DimValue::Param(_) => 1.0,
                DimValue::Unknown => 32.0,
            })
            .product(),
        None => UNKNOWN_ELEMS,
    }
}

fn bytes(i: &Info) -> f64 {
    let width = i
        .dtype
        .and_then(|d| d.bits())
        .map(|b| b as f64 / 8.0)
        .unwrap_or(4.0);
    elems(i) * width
}

/// Arithmetic per output element.
fn flops_per_elem(op: &str) -> f64 {
    match op {
        "Exp" | "Log" | "Tanh" | "Sigmoid" | "Erf" | "Pow" | "Sqrt" | "Softplus" | "Gelu" => 8.0,
        "Mish" | "Selu" | "Celu" | "Elu" | "HardSwish" | "HardSigmoid" => 10.0,
        "LayerNormalization" | "RMSNormalization" | "Softmax" | "LogSoftmax" => 12.0,
        "MatMul" | "Gemm" | "Conv" => 64.0,
        "Attention" => 256.0,
        _ => 1.0,
    }
}

/// The cost of one e-node of e-class `id` (children not included).
pub fn node_cost(eg: &FuseGraph, id: Id, node: &ONode) -> f64 {
    match node {
        ONode::Const { .. } | ONode::Leaf(_) => 0.0,
        ONode::Op { op, children, .. } => {
            let out = &eg[id].data;
            let mut distinct: Vec<Id> = children.iter().map(|&c| eg.find(c)).collect();
            distinct.sort();
            distinct.dedup();
            // Each distinct input is read once (x*x reads x once).
            let inputs: f64 = distinct
                .iter()
                .map(|&c| {
                    let d = &eg[c].data;
                    if d.value.is_some() {
                        // Small constants ride along as kernel parameters.
                        bytes(d).min(256.0)
                    } else {
                        bytes(d)
                    }
                })
                .sum();
            let work = match op.as_str() {
                // Pure metadata: no kernel on any backend worth counting.
                "Reshape" | "Squeeze" | "Unsqueeze" | "Flatten" | "Identity" => {
                    return LAUNCH * 0.1
                }
                // Reductions read their input and write a small output.
                o if super::lang::is_reduce(o) => {
                    children.first().map(|&c| elems(&eg[c].data)).unwrap_or(0.0)
                }
                o => elems(out) * flops_per_elem(o),
            };
            LAUNCH + inputs + bytes(out) + FLOP_WEIGHT * work
        }
    }
}

/// egg cost function: tree cost with [`node_cost`].
pub struct KernelCost<'a> {
    pub eg: &'a FuseGraph,
}

impl CostFunction<ONode> for KernelCost<'_> {
    type Cost = f64;
    fn cost<C>(&mut self, enode: &ONode, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let id = self.eg.lookup(enode.clone());
        let own = id
            .map(|id| node_cost(self.eg, id, enode))
            .unwrap_or(f64::INFINITY);
        enode.fold(own, |acc, c| acc + costs(c))
    }
}

/// A choice of e-node per e-class.
pub type Choice = HashMap<Id, ONode>;

/// Greedy choice for every class reachable from `roots`.
pub fn greedy(eg: &FuseGraph, roots: &[Id]) -> Choice {
    let ex = egg::Extractor::new(eg, KernelCost { eg });
    let mut choice = Choice::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    while let Some(c) = stack.pop() {
        if choice.contains_key(&c) {
            continue;
        }
        let n = ex.find_best_node(c).clone();
        for &k in n.children() {
            stack.push(eg.find(k));
        }
        choice.insert(c, n);
    }
    choice
}

/// DAG cost of a choice (each reachable class once); `None` on a cycle.
pub fn dag_cost(eg: &FuseGraph, roots: &[Id], choice: &Choice) -> Option<f64> {
    let mut state: HashMap<Id, bool> = HashMap::new(); // false: on stack, true: done
    let mut total = 0.0;
    fn visit(
        eg: &FuseGraph,
        c: Id,
        choice: &Choice,
        state: &mut HashMap<Id, bool>,
        total: &mut f64,
    ) -> Option<()> {
        match state.get(&c) {
            Some(true) => return Some(()),
            Some(false) => return None,
            None => {}
        }
        state.insert(c, false);
        let n = choice.get(&c)?;
        for &k in n.children() {
            visit(eg, eg.find(k), choice, state, total)?;
        }
        *total += node_cost(eg, c, n);
        state.insert(c, true);
        Some(())
    }
    for &r in roots {
        visit(eg, eg.find(r), choice, &mut state, &mut total)?;
    }
    Some(total)
}

/// How an exact extraction went.
#[derive(Clone, Debug, PartialEq)]
pub enum ExactOutcome {
    /// Every combination was compared.
    Exact { combinations: u64 },
    /// Too many combinations: the greedy choice was kept.
    TooLarge { combinations: f64 },
}

/// Exact DAG-cost extraction by enumeration, starting from `start`, for regions
/// of at most `limit` combinations.
pub fn exact(eg: &FuseGraph, roots: &[Id], start: Choice, limit: u64) -> (Choice, ExactOutcome) {
    // Classes that can be reached under some choice.
    let mut reach: Vec<Id> = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<Id> = roots.iter().map(|&r| eg.find(r)).collect();
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        reach.push(c);
        for n in &eg[c].nodes {
            for &k in n.children() {
                stack.push(eg.find(k));
            }
        }
    }
    // Nodes of a class that read the same non-constant classes differ only in
    // their own cost: keep the cheapest of each such group (the choice cannot
    // change what is shared).
    let is_free = |k: Id| eg[k].nodes.iter().any(|n| n.is_leaf());
    let options: Vec<(Id, Vec<ONode>)> = reach
        .iter()
        .map(|&c| {
            let mut best: HashMap<Vec<Id>, (f64, ONode)> = HashMap::new();
            for n in &eg[c].nodes {
                let mut key: Vec<Id> = n
                    .children()
                    .iter()
                    .map(|&k| eg.find(k))
                    .filter(|&k| !is_free(k))
                    .collect();
                key.sort();
                key.dedup();
                let cost = node_cost(eg, c, n);
                let keep = best.get(&key).is_none_or(|(b, _)| cost < *b);
                if keep {
                    best.insert(key, (cost, n.clone()));
                }
            }
            let mut v: Vec<ONode> = best.into_values().map(|(_, n)| n).collect();
            v.sort();
            (c, v)
        })
        .filter(|(_, v)| v.len() > 1)
        .collect();
    let combos: f64 = options.iter().map(|(_, v)| v.len() as f64).product();
    if combos > limit as f64 {
        return (
            start,
            ExactOutcome::TooLarge {
                combinations: combos,
            },
        );
    }
    let mut best = start.clone();
    let mut best_cost = dag_cost(eg, roots, &start).unwrap_or(f64::INFINITY);
    let mut cur = start;
    for &c in &reach {
        cur.entry(c).or_insert_with(|| eg[c].nodes[0].clone());
    }
    // Classes with one option after pruning take it.
    let pruned_single: Vec<(Id, ONode)> = reach
        .iter()
        .filter(|c| !options.iter().any(|(o, _)| o == *c))
        .filter_map(|&c| {
            let mut nodes: Vec<&ONode> = eg[c].nodes.iter().collect();
            nodes.sort_by(|a, b| node_cost(eg, c, a).total_cmp(&node_cost(eg, c, b)));
            let grouped_one = {
                let keys: HashSet<Vec<Id>> = eg[c]
                    .nodes
                    .iter()
                    .map(|n| {
                        let mut k: Vec<Id> = n
                            .children()
                            .iter()
                            .map(|&k| eg.find(k))
                            .filter(|&k| !is_free(k))
                            .collect();
                        k.sort();
                        k.dedup();
                        k
                    })
                    .collect();
                keys.len() == 1
            };
            (grouped_one && nodes.len() > 1).then(|| (c, nodes[0].clone()))
        })
        .collect();
    for (c, n) in pruned_single {
        cur.insert(c, n);
    }
    if let Some(cost) = dag_cost(eg, roots, &cur) {
        if cost < best_cost - 1e-9 {
            best_cost = cost;
            best = cur.clone();
        }
    }
    let mut idx = vec![0usize; options.len()];
    let mut count = 0u64;
    loop {
        for (k, (c, opts)) in options.iter().enumerate() {
            cur.insert(*c, opts[idx[k]].clone());
        }
        count += 1;
        if let Some(cost) = dag_cost(eg, roots, &cur) {
            if cost < best_cost - 1e-9 {
                best_cost = cost;
                best = cur.clone();
            }
        }
        // Next combination.
        let mut k = 0;
        while k < options.len() {
            idx[k] += 1;
            if idx[k] < options[k].1.len() {
                break;
            }
            idx[k] = 0;
            k += 1;
        }
        if k == options.len() {
            break;
        }
    }
    (
        best,
        ExactOutcome::Exact {
            combinations: count,
        },
    )
}
