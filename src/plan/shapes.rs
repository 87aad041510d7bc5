//! Concrete shapes: the element type and shape of every tensor of the main graph
//! for given input shapes.

use crate::codegen::spec::TensorDesc;
use crate::interp::value::TensorValue;
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
    Ok(concrete_folded(model, inputs)?.0)
}

/// Concrete shapes, and the values folding computed (see [`concrete_folded`]).
pub type Concrete = (HashMap<ValueId, TensorDesc>, HashMap<ValueId, TensorValue>);

/// [`concrete`], and the values folding computed (by value id of `model`): the
/// outputs of the nodes that no longer depend on the input data, which a runtime
/// need not run.
pub fn concrete_folded(
    model: &Model,
    inputs: &HashMap<String, Vec<usize>>,
) -> Result<Concrete, ShapeError> {
    let mut m = model.clone();
    fix_inputs(&mut m, inputs)?;
    let folded = super::fold::fold(&mut m);
    // Values an inlined `If` branch added to the copy are not `model`'s.
    let n = model.graph.value_ids().count();
    let mut d = descs(&m.graph);
    d.retain(|v, _| (v.0 as usize) < n);
    let mut values = folded.values;
    values.retain(|v, _| (v.0 as usize) < n);
    Ok((d, values))
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

/// What an enclosing graph knows of a value a subgraph reads: its concrete
/// shape, and its value when it is a constant.
pub(crate) type OuterValue = (TensorDesc, Option<TensorValue>);

/// Concrete shapes (and folded values) of `graph`, a subgraph of `header`'s
/// model (an `If` branch, a fused body), given what the enclosing graph knows
/// of the values it reads from outside (`outside`: value of `graph` → its
/// shape and constant value). Returns an error naming an outside value without
/// a concrete shape.
pub(crate) fn subgraph(
    header: &Model,
    graph: &Graph,
    outside: &[(ValueId, Option<OuterValue>)],
) -> Result<Concrete, String> {
    let mut m = Model {
        graph: graph.clone(),
        ..header.clone()
    };
    let mut shapes = HashMap::new();
    for (v, known) in outside {
        let v = *v;
        let (d, value) = known
            .clone()
            .ok_or_else(|| format!("'{}' has no concrete shape", graph.value(v).name))?;
        let val = m.graph.value_mut(v);
        if let Some(t) = value {
            val.def = ValueDef::Const;
            val.init = Some(Initializer::Dense(t.to_tensor(&val.name)));
            m.graph.inputs.retain(|&i| i != v);
            if !m.graph.initializers.contains(&v) {
                m.graph.initializers.push(v);
            }
            continue;
        }
        val.def = ValueDef::Input;
        val.init = None;
        val.ty = Some(Type::tensor(
            d.dtype,
            Shape::from_dims(d.shape.iter().map(|&s| Dim::fixed(s as i64)).collect()),
        ));
        shapes.insert(val.name.clone(), d.shape.clone());
        if !m.graph.inputs.contains(&v) {
            m.graph.inputs.push(v);
        }
    }
    concrete_folded(&m, &shapes).map_err(|e| e.to_string())
}

/// The output shapes of `If` node `n` of `g` (the folded copy of `header`'s
/// model, whose known shapes are `descs`), from its branches: those of the
/// branches whose output shapes can all be inferred, when they agree. A branch
/// whose shapes cannot be inferred for these inputs is left out: silero-vad's
/// 8 kHz branch is invalid for a 16 kHz frame (onnxruntime fails on it too),
/// and the GPU session fails if such a branch is taken (see
/// `runtime::program`).
pub(crate) fn if_outputs(
    header: &Model,
    g: &Graph,
    n: crate::ir::graph::NodeId,
    descs: &HashMap<ValueId, TensorDesc>,
) -> Vec<Option<TensorDesc>> {
    let node = g.node(n);
    let mut per_branch = vec![];
    for name in ["then_branch", "else_branch"] {
        let Some(b) = node
            .attr(name)
            .and_then(|a| a.value.graphs().into_iter().next())
        else {
            return vec![];
        };
        let outside: Vec<(ValueId, Option<OuterValue>)> = b
            .value_ids()
            .filter(|&v| b.value(v).def == ValueDef::Outer)
            .map(|v| {
                let known = g.find_value(&b.value(v).name).and_then(|p| {
                    let d = descs.get(&p)?.clone();
                    let value = match (&g.value(p).def, &g.value(p).init) {
                        (ValueDef::Const, Some(Initializer::Dense(t))) => {
                            TensorValue::from_tensor(t).ok()
                        }
                        _ => None,
                    };
                    Some((d, value))
                });
                (v, known)
            })
            .collect();
        if let Ok((d, _)) = subgraph(header, b, &outside) {
            let outs: Option<Vec<TensorDesc>> =
                b.outputs.iter().map(|o| d.get(o).cloned()).collect();
            per_branch.extend(outs.map(|o| o.into_iter().map(Some).collect::<Vec<_>>()));
        }
    }
    let Some(first) = per_branch.first() else {
        return vec![];
    };
    (0..node.outputs.len())
        .map(|j| {
            let d = first.get(j).cloned().flatten()?;
            per_branch
                .iter()
                .all(|b| b.get(j).cloned().flatten().as_ref() == Some(&d))
                .then_some(d)
        })
        .collect()
}
