//! The GPU runtime on a real adapter (lavapipe in CI): device, kernels run on
//! uploaded inputs, conversions, errors that name what failed. Skips without an
//! adapter unless `MODC_REQUIRE_GPU=1`.

use modc::codegen::{Dispatch, NodeKernels, Slot, TensorDesc};
use modc::runtime::{test_device, Gpu, GpuOptions, RuntimeError};
use modc::{DType, TensorValue};

const ADD_I32: &str = r#"
@group(0) @binding(0) var<storage, read> a: array<i32>;
@group(0) @binding(1) var<storage, read> b: array<i32>;
@group(0) @binding(2) var<storage, read_write> y: array<i32>;
struct P { n: u32, k: u32 }
@group(0) @binding(3) var<uniform> p: P;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>) {
    if (g.x < p.n) { y[g.x] = a[g.x] + b[g.x] * i32(p.k); }
}
"#;

fn add_kernels(n: usize, k: u32) -> NodeKernels {
    NodeKernels {
        dispatches: vec![Dispatch {
            label: "test_add_i32".into(),
            wgsl: ADD_I32.into(),
            slots: vec![Slot::Input(0), Slot::Input(1), Slot::Output(0)],
            params: vec![n as u32, k],
            workgroups: [(n as u32).div_ceil(64), 1, 1],
        }],
        temps: vec![],
    }
}

#[test]
fn hand_written_kernel_runs_with_int64_conversion_and_params() {
    let Some(gpu) = test_device() else { return };
    let n = 300;
    let a: Vec<i64> = (0..n as i64).map(|i| i - 100).collect();
    let b: Vec<i64> = (0..n as i64).map(|i| 3 * i).collect();
    let out = gpu
        .run_kernels(
            &add_kernels(n, 2),
            &[
                Some(TensorValue::from_i64(&[3, 100], a.clone())),
                Some(TensorValue::from_i64(&[3, 100], b.clone())),
            ],
            &[TensorDesc::new(DType::I64, &[3, 100])],
        )
        .unwrap();
    let want: Vec<i64> = a.iter().zip(&b).map(|(x, y)| x + 2 * y).collect();
    assert_eq!(out, vec![TensorValue::from_i64(&[3, 100], want)]);
    let t = gpu
        .time_kernels(
            &add_kernels(n, 2),
            &[
                Some(TensorValue::from_i64(&[3, 100], a.clone())),
                Some(TensorValue::from_i64(&[3, 100], b)),
            ],
            &[TensorDesc::new(DType::I64, &[3, 100])],
            3,
        )
        .unwrap();
    assert!(t > std::time::Duration::ZERO);
}

#[test]
fn int64_out_of_range_is_an_error_naming_the_tensor() {
    let Some(gpu) = test_device() else { return };
    let e = gpu
        .run_kernels(
            &add_kernels(1, 1),
            &[
                Some(TensorValue::from_i64(&[1], vec![1 << 33])),
                Some(TensorValue::from_i64(&[1], vec![0])),
            ],
            &[TensorDesc::new(DType::I64, &[1])],
        )
        .unwrap_err();
    assert!(matches!(e, RuntimeError::Tensor { .. }), "{e}");
    assert!(e.to_string().contains("input 0"), "{e}");
}

#[test]
fn invalid_shader_names_the_kernel() {
    let Some(gpu) = test_device() else { return };
    let mut k = add_kernels(4, 1);
    k.dispatches[0].wgsl = ADD_I32.replace("a[g.x] +", "a[g.x] + undefined_name +");
    k.dispatches[0].label = "broken_add".into();
    let x = TensorValue::from_i64(&[4], vec![1, 2, 3, 4]);
    let e = gpu
        .run_kernels(
            &k,
            &[Some(x.clone()), Some(x)],
            &[TensorDesc::new(DType::I64, &[4])],
        )
        .unwrap_err();
    assert!(e.to_string().contains("broken_add"), "{e}");
}

#[test]
fn missing_adapter_name_is_a_clear_error() {
    if test_device().is_none() {
        return;
    }
    let e = Gpu::new(&GpuOptions {
        adapter: Some("no-such-adapter-xyz".into()),
    })
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("no-such-adapter-xyz") && s.contains("available"),
        "{s}"
    );
}

#[test]
fn limits_come_from_the_device() {
    let Some(gpu) = test_device() else { return };
    let l = gpu.limits();
    assert!(l.max_workgroups_per_dim >= 65_535);
    assert!(l.max_storage_binding >= 128 << 20);
    eprintln!("adapter: {}, limits {l:?}", gpu.adapter_name());
}

// ---- Sessions: fused nodes, If, real models ----

#[path = "common/session_case.rs"]
mod session_case;

use modc::runtime::Session;
use modc::Model;
use session_case::{matches_interpreter, models_dir, ramp};
use std::collections::HashMap;

fn fused_model(src: &str, ops: &[&str]) -> Model {
    let mut m = modc::parse_model(src).unwrap();
    let g = &mut m.graph;
    let group: Vec<_> = g
        .node_ids()
        .filter(|&n| ops.contains(&g.node(n).op_type.as_str()))
        .collect();
    modc::make_fused(g, &group).unwrap();
    modc::verify(g).unwrap();
    m
}

#[test]
fn fused_elementwise_node_is_one_kernel_and_matches_the_interpreter() {
    let Some(gpu) = test_device() else { return };
    let m = fused_model(
        "opset _=17\ngraph @g(%x: f32[2,3,4], %b: f32[4]) -> (%y) {\n  %a = Add(%x, %b)\n  %r = Relu(%a)\n  %y = Exp(%r)\n  return %y\n}\n",
        &["Add", "Relu", "Exp"],
    );
    let shapes = HashMap::from([("x".to_string(), vec![2, 3, 4]), ("b".to_string(), vec![4])]);
    let s = Session::new(gpu, &m, &shapes).unwrap();
    assert_eq!(s.fallback_count(), 0, "{:?}", s.backends());
    assert_eq!(s.backends()["Fused"].gpu, 1);
    assert_eq!(s.kernel_count(), 1);
    let inputs = vec![
        ("x".to_string(), ramp(&[2, 3, 4], 0.1)),
        ("b".to_string(), ramp(&[4], 0.05)),
    ];
    matches_interpreter(&m, &inputs, &s, 1e-5, 1e-6);
}

#[test]
fn fused_matmul_with_epilogue_runs_its_body_on_the_gpu() {
    let Some(gpu) = test_device() else { return };
    let m = fused_model(
        "opset _=17\ngraph @g(%x: f32[4,8], %w: f32[8,5], %b: f32[5]) -> (%y) {\n  %a = MatMul(%x, %w)\n  %c = Add(%a, %b)\n  %y = Relu(%c)\n  return %y\n}\n",
        &["MatMul", "Add", "Relu"],
    );
    let shapes = HashMap::from([
        ("x".to_string(), vec![4, 8]),
        ("w".to_string(), vec![8, 5]),
        ("b".to_string(), vec![5]),
    ]);
    let s = Session::new(gpu, &m, &shapes).unwrap();
    assert_eq!(s.fallback_count(), 0, "{:?}", s.backends());
    assert_eq!(s.backends()["Fused"].gpu, 1);
    assert_eq!(s.backends()["MatMul"].gpu, 1);
    let inputs = vec![
        ("x".to_string(), ramp(&[4, 8], 0.1)),
        ("w".to_string(), ramp(&[8, 5], 0.2)),
        ("b".to_string(), ramp(&[5], 0.3)),
    ];
    matches_interpreter(&m, &inputs, &s, 1e-4, 1e-5);
}

type Feeds = (HashMap<String, Vec<usize>>, Vec<(String, TensorValue)>);

fn silero_inputs() -> Feeds {
    let shapes = HashMap::from([
        ("input".to_string(), vec![1, 512]),
        ("state".to_string(), vec![2, 1, 128]),
        ("sr".to_string(), vec![]),
    ]);
    let input: Vec<f32> = (0..512).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    let state: Vec<f32> = (0..256).map(|i| ((i % 17) as f32 - 8.0) * 0.01).collect();
    let inputs = vec![
        ("input".to_string(), TensorValue::from_f32(&[1, 512], input)),
        (
            "state".to_string(),
            TensorValue::from_f32(&[2, 1, 128], state),
        ),
        ("sr".to_string(), TensorValue::from_i64(&[], vec![16000])),
    ];
    (shapes, inputs)
}

#[test]
#[ignore = "the branch's shape inference leaves /encoder/3 Relu without a concrete shape, so the nested If cannot be lowered"]
fn silero_runs_its_if_on_the_gpu_and_matches_the_interpreter() {
    let Some(dir) = models_dir() else { return };
    let Some(gpu) = test_device() else { return };
    let m = modc::load(
        dir.join("silero-vad/silero_vad.onnx"),
        &modc::LoadPolicy::default(),
    )
    .unwrap();
    let (shapes, inputs) = silero_inputs();
    let s = Session::new(gpu, &m, &shapes).unwrap();
    assert_eq!(s.backends()["If"].gpu, 1, "{:?}", s.backends()["If"]);
    eprintln!(
        "silero_vad: {} nodes fall back: {:?}",
        s.fallback_count(),
        s.backends()
            .iter()
            .filter(|(_, b)| b.cpu > 0)
            .collect::<Vec<_>>()
    );
    matches_interpreter(&m, &inputs, &s, 1e-3, 1e-4);
}
