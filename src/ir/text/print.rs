//! The printer of the text form (see the module above for the grammar).

use super::{name_token, quote};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Initializer, ValueDef, ValueId};
use crate::ir::model::{Function, Model, OpsetImport};
use crate::ir::tensor::{SparseTensor, Tensor};
use crate::ir::types::Type;
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Prints a whole model: opsets, the main graph, then functions.
pub fn print_model(m: &Model) -> String {
    print_model_with_data(m, 0)
}

/// Prints a whole model, with the data of constants of at most `limit` elements
/// written as literals (the parser reads them back). Snapshot tests of folding
/// passes use it to show folded values.
pub fn print_model_with_data(m: &Model, limit: usize) -> String {
    let mut p = Printer::new();
    p.data_limit = limit;
    p.reserve_graph(&m.graph);
    for f in &m.functions {
        p.reserve_graph(&f.body);
    }
    if !m.opset_imports.is_empty() {
        let _ = writeln!(p.out, "opset {}", opsets_text(&m.opset_imports));
    }
    p.graph(&m.graph, 0);
    p.out.push('\n');
    for f in &m.functions {
        p.function(f);
    }
    p.out
}

/// The literal of a small dense tensor (`[1.0, 2.0]`), when its type has one.
fn literal_text(t: &Tensor, limit: usize) -> Option<String> {
    use crate::ir::dtype::DType;
    if t.num_elements()? as usize > limit {
        return None;
    }
    let v = crate::interp::value::TensorValue::from_tensor(t).ok()?;
    let vals = v.to_f64_vec()?;
    let items: Vec<String> = match t.dtype {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => {
            vals.iter().map(|&x| float_text(x as f32)).collect()
        }
        DType::Bool => vals
            .iter()
            .map(|&x| if x != 0.0 { "true" } else { "false" }.to_string())
            .collect(),
        DType::I8
        | DType::I16
        | DType::I32
        | DType::I64
        | DType::U8
        | DType::U16
        | DType::U32
        | DType::U64 => vals.iter().map(|&x| (x as i64).to_string()).collect(),
        _ => return None,
    };
    Some(format!(" [{}]", items.join(", ")))
}

/// Prints one graph.
pub fn print_graph(g: &Graph) -> String {
    let mut p = Printer::new();
    p.reserve_graph(g);
    p.graph(g, 0);
    p.out.push('\n');
    p.out
}

fn opsets_text(v: &[OpsetImport]) -> String {
    v.iter()
        .map(|o| format!("{}={}", domain_token(&o.domain), o.version))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn domain_token(d: &str) -> String {
    if d.is_empty() {
        "_".into()
    } else {
        name_token(d)
    }
}

fn label_token(l: &str) -> String {
    if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) {
        format!("%{l}")
    } else {
        format!("%{}", name_token(l))
    }
}

fn type_text(t: &Option<Type>) -> String {
    t.as_ref()
        .map(|t| t.to_string())
        .unwrap_or_else(|| "?".into())
}

fn tensor_type_text(t: &Tensor) -> String {
    let dims: Vec<String> = t.dims.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", t.dtype, dims.join(","))
}

fn float_text(f: f32) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{f:?}")
    }
}

struct Printer {
    out: String,
    reserved: HashSet<String>,
    next_num: usize,
    next_const: usize,
    scopes: Vec<HashMap<String, String>>,
    data_limit: usize,
}

impl Printer {
    fn new() -> Printer {
        Printer {
            out: String::new(),
            reserved: HashSet::new(),
            next_num: 0,
            next_const: 0,
            scopes: vec![],
            data_limit: 0,
        }
    }

    fn reserve_graph(&mut self, g: &Graph) {
        for &v in g.inputs.iter().chain(&g.outputs) {
            self.reserved.insert(g.value(v).name.clone());
        }
        for (_, n) in g.nodes() {
            for a in &n.attrs {
                for sub in a.value.graphs() {
                    self.reserve_graph(sub);
                }
            }
        }
    }

    fn fresh(&mut self, constant: bool) -> String {
        loop {
            let l = if constant {
                self.next_const += 1;
                format!("w{}", self.next_const - 1)
            } else {
                self.next_num += 1;
                (self.next_num - 1).to_string()
            };
            if !self.reserved.contains(&l) {
                return l;
            }
        }
    }

    fn lookup(&self, g: &Graph, v: ValueId) -> String {
        let name = &g.value(v).name;
        for s in self.scopes.iter().rev() {
            if let Some(l) = s.get(name) {
                return l.clone();
            }
        }
        name.clone()
    }

    fn slot(&self, g: &Graph, v: &Option<ValueId>) -> String {
        match v {
            Some(v) => label_token(&self.lookup(g, *v)),
            None => "_".into(),
        }
    }

    fn indent(&mut self, depth: usize) {
        for _ in 0..depth {
            self.out.push_str("  ");
        }
    }

    fn function(&mut self, f: &Function) {
        self.scopes.push(HashMap::new());
        let g = &f.body;
        for &v in &g.inputs {
            let n = g.value(v).name.clone();
            self.scopes.last_mut().expect("pushed").insert(n.clone(), n);
        }
        let ins: Vec<String> = g
            .inputs
            .iter()
            .map(|&v| label_token(&g.value(v).name))
            .collect();
        let outs: Vec<String> = g
            .outputs
            .iter()
            .map(|&v| label_token(&g.value(v).name))
            .collect();
        let _ = write!(
            self.out,
            "function {}::{}({}) -> ({})",
            domain_token(&f.domain),
            name_token(&f.name),
            ins.join(", "),
            outs.join(", ")
        );
        if !f.attributes.is_empty() || !f.attribute_defaults.is_empty() {
            let mut items: Vec<String> = f.attributes.iter().map(|a| name_token(a)).collect();
            for a in &f.attribute_defaults {
                let mut s = String::new();
                std::mem::swap(&mut s, &mut self.out);
                self.attr(a, 0);
                std::mem::swap(&mut s, &mut self.out);
                items.push(s);
            }
            let _ = write!(self.out, " attrs({})", items.join(", "));
        }
        if !f.opset_imports.is_empty() {
            let _ = write!(self.out, " opset({})", opsets_text(&f.opset_imports));
        }
        self.out.push_str(" {\n");
        self.body(g, 1);
        self.out.push_str("}\n");
        self.scopes.pop();
    }

    /// `graph @name(params) -> (outs) { ... }`, leaving the cursor after `}`.
    fn graph(&mut self, g: &Graph, depth: usize) {
        self.scopes.push(HashMap::new());
        let mut params = Vec::new();
        for &v in &g.inputs {
            let val = g.value(v);
            self.scopes
                .last_mut()
                .expect("pushed")
                .insert(val.name.clone(), val.name.clone());
            let mut s = format!("{}: {}", label_token(&val.name), type_text(&val.ty));
            match &val.init {
                Some(Initializer::Dense(t)) => {
                    s.push_str(&format!(" = const {}", tensor_type_text(t)))
                }
                Some(Initializer::Sparse(sp)) => {
                    s.push_str(&format!(" = const sparse {}", sparse_type_text(sp)))
                }
                None => {}
            }
            params.push(s);
        }
        let outs: Vec<String> = g
            .outputs
            .iter()
            .map(|&v| label_token(&g.value(v).name))
            .collect();
        let _ = writeln!(
            self.out,
            "graph @{}({}) -> ({}) {{",
            name_token(&g.name),
            params.join(", "),
            outs.join(", ")
        );
        self.body(g, depth + 1);
        self.indent(depth);
        self.out.push('}');
        self.scopes.pop();
    }

    /// Constants, nodes and `return`, inside the current scope.
    fn body(&mut self, g: &Graph, depth: usize) {
        let outputs: HashSet<ValueId> = g.outputs.iter().copied().collect();
        for &v in &g.initializers {
            let val = g.value(v);
            if val.def != ValueDef::Const {
                continue;
            }
            let label = if outputs.contains(&v) {
                val.name.clone()
            } else {
                self.fresh(true)
            };
            self.scopes
                .last_mut()
                .expect("in scope")
                .insert(val.name.clone(), label.clone());
            self.indent(depth);
            let ty = match &val.init {
                Some(Initializer::Dense(t)) => tensor_type_text(t),
                Some(Initializer::Sparse(s)) => format!("sparse {}", sparse_type_text(s)),
                None => "?".into(),
            };
            let data = match &val.init {
                Some(Initializer::Dense(t)) if self.data_limit > 0 => {
                    literal_text(t, self.data_limit).unwrap_or_default()
                }
                _ => String::new(),
            };
            let _ = writeln!(
                self.out,
                "{} = const {} @{}{data}",
                label_token(&label),
                ty,
                name_token(&val.name)
            );
        }
        let order = match g.topo_order() {
            Ok(o) => o,
            Err(_) => g.node_ids().collect(),
        };
        for id in order {
            let n = g.node(id);
            let mut outs = Vec::new();
            for o in &n.outputs {
                match o {
                    Some(v) => {
                        let name = g.value(*v).name.clone();
                        let label = if outputs.contains(v) {
                            name.clone()
                        } else {
                            self.fresh(false)
                        };
                        self.scopes
                            .last_mut()
                            .expect("in scope")
                            .insert(name, label.clone());
                        outs.push(label_token(&label));
                    }
                    None => outs.push("_".into()),
                }
            }
            self.indent(depth);
            if !outs.is_empty() {
                let _ = write!(self.out, "{} = ", outs.join(", "));
            }
            let op = if n.domain.is_empty() {
                name_token(&n.op_type)
            } else {
                format!("{}::{}", name_token(&n.domain), name_token(&n.op_type))
            };
            let ins: Vec<String> = n.inputs.iter().map(|v| self.slot(g, v)).collect();
            let _ = write!(self.out, "{}({})", op, ins.join(", "));
            if !n.attrs.is_empty() {
                let mut attrs: Vec<&Attr> = n.attrs.iter().collect();
                attrs.sort_by(|a, b| a.name.cmp(&b.name));
                self.out.push_str(" {");
                for (i, a) in attrs.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.attr(a, depth);
                }
                self.out.push('}');
            }
            let types: Vec<Option<Type>> = n
                .outputs
                .iter()
                .map(|o| o.and_then(|v| g.value(v).ty.clone()))
                .collect();
            if types.iter().any(|t| t.is_some()) {
                let ts: Vec<String> = types.iter().map(type_text).collect();
                let _ = write!(self.out, " : {}", ts.join(", "));
            }
            self.out.push('\n');
        }
        self.indent(depth);
        let rets: Vec<String> = g
            .outputs
            .iter()
            .map(|&v| label_token(&self.lookup(g, v)))
            .collect();
        if rets.is_empty() {
            self.out.push_str("return\n");
        } else {
            let _ = writeln!(self.out, "return {}", rets.join(", "));
        }
    }

    fn attr(&mut self, a: &Attr, depth: usize) {
        let _ = write!(self.out, "{}=", name_token(&a.name));
        if let Some(r) = &a.ref_attr_name {
            let kind = match &a.value {
                AttrValue::NoValue(code) => kind_of_code(*code),
                v => v.kind_name().to_string(),
            };
            let _ = write!(self.out, "${}:{}", name_token(r), kind);
            return;
        }
        self.attr_value(&a.value, depth);
    }

    fn list<T>(
        &mut self,
        kind: &str,
        items: &[T],
        depth: usize,
        mut f: impl FnMut(&mut Self, &T, usize),
    ) {
        if items.is_empty() {
            let _ = write!(self.out, "{kind}[]");
            return;
        }
        self.out.push('[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            f(self, it, depth);
        }
        self.out.push(']');
    }

    fn attr_value(&mut self, v: &AttrValue, depth: usize) {
        match v {
            AttrValue::Float(f) => self.out.push_str(&float_text(*f)),
            AttrValue::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            AttrValue::String(s) => self.out.push_str(&quote(s)),
            AttrValue::Tensor(t) => self.tensor_ref(t),
            AttrValue::Graph(g) => {
                self.out.push_str("");
                self.graph(g, depth);
            }
            AttrValue::SparseTensor(s) => {
                let _ = write!(
                    self.out,
                    "sparse {} @{}",
                    sparse_type_text(s),
                    name_token(&s.values.name)
                );
            }
            AttrValue::Type(t) => {
                let _ = write!(self.out, "type {t}");
            }
            AttrValue::Floats(v) => self.list("floats", v, depth, |p, f, _| {
                p.out.push_str(&float_text(*f))
            }),
            AttrValue::Ints(v) => self.list("ints", v, depth, |p, i, _| {
                let _ = write!(p.out, "{i}");
            }),
            AttrValue::Strings(v) => {
                self.list("strings", v, depth, |p, s, _| p.out.push_str(&quote(s)))
            }
            AttrValue::Tensors(v) => self.list("tensors", v, depth, |p, t, _| p.tensor_ref(t)),
            AttrValue::Graphs(v) => self.list("graphs", v, depth, |p, g, d| p.graph(g, d)),
            AttrValue::SparseTensors(v) => self.list("sparses", v, depth, |p, s, _| {
                let _ = write!(
                    p.out,
                    "sparse {} @{}",
                    sparse_type_text(s),
                    name_token(&s.values.name)
                );
            }),
            AttrValue::Types(v) => self.list("types", v, depth, |p, t, _| {
                let _ = write!(p.out, "type {t}");
            }),
            AttrValue::NoValue(code) => {
                let _ = write!(self.out, "novalue:{}", kind_of_code(*code));
            }
        }
    }

    fn tensor_ref(&mut self, t: &Tensor) {
        let _ = write!(
            self.out,
            "tensor {} @{}",
            tensor_type_text(t),
            name_token(&t.name)
        );
    }
}

fn sparse_type_text(s: &SparseTensor) -> String {
    let dims: Vec<String> = s.dims.iter().map(|d| d.to_string()).collect();
    format!("{}[{}]", s.values.dtype, dims.join(","))
}

/// The text name of an ONNX `AttributeType` code.
pub(super) fn kind_of_code(code: i32) -> String {
    match code {
        1 => "float",
        2 => "int",
        3 => "string",
        4 => "tensor",
        5 => "graph",
        11 => "sparse",
        13 => "type",
        6 => "floats",
        7 => "ints",
        8 => "strings",
        9 => "tensors",
        10 => "graphs",
        12 => "sparses",
        14 => "types",
        0 => "undefined",
        _ => return format!("kind{code}"),
    }
    .to_string()
}
