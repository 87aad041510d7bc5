//! Sequence and optional ops: SequenceEmpty, SequenceConstruct, SequenceAt,
//! SequenceInsert, SequenceErase, SequenceLength, SplitToSequence,
//! ConcatFromSequence, Optional, OptionalHasElement, OptionalGetElement.
//!
//! Positions may be negative (counted from the end), as the spec allows; a position
//! out of range is an error naming it. An empty optional slot given to
//! OptionalHasElement counts as an empty optional.

use super::{norm_axis, one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use crate::ir::types::TypeKind;
use ndarray::{Axis, Slice};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("SequenceEmpty", sequence_empty);
    r.add("SequenceConstruct", sequence_construct);
    r.add("SequenceAt", sequence_at);
    r.add("SequenceInsert", sequence_insert);
    r.add("SequenceErase", sequence_erase);
    r.add("SequenceLength", sequence_length);
    r.add("SplitToSequence", split_to_sequence);
    r.add("ConcatFromSequence", concat_from_sequence);
    r.add("Optional", optional);
    r.add("OptionalHasElement", optional_has_element);
    r.add("OptionalGetElement", optional_get_element);
}

fn seq(inputs: &[Option<RtValue>], i: usize) -> Result<&[RtValue], OpError> {
    match inputs.get(i) {
        Some(Some(RtValue::Sequence(s))) => Ok(s),
        Some(Some(_)) => Err(OpError::Invalid(format!("input {i} must be a sequence"))),
        _ => Err(OpError::Invalid(format!(
            "input {i} (a sequence) is missing"
        ))),
    }
}

/// A position into a sequence of `len` items (`len` itself allowed when `end_ok`).
fn position(p: i64, len: usize, end_ok: bool) -> Result<usize, OpError> {
    let l = len as i64;
    let q = if p < 0 { p + l } else { p };
    let max = if end_ok { l } else { l - 1 };
    if q < 0 || q > max {
        return Err(OpError::Invalid(format!(
            "position {p} is out of range for a sequence of {len}"
        )));
    }
    Ok(q as usize)
}

fn scalar_pos(ctx: &OpCtx, inputs: &[Option<RtValue>], i: usize) -> Result<Option<i64>, OpError> {
    match ctx.opt_i64s(inputs, i)? {
        None => Ok(None),
        Some(v) if v.len() == 1 => Ok(Some(v[0])),
        Some(_) => Err(OpError::Invalid("the position must be a scalar".into())),
    }
}

fn sequence_empty(ctx: &OpCtx, _inputs: &[Option<RtValue>]) -> OpResult {
    let _ = DType::from_onnx(ctx.int("dtype", 1) as i32);
    Ok(vec![RtValue::Sequence(vec![])])
}

fn sequence_construct(_ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let items: Vec<RtValue> = inputs
        .iter()
        .enumerate()
        .map(|(i, v)| {
            v.clone()
                .ok_or_else(|| OpError::Invalid(format!("input {i} is missing")))
        })
        .collect::<Result<_, _>>()?;
    let dtypes: Vec<DType> = items
        .iter()
        .filter_map(|v| v.as_tensor().map(|t| t.dtype()))
        .collect();
    if dtypes.windows(2).any(|w| w[0] != w[1]) {
        return Err(OpError::Invalid(
            "all items of a sequence must have the same element type".into(),
        ));
    }
    Ok(vec![RtValue::Sequence(items)])
}

fn sequence_at(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let s = seq(inputs, 0)?;
    let p = scalar_pos(ctx, inputs, 1)?
        .ok_or_else(|| OpError::Invalid("position is missing".into()))?;
    Ok(vec![s[position(p, s.len(), false)?].clone()])
}

fn sequence_insert(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let mut s = seq(inputs, 0)?.to_vec();
    let t = inputs
        .get(1)
        .cloned()
        .flatten()
        .ok_or_else(|| OpError::Invalid("the tensor to insert is missing".into()))?;
    let at = match scalar_pos(ctx, inputs, 2)? {
        Some(p) => position(p, s.len(), true)?,
        None => s.len(),
    };
    s.insert(at, t);
    Ok(vec![RtValue::Sequence(s)])
}

fn sequence_erase(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let mut s = seq(inputs, 0)?.to_vec();
    if s.is_empty() {
        return Err(OpError::Invalid(
            "cannot erase from an empty sequence".into(),
        ));
    }
    let at = match scalar_pos(ctx, inputs, 1)? {
        Some(p) => position(p, s.len(), false)?,
        None => s.len() - 1,
    };
    s.remove(at);
    Ok(vec![RtValue::Sequence(s)])
}

fn sequence_length(_ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    one(TensorValue::from_i64(
        &[],
        vec![seq(inputs, 0)?.len() as i64],
    ))
}

fn split_to_sequence(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let rank = x.shape().len();
    let axis = norm_axis(ctx.int("axis", 0), rank)?;
    let dim = x.shape()[axis];
    let split = ctx.opt_input(inputs, 1)?;
    let (sizes, squeeze): (Vec<usize>, bool) = match split {
        None => (vec![1; dim], ctx.int("keepdims", 1) == 0),
        Some(t) => {
            let v = t
                .to_i64_vec()
                .ok_or_else(|| OpError::Invalid("split must be an integer tensor".into()))?;
            if t.shape().is_empty() {
                let chunk = *v.first().unwrap_or(&1);
                if chunk <= 0 {
                    return Err(OpError::Invalid(format!(
                        "split size {chunk} must be positive"
                    )));
                }
                let c = chunk as usize;
                let mut sizes = vec![c; dim / c];
                if dim % c != 0 {
                    sizes.push(dim % c);
                }
                (sizes, false)
            } else {
                if v.iter().any(|&s| s < 0) || v.iter().sum::<i64>() != dim as i64 {
                    return Err(OpError::Invalid(format!(
                        "split sizes {v:?} do not add up to {dim}"
                    )));
                }
                (v.into_iter().map(|s| s as usize).collect(), false)
            }
        }
    };
    let mut out = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for s in sizes {
        let part = crate::map_tensor_same!(x, a => {
            let v = a.slice_axis(Axis(axis), Slice::from(start..start + s)).to_owned();
            if squeeze { v.index_axis(Axis(axis), 0).to_owned() } else { v }
        });
        out.push(RtValue::Tensor(part));
        start += s;
    }
    Ok(vec![RtValue::Sequence(out)])
}

fn concat_from_sequence(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let s = seq(inputs, 0)?;
    let tensors: Vec<&TensorValue> = s
        .iter()
        .map(|v| {
            v.as_tensor()
                .ok_or_else(|| OpError::Invalid("sequence items must be tensors".into()))
        })
        .collect::<Result<_, _>>()?;
    let first = tensors
        .first()
        .ok_or_else(|| OpError::Invalid("cannot concatenate an empty sequence".into()))?;
    let new_axis = ctx.int("new_axis", 0) == 1;
    if !new_axis {
        return one(super::shape::concat_tensors(&tensors, ctx.int("axis", 0))?);
    }
    // With new_axis, the items are stacked along a new axis of size 1 each.
    let axis = norm_axis(ctx.int("axis", 0), first.shape().len() + 1)?;
    let expanded: Vec<TensorValue> = tensors
        .iter()
        .map(|t| crate::map_tensor_same!(t, a => a.clone().insert_axis(Axis(axis))))
        .collect();
    let refs: Vec<&TensorValue> = expanded.iter().collect();
    one(super::shape::concat_tensors(&refs, axis as i64)?)
}

fn optional(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    match inputs.first().cloned().flatten() {
        Some(v) => Ok(vec![RtValue::Optional(Some(Box::new(v)))]),
        None => {
            if let Some(crate::ir::attr::AttrValue::Type(t)) =
                ctx.node.attr("type").map(|a| &a.value)
            {
                if matches!(t.kind, TypeKind::Optional(_)) {
                    return Err(OpError::Invalid(
                        "the type of an empty Optional must not itself be optional".into(),
                    ));
                }
            }
            Ok(vec![RtValue::Optional(None)])
        }
    }
}

fn optional_has_element(_ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let has = match inputs.first() {
        Some(Some(RtValue::Optional(v))) => v.is_some(),
        Some(Some(_)) => true,
        _ => false,
    };
    one(TensorValue::Bool(ndarray::arr0(has).into_dyn()))
}

fn optional_get_element(_ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    match inputs.first() {
        Some(Some(RtValue::Optional(Some(v)))) => Ok(vec![(**v).clone()]),
        Some(Some(RtValue::Optional(None))) => {
            Err(OpError::Invalid("the optional is empty".into()))
        }
        Some(Some(v)) => Ok(vec![v.clone()]),
        _ => Err(OpError::Invalid("input 0 is missing".into())),
    }
}
