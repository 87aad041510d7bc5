//! The ONNX backend test harness: runs a test case (a model plus input and expected
//! output protobufs) through the interpreter and compares with ONNX's tolerances.
//!
//! - Inputs and outputs are `TensorProto`, `SequenceProto` or `OptionalProto` files;
//!   the model's declared type of each input or output tells which.
//! - Floats match when `|actual - expected| <= atol + rtol * |expected|` (ONNX's
//!   `rtol = 1e-3`, `atol = 1e-7`); NaN matches only NaN, infinities match exactly;
//!   integers, booleans and strings match exactly; dtype and shape must be equal.
//! - A case is *unsupported* when it needs an op, attribute or element type the
//!   interpreter does not implement, and *failed* when it runs and disagrees (or
//!   errors on valid input). A kernel panic is caught and counted as a failure.
//!
//! ```
//! use modc::conformance::{compare, Tolerance};
//! use modc::{RtValue, TensorValue};
//! let a = RtValue::Tensor(TensorValue::from_f32(&[2], vec![1.0, f32::NAN]));
//! let b = RtValue::Tensor(TensorValue::from_f32(&[2], vec![1.0005, f32::NAN]));
//! assert!(compare(&a, &b, Tolerance::ONNX).is_ok());
//! ```

use crate::interp::value::{RtValue, TensorValue};
use crate::interp::{InterpError, Interpreter};
use crate::ir::types::{Type, TypeKind};
use crate::onnx::proto;
use crate::{load, tensor_from_proto, LoadPolicy, Model};
use prost::Message;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Relative and absolute tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// The tolerance of ONNX's backend tests.
    pub const ONNX: Tolerance = Tolerance {
        rtol: 1e-3,
        atol: 1e-7,
    };
}

/// How a case ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Pass { max_abs_diff: f64 },
    Fail(String),
    Unsupported(String),
}

/// One case's result.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// `folder/case`, e.g. `node/test_abs`.
    pub name: String,
    /// Op types in the model (subgraphs included), `domain::op` outside ONNX.
    pub ops: BTreeSet<String>,
    pub outcome: Outcome,
}

/// Reads a value file, decoding it as the declared type says.
pub fn read_value(path: &Path, declared: Option<&Type>) -> Result<RtValue, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let kind = declared.map(|t| &t.kind);
    match kind {
        Some(TypeKind::Sequence(_)) => {
            let s = proto::SequenceProto::decode(bytes.as_slice())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            sequence_value(s, path, base)
        }
        Some(TypeKind::Optional(_)) => {
            let o = proto::OptionalProto::decode(bytes.as_slice())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            optional_value(o, path, base)
        }
        _ => {
            let t = proto::TensorProto::decode(bytes.as_slice())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tensor_value(t, path, base)
        }
    }
}

fn tensor_value(t: proto::TensorProto, path: &Path, base: &Path) -> Result<RtValue, String> {
    let t = tensor_from_proto(t, path, base).map_err(|e| e.to_string())?;
    TensorValue::from_tensor(&t)
        .map(RtValue::Tensor)
        .map_err(|e| e.to_string())
}

fn sequence_value(s: proto::SequenceProto, path: &Path, base: &Path) -> Result<RtValue, String> {
    let mut items = Vec::new();
    for t in s.tensor_values {
        items.push(tensor_value(t, path, base)?);
    }
    for q in s.sequence_values {
        items.push(sequence_value(q, path, base)?);
    }
    for o in s.optional_values {
        items.push(optional_value(o, path, base)?);
    }
    if !s.map_values.is_empty() || !s.sparse_tensor_values.is_empty() {
        return Err("sequences of maps or sparse tensors are not supported".into());
    }
    Ok(RtValue::Sequence(items))
}

fn optional_value(o: proto::OptionalProto, path: &Path, base: &Path) -> Result<RtValue, String> {
    let inner = if let Some(t) = o.tensor_value {
        Some(tensor_value(t, path, base)?)
    } else if let Some(s) = o.sequence_value {
        Some(sequence_value(s, path, base)?)
    } else if let Some(q) = o.optional_value {
        Some(optional_value(*q, path, base)?)
    } else {
        None
    };
    Ok(RtValue::Optional(inner.map(Box::new)))
}

/// Compares `actual` with `expected`; returns the largest absolute difference.
pub fn compare(expected: &RtValue, actual: &RtValue, tol: Tolerance) -> Result<f64, String> {
    match (expected, actual) {
        (RtValue::Tensor(e), RtValue::Tensor(a)) => compare_tensors(e, a, tol),
        (RtValue::Sequence(e), RtValue::Sequence(a)) => {
            if e.len() != a.len() {
                return Err(format!(
                    "sequence of {} items, expected {}",
                    a.len(),
                    e.len()
                ));
            }
            let mut m: f64 = 0.0;
            for (i, (x, y)) in e.iter().zip(a).enumerate() {
                m = m.max(compare(x, y, tol).map_err(|s| format!("item {i}: {s}"))?);
            }
            Ok(m)
        }
        (RtValue::Optional(e), RtValue::Optional(a)) => match (e, a) {
            (None, None) => Ok(0.0),
            (Some(x), Some(y)) => compare(x, y, tol),
            _ => Err(format!(
                "optional is {}, expected {}",
                if a.is_some() { "set" } else { "empty" },
                if e.is_some() { "set" } else { "empty" }
            )),
        },
        // An optional holding a value compares equal to the bare value.
        (RtValue::Optional(Some(e)), a) => compare(e, a, tol),
        (e, RtValue::Optional(Some(a))) => compare(e, a, tol),
        _ => Err("the kind of value (tensor, sequence, optional) differs".into()),
    }
}

fn compare_tensors(e: &TensorValue, a: &TensorValue, tol: Tolerance) -> Result<f64, String> {
    if e.dtype() != a.dtype() {
        return Err(format!(
            "element type {}, expected {}",
            a.dtype(),
            e.dtype()
        ));
    }
    if e.shape() != a.shape() {
        return Err(format!("shape {:?}, expected {:?}", a.shape(), e.shape()));
    }
    match (e, a) {
        (TensorValue::Str(x), TensorValue::Str(y)) => {
            match x.iter().zip(y.iter()).position(|(p, q)| p != q) {
                None => Ok(0.0),
                Some(i) => Err(format!("string {i} differs")),
            }
        }
        (
            TensorValue::F32(_) | TensorValue::F64(_) | TensorValue::F16(_) | TensorValue::BF16(_),
            _,
        ) => {
            let (x, y) = (
                e.to_f64_vec().unwrap_or_default(),
                a.to_f64_vec().unwrap_or_default(),
            );
            let mut max: f64 = 0.0;
            for (i, (&p, &q)) in x.iter().zip(&y).enumerate() {
                let ok = if p.is_nan() || q.is_nan() {
                    p.is_nan() && q.is_nan()
                } else if p.is_infinite() || q.is_infinite() {
                    p == q
                } else {
                    let d = (p - q).abs();
                    max = max.max(d);
                    d <= tol.atol + tol.rtol * p.abs()
                };
                if !ok {
                    return Err(format!("element {i} is {q}, expected {p}"));
                }
            }
            Ok(max)
        }
        _ => {
            let (x, y) = (
                e.to_i64_vec().unwrap_or_default(),
                a.to_i64_vec().unwrap_or_default(),
            );
            match x.iter().zip(&y).position(|(p, q)| p != q) {
                None => Ok(0.0),
                Some(i) => Err(format!("element {i} is {}, expected {}", y[i], x[i])),
            }
        }
    }
}

/// Op types of a model, subgraphs and functions included.
pub fn model_ops(m: &Model) -> BTreeSet<String> {
    let mut h = std::collections::BTreeMap::new();
    m.graph.op_histogram(&mut h);
    h.into_keys().collect()
}

fn is_unsupported(e: &InterpError) -> bool {
    match e {
        InterpError::Unsupported { .. } => true,
        InterpError::Node { message, .. } | InterpError::Graph { message, .. } => {
            message.contains("not supported")
        }
        _ => false,
    }
}

fn run_catching(
    m: &Model,
    inputs: Vec<(String, RtValue)>,
) -> Result<Vec<(String, RtValue)>, Outcome> {
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Interpreter::new(m).run(inputs)
    }));
    match res {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if is_unsupported(&e) => Err(Outcome::Unsupported(e.to_string())),
        Ok(Err(e)) => Err(Outcome::Fail(e.to_string())),
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Err(Outcome::Fail(format!("panic: {msg}")))
        }
    }
}

/// Runs a backend case folder (`model.onnx` and `test_data_set_*`).
pub fn run_case_dir(dir: &Path, name: &str) -> CaseReport {
    let mut report = CaseReport {
        name: name.to_string(),
        ops: BTreeSet::new(),
        outcome: Outcome::Fail(String::new()),
    };
    let model = match load(dir.join("model.onnx"), &LoadPolicy::default()) {
        Ok(m) => m,
        Err(e) => {
            report.outcome = Outcome::Fail(format!("load: {e}"));
            return report;
        }
    };
    report.ops = model_ops(&model);
    report.outcome = run_sets(&model, dir);
    report
}

fn run_sets(model: &Model, dir: &Path) -> Outcome {
    let g = &model.graph;
    let mut sets: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.is_dir()
                        && p.file_name()
                            .is_some_and(|n| n.to_string_lossy().starts_with("test_data_set_"))
                })
                .collect()
        })
        .unwrap_or_default();
    sets.sort();
    if sets.is_empty() {
        return Outcome::Fail("no test_data_set_* folder".into());
    }
    // Graph inputs fed by the files: those without an initializer default.
    let fed: Vec<_> = g
        .inputs
        .iter()
        .filter(|&&i| g.value(i).init.is_none())
        .copied()
        .collect();
    let mut max = 0f64;
    for set in sets {
        let mut inputs = Vec::new();
        for (k, &id) in fed.iter().enumerate() {
            let p = set.join(format!("input_{k}.pb"));
            if !p.exists() {
                break;
            }
            let val = g.value(id);
            match read_value(&p, val.ty.as_ref()) {
                Ok(v) => inputs.push((val.name.clone(), v)),
                Err(e) if e.contains("not supported") => return Outcome::Unsupported(e),
                Err(e) => return Outcome::Fail(format!("input {k}: {e}")),
            }
        }
        let outs = match run_catching(model, inputs) {
            Ok(o) => o,
            Err(o) => return o,
        };
        for (k, (name, actual)) in outs.iter().enumerate() {
            let p = set.join(format!("output_{k}.pb"));
            if !p.exists() {
                continue;
            }
            let declared = g.outputs.get(k).and_then(|&o| g.value(o).ty.clone());
            let expected = match read_value(&p, declared.as_ref()) {
                Ok(v) => v,
                Err(e) if e.contains("not supported") => {
                    return Outcome::Unsupported(format!("output {k}: {e}"))
                }
                Err(e) => return Outcome::Fail(format!("output {k}: {e}")),
            };
            match compare(&expected, actual, Tolerance::ONNX) {
                Ok(d) => max = max.max(d),
                Err(e) => return Outcome::Fail(format!("output {k} '{name}': {e}")),
            }
        }
    }
    Outcome::Pass { max_abs_diff: max }
}

/// Runs a `light` model: the input is `arange(n) / n` in the input's shape, the
/// expected output is the `<model>_output_0.pb` beside it.
pub fn run_light(model_path: &Path, name: &str) -> CaseReport {
    let mut report = CaseReport {
        name: name.to_string(),
        ops: BTreeSet::new(),
        outcome: Outcome::Fail(String::new()),
    };
    let model = match load(model_path, &LoadPolicy::default()) {
        Ok(m) => m,
        Err(e) => {
            report.outcome = Outcome::Fail(format!("load: {e}"));
            return report;
        }
    };
    report.ops = model_ops(&model);
    let g = &model.graph;
    let Some(&input) = g.inputs.iter().find(|&&i| g.value(i).init.is_none()) else {
        report.outcome = Outcome::Fail("the model has no input".into());
        return report;
    };
    let shape: Option<Vec<usize>> = g
        .value(input)
        .ty
        .as_ref()
        .and_then(|t| t.as_tensor())
        .and_then(|(_, s)| {
            s.map(|s| {
                s.dims
                    .iter()
                    .map(|d| d.as_fixed().map(|v| v as usize))
                    .collect::<Option<Vec<_>>>()
            })
        })
        .flatten();
    let Some(shape) = shape else {
        report.outcome = Outcome::Fail("the input shape is not fully known".into());
        return report;
    };
    let n: usize = shape.iter().product();
    let x = TensorValue::from_f32(&shape, (0..n).map(|i| i as f32 / n as f32).collect());
    let outs = match run_catching(
        &model,
        vec![(g.value(input).name.clone(), RtValue::Tensor(x))],
    ) {
        Ok(o) => o,
        Err(o) => {
            report.outcome = o;
            return report;
        }
    };
    let stem = model_path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let expected_path = model_path.with_file_name(format!("{stem}_output_0.pb"));
    let declared = g.outputs.first().and_then(|&o| g.value(o).ty.clone());
    report.outcome = match (read_value(&expected_path, declared.as_ref()), outs.first()) {
        (Ok(e), Some((_, a))) => match compare(&e, a, Tolerance::ONNX) {
            Ok(d) => Outcome::Pass { max_abs_diff: d },
            Err(s) => Outcome::Fail(s),
        },
        (Err(e), _) => Outcome::Fail(e),
        (_, None) => Outcome::Fail("no output".into()),
    };
    report
}
