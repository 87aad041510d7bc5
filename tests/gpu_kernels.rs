//! Reduction, softmax, normalization and data-movement kernels against the
//! reference interpreter.
//!
//! Each case is one node on small odd shapes. Every shader the case generates is
//! validated with naga (no GPU needed); where a device is found
//! (`modc::runtime::test_device`, lavapipe on CI) the kernels run and their
//! outputs are compared with the interpreter's: exactly for integers, within
//! rtol 1e-4 / atol 1e-5 for floats. `MODC_REQUIRE_GPU=1` turns a missing device
//! into a failure.

#[path = "common/node_case.rs"]
mod node_case;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::{DType, TensorValue};
use node_case::*;

/// Runs a case: lowering, naga validation, and on a device the comparison.
fn check(c: Case) {
    check_with(c, DeviceLimits::default());
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
