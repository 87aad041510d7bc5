//! `modc run --backend gpu` gives the CPU path's outputs (same stdout format, same
//! .npy files within f32 tolerance) and tells which backend ran each op type;
//! `modc bench` prints a median on both backends; bad backends, adapters and
//! inputs are one-line errors with exit code 1 (2 for clap's own usage errors).
//!
//! The GPU parts skip with a printed reason when there is no adapter, and fail
//! when `MODC_REQUIRE_GPU=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn modc() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modc"));
    c.env("MODC_LOG", "off");
    c
}

/// Conv (weights as a literal) -> SiLU -> Softmax, with a symbolic batch.
fn write_model(dir: &Path) -> PathBuf {
    let w: Vec<String> = (0..54)
        .map(|i| format!("{:.1}", ((i * 37) % 19 - 9) as f32 / 10.0))
        .collect();
    let text = format!(
        "opset _=17\ngraph @g(%x: f32[batch,2,6,6]) -> (%y) {{\n  \
         %w = const f32[3,2,3,3] @w [{}]\n  \
         %0 = Conv(%x, %w) {{pads=[1,1,1,1]}} : f32[batch,3,6,6]\n  \
         %1 = Sigmoid(%0) : f32[batch,3,6,6]\n  \
         %2 = Mul(%0, %1) : f32[batch,3,6,6]\n  \
         %y = Softmax(%2) {{axis=1}} : f32[batch,3,6,6]\n  \
         return %y\n}}\n",
        w.join(", ")
    );
    let m = modc::parse_model(&text).unwrap();
    let p = dir.join("m.onnx");
    modc::save(&m, &p, &modc::SaveOptions::default()).unwrap();
    p
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// The last line of stderr is `modc: error: ...` naming `needle`, exit code 1,
/// no panic.
fn assert_error(out: &Output, needle: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("modc: error: ") && last.contains(needle),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked") && !err.contains("internal error"));
}

fn run(model: &Path, backend: &str, out_dir: &Path) -> Output {
    modc()
        .arg("run")
        .arg(model)
        .args(["--backend", backend, "--random", "--dim", "batch=2"])
        .args(["--seed", "7", "--output-dir"])
        .arg(out_dir)
        .output()
        .unwrap()
}

/// Everything but the `ran in` line: the outputs' summary lines.
fn summary(stdout: &[u8]) -> Vec<String> {
    text(stdout)
        .lines()
        .filter(|l| !l.starts_with("ran in "))
        .map(str::to_string)
        .collect()
}

#[test]
fn gpu_run_matches_cpu_run() {
    if modc::runtime::test_device().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let cpu = run(&model, "cpu", &dir.path().join("cpu"));
    assert_ok(&cpu);
    let gpu = run(&model, "gpu", &dir.path().join("gpu"));
    assert_ok(&gpu);
    let err = text(&gpu.stderr);
    assert!(err.contains("modc: adapter: "), "{err}");
    assert!(
        err.contains("4 nodes on the GPU, 0 on the CPU"),
        "every op of the model has a kernel: {err}"
    );
    for op in ["Conv", "Sigmoid", "Mul", "Softmax"] {
        assert!(
            err.lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [op, "1", "0"]),
            "{op} on the GPU: {err}"
        );
    }
    assert!(text(&gpu.stdout).contains("y: f32[2, 3, 6, 6] ["));
    assert!(text(&gpu.stdout).contains("ran in "));
    let (c, g) = (summary(&cpu.stdout), summary(&gpu.stdout));
    assert_eq!(c.len(), g.len());
    let c = modc::read_npy(&dir.path().join("cpu/output_0.npy")).unwrap();
    let g = modc::read_npy(&dir.path().join("gpu/output_0.npy")).unwrap();
    assert_eq!(c.shape(), g.shape());
    let (c, g) = (c.to_f64_vec().unwrap(), g.to_f64_vec().unwrap());
    assert!(
        c.iter().any(|&x| x != c[0]),
        "a degenerate output proves nothing"
    );
    for (k, (a, b)) in c.iter().zip(&g).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 + 1e-4 * a.abs(),
            "element {k}: cpu {a}, gpu {b}"
        );
    }
}

fn bench(model: &Path, backend: &str, extra: &[&str]) -> Output {
    modc()
        .arg("bench")
        .arg(model)
        .args(["--backend", backend, "--random", "--dim", "batch=3"])
        .args(["--repeat", "5", "--warmup", "1"])
        .args(extra)
        .output()
        .unwrap()
}

fn assert_bench_figures(out: &Output) {
    assert_ok(out);
    let s = text(&out.stdout);
    let line = s
        .lines()
        .find(|l| l.starts_with("latency: median "))
        .unwrap_or_else(|| panic!("no median: {s}"));
    let median: f64 = line["latency: median ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(median > 0.0, "{s}");
    assert!(s.contains("(5 runs after 1 warm-up)"), "{s}");
    assert!(s.contains("samples/s (batch 3)"), "{s}");
}

#[test]
fn bench_prints_median_on_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    assert_bench_figures(&bench(&model, "cpu", &[]));
    let j = bench(&model, "cpu", &["--json"]);
    assert_ok(&j);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert!(v["median_ms"].as_f64().unwrap() > 0.0);
    assert!(v["p10_ms"].as_f64().unwrap() <= v["p90_ms"].as_f64().unwrap());
    assert_eq!(v["repeat"], 5);
    assert_eq!(v["batch"], 3);
}

#[test]
fn bench_prints_median_on_gpu() {
    if modc::runtime::test_device().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let out = bench(&model, "gpu", &[]);
    assert_bench_figures(&out);
    let s = text(&out.stdout);
    assert!(s.contains("session built in "), "{s}");
    assert!(s.contains("(4 nodes on the GPU, 0 on the CPU)"), "{s}");
    let j = bench(&model, "gpu", &["--json"]);
    assert_ok(&j);
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).unwrap();
    assert_eq!(v["gpu_nodes"], 4);
    assert_eq!(v["cpu_nodes"], 0);
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()));
}

#[test]
fn unknown_backend_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    for cmd in ["run", "bench"] {
        let out = modc()
            .arg(cmd)
            .arg(&model)
            .args(["--backend", "tpu", "--random"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(err.contains("'tpu'") && err.contains("gpu"), "{err}");
    }
}

#[test]
fn unknown_adapter_is_a_clear_error() {
    // With or without a GPU: no adapter's name contains this.
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    for cmd in ["run", "bench"] {
        let out = modc()
            .arg(cmd)
            .arg(&model)
            .args(["--backend", "gpu", "--random", "--dim", "batch=1"])
            .args(["--adapter", "no-such-adapter-xyz"])
            .output()
            .unwrap();
        assert_error(&out, "adapter");
    }
    let out = run(&model, "cpu", &dir.path().join("o"));
    assert_ok(&out);
    let out = modc()
        .arg("run")
        .arg(&model)
        .args(["--random", "--dim", "batch=1", "--adapter", "llvmpipe"])
        .output()
        .unwrap();
    assert_error(&out, "--adapter needs --backend gpu");
}

#[test]
fn bad_inputs_are_errors_before_the_device_opens() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path());
    let x = modc::TensorValue::from_f32(&[2, 3], vec![0.0; 6]);
    let xp = dir.path().join("x.npy");
    modc::write_npy(&xp, &x).unwrap();
    for cmd in ["run", "bench"] {
        let out = modc()
            .arg(cmd)
            .arg(&model)
            .args(["--backend", "gpu", "--input"])
            .arg(format!("nope={}", xp.display()))
            .output()
            .unwrap();
        assert_error(&out, "no input named 'nope'");
        let out = modc()
            .arg(cmd)
            .arg(&model)
            .args(["--backend", "gpu", "--input"])
            .arg(format!("x={}", xp.display()))
            .output()
            .unwrap();
        assert_error(&out, "x");
        assert!(!text(&out.stderr).contains("modc: adapter"));
        let out = modc()
            .arg(cmd)
            .arg(&model)
            .args(["--backend", "gpu"])
            .output()
            .unwrap();
        assert_error(&out, "input 'x'");
    }
}
