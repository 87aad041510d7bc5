//! Concrete shapes: the element type and shape of every tensor of the main graph
//! for given input shapes.

use crate::codegen::spec::TensorDesc;
use crate::ir::graph::{Graph, Initializer, ValueDef, ValueId};
use crate::ir::model::Model;
use crate::ir::types::{Dim, DimValue, Shape, Type};
use std::collections::HashMap;

/// A tensor whose shape cannot be known before running.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ShapeError {
    #[error("input '{0}' is not given a shape")]
    MissingInput(String),
    #[error("the model has no input named '{0}'")]
    UnknownInput(String),
    #[error("input '{0}' has no declared shape; give it one (--input-shape {0}=D1,D2,..)")]
    UnknownRank(String),
    #[error("input '{name}': shape {given:?} does not fit the declared {declared}")]
    Mismatch {
        name: String,
        given: Vec<usize>,
        declared: String,
    },
}

/// Fixes the graph inputs to `inputs` (name → shape; inputs with an initializer
/// default may be left out), folds what no longer depends on the input data (see
/// [`fold`](super::fold)) and runs shape inference on a copy, and returns every
/// value whose type became a tensor of concrete shape. Values missing from the
/// result have a data-dependent shape.
pub fn concrete(
    model: &Model,
    inputs: &HashMap<String, Vec<usize>>,
) -> Result<HashMap<ValueId, TensorDesc>, ShapeError> {
    let mut m = model.clone();
    fix_inputs(&mut m, inputs)?;
    super::fold::fold(&mut m);
    Ok(descs(&m.graph))
}

/// Gives the graph inputs of `m` the concrete shapes of `inputs`. An input with an
/// initializer default that is not given becomes a constant.
pub(crate) fn fix_inputs(
    m: &mut Model,
    inputs: &HashMap<String, Vec<usize>>,
) -> Result<(), ShapeError> {
    let ids: Vec<ValueId> = m.graph.inputs.clone();
    for id in ids {
        let v = m.graph.value(id);
        let name = v.name.clone();
        let Some(shape) = inputs.get(&name) else {
            if v.init.is_some() {
                m.graph.value_mut(id).def = ValueDef::Const;
                m.graph.inputs.retain(|&i| i != id);
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
                    .all(|(d, &n)| d.as_fixed().is_none_or(|f| f < 0 || f == n as i64));
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
    Ok(())
}

/// Every value of `g` whose type is a tensor of concrete shape.
pub(crate) fn descs(g: &Graph) -> HashMap<ValueId, TensorDesc> {
    let mut out = HashMap::new();
    for id in g.value_ids() {
        let v = g.value(id);
        if let (ValueDef::Const, Some(Initializer::Dense(t))) = (&v.def, &v.init) {
            let dims: Option<Vec<usize>> =
                t.dims.iter().map(|&d| usize::try_from(d).ok()).collect();
            if let Some(dims) = dims {
                out.insert(id, TensorDesc::new(t.dtype, &dims));
                continue;
            }
        }
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
    out
}

/// The shapes of the graph inputs (those without an initializer default) from
/// their declared types: a symbolic dimension takes its size from `dims` (by
/// name), or 1; `given` (name → dims) overrides whole inputs.
pub fn input_shapes(
    model: &Model,
    dims: &HashMap<String, usize>,
    given: &HashMap<String, Vec<usize>>,
) -> Result<HashMap<String, Vec<usize>>, ShapeError> {
    let g = &model.graph;
    for name in given.keys() {
        if !g.inputs.iter().any(|&v| &g.value(v).name == name) {
            return Err(ShapeError::UnknownInput(name.clone()));
        }
    }
    let mut out = HashMap::new();
    for &id in &g.inputs {
        let v = g.value(id);
        if let Some(s) = given.get(&v.name) {
            out.insert(v.name.clone(), s.clone());
            continue;
        }
        if v.init.is_some() {
            continue;
        }
        let Some((_, Some(shape))) = v.ty.as_ref().and_then(|t| t.as_tensor()) else {
            return Err(ShapeError::UnknownRank(v.name.clone()));
        };
        let sizes = shape
            .dims
            .iter()
            .map(|d| match d.as_fixed() {
                Some(n) => usize::try_from(n).unwrap_or(1),
                None => match &d.value {
                    DimValue::Param(name) => dims.get(name).copied().unwrap_or(1),
                    _ => 1,
                },
            })
            .collect();
        out.insert(v.name.clone(), sizes);
    }
    Ok(out)
}

/// Fills in the shapes of the node outputs of `g` (the folded copy of `model`)
/// that `descs` lacks by running `model` on the interpreter with zero inputs of
/// the given shapes; returns the values so filled. Nothing runs when every
/// shape is known; a model the interpreter cannot run fills nothing.
pub(crate) fn observe_missing(
    model: &Model,
    inputs: &HashMap<String, Vec<usize>>,
    g: &Graph,
    descs: &mut HashMap<ValueId, TensorDesc>,
) -> Vec<ValueId> {
    let missing: Vec<ValueId> = g
        .nodes()
        .flat_map(|(_, n)| n.outputs.iter().flatten().copied())
        .filter(|v| !descs.contains_key(v))
        .collect();
    if missing.is_empty() {
        return vec![];
    }
    let mut feeds = vec![];
    for &id in &model.graph.inputs {
        let v = model.graph.value(id);
        let (Some(shape), Some((dtype, _))) = (
            inputs.get(&v.name),
            v.ty.as_ref().and_then(|t| t.as_tensor()),
        ) else {
            continue;
        };
        match crate::interp::value::TensorValue::zeros(dtype, shape) {
            Ok(t) => feeds.push((v.name.clone(), crate::interp::value::RtValue::Tensor(t))),
            Err(_) => return vec![],
        }
    }
    let Ok((_, trace)) = crate::interp::Interpreter::run_traced(model, feeds) else {
        return vec![];
    };
    let mut observed = vec![];
    for v in missing {
        if let Some((dtype, shape)) = trace.get(&g.value(v).name) {
            descs.insert(v, TensorDesc::new(*dtype, shape));
            observed.push(v);
        }
    }
    observed.sort();
    observed
}
