//! GPU kernels for MatMul, Gemm, Conv and the pools, checked against the
//! reference interpreter on small shapes: odd sizes that cross tile edges,
//! batches, broadcasting, transposes, groups, pads.
//!
//! Every case first lowers its node and validates each generated shader with naga
//! (no GPU needed); then, when a device is found (`modc::runtime::test_device`,
//! which fails instead of skipping under `MODC_REQUIRE_GPU=1`), runs the kernels
//! and compares with the interpreter's outputs.

#[path = "common/linalg_case.rs"]
mod linalg_case;
use linalg_case::*;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::{RtValue, TensorValue};

#[test]
fn matmul_shapes() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[7, 5], &[5, 9]),
        (&[33, 17], &[17, 65]),
        (&[8, 16], &[16, 12]),
        (&[1, 40], &[40, 36]),
        (&[70, 3], &[3, 2]),
        (&[2, 3, 5, 6], &[6, 7]),
        (&[2, 1, 4, 8], &[3, 8, 5]),
        (&[4, 8], &[2, 3, 8, 4]),
        (&[5], &[5, 3]),
        (&[2, 4, 5], &[5]),
        (&[6], &[6]),
        (&[3, 4], &[1, 4, 0]),
    ];
    for (i, (a, b)) in cases.iter().enumerate() {
        let labels = check(
            "MatMul",
            "",
            &[Some(f32s(a, i as u64)), Some(f32s(b, 100 + i as u64))],
            1,
        );
        assert!(
            labels.iter().all(|l| l.starts_with("matmul_tiled")),
            "{labels:?}"
        );
    }
}

#[test]
fn matmul_integers() {
    check(
        "MatMul",
        "",
        &[Some(i32s(&[5, 7], 1)), Some(i32s(&[7, 6], 2))],
        1,
    );
    check(
        "MatMul",
        "",
        &[Some(i32s(&[2, 3, 8], 3)), Some(i32s(&[8, 4], 4))],
        1,
    );
    let a = TensorValue::from_i64(&[3, 4], (0..12).map(|v| v - 5).collect());
    let b = TensorValue::from_i64(&[4, 2], (0..8).map(|v| 3 - v).collect());
    check("MatMul", "", &[Some(a), Some(b)], 1);
}

#[test]
fn gemm_attributes_and_bias() {
    let (m, k, n) = (9, 13, 6);
    for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let a = f32s(&(if ta == 1 { [k, m] } else { [m, k] }), 1);
        let b = f32s(&(if tb == 1 { [n, k] } else { [k, n] }), 2);
        let attrs = format!("transA={ta}, transB={tb}, alpha=0.5, beta=-2.0");
        check(
            "Gemm",
            &attrs,
            &[Some(a.clone()), Some(b.clone()), Some(f32s(&[n], 3))],
            1,
        );
        check(
            "Gemm",
            &format!("transA={ta}, transB={tb}"),
            &[Some(a), Some(b)],
            1,
        );
    }
    let a = f32s(&[m, k], 4);
    let b = f32s(&[k, n], 5);
    for c in [&[][..], &[1], &[n], &[m, 1], &[1, n], &[m, n]] {
        check(
            "Gemm",
            "beta=0.25",
            &[Some(a.clone()), Some(b.clone()), Some(f32s(c, 6))],
            1,
        );
    }
    // beta = 0: C is ignored, even when it holds NaN.
    let c = TensorValue::from_f32(&[n], vec![f32::NAN; n]);
    check(
        "Gemm",
        "beta=0.0",
        &[Some(a.clone()), Some(b.clone()), Some(c)],
        1,
    );
    // A vec4-friendly layout (k and n multiples of 4).
    check(
        "Gemm",
        "transB=1",
        &[
            Some(f32s(&[20, 32], 7)),
            Some(f32s(&[8, 32], 8)),
            Some(f32s(&[8], 9)),
        ],
        1,
    );
}

#[test]
fn pools() {
    let x = f32s(&[2, 3, 7, 8], 1);
    let mp = [
        "kernel_shape=[3, 3]",
        "kernel_shape=[2, 2], strides=[2, 2]",
        "kernel_shape=[3, 2], pads=[1, 0, 2, 1], strides=[2, 1]",
        "kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1",
        "kernel_shape=[2, 3], dilations=[2, 1], pads=[1, 1, 1, 1]",
        "kernel_shape=[3, 3], auto_pad=\"SAME_UPPER\", strides=[2, 2]",
        "kernel_shape=[4, 3], auto_pad=\"SAME_LOWER\"",
    ];
    for a in mp {
        check("MaxPool", a, &[Some(x.clone())], 1);
        check("AveragePool", a, &[Some(x.clone())], 1);
        check(
            "AveragePool",
            &format!("{a}, count_include_pad=1"),
            &[Some(x.clone())],
            1,
        );
    }
    // Indices, row- and column-major.
    check(
        "MaxPool",
        "kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[2, 2]",
        &[Some(x.clone())],
        2,
    );
    check(
        "MaxPool",
        "kernel_shape=[2, 3], strides=[2, 2], storage_order=1",
        &[Some(x.clone())],
        2,
    );
    // 1-D and 3-D.
    check(
        "MaxPool",
        "kernel_shape=[3], strides=[2], pads=[1, 1]",
        &[Some(f32s(&[2, 4, 11], 2))],
        2,
    );
    check(
        "AveragePool",
        "kernel_shape=[2, 2, 3], pads=[0, 1, 1, 1, 0, 1], count_include_pad=1",
        &[Some(f32s(&[1, 2, 4, 5, 6], 3))],
        1,
    );
    check(
        "MaxPool",
        "kernel_shape=[2, 2, 2], strides=[1, 2, 2]",
        &[Some(f32s(&[1, 2, 4, 5, 6], 4))],
        2,
    );
    // Integers.
    check(
        "MaxPool",
        "kernel_shape=[2, 2], pads=[1, 1, 1, 1]",
        &[Some(i32s(&[1, 2, 5, 5], 5))],
        1,
    );
    let u = TensorValue::U8(
        ndarray::ArrayD::from_shape_vec(vec![1, 1, 4, 4], (0..16u8).map(|v| v * 13).collect())
            .unwrap(),
    );
    check(
        "MaxPool",
        "kernel_shape=[3, 3], pads=[1, 1, 1, 1]",
        &[Some(u)],
        1,
    );
    // Dilated AveragePool is opset 19; before, dilations are not read.
    check_opset(
        "AveragePool",
        "kernel_shape=[2, 2], dilations=[2, 2]",
        &[Some(x.clone())],
        1,
        19,
    );
}

#[test]
fn global_pools() {
    for shape in [
        &[2, 3, 7, 8][..],
        &[1, 5, 300],
        &[2, 2, 1, 1],
        &[1, 3, 2, 3, 4],
    ] {
        check("GlobalAveragePool", "", &[Some(f32s(shape, 1))], 1);
        check("GlobalMaxPool", "", &[Some(f32s(shape, 2))], 1);
    }
    let mut v = values(2 * 100, 3);
    v[37] = f32::NAN;
    check(
        "GlobalMaxPool",
        "",
        &[Some(TensorValue::from_f32(&[1, 2, 100], v))],
        1,
    );
}

/// The naive and the register-tiled kernels agree with a plain loop, on shapes
/// that cross the tile edges.
#[test]
fn naive_and_tiled_kernels_agree() {
    use modc::codegen::{matmul_kernels, MatmulKernel, TileConfig};
    let limits = DeviceLimits::default();
    let configs = [
        MatmulKernel::Naive,
        MatmulKernel::Tiled(TileConfig::for_shape(64, 64)),
        MatmulKernel::Tiled(TileConfig::for_shape(1024, 1024)),
        MatmulKernel::Tiled(TileConfig::for_shape(1, 1024)),
        MatmulKernel::Tiled(TileConfig {
            wg_x: 4,
            wg_y: 8,
            tm4: 2,
            tn4: 2,
            bk: 8,
        }),
        MatmulKernel::Tiled(TileConfig {
            wg_x: 8,
            wg_y: 4,
            tm4: 1,
            tn4: 2,
            bk: 4,
        }),
    ];
    for &(m, n, k) in &[(37, 29, 41), (64, 64, 64), (5, 130, 3), (131, 140, 19)] {
        let a = values(m * k, 1);
        let b = values(k * n, 2);
        let mut want = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                want[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        let want = TensorValue::from_f32(&[m, n], want);
        for cfg in configs {
            let kern = matmul_kernels(cfg, m, n, k, &limits).unwrap();
            validate_all(&kern);
            if let Some(gpu) = modc::runtime::test_device() {
                let inputs = [
                    Some(TensorValue::from_f32(&[m, k], a.clone())),
                    Some(TensorValue::from_f32(&[k, n], b.clone())),
                ];
                let out = TensorDesc::new(modc::DType::F32, &[m, n]);
                let got = gpu.run_kernels(&kern, &inputs, &[out]).unwrap();
                assert_close(&format!("{cfg:?} {m}x{n}x{k}"), &got[0], &want, 1e-4, 1e-5);
            }
        }
    }
}

/// A grid larger than the device allows per dimension is laid out in 2-D / 3-D.
#[test]
fn grids_stay_within_limits() {
    let tiny = DeviceLimits {
        max_workgroups_per_dim: 3,
        ..DeviceLimits::default()
    };
    let text = "opset _=17\ngraph @g(%a: f32[5,2,3], %b: f32[5,3,2]) -> (%y) {\n  %y = MatMul(%a, %b)\n  return %y\n}\n";
    let model = modc::parse_model(text).unwrap();
    let (_, node) = model.graph.nodes().next().unwrap();
    let info = NodeInfo {
        node,
        opset: 17,
        inputs: vec![
            Some(TensorDesc::new(modc::DType::F32, &[5, 2, 3])),
            Some(TensorDesc::new(modc::DType::F32, &[5, 3, 2])),
        ],
        outputs: vec![TensorDesc::new(modc::DType::F32, &[5, 2, 2])],
        consts: vec![None, None],
        limits: tiny,
    };
    let Lowering::Kernels(k) = lower(&info) else {
        panic!("not lowered")
    };
    validate_all(&k);
    let w = k.dispatches[0].workgroups;
    assert!(
        w.iter().all(|&d| d <= 3) && w.iter().product::<u32>() >= 5,
        "{w:?}"
    );
    if let Some(gpu) = modc::runtime::test_device() {
        let a = f32s(&[5, 2, 3], 1);
        let b = f32s(&[5, 3, 2], 2);
        let got = gpu
            .run_kernels(&k, &[Some(a.clone()), Some(b.clone())], &info.outputs)
            .unwrap();
        let want =
            modc::runtime::run_node(gpu, node, 17, &[Some(a), Some(b)], &info.outputs).unwrap();
        assert_close("grid", &got[0], &want[0], 1e-6, 1e-6);
    }
}

#[test]
fn convolutions() {
    let x = f32s(&[2, 4, 9, 10], 1);
    let w = f32s(&[6, 4, 3, 3], 2);
    let b = f32s(&[6], 3);
    for a in [
        "",
        "pads=[1, 1, 1, 1]",
        "strides=[2, 2], pads=[1, 0, 2, 1]",
        "dilations=[2, 1], pads=[2, 1, 2, 1]",
        "auto_pad=\"SAME_UPPER\", strides=[2, 2]",
        "auto_pad=\"SAME_LOWER\"",
        "auto_pad=\"VALID\", strides=[1, 3]",
    ] {
        let labels = check(
            "Conv",
            a,
            &[Some(x.clone()), Some(w.clone()), Some(b.clone())],
            1,
        );
        assert_eq!(labels, ["conv_4x4"]);
        check("Conv", a, &[Some(x.clone()), Some(w.clone())], 1);
    }
    // Groups: 2 groups of 2 -> 3 channels (a partial channel block), and depthwise.
    check(
        "Conv",
        "group=2, pads=[1, 1, 1, 1]",
        &[
            Some(x.clone()),
            Some(f32s(&[6, 2, 3, 3], 4)),
            Some(b.clone()),
        ],
        1,
    );
    let dw = check(
        "Conv",
        "group=4, pads=[1, 1, 1, 1], strides=[2, 2]",
        &[
            Some(x.clone()),
            Some(f32s(&[4, 1, 3, 3], 5)),
            Some(f32s(&[4], 6)),
        ],
        1,
    );
    assert_eq!(dw, ["conv_1x4"]);
    check(
        "Conv",
        "group=4",
        &[Some(x.clone()), Some(f32s(&[8, 1, 1, 2], 7))],
        1,
    );
    // 1x1 (pointwise), 5 output channels (a partial block of 4).
    check(
        "Conv",
        "",
        &[
            Some(x.clone()),
            Some(f32s(&[5, 4, 1, 1], 8)),
            Some(f32s(&[5], 9)),
        ],
        1,
    );
    // 1-D and 3-D.
    check(
        "Conv",
        "pads=[2, 1], strides=[2], dilations=[2]",
        &[Some(f32s(&[2, 3, 17], 10)), Some(f32s(&[4, 3, 3], 11))],
        1,
    );
    check(
        "Conv",
        "kernel_shape=[5]",
        &[
            Some(f32s(&[1, 1, 30], 12)),
            Some(f32s(&[2, 1, 5], 13)),
            Some(f32s(&[2], 14)),
        ],
        1,
    );
    check(
        "Conv",
        "pads=[1, 0, 1, 0, 1, 1]",
        &[
            Some(f32s(&[1, 2, 4, 5, 6], 15)),
            Some(f32s(&[4, 2, 2, 3, 2], 16)),
        ],
        1,
    );
}

#[test]
fn tilings_fit_the_shape() {
    use modc::codegen::TileConfig;
    let big = TileConfig::for_shape(1024, 1024);
    assert_eq!(
        (big.wg_x, big.wg_y, big.tm4, big.tn4, big.bk),
        (8, 8, 4, 4, 8)
    );
    let gemv = TileConfig::for_shape(1, 1000);
    assert_eq!((gemv.wg_y, gemv.tm4), (1, 1), "{gemv:?}");
    let tiny = TileConfig::for_shape(3, 5);
    assert!(tiny.wg_x * tiny.wg_y <= 2, "{tiny:?}");
}

/// Every ONNX backend `node` case of MatMul, Gemm, Conv and the pools, through the
/// GPU kernels, against ONNX's expected outputs with ONNX's tolerance. Needs
/// `MODC_TESTDATA` (the unpacked backend test data) and a device; prints a tally
/// per op, and fails on any case that lowers to kernels and disagrees.
#[test]
fn onnx_backend_node_cases() {
    use modc::conformance::{compare, read_value, Tolerance};
    let Some(root) = std::env::var_os("MODC_TESTDATA") else {
        eprintln!("skipping: MODC_TESTDATA is not set");
        return;
    };
    let node_dir = std::path::Path::new(&root).join("onnx-backend/node");
    let Ok(rd) = std::fs::read_dir(&node_dir) else {
        eprintln!("skipping: no {}", node_dir.display());
        return;
    };
    let Some(gpu) = modc::runtime::test_device() else {
        return;
    };
    let ops = [
        "MatMul",
        "Gemm",
        "Conv",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
    ];
    let mut dirs: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.to_string_lossy().ends_with("_expanded"))
        .collect();
    dirs.sort();
    let mut tally: std::collections::BTreeMap<String, [usize; 3]> = Default::default();
    let mut failures = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let Ok(model) = modc::load(dir.join("model.onnx"), &modc::LoadPolicy::default()) else {
            continue;
        };
        let g = &model.graph;
        let nodes: Vec<_> = g.nodes().collect();
        if nodes.len() != 1 || !ops.contains(&nodes[0].1.op_type.as_str()) {
            continue;
        }
        let node = nodes[0].1;
        let opset = model.opset_version("").unwrap_or(1);
        let entry = tally.entry(node.op_type.clone()).or_default();
        let set = dir.join("test_data_set_0");
        let mut by_id = std::collections::HashMap::new();
        for (k, &id) in g.inputs.iter().enumerate() {
            let v =
                read_value(&set.join(format!("input_{k}.pb")), g.value(id).ty.as_ref()).unwrap();
            by_id.insert(id, v);
        }
        let inputs: Vec<Option<TensorValue>> = node
            .inputs
            .iter()
            .map(|i| {
                i.and_then(|id| match by_id.get(&id) {
                    Some(RtValue::Tensor(t)) => Some(t.clone()),
                    _ => None,
                })
            })
            .collect();
        let want: Vec<RtValue> = (0..g.outputs.len())
            .map(|k| {
                read_value(
                    &set.join(format!("output_{k}.pb")),
                    g.value(g.outputs[k]).ty.as_ref(),
                )
                .unwrap()
            })
            .collect();
        let descs: Vec<TensorDesc> = want
            .iter()
            .map(|v| match v {
                RtValue::Tensor(t) => TensorDesc::new(t.dtype(), t.shape()),
                o => panic!("{name}: output {o:?}"),
            })
            .collect();
        match modc::runtime::run_node(gpu, node, opset, &inputs, &descs) {
            Ok(got) => {
                let bad: Vec<String> = got
                    .into_iter()
                    .zip(&want)
                    .filter_map(|(g, w)| compare(w, &RtValue::Tensor(g), Tolerance::ONNX).err())
                    .collect();
                if bad.is_empty() {
                    entry[0] += 1;
                } else {
                    entry[1] += 1;
                    failures.push(format!("{name}: {}", bad.join("; ")));
                }
            }
            Err(modc::runtime::RuntimeError::Unsupported { reason, .. }) => {
                entry[2] += 1;
                eprintln!("{name}: unsupported: {reason}");
            }
            Err(e) => {
                entry[1] += 1;
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    for (op, [p, f, u]) in &tally {
        eprintln!("{op:>18}: {p} pass, {f} fail, {u} unsupported");
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    assert!(
        tally.values().map(|t| t[0]).sum::<usize>() > 50,
        "too few cases ran: {tally:?}"
    );
}
