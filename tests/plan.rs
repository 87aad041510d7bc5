//! Plans: snapshots of `tests/fixtures/plan/*.ir` (the first `# inputs:` line
//! gives the input shapes, `NAME=D1,D2 NAME2=...`), the arena invariants on every
//! plan, `modc plan`'s errors, and the memory figures of the real models when the
//! test data is present (peak within 10% of the lower bound).

mod common;
use common::testdata;

use modc::plan::{Plan, TensorKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn input_line(text: &str) -> HashMap<String, Vec<usize>> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# inputs:"))
        .expect("a '# inputs:' line");
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("NAME=DIMS");
            let dims = v.split(',').map(|d| d.parse().unwrap()).collect();
            (k.to_string(), dims)
        })
        .collect()
}

/// No two allocations alive at the same step share bytes; aliases share their
/// root's offset; weights have none; everything lies inside the arena.
fn check_arena(plan: &Plan, what: &str) {
    let align = plan.memory.alignment;
    let mut allocs: HashMap<modc::ValueId, (u64, u64, usize, usize)> = HashMap::new();
    for (&v, t) in &plan.tensors {
        if t.kind == TensorKind::Weight {
            assert!(t.offset.is_none(), "{what}: weight with an offset");
            continue;
        }
        let off = t.offset.expect("arena tensor has an offset");
        assert_eq!(off % align, 0, "{what}: unaligned offset");
        let size = modc::plan::align_up(t.desc.device_bytes().max(4), align);
        assert!(
            off + size <= plan.memory.arena_bytes,
            "{what}: outside the arena"
        );
        let root = t.alias_of.unwrap_or(v);
        let e = allocs.entry(root).or_insert((off, size, t.first, t.last));
        assert_eq!(e.0, off, "{what}: alias not at its root's offset");
        e.1 = e.1.max(size);
        e.2 = e.2.min(t.first);
        e.3 = e.3.max(t.last);
    }
    let list: Vec<_> = allocs.into_iter().collect();
    for (i, (a, (ao, asz, af, al))) in list.iter().enumerate() {
        for (b, (bo, bsz, bf, bl)) in &list[i + 1..] {
            if af <= bl && bf <= al {
                assert!(
                    ao + asz <= *bo || bo + bsz <= *ao,
                    "{what}: {} and {} are alive together and overlap",
                    plan.names[a],
                    plan.names[b]
                );
            }
        }
    }
    assert!(plan.memory.peak >= plan.memory.lower_bound, "{what}");
    assert_eq!(plan.memory.per_step.len(), plan.steps.len(), "{what}");
}

#[test]
fn fixtures() {
    let dir = repo().join("tests/fixtures/plan");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let model = modc::parse_model(&text).unwrap();
        let inputs = input_line(&text);
        let plan = modc::plan::lower(&model, &inputs, Default::default()).unwrap();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        check_arena(&plan, &name);
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, input_file => &path}, {
            insta::assert_snapshot!(format!("plan__{name}"), plan.to_text());
        });
    }
}

#[test]
fn shape_idiom_folds_and_aliases() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/plan/shape_fold.ir")).unwrap();
    let model = modc::parse_model(&text).unwrap();
    let plan = modc::plan::lower(&model, &input_line(&text), Default::default()).unwrap();
    let ops: Vec<&str> = plan.steps.iter().map(|s| s.op.as_str()).collect();
    assert_eq!(ops, ["Reshape", "Neg"]);
    assert_eq!(plan.folded.len(), 4);
    let r = plan.steps[0].lowering.clone();
    assert_eq!(r, modc::codegen::Lowering::Alias);
}

#[test]
fn residual_keeps_the_skip_alive() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/plan/residual.ir")).unwrap();
    let model = modc::parse_model(&text).unwrap();
    let plan = modc::plan::lower(&model, &input_line(&text), Default::default()).unwrap();
    let x = model.graph.find_value("x").unwrap();
    let t = &plan.tensors[&x];
    assert_eq!((t.kind, t.first, t.last), (TensorKind::Input, 0, 4));
    // At the Mul, x, a, c and d are alive together: 4 x 256 bytes.
    assert_eq!(plan.memory.lower_bound, 4 * 256);
    assert_eq!(plan.memory.peak, plan.memory.lower_bound);
}

#[test]
fn missing_and_mismatched_inputs_are_errors() {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/plan/mlp.ir")).unwrap();
    let model = modc::parse_model(&text).unwrap();
    let e = modc::plan::lower(&model, &HashMap::new(), Default::default()).unwrap_err();
    assert!(e.to_string().contains("'x'"), "{e}");
    let bad = HashMap::from([("x".to_string(), vec![4, 15])]);
    let e = modc::plan::lower(&model, &bad, Default::default()).unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

fn modc_plan(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_modc"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn cli_prints_text_and_json() {
    let f = repo().join("tests/fixtures/plan/mlp.ir");
    let f = f.to_str().unwrap();
    let out = modc_plan(&[f, "--dim", "batch=4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("input x: f32[4, 16]"), "{text}");
    assert!(text.contains("peak/lower bound"), "{text}");
    let out = modc_plan(&[f, "--json", "--input-shape", "x=2,16"]);
    assert!(out.status.success());
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["inputs"][0]["shape"], serde_json::json!([2, 16]));
    assert!(j["memory"]["peak"].as_u64().unwrap() >= j["memory"]["lower_bound"].as_u64().unwrap());
    assert_eq!(j["steps"].as_array().unwrap().len(), 5);
}

#[test]
fn cli_rejects_bad_arguments() {
    let f = repo().join("tests/fixtures/plan/mlp.ir");
    let f = f.to_str().unwrap();
    for (args, says) in [
        (
            vec![f, "--dim", "nope=3"],
            "no input has a dimension named 'nope'",
        ),
        (vec![f, "--dim", "batch=x"], "is not a size"),
        (vec![f, "--input-shape", "y=1,16"], "no input named 'y'"),
        (vec![f, "--input-shape", "x=1,17"], "does not fit"),
        (vec!["/nonexistent/model.onnx"], "nonexistent"),
    ] {
        let out = modc_plan(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("internal error"), "{args:?}: {err}");
    }
}

/// The input shapes `scripts/real_models.py` feeds each real model.
fn real_model_shapes(path: &Path, m: &modc::Model) -> HashMap<String, Vec<usize>> {
    let name = path.to_string_lossy();
    let mut given = HashMap::new();
    if name.contains("rapidocr") {
        let shape = if name.contains("det") {
            vec![1, 3, 96, 320]
        } else if name.contains("rec") {
            vec![1, 3, 48, 320]
        } else {
            vec![1, 3, 48, 192]
        };
        given.insert("x".to_string(), shape);
    }
    let mut shapes =
        modc::plan::shapes::input_shapes(m, &HashMap::new(), &given).expect("input shapes");
    // silero: one 512-sample frame where the length is symbolic (not 576-wide models).
    if let Some(s) = shapes.get_mut("input").filter(|s| s.as_slice() == [1, 1]) {
        *s = vec![1, 512];
    }
    shapes
}

/// Real models the plan cannot take yet, and why.
/// Real models known not to plan, with the reason (none now: silero_vad.onnx's
/// top-level If takes its output shapes from its branches).
const KNOWN_UNPLANNABLE: &[(&str, &str)] = &[];

#[test]
fn real_models_plan_within_ten_percent() {
    let Some(data) = testdata() else { return };
    let mut models = vec![];
    for sub in ["rapidocr", "silero-vad", "magika"] {
        if let Ok(rd) = std::fs::read_dir(data.join("models").join(sub)) {
            models.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "onnx")),
            );
        }
    }
    models.sort();
    assert!(!models.is_empty(), "no real models in {}", data.display());
    let mut bad = vec![];
    for path in models {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let m = modc::load(&path, &modc::LoadPolicy::default()).unwrap();
        let known = KNOWN_UNPLANNABLE.iter().find(|(n, _)| *n == name);
        let plan = match modc::plan::lower(&m, &real_model_shapes(&path, &m), Default::default()) {
            Ok(_) if known.is_some() => {
                bad.push(format!(
                    "{name} now plans: remove it from KNOWN_UNPLANNABLE"
                ));
                continue;
            }
            Ok(p) => p,
            Err(e) => {
                match known {
                    Some((_, why)) => eprintln!("{name}: known not to plan ({why}): {e}"),
                    None => bad.push(format!("{name}: {e}")),
                }
                continue;
            }
        };
        check_arena(&plan, &name);
        let mem = &plan.memory;
        eprintln!(
            "{name:40} steps {:4} cpu {:3} peak {:>10} lower bound {:>10} ratio {:.3} ({}) weights {:>10}",
            plan.steps.len(),
            plan.steps.iter().filter(|s| s.is_fallback()).count(),
            mem.peak,
            mem.lower_bound,
            mem.ratio(),
            mem.strategy,
            mem.weight_bytes
        );
        if mem.ratio() > 1.10 {
            bad.push(format!("{name}: peak/lower bound {:.3}", mem.ratio()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
