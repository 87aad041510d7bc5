//! `modc run`: outputs written as .npy in graph order, and clear one-line errors
//! with exit code 1 for bad inputs (missing, wrong element type, wrong rank,
//! unknown name, unsupported op).

use std::path::Path;
use std::process::Command;

fn modc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modc"))
}

fn write_model(dir: &Path, text: &str) -> std::path::PathBuf {
    let m = modc::parse_model(text).unwrap();
    let p = dir.join("m.onnx");
    modc::save(&m, &p, &modc::SaveOptions::default()).unwrap();
    p
}

const RELU: &str =
    "opset _=17\ngraph @g(%x: f32[2,3]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n";

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.starts_with("modc: error: ") && err.contains(needle),
        "stderr: {err}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn runs_and_writes_outputs_as_npy() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), RELU);
    let x = modc::TensorValue::from_f32(&[2, 3], vec![-1.0, 2.0, -3.0, 4.0, -5.0, 6.0]);
    modc::write_npy(&dir.path().join("x.npy"), &x).unwrap();
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--input"])
        .arg(format!("x={}", dir.path().join("x.npy").display()))
        .arg("--output-dir")
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("y: f32[2, 3]"), "{stdout}");
    let y = modc::read_npy(&dir.path().join("out/output_0.npy")).unwrap();
    assert_eq!(
        y,
        modc::TensorValue::from_f32(&[2, 3], vec![0.0, 2.0, 0.0, 4.0, 0.0, 6.0])
    );
}

#[test]
fn random_inputs_need_symbolic_dims() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(
        dir.path(),
        "opset _=17\ngraph @g(%x: f32[batch,3]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n",
    );
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--random"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "--dim batch=N");
    let out = modc()
        .args([
            "run",
            model.to_str().unwrap(),
            "--random",
            "--dim",
            "batch=4",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("y: f32[4, 3]"));
}

#[test]
fn missing_input_names_it_and_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), RELU);
    let out = modc()
        .args(["run", model.to_str().unwrap()])
        .output()
        .unwrap();
    assert_one_line_error(&out, "input 'x' (f32[2,3]) is not given");
}

#[test]
fn wrong_dtype_and_rank_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), RELU);
    let p = dir.path().join("x.npy");
    modc::write_npy(&p, &modc::TensorValue::from_i64(&[2, 3], vec![0; 6])).unwrap();
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--input"])
        .arg(format!("x={}", p.display()))
        .output()
        .unwrap();
    assert_one_line_error(&out, "expected element type f32, got i64");
    modc::write_npy(&p, &modc::TensorValue::from_f32(&[6], vec![0.0; 6])).unwrap();
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--input"])
        .arg(format!("x={}", p.display()))
        .output()
        .unwrap();
    assert_one_line_error(&out, "expected rank 2");
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--input", "nope=x.npy"])
        .output()
        .unwrap();
    assert_one_line_error(&out, "no input named 'nope'");
}

#[test]
fn unsupported_op_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), "opset _=17, com.example=1\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = com.example::Frobnicate(%x)\n  return %y\n}\n");
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--random"])
        .output()
        .unwrap();
    assert_one_line_error(
        &out,
        "op Frobnicate is not supported (domain 'com.example')",
    );
}

#[test]
fn float16_npy_inputs_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(
        dir.path(),
        "opset _=17\ngraph @g(%x: f16[3]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n",
    );
    // numpy's float16 .npy of [-1.0, 0.5, 2.0], written by hand.
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let mut header = "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    for v in [-1.0f32, 0.5, 2.0] {
        npy.extend(half::f16::from_f32(v).to_bits().to_le_bytes());
    }
    std::fs::write(dir.path().join("x.npy"), npy).unwrap();
    let out = modc()
        .args(["run", model.to_str().unwrap(), "--input"])
        .arg(format!("x={}", dir.path().join("x.npy").display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("y: f16[3] [0.000000, 0.500000, 2.000000]"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
