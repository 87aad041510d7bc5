//! `fuse` and `fuse-std`: rewriting by equality saturation (egg), extraction by
//! cost, and kernel grouping.
//!
//! The region of a graph (see [`region`]) becomes an e-graph; the rules of
//! `passes/*.rules` ([`rules`], conditions in [`conds`]) add equivalent forms
//! until saturation or a limit (nodes, iterations, time: [`FuseOptions`]); the
//! cheapest form under the cost model ([`extract`]) is written back, but only
//! when it is cheaper than the original. Rule order does not decide the result:
//! every rule sees every form the others produced.
//!
//! - `fuse-std` (in `-O2`) uses the rules whose right side is standard ONNX:
//!   algebraic simplification and the recognitions of LayerNormalization, Gelu,
//!   Softmax ... where the model's opset has the op.
//! - `fuse` (in `-O3`) adds the rules for other domains when the target allows
//!   them (`--target onnxruntime`: com.microsoft ops), then groups what is left of
//!   elementwise chains, reductions and reshapes into fused kernel nodes (the
//!   `kernel` classes of `passes/fusion.rules`; see [`crate::fused`]).
//!
//! The pass report says why saturation stopped and how often each rule fired.
//!
//! ```
//! use modc::{parse_model, PassManager, Pipeline};
//! let mut m = parse_model("opset _=20\ngraph @g(%x: f32[4]) -> (%y) {\n  %h = const f32[] @h [0.5]\n  %r = const f32[] @r [0.70710677]\n  %one = const f32[] @one [1.0]\n  %a = Mul(%x, %h)\n  %b = Mul(%x, %r)\n  %c = Erf(%b)\n  %d = Add(%c, %one)\n  %y = Mul(%a, %d)\n  return %y\n}\n").unwrap();
//! PassManager::new(Pipeline::parse("infer,fuse-std,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert_eq!(m.graph.nodes().next().unwrap().1.op_type, "Gelu");
//! ```

pub mod conds;
mod conds_layout;
pub mod extract;
pub mod lang;
mod region;
pub mod rewrite;
pub mod rules;

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

/// What the output must run on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Standard ONNX plus modc's fused kernels (exported as local functions).
    #[default]
    Onnx,
    /// onnxruntime: its com.microsoft contrib ops are allowed too.
    OnnxRuntime,
}

/// Limits and choices of the fusion passes.
#[derive(Clone, Debug)]
pub struct FuseOptions {
    /// Saturation stops when the e-graph has this many e-nodes.
    pub node_limit: usize,
    /// ... or after this many iterations.
    pub iter_limit: usize,
    /// ... or after this long.
    pub time_limit: Duration,
    /// Exact (DAG-cost) extraction instead of greedy.
    pub exact: bool,
    /// The exact extraction gives up (keeping greedy) past this many combinations.
    pub exact_limit: u64,
    pub target: Target,
}

impl Default for FuseOptions {
    fn default() -> Self {
        FuseOptions {
            node_limit: 20_000,
            iter_limit: 12,
            time_limit: Duration::from_secs(2),
            exact: false,
            exact_limit: 1_000_000,
            target: Target::Onnx,
        }
    }
}

fn rule_set() -> Result<&'static rules::RuleSet, PassError> {
    static RULES: OnceLock<Result<rules::RuleSet, String>> = OnceLock::new();
    RULES
        .get_or_init(|| rules::builtin_rules().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| PassError::Failed {
            pass: "fuse".into(),
            message: e.clone(),
        })
}

/// What one run on one graph did.
#[derive(Clone, Debug, Default)]
pub struct FuseStats {
    pub region_nodes: usize,
    pub stop: String,
    pub iterations: usize,
    pub egraph_nodes: usize,
    pub fired: BTreeMap<String, usize>,
    pub cost_before: f64,
    pub cost_after: f64,
    pub applied: bool,
    pub exact: Option<extract::ExactOutcome>,
    pub kernels: usize,
}

impl FuseStats {
    fn summary(&self) -> String {
        let fired: Vec<String> = self
            .fired
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k}x{n}"))
            .collect();
        let mut s = format!(
            "region {} nodes; saturation: {} after {} iterations, {} e-nodes; cost {:.0} -> {:.0}{}",
            self.region_nodes,
            self.stop,
            self.iterations,
            self.egraph_nodes,
            self.cost_before,
            self.cost_after,
            if self.applied { "" } else { " (kept the original)" },
        );
        if let Some(e) = &self.exact {
            s.push_str(&match e {
                extract::ExactOutcome::Exact { combinations } => {
                    format!("; exact extraction over {combinations} combinations")
                }
                extract::ExactOutcome::TooLarge { combinations } => format!(
                    "; exact extraction skipped ({combinations:.0} combinations), greedy kept"
                ),
            });
        }
        if self.kernels > 0 {
            s.push_str(&format!("; {} fused kernels", self.kernels));
        }
        if !fired.is_empty() {
            s.push_str(&format!("; fired: {}", fired.join(", ")));
        }
        s
    }
}

/// Runs saturation and extraction on one graph with the given rules.
pub fn saturate_and_extract(
    g: &mut Graph,
    opset: i64,
    rules: &[&rules::Rule],
    opts: &FuseOptions,
) -> Result<FuseStats, PassError> {
    let mut stats = FuseStats::default();
    let Some(built) = region::build(g, opset) else {
        stats.stop = "empty region".into();
        return Ok(stats);
    };
    stats.region_nodes = built.nodes.len();
    let mut built = built;
    let eg = std::mem::take(&mut built.eg);
    let rewrites = rewrite::compile(rules);
    let runner = egg::Runner::<lang::ONode, lang::Region>::new(lang::Region::default())
        .with_egraph(eg)
        .with_node_limit(opts.node_limit)
        .with_iter_limit(opts.iter_limit)
        .with_time_limit(opts.time_limit)
        .run(&rewrites);
    stats.iterations = runner.iterations.len();
    stats.stop = match &runner.stop_reason {
        Some(egg::StopReason::Saturated) => "saturated".into(),
        Some(egg::StopReason::IterationLimit(n)) => format!("iteration limit ({n})"),
        Some(egg::StopReason::NodeLimit(n)) => format!("node limit ({n})"),
        Some(egg::StopReason::TimeLimit(t)) => format!("time limit ({t:.2} s)"),
        Some(egg::StopReason::Other(s)) => s.clone(),
        None => "not run".into(),
    };
    for it in &runner.iterations {
        for (name, n) in &it.applied {
            *stats.fired.entry(name.to_string()).or_default() += n;
        }
    }
    let eg = runner.egraph;
    // The e-graph after saturation, one e-class per line (RUST_LOG=modc=trace).
    if tracing::enabled!(tracing::Level::TRACE) {
        for c in eg.classes() {
            let shape = c.data.shape.as_ref().map(|s| {
                s.iter()
                    .map(|d| match &d.value {
                        crate::ir::types::DimValue::Fixed(n) => n.to_string(),
                        crate::ir::types::DimValue::Param(p) => p.clone(),
                        crate::ir::types::DimValue::Unknown => "?".into(),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let nodes: Vec<String> = c
                .nodes
                .iter()
                .map(|n| format!("{n}{:?}", egg::Language::children(n)))
                .collect();
            tracing::trace!(
                "{} [{}] {:?}: {}",
                c.id,
                shape.unwrap_or("*".into()),
                c.data.dims_value.as_ref().map(|d| d.len()),
                nodes.join(" | ")
            );
        }
    }
    stats.egraph_nodes = eg.total_number_of_nodes();
    let built = region::Built { eg, ..built };
    let roots: Vec<egg::Id> = built.roots.iter().map(|r| r.1).collect();
    let original = region::original_choice(&built);
    stats.cost_before = extract::dag_cost(&built.eg, &roots, &original).unwrap_or(f64::INFINITY);
    let mut choice = extract::greedy(&built.eg, &roots);
    if opts.exact {
        let (c, outcome) = extract::exact(&built.eg, &roots, choice, opts.exact_limit);
        choice = c;
        stats.exact = Some(outcome);
    }
    stats.cost_after = extract::dag_cost(&built.eg, &roots, &choice).unwrap_or(f64::INFINITY);
    if stats.cost_after < stats.cost_before * (1.0 - 1e-9) {
        let mut work = g.clone();
        match region::write_back(&mut work, &built, &choice, opset) {
            Ok(_) => {
                *g = work;
                stats.applied = true;
            }
            Err(e) => {
                tracing::debug!("fuse: kept the original graph: {}", e.0);
                stats.cost_after = stats.cost_before;
            }
        }
    } else {
        stats.cost_after = stats.cost_before;
    }
    Ok(stats)
}

/// `fuse-std` (standard: false kernels, standard ops only) and `fuse`.
pub struct Fuse {
    pub full: bool,
}

impl Pass for Fuse {
    fn run_model(
        &self,
        m: &mut crate::ir::model::Model,
        cx: &mut PassCtx,
    ) -> Result<bool, PassError> {
        let changed = crate::pass::run_on_graph_tree(self, &mut m.graph, cx)?;
        // Domains the rewrite introduced need an opset import.
        let mut used = std::collections::BTreeSet::new();
        collect_domains(&m.graph, &mut used);
        for d in used {
            if !m.opset_imports.iter().any(|o| o.domain == d) {
                m.opset_imports.push(crate::ir::model::OpsetImport {
                    domain: d,
                    version: 1,
                });
            }
        }
        Ok(changed)
    }

    fn name(&self) -> &'static str {
        if self.full {
            "fuse"
        } else {
            "fuse-std"
        }
    }

    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let set = rule_set()?;
        let opts = &cx.options.fuse;
        let chosen: Vec<&rules::Rule> = set
            .rules
            .iter()
            .filter(|r| r.is_standard() || (self.full && opts.target == Target::OnnxRuntime))
            .collect();
        let mut stats = saturate_and_extract(g, cx.opset, &chosen, opts)?;
        let mut changed = stats.applied;
        if stats.applied {
            cx.rewrites += stats.fired.values().sum::<usize>().max(1);
        }
        if self.full {
            let made = group_kernels(g, set);
            stats.kernels = made;
            cx.rewrites += made;
            changed |= made > 0;
        }
        let notable = stats.applied
            || stats.kernels > 0
            || stats.stop != "saturated"
            || matches!(stats.exact, Some(extract::ExactOutcome::TooLarge { .. }));
        if stats.region_nodes > 0 && (notable || cx.depth == 0) {
            let where_ = if cx.depth > 0 { " (subgraph)" } else { "" };
            cx.details
                .push(format!("{}{where_}: {}", self.name(), stats.summary()));
        }
        Ok(changed)
    }
}

/// Groups what is left into fused kernels, with the classes of `fusion.rules`.
fn group_kernels(g: &mut Graph, set: &rules::RuleSet) -> usize {
    crate::transform::fuse_kernels::group_kernels(g, &kernel_classes(set))
}

/// The kernel classes declared in the rule files (`kernel CLASS op ...`).
pub fn kernel_classes(set: &rules::RuleSet) -> crate::transform::fuse_kernels::KernelClasses {
    let mut k = crate::transform::fuse_kernels::KernelClasses::empty();
    for (class, ops) in &set.kernels {
        for op in ops {
            // Class names are checked by the rule-file test (`kernel_classes_are_known`).
            let _ = k.insert(class, op);
        }
    }
    k
}

fn collect_domains(g: &Graph, out: &mut std::collections::BTreeSet<String>) {
    for (_, n) in g.nodes() {
        if n.domain == "com.microsoft" {
            out.insert(n.domain.clone());
        }
        for a in &n.attrs {
            for sub in a.value.graphs() {
                collect_domains(sub, out);
            }
        }
    }
}
