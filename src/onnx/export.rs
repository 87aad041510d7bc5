//! IR → ONNX protobuf, and saving to a file.
//!
//! Saving is atomic: the model (and its external data file, if any) are written to
//! temporary files in the destination folder and renamed into place, so a failure
//! never leaves a partial output and an input file is never modified.
//!
//! External data: with `external_data_threshold = Some(n)`, every initializer of at
//! least `n` bytes (subgraphs included) goes to `<file name>.data` beside the model,
//! aligned to 4 KiB when it is 64 KiB or larger (so runtimes can map it) and to 64
//! bytes otherwise. With no threshold everything is inline, unless the model would
//! pass protobuf's 2 GiB limit: then modc switches to external data with a 1 KiB
//! threshold (as onnx's own `convert_model_to_external_data` does) and says so in the
//! [`SaveReport`].
//!
//! Fused nodes (see [`crate::fused`]) are written as calls of model-local
//! functions `ai.modc::fused_<k>`, one function per distinct body (bodies are
//! compared by their encoded function, with values renamed in order), and the
//! model imports `ai.modc` version 1; other runtimes then run the body as an
//! ordinary function. The model itself is not changed.

use super::proto;
use super::OnnxError;
use crate::fused::{fused_body, is_fused, FUSED_DOMAIN, FUSED_OPSET};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Initializer, ValueDef, ValueId};
use crate::ir::model::{Function, Model, OpsetImport};
use crate::ir::tensor::{SparseTensor, Tensor, TensorData};
use crate::ir::types::{DimValue, Shape, Type, TypeKind};
use bytes::Bytes;
use prost::Message;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Protobuf's hard limit on one message.
pub const PROTOBUF_LIMIT: u64 = (2 << 30) - 1;

/// How to save a model.
#[derive(Clone, Debug, Default)]
pub struct SaveOptions {
    /// Initializers of at least this many bytes go to an external data file.
    pub external_data_threshold: Option<u64>,
    /// The size above which an inline model is switched to external data
    /// (defaults to protobuf's 2 GiB limit; tests lower it).
    pub inline_limit: Option<u64>,
}

/// What a save wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SaveReport {
    pub model_bytes: u64,
    pub external_file: Option<PathBuf>,
    pub external_bytes: u64,
    pub external_tensors: usize,
    /// Set when the model was too large for one protobuf and external data was used.
    pub switched_to_external: bool,
}

/// Collects external tensor payloads while a model is converted.
struct ExternalSink {
    threshold: u64,
    location: String,
    chunks: Vec<(u64, Bytes)>,
    size: u64,
}

impl ExternalSink {
    fn put(&mut self, data: Bytes) -> (u64, u64) {
        let align = if data.len() >= 64 * 1024 { 4096 } else { 64 };
        let offset = self.size.div_ceil(align) * align;
        let len = data.len() as u64;
        self.size = offset + len;
        self.chunks.push((offset, data));
        (offset, len)
    }
}

struct Exporter {
    sink: Option<ExternalSink>,
    fused: FusedFunctions,
}

/// The model-local functions fused nodes become, collected while the graphs are
/// written: one per distinct body.
#[derive(Default)]
struct FusedFunctions {
    /// Opset imports of each function: the model's.
    opsets: Vec<OpsetImport>,
    /// Function names the model already has in the fused domain.
    taken: std::collections::HashSet<String>,
    /// Encoded function (without its name) → its name.
    by_body: std::collections::HashMap<Vec<u8>, String>,
    functions: Vec<proto::FunctionProto>,
}

impl Exporter {
    fn new(sink: Option<ExternalSink>) -> Exporter {
        Exporter {
            sink,
            fused: FusedFunctions::default(),
        }
    }
}

/// Converts a model to its protobuf form, with every tensor inline.
pub fn to_proto(model: &Model) -> Result<proto::ModelProto, OnnxError> {
    Exporter::new(None).model(model)
}

/// Saves `model` to `path` atomically.
pub fn save(
    model: &Model,
    path: impl AsRef<Path>,
    opts: &SaveOptions,
) -> Result<SaveReport, OnnxError> {
    let path = path.as_ref();
    let io = |m: String| OnnxError::Io {
        path: path.to_path_buf(),
        message: m,
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| io("the output path has no file name".into()))?
        .to_string_lossy()
        .to_string();
    let location = format!("{file_name}.data");
    let limit = opts.inline_limit.unwrap_or(PROTOBUF_LIMIT);

    let mut switched = false;
    let mut threshold = opts.external_data_threshold;
    let (proto, sink) = loop {
        let mut ex = Exporter::new(threshold.map(|t| ExternalSink {
            threshold: t,
            location: location.clone(),
            chunks: vec![],
            size: 0,
        }));
        let proto = ex.model(model).map_err(|e| with_path(e, path))?;
        let len = proto.encoded_len() as u64;
        if len > limit {
            if threshold.is_none() {
                threshold = Some(1024);
                switched = true;
                continue;
            }
            return Err(io(format!("the model is {len} bytes even with external data, over protobuf's limit of {limit} bytes")));
        }
        break (proto, ex.sink);
    };

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut report = SaveReport {
        switched_to_external: switched,
        ..Default::default()
    };
    // Write the data file first, then the model, each through a temporary file.
    let mut pending_data = None;
    if let Some(sink) = sink.filter(|s| !s.chunks.is_empty()) {
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
            io(format!(
                "cannot create a temporary file in {}: {e}",
                dir.display()
            ))
        })?;
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
            let mut pos = 0u64;
            for (offset, data) in &sink.chunks {
                let pad = offset - pos;
                w.write_all(&vec![0u8; pad as usize])
                    .map_err(|e| io(e.to_string()))?;
                w.write_all(data).map_err(|e| io(e.to_string()))?;
                pos = offset + data.len() as u64;
            }
            w.flush().map_err(|e| io(e.to_string()))?;
        }
        report.external_file = Some(dir.join(&sink.location));
        report.external_bytes = sink.size;
        report.external_tensors = sink.chunks.len();
        pending_data = Some((tmp, dir.join(&sink.location)));
    }
    let mut buf = Vec::with_capacity(proto.encoded_len());
    proto.encode(&mut buf).map_err(|e| io(e.to_string()))?;
    drop(proto);
    report.model_bytes = buf.len() as u64;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
        io(format!(
            "cannot create a temporary file in {}: {e}",
            dir.display()
        ))
    })?;
    tmp.write_all(&buf).map_err(|e| io(e.to_string()))?;
    tmp.as_file().sync_all().map_err(|e| io(e.to_string()))?;
    // Temporary files are created 0600; the result gets the usual 0666 & !umask.
    let mode = default_file_mode();
    set_mode(tmp.as_file(), mode).map_err(|e| io(e.to_string()))?;
    if let Some((data_tmp, data_path)) = pending_data {
        set_mode(data_tmp.as_file(), mode).map_err(|e| io(e.to_string()))?;
        data_tmp
            .as_file()
            .sync_all()
            .map_err(|e| io(e.to_string()))?;
        data_tmp
            .persist(&data_path)
            .map_err(|e| io(format!("cannot write {}: {}", data_path.display(), e.error)))?;
    }
    tmp.persist(path)
        .map_err(|e| io(format!("cannot write: {}", e.error)))?;
    Ok(report)
}

/// The mode a plainly created file would get: 0666 less the process umask.
fn default_file_mode() -> u32 {
    // SAFETY: umask only swaps the process's file mode mask; it is restored at once.
    let mask = unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    };
    0o666 & !(mask as u32)
}

fn set_mode(f: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(mode))
}

fn with_path(e: OnnxError, path: &Path) -> OnnxError {
    match e {
        OnnxError::Invalid { message, .. } => OnnxError::Invalid {
            path: path.to_path_buf(),
            message,
        },
        OnnxError::Tensor { source, .. } => OnnxError::Tensor {
            path: path.to_path_buf(),
            source,
        },
        e => e,
    }
}

/// The values written as `value_info`: those listed in the graph, in order, then any
/// other node output that has a type (a pass may have inferred it).
fn value_info_order(g: &Graph) -> Vec<ValueId> {
    let io: std::collections::HashSet<ValueId> =
        g.inputs.iter().chain(&g.outputs).copied().collect();
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for &v in &g.value_info {
        if !io.contains(&v) && g.value(v).def != ValueDef::Outer && seen.insert(v) {
            out.push(v);
        }
    }
    for v in g.value_ids() {
        let val = g.value(v);
        if let ValueDef::Node { node, .. } = val.def {
            if val.ty.is_some() && g.contains_node(node) && !io.contains(&v) && seen.insert(v) {
                out.push(v);
            }
        }
    }
    out
}

fn props(v: &[(String, String)]) -> Vec<proto::StringStringEntryProto> {
    v.iter()
        .map(|(k, v)| proto::StringStringEntryProto {
            key: Some(k.clone()),
            value: Some(v.clone()),
        })
        .collect()
}

fn opsets(v: &[OpsetImport]) -> Vec<proto::OperatorSetIdProto> {
    v.iter()
        .map(|o| proto::OperatorSetIdProto {
            domain: Some(o.domain.clone()),
            version: Some(o.version),
        })
        .collect()
}

fn invalid(message: String) -> OnnxError {
    OnnxError::Invalid {
        path: PathBuf::new(),
        message,
    }
}

impl Exporter {
    fn model(&mut self, m: &Model) -> Result<proto::ModelProto, OnnxError> {
        self.fused.opsets = m
            .opset_imports
            .iter()
            .filter(|o| o.domain != FUSED_DOMAIN)
            .cloned()
            .collect();
        self.fused.opsets.push(OpsetImport {
            domain: FUSED_DOMAIN.into(),
            version: FUSED_OPSET,
        });
        self.fused.taken = m
            .functions
            .iter()
            .filter(|f| f.domain == FUSED_DOMAIN)
            .map(|f| f.name.clone())
            .collect();
        let graph = self.graph(&m.graph)?;
        let mut functions: Vec<proto::FunctionProto> = m
            .functions
            .iter()
            .map(|f| self.function(f))
            .collect::<Result<_, _>>()?;
        let mut opset_import = opsets(&m.opset_imports);
        if !self.fused.functions.is_empty() {
            functions.append(&mut self.fused.functions);
            if !m.opset_imports.iter().any(|o| o.domain == FUSED_DOMAIN) {
                opset_import.push(proto::OperatorSetIdProto {
                    domain: Some(FUSED_DOMAIN.into()),
                    version: Some(FUSED_OPSET),
                });
            }
        }
        Ok(proto::ModelProto {
            ir_version: m.ir_version,
            opset_import,
            producer_name: m.producer_name.clone(),
            producer_version: m.producer_version.clone(),
            domain: m.domain.clone(),
            model_version: m.model_version,
            doc_string: m.doc_string.clone(),
            graph: Some(graph),
            metadata_props: props(&m.metadata_props),
            training_info: m.training_info.clone(),
            functions,
            configuration: m.configuration.clone(),
        })
    }

    /// The name of the model-local function holding `body` (written once per
    /// distinct body).
    fn fused_function(&mut self, body: &Graph) -> Result<String, OnnxError> {
        let canon = fused_function_body(body);
        let g = self.graph(&canon)?;
        let names = |vs: &[ValueId]| -> Vec<String> {
            vs.iter().map(|&v| canon.value(v).name.clone()).collect()
        };
        let mut value_info: Vec<proto::ValueInfoProto> = canon
            .inputs
            .iter()
            .chain(&canon.outputs)
            .filter(|&&v| canon.value(v).ty.is_some())
            .map(|&v| self.value_info(&canon, v))
            .collect();
        value_info.extend(g.value_info);
        let mut f = proto::FunctionProto {
            name: None,
            input: names(&canon.inputs),
            output: names(&canon.outputs),
            node: g.node,
            opset_import: opsets(&self.fused.opsets),
            domain: Some(FUSED_DOMAIN.into()),
            value_info,
            ..Default::default()
        };
        let key = f.encode_to_vec();
        if let Some(name) = self.fused.by_body.get(&key) {
            return Ok(name.clone());
        }
        let mut k = self.fused.by_body.len();
        let name = loop {
            let name = format!("fused_{k}");
            if !self.fused.taken.contains(&name) {
                break name;
            }
            k += 1;
        };
        self.fused.taken.insert(name.clone());
        self.fused.by_body.insert(key, name.clone());
        f.name = Some(name.clone());
        self.fused.functions.push(f);
        Ok(name)
    }

    fn function(&mut self, f: &Function) -> Result<proto::FunctionProto, OnnxError> {
        let body = self.graph(&f.body)?;
        Ok(proto::FunctionProto {
            name: Some(f.name.clone()),
            input: f
                .body
                .inputs
                .iter()
                .map(|&v| f.body.value(v).name.clone())
                .collect(),
            output: f
                .body
                .outputs
                .iter()
                .map(|&v| f.body.value(v).name.clone())
                .collect(),
            attribute: f.attributes.clone(),
            attribute_proto: f
                .attribute_defaults
                .iter()
                .map(|a| self.attr(a))
                .collect::<Result<_, _>>()?,
            node: body.node,
            doc_string: f.doc_string.clone(),
            opset_import: opsets(&f.opset_imports),
            domain: Some(f.domain.clone()),
            overload: f.overload.clone(),
            value_info: body.value_info,
            metadata_props: props(&f.metadata_props),
        })
    }

    fn value_info(&self, g: &Graph, v: ValueId) -> proto::ValueInfoProto {
        let val = g.value(v);
        proto::ValueInfoProto {
            name: Some(val.name.clone()),
            r#type: val.ty.as_ref().map(type_to_proto),
            doc_string: val.doc_string.clone(),
            metadata_props: props(&val.metadata_props),
        }
    }

    fn graph(&mut self, g: &Graph) -> Result<proto::GraphProto, OnnxError> {
        let order = g.topo_order().map_err(|cycle| {
            let names: Vec<String> = cycle
                .iter()
                .take(5)
                .map(|&n| {
                    format!(
                        "'{}' ({})",
                        g.node(n).name.clone().unwrap_or_default(),
                        g.node(n).op_type
                    )
                })
                .collect();
            invalid(format!(
                "graph '{}' has a cycle through nodes {}",
                g.name,
                names.join(", ")
            ))
        })?;
        let mut nodes = Vec::with_capacity(order.len());
        let name_of = |v: &Option<ValueId>| v.map(|v| g.value(v).name.clone()).unwrap_or_default();
        for id in order {
            let n = g.node(id);
            if is_fused(n) {
                let body = fused_body(n).ok_or_else(|| {
                    invalid(format!(
                        "graph '{}': a fused node ('{}') has no graph attribute 'body'",
                        g.name,
                        n.name.clone().unwrap_or_default()
                    ))
                })?;
                let function = self.fused_function(body)?;
                nodes.push(proto::NodeProto {
                    input: n.inputs.iter().map(name_of).collect(),
                    output: n.outputs.iter().map(name_of).collect(),
                    name: n.name.clone(),
                    op_type: Some(function),
                    domain: Some(FUSED_DOMAIN.into()),
                    doc_string: n.doc_string.clone(),
                    metadata_props: props(&n.metadata_props),
                    device_configurations: n.device_configurations.clone(),
                    ..Default::default()
                });
                continue;
            }
            nodes.push(proto::NodeProto {
                input: n.inputs.iter().map(name_of).collect(),
                output: n.outputs.iter().map(name_of).collect(),
                name: n.name.clone(),
                op_type: Some(n.op_type.clone()),
                domain: if n.domain.is_empty() {
                    None
                } else {
                    Some(n.domain.clone())
                },
                overload: n.overload.clone(),
                attribute: n
                    .attrs
                    .iter()
                    .map(|a| self.attr(a))
                    .collect::<Result<_, _>>()?,
                doc_string: n.doc_string.clone(),
                metadata_props: props(&n.metadata_props),
                device_configurations: n.device_configurations.clone(),
            });
        }
        let mut initializer = Vec::new();
        let mut sparse_initializer = Vec::new();
        for &v in &g.initializers {
            match &g.value(v).init {
                Some(Initializer::Dense(t)) => initializer.push(self.tensor(t, true)?),
                Some(Initializer::Sparse(s)) => sparse_initializer.push(self.sparse(s)?),
                None => {}
            }
        }
        Ok(proto::GraphProto {
            node: nodes,
            name: Some(g.name.clone()),
            initializer,
            sparse_initializer,
            doc_string: g.doc_string.clone(),
            input: g.inputs.iter().map(|&v| self.value_info(g, v)).collect(),
            output: g.outputs.iter().map(|&v| self.value_info(g, v)).collect(),
            value_info: value_info_order(g)
                .into_iter()
                .map(|v| self.value_info(g, v))
                .collect(),
            quantization_annotation: g.quantization_annotation.clone(),
            metadata_props: props(&g.metadata_props),
        })
    }

    fn attr(&mut self, a: &Attr) -> Result<proto::AttributeProto, OnnxError> {
        use proto::attribute_proto::AttributeType as K;
        let mut p = proto::AttributeProto {
            name: Some(a.name.clone()),
            ref_attr_name: a.ref_attr_name.clone(),
            doc_string: a.doc_string.clone(),
            ..Default::default()
        };
        let kind = match &a.value {
            AttrValue::Float(f) => {
                p.f = Some(*f);
                K::Float as i32
            }
            AttrValue::Int(i) => {
                p.i = Some(*i);
                K::Int as i32
            }
            AttrValue::String(s) => {
                p.s = Some(s.clone());
                K::String as i32
            }
            AttrValue::Tensor(t) => {
                p.t = Some(self.tensor(t, false)?);
                K::Tensor as i32
            }
            AttrValue::Graph(g) => {
                p.g = Some(self.graph(g)?);
                K::Graph as i32
            }
            AttrValue::SparseTensor(s) => {
                p.sparse_tensor = Some(self.sparse(s)?);
                K::SparseTensor as i32
            }
            AttrValue::Type(t) => {
                p.tp = Some(type_to_proto(t));
                K::TypeProto as i32
            }
            AttrValue::Floats(v) => {
                p.floats = v.clone();
                K::Floats as i32
            }
            AttrValue::Ints(v) => {
                p.ints = v.clone();
                K::Ints as i32
            }
            AttrValue::Strings(v) => {
                p.strings = v.clone();
                K::Strings as i32
            }
            AttrValue::Tensors(v) => {
                p.tensors = v
                    .iter()
                    .map(|t| self.tensor(t, false))
                    .collect::<Result<_, _>>()?;
                K::Tensors as i32
            }
            AttrValue::Graphs(v) => {
                p.graphs = v.iter().map(|g| self.graph(g)).collect::<Result<_, _>>()?;
                K::Graphs as i32
            }
            AttrValue::SparseTensors(v) => {
                p.sparse_tensors = v.iter().map(|s| self.sparse(s)).collect::<Result<_, _>>()?;
                K::SparseTensors as i32
            }
            AttrValue::Types(v) => {
                p.type_protos = v.iter().map(type_to_proto).collect();
                K::TypeProtos as i32
            }
            AttrValue::NoValue(code) => *code,
        };
        p.r#type = Some(kind);
        Ok(p)
    }

    fn sparse(&mut self, s: &SparseTensor) -> Result<proto::SparseTensorProto, OnnxError> {
        Ok(proto::SparseTensorProto {
            values: Some(self.tensor(&s.values, false)?),
            indices: Some(self.tensor(&s.indices, false)?),
            dims: s.dims.clone(),
        })
    }

    /// `may_externalize`: initializers may go to the external data file.
    fn tensor(
        &mut self,
        t: &Tensor,
        may_externalize: bool,
    ) -> Result<proto::TensorProto, OnnxError> {
        let terr = |e| OnnxError::Tensor {
            path: PathBuf::new(),
            source: e,
        };
        let mut p = proto::TensorProto {
            dims: t.dims.clone(),
            data_type: Some(t.dtype.onnx_code()),
            segment: t
                .segment
                .map(|(begin, end)| proto::tensor_proto::Segment { begin, end }),
            name: Some(t.name.clone()),
            doc_string: t.doc_string.clone(),
            metadata_props: props(&t.metadata_props),
            ..Default::default()
        };
        let externalize = match &self.sink {
            Some(sink) => {
                may_externalize
                    && t.dtype.bits().is_some()
                    && t.byte_size() >= sink.threshold
                    && !matches!(t.data, TensorData::Absent)
            }
            None => false,
        };
        if externalize {
            let data = t.raw_bytes().map_err(terr)?;
            let sink = self.sink.as_mut().expect("checked above");
            let (offset, length) = sink.put(data);
            p.data_location = Some(proto::tensor_proto::DataLocation::External as i32);
            p.external_data = props(&[
                ("location".into(), sink.location.clone()),
                ("offset".into(), offset.to_string()),
                ("length".into(), length.to_string()),
            ]);
            return Ok(p);
        }
        match &t.data {
            TensorData::Raw(b) => p.raw_data = Some(b.clone()),
            TensorData::External(_) => p.raw_data = Some(t.raw_bytes().map_err(terr)?),
            TensorData::Fields(f) => {
                p.float_data = f.float_data.clone();
                p.int32_data = f.int32_data.clone();
                p.string_data = f.string_data.clone();
                p.int64_data = f.int64_data.clone();
                p.double_data = f.double_data.clone();
                p.uint64_data = f.uint64_data.clone();
            }
            TensorData::Absent => {}
        }
        Ok(p)
    }
}

/// A fused body in the form of a function body: initializers become Constant
/// nodes (functions have none), outputs that no node produces (an input, or a value
/// listed twice) get an Identity, node names go, and values are renamed `x0..`
/// (inputs), `y0..` (outputs) and `t0..` (the rest) so that equal bodies encode
/// equally. A body with subgraphs keeps its names, since the subgraphs read them.
fn fused_function_body(body: &Graph) -> Graph {
    let mut g = body.clone();
    let has_subgraphs = g
        .nodes()
        .any(|(_, n)| n.attrs.iter().any(|a| !a.value.graphs().is_empty()));
    for v in std::mem::take(&mut g.initializers) {
        let Some(init) = g.value_mut(v).init.take() else {
            continue;
        };
        if g.value(v).def != ValueDef::Const {
            continue; // An input's default: a function input has none.
        }
        let name = g.value(v).name.clone();
        let attr = match init {
            Initializer::Dense(mut t) => {
                t.name = name;
                Attr::new("value", AttrValue::Tensor(t))
            }
            Initializer::Sparse(mut s) => {
                s.values.name = name;
                Attr::new("sparse_value", AttrValue::SparseTensor(s))
            }
        };
        g.push_node(crate::ir::graph::Node {
            outputs: vec![Some(v)],
            ..crate::ir::graph::Node::new("Constant", "", vec![attr])
        });
    }
    let mut names = crate::pass::edit::NameGen::new(&g);
    let mut seen = std::collections::HashSet::new();
    for k in 0..g.outputs.len() {
        let v = g.outputs[k];
        let produced = matches!(g.value(v).def, ValueDef::Node { .. });
        if produced && seen.insert(v) {
            continue;
        }
        let name = names.fresh(&format!("{}_out", g.value(v).name));
        let (_, outs) = g.add_node("Identity", "", vec![Some(v)], &[name.as_str()], vec![]);
        g.value_mut(outs[0]).ty = g.value(v).ty.clone();
        g.outputs[k] = outs[0];
    }
    let ids: Vec<_> = g.node_ids().collect();
    for id in ids {
        g.node_mut(id).name = None;
    }
    if has_subgraphs {
        return g;
    }
    let order = g.topo_order().unwrap_or_else(|_| g.node_ids().collect());
    let mut rename: Vec<(ValueId, String)> = Vec::new();
    for (k, &v) in g.inputs.iter().enumerate() {
        rename.push((v, format!("x{k}")));
    }
    for (k, &v) in g.outputs.iter().enumerate() {
        rename.push((v, format!("y{k}")));
    }
    let fixed: std::collections::HashSet<ValueId> =
        g.inputs.iter().chain(&g.outputs).copied().collect();
    let mut k = 0;
    for n in order {
        for v in g.node(n).outputs.iter().flatten() {
            if !fixed.contains(v) {
                rename.push((*v, format!("t{k}")));
                k += 1;
            }
        }
    }
    for (v, name) in rename {
        g.value_mut(v).name = name;
    }
    // Constant tensors are named after their (renamed) output.
    let ids: Vec<_> = g.node_ids().collect();
    for id in ids {
        let Some(&Some(out)) = g.node(id).outputs.first() else {
            continue;
        };
        let name = g.value(out).name.clone();
        let n = g.node_mut(id);
        if n.op_type != "Constant" || !n.domain.is_empty() {
            continue;
        }
        for a in n.attrs.iter_mut() {
            match &mut a.value {
                AttrValue::Tensor(t) => t.name = name.clone(),
                AttrValue::SparseTensor(s) => s.values.name = name.clone(),
                _ => {}
            }
        }
    }
    g.name = "fused".into();
    g
}

fn shape_to_proto(s: &Shape) -> proto::TensorShapeProto {
    use proto::tensor_shape_proto::{dimension::Value as V, Dimension};
    proto::TensorShapeProto {
        dim: s
            .dims
            .iter()
            .map(|d| Dimension {
                denotation: d.denotation.clone(),
                value: match &d.value {
                    DimValue::Fixed(n) => Some(V::DimValue(*n)),
                    DimValue::Param(p) => Some(V::DimParam(p.clone())),
                    DimValue::Unknown => None,
                },
            })
            .collect(),
    }
}

/// Converts a type to its `TypeProto`.
pub(crate) fn type_to_proto(t: &Type) -> proto::TypeProto {
    use proto::type_proto as tp;
    use proto::type_proto::Value as V;
    let inner = |t: &Option<Box<Type>>| t.as_ref().map(|t| Box::new(type_to_proto(t)));
    let value = match &t.kind {
        TypeKind::Tensor { elem, shape } => Some(V::TensorType(tp::Tensor {
            elem_type: Some(elem.onnx_code()),
            shape: shape.as_ref().map(shape_to_proto),
        })),
        TypeKind::SparseTensor { elem, shape } => Some(V::SparseTensorType(tp::SparseTensor {
            elem_type: Some(elem.onnx_code()),
            shape: shape.as_ref().map(shape_to_proto),
        })),
        TypeKind::Sequence(e) => Some(V::SequenceType(Box::new(tp::Sequence {
            elem_type: inner(e),
        }))),
        TypeKind::Map { key, value } => Some(V::MapType(Box::new(tp::Map {
            key_type: Some(key.onnx_code()),
            value_type: inner(value),
        }))),
        TypeKind::Optional(e) => Some(V::OptionalType(Box::new(tp::Optional {
            elem_type: inner(e),
        }))),
        TypeKind::Opaque { domain, name } => Some(V::OpaqueType(tp::Opaque {
            domain: domain.clone(),
            name: name.clone(),
        })),
        TypeKind::Unset => None,
    };
    proto::TypeProto {
        denotation: t.denotation.clone(),
        value,
    }
}
