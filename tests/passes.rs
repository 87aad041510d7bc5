//! Snapshot tests of the passes.
//!
//! Each file in `tests/fixtures/passes/` is IR text whose first line names a
//! pipeline (`# pipeline: fold,dce`). The test runs the pipeline with the verifier
//! on after every pass, checks with the interpreter that the graph computes the
//! same outputs on seeded random inputs before and after, and snapshots the
//! before/after diff in `snapshots/passes__NAME.snap`. A fixture with the line
//! `# expect: unchanged` must come out exactly as it went in (what a pass must
//! not touch); `# expect: changed` must not.
//! `# no-run` skips the interpreter check (for graphs with unknown ops).
//! Options: `# options: no-size-guard`.

use modc::pass::equiv::{check_equivalent, EquivOptions};
use modc::{parse_model, print_model_with_data, PassManager, Pipeline};
use std::path::Path;

fn fixtures() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/passes");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/fixtures/passes exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "ir"))
        .collect();
    v.sort();
    v
}

fn header<'a>(src: &'a str, key: &str) -> Option<&'a str> {
    src.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix('#')
                .map(str::trim)
                .and_then(|l| l.strip_prefix(key))
        })
        .map(str::trim)
}

fn run_fixture(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let pipeline_text =
        header(&src, "pipeline:").ok_or("the first line must be '# pipeline: ...'")?;
    let pipeline = Pipeline::parse(pipeline_text).map_err(|e| e.to_string())?;
    let original = parse_model(&src).map_err(|e| e.to_string())?;
    let before = print_model_with_data(&original, 16);
    let mut model = original.clone();
    let mut pm = PassManager::new(pipeline);
    pm.verify_each = true;
    if header(&src, "options:").is_some_and(|o| o.contains("no-size-guard")) {
        pm.options.size_guard = false;
    }
    let report = pm.run(&mut model).map_err(|e| e.to_string())?;
    let after = print_model_with_data(&model, 16);
    match header(&src, "expect:") {
        Some("unchanged") if before != after => {
            return Err(format!("expected no change, got:\n{after}"))
        }
        Some("changed") if before == after => return Err("expected a change".into()),
        _ => {}
    }
    if header(&src, "no-run").is_none() && src.lines().all(|l| l.trim() != "# no-run") {
        let mut opts = EquivOptions::default();
        opts.tolerance.atol = 1e-5;
        let r = check_equivalent(&original, &model, &opts)?;
        if r.runs == 0 || r.skipped_random > 0 {
            return Err(format!(
                "the original fixture fails on random inputs: {r:?}"
            ));
        }
    }
    // Round trip through ONNX: what the passes produce is valid ONNX for modc.
    modc::to_proto(&model).map_err(|e| e.to_string())?;
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(100)
        .to_string();
    let per_pass: Vec<String> = report
        .per_pass()
        .iter()
        .filter(|p| p.3 > 0)
        .map(|p| format!("{}: {} rewrites", p.0, p.3))
        .collect();
    let snap = format!(
        "pipeline: {pipeline_text}\nnodes: {} -> {}\n{}\n{}",
        report.nodes_before,
        report.nodes_after,
        per_pass.join("\n"),
        if diff.is_empty() {
            "(unchanged)\n".to_string()
        } else {
            diff
        }
    );
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, input_file => path}, {
        insta::assert_snapshot!(format!("passes__{name}"), snap);
    });
    Ok(())
}

#[test]
fn every_pass_fixture_matches_its_snapshot_and_keeps_outputs() {
    let files = fixtures();
    let mut failures = vec![];
    for path in &files {
        if let Err(e) = run_fixture(path) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_registered_pass_has_a_fixture() {
    let files = fixtures();
    let mut missing = vec![];
    for name in modc::pass::pass_names() {
        let covered = files.iter().any(|p| {
            let src = std::fs::read_to_string(p).unwrap();
            header(&src, "pipeline:")
                .is_some_and(|pl| pl.split([',', '(', ')']).any(|w| w.trim() == name))
                && p.file_stem()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&name.replace('-', "_"))
        });
        if !covered {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "passes without a fixture named after them: {missing:?}"
    );
}
