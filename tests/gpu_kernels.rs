//! Reduction, softmax, normalization and data-movement kernels against the
//! reference interpreter.
//!
//! Each case is one node on small odd shapes. Every shader the case generates is
//! validated with naga (no GPU needed); where a device is found
//! (`modc::runtime::test_device`, lavapipe on CI) the kernels run and their
//! outputs are compared with the interpreter's: exactly for integers, within
//! rtol 1e-4 / atol 1e-5 for floats. `MODC_REQUIRE_GPU=1` turns a missing device
//! into a failure.

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
    fn float(mut self, name: &str, v: f32) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Float(v)));
        self
    }
    fn string(mut self, name: &str, v: &str) -> Case {
        self.attrs.push(Attr::new(
            name,
            AttrValue::String(v.as_bytes().to_vec().into()),
        ));
        self
    }
    fn tensor_attr(mut self, name: &str, t: modc::Tensor) -> Case {
        self.attrs.push(Attr::new(name, AttrValue::Tensor(t)));
        self
    }
    fn outputs(mut self, n: usize) -> Case {
        self.outputs = n;
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

fn positive(shape: &[usize], seed: u32) -> TensorValue {
    match data(shape, seed) {
        TensorValue::F32(a) => TensorValue::F32(a.mapv(|v| v.abs() + 0.25)),
        t => t,
    }
}

fn ints(shape: &[usize], v: Vec<i64>) -> TensorValue {
    TensorValue::from_i64(shape, v)
}

fn i64s(v: &[i64]) -> Option<TensorValue> {
    Some(ints(&[v.len()], v.to_vec()))
}

fn int_data(shape: &[usize], seed: u32) -> TensorValue {
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
fn check(c: Case) {
    check_with(c, DeviceLimits::default());
}

fn check_with(c: Case, limits: DeviceLimits) {
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
    if let Lowering::Unsupported(r) = lowered(&c, &descs, limits) {
        panic!("{what}: no kernel: {r}");
    }
    let Some(gpu) = modc::runtime::test_device() else {
        return;
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
}

/// Lowers a case whose inputs are not constants; returns the lowering.
fn lower_without_consts(c: &Case, outs: &[TensorDesc]) -> Lowering {
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
        consts: vec![None; c.inputs.len()],
        limits: DeviceLimits::default(),
    };
    lower(&info)
}

// ---------------------------------------------------------------------------
// Reductions
// ---------------------------------------------------------------------------

const REDUCE_OPS: [&str; 10] = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
];

#[test]
fn reductions_axes_as_input_keepdims_both_ways() {
    for op in REDUCE_OPS {
        for (shape, axes) in [
            (&[3usize, 5, 7][..], &[1i64][..]),
            (&[3, 5, 7], &[-1]),
            (&[3, 5, 7], &[0, 2]),
            (&[2, 3, 70], &[-1]),
            (&[130, 3], &[0]),
            (&[4, 3, 5, 2], &[1, 3]),
            (&[3, 5, 7], &[]),
        ] {
            for keep in [0, 1] {
                let x = if op == "ReduceLogSum" || op == "ReduceProd" {
                    positive(shape, 3)
                } else {
                    data(shape, 3)
                };
                check(case(op, 18, vec![Some(x), i64s(axes)]).int("keepdims", keep));
            }
        }
    }
}

#[test]
fn reductions_axes_as_attribute_and_noop() {
    for op in REDUCE_OPS {
        check(case(op, 13, vec![Some(positive(&[4, 6, 5], 1))]).ints("axes", &[-2]));
        check(case(op, 11, vec![Some(positive(&[4, 6, 5], 2))]).int("keepdims", 0));
    }
    check(
        case("ReduceSum", 13, vec![Some(data(&[3, 4], 1)), i64s(&[])])
            .int("noop_with_empty_axes", 1),
    );
    check(case("ReduceSum", 13, vec![Some(data(&[3, 4], 1))]).int("noop_with_empty_axes", 0));
}

#[test]
fn reductions_of_integers_and_empty_rows() {
    for op in [
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceSumSquare",
    ] {
        check(case(op, 18, vec![Some(int_data(&[3, 5, 4], 5)), i64s(&[1])]).int("keepdims", 0));
        check(case(
            op,
            18,
            vec![Some(int_data(&[2, 100], 6)), i64s(&[-1])],
        ));
    }
    for op in REDUCE_OPS {
        check(case(op, 18, vec![Some(data(&[2, 0, 3], 1)), i64s(&[1])]));
    }
}

#[test]
fn reduction_rows_past_the_workgroup_grid_use_a_2d_grid() {
    let limits = DeviceLimits {
        max_workgroups_per_dim: 12,
        ..DeviceLimits::default()
    };
    check_with(
        case("ReduceSum", 18, vec![Some(data(&[100, 65], 2)), i64s(&[1])]),
        limits,
    );
    check_with(
        case("ReduceMax", 18, vec![Some(data(&[1000, 3], 2)), i64s(&[1])]),
        limits,
    );
}

#[test]
fn reduction_axes_that_are_not_constant_fall_back() {
    let c = case("ReduceSum", 13, vec![Some(data(&[3, 4], 1)), i64s(&[1])]);
    let l = lower_without_consts(&c, &[TensorDesc::new(DType::F32, &[3, 1])]);
    match l {
        Lowering::Unsupported(r) => assert!(r.contains("not a constant"), "{r}"),
        other => panic!("expected a fallback, got {other:?}"),
    }
}

#[test]
fn argmax_argmin() {
    for op in ["ArgMax", "ArgMin"] {
        for axis in [0i64, 1, -1] {
            for keep in [0, 1] {
                for last in [0, 1] {
                    check(
                        case(op, 13, vec![Some(data(&[5, 7, 3], 9))])
                            .int("axis", axis)
                            .int("keepdims", keep)
                            .int("select_last_index", last),
                    );
                }
            }
        }
        check(case(op, 13, vec![Some(int_data(&[4, 9], 2))]).int("axis", 1));
    }
}

// ---------------------------------------------------------------------------
// Softmax, normalization, CumSum
// ---------------------------------------------------------------------------

#[test]
fn softmax_both_opset_semantics() {
    for op in ["Softmax", "LogSoftmax"] {
        for (opset, axis) in [(13, -1), (13, 0), (13, 1), (11, 1), (11, 0), (11, -1)] {
            check(case(op, opset, vec![Some(data(&[3, 5, 7], 4))]).int("axis", axis));
        }
        check(case(op, 13, vec![Some(data(&[2, 300], 4))]));
        check(case(op, 13, vec![Some(data(&[70, 3], 4))]).int("axis", 0));
    }
}

#[test]
fn layer_and_rms_normalization() {
    for axis in [-1i64, 1, 2] {
        let x = data(&[2, 3, 5], 1);
        let w: Vec<usize> = x.shape()[axis.rem_euclid(3) as usize..].to_vec();
        check(
            case(
                "LayerNormalization",
                17,
                vec![Some(x.clone()), Some(data(&w, 2)), Some(data(&w, 3))],
            )
            .int("axis", axis)
            .float("epsilon", 1e-3)
            .outputs(3),
        );
        check(
            case(
                "LayerNormalization",
                17,
                vec![Some(x.clone()), Some(data(&w, 2))],
            )
            .int("axis", axis),
        );
        check(case("RMSNormalization", 23, vec![Some(x), Some(data(&w, 2))]).int("axis", axis));
    }
    // A long row and a scale that broadcasts.
    check(case(
        "LayerNormalization",
        17,
        vec![Some(data(&[3, 300], 1)), Some(data(&[1], 2))],
    ));
}

#[test]
fn instance_batch_and_lp_normalization() {
    let x = data(&[2, 3, 4, 5], 1);
    check(case(
        "InstanceNormalization",
        6,
        vec![Some(x.clone()), Some(data(&[3], 2)), Some(data(&[3], 3))],
    ));
    check(case(
        "BatchNormalization",
        15,
        vec![
            Some(x.clone()),
            Some(data(&[3], 2)),
            Some(data(&[3], 3)),
            Some(data(&[3], 4)),
            Some(positive(&[3], 5)),
        ],
    ));
    for p in [1, 2] {
        for axis in [0i64, 1, -1] {
            check(
                case("LpNormalization", 1, vec![Some(x.clone())])
                    .int("p", p)
                    .int("axis", axis),
            );
        }
    }
}

#[test]
fn cumsum_directions() {
    for excl in [0, 1] {
        for rev in [0, 1] {
            for axis in [0, -1, 1] {
                check(
                    case(
                        "CumSum",
                        14,
                        vec![Some(data(&[3, 4, 5], 1)), Some(ints(&[], vec![axis]))],
                    )
                    .int("exclusive", excl)
                    .int("reverse", rev),
                );
            }
        }
    }
    check(case(
        "CumSum",
        14,
        vec![Some(int_data(&[4, 5], 1)), Some(ints(&[], vec![1]))],
    ));
}

// ---------------------------------------------------------------------------
// Data movement
// ---------------------------------------------------------------------------

#[test]
fn transpose_slice_expand_tile() {
    let x = data(&[2, 3, 5], 1);
    check(case("Transpose", 13, vec![Some(x.clone())]));
    check(case("Transpose", 13, vec![Some(x.clone())]).ints("perm", &[1, 2, 0]));
    check(case("Transpose", 13, vec![Some(int_data(&[3, 4], 1))]).ints("perm", &[1, 0]));
    for (starts, ends, axes, steps) in [
        (
            &[0i64, 1][..],
            &[2i64, 4][..],
            &[0i64, 2][..],
            &[1i64, 2][..],
        ),
        (&[-1], &[-10], &[-1], &[-2]),
        (&[10, 2], &[-10, 0], &[1, 2], &[-1, -1]),
        (&[1], &[1000], &[1], &[1]),
    ] {
        check(case(
            "Slice",
            13,
            vec![
                Some(x.clone()),
                i64s(starts),
                i64s(ends),
                i64s(axes),
                i64s(steps),
            ],
        ));
    }
    check(
        case("Slice", 1, vec![Some(x.clone())])
            .ints("starts", &[1])
            .ints("ends", &[3])
            .ints("axes", &[1]),
    );
    check(case(
        "Expand",
        13,
        vec![Some(data(&[3, 1], 2)), i64s(&[2, 3, 4])],
    ));
    check(case(
        "Expand",
        13,
        vec![Some(int_data(&[1, 4], 2)), i64s(&[3, 1])],
    ));
    check(case(
        "Tile",
        13,
        vec![Some(data(&[2, 1, 3], 2)), i64s(&[2, 3, 1])],
    ));
}

#[test]
fn concat_split_depth_space() {
    check(
        case(
            "Concat",
            13,
            vec![
                Some(data(&[2, 3, 4], 1)),
                Some(data(&[2, 1, 4], 2)),
                Some(data(&[2, 5, 4], 3)),
            ],
        )
        .int("axis", -2),
    );
    check(
        case(
            "Concat",
            13,
            vec![Some(int_data(&[2, 3], 1)), Some(int_data(&[2, 2], 2))],
        )
        .int("axis", 1),
    );
    check(
        case("Split", 13, vec![Some(data(&[5, 6], 1)), i64s(&[2, 3, 1])])
            .int("axis", 1)
            .outputs(3),
    );
    check(
        case("Split", 18, vec![Some(data(&[7, 2], 1))])
            .int("num_outputs", 3)
            .outputs(3),
    );
    for mode in ["DCR", "CRD"] {
        check(
            case("DepthToSpace", 13, vec![Some(data(&[2, 8, 3, 2], 1))])
                .int("blocksize", 2)
                .string("mode", mode),
        );
    }
    check(case("SpaceToDepth", 13, vec![Some(data(&[2, 3, 4, 6], 1))]).int("blocksize", 2));
}

#[test]
fn gather_and_gather_elements() {
    let x = data(&[4, 5, 3], 1);
    for axis in [0i64, 1, -1] {
        let dim = x.shape()[axis.rem_euclid(3) as usize] as i64;
        let idx = ints(&[2, 3], vec![0, dim - 1, -1, 1, -dim, 0]);
        check(case("Gather", 13, vec![Some(x.clone()), Some(idx.clone())]).int("axis", axis));
        let e = ints(
            &[4, 5, 3],
            (0..60).map(|i| (i * 7 % (2 * dim)) - dim).collect(),
        );
        check(case("GatherElements", 13, vec![Some(x.clone()), Some(e)]).int("axis", axis));
    }
    check(
        case(
            "Gather",
            13,
            vec![Some(x.clone()), Some(ints(&[], vec![2]))],
        )
        .int("axis", 1),
    );
}

#[test]
fn pad_modes() {
    let x = data(&[3, 4], 1);
    for mode in ["constant", "edge", "reflect", "wrap"] {
        check(case("Pad", 19, vec![Some(x.clone()), i64s(&[1, 2, 2, 3])]).string("mode", mode));
        check(case("Pad", 19, vec![Some(x.clone()), i64s(&[-1, 1, 0, -2])]).string("mode", mode));
    }
    check(case(
        "Pad",
        18,
        vec![
            Some(x.clone()),
            i64s(&[2, 1]),
            Some(TensorValue::from_f32(&[], vec![1.5])),
            i64s(&[-1]),
        ],
    ));
    check(
        case("Pad", 2, vec![Some(x)])
            .ints("pads", &[0, 1, 1, 0])
            .float("value", -3.0),
    );
}

#[test]
fn generated_values() {
    let x = data(&[2, 3, 4], 1);
    check(case("Shape", 15, vec![Some(x.clone())]));
    check(
        case("Shape", 15, vec![Some(x.clone())])
            .int("start", 1)
            .int("end", -1),
    );
    check(case("Size", 13, vec![Some(x.clone())]));
    check(case("ConstantOfShape", 9, vec![i64s(&[2, 3])]).tensor_attr(
        "value",
        TensorValue::from_f32(&[1], vec![2.5]).to_tensor("value"),
    ));
    check(case("ConstantOfShape", 9, vec![i64s(&[4])]));
    check(case(
        "Range",
        11,
        vec![
            Some(TensorValue::from_f32(&[], vec![1.0])),
            Some(TensorValue::from_f32(&[], vec![-2.0])),
            Some(TensorValue::from_f32(&[], vec![-0.25])),
        ],
    ));
    check(case(
        "Range",
        11,
        vec![
            Some(ints(&[], vec![3])),
            Some(ints(&[], vec![20])),
            Some(ints(&[], vec![4])),
        ],
    ));
    for upper in [0, 1] {
        for k in [-1i64, 0, 2] {
            check(
                case("Trilu", 14, vec![Some(x.clone()), Some(ints(&[], vec![k]))])
                    .int("upper", upper),
            );
        }
        check(case("Trilu", 14, vec![Some(int_data(&[3, 5], 2))]).int("upper", upper));
    }
}

#[test]
fn data_inputs_that_are_not_constant_fall_back() {
    let c = case(
        "Slice",
        13,
        vec![Some(data(&[4], 1)), i64s(&[1]), i64s(&[3])],
    );
    match lower_without_consts(&c, &[TensorDesc::new(DType::F32, &[2])]) {
        Lowering::Unsupported(r) => assert!(r.contains("starts"), "{r}"),
        other => panic!("expected a fallback, got {other:?}"),
    }
    // Gather reads its indices on the device: no constant needed.
    let c = case(
        "Gather",
        13,
        vec![Some(data(&[4], 1)), Some(ints(&[2], vec![0, 3]))],
    );
    assert!(matches!(
        lower_without_consts(&c, &[TensorDesc::new(DType::F32, &[2])]),
        Lowering::Kernels(_)
    ));
}
