//! Shared by the one-node GPU kernel tests (`gpu_kernels.rs`, `gpu_resize.rs`):
//! a case (op, opset, attributes, inputs), its one-node model, the interpreter's
//! outputs, lowering with naga validation, and the comparison on a device
//! (exact for integers, rtol 1e-4 / atol 1e-5 for floats).
#![allow(dead_code)]

use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::{Attr, AttrValue, Graph, Interpreter, Model, Node, RtValue, Shape, TensorValue, Type};

/// A one-node case.
pub struct Case {
    pub op: &'static str,
    pub opset: i64,
    pub attrs: Vec<Attr>,
    pub inputs: Vec<Option<TensorValue>>,
    pub outputs: usize,
}

pub fn case(op: &'static str, opset: i64, inputs: Vec<Option<TensorValue>>) -> Case {
    Case {
        op,
        opset,
        attrs: vec![],
        inputs,
        outputs: 1,
    }
}

impl Case {
    pub fn int(mut self, name: &str, v: i64) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Int(v)));
        self
    }
    pub fn ints(mut self, name: &str, v: &[i64]) -> Case {
        self.attrs
            .push(Attr::new(name, AttrValue::Ints(v.to_vec())));
        self
    }
    pub fn float(mut self, name: &str, v: f32) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Float(v)));
        self
    }
    pub fn floats_attr(mut self, name: &str, v: &[f32]) -> Case {
        self.attrs
            .push(Attr::new(name, AttrValue::Floats(v.to_vec())));
        self
    }
    pub fn string(mut self, name: &str, v: &str) -> Case {
        self.attrs.push(Attr::new(
            name,
            AttrValue::String(v.as_bytes().to_vec().into()),
        ));
        self
    }
    pub fn tensor_attr(mut self, name: &str, t: modc::Tensor) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Tensor(t)));
        self
    }
    pub fn outputs(mut self, n: usize) -> Case {
        self.outputs = n;
        self
    }
}

/// Deterministic values in [-2, 2) with a few repeats (ties for ArgMax).
pub fn data(shape: &[usize], seed: u32) -> TensorValue {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let v = (0..n)
        .map(|_| {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            ((s >> 8) % 64) as f32 / 16.0 - 2.0
        })
        .collect();
    TensorValue::from_f32(shape, v)
}

pub fn positive(shape: &[usize], seed: u32) -> TensorValue {
    match data(shape, seed) {
        TensorValue::F32(a) => TensorValue::F32(a.mapv(|v| v.abs() + 0.25)),
        t => t,
    }
}

pub fn ints(shape: &[usize], v: Vec<i64>) -> TensorValue {
    TensorValue::from_i64(shape, v)
}

pub fn i64s(v: &[i64]) -> Option<TensorValue> {
    Some(ints(&[v.len()], v.to_vec()))
}

pub fn int_data(shape: &[usize], seed: u32) -> TensorValue {
    let n: usize = shape.iter().product();
    let mut s = seed.wrapping_add(7);
    ints(
        shape,
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 8) % 21) as i64 - 10
            })
            .collect(),
    )
}

/// The one-node model of a case and the node itself.
pub fn model(c: &Case) -> (Model, Node) {
    let mut g = Graph::new("main");
    let ins: Vec<_> = c
        .inputs
        .iter()
        .enumerate()
        .map(|(k, t)| {
            t.as_ref().map(|t| {
                let dims: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
                g.add_input(
                    &format!("in{k}"),
                    Some(Type::tensor(t.dtype(), Shape::fixed(&dims))),
                )
            })
        })
        .collect();
    let names: Vec<String> = (0..c.outputs).map(|k| format!("out{k}")).collect();
    let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
    let (id, outs) = g.add_node(c.op, "", ins, &names, c.attrs.clone());
    g.outputs.extend(outs);
    let node = g.node(id).clone();
    (Model::new(g, &[("", c.opset)]), node)
}

/// The interpreter's outputs.
pub fn reference(c: &Case) -> Vec<TensorValue> {
    let (m, _) = model(c);
    let inputs = c
        .inputs
        .iter()
        .enumerate()
        .filter_map(|(k, t)| t.clone().map(|t| (format!("in{k}"), RtValue::Tensor(t))))
        .collect();
    Interpreter::new(&m)
        .run(inputs)
        .unwrap_or_else(|e| panic!("{}: interpreter: {e}", c.op))
        .into_iter()
        .map(|(_, v)| v.into_tensor().expect("a tensor output"))
        .collect()
}

/// Validates a WGSL module with naga (`modc::codegen::validate`), panicking with
/// the diagnostics.
pub fn validate(label: &str, wgsl: &str) {
    if let Err(e) = modc::codegen::validate::validate(wgsl) {
        panic!("shader '{label}' is invalid:\n{e}\n{wgsl}");
    }
}

/// Lowers the case with every input constant, validates its shaders, and returns
/// the lowering.
pub fn lowered(c: &Case, outs: &[TensorDesc], limits: DeviceLimits) -> Lowering {
    let (_, node) = model(c);
    let info = NodeInfo {
        node: &node,
        opset: c.opset,
        inputs: c
            .inputs
            .iter()
            .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
            .collect(),
        outputs: outs.to_vec(),
        consts: c.inputs.iter().map(|t| t.as_ref()).collect(),
        limits,
    };
    let l = lower(&info);
    if let Lowering::Kernels(k) = &l {
        for d in &k.dispatches {
            validate(&d.label, &d.wgsl);
            assert!(
                d.workgroups
                    .iter()
                    .all(|&w| w <= limits.max_workgroups_per_dim),
                "{}: {:?} exceeds the workgroup limit",
                d.label,
                d.workgroups
            );
        }
    }
    l
}

pub fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 + 1e-4 * b.abs()
}

pub fn compare(what: &str, got: &TensorValue, want: &TensorValue) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    assert_eq!(got.dtype(), want.dtype(), "{what}: element type");
    match (got, want) {
        (TensorValue::F32(g), TensorValue::F32(w)) => {
            for (i, (&a, &b)) in g.iter().zip(w.iter()).enumerate() {
                assert!(close(a, b), "{what}: element {i}: got {a}, want {b}");
            }
        }
        _ => {
            let g = got.to_i64_vec().expect("integer output");
            let w = want.to_i64_vec().expect("integer output");
            assert_eq!(g, w, "{what}");
        }
    }
}

/// Runs a case: lowering, naga validation, and on a device the comparison.
/// Returns the labels of the dispatches (`None` when the node is an alias).
pub fn check_with(c: Case, limits: DeviceLimits) -> Option<Vec<String>> {
    let want = reference(&c);
    let descs: Vec<TensorDesc> = want
        .iter()
        .map(|t| TensorDesc::new(t.dtype(), t.shape()))
        .collect();
    let what = format!(
        "{} (opset {}, inputs {:?}, attrs {:?})",
        c.op,
        c.opset,
        c.inputs
            .iter()
            .map(|t| t.as_ref().map(|t| t.shape().to_vec()))
            .collect::<Vec<_>>(),
        c.attrs
            .iter()
            .map(|a| (a.name.as_str(), &a.value))
            .collect::<Vec<_>>()
    );
    let labels = match lowered(&c, &descs, limits) {
        Lowering::Unsupported(r) => panic!("{what}: no kernel: {r}"),
        Lowering::Kernels(k) => Some(k.dispatches.iter().map(|d| d.label.clone()).collect()),
        Lowering::Alias => None,
    };
    let Some(gpu) = modc::runtime::test_device() else {
        return labels;
    };
    let (_, node) = model(&c);
    let got = if limits == DeviceLimits::default() {
        modc::runtime::run_node(gpu, &node, c.opset, &c.inputs, &descs)
    } else {
        let info_limits = limits;
        let info = NodeInfo {
            node: &node,
            opset: c.opset,
            inputs: c
                .inputs
                .iter()
                .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
                .collect(),
            outputs: descs.clone(),
            consts: c.inputs.iter().map(|t| t.as_ref()).collect(),
            limits: info_limits,
        };
        match lower(&info) {
            Lowering::Kernels(k) => gpu.run_kernels(&k, &c.inputs, &descs),
            other => panic!("{what}: {other:?}"),
        }
    }
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        compare(&format!("{what} output {k}"), g, w);
    }
    labels
}
