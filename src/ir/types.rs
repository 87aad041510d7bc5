//! Value types: tensors with symbolic shapes, sequences, maps, optionals, sparse
//! tensors and opaque types, mirroring ONNX's `TypeProto` without loss.
//!
//! ```
//! use modc::{Dim, Shape};
//! let s = Shape::from_dims(vec![Dim::param("batch"), Dim::fixed(3)]);
//! assert_eq!(s.to_string(), "[batch,3]");
//! assert_eq!(s.num_elements(), None);
//! ```

use crate::ir::dtype::DType;
use std::fmt;

/// One dimension of a shape: a number, a name (`batch`), or unknown.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Dim {
    pub value: DimValue,
    /// ONNX's optional dimension denotation (`DATA_BATCH` ...), kept for round trips.
    pub denotation: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DimValue {
    Fixed(i64),
    Param(String),
    Unknown,
}

impl Dim {
    pub fn fixed(n: i64) -> Dim {
        Dim {
            value: DimValue::Fixed(n),
            denotation: None,
        }
    }
    pub fn param(name: &str) -> Dim {
        Dim {
            value: DimValue::Param(name.to_string()),
            denotation: None,
        }
    }
    pub fn unknown() -> Dim {
        Dim {
            value: DimValue::Unknown,
            denotation: None,
        }
    }
    pub fn as_fixed(&self) -> Option<i64> {
        match self.value {
            DimValue::Fixed(n) => Some(n),
            _ => None,
        }
    }
}

/// A shape: a list of dimensions, or `None` dims for a tensor of unknown rank.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub dims: Vec<Dim>,
}

impl Shape {
    pub fn from_dims(dims: Vec<Dim>) -> Shape {
        Shape { dims }
    }
    pub fn fixed(dims: &[i64]) -> Shape {
        Shape {
            dims: dims.iter().map(|&d| Dim::fixed(d)).collect(),
        }
    }
    pub fn rank(&self) -> usize {
        self.dims.len()
    }
    /// The element count when every dimension is a known number.
    pub fn num_elements(&self) -> Option<u64> {
        self.dims.iter().try_fold(1u64, |acc, d| {
            let n = u64::try_from(d.as_fixed()?).ok()?;
            acc.checked_mul(n)
        })
    }
}

/// The type of a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    pub kind: TypeKind,
    /// ONNX's type denotation (`IMAGE`, `AUDIO` ...), kept for round trips.
    pub denotation: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    /// A dense tensor; `shape` is `None` when the rank is unknown.
    Tensor {
        elem: DType,
        shape: Option<Shape>,
    },
    SparseTensor {
        elem: DType,
        shape: Option<Shape>,
    },
    Sequence(Option<Box<Type>>),
    Map {
        key: DType,
        value: Option<Box<Type>>,
    },
    Optional(Option<Box<Type>>),
    Opaque {
        domain: Option<String>,
        name: Option<String>,
    },
    /// A `TypeProto` with no value set.
    Unset,
}

impl Type {
    pub fn tensor(elem: DType, shape: Shape) -> Type {
        Type {
            kind: TypeKind::Tensor {
                elem,
                shape: Some(shape),
            },
            denotation: None,
        }
    }
    /// The element type and shape when this is a dense tensor.
    pub fn as_tensor(&self) -> Option<(DType, Option<&Shape>)> {
        match &self.kind {
            TypeKind::Tensor { elem, shape } => Some((*elem, shape.as_ref())),
            _ => None,
        }
    }
}

fn write_dim_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if crate::ir::text::is_plain_ident(name) {
        f.write_str(name)
    } else {
        write!(f, "{}", crate::ir::text::quote(name.as_bytes()))
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            DimValue::Fixed(n) => write!(f, "{n}"),
            DimValue::Param(p) => write_dim_name(f, p),
            DimValue::Unknown => f.write_str("?"),
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

fn write_tensor_like(
    f: &mut fmt::Formatter<'_>,
    elem: DType,
    shape: &Option<Shape>,
) -> fmt::Result {
    write!(f, "{elem}")?;
    match shape {
        Some(s) => write!(f, "{s}"),
        None => f.write_str("[*]"),
    }
}

fn write_inner(f: &mut fmt::Formatter<'_>, t: &Option<Box<Type>>) -> fmt::Result {
    match t {
        Some(t) => write!(f, "{t}"),
        None => f.write_str("?"),
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            TypeKind::Tensor { elem, shape } => write_tensor_like(f, *elem, shape)?,
            TypeKind::SparseTensor { elem, shape } => {
                f.write_str("sparse<")?;
                write_tensor_like(f, *elem, shape)?;
                f.write_str(">")?;
            }
            TypeKind::Sequence(t) => {
                f.write_str("seq<")?;
                write_inner(f, t)?;
                f.write_str(">")?;
            }
            TypeKind::Map { key, value } => {
                write!(f, "map<{key},")?;
                write_inner(f, value)?;
                f.write_str(">")?;
            }
            TypeKind::Optional(t) => {
                f.write_str("opt<")?;
                write_inner(f, t)?;
                f.write_str(">")?;
            }
            TypeKind::Opaque { domain, name } => {
                let q = |s: &Option<String>| {
                    s.as_deref()
                        .map(|s| crate::ir::text::quote(s.as_bytes()))
                        .unwrap_or_else(|| "_".into())
                };
                write!(f, "opaque<{},{}>", q(domain), q(name))?;
            }
            TypeKind::Unset => f.write_str("unset")?,
        }
        if let Some(d) = &self.denotation {
            write!(f, " denote {}", crate::ir::text::quote(d.as_bytes()))?;
        }
        Ok(())
    }
}
