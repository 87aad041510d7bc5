//! Rule tests of the fusion passes: every rule of `passes/*.rules` fires where it
//! should and does not where one of its conditions fails.
//!
//! Each file in `tests/fixtures/fuse/` is IR text named `<rule file>_<case>.ir`
//! whose header says which rules to use and what must happen:
//!
//! ```text
//! # rules: recognize
//! # fires: div-by-const gelu-erf
//! # no-fire: gelu-tanh
//! # expect: unchanged
//! ```
//!
//! - `rules:` `algebra` (algebra.rules alone), `recognize` or `contrib` (that file
//!   plus algebra.rules, whose canonical forms the recognitions are written
//!   against), or `all` (every rule, contrib ones included).
//! - `fires:` rules that must fire (count above 0 in `FuseStats::fired`);
//!   `no-fire:` rules that must not; `expect: unchanged`: extraction keeps the
//!   original (`FuseStats::applied` is false).
//!
//! The harness runs `infer`, then `saturate_and_extract` directly (not the `fuse`
//! pass, so kernel grouping stays out of it) at the model's default opset, then
//! `dce`; it verifies the result, runs the interpreter on seeded random inputs
//! before and after and compares (rtol 1e-4, atol 1e-5), and snapshots the diff in
//! `snapshots/fuse__NAME.snap` (the interpreter has the contrib ops' kernels too).
//!
//! The coverage tests require every rule in some fixture's `fires:` and in some
//! `no-fire:` (where a condition fails: wrong axis, non-constant epsilon, a
//! broadcast that changes the shape, opset too low, a wrong constant ...; for
//! rules without conditions, a near miss), and a fixture for every rule file.

use modc::fuse_rules::{builtin_rules, Rule, RuleSet};
use modc::pass::equiv::{check_equivalent, EquivOptions};
use modc::{parse_model, print_model_with_data, FuseOptions, PassManager, Pipeline};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Sizes of the symbolic dims the fixtures use.
const DIMS: &[(&str, usize)] = &[("batch", 3), ("seq", 5)];

fn fixtures() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuse");
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("tests/fixtures/fuse exists")
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

fn names(src: &str, key: &str) -> Vec<String> {
    header(src, key)
        .map(|h| h.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

fn rules() -> &'static RuleSet {
    static SET: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| builtin_rules().expect("the built-in rule files parse"))
}

/// The rules a fixture's `# rules:` line selects.
fn select<'a>(set: &'a RuleSet, which: &str) -> Result<Vec<&'a Rule>, String> {
    let files: &[&str] = match which {
        "algebra" => &["algebra.rules"],
        "recognize" => &["algebra.rules", "recognize.rules"],
        "contrib" => &["algebra.rules", "contrib.rules"],
        "all" => return Ok(set.rules.iter().collect()),
        other => {
            return Err(format!(
                "'# rules: {other}': expected algebra, recognize, contrib or all"
            ))
        }
    };
    Ok(set
        .rules
        .iter()
        .filter(|r| files.contains(&r.file.as_str()))
        .collect())
}

fn run_fixture(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let which = header(&src, "rules:").ok_or("no '# rules: ...' line")?;
    let chosen = select(rules(), which)?;
    let fires = names(&src, "fires:");
    let no_fire = names(&src, "no-fire:");
    if fires.is_empty() && no_fire.is_empty() {
        return Err("no '# fires:' or '# no-fire:' claim".into());
    }
    for n in fires.iter().chain(&no_fire) {
        if !chosen.iter().any(|r| &r.name == n) {
            return Err(format!(
                "'{n}' is not a rule of '# rules: {which}' (a claim about it says nothing)"
            ));
        }
    }
    let unchanged = header(&src, "expect:") == Some("unchanged");

    let mut model = parse_model(&src).map_err(|e| e.to_string())?;
    PassManager::new(Pipeline::parse("infer").map_err(|e| e.to_string())?)
        .run(&mut model)
        .map_err(|e| e.to_string())?;
    let original = model.clone();
    let before = print_model_with_data(&original, 16);
    let opset = model
        .opset_version("")
        .ok_or("the fixture imports no default-domain opset")?;
    let opts = FuseOptions {
        // Deterministic: saturation stops on the node or iteration limit only.
        time_limit: Duration::from_secs(120),
        ..FuseOptions::default()
    };
    let stats = modc::saturate_and_extract(&mut model.graph, opset, &chosen, &opts)
        .map_err(|e| e.to_string())?;
    let mut pm = PassManager::new(Pipeline::parse("dce").map_err(|e| e.to_string())?);
    pm.verify_each = true;
    pm.run(&mut model).map_err(|e| e.to_string())?;
    modc::verify(&model.graph).map_err(|e| format!("the result does not verify: {e}"))?;

    let fired: BTreeMap<&str, usize> = stats
        .fired
        .iter()
        .filter(|(_, &n)| n > 0)
        .map(|(k, &n)| (k.as_str(), n))
        .collect();
    let mut wrong = vec![];
    for n in &fires {
        if !fired.contains_key(n.as_str()) {
            wrong.push(format!("'{n}' must fire and did not"));
        }
    }
    for n in &no_fire {
        if fired.contains_key(n.as_str()) {
            wrong.push(format!("'{n}' must not fire and did"));
        }
    }
    if unchanged && stats.applied {
        wrong.push("expected the original to be kept (expect: unchanged)".into());
    }
    if !wrong.is_empty() {
        return Err(format!(
            "{}\n  fired: {fired:?}\n  saturation: {}; cost {:.0} -> {:.0}",
            wrong.join("\n  "),
            stats.stop,
            stats.cost_before,
            stats.cost_after
        ));
    }

    let mut eq = EquivOptions::default();
    eq.tolerance.rtol = 1e-4;
    eq.tolerance.atol = 1e-5;
    eq.dims = DIMS.iter().map(|&(k, v)| (k.to_string(), v)).collect();
    let r = check_equivalent(&original, &model, &eq).map_err(|e| {
        format!(
            "{e}\n  fired: {fired:?}\n  after:\n{}",
            print_model_with_data(&model, 16)
        )
    })?;
    if r.runs == 0 || r.skipped_random > 0 {
        return Err(format!(
            "the original fixture fails on random inputs: {r:?}"
        ));
    }
    modc::to_proto(&model).map_err(|e| format!("the result does not export: {e}"))?;

    let after = print_model_with_data(&model, 16);
    let diff = similar::TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(100)
        .to_string();
    let fired_names: Vec<&str> = fired.keys().copied().collect();
    let snap = format!(
        "rules: {which} (opset {opset})\nfired: {}\nsaturation: {}\nnodes: {} -> {}{}\n{}",
        fired_names.join(" "),
        stats.stop,
        original.graph.node_count(),
        model.graph.node_count(),
        if stats.applied {
            ""
        } else {
            " (kept the original)"
        },
        if diff.is_empty() {
            "(unchanged)\n".to_string()
        } else {
            diff
        }
    );
    let name = path.file_stem().unwrap().to_string_lossy().to_string();
    insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false, input_file => path}, {
        insta::assert_snapshot!(format!("fuse__{name}"), snap);
    });
    Ok(())
}

#[test]
fn every_fuse_fixture_keeps_its_claims_outputs_and_snapshot() {
    let mut failures = vec![];
    for path in fixtures() {
        if let Err(e) = run_fixture(&path) {
            failures.push(format!("{}: {e}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Rule names the fixtures claim under `key`, with the fixtures that claim them.
fn claimed(key: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in fixtures() {
        let src = std::fs::read_to_string(&p).unwrap();
        for n in names(&src, key) {
            out.entry(n)
                .or_default()
                .push(p.file_stem().unwrap().to_string_lossy().to_string());
        }
    }
    out
}

#[test]
fn every_rule_fires_in_some_fixture() {
    let fires = claimed("fires:");
    let missing: Vec<String> = rules()
        .rules
        .iter()
        .filter(|r| !fires.contains_key(&r.name))
        .map(|r| format!("{} ({}:{})", r.name, r.file, r.line))
        .collect();
    assert!(
        missing.is_empty(),
        "rules no fixture shows firing (add them to a '# fires:' line): {missing:?}"
    );
}

#[test]
fn every_rule_has_a_fixture_where_it_must_not_fire() {
    let no_fire = claimed("no-fire:");
    let missing: Vec<String> = rules()
        .rules
        .iter()
        .filter(|r| !no_fire.contains_key(&r.name))
        .map(|r| format!("{} ({}:{})", r.name, r.file, r.line))
        .collect();
    assert!(
        missing.is_empty(),
        "rules without a fixture where they must not fire (a failing condition, or \
         a near miss for rules without one; add them to a '# no-fire:' line): {missing:?}"
    );
}

#[test]
fn every_rule_file_has_fixtures_and_claims_name_real_rules() {
    let files = fixtures();
    let stems: Vec<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().to_string())
        .collect();
    for (file, _) in modc::fuse_rules::BUILTIN_RULES {
        let topic = file.trim_end_matches(".rules");
        let has_rules = rules().rules.iter().any(|r| r.file == *file);
        if has_rules {
            assert!(
                stems.iter().any(|s| s.starts_with(&format!("{topic}_"))),
                "{file} has no fixture named {topic}_*.ir"
            );
        }
    }
    let known: Vec<&str> = rules().rules.iter().map(|r| r.name.as_str()).collect();
    for key in ["fires:", "no-fire:"] {
        for (n, who) in claimed(key) {
            assert!(
                known.contains(&n.as_str()),
                "{who:?}: '# {key} {n}' names no rule"
            );
        }
    }
}
