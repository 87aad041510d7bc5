//! A session's memory plan on a real adapter (lavapipe in CI): the arena is the
//! packing of the tensors' lifetimes, tensors alive at the same time never share
//! bytes, the branches of an `If` may, and outputs equal the interpreter's with
//! memory reused (chains, an `If`, a CPU fallback in the middle, the same tensor
//! bound twice in one dispatch, magika when the test data is there). Skips
//! without an adapter unless `MODC_REQUIRE_GPU=1`.

#[path = "common/session_case.rs"]
mod session_case;

use modc::plan::{pack, Interval};
use modc::runtime::{test_device, ArenaSlot, Session, SessionMemory};
use modc::TensorValue;
use session_case::{matches_interpreter, models_dir, ramp};
use std::collections::HashMap;

/// Checks the plan's invariants: every slot lies in its arena, slots alive at
/// the same position never share bytes, offsets keep the alignment, and the
/// arena is what packing the slots' lifetimes gives.
fn check_plan(mem: &SessionMemory) {
    assert_eq!(mem.arena_bytes, mem.arenas.iter().sum::<u64>());
    assert!(mem.peak >= mem.lower_bound, "{mem:?}");
    for s in &mem.slots {
        assert_eq!(s.offset % 256, 0, "{s:?}");
        assert!(s.first <= s.last && s.last < mem.positions, "{s:?}");
        assert!(s.offset + s.size <= mem.arenas[s.arena], "{s:?}");
    }
    for (i, a) in mem.slots.iter().enumerate() {
        for b in &mem.slots[i + 1..] {
            let live = a.first <= b.last && b.first <= a.last;
            if live && a.arena == b.arena {
                assert!(
                    a.offset + a.size <= b.offset || b.offset + b.size <= a.offset,
                    "live together and overlapping: {a:?} and {b:?}"
                );
            }
        }
    }
    let items: Vec<Interval> = mem
        .slots
        .iter()
        .map(|s| Interval {
            size: s.size,
            first: s.first,
            last: s.last,
        })
        .collect();
    let p = pack(&items, mem.positions);
    assert_eq!(p.lower_bound, mem.lower_bound);
    if mem.arenas.len() == 1 {
        assert_eq!(p.peak, mem.arena_bytes);
        assert_eq!(p.peak, mem.peak);
    }
}

fn slot<'m>(mem: &'m SessionMemory, name: &str) -> &'m ArenaSlot {
    mem.slots
        .iter()
        .find(|s| s.tensors.iter().any(|t| t == name))
        .unwrap_or_else(|| panic!("no slot holds '{name}': {:#?}", mem.slots))
}

fn shapes(list: &[(&str, &[usize])]) -> HashMap<String, Vec<usize>> {
    list.iter()
        .map(|(n, s)| (n.to_string(), s.to_vec()))
        .collect()
}

#[test]
fn chain_reuses_memory_and_matches_the_interpreter() {
    let Some(gpu) = test_device() else { return };
    // Every tensor is 4x64 f32 = 1024 bytes; %a lives until the Add.
    let m = modc::parse_model(
        "opset _=17
graph @g(%x: f32[4,64]) -> (%y) {
  %shape = const i64[2] @shape [16, 16]
  %a = Relu(%x)
  %b = Sigmoid(%a)
  %c = Neg(%b)
  %d = Exp(%c)
  %e = Add(%d, %a)
  %r = Reshape(%e, %shape)
  %y = Tanh(%r)
  return %y
}
",
    )
    .unwrap();
    let s = Session::new(gpu, &m, &shapes(&[("x", &[4, 64])])).unwrap();
    assert_eq!(s.fallback_count(), 0, "{:?}", s.backends());
    let mem = s.memory();
    check_plan(mem);
    // Positions: Relu 0, Sigmoid 1, Neg 2, Exp 3, Add 4, Reshape 5, Tanh 6,
    // read-back 7.
    let life = |n: &str| (slot(mem, n).first, slot(mem, n).last);
    assert_eq!(life("x"), (0, 0));
    assert_eq!(life("a"), (0, 4));
    assert_eq!(life("b"), (1, 2));
    assert_eq!(life("c"), (2, 3));
    assert_eq!(life("d"), (3, 4));
    // The view shares its input's slot: e from the Add to the Tanh.
    assert_eq!(slot(mem, "e"), slot(mem, "r"));
    assert_eq!(life("e"), (4, 6));
    assert_eq!(life("y"), (6, 7));
    assert!(mem.slots.iter().all(|s| s.size == 1024));
    // Three tensors are alive at most (a, b, c at 2; a, d, e at 4).
    assert_eq!(mem.lower_bound, 3 * 1024);
    assert_eq!(mem.arena_bytes, 3 * 1024, "{mem:#?}");
    for seed in [0.1f32, -0.3] {
        matches_interpreter(&m, &[("x".into(), ramp(&[4, 64], seed))], &s, 1e-5, 1e-6);
    }
}

#[test]
fn same_tensor_bound_twice_in_one_dispatch() {
    let Some(gpu) = test_device() else { return };
    // Add(a, a) binds one arena range twice; Mul(w, w) one weight buffer twice.
    let m = modc::parse_model(
        "opset _=17\ngraph @g(%x: f32[3,40]) -> (%y) {\n  %w = const f32[40] @w [0.5]\n  \
         %a = Relu(%x)\n  %b = Add(%a, %a)\n  %v = Mul(%w, %w)\n  %y = Mul(%b, %v)\n  \
         return %y\n}\n"
            .replace("[0.5]", &format!("[{}]", vec!["0.5"; 40].join(", ")))
            .as_str(),
    )
    .unwrap();
    let s = Session::new(gpu, &m, &shapes(&[("x", &[3, 40])])).unwrap();
    assert_eq!(s.fallback_count(), 0, "{:?}", s.backends());
    check_plan(s.memory());
    matches_interpreter(&m, &[("x".into(), ramp(&[3, 40], 0.25))], &s, 1e-6, 1e-6);
}

const IF_MODEL: &str = "opset _=17
graph @g(%c: bool[], %x: f32[8,32]) -> (%y) {
  %scale = const f32[32] @scale [SCALE]
  %d = Sigmoid(%x)
  %o = If(%c) {then_branch=graph @then() -> (%t2) {
    %t1 = Mul(%d, %scale)
    %t2 = Relu(%t1)
    return %t2
  }, else_branch=graph @else() -> (%e2) {
    %e1 = Neg(%d)
    %e2 = Exp(%e1)
    return %e2
  }} : f32[8,32]
  %y = Add(%o, %d)
  return %y
}
";

#[test]
fn if_branches_share_memory_and_match_the_interpreter() {
    let Some(gpu) = test_device() else { return };
    let scale: Vec<String> = (0..32)
        .map(|i| format!("{:.1}", i as f32 * 0.1 - 1.0))
        .collect();
    let m = modc::parse_model(&IF_MODEL.replace("SCALE", &scale.join(", "))).unwrap();
    let s = Session::new(gpu, &m, &shapes(&[("c", &[]), ("x", &[8, 32])])).unwrap();
    assert_eq!(s.backends()["If"].gpu, 1, "{:?}", s.backends());
    assert_eq!(s.fallback_count(), 0, "{:?}", s.backends());
    let mem = s.memory();
    check_plan(mem);
    // The then branch's values die before the else branch's are born.
    for t in ["t1", "t2"] {
        for e in ["e1", "e2"] {
            assert!(
                slot(mem, t).last < slot(mem, e).first,
                "{t} and {e}: {mem:#?}"
            );
        }
    }
    // Four tensors are alive at most (d, o and two of a branch), so a plan that
    // meets the bound puts the two branches' values in the same bytes.
    assert_eq!(mem.lower_bound, 4 * 1024);
    assert_eq!(mem.arena_bytes, mem.lower_bound, "{mem:#?}");
    let shared = ["t1", "t2"].iter().any(|t| {
        ["e1", "e2"].iter().any(|e| {
            let (a, b) = (slot(mem, t), slot(mem, e));
            a.offset < b.offset + b.size && b.offset < a.offset + a.size
        })
    });
    assert!(shared, "{mem:#?}");
    // d, read by both branches and after the If, lives across both.
    assert!(slot(mem, "d").last > slot(mem, "e2").last);
    assert!(slot(mem, "o").first < slot(mem, "t1").first);
    for c in [true, false] {
        let cond = TensorValue::Bool(ndarray::ArrayD::from_elem(ndarray::IxDyn(&[]), c));
        let inputs = vec![
            ("c".to_string(), cond),
            ("x".to_string(), ramp(&[8, 32], 0.2)),
        ];
        matches_interpreter(&m, &inputs, &s, 1e-5, 1e-6);
    }
}

#[test]
fn cpu_fallback_in_the_middle_uploads_into_its_slot() {
    let Some(gpu) = test_device() else { return };
    // float64 has no device storage: the two Casts and the Abs between them run
    // on the CPU; the last Cast's output is written into its slot for the Mul.
    let m = modc::parse_model(
        "opset _=17\ngraph @g(%x: f32[5,50]) -> (%y) {\n  %a = Neg(%x)\n  \
         %b = Cast(%a) {to=11}\n  %c = Abs(%b)\n  %d = Cast(%c) {to=1}\n  \
         %e = Mul(%d, %a)\n  %y = Sigmoid(%e)\n  return %y\n}\n",
    )
    .unwrap();
    let s = Session::new(gpu, &m, &shapes(&[("x", &[5, 50])])).unwrap();
    assert_eq!(s.fallback_count(), 3, "{:?}", s.backends());
    let mem = s.memory();
    check_plan(mem);
    assert!(mem
        .slots
        .iter()
        .all(|s| !s.tensors.iter().any(|t| t == "b" || t == "c")));
    let d = slot(mem, "d");
    assert!(d.first > slot(mem, "a").first && d.last == slot(mem, "e").first);
    for k in [0.5f32, -2.0] {
        matches_interpreter(&m, &[("x".into(), ramp(&[5, 50], k))], &s, 1e-5, 1e-6);
    }
}

#[test]
fn an_input_of_another_shape_is_a_clear_error() {
    let Some(gpu) = test_device() else { return };
    let m = modc::parse_model(
        "opset _=17\ngraph @g(%x: f32[N,4]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n",
    )
    .unwrap();
    let s = Session::new(gpu, &m, &shapes(&[("x", &[2, 4])])).unwrap();
    let e = s
        .run(&[("x".into(), ramp(&[3, 4], 1.0))])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'x'") && e.contains("[3, 4]") && e.contains("[2, 4]"),
        "{e}"
    );
    let e = s.run(&[]).unwrap_err().to_string();
    assert!(e.contains("'x'") && e.contains("missing"), "{e}");
}

/// magika's input: the bytes of a source file, padded with 256, like
/// `scripts/real_models.py` makes it.
fn magika_input() -> TensorValue {
    let src = include_bytes!("gpu_arena.rs");
    let v: Vec<i32> = (0..2048)
        .map(|i| src.get(i).map(|&b| b as i32).unwrap_or(256))
        .collect();
    TensorValue::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 2048]), v).unwrap())
}

#[test]
fn magika_in_one_arena_matches_the_interpreter() {
    let Some(dir) = models_dir() else { return };
    let path = dir.join("magika/standard_v3_3.onnx");
    if !path.exists() {
        eprintln!("skipping: no {}", path.display());
        return;
    }
    let Some(gpu) = test_device() else { return };
    let m = modc::load(&path, &modc::LoadPolicy::default()).unwrap();
    let name = m.graph.value(m.graph.inputs[0]).name.clone();
    let s = Session::new(gpu, &m, &HashMap::from([(name.clone(), vec![1, 2048])])).unwrap();
    let mem = s.memory();
    check_plan(mem);
    let total: u64 = mem.slots.iter().map(|s| s.size).sum();
    assert!(
        mem.arena_bytes < total,
        "no reuse: {} of {total}",
        mem.arena_bytes
    );
    eprintln!(
        "magika: arena {} bytes (peak {}, lower bound {}), {} slots holding {total} bytes",
        mem.arena_bytes,
        mem.peak,
        mem.lower_bound,
        mem.slots.len()
    );
    matches_interpreter(&m, &[(name, magika_input())], &s, 1e-4, 1e-5);
}

#[test]
fn cli_reports_the_arena_and_profiles_nodes() {
    if test_device().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.onnx");
    let m = modc::parse_model(
        "opset _=17\ngraph @g(%x: f32[4,64]) -> (%y) {\n  %a = Relu(%x)\n  %b = Sigmoid(%a)\n  \
         %c = Cast(%b) {to=11}\n  %d = Cast(%c) {to=1}\n  %y = Add(%d, %a)\n  return %y\n}\n",
    )
    .unwrap();
    modc::save(&m, &model, &modc::SaveOptions::default()).unwrap();
    let modc = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_modc"))
            .env("MODC_LOG", "off")
            .args(args)
            .arg(&model)
            .args(["--random", "--backend", "gpu", "--profile"])
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    for cmd in [&["bench", "--repeat", "2"][..], &["run"][..]] {
        let (code, out, err) = modc(cmd);
        assert_eq!(code, Some(0), "{out}\n{err}");
        let arena = err
            .lines()
            .find(|l| l.starts_with("modc: arena "))
            .unwrap_or_else(|| panic!("no arena line: {err}"));
        // Relu's output lives until the Add: at least two 1 KiB tensors at once.
        let n: u64 = arena["modc: arena ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            n >= 2048 && arena.contains("(peak ") && arena.contains("lower bound "),
            "{arena}"
        );
        let lines: Vec<&str> = out.lines().collect();
        let head = lines
            .iter()
            .position(|l| l.starts_with("profile: "))
            .unwrap_or_else(|| panic!("no profile: {out}"));
        assert!(lines[head].contains(" in 5 steps"), "{out}");
        // Five steps (Relu, Sigmoid, two Casts on the CPU, Add), slowest first.
        let rows: Vec<&str> = lines[head + 2..head + 7].to_vec();
        let ms: Vec<f64> = rows
            .iter()
            .map(|r| r.split_whitespace().next().unwrap().parse().unwrap())
            .collect();
        assert!(ms.windows(2).all(|w| w[0] >= w[1]), "{out}");
        assert_eq!(
            rows.iter().filter(|r| r.contains(" cpu ")).count(),
            2,
            "{out}"
        );
        assert!(
            rows.iter()
                .any(|r| r.contains("gpu") && r.contains("(Relu)")),
            "{out}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modc"))
        .args(["bench"])
        .arg(&model)
        .args(["--random", "--profile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--profile needs --backend gpu"));
}
