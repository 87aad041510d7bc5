//! ONNX protobuf → IR.
//!
//! The model file is memory-mapped and decoded from a shared buffer, so tensor
//! payloads (`raw_data`) stay slices of the mapping: loading never copies weights.
//! External data is checked by the [`LoadPolicy`] and mapped lazily. Names are
//! resolved with ONNX's scoping: a subgraph may read names of enclosing graphs (they
//! become `Outer` values); nodes may appear in any order in the file. Calls of
//! the model-local functions modc writes for fused nodes (`ai.modc::fused_<k>`)
//! become fused nodes again.

use super::proto;
use super::OnnxError;
use crate::fused::{is_fused, FUSED_BODY, FUSED_DOMAIN, FUSED_OP, FUSED_OPSET};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, NodeId, Value, ValueDef, ValueId};
use crate::ir::model::{Function, Model, OpsetImport};
use crate::ir::tensor::{ExternalData, FieldData, SparseTensor, Tensor, TensorData};
use crate::ir::types::{Dim, DimValue, Shape, Type, TypeKind};
use crate::security::{ExternalDataResolver, LoadPolicy, SecurityError};
use bytes::Bytes;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loads an ONNX model from a file, applying `policy`.
pub fn load(path: impl AsRef<Path>, policy: &LoadPolicy) -> Result<Model, OnnxError> {
    let path = path.as_ref();
    let io = |m: String| OnnxError::Io {
        path: path.to_path_buf(),
        message: m,
    };
    let file = std::fs::File::open(path).map_err(|e| io(format!("cannot open: {e}")))?;
    let meta = file.metadata().map_err(|e| io(e.to_string()))?;
    if !meta.is_file() {
        return Err(io("not a regular file".into()));
    }
    let bytes = if meta.len() == 0 {
        Bytes::new()
    } else {
        // SAFETY: read-only map of a file modc never writes in place (saves go to a
        // temporary file that is renamed over the destination).
        let map =
            unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(format!("cannot map: {e}")))?;
        Bytes::from_owner(map)
    };
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    load_bytes(bytes, path, base, policy)
}

/// Decodes a model from bytes; `path` names it in errors, `base` is the folder
/// external data is resolved against.
pub fn load_bytes(
    bytes: Bytes,
    path: &Path,
    base: &Path,
    policy: &LoadPolicy,
) -> Result<Model, OnnxError> {
    if bytes.is_empty() {
        return Err(OnnxError::Decode {
            path: path.to_path_buf(),
            message: "the file is empty".into(),
        });
    }
    let proto = proto::ModelProto::decode(bytes).map_err(|e| OnnxError::Decode {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if proto.graph.is_none() {
        return Err(OnnxError::Decode {
            path: path.to_path_buf(),
            message: "the model has no graph (is this an ONNX file?)".into(),
        });
    }
    from_proto(proto, path, base, policy)
}

/// Converts a `TensorProto` (read from a `.pb` file, for example) into an IR tensor,
/// with the same checks as a model's tensors. External data is resolved against
/// `base` under the default policy.
pub fn tensor_from_proto(
    t: proto::TensorProto,
    path: &Path,
    base: &Path,
) -> Result<Tensor, OnnxError> {
    let policy = LoadPolicy::default();
    let mut cx = Importer {
        path: path.to_path_buf(),
        policy: &policy,
        resolver: ExternalDataResolver::new(&policy, base),
        nodes: 0,
    };
    cx.tensor(t, "")
}

/// Converts a decoded `ModelProto` into the IR.
pub fn from_proto(
    p: proto::ModelProto,
    path: &Path,
    base: &Path,
    policy: &LoadPolicy,
) -> Result<Model, OnnxError> {
    let mut cx = Importer {
        path: path.to_path_buf(),
        policy,
        resolver: ExternalDataResolver::new(policy, base),
        nodes: 0,
    };
    let graph = cx.graph(p.graph.unwrap_or_default(), &HashSet::new(), 0)?;
    let mut functions = Vec::new();
    for f in p.functions {
        functions.push(cx.function(f)?);
    }
    let mut model = Model {
        ir_version: p.ir_version,
        opset_imports: opsets(p.opset_import),
        producer_name: p.producer_name,
        producer_version: p.producer_version,
        domain: p.domain,
        model_version: p.model_version,
        doc_string: p.doc_string,
        metadata_props: props(p.metadata_props),
        graph,
        functions,
        training_info: p.training_info,
        configuration: p.configuration,
    };
    restore_fused(&mut model);
    Ok(model)
}

/// Turns calls of modc's own fused functions (`ai.modc::fused_<k>`, no attributes,
/// the model's opsets) back into fused nodes whose body is the function's body,
/// so that modc's output loads back in the form it was written from. A function
/// all of whose calls became fused nodes is dropped, and so is the `ai.modc`
/// opset import when nothing but fused nodes uses that domain any more. Calls
/// that do not fit (other input counts, attributes, a function calling itself)
/// stay calls.
fn restore_fused(m: &mut Model) {
    let same = |a: &str, b: &str| {
        let norm = |d: &str| {
            if d == "ai.onnx" {
                String::new()
            } else {
                d.to_string()
            }
        };
        norm(a) == norm(b)
    };
    let fits = |f: &Function| {
        f.domain == FUSED_DOMAIN
            && f.name.starts_with("fused_")
            && f.attributes.is_empty()
            && f.attribute_defaults.is_empty()
            && f.overload.is_none()
            && f.body.outer_values().is_empty()
            && f.opset_imports.iter().all(|o| {
                o.domain == FUSED_DOMAIN
                    || m.opset_imports
                        .iter()
                        .any(|mo| same(&mo.domain, &o.domain) && mo.version == o.version)
            })
    };
    let mut bodies: HashMap<String, Graph> = HashMap::new();
    for f in m.functions.iter().filter(|f| fits(f)) {
        bodies.insert(f.name.clone(), fused_body_from_function(&f.body));
    }
    if bodies.is_empty() {
        return;
    }
    // Bodies calling other fused functions are converted callee first.
    let mut names: Vec<String> = bodies.keys().cloned().collect();
    names.sort();
    let mut done: HashMap<String, Graph> = HashMap::new();
    for name in &names {
        resolve_fused(name, &bodies, &mut done, &mut Vec::new());
    }
    calls_to_fused(&mut m.graph, &done);
    for f in m.functions.iter_mut() {
        if !done.contains_key(&f.name) || f.domain != FUSED_DOMAIN {
            calls_to_fused(&mut f.body, &done);
        }
    }
    // Drop the converted functions nothing calls any more.
    let mut called = HashSet::new();
    calls_in(&m.graph, &mut called);
    for f in &m.functions {
        if !(f.domain == FUSED_DOMAIN && done.contains_key(&f.name)) {
            calls_in(&f.body, &mut called);
        }
    }
    for g in done.values() {
        calls_in(g, &mut called);
    }
    m.functions.retain(|f| {
        !(f.domain == FUSED_DOMAIN && done.contains_key(&f.name) && !called.contains(&f.name))
    });
    // Fused nodes alone do not need the import (export adds it back).
    if called.is_empty() && !m.functions.iter().any(|f| f.domain == FUSED_DOMAIN) {
        m.opset_imports
            .retain(|o| !(o.domain == FUSED_DOMAIN && o.version == FUSED_OPSET));
    }
}

/// Converts fused function `name`'s body (its own calls first) into `done`.
fn resolve_fused(
    name: &str,
    bodies: &HashMap<String, Graph>,
    done: &mut HashMap<String, Graph>,
    stack: &mut Vec<String>,
) {
    if done.contains_key(name) || stack.iter().any(|s| s == name) {
        return;
    }
    let Some(body) = bodies.get(name) else { return };
    stack.push(name.to_string());
    let mut callees = HashSet::new();
    calls_in(body, &mut callees);
    let mut callees: Vec<String> = callees.into_iter().collect();
    callees.sort();
    for c in callees {
        resolve_fused(&c, bodies, done, stack);
    }
    stack.pop();
    let mut body = body.clone();
    calls_to_fused(&mut body, done);
    // A function calling itself (through others) is not a fused body.
    let mut still = HashSet::new();
    calls_in(&body, &mut still);
    if !still.contains(name) {
        done.insert(name.to_string(), body);
    }
}

/// Names of `ai.modc` functions called in `g` and its subgraphs.
fn calls_in(g: &Graph, out: &mut HashSet<String>) {
    for (_, n) in g.nodes() {
        if n.domain == FUSED_DOMAIN && !is_fused(n) {
            out.insert(n.op_type.clone());
        }
        for a in &n.attrs {
            for sub in a.value.graphs() {
                calls_in(sub, out);
            }
        }
    }
}

/// Replaces calls of the functions in `bodies` by fused nodes, in `g` and its
/// subgraphs.
fn calls_to_fused(g: &mut Graph, bodies: &HashMap<String, Graph>) {
    let ids: Vec<NodeId> = g.node_ids().collect();
    for id in ids {
        let n = g.node_mut(id);
        for a in n.attrs.iter_mut() {
            for sub in a.value.graphs_mut() {
                calls_to_fused(sub, bodies);
            }
        }
        if n.domain != FUSED_DOMAIN || !n.attrs.is_empty() {
            continue;
        }
        let Some(body) = bodies.get(&n.op_type) else {
            continue;
        };
        if n.inputs.len() != body.inputs.len() || n.outputs.len() > body.outputs.len() {
            continue;
        }
        n.outputs.resize(body.outputs.len(), None);
        n.op_type = FUSED_OP.into();
        n.attrs = vec![Attr::new(
            FUSED_BODY,
            AttrValue::Graph(Box::new(body.clone())),
        )];
    }
}

/// A fused body from a function body: Constant nodes become initializers again,
/// and `value_info` lists only values inside.
fn fused_body_from_function(f: &Graph) -> Graph {
    let mut g = f.clone();
    g.name = "fused".into();
    let ids: Vec<NodeId> = g.node_ids().collect();
    for id in ids {
        let n = g.node(id);
        let is_const = n.op_type == "Constant"
            && (n.domain.is_empty() || n.domain == "ai.onnx")
            && n.inputs.is_empty()
            && n.attrs.len() == 1
            && n.attrs[0].name == "value"
            && n.attrs[0].ref_attr_name.is_none();
        let out = match n.outputs.as_slice() {
            [Some(v)] if is_const => *v,
            _ => continue,
        };
        let Some(n) = g.remove_node(id) else { continue };
        let Some(Attr {
            value: AttrValue::Tensor(mut t),
            ..
        }) = n.attrs.into_iter().next()
        else {
            continue;
        };
        t.name = g.value(out).name.clone();
        let v = g.value_mut(out);
        v.def = ValueDef::Const;
        v.init = Some(Initializer::Dense(t));
        g.initializers.push(out);
    }
    let io: HashSet<ValueId> = g.inputs.iter().chain(&g.outputs).copied().collect();
    g.value_info.retain(|v| !io.contains(v));
    g
}

fn opsets(v: Vec<proto::OperatorSetIdProto>) -> Vec<OpsetImport> {
    v.into_iter()
        .map(|o| OpsetImport {
            domain: o.domain.unwrap_or_default(),
            version: o.version.unwrap_or(0),
        })
        .collect()
}

fn props(v: Vec<proto::StringStringEntryProto>) -> Vec<(String, String)> {
    v.into_iter()
        .map(|e| (e.key.unwrap_or_default(), e.value.unwrap_or_default()))
        .collect()
}

struct Importer<'p> {
    path: PathBuf,
    policy: &'p LoadPolicy,
    resolver: ExternalDataResolver<'p>,
    nodes: usize,
}

impl Importer<'_> {
    fn invalid(&self, message: String) -> OnnxError {
        OnnxError::Invalid {
            path: self.path.clone(),
            message,
        }
    }
    fn security(&self, e: SecurityError) -> OnnxError {
        OnnxError::Security {
            path: self.path.clone(),
            source: e,
        }
    }

    fn function(&mut self, f: proto::FunctionProto) -> Result<Function, OnnxError> {
        let name = f.name.clone().unwrap_or_default();
        let body_proto = proto::GraphProto {
            node: f.node,
            name: Some(name.clone()),
            input: f
                .input
                .iter()
                .map(|n| proto::ValueInfoProto {
                    name: Some(n.clone()),
                    ..Default::default()
                })
                .collect(),
            output: f
                .output
                .iter()
                .map(|n| proto::ValueInfoProto {
                    name: Some(n.clone()),
                    ..Default::default()
                })
                .collect(),
            value_info: f.value_info,
            ..Default::default()
        };
        let body = self
            .graph(body_proto, &HashSet::new(), 1)
            .map_err(|e| match e {
                OnnxError::Invalid { path, message } => OnnxError::Invalid {
                    path,
                    message: format!("function '{name}': {message}"),
                },
                e => e,
            })?;
        let mut defaults = Vec::new();
        for a in f.attribute_proto {
            defaults.push(self.attr(a, &HashSet::new(), 1)?);
        }
        Ok(Function {
            name,
            domain: f.domain.unwrap_or_default(),
            overload: f.overload,
            attributes: f.attribute,
            attribute_defaults: defaults,
            opset_imports: opsets(f.opset_import),
            body,
            doc_string: f.doc_string,
            metadata_props: props(f.metadata_props),
        })
    }

    /// Imports a graph. `outer` holds the names visible from enclosing graphs.
    fn graph(
        &mut self,
        g: proto::GraphProto,
        outer: &HashSet<String>,
        depth: usize,
    ) -> Result<Graph, OnnxError> {
        let gname = g.name.clone().unwrap_or_default();
        if depth > self.policy.max_subgraph_depth {
            return Err(self.security(SecurityError::TooDeep {
                graph: gname,
                depth,
                limit: self.policy.max_subgraph_depth,
            }));
        }
        self.nodes += g.node.len();
        if self.nodes > self.policy.max_nodes {
            return Err(self.security(SecurityError::TooManyNodes {
                limit: self.policy.max_nodes,
            }));
        }
        let mut graph = Graph::new(&gname);
        graph.doc_string = g.doc_string;
        graph.metadata_props = props(g.metadata_props);
        graph.quantization_annotation = g.quantization_annotation;
        let mut by_name: HashMap<String, ValueId> = HashMap::new();
        let dup = |name: &str, what: &str| {
            format!("graph '{gname}': the name '{name}' is defined twice ({what})")
        };

        for vi in g.input {
            let name = vi.name.clone().unwrap_or_default();
            if by_name.contains_key(&name) {
                return Err(self.invalid(dup(&name, "graph input")));
            }
            let mut v = Value::new(&name, ValueDef::Input);
            self.fill_value_info(&mut v, vi, &gname)?;
            let id = graph.add_value(v);
            graph.inputs.push(id);
            by_name.insert(name, id);
        }
        let mut inits: Vec<(String, Initializer)> = Vec::new();
        for t in g.initializer {
            let t = self.tensor(t, &gname)?;
            inits.push((t.name.clone(), Initializer::Dense(t)));
        }
        for s in g.sparse_initializer {
            let s = self.sparse(s, &gname)?;
            inits.push((s.values.name.clone(), Initializer::Sparse(Box::new(s))));
        }
        for (name, init) in inits {
            let id = match by_name.get(&name) {
                Some(&id)
                    if graph.value(id).def == ValueDef::Input && graph.value(id).init.is_none() =>
                {
                    id
                }
                Some(_) => return Err(self.invalid(dup(&name, "initializer"))),
                None => {
                    let id = graph.add_value(Value::new(&name, ValueDef::Const));
                    by_name.insert(name, id);
                    id
                }
            };
            graph.value_mut(id).init = Some(init);
            graph.initializers.push(id);
        }
        // Output values of every node first, so nodes may come in any order.
        for n in &g.node {
            for out in &n.output {
                if out.is_empty() {
                    continue;
                }
                if by_name.contains_key(out) {
                    return Err(self.invalid(dup(
                        out,
                        &format!(
                            "output of node '{}' ({})",
                            n.name.as_deref().unwrap_or(""),
                            n.op_type.as_deref().unwrap_or("")
                        ),
                    )));
                }
                let id = graph.add_value(Value::new(out, ValueDef::Outer));
                by_name.insert(out.clone(), id);
            }
        }
        // Names visible to subgraphs of this graph.
        let mut visible: HashSet<String> = outer.clone();
        visible.extend(by_name.keys().cloned());
        for n in g.node {
            let op = n.op_type.clone().unwrap_or_default();
            let nname = n.name.clone().unwrap_or_default();
            let mut inputs = Vec::with_capacity(n.input.len());
            for inp in &n.input {
                if inp.is_empty() {
                    inputs.push(None);
                    continue;
                }
                let id = match by_name.get(inp) {
                    Some(&id) => id,
                    None if outer.contains(inp) => {
                        let id = graph.add_value(Value::new(inp, ValueDef::Outer));
                        by_name.insert(inp.clone(), id);
                        id
                    }
                    None => {
                        return Err(self.invalid(format!(
                            "graph '{gname}', node '{nname}' ({op}): input '{inp}' is not defined"
                        )));
                    }
                };
                inputs.push(Some(id));
            }
            let outputs: Vec<Option<ValueId>> = n
                .output
                .iter()
                .map(|o| if o.is_empty() { None } else { Some(by_name[o]) })
                .collect();
            let mut attrs = Vec::with_capacity(n.attribute.len());
            for a in n.attribute {
                let a = self.attr(a, &visible, depth).map_err(|e| match e {
                    OnnxError::Invalid { path, message } if !message.starts_with("graph") => {
                        OnnxError::Invalid {
                            path,
                            message: format!("graph '{gname}', node '{nname}' ({op}): {message}"),
                        }
                    }
                    e => e,
                })?;
                attrs.push(a);
            }
            graph.push_node(Node {
                name: n.name,
                op_type: op,
                domain: n.domain.unwrap_or_default(),
                overload: n.overload,
                inputs,
                outputs,
                attrs,
                doc_string: n.doc_string,
                metadata_props: props(n.metadata_props),
                device_configurations: n.device_configurations,
            });
        }
        for vi in g.value_info {
            let name = vi.name.clone().unwrap_or_default();
            match by_name.get(&name) {
                Some(&id) => {
                    let mut v = graph.value(id).clone();
                    self.fill_value_info(&mut v, vi, &gname)?;
                    *graph.value_mut(id) = v;
                    graph.value_info.push(id);
                }
                None => {
                    tracing::warn!(graph = %gname, value = %name, "value_info names a value the graph does not have; dropped")
                }
            }
        }
        for vi in g.output {
            let name = vi.name.clone().unwrap_or_default();
            let id = match by_name.get(&name) {
                Some(&id) => id,
                None if outer.contains(&name) => {
                    let id = graph.add_value(Value::new(&name, ValueDef::Outer));
                    by_name.insert(name.clone(), id);
                    id
                }
                None => {
                    return Err(
                        self.invalid(format!("graph '{gname}': output '{name}' is not defined"))
                    )
                }
            };
            let mut v = graph.value(id).clone();
            self.fill_value_info(&mut v, vi, &gname)?;
            *graph.value_mut(id) = v;
            graph.outputs.push(id);
        }
        Ok(graph)
    }

    fn fill_value_info(
        &mut self,
        v: &mut Value,
        vi: proto::ValueInfoProto,
        _graph: &str,
    ) -> Result<(), OnnxError> {
        if let Some(t) = vi.r#type {
            v.ty = Some(type_from_proto(t));
        }
        if vi.doc_string.is_some() {
            v.doc_string = vi.doc_string;
        }
        if !vi.metadata_props.is_empty() {
            v.metadata_props = props(vi.metadata_props);
        }
        Ok(())
    }

    fn attr(
        &mut self,
        a: proto::AttributeProto,
        visible: &HashSet<String>,
        depth: usize,
    ) -> Result<Attr, OnnxError> {
        use proto::attribute_proto::AttributeType as K;
        let name = a.name.clone().unwrap_or_default();
        let code = a.r#type.unwrap_or(0);
        let value = if a.ref_attr_name.is_some() {
            AttrValue::NoValue(code)
        } else {
            match K::try_from(code).unwrap_or(K::Undefined) {
                K::Float => AttrValue::Float(a.f.unwrap_or(0.0)),
                K::Int => AttrValue::Int(a.i.unwrap_or(0)),
                K::String => AttrValue::String(a.s.unwrap_or_default()),
                K::Tensor => AttrValue::Tensor(self.tensor(a.t.unwrap_or_default(), &name)?),
                K::Graph => AttrValue::Graph(Box::new(self.graph(
                    a.g.unwrap_or_default(),
                    visible,
                    depth + 1,
                )?)),
                K::SparseTensor => AttrValue::SparseTensor(Box::new(
                    self.sparse(a.sparse_tensor.unwrap_or_default(), &name)?,
                )),
                K::TypeProto => AttrValue::Type(type_from_proto(a.tp.unwrap_or_default())),
                K::Floats => AttrValue::Floats(a.floats),
                K::Ints => AttrValue::Ints(a.ints),
                K::Strings => AttrValue::Strings(a.strings),
                K::Tensors => AttrValue::Tensors(
                    a.tensors
                        .into_iter()
                        .map(|t| self.tensor(t, &name))
                        .collect::<Result<_, _>>()?,
                ),
                K::Graphs => AttrValue::Graphs(
                    a.graphs
                        .into_iter()
                        .map(|g| self.graph(g, visible, depth + 1))
                        .collect::<Result<_, _>>()?,
                ),
                K::SparseTensors => AttrValue::SparseTensors(
                    a.sparse_tensors
                        .into_iter()
                        .map(|s| self.sparse(s, &name))
                        .collect::<Result<_, _>>()?,
                ),
                K::TypeProtos => {
                    AttrValue::Types(a.type_protos.into_iter().map(type_from_proto).collect())
                }
                K::Undefined => legacy_attr_kind(&a).ok_or_else(|| {
                    self.invalid(format!("attribute '{name}' has no type and no value"))
                })?,
            }
        };
        Ok(Attr {
            name,
            value,
            ref_attr_name: a.ref_attr_name,
            doc_string: a.doc_string,
        })
    }

    fn sparse(
        &mut self,
        s: proto::SparseTensorProto,
        ctx: &str,
    ) -> Result<SparseTensor, OnnxError> {
        let values = self.tensor(s.values.unwrap_or_default(), ctx)?;
        let indices = self.tensor(s.indices.unwrap_or_default(), ctx)?;
        if s.dims.iter().any(|&d| d < 0) {
            return Err(self.invalid(format!(
                "sparse tensor '{}' has a negative dimension",
                values.name
            )));
        }
        Ok(SparseTensor {
            values,
            indices,
            dims: s.dims,
        })
    }

    fn tensor(&mut self, t: proto::TensorProto, _ctx: &str) -> Result<Tensor, OnnxError> {
        let name = t.name.clone().unwrap_or_default();
        let dtype = DType::from_onnx(t.data_type.unwrap_or(0));
        let mut tensor = Tensor {
            name: name.clone(),
            dtype,
            dims: t.dims.clone(),
            data: TensorData::Absent,
            doc_string: t.doc_string.clone(),
            metadata_props: props(t.metadata_props.clone()),
            segment: t.segment.as_ref().map(|s| (s.begin, s.end)),
        };
        if t.dims.iter().any(|&d| d < 0) {
            return Err(self.invalid(format!(
                "tensor '{name}' has a negative dimension {:?}",
                t.dims
            )));
        }
        let count = tensor.num_elements().ok_or_else(|| {
            self.invalid(format!(
                "tensor '{name}': the element count of {:?} overflows",
                t.dims
            ))
        })?;
        let expected = dtype.storage_bytes(count);
        // `None` also means the byte size overflows u64 (e.g. f32[2^30, 2^30]); only
        // types with no fixed size may go on without one.
        if expected.is_none() && dtype.bits().is_some() {
            return Err(self.invalid(format!(
                "tensor '{name}': the byte size of {dtype}{:?} overflows",
                t.dims
            )));
        }
        if let Some(bytes) = expected {
            if bytes > self.policy.max_tensor_bytes {
                return Err(self.security(SecurityError::TensorTooLarge {
                    tensor: name,
                    bytes,
                    limit: self.policy.max_tensor_bytes,
                }));
            }
        }
        let external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
        if external {
            let entries = props(t.external_data);
            let get = |k: &str| {
                entries
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            let location = get("location").ok_or_else(|| {
                self.invalid(format!(
                    "tensor '{name}' is marked external but has no location"
                ))
            })?;
            let range_err = |m: String| SecurityError::BadRange {
                tensor: name.clone(),
                location: location.clone(),
                message: m,
            };
            let parse =
                |k: &str| -> Result<Option<u64>, SecurityError> {
                    match get(k) {
                        None => Ok(None),
                        Some(s) => s.trim().parse::<u64>().map(Some).map_err(|_| {
                            range_err(format!("{k} '{s}' is not a non-negative integer"))
                        }),
                    }
                };
            let offset = parse("offset").map_err(|e| self.security(e))?.unwrap_or(0);
            let length = parse("length").map_err(|e| self.security(e))?;
            let file = self
                .resolver
                .open(&name, &location)
                .map_err(|e| self.security(e))?;
            if offset > file.size {
                return Err(self.security(range_err(format!(
                    "offset {offset} is past the end of the file ({} bytes)",
                    file.size
                ))));
            }
            let length = length.unwrap_or(file.size - offset);
            match offset.checked_add(length) {
                Some(end) if end <= file.size => {}
                _ => {
                    return Err(self.security(range_err(format!(
                        "offset {offset} + length {length} is past the end of the file ({} bytes)",
                        file.size
                    ))))
                }
            }
            match expected {
                Some(exp) if exp != length => {
                    return Err(self.security(range_err(format!(
                        "length {length} does not match {dtype}{:?} ({exp} bytes)",
                        t.dims
                    ))));
                }
                None => {
                    return Err(self.security(range_err(format!(
                        "{dtype} tensors cannot be stored as external data"
                    ))))
                }
                _ => {}
            }
            tensor.data = TensorData::External(ExternalData {
                location,
                offset,
                length,
                entries,
                file,
            });
        } else if let Some(raw) = t.raw_data {
            if let Some(exp) = expected {
                if raw.len() as u64 != exp {
                    return Err(self.invalid(format!(
                        "tensor '{name}': raw_data has {} bytes, {dtype}{:?} needs {exp}",
                        raw.len(),
                        t.dims
                    )));
                }
            }
            tensor.data = TensorData::Raw(raw);
        } else {
            let f = FieldData {
                float_data: t.float_data,
                int32_data: t.int32_data,
                string_data: t.string_data,
                int64_data: t.int64_data,
                double_data: t.double_data,
                uint64_data: t.uint64_data,
            };
            let has_any = !(f.float_data.is_empty()
                && f.int32_data.is_empty()
                && f.string_data.is_empty()
                && f.int64_data.is_empty()
                && f.double_data.is_empty()
                && f.uint64_data.is_empty());
            if has_any {
                tensor.data = TensorData::Fields(Arc::new(f));
                if dtype == DType::Str {
                    if let TensorData::Fields(f) = &tensor.data {
                        if f.string_data.len() as u64 != count {
                            return Err(self.invalid(format!(
                                "tensor '{name}' has {} strings for {count} elements",
                                f.string_data.len()
                            )));
                        }
                    }
                } else if expected.is_some() {
                    tensor.raw_bytes().map_err(|e| OnnxError::Tensor {
                        path: self.path.clone(),
                        source: e,
                    })?;
                }
            } else if count > 0 && expected.is_some_and(|e| e > 0) {
                tracing::debug!(tensor = %name, "tensor has no data");
            }
        }
        Ok(tensor)
    }
}

/// Attributes from files written before `type` was set (IR version 1): the kind is
/// inferred from the field that holds a value.
fn legacy_attr_kind(a: &proto::AttributeProto) -> Option<AttrValue> {
    if let Some(f) = a.f {
        return Some(AttrValue::Float(f));
    }
    if let Some(i) = a.i {
        return Some(AttrValue::Int(i));
    }
    if let Some(s) = &a.s {
        return Some(AttrValue::String(s.clone()));
    }
    if !a.floats.is_empty() {
        return Some(AttrValue::Floats(a.floats.clone()));
    }
    if !a.ints.is_empty() {
        return Some(AttrValue::Ints(a.ints.clone()));
    }
    if !a.strings.is_empty() {
        return Some(AttrValue::Strings(a.strings.clone()));
    }
    None
}

fn shape_from_proto(s: Option<proto::TensorShapeProto>) -> Option<Shape> {
    use proto::tensor_shape_proto::dimension::Value as V;
    s.map(|s| Shape {
        dims: s
            .dim
            .into_iter()
            .map(|d| Dim {
                value: match d.value {
                    Some(V::DimValue(n)) => DimValue::Fixed(n),
                    Some(V::DimParam(p)) => DimValue::Param(p),
                    None => DimValue::Unknown,
                },
                denotation: d.denotation,
            })
            .collect(),
    })
}

/// Converts a `TypeProto`.
pub(crate) fn type_from_proto(t: proto::TypeProto) -> Type {
    use proto::type_proto::Value as V;
    let inner = |t: Option<Box<proto::TypeProto>>| t.map(|t| Box::new(type_from_proto(*t)));
    let kind = match t.value {
        Some(V::TensorType(tt)) => TypeKind::Tensor {
            elem: DType::from_onnx(tt.elem_type.unwrap_or(0)),
            shape: shape_from_proto(tt.shape),
        },
        Some(V::SparseTensorType(tt)) => TypeKind::SparseTensor {
            elem: DType::from_onnx(tt.elem_type.unwrap_or(0)),
            shape: shape_from_proto(tt.shape),
        },
        Some(V::SequenceType(s)) => TypeKind::Sequence(inner(s.elem_type)),
        Some(V::MapType(m)) => TypeKind::Map {
            key: DType::from_onnx(m.key_type.unwrap_or(0)),
            value: inner(m.value_type),
        },
        Some(V::OptionalType(o)) => TypeKind::Optional(inner(o.elem_type)),
        Some(V::OpaqueType(o)) => TypeKind::Opaque {
            domain: o.domain,
            name: o.name,
        },
        None => TypeKind::Unset,
    };
    Type {
        kind,
        denotation: t.denotation,
    }
}
