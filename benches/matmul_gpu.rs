//! The matmul kernels on the device, measured in the same run: the naive 16x16
//! shared-memory tiled kernel against the register-tiled default, on square f32
//! products (512^3 and 1024^3), with a blocked CPU product (the interpreter's
//! MatMul, matrixmultiply's gemm) for scale. Prints GFLOP/s and the ratios; asserts
//! nothing about time.
//!
//! `cargo bench --bench matmul_gpu` (on lavapipe without a GPU). Options by
//! environment: `MODC_BENCH_SIZES=256,512` the sizes; `MODC_BENCH_TILES=
//! "8,8,1,1,16;16,4,1,2,8"` extra tilings to compare (wg_x, wg_y, tm4, tn4, bk);
//! `MODC_BENCH_REPS` repetitions (median reported, default 3).

use modc::codegen::{matmul_kernels, MatmulKernel, TensorDesc, TileConfig};
use modc::runtime::{Gpu, GpuOptions};
use modc::{Interpreter, RtValue, TensorValue};
use std::time::{Duration, Instant};

fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) % 1000) as f32 / 1000.0 - 0.5
        })
        .collect()
}

fn env_list(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn gflops(n: usize, t: Duration) -> f64 {
    2.0 * (n as f64).powi(3) / t.as_secs_f64() / 1e9
}

/// Median time of the interpreter's MatMul on the same operands.
fn cpu_time(n: usize, a: &TensorValue, b: &TensorValue, reps: usize) -> Duration {
    let text = format!(
        "opset _=17\ngraph @g(%a: f32[{n},{n}], %b: f32[{n},{n}]) -> (%y) {{\n  %y = MatMul(%a, %b)\n  return %y\n}}\n"
    );
    let model = modc::parse_model(&text).expect("model");
    let interp = Interpreter::new(&model);
    let feeds = || {
        vec![
            ("a".to_string(), RtValue::Tensor(a.clone())),
            ("b".to_string(), RtValue::Tensor(b.clone())),
        ]
    };
    let mut times = Vec::new();
    for _ in 0..reps + 1 {
        let t0 = Instant::now();
        interp.run(feeds()).expect("interpreter");
        times.push(t0.elapsed());
    }
    times.remove(0);
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let gpu = match Gpu::new(&GpuOptions::default()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("matmul_gpu: no device ({e}); nothing to measure");
            return;
        }
    };
    // `cargo test --all-targets` runs benches without `--bench`: one small size,
    // once, as a smoke test (both kernels still run and are compared).
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes: Vec<usize> = env_list("MODC_BENCH_SIZES")
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if measuring {
                vec![512, 1024]
            } else {
                vec![128]
            }
        });
    let reps: usize = env_list("MODC_BENCH_REPS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 3 } else { 1 });
    let extra: Vec<TileConfig> = env_list("MODC_BENCH_TILES")
        .map(|s| {
            s.split(';')
                .filter_map(|t| {
                    let v: Vec<u32> = t.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                    (v.len() == 5).then(|| TileConfig {
                        wg_x: v[0],
                        wg_y: v[1],
                        tm4: v[2],
                        tn4: v[3],
                        bk: v[4],
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    println!("matmul_gpu on '{}' (median of {reps})", gpu.adapter_name());
    let limits = gpu.limits();
    for &n in &sizes {
        let a = TensorValue::from_f32(&[n, n], values(n * n, 1));
        let b = TensorValue::from_f32(&[n, n], values(n * n, 2));
        let inputs = [Some(a.clone()), Some(b.clone())];
        let out = [TensorDesc::new(modc::DType::F32, &[n, n])];
        let mut kernels = vec![
            ("naive 16x16 tiled".to_string(), MatmulKernel::Naive),
            (
                format!("register-tiled {:?}", TileConfig::for_shape(n, n)),
                MatmulKernel::Tiled(TileConfig::for_shape(n, n)),
            ),
        ];
        kernels.extend(
            extra
                .iter()
                .map(|&t| (format!("register-tiled {t:?}"), MatmulKernel::Tiled(t))),
        );
        let mut naive = None;
        for (name, kernel) in kernels {
            let k = match matmul_kernels(kernel, n, n, n, &limits) {
                Ok(k) => k,
                Err(e) => {
                    println!("  {n}^3 {name}: {e}");
                    continue;
                }
            };
            match gpu.time_kernels(&k, &inputs, &out, reps) {
                Ok(t) => {
                    let g = gflops(n, t);
                    let ratio = naive
                        .map(|base: f64| format!("  {:.1}x naive", g / base))
                        .unwrap_or_default();
                    naive.get_or_insert(g);
                    println!(
                        "  {n}^3 {name}: {:.1} ms, {g:.2} GFLOP/s{ratio}",
                        t.as_secs_f64() * 1e3
                    );
                }
                Err(e) => println!("  {n}^3 {name}: {e}"),
            }
        }
        let t = cpu_time(n, &a, &b, reps);
        println!(
            "  {n}^3 CPU blocked (interpreter, matrixmultiply): {:.1} ms, {:.2} GFLOP/s",
            t.as_secs_f64() * 1e3,
            gflops(n, t)
        );
    }
}
