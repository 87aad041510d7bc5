//! The pass framework: the [`Pass`] trait, the registry of pass names, pipelines
//! and the [`PassManager`] that runs them.
//!
//! A pass has a kebab-case name and runs on one [`Graph`] with a [`PassCtx`]
//! (the opset, the options, a rewrite counter); it returns whether it changed
//! anything. The manager runs each pass on every subgraph (If/Loop/Scan bodies,
//! innermost first) and then on the graph holding them, unless the pass handles
//! subgraphs itself ([`Pass::recurse`]).
//!
//! A pipeline is a list of steps: a pass, or a fixpoint group of passes run again
//! until none changes anything (bounded). Pipelines are spelled as text, the same
//! on the command line and from Rust: `fold,cse,dce` runs three passes once;
//! `(fold,noop,cse,dce)` is a fixpoint group; `O0` .. `O3` name the standard
//! levels (see [`level_pipeline`]).
//!
//! ```
//! use modc::{parse_model, PassManager, Pipeline};
//! let mut m = parse_model("opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Identity(%x)\n  %y = Relu(%a)\n  return %y\n}\n").unwrap();
//! let pipeline = Pipeline::parse("noop,dce").unwrap();
//! let report = PassManager::new(pipeline).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert_eq!(report.nodes_after, 1);
//! ```

pub mod edit;
pub mod equiv;
mod manager;

pub use manager::{
    level_pipeline, PassManager, PassReport, PassStep, Pipeline, PipelineReport, StopReason,
};

use crate::ir::graph::Graph;
use crate::ir::model::Model;

/// Options shared by every pass.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// The size guard of constant folding: a node is folded only when its
    /// outputs are at most `fold_small_bytes`, or at most `fold_growth` times the
    /// bytes of its constant inputs. `false` lifts the guard (folds everything).
    pub size_guard: bool,
    /// See `size_guard`.
    pub fold_growth: f64,
    /// See `size_guard`.
    pub fold_small_bytes: u64,
    /// Limits and target of the e-graph passes (`fuse`, `fuse-std`).
    pub fuse: crate::transform::fuse::FuseOptions,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            size_guard: true,
            fold_growth: 1.5,
            fold_small_bytes: 64,
            fuse: Default::default(),
        }
    }
}

impl PassOptions {
    /// Whether folding a node whose constant inputs hold `in_bytes` into outputs of
    /// `out_bytes` passes the size guard.
    pub fn may_fold(&self, in_bytes: u64, out_bytes: u64) -> bool {
        !self.size_guard
            || out_bytes <= self.fold_small_bytes
            || (out_bytes as f64) <= self.fold_growth * in_bytes as f64
    }
}

/// What a pass sees besides the graph.
pub struct PassCtx<'a> {
    /// The default domain's opset version.
    pub opset: i64,
    /// Every opset import of the model.
    pub model_opsets: &'a [crate::ir::model::OpsetImport],
    pub options: &'a PassOptions,
    /// Rewrites applied: a pass adds one for each change it makes.
    pub rewrites: usize,
    /// How deep the graph is nested (0 for the main graph).
    pub depth: usize,
    /// Lines for the report (what a pass saw: limits hit, rules fired).
    pub details: Vec<String>,
}

impl PassCtx<'_> {
    /// The imported version of a domain (`""` and `"ai.onnx"` are the same).
    pub fn opset_of(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| if d == "ai.onnx" { "" } else { d }.to_string();
        self.model_opsets
            .iter()
            .find(|o| norm(&o.domain) == norm(domain))
            .map(|o| o.version)
    }
}

/// Errors a pass or the pass manager reports.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("unknown pass '{name}' (known passes: {known})")]
    UnknownPass { name: String, known: String },
    #[error("bad pipeline '{text}': {message}")]
    BadPipeline { text: String, message: String },
    #[error("pass '{pass}' broke the graph: {source}")]
    Verify {
        pass: String,
        source: crate::ir::verify::VerifyError,
    },
    #[error("pass '{pass}': {message}")]
    Failed { pass: String, message: String },
    #[error("dump folder '{path}': {source}")]
    Dump {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// A rewrite pass over one graph.
pub trait Pass {
    /// The kebab-case name used in pipelines and reports.
    fn name(&self) -> &'static str;
    /// Runs on one graph; returns whether anything changed.
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError>;
    /// Whether the manager runs the pass on subgraphs too (innermost first). A
    /// pass that walks subgraphs itself returns false.
    fn recurse(&self) -> bool {
        true
    }
    /// A pass that needs the whole model (opset imports, functions) overrides
    /// this; the default runs [`Pass::run`] on the main graph and its subgraphs.
    fn run_model(&self, m: &mut Model, cx: &mut PassCtx) -> Result<bool, PassError> {
        run_on_graph_tree(self, &mut m.graph, cx)
    }
}

/// Runs `pass` on every subgraph of `g` (innermost first) and then on `g`.
pub fn run_on_graph_tree<P: Pass + ?Sized>(
    pass: &P,
    g: &mut Graph,
    cx: &mut PassCtx,
) -> Result<bool, PassError> {
    let mut changed = false;
    if pass.recurse() {
        let ids: Vec<_> = g.node_ids().collect();
        for n in ids {
            for i in 0..g.node(n).attrs.len() {
                if g.node(n).attrs[i].value.graphs().is_empty() {
                    continue;
                }
                let mut a = std::mem::replace(
                    &mut g.node_mut(n).attrs[i].value,
                    crate::ir::attr::AttrValue::Int(0),
                );
                cx.depth += 1;
                let mut result = Ok(());
                for sub in a.graphs_mut() {
                    match run_on_graph_tree(pass, sub, cx) {
                        Ok(c) => changed |= c,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                cx.depth -= 1;
                g.node_mut(n).attrs[i].value = a;
                result?;
            }
        }
    }
    changed |= pass.run(g, cx)?;
    Ok(changed)
}

/// Every pass name the registry knows, in the order `--help` lists them.
pub fn pass_names() -> Vec<&'static str> {
    crate::transform::registry()
        .iter()
        .map(|(n, _, _)| *n)
        .collect()
}

/// Every pass name with its one-line description.
pub fn pass_descriptions() -> Vec<(&'static str, &'static str)> {
    crate::transform::registry()
        .iter()
        .map(|(n, d, _)| (*n, *d))
        .collect()
}

/// The pass registered under `name`.
pub fn pass_by_name(name: &str) -> Result<Box<dyn Pass>, PassError> {
    crate::transform::registry()
        .into_iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, make)| make())
        .ok_or_else(|| PassError::UnknownPass {
            name: name.to_string(),
            known: pass_names().join(", "),
        })
}
