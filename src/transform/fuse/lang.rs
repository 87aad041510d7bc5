//! The e-graph language of the `fuse` pass and its analysis.
//!
//! An e-node is an ONNX op over child e-classes, a constant of the region, or a
//! leaf: a value from outside the region (a graph input, a large initializer, the
//! output of a node the region does not take in). Attributes are kept as one
//! canonical text (`axis=-1;epsilon=1e-5`), interned, so that two nodes with the same
//! op, attributes and children are the same e-node.
//!
//! The analysis ([`Region`]) carries each e-class's element type and symbolic shape
//! ([`Info`]), and the constant's value for constant e-classes. Shapes of new nodes
//! are computed for the op families the rules produce (elementwise with
//! broadcasting, reductions, normalizations); otherwise they come from the e-class
//! the new node joins.

use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::types::{Dim, DimValue};
use egg::{DidMerge, Id, Language, Symbol};
use std::collections::HashMap;
use std::sync::Arc;

/// An f64 compared and hashed by its bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Num(u64);

impl Num {
    pub fn new(v: f64) -> Num {
        Num(v.to_bits())
    }
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// The `id` of a constant in a pattern: it matches any constant whose elements all
/// equal the pattern's `splat` value (within a relative 1e-5, f32 precision).
pub const PATTERN_CONST: u32 = u32::MAX;

/// The attribute text of a pattern op that matches any attributes.
pub const ANY_ATTRS: &str = "*";

/// One e-node.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ONode {
    /// A constant of the region (index into [`Region::consts`]); `splat` is the
    /// value of every element when they are all equal.
    Const { id: u32, splat: Option<Num> },
    /// A value from outside the region, by name; the empty name is an absent
    /// optional input.
    Leaf(Symbol),
    /// An op. `attrs` is canonical attribute text; in patterns it may be
    /// [`ANY_ATTRS`] or `~` followed by the attributes that must be present.
    Op {
        op: Symbol,
        domain: Symbol,
        attrs: Symbol,
        children: Vec<Id>,
    },
}

impl ONode {
    pub fn op(op: &str, domain: &str, attrs: Symbol, children: Vec<Id>) -> ONode {
        ONode::Op {
            op: Symbol::from(op),
            domain: Symbol::from(domain),
            attrs,
            children,
        }
    }
    /// The op type, for op nodes.
    pub fn op_name(&self) -> Option<&str> {
        match self {
            ONode::Op { op, .. } => Some(op.as_str()),
            _ => None,
        }
    }
}

/// Relative equality at f32 precision.
pub fn approx_eq(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-5 * a.abs().max(b.abs())
}

fn attrs_match(pattern: Symbol, node: Symbol) -> bool {
    if pattern == node || pattern.as_str() == ANY_ATTRS {
        return true;
    }
    let Some(spec) = pattern.as_str().strip_prefix('~') else {
        return false;
    };
    let have: Vec<(&str, &str)> = split_attrs(node.as_str()).collect();
    split_attrs(spec).all(|(k, v)| {
        have.iter().any(|(hk, hv)| {
            *hk == k
                && (*hv == v
                    || matches!((hv.parse::<f64>(), v.parse::<f64>()), (Ok(a), Ok(b)) if approx_eq(a, b)))
        })
    })
}

fn split_attrs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.split(';')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.split_once('='))
}

impl Language for ONode {
    type Discriminant = (u8, Symbol);

    fn discriminant(&self) -> (u8, Symbol) {
        match self {
            ONode::Const { .. } => (0, Symbol::from("")),
            ONode::Leaf(_) => (1, Symbol::from("")),
            ONode::Op { op, .. } => (2, *op),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (ONode::Const { id: a, splat: sa }, ONode::Const { id: b, splat: sb }) => {
                if *a == PATTERN_CONST {
                    matches!((sa, sb), (Some(x), Some(y)) if approx_eq(x.get(), y.get()))
                } else {
                    a == b
                }
            }
            (ONode::Leaf(a), ONode::Leaf(b)) => a == b,
            (
                ONode::Op {
                    op: o1,
                    domain: d1,
                    attrs: a1,
                    children: c1,
                },
                ONode::Op {
                    op: o2,
                    domain: d2,
                    attrs: a2,
                    children: c2,
                },
            ) => o1 == o2 && d1 == d2 && c1.len() == c2.len() && attrs_match(*a1, *a2),
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            ONode::Op { children, .. } => children,
            _ => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            ONode::Op { children, .. } => children,
            _ => &mut [],
        }
    }
}

impl std::fmt::Display for ONode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ONode::Const { id, splat } => match splat {
                Some(v) => write!(f, "{}", v.get()),
                None => write!(f, "const{id}"),
            },
            ONode::Leaf(s) => write!(f, "%{s}"),
            ONode::Op {
                op, domain, attrs, ..
            } => {
                if !domain.as_str().is_empty() {
                    write!(f, "{domain}::")?;
                }
                write!(f, "{op}")?;
                if !attrs.as_str().is_empty() {
                    write!(f, "{{{attrs}}}")?;
                }
                Ok(())
            }
        }
    }
}

/// What the analysis knows about an e-class.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Info {
    pub dtype: Option<DType>,
    /// Dims; `Unknown` dims may be refined when e-classes merge.
    pub shape: Option<Vec<Dim>>,
    /// The value of a constant e-class.
    pub value: Option<Arc<TensorValue>>,
    /// The elements of a 1-D integer tensor that holds a shape, as dims
    /// (`Shape(x)` gives `x`'s dims, symbolic ones included), followed through
    /// Cast, Slice, Gather and Concat.
    pub dims_value: Option<Vec<Dim>>,
}

/// The analysis: region tables plus per-class [`Info`].
#[derive(Default)]
pub struct Region {
    /// Constants by id.
    pub consts: Vec<Arc<TensorValue>>,
    pub const_index: HashMap<(DType, Vec<usize>, Vec<u8>), u32>,
    /// Attribute sets by their canonical text.
    pub attr_sets: HashMap<Symbol, Vec<Attr>>,
    /// Types of leaves.
    pub leaf_info: HashMap<Symbol, Info>,
    /// The default domain's opset of the model.
    pub opset: i64,
}

impl Region {
    /// Interns a constant; returns its e-node.
    pub fn intern_const(&mut self, t: TensorValue) -> ONode {
        let key = (t.dtype(), t.shape().to_vec(), const_bytes(&t));
        let splat = splat_of(&t).map(Num::new);
        let id = match self.const_index.get(&key) {
            Some(&id) => id,
            None => {
                let id = self.consts.len() as u32;
                self.consts.push(Arc::new(t));
                self.const_index.insert(key, id);
                id
            }
        };
        ONode::Const { id, splat }
    }

    /// Interns an attribute set; returns its canonical text.
    pub fn intern_attrs(&mut self, attrs: Vec<Attr>) -> Symbol {
        let mut attrs = attrs;
        attrs.sort_by(|a, b| a.name.cmp(&b.name));
        let text = canonical_attrs(&attrs);
        let sym = Symbol::from(text);
        self.attr_sets.entry(sym).or_insert(attrs);
        sym
    }
}

fn const_bytes(t: &TensorValue) -> Vec<u8> {
    match t.to_f64_vec() {
        Some(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        None => format!("{t:?}").into_bytes(),
    }
}

/// The value of every element when they are all equal (and there is at least one).
pub fn splat_of(t: &TensorValue) -> Option<f64> {
    let v = t.to_f64_vec()?;
    let first = *v.first()?;
    v.iter()
        .all(|x| x.to_bits() == first.to_bits())
        .then_some(first)
}

/// Canonical text of attributes that convert (ints, floats, strings and lists of
/// them); `None` when one does not.
pub fn convertible_attrs(attrs: &[Attr]) -> bool {
    attrs.iter().all(|a| {
        a.ref_attr_name.is_none()
            && matches!(
                a.value,
                AttrValue::Int(_)
                    | AttrValue::Float(_)
                    | AttrValue::String(_)
                    | AttrValue::Ints(_)
                    | AttrValue::Floats(_)
                    | AttrValue::Strings(_)
            )
    })
}

/// `name=value` pairs sorted by name, joined by `;`.
pub fn canonical_attrs(attrs: &[Attr]) -> String {
    let mut items: Vec<String> = attrs
        .iter()
        .map(|a| format!("{}={}", a.name, attr_value_text(&a.value)))
        .collect();
    items.sort();
    items.join(";")
}

pub fn attr_value_text(v: &AttrValue) -> String {
    let q = |b: &[u8]| crate::ir::text::quote(b);
    match v {
        AttrValue::Int(i) => i.to_string(),
        AttrValue::Float(f) => float_text(*f),
        AttrValue::String(s) => q(s),
        AttrValue::Ints(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
        AttrValue::Floats(v) => format!(
            "[{}]",
            v.iter()
                .map(|x| float_text(*x))
                .collect::<Vec<_>>()
                .join(",")
        ),
        AttrValue::Strings(v) => {
            format!("[{}]", v.iter().map(|x| q(x)).collect::<Vec<_>>().join(","))
        }
        other => format!("{other:?}"),
    }
}

/// A float that always reads back as a float (`1.0`, not `1`).
fn float_text(f: f32) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'n', 'i']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// Multidirectional broadcasting of symbolic shapes; `None` when unknown or
/// incompatible.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = (i + a.len()).checked_sub(n).map(|j| &a[j]);
        let db = (i + b.len()).checked_sub(n).map(|j| &b[j]);
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) => match (&x.value, &y.value) {
                (DimValue::Fixed(1), _) => y.clone(),
                (_, DimValue::Fixed(1)) => x.clone(),
                (p, q) if p == q && *p != DimValue::Unknown => x.clone(),
                _ => return None,
            },
            (None, None) => return None,
        });
    }
    Some(out)
}

/// Ops whose output has the shape and type of their first input.
const SAME_AS_FIRST: &[&str] = &[
    "Relu",
    "Sigmoid",
    "Tanh",
    "Exp",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Erf",
    "Softplus",
    "Softsign",
    "Elu",
    "Selu",
    "Celu",
    "LeakyRelu",
    "HardSigmoid",
    "HardSwish",
    "Mish",
    "Gelu",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "RMSNormalization",
    "Clip",
    "Identity",
    "Sin",
    "Cos",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "FastGelu",
];

/// Elementwise ops with broadcasting; comparisons give bool.
const BROADCASTING: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "PRelu",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
];

const REDUCE: &[&str] = &[
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ReduceL1",
    "ReduceLogSum",
];

/// Whether `op` is one of the reductions (axes as an input in the e-graph).
pub fn is_reduce(op: &str) -> bool {
    REDUCE.contains(&op)
}

fn attr_int(attrs: &[Attr], name: &str) -> Option<i64> {
    attrs.iter().find(|a| a.name == name)?.value.as_int()
}

/// Normalises an axis against a rank.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

impl egg::Analysis<ONode> for Region {
    type Data = Info;

    fn make(egraph: &mut egg::EGraph<ONode, Region>, enode: &ONode, _id: Id) -> Info {
        let r = &egraph.analysis;
        match enode {
            ONode::Const { id, .. } => {
                let v = r.consts[*id as usize].clone();
                let dims_value = (v.shape().len() <= 1 && !is_float_dtype(v.dtype()))
                    .then(|| v.to_i64_vec())
                    .flatten()
                    .map(|xs| xs.into_iter().map(Dim::fixed).collect());
                Info {
                    dtype: Some(v.dtype()),
                    shape: Some(v.shape().iter().map(|&d| Dim::fixed(d as i64)).collect()),
                    value: Some(v),
                    dims_value,
                }
            }
            ONode::Leaf(name) => r.leaf_info.get(name).cloned().unwrap_or_default(),
            ONode::Op {
                op,
                attrs,
                children,
                ..
            } => {
                let kid = |i: usize| children.get(i).map(|&c| &egraph[c].data);
                let op = op.as_str();
                let attr_list = r.attr_sets.get(attrs).map(|v| v.as_slice()).unwrap_or(&[]);
                if SAME_AS_FIRST.contains(&op) {
                    let k = kid(0).cloned().unwrap_or_default();
                    return Info {
                        value: None,
                        dims_value: None,
                        ..k
                    };
                }
                let kid_infos: Vec<&Info> = children.iter().map(|&c| &egraph[c].data).collect();
                if let Some(info) = shape_op_info(op, attr_list, r.opset, &kid_infos) {
                    return info;
                }
                if BROADCASTING.contains(&op) {
                    let first = if op == "Where" { 1 } else { 0 };
                    let dtype = match op {
                        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And"
                        | "Or" => Some(DType::Bool),
                        _ => kid(first).and_then(|k| k.dtype),
                    };
                    let mut shape = Some(vec![]);
                    for &c in children {
                        shape = match (&shape, &egraph[c].data.shape) {
                            (Some(s), Some(t)) => broadcast(s, t),
                            _ => None,
                        };
                    }
                    return Info {
                        dtype,
                        shape,
                        ..Info::default()
                    };
                }
                if is_reduce(op) {
                    let k = kid(0).cloned().unwrap_or_default();
                    let keep = attr_int(attr_list, "keepdims").unwrap_or(1) != 0;
                    let axes = kid(1)
                        .and_then(|a| a.value.as_ref())
                        .and_then(|v| v.to_i64_vec());
                    let shape = match (&k.shape, axes) {
                        (Some(s), Some(axes)) if !axes.is_empty() => {
                            let ax: Option<Vec<usize>> =
                                axes.iter().map(|&a| norm_axis(a, s.len())).collect();
                            ax.map(|ax| {
                                s.iter()
                                    .enumerate()
                                    .filter_map(|(i, d)| match (ax.contains(&i), keep) {
                                        (false, _) => Some(d.clone()),
                                        (true, true) => Some(Dim::fixed(1)),
                                        (true, false) => None,
                                    })
                                    .collect()
                            })
                        }
                        _ => None,
                    };
                    return Info {
                        dtype: k.dtype,
                        shape,
                        ..Info::default()
                    };
                }
                Info::default()
            }
        }
    }

    fn merge(&mut self, a: &mut Info, b: Info) -> DidMerge {
        let mut changed_a = false;
        let mut changed_b = false;
        if a.dtype.is_none() && b.dtype.is_some() {
            a.dtype = b.dtype;
            changed_a = true;
        } else if a.dtype.is_some() && b.dtype.is_none() {
            changed_b = true;
        }
        match (&mut a.shape, b.shape) {
            (None, Some(s)) => {
                a.shape = Some(s);
                changed_a = true;
            }
            (Some(_), None) => changed_b = true,
            (Some(sa), Some(sb)) if sa.len() == sb.len() => {
                for (x, y) in sa.iter_mut().zip(sb) {
                    match (&x.value, &y.value) {
                        (DimValue::Unknown, v) if *v != DimValue::Unknown => {
                            *x = y;
                            changed_a = true;
                        }
                        (v, DimValue::Unknown) if *v != DimValue::Unknown => changed_b = true,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if a.dims_value.is_none() && b.dims_value.is_some() {
            a.dims_value = b.dims_value;
            changed_a = true;
        } else if a.dims_value.is_some() && b.dims_value.is_none() {
            changed_b = true;
        }
        if a.value.is_none() && b.value.is_some() {
            a.value = b.value;
            changed_a = true;
        } else if a.value.is_some() && b.value.is_none() {
            changed_b = true;
        }
        DidMerge(changed_a, changed_b)
    }
}

fn is_float_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

fn attr_ints(attrs: &[Attr], name: &str) -> Option<Vec<i64>> {
    match &attrs.iter().find(|a| a.name == name)?.value {
        AttrValue::Ints(v) => Some(v.clone()),
        _ => None,
    }
}

/// Shapes of the ops that move shapes around (Shape, Cast, Slice, Gather, Concat,
/// Expand, Reshape, MatMul, Transpose), with the dims a shape tensor holds
/// ([`crate::ops::shape_values`]). This is what lets conditions see
/// `[batch,512,256]` through an exporter's `Expand(x, Concat(Slice(Shape(input)), ...))`.
fn shape_op_info(op: &str, attrs: &[Attr], opset: i64, kids: &[&Info]) -> Option<Info> {
    let shape_of = |i: usize| kids.get(i).and_then(|k| k.shape.clone());
    let shapes: Vec<Option<Vec<Dim>>> = kids.iter().map(|k| k.shape.clone()).collect();
    let values: Vec<Option<Vec<Dim>>> = kids.iter().map(|k| k.dims_value.clone()).collect();
    let dims_value = crate::ops::shape_values::propagate(op, attrs, opset, &shapes, &values);
    let first = kids.first().copied().cloned().unwrap_or_default();
    let shape = match op {
        "Shape" | "Concat" | "Slice" | "Gather" | "Unsqueeze" | "Squeeze"
            if dims_value.is_some() =>
        {
            let n = dims_value.as_ref().map(|d| d.len() as i64).unwrap_or(0);
            let scalar_index = op == "Gather"
                && kids
                    .get(1)
                    .and_then(|k| k.shape.as_ref())
                    .is_some_and(|s| s.is_empty());
            let squeezed = op == "Squeeze" && first.shape.as_ref().is_some_and(|s| s.len() == 1);
            if scalar_index || squeezed {
                Some(vec![])
            } else {
                Some(vec![Dim::fixed(n)])
            }
        }
        "Cast" => first.shape.clone(),
        "Expand" => first
            .shape
            .as_ref()
            .zip(values.get(1).cloned().flatten())
            .and_then(|(s, t)| broadcast(s, &t)),
        "Reshape" => first
            .shape
            .as_ref()
            .zip(values.get(1).cloned().flatten())
            .and_then(|(s, t)| crate::ops::shape_values::reshape_dims(s, &t)),
        "MatMul" => {
            let (a, b) = (shape_of(0)?, shape_of(1)?);
            if a.len() < 2 || b.len() < 2 {
                return None;
            }
            let mut out = broadcast(&a[..a.len() - 2], &b[..b.len() - 2])?;
            out.push(a[a.len() - 2].clone());
            out.push(b[b.len() - 1].clone());
            Some(out)
        }
        "Transpose" => {
            let s = shape_of(0)?;
            let perm =
                attr_ints(attrs, "perm").unwrap_or_else(|| (0..s.len() as i64).rev().collect());
            perm.iter().map(|&p| s.get(p as usize).cloned()).collect()
        }
        _ => return None,
    };
    let dtype = match op {
        "Shape" => Some(DType::I64),
        "Cast" => attr_int(attrs, "to").map(|c| DType::from_onnx(c as i32)),
        _ => first.dtype,
    };
    Some(Info {
        dtype,
        shape,
        value: None,
        dims_value,
    })
}

/// The e-graph of a region.
pub type FuseGraph = egg::EGraph<ONode, Region>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_attrs_match_subsets_and_numbers() {
        let node = Symbol::from("alpha=0.16666667;beta=0.5");
        assert!(attrs_match(Symbol::from("*"), node));
        assert!(attrs_match(Symbol::from("~alpha=0.1666666667"), node));
        assert!(!attrs_match(Symbol::from("~alpha=0.2"), node));
        assert!(!attrs_match(Symbol::from("~gamma=1"), node));
        assert!(attrs_match(node, node));
    }

    #[test]
    fn broadcast_keeps_symbolic_dims() {
        let b = Dim::param("b");
        let s = broadcast(&[b.clone(), Dim::fixed(1)], &[Dim::fixed(4)]).unwrap();
        assert_eq!(s, vec![b.clone(), Dim::fixed(4)]);
        assert!(broadcast(&[Dim::unknown()], &[Dim::fixed(3)]).is_none());
    }
}
