//! The ONNX backend `node` cases on the GPU: every case whose nodes all lower to
//! kernels (no CPU fallback) runs through [`modc::runtime::Session`] and must match
//! the expected outputs with ONNX's tolerances. Prints a per-op table (pass, fail,
//! not on the GPU) and how many cases were skipped for size. Skips without test
//! data (unless `MODC_REQUIRE_TESTDATA=1`) or without an adapter (unless
//! `MODC_REQUIRE_GPU=1`). `MODC_CONFORMANCE_FILTER=substr` runs matching cases only.

mod common;

use common::testdata;
use modc::conformance::{compare, read_value, Tolerance};
use modc::runtime::{test_device, Session};
use modc::{load, LoadPolicy, RtValue};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Cases whose inputs and outputs together exceed this many elements are skipped
/// (lavapipe is slow).
const MAX_ELEMENTS: usize = 1 << 20;

enum Res {
    Pass,
    Fail(String),
    NotGpu(String),
    Skipped(String),
}

fn run_case(gpu: &modc::runtime::Gpu, dir: &Path) -> Res {
    let model = match load(dir.join("model.onnx"), &LoadPolicy::default()) {
        Ok(m) => m,
        Err(e) => return Res::Skipped(format!("load: {e}")),
    };
    let g = &model.graph;
    let fed: Vec<_> = g
        .inputs
        .iter()
        .filter(|&&i| g.value(i).init.is_none())
        .copied()
        .collect();
    let set = dir.join("test_data_set_0");
    let mut inputs = vec![];
    let mut shapes = HashMap::new();
    let mut elements = 0usize;
    for (k, &id) in fed.iter().enumerate() {
        let p = set.join(format!("input_{k}.pb"));
        if !p.exists() {
            break;
        }
        let v = g.value(id);
        match read_value(&p, v.ty.as_ref()) {
            Ok(RtValue::Tensor(t)) => {
                elements += t.len();
                shapes.insert(v.name.clone(), t.shape().to_vec());
                inputs.push((v.name.clone(), t));
            }
            Ok(_) => return Res::Skipped("a sequence or optional input".into()),
            Err(e) => return Res::Skipped(format!("input {k}: {e}")),
        }
    }
    let mut expected = vec![];
    for (k, &o) in g.outputs.iter().enumerate() {
        let p = set.join(format!("output_{k}.pb"));
        match read_value(&p, g.value(o).ty.as_ref()) {
            Ok(RtValue::Tensor(t)) => {
                elements += t.len();
                expected.push(t)
            }
            Ok(_) => return Res::Skipped("a sequence or optional output".into()),
            Err(e) => return Res::Skipped(format!("output {k}: {e}")),
        }
    }
    if elements > MAX_ELEMENTS {
        return Res::Skipped(format!("{elements} elements"));
    }
    let session = match Session::new(gpu, &model, &shapes) {
        Ok(s) => s,
        Err(e) => return Res::NotGpu(e.to_string()),
    };
    if session.fallback_count() > 0 {
        let why: Vec<String> = session
            .backends()
            .iter()
            .filter(|(_, b)| b.cpu > 0)
            .map(|(op, b)| format!("{op}: {}", b.reasons.join("; ")))
            .collect();
        return Res::NotGpu(why.join(", "));
    }
    let out = match session.run(&inputs) {
        Ok(o) => o,
        Err(e) => return Res::Fail(e.to_string()),
    };
    for (k, ((name, got), want)) in out.into_iter().zip(&expected).enumerate() {
        if let Err(e) = compare(
            &RtValue::Tensor(want.clone()),
            &RtValue::Tensor(got),
            Tolerance::ONNX,
        ) {
            return Res::Fail(format!("output {k} '{name}': {e}"));
        }
    }
    Res::Pass
}

#[test]
fn backend_node_cases_on_the_gpu() {
    let Some(data) = testdata() else { return };
    let Some(gpu) = test_device() else { return };
    let filter = std::env::var("MODC_CONFORMANCE_FILTER").ok();
    let node_dir = data.join("onnx-backend/node");
    let mut cases: Vec<_> = std::fs::read_dir(&node_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("model.onnx").exists())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            filter.as_ref().is_none_or(|f| n.contains(f.as_str()))
        })
        .collect();
    cases.sort();
    // op → (pass, fail, not on gpu)
    let mut table: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    let (mut failures, mut skipped) = (vec![], 0usize);
    // Why cases ran (partly) on the CPU or were skipped, with counts.
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let t0 = std::time::Instant::now();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        let ops: Vec<String> = load(c.join("model.onnx"), &LoadPolicy::default())
            .map(|m| modc::conformance::model_ops(&m).into_iter().collect())
            .unwrap_or_default();
        let col = match run_case(gpu, c) {
            Res::Pass => 0,
            Res::Fail(e) => {
                failures.push(format!("{name}: {e}"));
                1
            }
            Res::NotGpu(why) => {
                *reasons.entry(format!("cpu: {why}")).or_default() += 1;
                2
            }
            Res::Skipped(why) => {
                let kind = why.split(':').next().unwrap_or_default().to_string();
                *reasons.entry(format!("skipped: {kind}")).or_default() += 1;
                skipped += 1;
                continue;
            }
        };
        for op in ops {
            table.entry(op).or_default()[col] += 1;
        }
    }
    eprintln!("{:<28} {:>5} {:>5} {:>7}", "op", "pass", "fail", "cpu");
    for (op, [p, f, n]) in &table {
        if p + f > 0 {
            eprintln!("{op:<28} {p:>5} {f:>5} {n:>7}");
        }
    }
    let on_gpu = table.iter().filter(|(_, [p, f, _])| p + f > 0).count();
    let passing_ops = table
        .iter()
        .filter(|(_, [p, f, _])| *p > 0 && *f == 0)
        .count();
    eprintln!(
        "{} cases, {skipped} skipped (size or sequence types), op types run on the GPU: {on_gpu}, all passing: {passing_ops}; {:.1}s",
        cases.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut common: Vec<_> = reasons.iter().collect();
    common.sort_by_key(|(_, &n)| std::cmp::Reverse(n));
    for (why, n) in common.iter().take(15) {
        eprintln!("{n:>5}  {why}");
    }
    for f in &failures {
        eprintln!("FAIL {f}");
    }
    assert!(failures.is_empty(), "{} GPU cases failed", failures.len());
}
