//! Every shader modc generates for the ONNX backend `node` cases and the real
//! models is validated with naga (no GPU needed), and checked against its
//! dispatch (entry point, bindings, device limits).
//!
//! Node cases: the shapes of test_data_set_0's inputs are planned with
//! `plan::lower`; where a shape depends on the data (NonZero, ...), the case is
//! run on the interpreter and every node is lowered with the traced shapes.
//! Real models: planned with the inputs `scripts/real_models.py` feeds them.
//! The test prints how many shaders and op types it validated and fails on any
//! invalid shader, naming the case, the node and the kernel label.
//! `MODC_REQUIRE_TESTDATA=1` makes missing test data an error.

mod common;
use common::testdata;

use modc::codegen::spec::{DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::codegen::validate::validate_dispatch;
use modc::{Graph, Initializer, Model, RtValue, TensorValue, ValueDef, ValueId};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

#[derive(Default)]
struct Tally {
    shaders: usize,
    /// Distinct shader texts (the same kernel serves many nodes).
    distinct: BTreeSet<u64>,
    /// Op type → number of validated shaders.
    ops: BTreeMap<String, usize>,
    nodes_lowered: usize,
    nodes_unsupported: usize,
    failures: Vec<String>,
    skipped: Vec<String>,
}

impl Tally {
    fn check(&mut self, case: &str, node: &str, op: &str, lowering: &Lowering) {
        let limits = DeviceLimits::default();
        match lowering {
            Lowering::Kernels(k) => {
                self.nodes_lowered += 1;
                for d in &k.dispatches {
                    use std::hash::{Hash, Hasher};
                    let mut h = std::collections::hash_map::DefaultHasher::new();
                    d.wgsl.hash(&mut h);
                    self.distinct.insert(h.finish());
                    self.shaders += 1;
                    *self.ops.entry(op.to_string()).or_default() += 1;
                    if let Err(e) = validate_dispatch(d, &limits) {
                        self.failures.push(format!(
                            "{case}: node '{node}' ({op}), kernel '{}':\n{e}",
                            d.label
                        ));
                    }
                }
            }
            Lowering::Alias => self.nodes_lowered += 1,
            Lowering::Unsupported(_) => self.nodes_unsupported += 1,
        }
    }
}

fn load(path: &Path) -> Option<Model> {
    modc::load(path, &modc::LoadPolicy::default()).ok()
}

/// The values of test_data_set_0's inputs, by input name.
fn case_inputs(dir: &Path, m: &Model) -> Option<Vec<(String, RtValue)>> {
    let g = &m.graph;
    let fed: Vec<ValueId> = g
        .inputs
        .iter()
        .copied()
        .filter(|&i| g.value(i).init.is_none())
        .collect();
    let mut out = vec![];
    for (k, &id) in fed.iter().enumerate() {
        let p = dir.join(format!("test_data_set_0/input_{k}.pb"));
        let v = modc::conformance::read_value(&p, g.value(id).ty.as_ref()).ok()?;
        out.push((g.value(id).name.clone(), v));
    }
    Some(out)
}

/// The value of an initializer or a Constant node's output.
fn constant(g: &Graph, v: ValueId, opset: i64) -> Option<TensorValue> {
    let val = g.value(v);
    match (&val.def, &val.init) {
        (ValueDef::Const, Some(Initializer::Dense(t))) => TensorValue::from_tensor(t).ok(),
        (ValueDef::Node { node, .. }, _) if g.node(*node).op_type == "Constant" => {
            let node = g.node(*node);
            let k = modc::OpRegistry::standard().get("", "Constant")?;
            k(&modc::OpCtx { node, opset }, &[])
                .ok()?
                .into_iter()
                .next()?
                .into_tensor()
        }
        _ => None,
    }
}

/// Lowers every node of the main graph with the shapes of an interpreter run.
fn lower_traced(case: &str, m: &Model, inputs: Vec<(String, RtValue)>, tally: &mut Tally) {
    let given: HashMap<String, TensorDesc> = inputs
        .iter()
        .filter_map(|(n, v)| {
            v.as_tensor()
                .map(|t| (n.clone(), TensorDesc::new(t.dtype(), t.shape())))
        })
        .collect();
    let Ok((_, trace)) = modc::Interpreter::run_traced(m, inputs) else {
        tally
            .skipped
            .push(format!("{case}: the interpreter cannot run it"));
        return;
    };
    let g = &m.graph;
    let desc = |v: ValueId| -> Option<TensorDesc> {
        let name = &g.value(v).name;
        if let Some(d) = given.get(name) {
            return Some(d.clone());
        }
        if let Some((dt, s)) = trace.get(name) {
            return Some(TensorDesc::new(*dt, s));
        }
        match &g.value(v).init {
            Some(Initializer::Dense(t)) => {
                let dims: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
                Some(TensorDesc::new(t.dtype, &dims))
            }
            _ => None,
        }
    };
    let Ok(order) = g.topo_order() else { return };
    for n in order {
        let node = g.node(n);
        if node.op_type == "Constant" {
            continue;
        }
        let opset = m.opset_version(&node.domain).unwrap_or(1);
        let inputs: Option<Vec<Option<TensorDesc>>> = node
            .inputs
            .iter()
            .map(|i| match i {
                Some(v) => desc(*v).map(Some),
                None => Some(None),
            })
            .collect();
        let outputs: Option<Vec<TensorDesc>> = node
            .outputs
            .iter()
            .map(|o| match o {
                Some(v) => desc(*v),
                None => Some(TensorDesc::new(modc::DType::F32, &[0])),
            })
            .collect();
        let (Some(inputs), Some(outputs)) = (inputs, outputs) else {
            tally.nodes_unsupported += 1;
            continue;
        };
        let consts: Vec<Option<TensorValue>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|v| constant(g, v, opset)))
            .collect();
        let info = NodeInfo {
            node,
            opset,
            inputs,
            outputs,
            consts: consts.iter().map(|c| c.as_ref()).collect(),
            limits: DeviceLimits::default(),
        };
        let name = node.name.clone().unwrap_or_else(|| format!("#{}", n.0));
        let lowering = modc::codegen::lower(&info);
        tally.check(case, &name, &node.op_type, &lowering);
    }
}

fn plan_and_check(
    case: &str,
    m: &Model,
    shapes: &HashMap<String, Vec<usize>>,
    tally: &mut Tally,
) -> Result<(), String> {
    let plan = modc::plan::lower(m, shapes, DeviceLimits::default()).map_err(|e| e.to_string())?;
    for s in &plan.steps {
        tally.check(case, &s.name, &s.op, &s.lowering);
    }
    Ok(())
}

fn report(what: &str, t: &Tally) {
    eprintln!(
        "{what}: validated {} shaders ({} distinct) for {} op types; {} nodes lowered, {} on the CPU; {} cases skipped",
        t.shaders,
        t.distinct.len(),
        t.ops.len(),
        t.nodes_lowered,
        t.nodes_unsupported,
        t.skipped.len()
    );
    eprintln!(
        "  ops: {}",
        t.ops
            .iter()
            .map(|(k, v)| format!("{k}({v})"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for s in t.skipped.iter().take(20) {
        eprintln!("  skipped {s}");
    }
    assert!(
        t.failures.is_empty(),
        "{} invalid shaders:\n{}",
        t.failures.len(),
        t.failures.join("\n\n")
    );
}

#[test]
fn backend_node_cases() {
    let Some(data) = testdata() else { return };
    let filter = std::env::var("MODC_CONFORMANCE_FILTER").ok();
    let mut cases: Vec<_> = std::fs::read_dir(data.join("onnx-backend/node"))
        .expect("node cases")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .collect();
    cases.sort();
    let mut tally = Tally::default();
    for dir in cases {
        let case = dir.file_name().unwrap().to_string_lossy().to_string();
        if filter.as_ref().is_some_and(|f| !case.contains(f.as_str())) {
            continue;
        }
        let Some(m) = load(&dir.join("model.onnx")) else {
            tally.skipped.push(format!("{case}: does not load"));
            continue;
        };
        let Some(inputs) = case_inputs(&dir, &m) else {
            tally
                .skipped
                .push(format!("{case}: inputs are not all readable"));
            continue;
        };
        let shapes: Option<HashMap<String, Vec<usize>>> = inputs
            .iter()
            .map(|(n, v)| v.as_tensor().map(|t| (n.clone(), t.shape().to_vec())))
            .collect();
        let planned = shapes.is_some_and(|s| plan_and_check(&case, &m, &s, &mut tally).is_ok());
        if !planned {
            lower_traced(&case, &m, inputs, &mut tally);
        }
    }
    report("backend node cases", &tally);
}

/// The input shapes `scripts/real_models.py` feeds each real model.
fn real_model_shapes(path: &Path, m: &Model) -> HashMap<String, Vec<usize>> {
    let name = path.to_string_lossy();
    let mut dims = HashMap::new();
    let mut given = HashMap::new();
    if name.contains("rapidocr") {
        let shape = if name.contains("det") {
            vec![1, 3, 96, 320]
        } else if name.contains("rec") {
            vec![1, 3, 48, 320]
        } else {
            vec![1, 3, 48, 192]
        };
        given.insert("x".to_string(), shape);
    } else if name.contains("silero") {
        dims.insert("batch".to_string(), 1);
    }
    let mut shapes = modc::plan::shapes::input_shapes(m, &dims, &given).expect("input shapes");
    // silero: one 512-sample frame where the length is symbolic (not 576-wide models).
    if let Some(s) = shapes.get_mut("input").filter(|s| s.as_slice() == [1, 1]) {
        *s = vec![1, 512];
    }
    shapes
}

#[test]
fn real_models() {
    let Some(data) = testdata() else { return };
    let mut models = vec![];
    for sub in ["rapidocr", "silero-vad", "magika"] {
        if let Ok(rd) = std::fs::read_dir(data.join("models").join(sub)) {
            models.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "onnx")),
            );
        }
    }
    models.sort();
    assert!(!models.is_empty(), "no real models in {}", data.display());
    let mut tally = Tally::default();
    for path in models {
        let case = path.file_name().unwrap().to_string_lossy().to_string();
        let m = load(&path).unwrap_or_else(|| panic!("{case} does not load"));
        let shapes = real_model_shapes(&path, &m);
        if let Err(e) = plan_and_check(&case, &m, &shapes, &mut tally) {
            tally.skipped.push(format!("{case}: {e}"));
        }
    }
    report("real models", &tally);
}
