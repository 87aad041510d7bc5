//! Resize and Upsample kernels (`codegen/data/resize.rs`) against the reference
//! interpreter: nearest in every nearest_mode and coordinate mode, linear (2-D
//! and N-D), scales or sizes, axes and keep_aspect_ratio_policy, integer data,
//! Resize-10 and Upsample. Shaders are validated with naga; where a device is
//! found the outputs are compared (exactly for integers, rtol 1e-4 / atol 1e-5
//! for floats). Modes without a kernel must lower to `Unsupported`.

#[path = "common/node_case.rs"]
mod node_case;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::{DType, RtValue, TensorValue};
use node_case::*;

/// Runs a case; returns the labels of the dispatches.
fn check(c: Case) -> Vec<String> {
    let what = c.op;
    check_with(c, DeviceLimits::default())
        .unwrap_or_else(|| panic!("{what}: not lowered to kernels"))
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
