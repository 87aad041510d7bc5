//! Differential checking: a model before and after a rewrite runs through the
//! reference interpreter on the same inputs and the outputs are compared.
//!
//! Inputs are seeded random data of each input's declared type; symbolic or
//! unknown dimensions take the size given by name in `dims`, else 1 for the first
//! dimension and 16 for the others (64, then 224, when the original model fails
//! on 16: images smaller than a network's total stride do). Inputs the caller
//! gives are checked too.
//!
//! ```
//! use modc::pass::equiv::{check_equivalent, EquivOptions};
//! let a = modc::parse_model("opset _=17\ngraph @g(%x: f32[n,4]) -> (%y) {\n  %a = Identity(%x)\n  %y = Relu(%a)\n  return %y\n}\n").unwrap();
//! let b = modc::parse_model("opset _=17\ngraph @g(%x: f32[n,4]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n").unwrap();
//! let r = check_equivalent(&a, &b, &EquivOptions::default()).unwrap();
//! assert_eq!(r.max_abs_diff, 0.0);
//! ```

use crate::conformance::{compare, Tolerance};
use crate::interp::value::RtValue;
use crate::interp::Interpreter;
use crate::ir::model::Model;
use crate::ir::types::{Dim, DimValue, Shape, Type, TypeKind};
use std::collections::HashMap;

/// One input set: (input name, value) pairs.
pub type Feeds = Vec<(String, RtValue)>;

/// How to check.
#[derive(Clone, Debug)]
pub struct EquivOptions {
    /// Seeds of the random input sets (one run per seed).
    pub seeds: Vec<u64>,
    /// Sizes of symbolic dimensions, by name.
    pub dims: HashMap<String, usize>,
    /// Input sets given by the caller, checked besides the random ones.
    pub given: Vec<Vec<(String, RtValue)>>,
    pub tolerance: Tolerance,
}

impl Default for EquivOptions {
    fn default() -> Self {
        EquivOptions {
            seeds: vec![1, 2],
            dims: HashMap::new(),
            given: vec![],
            tolerance: Tolerance {
                rtol: 1e-3,
                atol: 1e-4,
            },
        }
    }
}

/// What the check saw.
#[derive(Clone, Debug, PartialEq)]
pub struct EquivReport {
    /// Input sets both models ran on.
    pub runs: usize,
    /// Random input sets skipped because the original model fails on them (random
    /// data is not valid for every model: indices, sample rates ...).
    pub skipped_random: usize,
    pub max_abs_diff: f64,
}

/// Seeded random inputs for every graph input without a default.
pub fn random_feeds(
    m: &Model,
    seed: u64,
    dims: &HashMap<String, usize>,
    default_size: usize,
) -> Result<Vec<(String, RtValue)>, String> {
    let g = &m.graph;
    let mut feeds = vec![];
    for (k, &id) in g.inputs.iter().enumerate() {
        let val = g.value(id);
        if val.init.is_some() {
            continue;
        }
        let ty = val.ty.as_ref().map(|t| concrete(t, dims, default_size));
        let t = crate::interp::io::random_input(
            &val.name,
            ty.as_ref(),
            dims,
            seed.wrapping_mul(1000).wrapping_add(k as u64),
        )?;
        feeds.push((val.name.clone(), RtValue::Tensor(t)));
    }
    Ok(feeds)
}

fn concrete(t: &Type, dims: &HashMap<String, usize>, default_size: usize) -> Type {
    match &t.kind {
        TypeKind::Tensor {
            elem,
            shape: Some(s),
        } => {
            let d = s
                .dims
                .iter()
                .enumerate()
                .map(|(i, d)| match &d.value {
                    DimValue::Fixed(n) if *n >= 0 => d.clone(),
                    DimValue::Param(p) if dims.contains_key(p) => Dim::fixed(dims[p] as i64),
                    _ => Dim::fixed(if i == 0 { 1 } else { default_size as i64 }),
                })
                .collect();
            Type::tensor(*elem, Shape::from_dims(d))
        }
        _ => t.clone(),
    }
}

/// Runs both models on the same inputs and compares every output. An error says
/// which output differs, by how much, on which input set.
pub fn check_equivalent(
    original: &Model,
    optimized: &Model,
    opts: &EquivOptions,
) -> Result<EquivReport, String> {
    let a = Interpreter::new(original);
    let b = Interpreter::new(optimized);
    let mut report = EquivReport {
        runs: 0,
        skipped_random: 0,
        max_abs_diff: 0.0,
    };
    let mut sets: Vec<(String, Feeds, bool)> = opts
        .given
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("given inputs #{}", i + 1), s.clone(), false))
        .collect();
    // The first default size the original model runs on.
    let mut size = 16;
    if let Some(&seed) = opts.seeds.first() {
        for s in [16, 64, 224] {
            size = s;
            if a.run(random_feeds(original, seed, &opts.dims, s)?).is_ok() {
                break;
            }
        }
    }
    for &seed in &opts.seeds {
        sets.push((
            format!("random inputs (seed {seed})"),
            random_feeds(original, seed, &opts.dims, size)?,
            true,
        ));
    }
    for (what, feeds, random) in sets {
        let expected = match a.run(feeds.clone()) {
            Ok(o) => o,
            Err(e) if random => {
                tracing::info!("original model fails on {what}: {e}");
                report.skipped_random += 1;
                continue;
            }
            Err(e) => return Err(format!("the original model fails on {what}: {e}")),
        };
        let actual = b
            .run(feeds)
            .map_err(|e| format!("the optimized model fails on {what}: {e}"))?;
        if expected.len() != actual.len() {
            return Err(format!(
                "the optimized model has {} outputs, the original {}",
                actual.len(),
                expected.len()
            ));
        }
        for ((name, e), (_, x)) in expected.iter().zip(&actual) {
            let d = compare(e, x, opts.tolerance)
                .map_err(|m| format!("output '{name}' differs on {what}: {m}"))?;
            report.max_abs_diff = report.max_abs_diff.max(d);
        }
        report.runs += 1;
    }
    if report.runs == 0 {
        return Err(
            "the original model fails on every random input set; give inputs with --input".into(),
        );
    }
    Ok(report)
}
