//! Resize and Upsample kernels (`codegen/data/resize.rs`) against the reference
//! interpreter: nearest in every nearest_mode and coordinate mode, linear (2-D
//! and N-D), scales or sizes, axes and keep_aspect_ratio_policy, integer data,
//! Resize-10 and Upsample. Shaders are validated with naga; where a device is
//! found the outputs are compared (exactly for integers, rtol 1e-4 / atol 1e-5
//! for floats). Modes without a kernel must lower to `Unsupported`.

use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::{
    Attr, AttrValue, DType, Graph, Interpreter, Model, Node, RtValue, Shape, TensorValue, Type,
};

/// A one-node case.
struct Case {
    op: &'static str,
    opset: i64,
    attrs: Vec<Attr>,
    inputs: Vec<Option<TensorValue>>,
    outputs: usize,
}

fn case(op: &'static str, opset: i64, inputs: Vec<Option<TensorValue>>) -> Case {
    Case {
        op,
        opset,
        attrs: vec![],
        inputs,
        outputs: 1,
    }
}

impl Case {
    fn int(mut self, name: &str, v: i64) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Int(v)));
        self
    }
    fn ints(mut self, name: &str, v: &[i64]) -> Case {
        self.attrs
            .push(Attr::new(name, AttrValue::Ints(v.to_vec())));
        self
    }
    fn floats_attr(mut self, name: &str, v: &[f32]) -> Case {
        self.attrs
            .push(Attr::new(name, AttrValue::Floats(v.to_vec())));
        self
    }
    fn string(mut self, name: &str, v: &str) -> Case {
        self.attrs.push(Attr::new(
            name,
            AttrValue::String(v.as_bytes().to_vec().into()),
        ));
        self
    }
}

/// Deterministic values in [-2, 2) with a few repeats (ties for ArgMax).
fn data(shape: &[usize], seed: u32) -> TensorValue {
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

fn ints(shape: &[usize], v: Vec<i64>) -> TensorValue {
    TensorValue::from_i64(shape, v)
}

/// The one-node model of a case and the node itself.
fn model(c: &Case) -> (Model, Node) {
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
fn reference(c: &Case) -> Vec<TensorValue> {
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

/// Validates a WGSL module with naga, panicking with the diagnostics.
fn validate(label: &str, wgsl: &str) {
    let module = naga::front::wgsl::parse_str(wgsl).unwrap_or_else(|e| {
        panic!(
            "shader '{label}' does not parse:\n{}\n{wgsl}",
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
            "shader '{label}' is invalid:\n{}\n{wgsl}",
            e.emit_to_string(wgsl)
        )
    });
}

/// Lowers the case with every input constant, validates its shaders, and returns
/// the lowering.
fn lowered(c: &Case, outs: &[TensorDesc], limits: DeviceLimits) -> Lowering {
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

fn close(a: f32, b: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-5 + 1e-4 * b.abs()
}

fn compare(what: &str, got: &TensorValue, want: &TensorValue) {
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
/// Returns the labels of the dispatches.
fn check(c: Case) -> Vec<String> {
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
    let labels = match lowered(&c, &descs, DeviceLimits::default()) {
        Lowering::Kernels(k) => k.dispatches.iter().map(|d| d.label.clone()).collect(),
        other => panic!("{what}: no kernel: {other:?}"),
    };
    let Some(gpu) = modc::runtime::test_device() else {
        return labels;
    };
    let (_, node) = model(&c);
    let got = modc::runtime::run_node(gpu, &node, c.opset, &c.inputs, &descs)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(got.len(), want.len(), "{what}: output count");
    for (k, (g, w)) in got.iter().zip(&want).enumerate() {
        compare(&format!("{what} output {k}"), g, w);
    }
    labels
}

fn floats(v: &[f32]) -> Option<TensorValue> {
    Some(TensorValue::from_f32(&[v.len()], v.to_vec()))
}

fn sizes(v: &[i64]) -> Option<TensorValue> {
    Some(ints(&[v.len()], v.to_vec()))
}

const COORDS: [&str; 5] = [
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
];

const NEAREST: [&str; 4] = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"];

/// Scales up, down and uneven, and sizes, on a 4-D input.
fn resize_inputs(seed: u32) -> Vec<Vec<Option<TensorValue>>> {
    let x = || Some(data(&[1, 2, 5, 7], seed));
    vec![
        vec![x(), None, floats(&[1.0, 1.0, 2.0, 2.0])],
        vec![x(), None, floats(&[1.0, 1.0, 0.6, 0.5])],
        vec![x(), None, floats(&[1.0, 1.0, 1.7, 2.3])],
        vec![x(), None, None, sizes(&[1, 2, 9, 4])],
        vec![x(), None, None, sizes(&[2, 3, 3, 11])],
    ]
}

#[test]
fn nearest_every_mode_and_coordinate_transformation() {
    for coord in COORDS {
        for nm in NEAREST {
            for inputs in resize_inputs(3) {
                let labels = check(
                    case("Resize", 13, inputs)
                        .string("mode", "nearest")
                        .string("coordinate_transformation_mode", coord)
                        .string("nearest_mode", nm),
                );
                assert_eq!(labels, ["resize_nearest"]);
            }
        }
    }
}

#[test]
fn nearest_of_integers_and_opset_19_default_modes() {
    let x = ints(&[2, 3, 4], (0..24).map(|v| v * 1000 - 7).collect());
    check(case(
        "Resize",
        19,
        vec![Some(x.clone()), None, floats(&[1.0, 2.0, 1.5])],
    ));
    check(case(
        "Resize",
        11,
        vec![
            Some(x),
            Some(TensorValue::from_f32(&[0], vec![])),
            None,
            sizes(&[3, 5, 2]),
        ],
    ));
    let x32 = TensorValue::I32(
        ndarray::ArrayD::from_shape_vec(vec![6], vec![1, -2, 3, -4, 5, 6]).unwrap(),
    );
    check(
        case("Resize", 13, vec![Some(x32), None, floats(&[2.5])])
            .string("coordinate_transformation_mode", "align_corners")
            .string("nearest_mode", "ceil"),
    );
}

#[test]
fn linear_2d_and_nd() {
    for coord in COORDS {
        for inputs in resize_inputs(5) {
            let labels = check(
                case("Resize", 13, inputs)
                    .string("mode", "linear")
                    .string("coordinate_transformation_mode", coord),
            );
            assert_eq!(labels, ["resize_linear"]);
        }
        // Three resized axes of a 5-D input.
        check(
            case(
                "Resize",
                13,
                vec![
                    Some(data(&[1, 2, 3, 4, 5], 9)),
                    None,
                    floats(&[1.0, 1.5, 2.0, 0.75, 1.4]),
                ],
            )
            .string("mode", "linear")
            .string("coordinate_transformation_mode", coord),
        );
        // One resized axis.
        check(
            case(
                "Resize",
                13,
                vec![Some(data(&[3, 4], 2)), None, floats(&[1.0, 2.5])],
            )
            .string("mode", "linear")
            .string("coordinate_transformation_mode", coord),
        );
    }
    for inputs in resize_inputs(6) {
        check(
            case("Resize", 13, inputs)
                .string("mode", "linear")
                .int("exclude_outside", 1),
        );
    }
    // antialias upsampling is plain linear.
    check(
        case(
            "Resize",
            18,
            vec![
                Some(data(&[1, 1, 3, 4], 1)),
                None,
                floats(&[1.0, 1.0, 2.0, 1.5]),
            ],
        )
        .string("mode", "linear")
        .int("antialias", 1),
    );
}

#[test]
fn axes_and_keep_aspect_ratio() {
    for policy in ["stretch", "not_larger", "not_smaller"] {
        for mode in ["nearest", "linear"] {
            check(
                case(
                    "Resize",
                    18,
                    vec![Some(data(&[1, 2, 5, 7], 4)), None, None, sizes(&[8, 9])],
                )
                .ints("axes", &[2, -1])
                .string("mode", mode)
                .string("keep_aspect_ratio_policy", policy),
            );
        }
    }
    check(
        case(
            "Resize",
            18,
            vec![Some(data(&[1, 2, 5, 7], 4)), None, floats(&[0.5, 3.0])],
        )
        .ints("axes", &[3, 1])
        .string("mode", "linear"),
    );
}

#[test]
fn resize_10_and_upsample() {
    for mode in ["nearest", "linear"] {
        for s in [
            [1.0, 1.0, 2.0, 3.0],
            [1.0, 1.0, 0.5, 0.6],
            [1.0, 2.0, 1.5, 1.0],
        ] {
            check(
                case("Resize", 10, vec![Some(data(&[1, 2, 4, 5], 8)), floats(&s)])
                    .string("mode", mode),
            );
            check(
                case(
                    "Upsample",
                    9,
                    vec![Some(data(&[1, 2, 4, 5], 8)), floats(&s)],
                )
                .string("mode", mode),
            );
        }
        check(
            case("Upsample", 7, vec![Some(data(&[2, 3], 1))])
                .string("mode", mode)
                .floats_attr("scales", &[2.0, 1.5]),
        );
    }
}

#[test]
fn rapidocr_style_upsampling_is_a_formula() {
    // Nearest 2x (and 4x, 8x) as in the PP-OCR detector's FPN: no tap table.
    for s in [2.0, 4.0, 8.0] {
        let c = case(
            "Resize",
            11,
            vec![
                Some(data(&[1, 4, 3, 10], 1)),
                Some(TensorValue::from_f32(&[0], vec![])),
                floats(&[1.0, 1.0, s, s]),
            ],
        )
        .string("mode", "nearest")
        .string("coordinate_transformation_mode", "asymmetric")
        .string("nearest_mode", "floor");
        let want = reference(&c);
        let descs: Vec<TensorDesc> = want
            .iter()
            .map(|t| TensorDesc::new(t.dtype(), t.shape()))
            .collect();
        match lowered(&c, &descs, DeviceLimits::default()) {
            Lowering::Kernels(k) => assert!(k.dispatches[0].params.is_empty(), "{s}: table used"),
            other => panic!("{other:?}"),
        }
        check(c);
    }
}

#[test]
fn modes_without_a_kernel_fall_back() {
    let x = || Some(data(&[1, 1, 4, 4], 1));
    let unsupported = |c: Case, outs: &[usize]| {
        let (_, node) = model(&c);
        let info = NodeInfo {
            node: &node,
            opset: c.opset,
            inputs: c
                .inputs
                .iter()
                .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
                .collect(),
            outputs: vec![TensorDesc::new(DType::F32, outs)],
            consts: c.inputs.iter().map(|t| t.as_ref()).collect(),
            limits: DeviceLimits::default(),
        };
        match lower(&info) {
            Lowering::Unsupported(_) => {}
            other => panic!("{:?}: {other:?}", c.attrs),
        }
    };
    let s = || floats(&[1.0, 1.0, 2.0, 2.0]);
    unsupported(
        case("Resize", 13, vec![x(), None, s()]).string("mode", "cubic"),
        &[1, 1, 8, 8],
    );
    unsupported(
        case(
            "Resize",
            13,
            vec![x(), floats(&[0.0, 0.0, 0.1, 0.1, 1.0, 1.0, 0.9, 0.9]), s()],
        )
        .string("coordinate_transformation_mode", "tf_crop_and_resize"),
        &[1, 1, 8, 8],
    );
    unsupported(
        case("Resize", 13, vec![x(), None, s()])
            .string("coordinate_transformation_mode", "tf_half_pixel_for_nn"),
        &[1, 1, 8, 8],
    );
    unsupported(
        case("Resize", 18, vec![x(), None, floats(&[1.0, 1.0, 0.5, 0.5])])
            .string("mode", "linear")
            .int("antialias", 1),
        &[1, 1, 2, 2],
    );
    // Linear on integers.
    unsupported(
        case(
            "Resize",
            13,
            vec![Some(ints(&[1, 1, 2, 2], vec![1, 2, 3, 4])), None, s()],
        )
        .string("mode", "linear"),
        &[1, 1, 4, 4],
    );
    // Scales that are not constants.
    let c = case("Resize", 13, vec![x(), None, s()]);
    let (_, node) = model(&c);
    let info = NodeInfo {
        node: &node,
        opset: 13,
        inputs: c
            .inputs
            .iter()
            .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
            .collect(),
        outputs: vec![TensorDesc::new(DType::F32, &[1, 1, 8, 8])],
        consts: vec![None; 3],
        limits: DeviceLimits::default(),
    };
    assert!(matches!(lower(&info), Lowering::Unsupported(_)));
}

#[path = "common/mod.rs"]
mod common;

/// The ONNX backend Resize cases with scales and sizes taken as constants: every
/// case that lowers runs on the device and matches the expected output.
#[test]
fn backend_cases_with_constant_scales() {
    use modc::conformance::{compare as onnx_compare, read_value, Tolerance};
    let Some(data) = common::testdata() else {
        return;
    };
    let Some(gpu) = modc::runtime::test_device() else {
        return;
    };
    let dir = data.join("onnx-backend/node");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let (mut pass, mut cpu) = (0, 0);
    let mut cases: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    cases.sort();
    for case_dir in cases {
        let name = case_dir.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("test_resize") && !name.starts_with("test_upsample") {
            continue;
        }
        let Ok(model) = modc::load(case_dir.join("model.onnx"), &Default::default()) else {
            continue;
        };
        let g = &model.graph;
        let Some((_, node)) = g.nodes().next() else {
            continue;
        };
        let set = case_dir.join("test_data_set_0");
        let mut by_name = std::collections::HashMap::new();
        for (k, &id) in g.inputs.iter().enumerate() {
            let v = g.value(id);
            if let Ok(RtValue::Tensor(t)) =
                read_value(&set.join(format!("input_{k}.pb")), v.ty.as_ref())
            {
                by_name.insert(id, t);
            }
        }
        let inputs: Vec<Option<TensorValue>> = node
            .inputs
            .iter()
            .map(|i| i.and_then(|id| by_name.get(&id).cloned()))
            .collect();
        let out = g.outputs[0];
        let Ok(RtValue::Tensor(want)) =
            read_value(&set.join("output_0.pb"), g.value(out).ty.as_ref())
        else {
            continue;
        };
        let descs = vec![TensorDesc::new(want.dtype(), want.shape())];
        let opset = model.opset_version("").unwrap_or(19);
        let info = NodeInfo {
            node,
            opset,
            inputs: inputs
                .iter()
                .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
                .collect(),
            outputs: descs.clone(),
            consts: inputs.iter().map(|t| t.as_ref()).collect(),
            limits: DeviceLimits::default(),
        };
        match lower(&info) {
            Lowering::Kernels(k) => {
                for d in &k.dispatches {
                    validate(&d.label, &d.wgsl);
                }
            }
            _ => {
                cpu += 1;
                continue;
            }
        }
        let got = modc::runtime::run_node(gpu, node, opset, &inputs, &descs)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        onnx_compare(
            &RtValue::Tensor(want),
            &RtValue::Tensor(got[0].clone()),
            Tolerance::ONNX,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        pass += 1;
    }
    eprintln!("backend Resize cases: {pass} pass on the GPU, {cpu} without a kernel");
}
