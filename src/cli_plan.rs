//! `modc plan`: lower a model for given input shapes and print the schedule, the
//! memory plan and the CPU fallbacks.

use crate::PolicyArgs;
use clap::Args;
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Args)]
pub(crate) struct PlanArgs {
    /// The model (ONNX, or the text form if the name ends in .ir).
    model: PathBuf,
    /// Print the plan as JSON.
    #[arg(long)]
    json: bool,
    /// The size of a symbolic dimension, as NAME=N (others are 1); repeatable.
    #[arg(long = "dim", value_name = "NAME=N")]
    dims: Vec<String>,
    /// The whole shape of an input, as NAME=D1,D2,... (NAME= for a scalar); repeatable.
    #[arg(long = "input-shape", value_name = "NAME=D1,D2,..")]
    input_shapes: Vec<String>,
    #[command(flatten)]
    policy: PolicyArgs,
}

fn parse_size(s: &str, what: &str) -> Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| format!("{what}: '{s}' is not a size"))
}

pub(crate) fn plan(a: PlanArgs) -> Result<(), String> {
    let mut dims = HashMap::new();
    for d in &a.dims {
        let (k, v) = d
            .split_once('=')
            .ok_or_else(|| format!("--dim expects NAME=N, got '{d}'"))?;
        dims.insert(k.to_string(), parse_size(v, &format!("--dim {k}"))?);
    }
    let mut given = HashMap::new();
    for s in &a.input_shapes {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| format!("--input-shape expects NAME=D1,D2,.., got '{s}'"))?;
        let shape: Vec<usize> = if v.trim().is_empty() {
            vec![]
        } else {
            v.split(',')
                .map(|x| parse_size(x, &format!("--input-shape {k}")))
                .collect::<Result<_, _>>()?
        };
        given.insert(k.to_string(), shape);
    }
    let m = crate::load_any(&a.model, &a.policy)?;
    let known: std::collections::HashSet<String> = m
        .graph
        .inputs
        .iter()
        .filter_map(|&v| {
            let (_, s) = m.graph.value(v).ty.as_ref()?.as_tensor()?;
            Some(s?.dims.iter().filter_map(|d| match &d.value {
                modc::DimValue::Param(p) => Some(p.clone()),
                _ => None,
            }))
        })
        .flatten()
        .collect();
    if let Some(bad) = dims.keys().find(|k| !known.contains(*k)) {
        let mut names: Vec<&String> = known.iter().collect();
        names.sort();
        return Err(format!(
            "--dim {bad}: no input has a dimension named '{bad}' (symbolic dimensions: {})",
            if names.is_empty() {
                "none".to_string()
            } else {
                names
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    }
    let shapes = modc::plan::shapes::input_shapes(&m, &dims, &given).map_err(|e| e.to_string())?;
    let p = modc::plan::lower(&m, &shapes, Default::default()).map_err(|e| e.to_string())?;
    if a.json {
        let s = serde_json::to_string_pretty(&p.to_json()).map_err(|e| e.to_string())?;
        crate::emit(&(s + "\n"))
    } else {
        crate::emit(&p.to_text())
    }
}
