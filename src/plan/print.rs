//! Reports of a plan: the text `modc plan` prints and its JSON form.
//!
//! Both are deterministic: steps in schedule order, tables sorted by name, sizes
//! in bytes (the text adds a human-readable size).

use super::{Plan, Step, TensorKind};
use crate::codegen::spec::Lowering;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The ops of a plan that run on the CPU: op type → (steps, reasons).
pub type FallbackTable = BTreeMap<String, (usize, Vec<String>)>;

/// How a step runs, in one short phrase.
fn runs(step: &Step) -> String {
    match &step.lowering {
        Lowering::Kernels(k) if k.dispatches.is_empty() => "gpu: (no dispatch)".into(),
        Lowering::Kernels(k) => {
            let labels: Vec<&str> = k.dispatches.iter().map(|d| d.label.as_str()).collect();
            format!("gpu: {}", labels.join(", "))
        }
        Lowering::Alias => "alias".into(),
        Lowering::Unsupported(reason) => format!("cpu: {reason}"),
    }
}

/// `1536` → `1.5 KiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut x = n as f64 / 1024.0;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.1} {}", UNITS[u])
}

impl Plan {
    /// Steps that run on the CPU, by op type, with their distinct reasons.
    pub fn fallbacks(&self) -> FallbackTable {
        let mut t = FallbackTable::new();
        for s in &self.steps {
            if let Lowering::Unsupported(reason) = &s.lowering {
                let e = t.entry(s.op.clone()).or_default();
                e.0 += 1;
                if !e.1.contains(reason) {
                    e.1.push(reason.clone());
                }
            }
        }
        t
    }

    /// Per op type: (steps on the GPU or aliased, steps on the CPU).
    pub fn backend_by_op(&self) -> BTreeMap<String, (usize, usize)> {
        let mut t: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for s in &self.steps {
            let e = t.entry(s.op.clone()).or_default();
            if s.is_fallback() {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
        t
    }

    fn counts(&self) -> (usize, usize, usize) {
        let gpu = self
            .steps
            .iter()
            .filter(|s| matches!(s.lowering, Lowering::Kernels(_)))
            .count();
        let alias = self
            .steps
            .iter()
            .filter(|s| s.lowering == Lowering::Alias)
            .count();
        (gpu, alias, self.steps.len() - gpu - alias)
    }

    fn name(&self, v: &crate::ir::graph::ValueId) -> &str {
        self.names.get(v).map(|s| s.as_str()).unwrap_or("?")
    }

    /// The report `modc plan` prints.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let (gpu, alias, cpu) = self.counts();
        let _ = writeln!(
            s,
            "steps: {} (gpu {gpu}, alias {alias}, cpu {cpu}); folded at plan time: {} nodes",
            self.steps.len(),
            self.folded.len()
        );
        if !self.observed.is_empty() {
            let names: Vec<&str> = self.observed.iter().map(|v| self.name(v)).collect();
            let _ = writeln!(
                s,
                "shapes observed in a trial run (not inferred): {}",
                names.join(", ")
            );
        }
        for (label, ids) in [("input", &self.inputs), ("output", &self.outputs)] {
            for v in ids {
                if let Some(t) = self.tensors.get(v) {
                    let at = t
                        .offset
                        .map(|o| format!("arena @{o}"))
                        .unwrap_or_else(|| "weight".into());
                    let _ = writeln!(
                        s,
                        "{label} {}: {}{:?} ({at})",
                        self.name(v),
                        t.desc.dtype.text_name(),
                        t.desc.shape
                    );
                }
            }
        }
        let w_op = self
            .steps
            .iter()
            .map(|x| x.op.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let w_name = self
            .steps
            .iter()
            .map(|x| x.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 40);
        let _ = writeln!(
            s,
            "{:>5}  {:<w_op$}  {:<w_name$}  {:>12}  runs",
            "step", "op", "node", "live bytes"
        );
        for (i, st) in self.steps.iter().enumerate() {
            let _ = writeln!(
                s,
                "{i:>5}  {:<w_op$}  {:<w_name$}  {:>12}  {}",
                st.op,
                st.name,
                st.live_bytes,
                runs(st)
            );
        }
        let m = &self.memory;
        let _ = writeln!(
            s,
            "memory: arena {} B ({}), peak {} B, lower bound {} B, peak/lower bound {:.3}, alignment {} B, placement {}",
            m.arena_bytes,
            human_bytes(m.arena_bytes),
            m.peak,
            m.lower_bound,
            m.ratio(),
            m.alignment,
            m.strategy
        );
        let _ = writeln!(
            s,
            "weights: {} B ({}), outside the arena",
            m.weight_bytes,
            human_bytes(m.weight_bytes)
        );
        let fb = self.fallbacks();
        if fb.is_empty() {
            let _ = writeln!(s, "cpu fallback: none");
        } else {
            let _ = writeln!(s, "cpu fallback:");
            for (op, (n, reasons)) in &fb {
                let _ = writeln!(s, "  {op} x{n}: {}", reasons.join("; "));
            }
        }
        s
    }

    /// The report as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        let steps: Vec<serde_json::Value> = self
            .steps
            .iter()
            .map(|st| {
                let (backend, kernels, reason) = match &st.lowering {
                    Lowering::Kernels(k) => (
                        "gpu",
                        k.dispatches.iter().map(|d| d.label.clone()).collect(),
                        None,
                    ),
                    Lowering::Alias => ("alias", vec![], None),
                    Lowering::Unsupported(r) => ("cpu", vec![], Some(r.clone())),
                };
                json!({
                    "op": st.op,
                    "node": st.name,
                    "backend": backend,
                    "kernels": kernels,
                    "reason": reason,
                    "live_bytes": st.live_bytes,
                })
            })
            .collect();
        let tensor = |v: &crate::ir::graph::ValueId| {
            self.tensors.get(v).map(|t| {
                json!({
                    "name": self.name(v),
                    "dtype": t.desc.dtype.text_name(),
                    "shape": t.desc.shape,
                    "offset": t.offset,
                })
            })
        };
        let m = &self.memory;
        let kinds = |k: TensorKind| self.tensors.values().filter(|t| t.kind == k).count();
        json!({
            "inputs": self.inputs.iter().filter_map(tensor).collect::<Vec<_>>(),
            "outputs": self.outputs.iter().filter_map(tensor).collect::<Vec<_>>(),
            "steps": steps,
            "folded_nodes": self.folded.len(),
            "observed_shapes": self.observed.iter().map(|v| self.name(v)).collect::<Vec<_>>(),
            "tensors": {
                "weight": kinds(TensorKind::Weight),
                "input": kinds(TensorKind::Input),
                "intermediate": kinds(TensorKind::Intermediate),
                "output": kinds(TensorKind::Output),
            },
            "memory": {
                "arena_bytes": m.arena_bytes,
                "peak": m.peak,
                "lower_bound": m.lower_bound,
                "ratio": m.ratio(),
                "alignment": m.alignment,
                "weight_bytes": m.weight_bytes,
                "strategy": m.strategy,
                "per_step": m.per_step,
            },
            "fallback": self.fallbacks().into_iter().map(|(op, (n, reasons))| {
                json!({"op": op, "steps": n, "reasons": reasons})
            }).collect::<Vec<_>>(),
            "backend_by_op": self.backend_by_op().into_iter().map(|(op, (g, c))| {
                (op, json!({"gpu": g, "cpu": c}))
            }).collect::<serde_json::Map<_, _>>(),
        })
    }
}
