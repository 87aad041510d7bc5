//! The parser of the text form (see the module above for the grammar).

use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Value, ValueDef, ValueId};
use crate::ir::model::{Function, Model, OpsetImport};
use crate::ir::tensor::{SparseTensor, Tensor, TensorData};
use crate::ir::types::{Dim, DimValue, Shape, Type, TypeKind};
use bytes::Bytes;
use std::collections::HashMap;

/// A syntax or name error, with its position.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}, column {col}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Label(String),
    At(String),
    Dollar(String),
    Ident(String),
    Str(Vec<u8>),
    Int(i64),
    Float(f64),
    Punct(&'static str),
    Underscore,
    Eof,
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

const PUNCTS: &[&str] = &[
    "->", "::", "(", ")", "{", "}", "[", "]", "<", ">", ",", "=", ":", "?", "*",
];

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}
fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-'
}

impl<'a> Lexer<'a> {
    fn err(&self, line: usize, col: usize, m: impl Into<String>) -> ParseError {
        ParseError {
            line,
            col,
            message: m.into(),
        }
    }

    fn bump(&mut self) -> u8 {
        let b = self.src[self.pos];
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        b
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn tokens(mut self) -> Result<Vec<(Tok, usize, usize)>, ParseError> {
        let mut out = Vec::new();
        loop {
            while let Some(b) = self.peek() {
                if b.is_ascii_whitespace() {
                    self.bump();
                } else if b == b'#' {
                    while self.peek().is_some_and(|b| b != b'\n') {
                        self.bump();
                    }
                } else {
                    break;
                }
            }
            let (line, col) = (self.line, self.col);
            let Some(b) = self.peek() else {
                out.push((Tok::Eof, line, col));
                return Ok(out);
            };
            let tok = match b {
                b'%' | b'@' | b'$' => {
                    self.bump();
                    let name = match self.peek() {
                        Some(b'"') => String::from_utf8(self.string()?)
                            .map_err(|_| self.err(line, col, "a name must be UTF-8"))?,
                        Some(c) if is_ident_char(c) => self.word(),
                        _ => {
                            return Err(self.err(
                                line,
                                col,
                                format!("expected a name after '{}'", b as char),
                            ))
                        }
                    };
                    match b {
                        b'%' => Tok::Label(name),
                        b'@' => Tok::At(name),
                        _ => Tok::Dollar(name),
                    }
                }
                b'"' => Tok::Str(self.string()?),
                b'-' if self.src.get(self.pos + 1) == Some(&b'>') => {
                    self.bump();
                    self.bump();
                    Tok::Punct("->")
                }
                b'-' if self.src[self.pos + 1..].starts_with(b"inf") => {
                    for _ in 0..4 {
                        self.bump();
                    }
                    Tok::Float(f64::NEG_INFINITY)
                }
                b'-' | b'0'..=b'9' => self.number(line, col)?,
                c if is_ident_start(c) => {
                    let w = self.word();
                    if w == "_" {
                        Tok::Underscore
                    } else {
                        Tok::Ident(w)
                    }
                }
                _ => {
                    let rest = &self.src[self.pos..];
                    let p = PUNCTS
                        .iter()
                        .find(|p| rest.starts_with(p.as_bytes()))
                        .ok_or_else(|| {
                            self.err(line, col, format!("unexpected character '{}'", b as char))
                        })?;
                    for _ in 0..p.len() {
                        self.bump();
                    }
                    Tok::Punct(p)
                }
            };
            out.push((tok, line, col));
        }
    }

    fn word(&mut self) -> String {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            // `->` ends a word (`%x->` is not a name).
            if self.peek() == Some(b'-') && self.src.get(self.pos + 1) == Some(&b'>') {
                break;
            }
            self.bump();
        }
        String::from_utf8_lossy(&self.src[start..self.pos]).into_owned()
    }

    fn number(&mut self, line: usize, col: usize) -> Result<Tok, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.bump();
        }
        let mut float = false;
        while let Some(b) = self.peek() {
            if b.is_ascii_digit() {
                self.bump();
            } else if b == b'.' || b == b'e' || b == b'E' {
                float = true;
                self.bump();
                if (b == b'e' || b == b'E') && matches!(self.peek(), Some(b'+') | Some(b'-')) {
                    self.bump();
                }
            } else {
                break;
            }
        }
        let s = std::str::from_utf8(&self.src[start..self.pos]).unwrap_or("");
        if float {
            s.parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| self.err(line, col, format!("bad number '{s}'")))
        } else {
            s.parse::<i64>()
                .map(Tok::Int)
                .map_err(|_| self.err(line, col, format!("bad integer '{s}'")))
        }
    }

    fn string(&mut self) -> Result<Vec<u8>, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump();
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(self.err(line, col, "unterminated string"));
            };
            self.bump();
            match b {
                b'"' => return Ok(out),
                b'\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.err(line, col, "unterminated string"));
                    };
                    self.bump();
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'x' => {
                            let hex = self
                                .src
                                .get(self.pos..self.pos + 2)
                                .ok_or_else(|| self.err(line, col, "bad \\x escape"))?;
                            let v =
                                u8::from_str_radix(std::str::from_utf8(hex).unwrap_or("zz"), 16)
                                    .map_err(|_| self.err(line, col, "bad \\x escape"))?;
                            self.bump();
                            self.bump();
                            out.push(v);
                        }
                        _ => {
                            return Err(self.err(
                                self.line,
                                self.col,
                                format!("unknown escape '\\{}'", e as char),
                            ))
                        }
                    }
                }
                _ => out.push(b),
            }
        }
    }
}

/// Parses a model in the text form.
pub fn parse_model(src: &str) -> Result<Model, ParseError> {
    let toks = Lexer {
        src: src.as_bytes(),
        pos: 0,
        line: 1,
        col: 1,
    }
    .tokens()?;
    let mut p = Parser {
        toks,
        pos: 0,
        last: 0,
        scopes: vec![],
    };
    let mut opsets = Vec::new();
    if p.eat_ident("opset") {
        opsets = p.opsets()?;
    }
    p.expect_ident("graph")?;
    let graph = p.graph()?;
    let mut model = Model::new(graph, &[]);
    model.opset_imports = opsets;
    while p.eat_ident("function") {
        model.functions.push(p.function()?);
    }
    if p.peek() != &Tok::Eof {
        return Err(p.err_here("expected 'function' or the end of the text"));
    }
    Ok(model)
}

struct Scope {
    /// label → value of this graph.
    labels: HashMap<String, ValueId>,
    graph: Graph,
}

struct Parser {
    toks: Vec<(Tok, usize, usize)>,
    pos: usize,
    /// The last token consumed: errors found after consuming point at it.
    last: usize,
    scopes: Vec<Scope>,
}

impl Parser {
    fn peek(&self) -> &Tok {
        &self.toks[self.pos].0
    }
    fn next(&mut self) -> Tok {
        let t = self.toks[self.pos].0.clone();
        self.last = self.pos;
        if self.pos + 1 < self.toks.len() {
            self.pos += 1;
        }
        t
    }
    fn err(&self, m: impl Into<String>) -> ParseError {
        let (_, line, col) = &self.toks[self.last];
        ParseError {
            line: *line,
            col: *col,
            message: m.into(),
        }
    }
    /// An error at the next token (nothing of it consumed yet).
    fn err_here(&self, m: impl Into<String>) -> ParseError {
        let (_, line, col) = &self.toks[self.pos];
        ParseError {
            line: *line,
            col: *col,
            message: m.into(),
        }
    }
    fn describe(t: &Tok) -> String {
        match t {
            Tok::Label(l) => format!("'%{l}'"),
            Tok::At(l) => format!("'@{l}'"),
            Tok::Dollar(l) => format!("'${l}'"),
            Tok::Ident(i) => format!("'{i}'"),
            Tok::Str(_) => "a string".into(),
            Tok::Int(i) => format!("'{i}'"),
            Tok::Float(f) => format!("'{f}'"),
            Tok::Punct(p) => format!("'{p}'"),
            Tok::Underscore => "'_'".into(),
            Tok::Eof => "the end of the text".into(),
        }
    }
    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.peek(), Tok::Punct(q) if *q == p) {
            self.next();
            true
        } else {
            false
        }
    }
    fn expect(&mut self, p: &str) -> Result<(), ParseError> {
        if self.eat(p) {
            Ok(())
        } else {
            Err(self.err_here(format!(
                "expected '{p}', found {}",
                Self::describe(self.peek())
            )))
        }
    }
    fn eat_ident(&mut self, w: &str) -> bool {
        if matches!(self.peek(), Tok::Ident(i) if i == w) {
            self.next();
            true
        } else {
            false
        }
    }
    fn expect_ident(&mut self, w: &str) -> Result<(), ParseError> {
        if self.eat_ident(w) {
            Ok(())
        } else {
            Err(self.err_here(format!(
                "expected '{w}', found {}",
                Self::describe(self.peek())
            )))
        }
    }
    /// A name: an identifier or a string.
    fn name(&mut self) -> Result<String, ParseError> {
        match self.next() {
            Tok::Ident(s) => Ok(s),
            Tok::Str(b) => String::from_utf8(b).map_err(|_| self.err("a name must be UTF-8")),
            t => Err(self.err(format!("expected a name, found {}", Self::describe(&t)))),
        }
    }
    fn label(&mut self) -> Result<String, ParseError> {
        match self.next() {
            Tok::Label(l) => Ok(l),
            t => Err(self.err(format!(
                "expected a value like '%x', found {}",
                Self::describe(&t)
            ))),
        }
    }
    fn int(&mut self) -> Result<i64, ParseError> {
        match self.next() {
            Tok::Int(i) => Ok(i),
            t => Err(self.err(format!("expected an integer, found {}", Self::describe(&t)))),
        }
    }
    fn domain(&mut self) -> Result<String, ParseError> {
        if self.peek() == &Tok::Underscore {
            self.next();
            return Ok(String::new());
        }
        self.name()
    }

    fn opsets(&mut self) -> Result<Vec<OpsetImport>, ParseError> {
        let mut v = Vec::new();
        loop {
            let domain = self.domain()?;
            self.expect("=")?;
            let version = self.int()?;
            v.push(OpsetImport { domain, version });
            if !self.eat(",") {
                return Ok(v);
            }
        }
    }

    fn cur(&mut self) -> &mut Scope {
        self.scopes.last_mut().expect("inside a graph")
    }

    fn define(&mut self, label: &str, id: ValueId) -> Result<(), ParseError> {
        if self.cur().labels.insert(label.to_string(), id).is_some() {
            return Err(self.err(format!("'%{label}' is defined twice")));
        }
        Ok(())
    }

    /// Resolves a label: in this graph, or in an enclosing one (an outer value).
    fn resolve(&mut self, label: &str) -> Result<ValueId, ParseError> {
        if let Some(&id) = self.cur().labels.get(label) {
            return Ok(id);
        }
        let n = self.scopes.len();
        for s in self.scopes[..n - 1].iter().rev() {
            if let Some(&id) = s.labels.get(label) {
                let name = s.graph.value(id).name.clone();
                let cur = self.cur();
                let id = cur.graph.add_value(Value::new(&name, ValueDef::Outer));
                cur.labels.insert(label.to_string(), id);
                return Ok(id);
            }
        }
        Err(self.err(format!("'%{label}' is not defined")))
    }

    /// After `graph`: `@name(params) -> (outs) { body }`.
    fn graph(&mut self) -> Result<Graph, ParseError> {
        let name = match self.next() {
            Tok::At(n) => n,
            t => {
                return Err(self.err(format!(
                    "expected the graph's name like '@main', found {}",
                    Self::describe(&t)
                )))
            }
        };
        self.scopes.push(Scope {
            labels: HashMap::new(),
            graph: Graph::new(&name),
        });
        self.expect("(")?;
        if !self.eat(")") {
            loop {
                let label = self.label()?;
                self.expect(":")?;
                let ty = self.opt_type()?;
                let id = self.cur().graph.add_input(&label, ty);
                self.define(&label, id)?;
                if self.eat("=") {
                    self.expect_ident("const")?;
                    let init = self.const_body(&label)?;
                    let g = &mut self.cur().graph;
                    g.value_mut(id).init = Some(init);
                    g.initializers.push(id);
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let outs = self.header_outs()?;
        self.body(&outs)?;
        Ok(self.scopes.pop().expect("pushed").graph)
    }

    fn header_outs(&mut self) -> Result<Vec<String>, ParseError> {
        self.expect("->")?;
        self.expect("(")?;
        let mut outs = Vec::new();
        if !self.eat(")") {
            loop {
                outs.push(self.label()?);
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok(outs)
    }

    fn function(&mut self) -> Result<Function, ParseError> {
        let domain = self.domain()?;
        self.expect("::")?;
        let name = self.name()?;
        self.scopes.push(Scope {
            labels: HashMap::new(),
            graph: Graph::new(&name),
        });
        self.expect("(")?;
        if !self.eat(")") {
            loop {
                let l = self.label()?;
                let id = self.cur().graph.add_input(&l, None);
                self.define(&l, id)?;
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let outs = self.header_outs()?;
        let mut attributes = Vec::new();
        let mut defaults = Vec::new();
        if self.eat_ident("attrs") {
            self.expect("(")?;
            loop {
                let n = self.name()?;
                if self.eat("=") {
                    let value = self.attr_value()?;
                    defaults.push(Attr::new(&n, value));
                } else {
                    attributes.push(n);
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let mut opset_imports = Vec::new();
        if self.eat_ident("opset") {
            self.expect("(")?;
            opset_imports = self.opsets()?;
            self.expect(")")?;
        }
        self.body(&outs)?;
        let body = self.scopes.pop().expect("pushed").graph;
        Ok(Function {
            name,
            domain,
            overload: None,
            attributes,
            attribute_defaults: defaults,
            opset_imports,
            body,
            doc_string: None,
            metadata_props: vec![],
        })
    }

    /// `{ stmt* return labels }`; `outs` are the labels the header promised.
    fn body(&mut self, outs: &[String]) -> Result<(), ParseError> {
        self.expect("{")?;
        loop {
            let at = self.pos;
            if self.eat_ident("return") {
                let mut rets = Vec::new();
                while let Tok::Label(_) = self.peek() {
                    rets.push(self.label()?);
                    if !self.eat(",") {
                        break;
                    }
                }
                if rets != outs {
                    self.last = at;
                    return Err(self.err(format!(
                        "'return' lists {:?} but the header says {:?}",
                        rets, outs
                    )));
                }
                for l in &rets {
                    let id = self.resolve(l)?;
                    self.cur().graph.outputs.push(id);
                }
                self.expect("}")?;
                return Ok(());
            }
            self.statement(outs)?;
        }
    }

    fn statement(&mut self, graph_outs: &[String]) -> Result<(), ParseError> {
        let mut outs: Vec<Option<String>> = Vec::new();
        if matches!(self.peek(), Tok::Label(_) | Tok::Underscore) {
            loop {
                match self.next() {
                    Tok::Label(l) => outs.push(Some(l)),
                    Tok::Underscore => outs.push(None),
                    t => {
                        return Err(self.err(format!(
                            "expected a value or '_', found {}",
                            Self::describe(&t)
                        )))
                    }
                }
                if !self.eat(",") {
                    break;
                }
            }
            self.expect("=")?;
            if matches!(self.peek(), Tok::Ident(i) if i == "const")
                && !matches!(self.toks[self.pos + 1].0, Tok::Punct("("))
            {
                self.next();
                let [Some(label)] = outs.as_slice() else {
                    return Err(self.err("a constant defines exactly one value"));
                };
                let label = label.clone();
                let init = self.const_body("")?;
                let g = &mut self.cur().graph;
                let cname = match &init {
                    Initializer::Dense(t) => t.name.clone(),
                    Initializer::Sparse(s) => s.values.name.clone(),
                };
                let mut v = Value::new(&cname, ValueDef::Const);
                v.init = Some(init);
                let id = g.add_value(v);
                g.initializers.push(id);
                return self.define(&label, id);
            }
        }
        // A node.
        let first = self.name()?;
        let (domain, op) = if self.eat("::") {
            (first, self.name()?)
        } else {
            (String::new(), first)
        };
        self.expect("(")?;
        let mut inputs = Vec::new();
        if !self.eat(")") {
            loop {
                match self.next() {
                    Tok::Label(l) => inputs.push(Some(self.resolve(&l)?)),
                    Tok::Underscore => inputs.push(None),
                    t => {
                        return Err(self.err(format!(
                            "expected an input like '%x' or '_', found {}",
                            Self::describe(&t)
                        )))
                    }
                }
                if self.eat(")") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let mut attrs = Vec::new();
        if self.eat("{") {
            loop {
                let name = self.name()?;
                self.expect("=")?;
                if let Tok::Dollar(r) = self.peek().clone() {
                    self.next();
                    self.expect(":")?;
                    let kind = self.name()?;
                    let code = kind_code(&kind)
                        .ok_or_else(|| self.err(format!("unknown attribute kind '{kind}'")))?;
                    attrs.push(Attr {
                        name,
                        value: AttrValue::NoValue(code),
                        ref_attr_name: Some(r),
                        doc_string: None,
                    });
                } else {
                    let value = self.attr_value()?;
                    attrs.push(Attr::new(&name, value));
                }
                if self.eat("}") {
                    break;
                }
                self.expect(",")?;
            }
        }
        let mut types: Vec<Option<Type>> = Vec::new();
        if self.eat(":") {
            loop {
                types.push(self.opt_type()?);
                if !self.eat(",") {
                    break;
                }
            }
            if types.len() != outs.len() {
                return Err(self.err(format!("{} types for {} outputs", types.len(), outs.len())));
            }
        }
        let g = &mut self.cur().graph;
        let names: Vec<&str> = outs.iter().map(|o| o.as_deref().unwrap_or("")).collect();
        let (node, ids) = g.add_node(&op, &domain, inputs, &names, attrs);
        // Empty output slots.
        let slots: Vec<Option<ValueId>> = outs
            .iter()
            .zip(&ids)
            .map(|(o, id)| o.as_ref().map(|_| *id))
            .collect();
        g.node_mut(node).outputs = slots;
        for (i, (o, id)) in outs.iter().zip(ids).enumerate() {
            if let Some(label) = o {
                if let Some(Some(t)) = types.get(i) {
                    let g = &mut self.cur().graph;
                    g.value_mut(id).ty = Some(t.clone());
                    if !graph_outs.contains(label) {
                        g.value_info.push(id);
                    }
                }
                self.define(label, id)?;
            }
        }
        Ok(())
    }

    /// After `const`: `[sparse] dtype[dims] (@name)? literal?`.
    fn const_body(&mut self, default_name: &str) -> Result<Initializer, ParseError> {
        let sparse = self.eat_ident("sparse");
        let (dtype, dims) = self.tensor_type()?;
        let name = match self.peek().clone() {
            Tok::At(n) => {
                self.next();
                n
            }
            _ => default_name.to_string(),
        };
        let mut t = Tensor {
            name,
            dtype,
            dims: dims.clone(),
            data: TensorData::Absent,
            doc_string: None,
            metadata_props: vec![],
            segment: None,
        };
        if sparse {
            t.dims = vec![0];
            let indices = Tensor {
                name: String::new(),
                dtype: DType::I64,
                dims: vec![0],
                data: TensorData::Absent,
                doc_string: None,
                metadata_props: vec![],
                segment: None,
            };
            return Ok(Initializer::Sparse(Box::new(SparseTensor {
                values: t,
                indices,
                dims,
            })));
        }
        if matches!(self.peek(), Tok::Punct("[")) {
            t.data = TensorData::Raw(self.literal(dtype, t.num_elements().unwrap_or(0))?);
        }
        Ok(Initializer::Dense(t))
    }

    /// A literal `[v, v, ...]` for a constant, encoded in ONNX's raw layout.
    fn literal(&mut self, dtype: DType, count: u64) -> Result<Bytes, ParseError> {
        self.expect("[")?;
        let mut vals: Vec<f64> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        if !self.eat("]") {
            loop {
                match self.next() {
                    Tok::Int(i) => {
                        ints.push(i);
                        vals.push(i as f64);
                    }
                    Tok::Float(f) => {
                        ints.push(f as i64);
                        vals.push(f);
                    }
                    Tok::Ident(w) if w == "nan" || w == "inf" || w == "true" || w == "false" => {
                        let f = match w.as_str() {
                            "nan" => f64::NAN,
                            "inf" => f64::INFINITY,
                            "true" => 1.0,
                            _ => 0.0,
                        };
                        ints.push(f as i64);
                        vals.push(f);
                    }
                    t => {
                        return Err(
                            self.err(format!("expected a number, found {}", Self::describe(&t)))
                        )
                    }
                }
                if self.eat("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        if vals.len() as u64 != count {
            return Err(self.err(format!(
                "the literal has {} values, the type needs {count}",
                vals.len()
            )));
        }
        let mut out = Vec::new();
        for (f, i) in vals.iter().zip(&ints) {
            match dtype {
                DType::F32 => out.extend((*f as f32).to_le_bytes()),
                DType::F64 => out.extend(f.to_le_bytes()),
                DType::I64 => out.extend(i.to_le_bytes()),
                DType::I32 => out.extend((*i as i32).to_le_bytes()),
                DType::I16 => out.extend((*i as i16).to_le_bytes()),
                DType::I8 => out.extend((*i as i8).to_le_bytes()),
                DType::U64 => out.extend((*i as u64).to_le_bytes()),
                DType::U32 => out.extend((*i as u32).to_le_bytes()),
                DType::U16 => out.extend((*i as u16).to_le_bytes()),
                DType::U8 | DType::Bool => out.push(*i as u8),
                d => return Err(self.err(format!("literals of type {d} are not supported"))),
            }
        }
        Ok(Bytes::from(out))
    }

    /// `dtype[dims]` with fixed dimensions (constants).
    fn tensor_type(&mut self) -> Result<(DType, Vec<i64>), ParseError> {
        let dn = self.name()?;
        let dtype = DType::from_text_name(&dn)
            .ok_or_else(|| self.err(format!("unknown element type '{dn}'")))?;
        self.expect("[")?;
        let mut dims = Vec::new();
        if !self.eat("]") {
            loop {
                dims.push(self.int()?);
                if self.eat("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok((dtype, dims))
    }

    /// A type, or `?` for none.
    fn opt_type(&mut self) -> Result<Option<Type>, ParseError> {
        if self.eat("?") {
            return Ok(None);
        }
        self.ty().map(Some)
    }

    fn inner_type(&mut self) -> Result<Option<Box<Type>>, ParseError> {
        Ok(self.opt_type()?.map(Box::new))
    }

    fn ty(&mut self) -> Result<Type, ParseError> {
        let word = self.name()?;
        let kind = match word.as_str() {
            "sparse" => {
                self.expect("<")?;
                let (elem, shape) = self.dtype_shape()?;
                self.expect(">")?;
                TypeKind::SparseTensor { elem, shape }
            }
            "seq" => {
                self.expect("<")?;
                let t = self.inner_type()?;
                self.expect(">")?;
                TypeKind::Sequence(t)
            }
            "opt" => {
                self.expect("<")?;
                let t = self.inner_type()?;
                self.expect(">")?;
                TypeKind::Optional(t)
            }
            "map" => {
                self.expect("<")?;
                let kn = self.name()?;
                let key = DType::from_text_name(&kn)
                    .ok_or_else(|| self.err(format!("unknown element type '{kn}'")))?;
                self.expect(",")?;
                let value = self.inner_type()?;
                self.expect(">")?;
                TypeKind::Map { key, value }
            }
            "opaque" => {
                self.expect("<")?;
                let d = if self.peek() == &Tok::Underscore {
                    self.next();
                    None
                } else {
                    Some(self.name()?)
                };
                self.expect(",")?;
                let n = if self.peek() == &Tok::Underscore {
                    self.next();
                    None
                } else {
                    Some(self.name()?)
                };
                self.expect(">")?;
                TypeKind::Opaque { domain: d, name: n }
            }
            "unset" => TypeKind::Unset,
            _ => {
                self.pos -= 1;
                let (elem, shape) = self.dtype_shape()?;
                TypeKind::Tensor { elem, shape }
            }
        };
        let denotation = if self.eat_ident("denote") {
            match self.next() {
                Tok::Str(s) => Some(String::from_utf8_lossy(&s).into_owned()),
                t => {
                    return Err(self.err(format!(
                        "expected a string after 'denote', found {}",
                        Self::describe(&t)
                    )))
                }
            }
        } else {
            None
        };
        Ok(Type { kind, denotation })
    }

    fn dtype_shape(&mut self) -> Result<(DType, Option<Shape>), ParseError> {
        let dn = self.name()?;
        let elem = DType::from_text_name(&dn)
            .ok_or_else(|| self.err(format!("unknown element type '{dn}'")))?;
        self.expect("[")?;
        if self.eat("*") {
            self.expect("]")?;
            return Ok((elem, None));
        }
        let mut dims = Vec::new();
        if !self.eat("]") {
            loop {
                let value = match self.next() {
                    Tok::Int(n) => DimValue::Fixed(n),
                    Tok::Ident(s) => DimValue::Param(s),
                    Tok::Str(s) => DimValue::Param(String::from_utf8_lossy(&s).into_owned()),
                    Tok::Punct("?") => DimValue::Unknown,
                    t => {
                        return Err(self.err(format!(
                            "expected a dimension, found {}",
                            Self::describe(&t)
                        )))
                    }
                };
                dims.push(Dim {
                    value,
                    denotation: None,
                });
                if self.eat("]") {
                    break;
                }
                self.expect(",")?;
            }
        }
        Ok((elem, Some(Shape { dims })))
    }

    fn attr_value(&mut self) -> Result<AttrValue, ParseError> {
        match self.next() {
            Tok::Int(i) => Ok(AttrValue::Int(i)),
            Tok::Float(f) => Ok(AttrValue::Float(f as f32)),
            Tok::Str(s) => Ok(AttrValue::String(Bytes::from(s))),
            Tok::Ident(w) => match w.as_str() {
                "nan" => Ok(AttrValue::Float(f32::NAN)),
                "inf" => Ok(AttrValue::Float(f32::INFINITY)),
                "tensor" => Ok(AttrValue::Tensor(self.tensor_ref()?)),
                "sparse" => Ok(AttrValue::SparseTensor(Box::new(self.sparse_ref()?))),
                "type" => Ok(AttrValue::Type(self.ty()?)),
                "graph" => Ok(AttrValue::Graph(Box::new(self.graph()?))),
                "novalue" => {
                    self.expect(":")?;
                    let k = self.name()?;
                    kind_code(&k)
                        .map(AttrValue::NoValue)
                        .ok_or_else(|| self.err(format!("unknown attribute kind '{k}'")))
                }
                kind => {
                    let empty = AttrValue::empty_of_kind(kind).ok_or_else(|| {
                        self.err(format!("unexpected '{kind}' in an attribute value"))
                    })?;
                    self.expect("[")?;
                    self.expect("]")?;
                    Ok(empty)
                }
            },
            Tok::Punct("[") => self.list(),
            t => Err(self.err(format!(
                "expected an attribute value, found {}",
                Self::describe(&t)
            ))),
        }
    }

    /// A non-empty list after `[`; its kind comes from its first item.
    fn list(&mut self) -> Result<AttrValue, ParseError> {
        let mut items = Vec::new();
        loop {
            items.push(self.attr_value()?);
            if self.eat("]") {
                break;
            }
            self.expect(",")?;
        }
        let is_float = items.iter().any(|i| matches!(i, AttrValue::Float(_)));
        let all = |f: &dyn Fn(&AttrValue) -> bool| items.iter().all(f);
        let v = if all(&|i| matches!(i, AttrValue::Int(_) | AttrValue::Float(_))) {
            if is_float {
                AttrValue::Floats(
                    items
                        .iter()
                        .map(|i| {
                            if let AttrValue::Float(f) = i {
                                *f
                            } else {
                                i.as_int().unwrap_or(0) as f32
                            }
                        })
                        .collect(),
                )
            } else {
                AttrValue::Ints(items.iter().filter_map(|i| i.as_int()).collect())
            }
        } else if all(&|i| matches!(i, AttrValue::String(_))) {
            AttrValue::Strings(
                items
                    .into_iter()
                    .filter_map(|i| {
                        if let AttrValue::String(s) = i {
                            Some(s)
                        } else {
                            None
                        }
                    })
                    .collect(),
            )
        } else if all(&|i| matches!(i, AttrValue::Tensor(_))) {
            AttrValue::Tensors(
                items
                    .into_iter()
                    .filter_map(|i| {
                        if let AttrValue::Tensor(t) = i {
                            Some(t)
                        } else {
                            None
                        }
                    })
                    .collect(),
            )
        } else if all(&|i| matches!(i, AttrValue::Graph(_))) {
            AttrValue::Graphs(
                items
                    .into_iter()
                    .filter_map(|i| {
                        if let AttrValue::Graph(g) = i {
                            Some(*g)
                        } else {
                            None
                        }
                    })
                    .collect(),
            )
        } else if all(&|i| matches!(i, AttrValue::SparseTensor(_))) {
            AttrValue::SparseTensors(
                items
                    .into_iter()
                    .filter_map(|i| {
                        if let AttrValue::SparseTensor(s) = i {
                            Some(*s)
                        } else {
                            None
                        }
                    })
                    .collect(),
            )
        } else if all(&|i| matches!(i, AttrValue::Type(_))) {
            AttrValue::Types(
                items
                    .into_iter()
                    .filter_map(|i| {
                        if let AttrValue::Type(t) = i {
                            Some(t)
                        } else {
                            None
                        }
                    })
                    .collect(),
            )
        } else {
            return Err(self.err("a list mixes kinds of values"));
        };
        Ok(v)
    }

    fn tensor_ref(&mut self) -> Result<Tensor, ParseError> {
        let (dtype, dims) = self.tensor_type()?;
        let name = match self.next() {
            Tok::At(n) => n,
            t => {
                return Err(self.err(format!(
                    "expected the tensor's name like '@w', found {}",
                    Self::describe(&t)
                )))
            }
        };
        let mut t = Tensor {
            name,
            dtype,
            dims,
            data: TensorData::Absent,
            doc_string: None,
            metadata_props: vec![],
            segment: None,
        };
        if matches!(self.peek(), Tok::Punct("[")) {
            t.data = TensorData::Raw(self.literal(dtype, t.num_elements().unwrap_or(0))?);
        }
        Ok(t)
    }

    /// After `sparse`: `dtype[dims] @name`.
    fn sparse_ref(&mut self) -> Result<SparseTensor, ParseError> {
        let (dtype, dims) = self.tensor_type()?;
        let name = match self.next() {
            Tok::At(n) => n,
            t => {
                return Err(self.err(format!(
                    "expected the tensor's name like '@w', found {}",
                    Self::describe(&t)
                )))
            }
        };
        let values = Tensor {
            name,
            dtype,
            dims: vec![0],
            data: TensorData::Absent,
            doc_string: None,
            metadata_props: vec![],
            segment: None,
        };
        let indices = Tensor {
            name: String::new(),
            dtype: DType::I64,
            dims: vec![0],
            data: TensorData::Absent,
            doc_string: None,
            metadata_props: vec![],
            segment: None,
        };
        Ok(SparseTensor {
            values,
            indices,
            dims,
        })
    }
}

/// The ONNX `AttributeType` code for a kind name of the text form.
fn kind_code(kind: &str) -> Option<i32> {
    Some(match kind {
        "float" => 1,
        "int" => 2,
        "string" => 3,
        "tensor" => 4,
        "graph" => 5,
        "sparse" => 11,
        "type" => 13,
        "floats" => 6,
        "ints" => 7,
        "strings" => 8,
        "tensors" => 9,
        "graphs" => 10,
        "sparses" => 12,
        "types" => 14,
        "undefined" => 0,
        _ => return kind.strip_prefix("kind").and_then(|c| c.parse().ok()),
    })
}
