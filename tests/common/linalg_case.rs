//! Shared by the linalg GPU tests (`gpu_linalg.rs`, `gpu_conv_transpose.rs`):
//! deterministic operands, naga validation, and `check`: one node, lowered,
//! validated, and on a device run and compared with the interpreter.
#![allow(dead_code)]

use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, NodeKernels, TensorDesc};
use modc::{Interpreter, RtValue, TensorValue};

/// Deterministic values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

pub fn f32s(shape: &[usize], seed: u64) -> TensorValue {
    TensorValue::from_f32(shape, values(shape.iter().product(), seed))
}

pub fn i32s(shape: &[usize], seed: u64) -> TensorValue {
    let v: Vec<i32> = values(shape.iter().product(), seed)
        .iter()
        .map(|x| (x * 20.0) as i32)
        .collect();
    TensorValue::I32(ndarray::ArrayD::from_shape_vec(shape.to_vec(), v).unwrap())
}

pub fn type_text(t: &TensorValue) -> String {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype().text_name(), dims.join(","))
}

/// Validates a WGSL module with naga (`modc::codegen::validate`), panicking with
/// the diagnostics.
pub fn validate(label: &str, wgsl: &str) {
    if let Err(e) = modc::codegen::validate::validate(wgsl) {
        panic!("shader '{label}' is invalid:\n{e}\n{wgsl}");
    }
}

pub fn validate_all(k: &NodeKernels) {
    for d in &k.dispatches {
        validate(&d.label, &d.wgsl);
    }
}

/// Max |gpu - cpu| allowed: `atol + rtol * |cpu|`; NaNs must match.
pub fn assert_close(what: &str, got: &TensorValue, want: &TensorValue, rtol: f64, atol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(got.dtype(), want.dtype(), "{what}: types");
    let as_f64 = |t: &TensorValue| -> Vec<f64> {
        match t {
            TensorValue::F32(a) => a.iter().map(|&v| v as f64).collect(),
            TensorValue::I32(a) => a.iter().map(|&v| v as f64).collect(),
            TensorValue::I64(a) => a.iter().map(|&v| v as f64).collect(),
            TensorValue::U8(a) => a.iter().map(|&v| v as f64).collect(),
            o => panic!("{what}: unexpected type {:?}", o.dtype()),
        }
    };
    let (g, w) = (as_f64(got), as_f64(want));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= atol + rtol * b.abs();
        assert!(ok, "{what}: element {i}: gpu {a} vs interpreter {b}");
    }
}

/// One node `op` with `attrs` over the given inputs (`None` = empty slot): its
/// shaders are validated, and on a device its outputs match the interpreter's.
/// Returns the labels of the dispatches.
pub fn check(op: &str, attrs: &str, inputs: &[Option<TensorValue>], n_out: usize) -> Vec<String> {
    check_opset(op, attrs, inputs, n_out, 19)
}

pub fn check_opset(
    op: &str,
    attrs: &str,
    inputs: &[Option<TensorValue>],
    n_out: usize,
    opset: i64,
) -> Vec<String> {
    let params: Vec<String> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.as_ref().map(|t| format!("%i{i}: {}", type_text(t))))
        .collect();
    let args: Vec<String> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if t.is_some() {
                format!("%i{i}")
            } else {
                "_".into()
            }
        })
        .collect();
    let outs: Vec<String> = (0..n_out).map(|i| format!("%o{i}")).collect();
    let attrs = if attrs.is_empty() {
        String::new()
    } else {
        format!(" {{{attrs}}}")
    };
    let text = format!(
        "opset _={opset}\ngraph @g({}) -> ({}) {{\n  {} = {op}({}){attrs}\n  return {}\n}}\n",
        params.join(", "),
        outs.join(", "),
        outs.join(", "),
        args.join(", "),
        outs.join(", ")
    );
    let model = modc::parse_model(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let feeds: Vec<(String, RtValue)> = inputs
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.clone().map(|t| (format!("i{i}"), RtValue::Tensor(t))))
        .collect();
    let want: Vec<TensorValue> = Interpreter::new(&model)
        .run(feeds)
        .unwrap_or_else(|e| panic!("interpreter: {e}\n{text}"))
        .into_iter()
        .map(|(_, v)| match v {
            RtValue::Tensor(t) => t,
            o => panic!("not a tensor: {o:?}"),
        })
        .collect();
    let outputs: Vec<TensorDesc> = want
        .iter()
        .map(|t| TensorDesc::new(t.dtype(), t.shape()))
        .collect();
    let (_, node) = model.graph.nodes().next().unwrap();
    let info = NodeInfo {
        node,
        opset,
        inputs: inputs
            .iter()
            .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
            .collect(),
        outputs: outputs.clone(),
        consts: inputs.iter().map(|_| None).collect(),
        limits: DeviceLimits::default(),
    };
    let kernels = match lower(&info) {
        Lowering::Kernels(k) => k,
        other => panic!("{op} {attrs}: not lowered to kernels: {other:?}\n{text}"),
    };
    validate_all(&kernels);
    let labels = kernels.dispatches.iter().map(|d| d.label.clone()).collect();
    if let Some(gpu) = modc::runtime::test_device() {
        let got = modc::runtime::run_node(gpu, node, opset, inputs, &outputs)
            .unwrap_or_else(|e| panic!("{op} {attrs}: {e}\n{text}"));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{op}{attrs} output {i}"), g, w, 1e-4, 1e-5);
        }
    }
    labels
}
