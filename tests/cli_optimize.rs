//! `modc optimize`: the shipped model optimizes and verifies, the report and dump
//! folder are written, and bad input (corrupt model, unknown pass, output over the
//! input) gives one clear error line, exit code 1, no output file, and an
//! untouched input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn modc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modc"))
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "stderr: {err}");
    assert!(
        err.starts_with("modc: error: ") && err.contains(needle),
        "stderr: {err}"
    );
}

#[test]
fn shipped_model_optimizes_verifies_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cls.onnx");
    std::fs::copy(shipped(), &input).unwrap();
    let original_bytes = std::fs::read(&input).unwrap();
    let out = dir.path().join("cls.opt.onnx");
    let report = dir.path().join("report.json");
    let o = modc()
        .arg("optimize")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["-O", "2", "--verify", "--verify-each", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("counted nodes") && stdout.contains("verified on"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read(&input).unwrap(),
        original_bytes,
        "input modified"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let before = r["nodes_before"].as_u64().unwrap();
    let after = r["nodes_after"].as_u64().unwrap();
    assert!(after < before, "{before} -> {after}");
    assert!(r["size_after"].as_f64().unwrap() <= r["size_before"].as_f64().unwrap() * 1.01);
    assert!(r["passes"].as_array().unwrap().len() > 3);
    assert!(r["verify"]["runs"].as_u64().unwrap() >= 1);
    // The output loads, and the interpreter agrees with the original on it.
    let a = modc::load(&input, &modc::LoadPolicy::default()).unwrap();
    let b = modc::load(&out, &modc::LoadPolicy::default()).unwrap();
    assert_eq!(
        modc::pass::edit::counted_nodes(&b.graph) as u64,
        after,
        "the report counts what was saved"
    );
    modc::pass::equiv::check_equivalent(&a, &b, &Default::default()).unwrap();
}

#[test]
fn dump_dir_and_stop_after_bisect_a_pipeline() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.onnx");
    let dump = dir.path().join("dump");
    let report = dir.path().join("r.json");
    let o = modc()
        .arg("optimize")
        .arg(shipped())
        .arg("-o")
        .arg(&out)
        .args([
            "--passes",
            "infer,(fold,dce),cse",
            "--stop-after",
            "2",
            "--quiet",
        ])
        .arg("--dump-dir")
        .arg(&dump)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty(), "--quiet prints nothing");
    let mut files: Vec<String> = std::fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "001-infer.after.ir",
            "001-infer.before.ir",
            "002-fold.after.ir",
            "002-fold.before.ir"
        ]
    );
    let before = std::fs::read_to_string(dump.join("002-fold.before.ir")).unwrap();
    assert_eq!(
        before,
        std::fs::read_to_string(dump.join("001-infer.after.ir")).unwrap()
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["stop"], "step-limit");
    assert_eq!(r["passes"].as_array().unwrap().len(), 2);
}

#[test]
fn corrupt_model_is_a_clear_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.onnx");
    let bytes = std::fs::read(shipped()).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let out = dir.path().join("o.onnx");
    let o = modc()
        .arg("optimize")
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert_one_line_error(&o, "bad.onnx");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temp file left"
    );
}

#[test]
fn unknown_pass_and_output_over_input_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.onnx");
    std::fs::copy(shipped(), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let out = dir.path().join("o.onnx");
    let o = modc()
        .arg("optimize")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .args(["--passes", "fold,frobnicate"])
        .output()
        .unwrap();
    assert_one_line_error(&o, "unknown pass 'frobnicate'");
    assert!(!out.exists());
    let o = modc()
        .arg("optimize")
        .arg(&input)
        .arg("-o")
        .arg(&input)
        .output()
        .unwrap();
    assert_one_line_error(&o, "would overwrite the input");
    assert_eq!(std::fs::read(&input).unwrap(), original);
}

#[test]
fn text_form_input_optimizes() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("m.ir");
    std::fs::write(
        &input,
        "opset _=17\ngraph @g(%x: f32[batch,4]) -> (%y) {\n  %a = Identity(%x)\n  %b = Identity(%a)\n  %y = Relu(%b)\n  return %y\n}\n",
    )
    .unwrap();
    let out = dir.path().join("m.onnx");
    let o = modc()
        .arg("optimize")
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .arg("--verify")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = modc::load(&out, &modc::LoadPolicy::default()).unwrap();
    assert_eq!(m.graph.node_count(), 1);
    assert_eq!(
        m.graph
            .value(m.graph.inputs[0])
            .ty
            .as_ref()
            .unwrap()
            .to_string(),
        "f32[batch,4]"
    );
}

#[test]
fn list_passes_names_every_pass_and_level() {
    let o = modc().arg("list-passes").output().unwrap();
    let s = String::from_utf8_lossy(&o.stdout);
    for name in modc::pass::pass_names() {
        assert!(s.contains(name), "{s}");
    }
    assert!(s.contains("O2"));
}
