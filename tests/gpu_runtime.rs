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
