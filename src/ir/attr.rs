//! Node attributes: every ONNX attribute kind, including tensors, subgraphs, sparse
//! tensors, type protos and references to a function's attributes.
//!
//! ```
//! use modc::{Attr, AttrValue};
//! let a = Attr::new("axis", AttrValue::Int(1));
//! assert_eq!(a.value.as_int(), Some(1));
//! ```

use crate::ir::graph::Graph;
use crate::ir::tensor::{SparseTensor, Tensor};
use crate::ir::types::Type;
use bytes::Bytes;

/// One attribute of a node (or a function's attribute default).
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub name: String,
    pub value: AttrValue,
    /// Inside a function body: the name of the function attribute this one refers to.
    /// The value then only carries the kind (it is empty).
    pub ref_attr_name: Option<String>,
    pub doc_string: Option<String>,
}

impl Attr {
    pub fn new(name: &str, value: AttrValue) -> Attr {
        Attr {
            name: name.to_string(),
            value,
            ref_attr_name: None,
            doc_string: None,
        }
    }
}

/// An attribute's value. Tensor values are kept unboxed: attributes are few per node,
/// and a tensor attribute (a Constant's `value`) is the common large case.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Float(f32),
    Int(i64),
    String(Bytes),
    Tensor(Tensor),
    Graph(Box<Graph>),
    SparseTensor(Box<SparseTensor>),
    Type(Type),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    Strings(Vec<Bytes>),
    Tensors(Vec<Tensor>),
    Graphs(Vec<Graph>),
    SparseTensors(Vec<SparseTensor>),
    Types(Vec<Type>),
    /// No value, only a kind (the ONNX `AttributeType` code): what a reference to a
    /// function attribute carries (see [`Attr::ref_attr_name`]).
    NoValue(i32),
}

impl AttrValue {
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn as_float(&self) -> Option<f32> {
        match self {
            AttrValue::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn as_ints(&self) -> Option<&[i64]> {
        match self {
            AttrValue::Ints(v) => Some(v),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&[u8]> {
        match self {
            AttrValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The kind's name in the text form (`int`, `floats`, `graph` ...).
    pub fn kind_name(&self) -> &'static str {
        match self {
            AttrValue::Float(_) => "float",
            AttrValue::Int(_) => "int",
            AttrValue::String(_) => "string",
            AttrValue::Tensor(_) => "tensor",
            AttrValue::Graph(_) => "graph",
            AttrValue::SparseTensor(_) => "sparse",
            AttrValue::Type(_) => "type",
            AttrValue::Floats(_) => "floats",
            AttrValue::Ints(_) => "ints",
            AttrValue::Strings(_) => "strings",
            AttrValue::Tensors(_) => "tensors",
            AttrValue::Graphs(_) => "graphs",
            AttrValue::SparseTensors(_) => "sparses",
            AttrValue::Types(_) => "types",
            AttrValue::NoValue(_) => "novalue",
        }
    }

    /// An empty value of the named kind (used for references in function bodies).
    pub fn empty_of_kind(kind: &str) -> Option<AttrValue> {
        Some(match kind {
            "float" => AttrValue::Float(0.0),
            "int" => AttrValue::Int(0),
            "string" => AttrValue::String(Bytes::new()),
            "floats" => AttrValue::Floats(vec![]),
            "ints" => AttrValue::Ints(vec![]),
            "strings" => AttrValue::Strings(vec![]),
            "tensors" => AttrValue::Tensors(vec![]),
            "graphs" => AttrValue::Graphs(vec![]),
            "sparses" => AttrValue::SparseTensors(vec![]),
            "types" => AttrValue::Types(vec![]),
            _ => return None,
        })
    }

    /// Subgraphs held by this value.
    pub fn graphs(&self) -> Vec<&Graph> {
        match self {
            AttrValue::Graph(g) => vec![g.as_ref()],
            AttrValue::Graphs(gs) => gs.iter().collect(),
            _ => vec![],
        }
    }

    pub fn graphs_mut(&mut self) -> Vec<&mut Graph> {
        match self {
            AttrValue::Graph(g) => vec![g.as_mut()],
            AttrValue::Graphs(gs) => gs.iter_mut().collect(),
            _ => vec![],
        }
    }
}
