//! The GPU kernel for ConvTranspose (`kernels/conv_transpose.wgsl`), checked
//! against the reference interpreter on small shapes: 1-D to 3-D, strides,
//! dilations, pads, output_padding, groups, bias, auto_pad and output_shape.
//!
//! Every case first lowers its node and validates the generated shader with naga
//! (no GPU needed); then, when a device is found (`modc::runtime::test_device`,
//! which fails instead of skipping under `MODC_REQUIRE_GPU=1`), runs the kernel
//! and compares with the interpreter's outputs.

use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, NodeKernels, TensorDesc};
use modc::{Interpreter, RtValue, TensorValue};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
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

fn f32s(shape: &[usize], seed: u64) -> TensorValue {
    TensorValue::from_f32(shape, values(shape.iter().product(), seed))
}

fn type_text(t: &TensorValue) -> String {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype().text_name(), dims.join(","))
}

fn validate(label: &str, wgsl: &str) {
    let module = naga::front::wgsl::parse_str(wgsl).unwrap_or_else(|e| {
        panic!(
            "shader {label} does not parse:\n{}\n{wgsl}",
            e.emit_to_string(wgsl)
        )
    });
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| {
        panic!(
            "shader {label} is invalid:\n{}\n{wgsl}",
            e.emit_to_string(wgsl)
        )
    });
}

fn validate_all(k: &NodeKernels) {
    for d in &k.dispatches {
        validate(&d.label, &d.wgsl);
    }
}

/// Max |gpu - cpu| allowed: `atol + rtol * |cpu|`; NaNs must match.
fn assert_close(what: &str, got: &TensorValue, want: &TensorValue, rtol: f64, atol: f64) {
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
fn check(op: &str, attrs: &str, inputs: &[Option<TensorValue>], n_out: usize) -> Vec<String> {
    check_opset(op, attrs, inputs, n_out, 19)
}

fn check_opset(
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

/// `check` over x, w and optionally a bias, expecting the one gather dispatch.
fn ct(attrs: &str, x: &[usize], w: &[usize], bias: bool, seed: u64) {
    let mut inputs = vec![Some(f32s(x, seed)), Some(f32s(w, seed + 1))];
    if bias {
        inputs.push(Some(f32s(&[w[1] * group_of(attrs)], seed + 2)));
    }
    let labels = check("ConvTranspose", attrs, &inputs, 1);
    assert_eq!(labels, ["conv_transpose"], "{attrs}");
}

fn group_of(attrs: &str) -> usize {
    attrs
        .split("group=")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .unwrap_or(1)
}

#[test]
fn conv_transpose_2d() {
    for a in [
        "",
        "strides=[2, 2]",
        "strides=[2, 2], pads=[1, 1, 1, 1]",
        "strides=[3, 2], pads=[1, 0, 2, 1], output_padding=[1, 1]",
        "dilations=[2, 1], pads=[1, 1, 0, 2]",
        "strides=[2, 2], dilations=[2, 2], output_padding=[1, 0]",
        "auto_pad=\"SAME_UPPER\", strides=[2, 2]",
        "auto_pad=\"SAME_LOWER\", strides=[2, 3]",
        "auto_pad=\"VALID\", strides=[2, 1]",
        "strides=[2, 2], output_shape=[10, 8]",
        "strides=[3, 2], output_shape=[1, 4, 15, 11]",
        "strides=[2, 2], pads=[1, 1, 0, 0], output_shape=[12, 7]",
        "auto_pad=\"SAME_UPPER\", strides=[2, 2], output_shape=[9, 9]",
        "auto_pad=\"SAME_LOWER\", strides=[2, 2], output_shape=[9, 9]",
        "auto_pad=\"VALID\", strides=[2, 2], output_shape=[10, 10]",
        "kernel_shape=[3, 3], strides=[2, 2]",
    ] {
        ct(a, &[2, 3, 5, 4], &[3, 4, 3, 3], true, 1);
        ct(a, &[2, 3, 5, 4], &[3, 4, 3, 3], false, 4);
    }
}

#[test]
fn conv_transpose_groups() {
    ct(
        "group=2, strides=[2, 2], pads=[1, 1, 1, 1]",
        &[1, 4, 6, 5],
        &[4, 3, 3, 3],
        true,
        7,
    );
    ct(
        "group=3, strides=[2, 1]",
        &[2, 6, 4, 4],
        &[6, 1, 2, 3],
        true,
        8,
    );
    // Depthwise (as in a learned upsampling).
    ct(
        "group=4, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]",
        &[1, 4, 5, 5],
        &[4, 1, 4, 4],
        false,
        9,
    );
}

#[test]
fn conv_transpose_1d_3d() {
    for a in [
        "",
        "strides=[3], pads=[1, 2]",
        "strides=[2], dilations=[3], output_padding=[1]",
        "auto_pad=\"SAME_UPPER\", strides=[2]",
        "group=2, strides=[2]",
    ] {
        ct(a, &[2, 4, 7], &[4, 3, 4], true, 10);
    }
    for a in [
        "",
        "strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1]",
        "strides=[1, 2, 2], dilations=[2, 1, 1], output_padding=[0, 1, 1]",
        "group=2, strides=[2, 2, 2]",
    ] {
        ct(a, &[1, 2, 3, 4, 3], &[2, 3, 2, 3, 2], true, 11);
    }
}

#[test]
fn conv_transpose_large_channels() {
    // Many channels and a grid of several workgroups, as in a detection head.
    ct(
        "strides=[2, 2]",
        &[1, 24, 12, 40],
        &[24, 24, 2, 2],
        true,
        12,
    );
    ct(
        "strides=[2, 2], pads=[1, 1, 1, 1]",
        &[1, 16, 24, 80],
        &[16, 8, 4, 4],
        true,
        13,
    );
}

#[test]
fn conv_transpose_unsupported() {
    // f64 is not lowered.
    let x = TensorValue::F64(ndarray::ArrayD::zeros(vec![1, 1, 3, 3]));
    let w = TensorValue::F64(ndarray::ArrayD::zeros(vec![1, 1, 2, 2]));
    let model = modc::parse_model(
        "opset _=19\ngraph @g(%x: f64[1,1,3,3], %w: f64[1,1,2,2]) -> (%y) {\n  %y = ConvTranspose(%x, %w)\n  return %y\n}\n",
    )
    .unwrap();
    let (_, node) = model.graph.nodes().next().unwrap();
    let info = NodeInfo {
        node,
        opset: 19,
        inputs: vec![
            Some(TensorDesc::new(x.dtype(), x.shape())),
            Some(TensorDesc::new(w.dtype(), w.shape())),
        ],
        outputs: vec![TensorDesc::new(x.dtype(), &[1, 1, 4, 4])],
        consts: vec![None, None],
        limits: DeviceLimits::default(),
    };
    assert!(matches!(lower(&info), Lowering::Unsupported(_)));
}
