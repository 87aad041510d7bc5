//! `modc optimize`: load, run a pass pipeline, optionally verify against the
//! original with the interpreter, check the file does not grow, and save
//! atomically. Prints a table of op counts before and after, sizes and time.

use crate::PolicyArgs;
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Args)]
pub struct OptimizeArgs {
    /// The model to optimize (ONNX, or the text form if the name ends in .ir).
    input: PathBuf,
    /// Where to write the optimized model.
    #[arg(short, long)]
    output: PathBuf,
    /// The optimization level: 0, 1, 2 or 3 (see `--list-passes`).
    #[arg(short = 'O', default_value = "2", value_parser = ["0", "1", "2", "3"])]
    level: String,
    /// A pipeline instead of the level: pass names separated by commas, a
    /// parenthesized group runs to a fixpoint, O0..O3 name the levels.
    #[arg(long, value_name = "LIST")]
    passes: Option<String>,
    /// Run the original and the optimized model through the interpreter on
    /// seeded random inputs (and on the inputs given by --input) and fail,
    /// writing nothing, if any output differs beyond rtol 1e-3, atol 1e-4.
    #[arg(long)]
    verify: bool,
    /// An input for --verify as NAME=FILE (.npy or .pb); repeatable.
    #[arg(long = "input", value_name = "NAME=FILE")]
    inputs: Vec<String>,
    /// The size of a symbolic dimension for --verify's random inputs, as NAME=N.
    #[arg(long = "dim", value_name = "NAME=N")]
    dims: Vec<String>,
    /// Write the pipeline's report (per pass: time, nodes, rewrites) as JSON.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Write the text form before and after every pass into DIR.
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
    /// Stop after N pass runs (to bisect a bad rewrite).
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    /// Verify the graph after every pass.
    #[arg(long)]
    verify_each: bool,
    /// Fold constants whatever the size of the result (the size guard otherwise
    /// keeps nodes whose folded result is much larger than their inputs).
    #[arg(long)]
    no_size_guard: bool,
    /// Allow the file to grow by more than 1% (implied by --no-size-guard).
    #[arg(long)]
    allow_growth: bool,
    /// Initializers of at least this many bytes go to `<OUTPUT>.data` (the default
    /// keeps the input's layout: external data stays external).
    #[arg(long, value_name = "BYTES")]
    external_data_threshold: Option<u64>,
    /// Write the types shape inference found for intermediate values as
    /// value_info (by default only the value_info the input had is kept, so
    /// small models do not grow).
    #[arg(long)]
    keep_inferred_types: bool,
    /// Upgrade the model's default-domain opset to N before the passes run,
    /// converting the ops that changed (an op that cannot be converted is an
    /// error naming it).
    #[arg(long, value_name = "N")]
    opset: Option<i64>,
    /// What the output will run on: `onnx` (standard ops plus modc's fused
    /// kernels, saved as ONNX local functions) or `onnxruntime` (its com.microsoft
    /// contrib ops are allowed where the opset lacks a standard op).
    #[arg(long, value_name = "TARGET", default_value = "onnx", value_parser = ["onnx", "onnxruntime"])]
    target: String,
    /// E-graph saturation stops at this many e-nodes (per graph).
    #[arg(long, value_name = "N", default_value_t = modc::FuseOptions::default().node_limit)]
    fuse_node_limit: usize,
    /// ... or after this many iterations.
    #[arg(long, value_name = "N", default_value_t = modc::FuseOptions::default().iter_limit)]
    fuse_iter_limit: usize,
    /// ... or after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = modc::FuseOptions::default().time_limit.as_secs_f64())]
    fuse_time_limit: f64,
    /// Extract the cheapest graph exactly (every combination of choices, shared
    /// subexpressions counted once) instead of greedily; regions with more than
    /// --exact-limit combinations keep the greedy result, and the report says so.
    #[arg(long)]
    exact_extraction: bool,
    /// See --exact-extraction.
    #[arg(long, value_name = "N", default_value_t = modc::FuseOptions::default().exact_limit)]
    exact_limit: u64,
    /// Print only errors.
    #[arg(short, long)]
    quiet: bool,
    #[command(flatten)]
    policy: PolicyArgs,
}

pub fn list_passes() -> String {
    let mut s = String::from("passes:\n");
    for (name, about) in modc::pass::pass_descriptions() {
        s.push_str(&format!("  {name:<14} {about}\n"));
    }
    s.push_str("levels:\n");
    for l in ["O0", "O1", "O2", "O3"] {
        s.push_str(&format!(
            "  {l:<14} {}\n",
            modc::level_pipeline(l).unwrap_or_default()
        ));
    }
    s
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn encoded_size(m: &modc::Model) -> Result<u64, String> {
    use prost::Message;
    Ok(modc::to_proto(m).map_err(|e| e.to_string())?.encoded_len() as u64)
}

pub fn optimize(a: OptimizeArgs) -> Result<(), String> {
    if same_file(&a.input, &a.output) {
        return Err(format!(
            "{}: the output would overwrite the input; choose another -o",
            a.output.display()
        ));
    }
    let pipeline_text = match &a.passes {
        Some(p) => p.clone(),
        None => format!("O{}", a.level),
    };
    let pipeline = modc::Pipeline::parse(&pipeline_text).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let model = crate::load_any(&a.input, &a.policy)?;
    let had_external = {
        let mut ext = false;
        model.graph.for_each_tensor(&mut |t| ext |= t.is_external());
        ext
    };
    // The input's size: the file itself when it holds everything.
    let size_before = match std::fs::metadata(&a.input) {
        Ok(md) if !had_external && a.input.extension().is_none_or(|e| e != "ir") => md.len(),
        _ => encoded_size(&model)?,
    };
    let mut hist_before = BTreeMap::new();
    model.graph.op_histogram(&mut hist_before);
    let counted_before = modc::pass::edit::counted_nodes(&model.graph);
    let load_time = start.elapsed();
    let mut optimized = model.clone();
    let upgrade = match a.opset {
        Some(n) => Some(modc::upgrade_opset(&mut optimized, n).map_err(|e| e.to_string())?),
        None => None,
    };

    let bar = indicatif::ProgressBar::new_spinner();
    if a.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut pm = modc::PassManager::new(pipeline);
    pm.verify_each = a.verify_each;
    pm.dump_dir = a.dump_dir.clone();
    pm.stop_after = a.stop_after;
    pm.options.size_guard = !a.no_size_guard;
    if !(a.fuse_time_limit.is_finite() && a.fuse_time_limit > 0.0) {
        return Err(format!(
            "--fuse-time-limit must be a positive number of seconds, not {}",
            a.fuse_time_limit
        ));
    }
    pm.options.fuse = modc::FuseOptions {
        node_limit: a.fuse_node_limit,
        iter_limit: a.fuse_iter_limit,
        time_limit: std::time::Duration::from_secs_f64(a.fuse_time_limit),
        exact: a.exact_extraction,
        exact_limit: a.exact_limit,
        target: if a.target == "onnxruntime" {
            modc::Target::OnnxRuntime
        } else {
            modc::Target::Onnx
        },
    };
    {
        let bar = bar.clone();
        pm.on_progress(move |name, step| {
            bar.set_message(format!("step {step}: {name}"));
            bar.tick();
        });
    }
    let t_opt = Instant::now();
    let report = pm.run(&mut optimized).map_err(|e| e.to_string())?;
    let optimize_time = t_opt.elapsed();
    bar.finish_and_clear();
    modc::verify(&optimized.graph)
        .map_err(|e| format!("the optimized graph is invalid (a bug in a pass): {e}"))?;

    let mut verify_note = None;
    if a.verify {
        let mut opts = modc::pass::equiv::EquivOptions::default();
        for d in &a.dims {
            let (k, v) = d
                .split_once('=')
                .ok_or_else(|| format!("--dim expects NAME=N, got '{d}'"))?;
            let n: usize = v
                .parse()
                .map_err(|_| format!("--dim {k}: '{v}' is not a size"))?;
            opts.dims.insert(k.to_string(), n);
        }
        if !a.inputs.is_empty() {
            opts.given.push(crate::read_inputs(&model, &a.inputs)?);
        }
        let r = modc::pass::equiv::check_equivalent(&model, &optimized, &opts)
            .map_err(|e| format!("--verify failed, nothing written: {e}"))?;
        verify_note = Some(r);
    }

    if !a.keep_inferred_types {
        drop_inferred_types(&mut optimized.graph);
    }
    let size_after = encoded_size(&optimized)?;
    if !a.allow_growth && !a.no_size_guard && size_after as f64 > size_before as f64 * 1.01 {
        return Err(format!(
            "the optimized model is {size_after} bytes, more than 1% over the original's {size_before}; nothing written (--allow-growth accepts it)"
        ));
    }
    let opts = modc::SaveOptions {
        external_data_threshold: a.external_data_threshold.or(if had_external {
            Some(1024)
        } else {
            None
        }),
        ..Default::default()
    };
    let saved = modc::save(&optimized, &a.output, &opts).map_err(|e| e.to_string())?;
    let elapsed = start.elapsed();

    let mut hist_after = BTreeMap::new();
    optimized.graph.op_histogram(&mut hist_after);
    let counted_after = modc::pass::edit::counted_nodes(&optimized.graph);
    if let Some(path) = &a.report {
        let json = serde_json::json!({
            "input": a.input,
            "output": a.output,
            "pipeline": report.pipeline,
            "nodes_before": counted_before,
            "nodes_after": counted_after,
            "all_nodes_before": report.nodes_before,
            "all_nodes_after": report.nodes_after,
            "size_before": size_before,
            "size_after": saved.model_bytes + saved.external_bytes,
            "time_ms": elapsed.as_secs_f64() * 1e3,
            "load_ms": load_time.as_secs_f64() * 1e3,
            "optimize_ms": optimize_time.as_secs_f64() * 1e3,
            "stop": report.stop,
            "unconverged_groups": report.unconverged_groups,
            "opset_upgrade": upgrade.as_ref().map(|u| serde_json::json!({
                "from": u.from, "to": u.to, "converted": u.converted
            })),
            "ops_before": hist_before,
            "ops_after": hist_after,
            "verify": verify_note.as_ref().map(|r| serde_json::json!({
                "runs": r.runs, "skipped_random": r.skipped_random, "max_abs_diff": r.max_abs_diff
            })),
            "passes": report.passes,
        });
        let text = serde_json::to_string_pretty(&json).map_err(|e| e.to_string())? + "\n";
        modc::write_atomic(path, text.as_bytes())?;
    }
    if a.quiet {
        return Ok(());
    }
    let mut out = String::new();
    let keys: std::collections::BTreeSet<&String> =
        hist_before.keys().chain(hist_after.keys()).collect();
    let w = keys.iter().map(|k| k.len()).max().unwrap_or(4).max(14);
    out.push_str(&format!("{:<w$} {:>9} {:>9}\n", "op", "before", "after"));
    for k in keys {
        let (b, c) = (
            hist_before.get(k).copied().unwrap_or(0),
            hist_after.get(k).copied().unwrap_or(0),
        );
        let mark = if b != c { " *" } else { "" };
        out.push_str(&format!("{k:<w$} {b:>9} {c:>9}{mark}\n"));
    }
    out.push_str(&format!(
        "{:<w$} {:>9} {:>9}\n",
        "nodes", report.nodes_before, report.nodes_after
    ));
    out.push_str(&format!(
        "{:<w$} {:>9} {:>9}\n",
        "counted nodes", counted_before, counted_after
    ));
    out.push_str(&format!(
        "{:<w$} {:>9} {:>9}\n",
        "size (bytes)",
        size_before,
        saved.model_bytes + saved.external_bytes
    ));
    if let Some(u) = &upgrade {
        out.push_str(&format!("{u}\n"));
    }
    if let Some(r) = &verify_note {
        out.push_str(&format!(
            "verified on {} input set(s){}: largest difference {:.3e}\n",
            r.runs,
            if r.skipped_random > 0 {
                format!(
                    " ({} random set(s) skipped: the original fails on them)",
                    r.skipped_random
                )
            } else {
                String::new()
            },
            r.max_abs_diff
        ));
    }
    for p in &report.passes {
        for d in &p.details {
            out.push_str(&format!("{d}\n"));
        }
    }
    if report.stop == modc::StopReason::StepLimit {
        out.push_str(&format!(
            "stopped after {} pass runs (--stop-after)\n",
            report.passes.len()
        ));
    }
    out.push_str(&format!(
        "wrote {} in {:.1} ms (passes {:.1} ms: {})\n",
        a.output.display(),
        elapsed.as_secs_f64() * 1e3,
        optimize_time.as_secs_f64() * 1e3,
        report.pipeline
    ));
    crate::emit(&out)
}

/// Forgets the types of intermediate values the input did not declare (passes
/// infer them; saving them all as value_info grows small models by a quarter).
fn drop_inferred_types(g: &mut modc::Graph) {
    let keep: std::collections::HashSet<modc::ValueId> = g
        .value_info
        .iter()
        .chain(&g.outputs)
        .chain(&g.inputs)
        .copied()
        .collect();
    let ids: Vec<modc::ValueId> = g.value_ids().collect();
    for v in ids {
        if matches!(g.value(v).def, modc::ValueDef::Node { .. }) && !keep.contains(&v) {
            g.value_mut(v).ty = None;
        }
    }
    let nodes: Vec<modc::NodeId> = g.node_ids().collect();
    for n in nodes {
        for a in &mut g.node_mut(n).attrs {
            for sub in a.value.graphs_mut() {
                drop_inferred_types(sub);
            }
        }
    }
}
