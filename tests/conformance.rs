//! ONNX backend conformance of the reference interpreter.
//!
//! Runs every case of `node`, `simple`, `pytorch-converted`, `pytorch-operator` and
//! `light` (fetched by `scripts/fetch_testdata.py`) and compares with ONNX's own
//! tolerances. `conformance/expected_passes.txt` lists the cases that passed when it
//! was last blessed: the test fails if any of them no longer passes. To bless (after
//! deliberate changes), run with `MODC_CONFORMANCE_BLESS=1`; that also rewrites
//! `conformance/report.md` (per op: passed, failed, unsupported, with reasons).
//! `MODC_CONFORMANCE_FILTER=substring` runs only matching cases and checks nothing.

mod common;
use common::testdata;

use modc::conformance::{run_case_dir, run_light, CaseReport, Outcome};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::path::{Path, PathBuf};

const FOLDERS: [&str; 4] = ["node", "simple", "pytorch-converted", "pytorch-operator"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn backend_conformance() {
    let Some(data) = testdata() else { return };
    let filter = std::env::var("MODC_CONFORMANCE_FILTER").ok();
    let backend = data.join("onnx-backend");
    let mut reports: Vec<CaseReport> = Vec::new();
    for folder in FOLDERS {
        let mut cases: Vec<PathBuf> = std::fs::read_dir(backend.join(folder))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join("model.onnx").exists())
            .collect();
        cases.sort();
        for c in cases {
            let name = format!("{folder}/{}", c.file_name().unwrap().to_string_lossy());
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            reports.push(run_case_dir(&c, &name));
        }
    }
    let mut lights: Vec<PathBuf> = std::fs::read_dir(backend.join("light"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    lights.sort();
    for l in lights {
        let name = format!("light/{}", l.file_stem().unwrap().to_string_lossy());
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        reports.push(run_light(&l, &name));
    }

    let count = |f: &str, pred: fn(&Outcome) -> bool| {
        reports
            .iter()
            .filter(|r| r.name.starts_with(f) && pred(&r.outcome))
            .count()
    };
    for f in FOLDERS.iter().chain(["light"].iter()) {
        eprintln!(
            "conformance {f:<18} pass {:>5}  fail {:>5}  unsupported {:>5}",
            count(f, |o| matches!(o, Outcome::Pass { .. })),
            count(f, |o| matches!(o, Outcome::Fail(_))),
            count(f, |o| matches!(o, Outcome::Unsupported(_)))
        );
    }
    if filter.is_some() {
        for r in &reports {
            match &r.outcome {
                Outcome::Pass { max_abs_diff } => {
                    eprintln!("PASS {} (max diff {max_abs_diff:.3e})", r.name)
                }
                Outcome::Fail(m) => eprintln!("FAIL {}: {m}", r.name),
                Outcome::Unsupported(m) => eprintln!("UNSUPPORTED {}: {m}", r.name),
            }
        }
        return;
    }
    let passed: BTreeSet<String> = reports
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Pass { .. }))
        .map(|r| r.name.clone())
        .collect();
    let expected_path = repo().join("conformance/expected_passes.txt");
    if std::env::var("MODC_CONFORMANCE_BLESS").as_deref() == Ok("1") {
        let mut text = String::from("# Backend cases the interpreter passes; tests/conformance.rs fails if one stops passing.\n# Regenerate deliberately with MODC_CONFORMANCE_BLESS=1 cargo test --test conformance.\n");
        for p in &passed {
            text.push_str(p);
            text.push('\n');
        }
        std::fs::write(&expected_path, text).unwrap();
        std::fs::write(
            repo().join("conformance/report.md"),
            report_markdown(&reports),
        )
        .unwrap();
        return;
    }
    let expected: Vec<String> = std::fs::read_to_string(&expected_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect();
    let regressions: Vec<String> = expected
        .iter()
        .filter(|e| !passed.contains(*e))
        .map(|e| {
            let why = reports
                .iter()
                .find(|r| &r.name == e)
                .map(|r| format!("{:?}", r.outcome))
                .unwrap_or_else(|| "not run".into());
            format!("{e}: {why}")
        })
        .collect();
    assert!(
        regressions.is_empty(),
        "{} cases that passed before now fail:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}

fn report_markdown(reports: &[CaseReport]) -> String {
    #[derive(Default)]
    struct Row {
        pass: usize,
        fail: Vec<(String, String)>,
        unsupported: Vec<(String, String)>,
    }
    let mut by_op: BTreeMap<String, Row> = BTreeMap::new();
    for r in reports {
        for op in &r.ops {
            let row = by_op.entry(op.clone()).or_default();
            match &r.outcome {
                Outcome::Pass { .. } => row.pass += 1,
                Outcome::Fail(m) => row.fail.push((r.name.clone(), m.clone())),
                Outcome::Unsupported(m) => row.unsupported.push((r.name.clone(), m.clone())),
            }
        }
    }
    let total = |f: &str, pred: fn(&Outcome) -> bool| {
        reports
            .iter()
            .filter(|r| r.name.starts_with(f) && pred(&r.outcome))
            .count()
    };
    let mut s = String::from("# Conformance report: the reference interpreter on the ONNX backend test data\n\nGenerated by `MODC_CONFORMANCE_BLESS=1 cargo test --test conformance` (onnx 1.22.0 test data; tolerance rtol 1e-3, atol 1e-7).\n\n| folder | passed | failed | unsupported |\n|---|---|---|---|\n");
    for f in FOLDERS.iter().chain(["light"].iter()) {
        let _ = writeln!(
            s,
            "| {f} | {} | {} | {} |",
            total(f, |o| matches!(o, Outcome::Pass { .. })),
            total(f, |o| matches!(o, Outcome::Fail(_))),
            total(f, |o| matches!(o, Outcome::Unsupported(_)))
        );
    }
    s.push_str("\nPer op type (a case counts for every op type its model contains):\n\n| op | passed | failed | unsupported |\n|---|---|---|---|\n");
    for (op, row) in &by_op {
        let _ = writeln!(
            s,
            "| {op} | {} | {} | {} |",
            row.pass,
            row.fail.len(),
            row.unsupported.len()
        );
    }
    s.push_str("\n## Failures and unsupported cases\n\n");
    for r in reports {
        let line = |m: &str| m.replace('\n', " ").chars().take(240).collect::<String>();
        match &r.outcome {
            Outcome::Fail(m) => {
                let _ = writeln!(s, "- FAIL `{}`: {}", r.name, line(m));
            }
            Outcome::Unsupported(m) => {
                let _ = writeln!(s, "- unsupported `{}`: {}", r.name, line(m));
            }
            Outcome::Pass { .. } => {}
        }
    }
    s
}
