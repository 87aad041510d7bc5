//! Tensors larger than one storage binding are tiled, not refused.
//!
//! Most cases lower one node with a tiny `max_storage_binding` (1 KiB, 256 f32), so
//! tiling happens at small shapes: every shader is validated with naga, every
//! dispatch's range slots are checked against the limit (aligned, within the
//! tensor, at most the limit; tensors bound whole fit it), and where a device is
//! found the dispatches run and match the interpreter. Shapes are not multiples of
//! the chunk, and broadcast inputs are both small (bound whole) and large (bound
//! by the window each chunk reads). One test runs at the device's real limit:
//! tensors over 128 MiB. `MODC_REQUIRE_GPU=1` turns a missing device into a
//! failure.

#[path = "common/node_case.rs"]
mod node_case;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, NodeKernels, Slot, TensorDesc};
use modc::{DType, TensorValue};
use node_case::*;

/// A binding limit of `bytes`.
fn limit(bytes: u64) -> DeviceLimits {
    DeviceLimits {
        max_storage_binding: bytes,
        ..DeviceLimits::default()
    }
}

const KIB: u64 = 1024;

/// Checks every dispatch's bindings against the limit: a range is 256-aligned, a
/// multiple of 4 bytes, at most the limit and inside its tensor; a tensor bound
/// whole fits the limit.
fn assert_bindings(
    what: &str,
    k: &NodeKernels,
    ins: &[Option<TensorDesc>],
    outs: &[TensorDesc],
    l: &DeviceLimits,
) {
    let bytes = |s: Slot| match s.base() {
        Slot::Input(i) => ins[i]
            .as_ref()
            .expect("a bound input is present")
            .device_bytes(),
        Slot::Output(i) => outs[i].device_bytes(),
        s => panic!("{what}: unexpected slot {s:?}"),
    };
    for d in &k.dispatches {
        for &s in &d.slots {
            match s.range() {
                Some(r) => {
                    assert!(
                        r.offset % 256 == 0,
                        "{what}: {}: {s:?} is not aligned",
                        d.label
                    );
                    assert!(
                        r.size % 4 == 0 && r.size > 0,
                        "{what}: {}: {s:?} size",
                        d.label
                    );
                    assert!(
                        r.size <= l.max_storage_binding,
                        "{what}: {}: {s:?} over the limit",
                        d.label
                    );
                    assert!(
                        r.offset + r.size <= bytes(s),
                        "{what}: {}: {s:?} past its tensor",
                        d.label
                    );
                }
                None => assert!(
                    bytes(s) <= l.max_storage_binding,
                    "{what}: {}: {s:?} is bound whole but takes {} bytes",
                    d.label,
                    bytes(s)
                ),
            }
        }
    }
}

/// The node info of a case (every input constant) with the interpreter's output
/// descriptions.
fn descs(c: &Case) -> (Vec<Option<TensorDesc>>, Vec<TensorDesc>) {
    let ins = c
        .inputs
        .iter()
        .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
        .collect();
    let outs = reference(c)
        .iter()
        .map(|t| TensorDesc::new(t.dtype(), t.shape()))
        .collect();
    (ins, outs)
}

/// Lowers `c` under the limit: it must tile (more than one dispatch, some range
/// slot), every binding within the limit, then the node matches the interpreter.
/// Returns the number of dispatches.
fn tiled(c: Case, l: DeviceLimits) -> usize {
    let (ins, outs) = descs(&c);
    let what = format!(
        "{} {:?}",
        c.op,
        ins.iter()
            .map(|d| d.as_ref().map(|d| d.shape.clone()))
            .collect::<Vec<_>>()
    );
    let k = match lowered(&c, &outs, l) {
        Lowering::Kernels(k) => k,
        other => panic!("{what}: not lowered to kernels: {other:?}"),
    };
    assert!(k.dispatches.len() > 1, "{what}: one dispatch");
    assert!(
        k.dispatches
            .iter()
            .any(|d| d.slots.iter().any(|s| s.range().is_some())),
        "{what}: no range slot"
    );
    assert_bindings(&what, &k, &ins, &outs, &l);
    let n = k.dispatches.len();
    check_with(c, l);
    n
}

/// The reason a case is refused under the limit.
fn refused(c: &Case, l: DeviceLimits) -> String {
    let (_, outs) = descs(c);
    match lowered(c, &outs, l) {
        Lowering::Unsupported(r) => r,
        other => panic!("{}: expected a refusal, got {other:?}", c.op),
    }
}

// ---------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------

#[test]
fn elementwise_chunks_need_not_divide_the_output() {
    let l = limit(KIB);
    // 1000 elements: chunks of 256, the last one short.
    let n = tiled(
        case(
            "Add",
            14,
            vec![Some(data(&[1000], 1)), Some(data(&[1000], 2))],
        ),
        l,
    );
    assert_eq!(n, 4);
    tiled(case("Relu", 14, vec![Some(data(&[33, 77], 3))]), l);
    tiled(
        case(
            "Sum",
            13,
            vec![
                Some(data(&[3, 401], 4)),
                Some(data(&[3, 401], 5)),
                Some(data(&[401], 6)),
            ],
        ),
        l,
    );
    tiled(
        case("Cast", 13, vec![Some(data(&[700], 7))]).int("to", 6),
        l,
    );
}

#[test]
fn elementwise_broadcast_inputs_small_and_large() {
    let l = limit(KIB);
    // A small broadcast input is bound whole.
    tiled(
        case(
            "Mul",
            14,
            vec![Some(data(&[7, 300], 1)), Some(data(&[7, 1], 2))],
        ),
        l,
    );
    tiled(
        case(
            "Sub",
            14,
            vec![Some(data(&[70, 30], 1)), Some(data(&[30], 2))],
        ),
        l,
    );
    // A large row broadcast down the output: each chunk binds the part of the row it reads.
    tiled(
        case(
            "Add",
            14,
            vec![Some(data(&[7, 300], 3)), Some(data(&[300], 4))],
        ),
        l,
    );
    // Both inputs broadcast and over the limit.
    tiled(
        case(
            "Mul",
            14,
            vec![Some(data(&[3, 1, 500], 5)), Some(data(&[1, 4, 500], 6))],
        ),
        l,
    );
    // A column over the limit broadcast along the rows.
    tiled(
        case(
            "Div",
            14,
            vec![Some(data(&[600, 3], 7)), Some(positive(&[600, 1], 8))],
        ),
        l,
    );
    // Integers, booleans and a scalar.
    let cond = case(
        "Greater",
        13,
        vec![Some(data(&[2, 600], 9)), Some(data(&[600], 10))],
    );
    tiled(cond, l);
    let x = int_data(&[2, 600], 11);
    let y = ints(&[], vec![5]);
    let c = TensorValue::Bool(
        ndarray::ArrayD::from_shape_vec(vec![600], (0..600).map(|i| i % 3 == 0).collect()).unwrap(),
    );
    tiled(case("Where", 16, vec![Some(c), Some(x), Some(y)]), l);
}

#[test]
fn fused_elementwise_chain_tiles() {
    let src = "opset _=17\ngraph @g(%x: f32[5,333], %b: f32[333]) -> (%y) {\n  %a = Add(%x, %b)\n  %r = Relu(%a)\n  %y = Exp(%r)\n  return %y\n}\n";
    let mut m = modc::parse_model(src).unwrap();
    let g = &mut m.graph;
    let group: Vec<_> = g.node_ids().collect();
    modc::make_fused(g, &group).unwrap();
    let (_, node) = m.graph.nodes().next().unwrap();
    let x = data(&[5, 333], 1);
    let b = data(&[333], 2);
    let l = limit(KIB);
    let ins = vec![
        Some(TensorDesc::new(DType::F32, &[5, 333])),
        Some(TensorDesc::new(DType::F32, &[333])),
    ];
    let outs = vec![TensorDesc::new(DType::F32, &[5, 333])];
    let info = NodeInfo {
        node,
        opset: 17,
        inputs: ins.clone(),
        outputs: outs.clone(),
        consts: vec![None, None],
        limits: l,
    };
    let k = match lower(&info) {
        Lowering::Kernels(k) => k,
        other => panic!("the fused chain is not lowered: {other:?}"),
    };
    assert!(k.dispatches.len() > 1);
    for d in &k.dispatches {
        validate(&d.label, &d.wgsl);
    }
    assert_bindings("fused", &k, &ins, &outs, &l);
    let Some(gpu) = modc::runtime::test_device() else {
        return;
    };
    let got = gpu
        .run_kernels(&k, &[Some(x.clone()), Some(b.clone())], &outs)
        .unwrap();
    let want = modc::Interpreter::new(&m)
        .run(vec![
            ("x".into(), modc::RtValue::Tensor(x)),
            ("b".into(), modc::RtValue::Tensor(b)),
        ])
        .unwrap();
    compare("fused", &got[0], want[0].1.as_tensor().unwrap());
}

// ---------------------------------------------------------------------------
// MatMul and Gemm
// ---------------------------------------------------------------------------

#[test]
fn matmul_splits_rows_batches_and_k() {
    let l = limit(4 * KIB);
    // A [300, 20] (24 KB) and Y [300, 9]: rows.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[300, 20], 1)), Some(data(&[20, 9], 2))],
        ),
        l,
    );
    // Batches of whole matrices.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[13, 9, 20], 3)), Some(data(&[13, 20, 7], 4))],
        ),
        l,
    );
    // A broadcast B over the batch.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[3, 70, 24], 5)), Some(data(&[24, 10], 6))],
        ),
        l,
    );
    // B [1100, 8] over the limit: k parts accumulate.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[5, 1100], 7)), Some(data(&[1100, 8], 8))],
        ),
        l,
    );
    // Vector operands and int32.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[2000], 9)), Some(data(&[2000, 3], 10))],
        ),
        l,
    );
    let a = modc::TensorValue::I32(
        ndarray::ArrayD::from_shape_vec(vec![40, 50], (0..2000).map(|i| (i % 7) - 3).collect())
            .unwrap(),
    );
    let b = modc::TensorValue::I32(
        ndarray::ArrayD::from_shape_vec(vec![50, 3], (0..150).map(|i| (i % 5) - 2).collect())
            .unwrap(),
    );
    tiled(case("MatMul", 13, vec![Some(a), Some(b)]), l);
}

#[test]
fn gemm_splits_with_transposes_and_bias() {
    let l = limit(4 * KIB);
    for (ta, tb) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
        let a = if ta == 1 {
            data(&[24, 130], 1)
        } else {
            data(&[130, 24], 1)
        };
        let b = if tb == 1 {
            data(&[11, 24], 2)
        } else {
            data(&[24, 11], 2)
        };
        for c in [data(&[11], 3), data(&[130, 11], 4), data(&[130, 1], 5)] {
            tiled(
                case("Gemm", 13, vec![Some(a.clone()), Some(b.clone()), Some(c)])
                    .int("transA", ta)
                    .int("transB", tb)
                    .float("alpha", 0.5)
                    .float("beta", 1.5),
                l,
            );
        }
    }
    // A large B: k parts, the first writing alpha * AB + beta * C, the rest adding.
    tiled(
        case(
            "Gemm",
            13,
            vec![
                Some(data(&[3, 1100], 1)),
                Some(data(&[1100, 5], 2)),
                Some(data(&[5], 3)),
            ],
        )
        .float("alpha", 0.5)
        .float("beta", 1.5),
        l,
    );
    // A large transposed B: columns.
    tiled(
        case(
            "Gemm",
            13,
            vec![Some(data(&[6, 40], 1)), Some(data(&[50, 40], 2))],
        )
        .int("transB", 1),
        l,
    );
}

#[test]
fn matmul_splits_k_when_a_row_of_a_is_over_the_limit() {
    // A row of A holds 600 f32, over a 1 KiB binding: parts of k, accumulated.
    tiled(
        case(
            "MatMul",
            13,
            vec![Some(data(&[2, 600], 1)), Some(data(&[600, 2], 2))],
        ),
        limit(KIB),
    );
    // Four rows of B [300, 300] exceed 1 KiB: no split fits.
    let wide = case(
        "MatMul",
        13,
        vec![Some(data(&[300, 300], 1)), Some(data(&[300, 300], 2))],
    );
    let r = refused(&wide, limit(KIB));
    assert!(r.contains("1024-byte storage binding limit"), "{r}");
}

// ---------------------------------------------------------------------------
// Data movement
// ---------------------------------------------------------------------------

#[test]
fn copies_tile_their_output_and_input() {
    let l = limit(KIB);
    // A transpose within outer blocks that fit.
    tiled(
        case("Transpose", 13, vec![Some(data(&[6, 20, 10], 1))]).ints("perm", &[0, 2, 1]),
        l,
    );
    // Slices, one reversed.
    tiled(
        case(
            "Slice",
            13,
            vec![
                Some(data(&[50, 30], 2)),
                i64s(&[3, 29]),
                i64s(&[45, -100]),
                i64s(&[0, 1]),
                i64s(&[2, -1]),
            ],
        ),
        l,
    );
    // Expand of a row longer than a binding; Tile of one that fits.
    tiled(
        case(
            "Expand",
            13,
            vec![Some(data(&[1, 300], 3)), i64s(&[4, 300])],
        ),
        l,
    );
    tiled(
        case("Tile", 13, vec![Some(data(&[3, 100], 4)), i64s(&[2, 3])]),
        l,
    );
    // Concat and Split along both axes.
    for axis in [0, 1] {
        let b = if axis == 0 {
            data(&[17, 20], 6)
        } else {
            data(&[20, 17], 6)
        };
        tiled(
            case("Concat", 13, vec![Some(data(&[20, 20], 5)), Some(b)]).int("axis", axis),
            l,
        );
    }
    tiled(
        case("Split", 13, vec![Some(data(&[30, 20], 7)), i64s(&[10, 20])])
            .int("axis", 0)
            .outputs(2),
        l,
    );
    tiled(
        case("Split", 13, vec![Some(data(&[20, 30], 8)), i64s(&[13, 17])])
            .int("axis", 1)
            .outputs(2),
        l,
    );
    tiled(
        case("SpaceToDepth", 13, vec![Some(data(&[2, 3, 10, 12], 9))]).int("blocksize", 2),
        l,
    );
}

#[test]
fn a_transpose_of_a_large_tensor_s_outer_axis_is_refused() {
    let c = case("Transpose", 13, vec![Some(data(&[40, 30], 1))]).ints("perm", &[1, 0]);
    let r = refused(&c, limit(KIB));
    assert!(r.contains("1024-byte storage binding limit"), "{r}");
}

#[test]
fn gather_splits_a_large_table_by_rows() {
    let l = limit(KIB);
    // An embedding table of 500 rows of 3 (1,500 f32): rows split, indices negative too.
    let idx = ints(
        &[7, 2],
        vec![0, 499, -1, 250, 3, 128, 300, 1, -500, 77, 86, 200, 498, 42],
    );
    tiled(
        case("Gather", 13, vec![Some(data(&[500, 3], 1)), Some(idx)]),
        l,
    );
    // A large output from a table that fits.
    let many = ints(&[60], (0..60).map(|i| (i * 7) % 40 - 20).collect());
    tiled(
        case(
            "Gather",
            13,
            vec![Some(data(&[40, 5], 2)), Some(many.clone())],
        ),
        l,
    );
    // Both large, and a gathered axis that is not the first.
    tiled(
        case("Gather", 13, vec![Some(data(&[40, 10], 3)), Some(many)]),
        l,
    );
    let idx = ints(&[5], vec![0, 99, -3, 50, 7]);
    tiled(
        case("Gather", 13, vec![Some(data(&[4, 100, 3], 4)), Some(idx)]).int("axis", 1),
        l,
    );
    // GatherElements with both input and indices over the limit.
    let idx = ints(&[30, 15], (0..450).map(|i| (i * 13) % 20 - 10).collect());
    tiled(
        case(
            "GatherElements",
            13,
            vec![Some(data(&[30, 20], 5)), Some(idx)],
        )
        .int("axis", 1),
        l,
    );
}

#[test]
fn pad_tiles_its_output() {
    let l = limit(KIB);
    for mode in ["constant", "edge", "reflect", "wrap"] {
        tiled(
            case(
                "Pad",
                18,
                vec![Some(data(&[10, 20], 1)), i64s(&[1, 2, 3, 4])],
            )
            .string("mode", mode),
            l,
        );
    }
    let big = case(
        "Pad",
        18,
        vec![Some(data(&[20, 20], 1)), i64s(&[1, 1, 1, 1])],
    );
    let r = refused(&big, l);
    assert!(r.contains("1024-byte storage binding limit"), "{r}");
}

// ---------------------------------------------------------------------------
// Row-wise
// ---------------------------------------------------------------------------

#[test]
fn row_wise_ops_split_along_rows() {
    let l = limit(KIB);
    tiled(case("Softmax", 13, vec![Some(data(&[30, 45], 1))]), l);
    tiled(
        case("LogSoftmax", 13, vec![Some(data(&[6, 30, 5], 2))]).int("axis", 1),
        l,
    );
    tiled(
        case("Softmax", 11, vec![Some(data(&[4, 5, 30], 3))]).int("axis", 2),
        l,
    );
    let x = data(&[3, 50, 40], 4);
    tiled(
        case(
            "LayerNormalization",
            17,
            vec![Some(x.clone()), Some(data(&[40], 5)), Some(data(&[40], 6))],
        )
        .int("axis", -1),
        l,
    );
    tiled(
        case(
            "LayerNormalization",
            17,
            vec![Some(x), Some(data(&[40], 5)), Some(data(&[40], 6))],
        )
        .int("axis", -1)
        .outputs(3),
        l,
    );
    tiled(
        case("LpNormalization", 13, vec![Some(data(&[7, 60, 3], 7))]).int("axis", 1),
        l,
    );
    // Reductions, one invocation or one workgroup per row, and arg reductions.
    tiled(
        case("ReduceSum", 13, vec![Some(data(&[40, 30], 9)), i64s(&[1])]).int("keepdims", 0),
        l,
    );
    tiled(
        case(
            "ReduceMax",
            18,
            vec![Some(data(&[20, 30, 4], 10)), i64s(&[1])],
        ),
        l,
    );
    tiled(
        case(
            "ReduceMean",
            18,
            vec![Some(data(&[6, 100, 5], 11)), i64s(&[1])],
        ),
        limit(4 * KIB),
    );
    tiled(
        case(
            "ReduceSum",
            13,
            vec![Some(int_data(&[40, 30], 12)), i64s(&[-1])],
        ),
        l,
    );
    tiled(
        case("ArgMax", 13, vec![Some(data(&[30, 40], 13))]).int("axis", 1),
        l,
    );
    tiled(
        case("ArgMin", 13, vec![Some(data(&[4, 20, 7], 14))])
            .int("axis", 1)
            .int("keepdims", 0),
        l,
    );
    tiled(
        case("CumSum", 14, vec![Some(data(&[30, 40], 15)), i64s(&[1])]),
        l,
    );
    tiled(
        case(
            "CumSum",
            14,
            vec![Some(int_data(&[30, 40], 16)), Some(ints(&[], vec![-1]))],
        )
        .int("exclusive", 1)
        .int("reverse", 1),
        l,
    );
    let all = case(
        "ReduceSum",
        13,
        vec![Some(data(&[20, 30], 17)), i64s(&[0, 1])],
    );
    let r = refused(&all, l);
    assert!(r.contains("1024-byte storage binding limit"), "{r}");
    let one_row = case("Softmax", 13, vec![Some(data(&[2, 300], 8))]);
    let r = refused(&one_row, l);
    assert!(r.contains("1024-byte storage binding limit"), "{r}");
}

// ---------------------------------------------------------------------------
// The device's own limit
// ---------------------------------------------------------------------------

/// Tensors over 128 MiB at the real limit: an Add of two 34M-element tensors and a
/// MatMul whose A is 138 MB, checked on a sample of outputs.
#[test]
fn tensors_over_the_real_binding_limit() {
    let n = 34_000_000usize;
    let l = DeviceLimits::default();
    let f = |i: usize, s: usize| ((i * s + 7) % 1000) as f32 / 100.0 - 5.0;
    let (m, k, nn) = (540_000usize, 64usize, 16usize);
    let adds = (
        vec![
            Some(TensorDesc::new(DType::F32, &[n])),
            Some(TensorDesc::new(DType::F32, &[n])),
        ],
        vec![TensorDesc::new(DType::F32, &[n])],
    );
    let mms = (
        vec![
            Some(TensorDesc::new(DType::F32, &[m, k])),
            Some(TensorDesc::new(DType::F32, &[k, nn])),
        ],
        vec![TensorDesc::new(DType::F32, &[m, nn])],
    );
    assert!(4 * (n as u64) > l.max_storage_binding && 4 * (m * k) as u64 > l.max_storage_binding);
    let mut kernels = vec![];
    for ((op, opset), (ins, outs)) in [(("Add", 14), &adds), (("MatMul", 13), &mms)] {
        // The node itself; its inputs' shapes are the descriptions'.
        let (_, node) = model(&Case {
            inputs: vec![None, None],
            ..case(op, opset, vec![])
        });
        let info = NodeInfo {
            node: &node,
            opset,
            inputs: ins.clone(),
            outputs: outs.clone(),
            consts: vec![None, None],
            limits: l,
        };
        let Lowering::Kernels(kern) = lower(&info) else {
            panic!("{op}: a tensor over the limit is not lowered to kernels")
        };
        assert!(kern.dispatches.len() > 1, "{op}");
        assert_bindings(op, &kern, ins, outs, &l);
        for d in &kern.dispatches {
            validate(&d.label, &d.wgsl);
        }
        kernels.push(kern);
    }
    let Some(gpu) = modc::runtime::test_device() else {
        return;
    };
    assert!(
        gpu.limits().max_storage_binding >= l.max_storage_binding,
        "the device binds less than the default limit"
    );
    // Add.
    let a: Vec<f32> = (0..n).map(|i| f(i, 3)).collect();
    let b: Vec<f32> = (0..n).map(|i| f(i, 11)).collect();
    let ins = [
        Some(TensorValue::from_f32(&[n], a)),
        Some(TensorValue::from_f32(&[n], b)),
    ];
    let got = gpu.run_kernels(&kernels[0], &ins, &adds.1).unwrap();
    let TensorValue::F32(y) = &got[0] else {
        panic!("f32 output")
    };
    let y = y.as_slice().unwrap();
    for i in (0..n)
        .step_by(9973)
        .chain([n - 1, n / 2, 33_554_431, 33_554_432])
    {
        assert_eq!(y[i], f(i, 3) + f(i, 11), "Add element {i}");
    }
    drop(got);
    // MatMul.
    let av: Vec<f32> = (0..m * k).map(|i| f(i, 7)).collect();
    let bv: Vec<f32> = (0..k * nn).map(|i| f(i, 13)).collect();
    let ins = [
        Some(TensorValue::from_f32(&[m, k], av.clone())),
        Some(TensorValue::from_f32(&[k, nn], bv.clone())),
    ];
    let got = gpu.run_kernels(&kernels[1], &ins, &mms.1).unwrap();
    let TensorValue::F32(y) = &got[0] else {
        panic!("f32 output")
    };
    let y = y.as_slice().unwrap();
    for r in (0..m).step_by(4099).chain([m - 1, 524_287, 524_288]) {
        for c in 0..nn {
            let want: f32 = (0..k).map(|j| av[r * k + j] * bv[j * nn + c]).sum();
            let g = y[r * nn + c];
            assert!(
                (g - want).abs() <= 1e-3 + 1e-4 * want.abs(),
                "MatMul [{r}, {c}]: {g} vs {want}"
            );
        }
    }
}
