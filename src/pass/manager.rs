//! Pipelines and the pass manager.

use super::{pass_by_name, Pass, PassCtx, PassError, PassOptions};
use crate::ir::model::Model;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One step of a pipeline.
#[derive(Clone, Debug, PartialEq)]
pub enum PassStep {
    /// A pass, by its registered name.
    Pass(String),
    /// Passes run again, in order, until none changes anything (at most
    /// [`Pipeline::MAX_ROUNDS`] rounds).
    Fixpoint(Vec<PassStep>),
}

/// A pipeline: steps run in order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Pipeline {
    pub steps: Vec<PassStep>,
}

/// The pipeline text of the standard levels `O0` .. `O3`.
///
/// - `O0`: nothing.
/// - `O1`: shape inference and cleanup (no-ops, dead code, initializers).
/// - `O2`: constant and shape folding, cleanup, CSE, Conv/Gemm folding and
///   If-folding to a fixpoint, then `fuse-std` (e-graph rewriting that only
///   produces standard ONNX ops): the level meant for shipping.
/// - `O3`: `O2` with `fuse` instead of `fuse-std`: contrib ops when the target
///   allows them, and fused kernel nodes for what is left of elementwise chains,
///   reductions and reshapes.
pub fn level_pipeline(level: &str) -> Option<&'static str> {
    const O2: &str = "infer,(infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce),\
                      (conv-fold,pad-fold,gemm-fold,if-fold,infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce),\
                      fuse-std,dce,init-cleanup";
    const O3: &str = "infer,(infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce),\
                      (conv-fold,pad-fold,gemm-fold,if-fold,infer,fold,shape-fold,noop,merge-chains,init-cleanup,cse,dce),\
                      fuse,dce,init-cleanup";
    match level.trim_start_matches('-') {
        "O0" | "0" => Some(""),
        "O1" | "1" => Some("infer,(noop,dce),init-cleanup"),
        "O2" | "2" => Some(O2),
        "O3" | "3" => Some(O3),
        _ => None,
    }
}

impl Pipeline {
    /// Rounds a fixpoint group may take before the manager stops it.
    pub const MAX_ROUNDS: usize = 8;

    /// Parses `a,b,(c,d),O1`: names are passes or levels, parentheses make a
    /// fixpoint group. Every name is checked against the registry.
    pub fn parse(text: &str) -> Result<Pipeline, PassError> {
        let bad = |m: &str| PassError::BadPipeline {
            text: text.to_string(),
            message: m.to_string(),
        };
        let mut stack: Vec<Vec<PassStep>> = vec![vec![]];
        let mut word = String::new();
        let flush = |word: &mut String, stack: &mut Vec<Vec<PassStep>>| -> Result<(), PassError> {
            let w = word.trim().to_string();
            word.clear();
            if w.is_empty() {
                return Ok(());
            }
            if let Some(level) = level_pipeline(&w) {
                let p = Pipeline::parse(level)?;
                stack.last_mut().expect("open").extend(p.steps);
                return Ok(());
            }
            pass_by_name(&w)?;
            stack.last_mut().expect("open").push(PassStep::Pass(w));
            Ok(())
        };
        for c in text.chars() {
            match c {
                ',' => flush(&mut word, &mut stack)?,
                '(' => {
                    if !word.trim().is_empty() {
                        return Err(bad("'(' must follow a comma"));
                    }
                    stack.push(vec![]);
                }
                ')' => {
                    flush(&mut word, &mut stack)?;
                    if stack.len() < 2 {
                        return Err(bad("unbalanced ')'"));
                    }
                    let group = stack.pop().expect("checked");
                    stack
                        .last_mut()
                        .expect("open")
                        .push(PassStep::Fixpoint(group));
                }
                c if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c.is_whitespace() => {
                    word.push(c)
                }
                c => return Err(bad(&format!("unexpected character '{c}'"))),
            }
        }
        flush(&mut word, &mut stack)?;
        if stack.len() != 1 {
            return Err(bad("unbalanced '('"));
        }
        Ok(Pipeline {
            steps: stack.pop().expect("one"),
        })
    }

    /// The pipeline as text (parses back to the same pipeline).
    pub fn to_text(&self) -> String {
        fn steps(s: &[PassStep]) -> String {
            s.iter()
                .map(|p| match p {
                    PassStep::Pass(n) => n.clone(),
                    PassStep::Fixpoint(g) => format!("({})", steps(g)),
                })
                .collect::<Vec<_>>()
                .join(",")
        }
        steps(&self.steps)
    }
}

/// What one run of one pass did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PassReport {
    pub pass: String,
    /// 1-based index of this run among all pass runs of the pipeline.
    pub step: usize,
    #[serde(serialize_with = "ser_ms", rename = "time_ms")]
    pub time: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub rewrites: usize,
    pub changed: bool,
    /// What the pass reported (saturation limits, rules fired ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1e3)
}

/// Why a pipeline ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Every step ran.
    Completed,
    /// `stop_after` steps ran.
    StepLimit,
}

/// What a pipeline did.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PipelineReport {
    pub pipeline: String,
    pub passes: Vec<PassReport>,
    /// Nodes, subgraphs included, before and after.
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub stop: StopReason,
    /// Fixpoint groups cut off at [`Pipeline::MAX_ROUNDS`] rounds.
    pub unconverged_groups: usize,
}

impl PipelineReport {
    /// Time, runs and rewrites summed per pass name, in first-run order.
    pub fn per_pass(&self) -> Vec<(String, usize, Duration, usize)> {
        let mut out: Vec<(String, usize, Duration, usize)> = vec![];
        for r in &self.passes {
            match out.iter_mut().find(|e| e.0 == r.pass) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += r.time;
                    e.3 += r.rewrites;
                }
                None => out.push((r.pass.clone(), 1, r.time, r.rewrites)),
            }
        }
        out
    }
}

type Progress<'a> = Box<dyn FnMut(&str, usize) + 'a>;

/// Runs a pipeline over a model.
pub struct PassManager<'a> {
    pipeline: Pipeline,
    pub options: PassOptions,
    /// Verify the graph after every pass (the failing pass is named).
    pub verify_each: bool,
    /// Write the text form before and after every pass into this folder.
    pub dump_dir: Option<PathBuf>,
    /// Stop after this many pass runs (to bisect a bad rewrite).
    pub stop_after: Option<usize>,
    progress: Option<Progress<'a>>,
    custom: Vec<Box<dyn Pass + 'a>>,
}

impl<'a> PassManager<'a> {
    pub fn new(pipeline: Pipeline) -> PassManager<'a> {
        PassManager {
            pipeline,
            options: PassOptions::default(),
            verify_each: false,
            dump_dir: None,
            stop_after: None,
            progress: None,
            custom: vec![],
        }
    }

    /// Adds a pass of the caller's own, used by the pipeline under its name (it
    /// takes precedence over a registered pass of the same name). Build the
    /// pipeline with [`PassStep::Pass`] when the name is not registered.
    pub fn add_pass(&mut self, pass: impl Pass + 'a) {
        self.custom.push(Box::new(pass));
    }

    /// Called with the pass name and step number before every pass run.
    pub fn on_progress(&mut self, f: impl FnMut(&str, usize) + 'a) {
        self.progress = Some(Box::new(f));
    }

    /// Runs the pipeline.
    pub fn run(&mut self, m: &mut Model) -> Result<PipelineReport, PassError> {
        if let Some(d) = &self.dump_dir {
            std::fs::create_dir_all(d).map_err(|e| PassError::Dump {
                path: d.clone(),
                source: e,
            })?;
        }
        let mut st = RunState {
            passes: vec![],
            step: 0,
            stopped: false,
            unconverged: 0,
        };
        let nodes_before = m.graph.node_count_recursive();
        let steps = self.pipeline.steps.clone();
        super::edit::ir3_inputs_to_consts(m);
        let result = self.run_steps(&steps, m, &mut st);
        super::edit::ir3_consts_to_inputs(m);
        result?;
        Ok(PipelineReport {
            pipeline: self.pipeline.to_text(),
            passes: st.passes,
            nodes_before,
            nodes_after: m.graph.node_count_recursive(),
            stop: if st.stopped {
                StopReason::StepLimit
            } else {
                StopReason::Completed
            },
            unconverged_groups: st.unconverged,
        })
    }

    fn run_steps(
        &mut self,
        steps: &[PassStep],
        m: &mut Model,
        st: &mut RunState,
    ) -> Result<bool, PassError> {
        let mut changed = false;
        for s in steps {
            if st.stopped {
                break;
            }
            match s {
                PassStep::Pass(name) => changed |= self.run_one(name, m, st)?,
                PassStep::Fixpoint(group) => {
                    let mut rounds = 0;
                    loop {
                        let c = self.run_steps(group, m, st)?;
                        changed |= c;
                        rounds += 1;
                        if !c || st.stopped {
                            break;
                        }
                        if rounds >= Pipeline::MAX_ROUNDS {
                            st.unconverged += 1;
                            break;
                        }
                    }
                }
            }
        }
        Ok(changed)
    }

    fn run_one(&mut self, name: &str, m: &mut Model, st: &mut RunState) -> Result<bool, PassError> {
        if self.stop_after.is_some_and(|n| st.step >= n) {
            st.stopped = true;
            return Ok(false);
        }
        st.step += 1;
        let registered;
        let pass: &dyn Pass = match self.custom.iter().find(|p| p.name() == name) {
            Some(p) => p.as_ref(),
            None => {
                registered = pass_by_name(name)?;
                registered.as_ref()
            }
        };
        if let Some(p) = &mut self.progress {
            p(name, st.step);
        }
        let before_text = self
            .dump_dir
            .as_ref()
            .map(|_| crate::ir::text::print_model(m));
        let nodes_before = m.graph.node_count_recursive();
        let opsets = m.opset_imports.clone();
        let mut cx = PassCtx {
            opset: m.opset_version("").unwrap_or(1),
            model_opsets: &opsets,
            options: &self.options,
            rewrites: 0,
            depth: 0,
            details: Vec::new(),
        };
        let t = Instant::now();
        let changed = pass.run_model(m, &mut cx)?;
        let time = t.elapsed();
        let rewrites = cx.rewrites;
        let details = std::mem::take(&mut cx.details);
        if self.verify_each {
            crate::ir::verify::verify(&m.graph).map_err(|e| PassError::Verify {
                pass: name.to_string(),
                source: e,
            })?;
        }
        if let (Some(d), Some(before)) = (&self.dump_dir, before_text) {
            let write = |suffix: &str, text: &str| {
                let p = d.join(format!("{:03}-{name}.{suffix}.ir", st.step));
                std::fs::write(&p, text).map_err(|e| PassError::Dump { path: p, source: e })
            };
            write("before", &before)?;
            write("after", &crate::ir::text::print_model(m))?;
        }
        st.passes.push(PassReport {
            pass: name.to_string(),
            step: st.step,
            time,
            nodes_before,
            nodes_after: m.graph.node_count_recursive(),
            rewrites,
            changed,
            details,
        });
        Ok(changed)
    }
}

struct RunState {
    passes: Vec<PassReport>,
    step: usize,
    stopped: bool,
    unconverged: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelines_parse_and_print_back() {
        let p = Pipeline::parse("fold, (noop,dce) ,cse").unwrap();
        assert_eq!(p.to_text(), "fold,(noop,dce),cse");
        assert_eq!(Pipeline::parse(&p.to_text()).unwrap(), p);
        let o1 = Pipeline::parse("O1").unwrap();
        assert_eq!(o1.to_text(), "infer,(noop,dce),init-cleanup");
        assert!(Pipeline::parse("O0").unwrap().steps.is_empty());
    }

    /// Adds a Neg after the graph's first input each time it runs, without
    /// rewiring anything, the first `budget` times.
    struct Grow(std::cell::Cell<usize>);
    impl Pass for Grow {
        fn name(&self) -> &'static str {
            "grow"
        }
        fn run(&self, g: &mut crate::Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
            if self.0.get() == 0 {
                return Ok(false);
            }
            self.0.set(self.0.get() - 1);
            let x = g.inputs[0];
            g.add_node(
                "Neg",
                "",
                vec![Some(x)],
                &[&format!("n{}", self.0.get())],
                vec![],
            );
            cx.rewrites += 1;
            Ok(true)
        }
    }

    /// Points a node at a value nobody defines.
    struct Break;
    impl Pass for Break {
        fn name(&self) -> &'static str {
            "break"
        }
        fn run(&self, g: &mut crate::Graph, _: &mut PassCtx) -> Result<bool, PassError> {
            let dangling = g.add_value(crate::Value::new(
                "nowhere",
                crate::ValueDef::Node {
                    node: crate::NodeId(999),
                    slot: 0,
                },
            ));
            let n = g.node_ids().next().unwrap();
            g.node_mut(n).inputs[0] = Some(dangling);
            Ok(true)
        }
    }

    fn relu() -> Model {
        crate::parse_model(
            "opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n",
        )
        .unwrap()
    }

    #[test]
    fn fixpoint_groups_rerun_until_nothing_changes_and_stop_at_the_bound() {
        let steps = |n: &str| Pipeline {
            steps: vec![PassStep::Fixpoint(vec![
                PassStep::Pass(n.into()),
                PassStep::Pass("dce".into()),
            ])],
        };
        let mut m = relu();
        let mut pm = PassManager::new(steps("grow"));
        pm.add_pass(Grow(std::cell::Cell::new(3)));
        let r = pm.run(&mut m).unwrap();
        // 3 changing rounds and a 4th that changes nothing.
        assert_eq!(r.passes.iter().filter(|p| p.pass == "grow").count(), 4);
        assert_eq!(r.unconverged_groups, 0);
        assert_eq!(m.graph.node_count(), 1, "dce removed the dead Negs");
        let mut pm = PassManager::new(steps("grow"));
        pm.add_pass(Grow(std::cell::Cell::new(100)));
        let r = pm.run(&mut relu()).unwrap();
        assert_eq!(r.unconverged_groups, 1);
        assert_eq!(
            r.passes.iter().filter(|p| p.pass == "grow").count(),
            Pipeline::MAX_ROUNDS
        );
    }

    #[test]
    fn verify_each_names_the_pass_that_broke_the_graph() {
        let mut pm = PassManager::new(Pipeline {
            steps: vec![PassStep::Pass("dce".into()), PassStep::Pass("break".into())],
        });
        pm.add_pass(Break);
        pm.verify_each = true;
        let e = pm.run(&mut relu()).unwrap_err().to_string();
        assert!(e.starts_with("pass 'break' broke the graph"), "{e}");
    }

    #[test]
    fn stop_after_counts_pass_runs() {
        let mut pm = PassManager::new(Pipeline::parse("O2").unwrap());
        pm.stop_after = Some(3);
        let r = pm.run(&mut relu()).unwrap();
        assert_eq!(r.passes.len(), 3);
        assert_eq!(r.stop, StopReason::StepLimit);
    }

    #[test]
    fn bad_pipelines_name_the_problem() {
        let e = Pipeline::parse("fold,nope").unwrap_err().to_string();
        assert!(
            e.contains("unknown pass 'nope'") && e.contains("dce"),
            "{e}"
        );
        let e = Pipeline::parse("(fold,dce").unwrap_err().to_string();
        assert!(e.contains("unbalanced '('"), "{e}");
        let e = Pipeline::parse("fold;dce").unwrap_err().to_string();
        assert!(e.contains("unexpected character ';'"), "{e}");
    }
}
