//! A model's summary, as `modc inspect` prints it: inputs and outputs with shapes,
//! opsets, an op-type histogram (subgraphs included), parameter count and bytes,
//! and the external data files the model uses.
//!
//! Parameters are every stored tensor: initializers (dense and sparse) and tensor
//! attributes such as the `value` of Constant nodes, since many exporters store all
//! weights as Constant nodes. Inspecting never reads tensor data.
//!
//! ```
//! let m = modc::parse_model("graph @g(%x: f32[2]) -> (%y) {\n  %y = Relu(%x)\n  return %y\n}\n").unwrap();
//! let s = modc::inspect(&m);
//! assert_eq!(s.op_histogram["Relu"], 1);
//! ```

use crate::ir::model::Model;
use crate::ir::tensor::TensorData;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Serialize)]
pub struct ValueSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
}

#[derive(Debug, Serialize)]
pub struct ExternalFileSummary {
    pub path: String,
    pub file_bytes: u64,
    pub tensors: usize,
    pub tensor_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ModelSummary {
    pub ir_version: Option<i64>,
    pub producer: String,
    pub opsets: BTreeMap<String, i64>,
    pub inputs: Vec<ValueSummary>,
    pub outputs: Vec<ValueSummary>,
    pub nodes: usize,
    pub op_histogram: BTreeMap<String, usize>,
    pub functions: Vec<String>,
    pub parameters: u64,
    pub parameter_bytes: u64,
    pub tensors: usize,
    pub external_data: Vec<ExternalFileSummary>,
}

/// Summarises a model without reading any tensor data.
pub fn inspect(m: &Model) -> ModelSummary {
    let g = &m.graph;
    let vs = |ids: &[crate::ir::graph::ValueId]| {
        ids.iter()
            .map(|&v| ValueSummary {
                name: g.value(v).name.clone(),
                ty: g
                    .value(v)
                    .ty
                    .as_ref()
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into()),
            })
            .collect()
    };
    let mut hist = BTreeMap::new();
    g.op_histogram(&mut hist);
    for f in &m.functions {
        f.body.op_histogram(&mut hist);
    }
    let (mut params, mut bytes, mut tensors) = (0u64, 0u64, 0usize);
    let mut ext: BTreeMap<String, ExternalFileSummary> = BTreeMap::new();
    g.for_each_tensor(&mut |t| {
        tensors += 1;
        params += t.num_elements().unwrap_or(0);
        bytes += t.byte_size();
        if let TensorData::External(e) = &t.data {
            let entry = ext
                .entry(e.file.path.display().to_string())
                .or_insert_with(|| ExternalFileSummary {
                    path: e.file.path.display().to_string(),
                    file_bytes: e.file.size,
                    tensors: 0,
                    tensor_bytes: 0,
                });
            entry.tensors += 1;
            entry.tensor_bytes += e.length;
        }
    });
    ModelSummary {
        ir_version: m.ir_version,
        producer: format!(
            "{} {}",
            m.producer_name.clone().unwrap_or_default(),
            m.producer_version.clone().unwrap_or_default()
        )
        .trim()
        .to_string(),
        opsets: m
            .opset_imports
            .iter()
            .map(|o| {
                (
                    if o.domain.is_empty() {
                        "ai.onnx".to_string()
                    } else {
                        o.domain.clone()
                    },
                    o.version,
                )
            })
            .collect(),
        inputs: vs(&g.inputs),
        outputs: vs(&g.outputs),
        nodes: g.node_count_recursive(),
        op_histogram: hist,
        functions: m
            .functions
            .iter()
            .map(|f| format!("{}::{}", f.domain, f.name))
            .collect(),
        parameters: params,
        parameter_bytes: bytes,
        tensors,
        external_data: ext.into_values().collect(),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

impl fmt::Display for ModelSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ir_version: {}",
            self.ir_version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "?".into())
        )?;
        if !self.producer.is_empty() {
            writeln!(f, "producer:   {}", self.producer)?;
        }
        let ops: Vec<String> = self
            .opsets
            .iter()
            .map(|(d, v)| format!("{d} {v}"))
            .collect();
        writeln!(f, "opsets:     {}", ops.join(", "))?;
        writeln!(f, "inputs:")?;
        for v in &self.inputs {
            writeln!(f, "  {}: {}", v.name, v.ty)?;
        }
        writeln!(f, "outputs:")?;
        for v in &self.outputs {
            writeln!(f, "  {}: {}", v.name, v.ty)?;
        }
        writeln!(f, "nodes:      {} (subgraphs included)", self.nodes)?;
        writeln!(
            f,
            "parameters: {} in {} tensors, {}",
            self.parameters,
            self.tensors,
            human(self.parameter_bytes)
        )?;
        if !self.functions.is_empty() {
            writeln!(f, "functions:  {}", self.functions.join(", "))?;
        }
        if !self.external_data.is_empty() {
            writeln!(f, "external data:")?;
            for e in &self.external_data {
                writeln!(
                    f,
                    "  {} ({}, {} tensors)",
                    e.path,
                    human(e.file_bytes),
                    e.tensors
                )?;
            }
        }
        writeln!(f, "op types:")?;
        let mut hist: Vec<(&String, &usize)> = self.op_histogram.iter().collect();
        hist.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in hist {
            writeln!(f, "  {n:>6}  {op}")?;
        }
        Ok(())
    }
}
