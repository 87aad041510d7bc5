//! The opset upgrade (`modc::upgrade_opset`, `modc optimize --opset N`).
//!
//! - Each conversion on a small model: the interpreter gives the same outputs
//!   before and after on seeded random inputs, and the converted node has its
//!   new form.
//! - Refusals name the op and the node; downgrades and unknown opsets are refused.
//! - With the fetched test data: every ONNX backend case below the target opset
//!   is upgraded and must still match its expected outputs (or be refused with a
//!   reason); the real models upgrade to 17 and 20 and give the same outputs.
//! - The CLI: `--opset` upgrades before the passes and reports `opset A -> B`;
//!   a refusal is one error line, exit 1, no output file.

mod common;
use common::testdata;

use modc::conformance::{run_case_dir, Outcome};
use modc::pass::equiv::{check_equivalent, EquivOptions};
use modc::{parse_model, print_model, upgrade_opset, Model, OpsetError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn tight() -> EquivOptions {
    EquivOptions {
        seeds: vec![1, 2, 3],
        tolerance: modc::conformance::Tolerance {
            rtol: 1e-6,
            atol: 1e-6,
        },
        ..Default::default()
    }
}

/// Upgrades `text` to `target`, checks the outputs did not change, and returns
/// the upgraded model's text.
fn upgrade_same(text: &str, target: i64) -> (String, modc::OpsetUpgrade) {
    let before = parse_model(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut after = before.clone();
    let r = upgrade_opset(&mut after, target).unwrap_or_else(|e| panic!("{e}\n{text}"));
    modc::verify(&after.graph).unwrap();
    let printed = print_model(&after);
    check_equivalent(&before, &after, &tight())
        .unwrap_or_else(|e| panic!("outputs differ: {e}\nbefore:\n{text}\nafter:\n{printed}"));
    assert_eq!(after.opset_version(""), Some(target));
    (printed, r)
}

fn refused(text: &str, target: i64) -> OpsetError {
    let mut m = parse_model(text).unwrap();
    let before = m.clone();
    let e = upgrade_opset(&mut m, target).expect_err("the upgrade should be refused");
    assert_eq!(m, before, "a refused upgrade changed the model");
    e
}

#[test]
fn reductions_move_axes_to_inputs() {
    let text = "opset _=11\ngraph @g(%x: f32[2,3,4]) -> (%a, %b, %c, %d, %e) {
  %a = ReduceSum(%x) {axes=[1], keepdims=0}
  %b = ReduceMean(%x) {axes=[-1, 0]}
  %c = ReduceMax(%x)
  %d = ReduceLogSumExp(%x) {axes=[2], keepdims=1}
  %e = ReduceSumSquare(%x) {axes=[0, 2], keepdims=0}
  return %a, %b, %c, %d, %e
}\n";
    let (out, r) = upgrade_same(text, 18);
    assert_eq!(r.converted["ReduceSum"], 1);
    assert_eq!(r.converted["ReduceMean"], 1);
    assert!(!r.converted.contains_key("ReduceMax"), "{r:?}");
    assert!(!out.contains("axes=["), "{out}");
    // ReduceSum alone at 13.
    let (out13, _) = upgrade_same(text, 13);
    assert!(out13.contains("ReduceMean(%x) {axes=[-1, 0]}"), "{out13}");
    assert!(!out13.contains("ReduceSum(%x) {axes"), "{out13}");
}

#[test]
fn squeeze_unsqueeze_split_move_to_inputs() {
    let text = "opset _=11\ngraph @g(%x: f32[2,1,6]) -> (%a, %b, %c, %d, %e) {
  %a = Squeeze(%x) {axes=[1]}
  %u = Unsqueeze(%x) {axes=[0, -1]}
  %b = Relu(%u)
  %c, %d = Split(%x) {axis=2, split=[2, 4]}
  %e = Squeeze(%x)
  return %a, %b, %c, %d, %e
}\n";
    let (out, r) = upgrade_same(text, 13);
    assert_eq!(r.converted["Squeeze"], 1, "{r:?}");
    assert_eq!(r.converted["Unsqueeze"], 1);
    assert_eq!(r.converted["Split"], 1);
    assert!(!out.contains("split=["), "{out}");
    // At 18 an even Split without sizes names its output count.
    let even = "opset _=11\ngraph @g(%x: f32[2,6]) -> (%a, %b, %c) {
  %a, %b, %c = Split(%x) {axis=1}
  return %a, %b, %c
}\n";
    let (out, _) = upgrade_same(even, 18);
    assert!(out.contains("num_outputs=3"), "{out}");
}

#[test]
fn clip_pad_slice_topk_dropout_move_to_inputs() {
    let text = "opset _=9\ngraph @g(%x: f32[3,5]) -> (%a, %b, %c, %d, %v, %i, %f, %h) {
  %a = Clip(%x) {min=-0.5, max=0.25}
  %b = Pad(%x) {pads=[1, 0, 0, 2], value=1.5}
  %h = Pad(%x) {pads=[0, 2, 0, 1], mode=\"reflect\"}
  %c = Slice(%x) {starts=[1, -3], ends=[3, 100], axes=[0, 1]}
  %d = Slice(%x) {starts=[0], ends=[2]}
  %v, %i = TopK(%x) {k=2, axis=1}
  %f = Dropout(%x) {ratio=0.3}
  return %a, %b, %c, %d, %v, %i, %f, %h
}\n";
    let (out, r) = upgrade_same(text, 17);
    for op in ["Clip", "Pad", "Slice", "TopK", "Dropout"] {
        assert!(r.converted.contains_key(op), "{op}: {r:?}");
    }
    assert_eq!(r.converted["Slice"], 2);
    assert!(!out.contains("starts=") && !out.contains("min=") && !out.contains("k="), "{out}");
    // A float64 Clip gets float64 bounds.
    let f64_clip = "opset _=6\ngraph @g(%x: f64[4]) -> (%y) {\n  %y = Clip(%x) {max=0.5}\n  return %y\n}\n";
    let (out, _) = upgrade_same(f64_clip, 12);
    assert!(out.contains("const f64[]"), "{out}");
}

#[test]
fn softmax_keeps_its_pre_13_meaning() {
    // Rank 3 at axis 1: the 2-D coercion normalizes over the last two axes.
    let text = "opset _=11\ngraph @g(%x: f32[2,3,4], %z: f32[2,5]) -> (%a, %b, %c, %d, %e) {
  %a = Softmax(%x)
  %b = LogSoftmax(%x) {axis=0}
  %c = Hardmax(%x) {axis=1}
  %d = Softmax(%z)
  %e = Softmax(%x) {axis=-1}
  return %a, %b, %c, %d, %e
}\n";
    let (out, r) = upgrade_same(text, 13);
    assert_eq!(r.converted["Softmax"], 2, "{r:?}\n{out}");
    assert_eq!(out.matches("Flatten(").count(), 3, "{out}");
    // The last axis needs no reshaping: Softmax(%z) only gets its axis written out.
    assert!(out.contains("%d = Softmax(%z) {axis=1}"), "{out}");
    // Unknown rank: the Flatten form.
    let unranked = "opset _=11\ngraph @g(%x: f32[*]) -> (%y) {\n  %y = Softmax(%x) {axis=1}\n  return %y\n}\n";
    let mut m = parse_model(unranked).unwrap();
    upgrade_opset(&mut m, 13).unwrap();
    assert!(print_model(&m).contains("Flatten("));
    // [N,C,1,1] at axis 1: the rows are the channels.
    let pooled = "opset _=9\ngraph @g(%x: f32[2,7,1,1]) -> (%y) {\n  %y = Softmax(%x)\n  return %y\n}\n";
    let (out, _) = upgrade_same(pooled, 17);
    assert!(out.contains("Softmax(%x) {axis=1}") && !out.contains("Flatten"), "{out}");
}

#[test]
fn resize_10_and_upsample_become_resize_11_forms() {
    let text = "opset _=9\ngraph @g(%x: f32[1,2,3,4]) -> (%a, %b) {
  %s = const f32[4] @s [1.0, 1.0, 2.0, 3.0]
  %a = Upsample(%x, %s) {mode=\"nearest\"}
  %b = Upsample(%x, %s) {mode=\"linear\"}
  return %a, %b
}\n";
    let (out, r) = upgrade_same(text, 17);
    assert_eq!(r.converted["Upsample"], 2);
    assert!(!out.contains("Upsample"), "{out}");
    assert!(out.contains("coordinate_transformation_mode=\"asymmetric\""), "{out}");
    assert!(out.contains("nearest_mode=\"floor\""), "{out}");
    // Resize-10 downsampling rounds up; at 11 and 12 roi is a (empty) input.
    let down = "opset _=10\ngraph @g(%x: f32[1,1,5,7]) -> (%y) {
  %s = const f32[4] @s [1.0, 1.0, 0.6, 0.5]
  %y = Resize(%x, %s) {mode=\"nearest\"}
  return %y
}\n";
    let (out, _) = upgrade_same(down, 11);
    assert!(out.contains("nearest_mode=\"ceil\"") && out.contains("const f32[0]"), "{out}");
    let (out, _) = upgrade_same(down, 13);
    assert!(out.contains("Resize(%x, _, %s)"), "{out}");
    // Upsample-7 takes its scales as an attribute.
    let up7 = "opset _=7\ngraph @g(%x: f32[1,1,2,2]) -> (%y) {\n  %y = Upsample(%x) {scales=[1.0, 1.0, 2.0, 2.0]}\n  return %y\n}\n";
    upgrade_same(up7, 10);
    upgrade_same(up7, 19);
}

#[test]
fn batch_norm_dropout_and_legacy_forms() {
    let text = "opset _=6\ngraph @g(%x: f32[2,3,4,4], %y: f32[2,3,4,4]) -> (%a, %b, %c, %d, %e) {
  %s = const f32[3] @s [1.0, 0.5, 2.0]
  %bias = const f32[3] @bias [0.1, 0.2, 0.3]
  %m = const f32[3] @m [0.0, 0.1, -0.1]
  %v = const f32[3] @v [1.0, 2.0, 0.5]
  %a = BatchNormalization(%x, %s, %bias, %m, %v) {is_test=1, epsilon=0.001}
  %b = Add(%x, %s) {broadcast=1, axis=1}
  %c = Mul(%x, %y)
  %d = Relu(%x) {consumed_inputs=[0]}
  %e = Concat(%x, %y)
  return %a, %b, %c, %d, %e
}\n";
    let (out, r) = upgrade_same(text, 17);
    assert!(!out.contains("broadcast") && !out.contains("consumed_inputs") && !out.contains("is_test"), "{out}");
    assert!(out.contains("Unsqueeze("), "{out}");
    assert!(out.contains("Concat(%x, %y) {axis=1}"), "{out}");
    assert!(r.converted.contains_key("Add") && r.converted.contains_key("Relu"), "{r:?}");
    // Training outputs of BatchNormalization cannot cross opset 14 when used.
    let training = "opset _=9\ngraph @g(%x: f32[2,3], %s: f32[3]) -> (%y, %mean) {
  %y, %mean = BatchNormalization(%x, %s, %s, %s, %s)
  return %y, %mean
}\n";
    let e = refused(training, 14).to_string();
    assert!(e.contains("BatchNormalization") && e.contains("training"), "{e}");
}

#[test]
fn subgraphs_and_functions_are_upgraded() {
    let text = "opset _=11, local=1
graph @g(%c: bool[], %x: f32[2,3]) -> (%y, %z) {
  %y = If(%c) {then_branch=graph @t() -> (%a) {
    %a = ReduceSum(%x) {axes=[1], keepdims=1}
    return %a
  }, else_branch=graph @e() -> (%b) {
    %b = ReduceMean(%x) {axes=[1], keepdims=1}
    return %b
  }}
  %z = local::SumRows(%x)
  return %y, %z
}
function local::SumRows(%a) -> (%b) opset(_=11) {
  %b = ReduceSum(%a) {axes=[0], keepdims=0}
  return %b
}\n";
    let (out, r) = upgrade_same(text, 18);
    assert_eq!(r.converted["ReduceSum"], 2, "{r:?}");
    assert_eq!(r.converted["ReduceMean"], 1);
    assert_eq!(r.functions, 1);
    assert!(!out.contains("axes=["), "{out}");
    assert!(out.contains("opset(_=18)"), "{out}");
    // A function attribute cannot become an input.
    let by_ref = "opset _=11, local=1
graph @g(%x: f32[2,3]) -> (%z) {
  %z = local::SumAxis(%x) {axis=[1]}
  return %z
}
function local::SumAxis(%a) -> (%b) attrs(axis) opset(_=11) {
  %b = ReduceSum(%a) {axes=$axis:ints}
  return %b
}\n";
    let e = refused(by_ref, 13).to_string();
    assert!(e.contains("function 'local::SumAxis'") && e.contains("function attribute"), "{e}");
}

#[test]
fn refusals_name_the_op_and_node() {
    let scan8 = "opset _=8\ngraph @g(%x: f32[1,2,3]) -> (%y) {
  %y = Scan(_, %x) {num_scan_inputs=1, body=graph @b(%r: f32[3]) -> (%o) {
    %o = Identity(%r)
    return %o
  }} : f32[1,2,3]
  return %y
}\n";
    let e = refused(scan8, 9);
    let s = e.to_string();
    assert!(matches!(e, OpsetError::Unconvertible { ref op, .. } if op == "Scan"), "{s}");
    assert!(s.contains("Scan node with output 'y'") && s.contains("at opset 9"), "{s}");
    let up = "opset _=13\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n";
    assert!(matches!(refused(up, 12), OpsetError::Downgrade { current: 13, target: 12 }));
    assert!(matches!(refused(up, 1000), OpsetError::TooNew { target: 1000, .. }));
    let unknown = "opset _=9\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = ImageScaler(%x) {scale=2.0}\n  return %y\n}\n";
    assert!(refused(unknown, 10).to_string().contains("ImageScaler"));
    // Other domains are left alone.
    let other = "opset _=11, com.example=1\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = com.example::Squeeze(%x) {axes=[0]}\n  return %y\n}\n";
    let mut m = parse_model(other).unwrap();
    let r = upgrade_opset(&mut m, 13).unwrap();
    assert!(r.converted.is_empty());
    assert!(print_model(&m).contains("{axes=[0]}"));
}

// ---------------------------------------------------------------------------
// The fetched test data
// ---------------------------------------------------------------------------

fn default_opset(m: &Model) -> i64 {
    m.opset_version("").unwrap_or(1)
}

/// Copies a backend case with its model replaced by `m`.
fn case_with_model(case: &Path, m: &Model, dir: &Path) {
    for e in std::fs::read_dir(case).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            let dest = dir.join(p.file_name().unwrap());
            std::fs::create_dir_all(&dest).unwrap();
            for f in std::fs::read_dir(&p).unwrap().flatten() {
                std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
            }
        }
    }
    modc::save(m, dir.join("model.onnx"), &Default::default()).unwrap();
}

/// Every backend case below `target` is upgraded and rerun: a case that passed
/// must still pass or be refused.
fn backend_sweep(target: i64) -> (BTreeMap<String, usize>, usize, usize) {
    let Some(data) = testdata() else {
        return (BTreeMap::new(), 0, 0);
    };
    let mut refusals: BTreeMap<String, usize> = BTreeMap::new();
    let mut broken = vec![];
    let (mut upgraded, mut still_pass) = (0, 0);
    for folder in ["node", "simple", "pytorch-converted", "pytorch-operator"] {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(data.join("onnx-backend").join(folder))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("model.onnx").exists())
            .collect();
        cases.sort();
        for case in cases {
            let name = format!("{folder}/{}", case.file_name().unwrap().to_string_lossy());
            let Ok(m) = modc::load(case.join("model.onnx"), &Default::default()) else {
                continue;
            };
            if default_opset(&m) >= target {
                continue;
            }
            let before = run_case_dir(&case, &name);
            let mut up = m.clone();
            match upgrade_opset(&mut up, target) {
                Err(e) => {
                    let key = match &e {
                        OpsetError::Unconvertible { op, reason, .. } => {
                            format!("{op}: {}", reason.split(':').next().unwrap_or(""))
                        }
                        other => other.to_string(),
                    };
                    *refusals.entry(key).or_default() += 1;
                    continue;
                }
                Ok(_) => upgraded += 1,
            }
            let dir = tempfile::tempdir().unwrap();
            case_with_model(&case, &up, dir.path());
            let after = run_case_dir(dir.path(), &name);
            match (&before.outcome, &after.outcome) {
                (Outcome::Pass { .. }, Outcome::Pass { .. }) => still_pass += 1,
                (Outcome::Pass { .. }, o) => broken.push(format!("{name}: {o:?}")),
                _ => {}
            }
        }
    }
    assert!(
        broken.is_empty(),
        "{} backend cases pass at their own opset but not after the upgrade to {target}:\n{}",
        broken.len(),
        broken.join("\n")
    );
    eprintln!("opset {target}: {upgraded} cases upgraded ({still_pass} pass before and after); refused: {refusals:#?}");
    (refusals, upgraded, still_pass)
}

#[test]
fn backend_cases_upgrade_to_18() {
    backend_sweep(18);
}

#[test]
fn backend_cases_upgrade_to_the_newest_opset() {
    backend_sweep(modc::MAX_OPSET);
}
