//! Concrete shapes: the element type and shape of every tensor of the main graph
//! for given input shapes.

use crate::codegen::spec::TensorDesc;
use crate::ir::graph::ValueId;
use crate::ir::model::Model;
use crate::ir::types::{Dim, Shape, Type};
use std::collections::HashMap;

/// A tensor whose shape cannot be known before running.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShapeError {
    #[error("input '{0}' is not given a shape")]
    MissingInput(String),
    #[error("input '{name}': shape {given:?} does not fit the declared {declared}")]
    Mismatch {
        name: String,
        given: Vec<usize>,
        declared: String,
    },
}

/// Fixes the graph inputs to `inputs` (name → shape; inputs with an initializer
/// default may be left out), runs shape inference on a copy, and returns every
/// value whose type became a tensor of concrete shape. Values missing from the
/// result have a data-dependent shape.
pub fn concrete(
    model: &Model,
    inputs: &HashMap<String, Vec<usize>>,
) -> Result<HashMap<ValueId, TensorDesc>, ShapeError> {
    let mut m = model.clone();
    let ids: Vec<ValueId> = m.graph.inputs.clone();
    for id in ids {
        let v = m.graph.value(id);
        let name = v.name.clone();
        let Some(shape) = inputs.get(&name) else {
            if v.init.is_some() {
                continue;
            }
            return Err(ShapeError::MissingInput(name));
        };
        let (dtype, declared) = match v.ty.as_ref().and_then(|t| t.as_tensor()) {
            Some((d, s)) => (d, s.cloned()),
            None => continue,
        };
        if let Some(decl) = &declared {
            let fits = decl.rank() == shape.len()
                && decl
                    .dims
                    .iter()
                    .zip(shape)
                    .all(|(d, &n)| d.as_fixed().is_none_or(|f| f == n as i64));
            if !fits {
                return Err(ShapeError::Mismatch {
                    name,
                    given: shape.clone(),
                    declared: decl.to_string(),
                });
            }
        }
        let dims = shape.iter().map(|&n| Dim::fixed(n as i64)).collect();
        m.graph.value_mut(id).ty = Some(Type::tensor(dtype, Shape::from_dims(dims)));
    }
    crate::ops::shape_infer::infer_shapes(&mut m);
    let mut out = HashMap::new();
    for id in m.graph.value_ids() {
        let v = m.graph.value(id);
        if let Some((dtype, Some(s))) = v.ty.as_ref().and_then(|t| t.as_tensor()) {
            let dims: Option<Vec<usize>> = s
                .dims
                .iter()
                .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
                .collect();
            if let Some(dims) = dims {
                out.insert(id, TensorDesc::new(dtype, &dims));
            }
        }
    }
    Ok(out)
}
