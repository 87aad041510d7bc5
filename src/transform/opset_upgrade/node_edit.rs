//! The node being converted by the opset upgrade and the edits its conversions
//! share: reading attributes (refusing references to function attributes, which
//! cannot become inputs), element types and shapes (declared, else inferred on a
//! typed copy of the model), adding constants (initializers, or Constant nodes
//! inside function bodies) and nodes in the target opset's form.
//!
//! ```text
//! let c = e.const_i64s("axes", &[1]);   // a fresh constant named after the node's output
//! e.set_input(1, Some(c));
//! e.drop_attr("axes");
//! ```

use super::convert::Refusal;
use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Node, NodeId, ValueId};
use crate::pass::edit::{self, NameGen};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Refused(why.into()))
}

/// One node being converted, with what the conversions need around it.
pub(super) struct NodeEdit<'a> {
    pub g: &'a mut Graph,
    /// The same graph after shape inference (value ids match), for types the
    /// graph does not declare.
    pub twin: Option<&'a Graph>,
    pub twin_values: usize,
    pub id: NodeId,
    /// The node's op before the upgrade (an Upsample renamed to Resize keeps
    /// Upsample's guarantee that every scale is at least 1).
    pub origin: String,
    pub names: &'a mut NameGen,
    pub target: i64,
    /// Emit constants as Constant nodes (function bodies, IR < 4) rather than
    /// initializers.
    pub const_nodes: bool,
    /// Use counts of the graph's values (node inputs, graph outputs, subgraph reads).
    pub uses: &'a HashMap<ValueId, usize>,
    /// Set when an output slot was dropped (value_info needs tidying).
    pub dropped_outputs: bool,
}

impl NodeEdit<'_> {
    pub(super) fn node(&self) -> &Node {
        self.g.node(self.id)
    }
    pub(super) fn node_mut(&mut self) -> &mut Node {
        self.g.node_mut(self.id)
    }
    pub(super) fn input(&self, i: usize) -> Option<ValueId> {
        self.node().inputs.get(i).copied().flatten()
    }
    pub(super) fn set_input(&mut self, i: usize, v: Option<ValueId>) {
        let ins = &mut self.node_mut().inputs;
        if ins.len() <= i {
            ins.resize(i + 1, None);
        }
        ins[i] = v;
    }
    /// A base for new value names: the node's first output.
    pub(super) fn base(&self, what: &str) -> String {
        let stem = self
            .node()
            .outputs
            .iter()
            .flatten()
            .next()
            .map(|&v| self.g.value(v).name.clone())
            .unwrap_or_else(|| self.node().op_type.to_lowercase());
        format!("{stem}_{what}")
    }

    pub(super) fn attr(&self, name: &str) -> Option<&Attr> {
        self.node().attr(name)
    }
    pub(super) fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    /// Removes an attribute that no longer exists; true if it was there.
    pub(super) fn drop_attr(&mut self, name: &str) -> bool {
        let attrs = &mut self.node_mut().attrs;
        let before = attrs.len();
        attrs.retain(|a| a.name != name);
        attrs.len() != before
    }
    pub(super) fn set_attr(&mut self, name: &str, value: AttrValue) {
        let attrs = &mut self.node_mut().attrs;
        match attrs.iter_mut().find(|a| a.name == name) {
            Some(a) => {
                a.value = value;
                a.ref_attr_name = None;
            }
            None => attrs.push(Attr::new(name, value)),
        }
    }
    /// The attribute's value when it is a literal (not a reference to a function
    /// attribute, which a conversion cannot read).
    pub(super) fn literal(&self, name: &str) -> Result<Option<&AttrValue>, Refusal> {
        match self.attr(name) {
            None => Ok(None),
            Some(a) => match &a.ref_attr_name {
                Some(r) => refuse(format!(
                    "attribute '{name}' refers to the function attribute '{r}'"
                )),
                None => Ok(Some(&a.value)),
            },
        }
    }
    pub(super) fn int_attr(&self, name: &str) -> Result<Option<i64>, Refusal> {
        match self.literal(name)? {
            None => Ok(None),
            Some(AttrValue::Int(i)) => Ok(Some(*i)),
            Some(v) => refuse(kind_error(name, v, "int")),
        }
    }
    pub(super) fn float_attr(&self, name: &str) -> Result<Option<f32>, Refusal> {
        match self.literal(name)? {
            None => Ok(None),
            Some(AttrValue::Float(f)) => Ok(Some(*f)),
            Some(AttrValue::Int(i)) => Ok(Some(*i as f32)),
            Some(v) => refuse(kind_error(name, v, "float")),
        }
    }
    pub(super) fn ints_attr(&self, name: &str) -> Result<Option<Vec<i64>>, Refusal> {
        match self.literal(name)? {
            None => Ok(None),
            Some(AttrValue::Ints(v)) => Ok(Some(v.clone())),
            Some(v) => refuse(kind_error(name, v, "ints")),
        }
    }
    pub(super) fn floats_attr(&self, name: &str) -> Result<Option<Vec<f32>>, Refusal> {
        match self.literal(name)? {
            None => Ok(None),
            Some(AttrValue::Floats(v)) => Ok(Some(v.clone())),
            Some(v) => refuse(kind_error(name, v, "floats")),
        }
    }
    pub(super) fn str_attr(&self, name: &str) -> Result<Option<String>, Refusal> {
        match self.literal(name)? {
            None => Ok(None),
            Some(AttrValue::String(s)) => Ok(Some(String::from_utf8_lossy(s).into_owned())),
            Some(v) => refuse(kind_error(name, v, "string")),
        }
    }

    fn declared_type(&self, v: ValueId) -> Option<&crate::ir::types::Type> {
        self.g.value(v).ty.as_ref().or_else(|| {
            self.twin
                .filter(|_| (v.0 as usize) < self.twin_values)
                .and_then(|t| t.value(v).ty.as_ref())
        })
    }
    pub(super) fn dtype(&self, v: ValueId) -> Option<DType> {
        if let Some((d, _)) = self.declared_type(v).and_then(|t| t.as_tensor()) {
            return Some(d);
        }
        edit::const_value(self.g, v).map(|t| t.dtype())
    }
    /// Dimensions (None where not a fixed number), when the rank is known.
    pub(super) fn dims(&self, v: ValueId) -> Option<Vec<Option<i64>>> {
        if let Some((_, Some(s))) = self.declared_type(v).and_then(|t| t.as_tensor()) {
            return Some(s.dims.iter().map(|d| d.as_fixed()).collect());
        }
        edit::const_value(self.g, v).map(|t| t.shape().iter().map(|&d| Some(d as i64)).collect())
    }
    pub(super) fn rank(&self, v: ValueId) -> Option<usize> {
        self.dims(v).map(|d| d.len())
    }
    pub(super) fn is_used(&self, v: ValueId) -> bool {
        self.uses.get(&v).copied().unwrap_or(0) > 0
    }

    /// Adds a constant (an initializer, or a Constant node where initializers are
    /// not allowed) named after the node's output.
    pub(super) fn add_const(&mut self, what: &str, t: TensorValue) -> ValueId {
        let base = self.base(what);
        if !self.const_nodes {
            return edit::add_const_value(self.g, self.names, &base, &t);
        }
        let name = self.names.fresh(&base);
        let tensor = t.to_tensor(&name);
        let attrs = vec![Attr::new("value", AttrValue::Tensor(tensor))];
        let (_, outs) = self.g.add_node("Constant", "", vec![], &[&name], attrs);
        outs[0]
    }
    pub(super) fn const_i64s(&mut self, what: &str, v: &[i64]) -> ValueId {
        self.add_const(what, TensorValue::from_i64(&[v.len()], v.to_vec()))
    }
    pub(super) fn add_node(
        &mut self,
        op: &str,
        inputs: Vec<Option<ValueId>>,
        attrs: Vec<Attr>,
        what: &str,
    ) -> ValueId {
        let base = self.base(what);
        edit::add_node1(self.g, self.names, op, inputs, attrs, &base).1
    }
    /// `Unsqueeze(x, axes)` in the target opset's form.
    pub(super) fn unsqueeze(&mut self, x: ValueId, axes: &[i64]) -> ValueId {
        if self.target >= 13 {
            let a = self.const_i64s("unsqueeze_axes", axes);
            self.add_node("Unsqueeze", vec![Some(x), Some(a)], vec![], "unsqueezed")
        } else {
            let attrs = vec![Attr::new("axes", AttrValue::Ints(axes.to_vec()))];
            self.add_node("Unsqueeze", vec![Some(x)], attrs, "unsqueezed")
        }
    }
    /// Moves an ints attribute to input `slot` as an int64 tensor; true if it was there.
    pub(super) fn ints_to_input(&mut self, name: &str, slot: usize) -> Result<bool, Refusal> {
        let Some(v) = self.ints_attr(name)? else {
            return Ok(false);
        };
        let c = self.const_i64s(name, &v);
        self.set_input(slot, Some(c));
        self.drop_attr(name);
        Ok(true)
    }
}

fn kind_error(name: &str, v: &AttrValue, want: &str) -> String {
    format!("attribute '{name}' is {}, not {want}", v.kind_name())
}

/// A float tensor of `dtype` holding `values` (f32, f64, f16 or bf16).
pub(super) fn float_tensor(dtype: DType, shape: &[usize], values: &[f64]) -> Option<TensorValue> {
    let s = IxDyn(shape);
    Some(match dtype {
        DType::F32 => TensorValue::F32(
            ArrayD::from_shape_vec(s, values.iter().map(|&v| v as f32).collect()).ok()?,
        ),
        DType::F64 => TensorValue::F64(ArrayD::from_shape_vec(s, values.to_vec()).ok()?),
        DType::F16 => TensorValue::F16(
            ArrayD::from_shape_vec(s, values.iter().map(|&v| f16::from_f64(v)).collect()).ok()?,
        ),
        DType::BF16 => TensorValue::BF16(
            ArrayD::from_shape_vec(s, values.iter().map(|&v| bf16::from_f64(v)).collect()).ok()?,
        ),
        _ => return None,
    })
}
