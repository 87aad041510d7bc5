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
    assert!(
        !out.contains("starts=") && !out.contains("min=") && !out.contains("k="),
        "{out}"
    );
    // A float64 Clip gets float64 bounds.
    let f64_clip =
        "opset _=6\ngraph @g(%x: f64[4]) -> (%y) {\n  %y = Clip(%x) {max=0.5}\n  return %y\n}\n";
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
    let unranked =
        "opset _=11\ngraph @g(%x: f32[*]) -> (%y) {\n  %y = Softmax(%x) {axis=1}\n  return %y\n}\n";
    let mut m = parse_model(unranked).unwrap();
    upgrade_opset(&mut m, 13).unwrap();
    assert!(print_model(&m).contains("Flatten("));
    // [N,C,1,1] at axis 1: the rows are the channels.
    let pooled =
        "opset _=9\ngraph @g(%x: f32[2,7,1,1]) -> (%y) {\n  %y = Softmax(%x)\n  return %y\n}\n";
    let (out, _) = upgrade_same(pooled, 17);
    assert!(
        out.contains("Softmax(%x) {axis=1}") && !out.contains("Flatten"),
        "{out}"
    );
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
    assert!(
        out.contains("coordinate_transformation_mode=\"asymmetric\""),
        "{out}"
    );
    assert!(out.contains("nearest_mode=\"floor\""), "{out}");
    // Resize-10 downsampling rounds up; at 11 and 12 roi is a (empty) input.
    let down = "opset _=10\ngraph @g(%x: f32[1,1,5,7]) -> (%y) {
  %s = const f32[4] @s [1.0, 1.0, 0.6, 0.5]
  %y = Resize(%x, %s) {mode=\"nearest\"}
  return %y
}\n";
    let (out, _) = upgrade_same(down, 11);
    assert!(
        out.contains("nearest_mode=\"ceil\"") && out.contains("const f32[0]"),
        "{out}"
    );
    let (out, _) = upgrade_same(down, 13);
    assert!(out.contains("Resize(%x, _, %"), "{out}");
    // Upsample-7 takes its scales as an attribute.
    let up7 = "opset _=7\ngraph @g(%x: f32[1,1,2,2]) -> (%y) {\n  %y = Upsample(%x) {scales=[1.0, 1.0, 2.0, 2.0]}\n  return %y\n}\n";
    upgrade_same(up7, 10);
    upgrade_same(up7, 19);
}

#[test]
fn batch_norm_dropout_and_legacy_forms() {
    let text = "opset _=5\ngraph @g(%x: f32[2,3,4,4], %y: f32[2,3,4,4]) -> (%a, %b, %c, %d) {
  %s = const f32[3] @s [1.0, 0.5, 2.0]
  %bias = const f32[3] @bias [0.1, 0.2, 0.3]
  %m = const f32[3] @m [0.0, 0.1, -0.1]
  %v = const f32[3] @v [1.0, 2.0, 0.5]
  %a = BatchNormalization(%x, %s, %bias, %m, %v) {is_test=1, epsilon=0.001, consumed_inputs=[0, 0, 0, 1, 1]}
  %b = Add(%x, %s) {broadcast=1, axis=1}
  %c = Mul(%x, %y)
  %d = Relu(%x) {consumed_inputs=[0]}
  return %a, %b, %c, %d
}\n";
    let (out, r) = upgrade_same(text, 17);
    assert!(
        !out.contains("broadcast") && !out.contains("consumed_inputs") && !out.contains("is_test"),
        "{out}"
    );
    assert!(out.contains("Unsqueeze("), "{out}");
    assert!(
        r.converted.contains_key("Add") && r.converted.contains_key("Relu"),
        "{r:?}"
    );
    // Concat-1's axis defaulted to 1; from opset 4 it is required.
    let concat = "opset _=3\ngraph @g(%x: f32[2,3], %y: f32[2,3]) -> (%e) {\n  %e = Concat(%x, %y)\n  return %e\n}\n";
    let mut m = parse_model(concat).unwrap();
    upgrade_opset(&mut m, 4).unwrap();
    assert!(print_model(&m).contains("Concat(%x, %y) {axis=1}"));
    // Training outputs of BatchNormalization cannot cross opset 14 when used.
    let training = "opset _=9\ngraph @g(%x: f32[2,3], %s: f32[3]) -> (%y, %mean) {
  %y, %mean = BatchNormalization(%x, %s, %s, %s, %s)
  return %y, %mean
}\n";
    let e = refused(training, 14).to_string();
    assert!(
        e.contains("BatchNormalization") && e.contains("training"),
        "{e}"
    );
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
    assert!(
        e.contains("function 'local::SumAxis'") && e.contains("function attribute"),
        "{e}"
    );
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
    assert!(
        matches!(e, OpsetError::Unconvertible { ref op, .. } if op == "Scan"),
        "{s}"
    );
    assert!(
        s.contains("Scan node with output 'y'") && s.contains("at opset 9"),
        "{s}"
    );
    let up = "opset _=13\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n";
    assert!(matches!(
        refused(up, 12),
        OpsetError::Downgrade {
            current: 13,
            target: 12
        }
    ));
    assert!(matches!(
        refused(up, 1000),
        OpsetError::TooNew { target: 1000, .. }
    ));
    let unknown = "opset _=9\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = ImageScaler(%x) {scale=2.0}\n  return %y\n}\n";
    assert!(refused(unknown, 10).to_string().contains("ImageScaler"));
    // Other domains are left alone.
    let other = "opset _=11, com.example=1\ngraph @g(%x: f32[2]) -> (%y) {\n  %y = com.example::Squeeze(%x) {axes=[0]}\n  return %y\n}\n";
    let mut m = parse_model(other).unwrap();
    let r = upgrade_opset(&mut m, 13).unwrap();
    assert!(r.converted.is_empty());
    assert!(print_model(&m).contains("{axes=[0]}"));
}

#[test]
fn rarer_conversions_keep_outputs() {
    let cases = [
        // PRelu-6's per-channel slope.
        (6, 7, "%x: f32[2,3,2,2], %s: f32[3]", "%y = PRelu(%x, %s)"),
        (
            16,
            20,
            "%x: f32[1,2,4,4], %g: f32[1,3,3,2]",
            "%y = GridSample(%x, %g) {mode=\"bilinear\", align_corners=1}",
        ),
        (17, 20, "%x: f32[2,8,1]", "%y = DFT(%x)"),
        (9, 17, "%x: f32[2,6]", "%y = Softmax(%x) {axis=0}"),
        (9, 17, "%x: f32[2,3,4]", "%y = Hardmax(%x)"),
        (9, 17, "%x: f32[2,3], %s: f32[2,3]", "%y = Add(%x, %s)"),
        (12, 13, "%x: f32[2,3]", "%y = Clip(%x, _, _)"),
    ];
    for (from, to, params, node) in cases {
        let text =
            format!("opset _={from}\ngraph @g({params}) -> (%y) {{\n  {node}\n  return %y\n}}\n");
        upgrade_same(&text, to);
    }
    // Scatter's random indices would be out of range: constant ones.
    let scatter = "opset _=10\ngraph @g(%x: f32[4,3], %u: f32[2,3]) -> (%y) {
  %i = const i64[2,3] @i [0, 1, 2, 3, 0, 1]
  %y = Scatter(%x, %i, %u) {axis=0}
  return %y
}\n";
    let (out, _) = upgrade_same(scatter, 13);
    assert!(out.contains("ScatterElements("), "{out}");
    // GroupNormalization-18 (per-group scale) to 21 (per-channel).
    let group = "opset _=18\ngraph @g(%x: f32[2,4,3]) -> (%y) {
  %s = const f32[2] @s [1.5, -0.5]
  %b = const f32[2] @b [0.25, 1.0]
  %y = GroupNormalization(%x, %s, %b) {num_groups=2, epsilon=0.001}
  return %y
}\n";
    upgrade_same(group, 21);
    // RoiAlign-10 computes with output_half_pixel coordinates.
    let roi = "opset _=10\ngraph @g(%x: f32[1,2,6,6]) -> (%y) {
  %r = const f32[2,4] @r [0.0, 0.0, 3.0, 3.0, 1.0, 1.5, 5.0, 4.5]
  %i = const i64[2] @i [0, 0]
  %y = RoiAlign(%x, %r, %i) {output_height=2, output_width=2, sampling_ratio=2}
  return %y
}\n";
    upgrade_same(roi, 16);
    // Split-1 with its sizes as a constant input.
    let split = "opset _=1\ngraph @g(%x: f32[5,2]) -> (%a, %b) {
  %s = const i64[2] @s [2, 3]
  %a, %b = Split(%x, %s) {axis=0}
  return %a, %b
}\n";
    let (out, _) = upgrade_same(split, 13);
    assert!(out.contains("Split(%x, %"), "{out}");
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
fn backend_sweep(target: i64) -> (BTreeMap<String, Vec<String>>, usize, usize) {
    let Some(data) = testdata() else {
        return (BTreeMap::new(), 0, 0);
    };
    let mut refusals: BTreeMap<String, Vec<String>> = BTreeMap::new();
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
                        OpsetError::Unconvertible { op, reason, .. } => format!("{op}: {reason}"),
                        other => other.to_string(),
                    };
                    refusals.entry(key).or_default().push(name);
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

/// Feeds for silero-vad: a 512-sample frame at 16 kHz, zero state.
fn silero_feeds(m: &Model) -> Vec<(String, modc::RtValue)> {
    use modc::{RtValue, TensorValue};
    let g = &m.graph;
    let mut feeds = vec![];
    for &i in g.inputs.iter().filter(|&&i| g.value(i).init.is_none()) {
        let v = g.value(i);
        let dims: Vec<Option<i64>> = match v.ty.as_ref().and_then(|t| t.as_tensor()) {
            Some((_, Some(s))) => s.dims.iter().map(|d| d.as_fixed()).collect(),
            _ => vec![],
        };
        let value = match v.name.as_str() {
            "sr" => TensorValue::from_i64(&[], vec![16000]),
            "input" => {
                let shape = match dims.as_slice() {
                    [Some(r), Some(c)] => vec![*r as usize, *c as usize],
                    [_, Some(c)] => vec![3, *c as usize],
                    _ => vec![1, 512],
                };
                let n: usize = shape.iter().product();
                let wave = (0..n).map(|k| (k as f32 * 0.07).sin() * 0.3).collect();
                TensorValue::from_f32(&shape, wave)
            }
            _ => {
                let shape: Vec<usize> = dims.iter().map(|d| d.unwrap_or(1) as usize).collect();
                TensorValue::from_f32(&shape, vec![0.0; shape.iter().product()])
            }
        };
        feeds.push((v.name.clone(), RtValue::Tensor(value)));
    }
    feeds
}

fn real_and_light_models(data: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "onnx") {
                out.push(p);
            }
        }
    }
    let mut out = vec![];
    walk(&data.join("models"), &mut out);
    walk(&data.join("onnx-backend/light"), &mut out);
    out.sort();
    out
}

/// Every real and light model upgrades to 17 and to 20 (where it is older) and
/// the interpreter gives the same outputs before and after.
#[test]
fn real_and_light_models_upgrade_to_17_and_20() {
    let Some(data) = testdata() else { return };
    let mut lines = vec![];
    for path in real_and_light_models(&data) {
        let name = path.strip_prefix(&data).unwrap().display().to_string();
        let m = modc::load(&path, &Default::default()).unwrap();
        for target in [17, 20] {
            if default_opset(&m) >= target {
                continue;
            }
            let mut up = m.clone();
            let r = upgrade_opset(&mut up, target).unwrap_or_else(|e| panic!("{name}: {e}"));
            modc::verify(&up.graph).unwrap();
            let opts = if name.contains("silero") {
                EquivOptions {
                    seeds: vec![],
                    given: vec![silero_feeds(&m)],
                    ..Default::default()
                }
            } else {
                EquivOptions::default()
            };
            let eq = check_equivalent(&m, &up, &opts)
                .unwrap_or_else(|e| panic!("{name} at opset {target}: {e}"));
            lines.push(format!(
                "{name}: {r}; largest difference {:.1e}",
                eq.max_abs_diff
            ));
        }
    }
    eprintln!("{}", lines.join("\n"));
}

// ---------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------

fn modc() -> Command {
    Command::new(env!("CARGO_BIN_EXE_modc"))
}

fn shipped() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/ch_ppocr_mobile_v2.0_cls_infer.onnx")
}

#[test]
fn cli_upgrades_before_the_passes_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cls17.onnx");
    let report = dir.path().join("report.json");
    let o = modc()
        .arg("optimize")
        .arg(shipped())
        .arg("-o")
        .arg(&out)
        .args(["--opset", "17", "--verify", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        stdout.contains("opset 11 -> 17") && stdout.contains("verified on"),
        "{stdout}"
    );
    let m = modc::load(&out, &Default::default()).unwrap();
    assert_eq!(m.opset_version(""), Some(17));
    assert!(m.ir_version.unwrap() >= 8);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["opset_upgrade"]["from"], 11);
    assert_eq!(r["opset_upgrade"]["to"], 17);
}

#[test]
fn cli_refusal_is_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scan8.ir");
    std::fs::write(
        &input,
        "opset _=8\ngraph @g(%x: f32[1,2,3]) -> (%y) {
  %y = Scan(_, %x) {num_scan_inputs=1, body=graph @b(%r: f32[3]) -> (%o) {
    %o = Identity(%r)
    return %o
  }}
  return %y
}\n",
    )
    .unwrap();
    for (target, needle) in [
        ("9", "cannot upgrade Scan node with output 'y'"),
        ("7", "downgrading is not supported"),
        ("1000", "newest opset modc knows"),
    ] {
        let out = dir.path().join("out.onnx");
        let o = modc()
            .arg("optimize")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(["--opset", target])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("modc: error: ") && err.contains(needle),
            "{err}"
        );
        assert!(!out.exists());
    }
}

/// magika is opset 15 with its LayerNorms written out in basic ops; at 17 it
/// optimizes and verifies (and LayerNormalization becomes available to fusion).
#[test]
fn cli_magika_to_17_verifies() {
    let Some(data) = testdata() else { return };
    let model = data.join("models/magika/standard_v3_3.onnx");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("magika17.onnx");
    let o = modc()
        .arg("optimize")
        .arg(&model)
        .arg("-o")
        .arg(&out)
        .args(["--opset", "17", "--verify"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("opset 15 -> 17"), "{stdout}");
    let m = modc::load(&out, &Default::default()).unwrap();
    assert_eq!(m.opset_version(""), Some(17));
}
