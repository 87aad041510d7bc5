//! `noop`: removes nodes that pass their input through unchanged; their readers
//! read the input instead.
//!
//! What counts as a no-op (each checked from constants and known types only):
//! - Identity; Dropout in inference (before opset 12, or without a `training_mode`
//!   input, or with a constant false one) whose mask output nobody reads;
//! - Cast to the element type the input already has; CastLike to the same type;
//! - Reshape to the input's own shape: a constant target whose numbers match the
//!   known dims (`0` copies, one `-1` takes the rest), or input and output types
//!   both fully known and equal (symbolic dims by name); Expand by a constant shape
//!   every dim of which is 1 or the input's own dim; Flatten of a rank-2 input at
//!   axis 1; Squeeze/Unsqueeze whose known output type equals the input's;
//! - Transpose by the identity permutation; Pad by all-zero constant pads (any
//!   mode); Slice whose every sliced axis is taken whole with step 1; Concat of one
//!   input; Split into one output; Tile by all-ones repeats; Resize/Upsample with
//!   scales all 1 (or sizes equal to the known dims);
//! - Unsqueeze(Squeeze(x, a), a) and Squeeze(Unsqueeze(x, a), a) give `x`;
//! - Mul/Div by a constant 1 and Add/Sub of a constant 0, and Where with a constant
//!   all-true or all-false condition, when the constant operands do not broadcast
//!   the result to a bigger shape (each of their dims is 1 or the kept operand's).
//!
//! Left alone: a no-op whose output is a graph output and whose input is a graph
//! input, an initializer or another output (removing it would only put an Identity
//! back); anything whose shapes are not known well enough; ops of other domains.
//! The opset decides where parameters are: Squeeze/Unsqueeze axes and Split's
//! sizes are attributes before opset 13, Pad's pads before 11, Slice's before 10.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[batch,3]) -> (%y) {\n  %s = const i64[2] @s [-1, 3]\n  %a = Reshape(%x, %s)\n  %b = Identity(%a)\n  %y = Relu(%b)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("noop,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert!(modc::print_model(&m).contains("Relu(%x)"));
//! ```

use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Node, NodeId, ValueId};
use crate::ir::types::{Dim, DimValue};
use crate::pass::edit::{
    const_f64s, const_i64s, const_tensor, const_value, is_const, is_onnx, is_op,
    replace_needs_identity, replace_value, tidy_value_info, use_counts,
};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::HashMap;

pub struct Noop;

impl Pass for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let Ok(order) = g.topo_order() else {
            return Ok(false);
        };
        let mut uses = use_counts(g);
        let mut removed = 0;
        for n in order {
            if !g.contains_node(n) || !is_onnx(g.node(n)) {
                continue;
            }
            let node = g.node(n);
            let Some(out) = node.outputs.first().copied().flatten() else {
                continue;
            };
            // Other outputs (Dropout's mask) must be unread.
            if node.outputs[1..]
                .iter()
                .flatten()
                .any(|v| uses.get(v).copied().unwrap_or(0) > 0)
            {
                continue;
            }
            let Some(src) = noop_source(g, node, cx.opset) else {
                continue;
            };
            if src == out || replace_needs_identity(g, out, src) {
                continue;
            }
            let out_ty = g
                .outputs
                .contains(&out)
                .then(|| g.value(out).ty.clone())
                .flatten();
            replace_value(g, out, src);
            if let Some(t) = out_ty {
                // `src` took the graph output's place: it keeps the declared type.
                if g.outputs.contains(&src) {
                    g.value_mut(src).ty = Some(t);
                }
            }
            let moved = uses.remove(&out).unwrap_or(0);
            *uses.entry(src).or_default() += moved;
            remove_node_counted(g, &mut uses, n);
            removed += 1;
        }
        if removed > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += removed;
        Ok(removed > 0)
    }
}

/// Removes `n` and takes its reads off the use counts.
pub(super) fn remove_node_counted(g: &mut Graph, uses: &mut HashMap<ValueId, usize>, n: NodeId) {
    if let Some(node) = g.remove_node(n) {
        for v in node.inputs.iter().flatten() {
            if let Some(c) = uses.get_mut(v) {
                *c = c.saturating_sub(1);
            }
        }
    }
}

/// The value a no-op node's first output equals, when the node is a no-op.
fn noop_source(g: &Graph, node: &Node, opset: i64) -> Option<ValueId> {
    let x = input(node, 0)?;
    let out = node.outputs.first().copied().flatten()?;
    let yes = match node.op_type.as_str() {
        "Identity" => true,
        "Dropout" => dropout_is_inference(g, node, opset),
        "Cast" => {
            let to = node.attr("to")?.value.as_int()?;
            dtype_of(g, x)? == DType::from_onnx(i32::try_from(to).ok()?)
        }
        "CastLike" => dtype_of(g, x)? == dtype_of(g, input(node, 1)?)?,
        "Reshape" => reshape_keeps_shape(g, node, opset, x),
        "Expand" => expand_keeps_shape(g, node, x),
        "Flatten" => {
            let axis = int_attr(node, "axis", 1);
            rank_of(g, x) == Some(2) && (axis == 1 || axis == -1)
        }
        "Transpose" => match node.attr("perm") {
            Some(a) => a
                .value
                .as_ints()?
                .iter()
                .enumerate()
                .all(|(i, &p)| p == i as i64),
            None => rank_of(g, x)? <= 1,
        },
        "Pad" => {
            let name = if opset < 2 { "paddings" } else { "pads" };
            matches!(int_param(g, node, name, 1, 11, opset), Param::Known(p) if p.iter().all(|&v| v == 0))
        }
        "Slice" => slice_is_whole(g, node, opset, x),
        "Concat" => node.inputs.len() == 1,
        "Split" => node.outputs.len() == 1,
        "Tile" => {
            opset >= 6 && const_i64s(g, input(node, 1)?).is_some_and(|r| r.iter().all(|&v| v == 1))
        }
        "Resize" | "Upsample" => resize_is_identity(g, node, opset, x),
        "Unsqueeze" | "Squeeze" => {
            if let Some(x0) = squeeze_unsqueeze_pair(g, node, opset, x) {
                return Some(x0);
            }
            false
        }
        "Mul" | "Add" | "Sub" | "Div" => return arith_identity(g, node),
        "Where" => return where_const(g, node),
        _ => false,
    };
    if yes {
        return Some(x);
    }
    // Pure reshapes whose known output type is the input's.
    let reshapes = ["Reshape", "Expand", "Flatten", "Squeeze", "Unsqueeze"];
    (reshapes.contains(&node.op_type.as_str()) && same_known_type(g, x, out)).then_some(x)
}

/// Input `i` of a node, when present.
pub(super) fn input(n: &Node, i: usize) -> Option<ValueId> {
    n.inputs.get(i).copied().flatten()
}

/// An integer attribute, or `default`.
pub(super) fn int_attr(n: &Node, name: &str, default: i64) -> i64 {
    n.attr(name)
        .and_then(|a| a.value.as_int())
        .unwrap_or(default)
}

/// A list parameter that moved from an attribute to an input.
#[derive(Debug, PartialEq)]
pub(super) enum Param {
    /// Not given.
    Absent,
    Known(Vec<i64>),
    /// Given but not constant.
    Unknown,
}

/// The integer list `name`: an attribute before opset `input_from`, input `idx`
/// (a constant) from then on.
pub(super) fn int_param(
    g: &Graph,
    n: &Node,
    name: &str,
    idx: usize,
    input_from: i64,
    opset: i64,
) -> Param {
    if opset < input_from {
        match n.attr(name) {
            None => Param::Absent,
            Some(a) => match a.value.as_ints() {
                Some(v) if a.ref_attr_name.is_none() => Param::Known(v.to_vec()),
                _ => Param::Unknown,
            },
        }
    } else {
        match input(n, idx) {
            None => Param::Absent,
            Some(v) => match const_i64s(g, v) {
                Some(x) => Param::Known(x),
                None => Param::Unknown,
            },
        }
    }
}

/// The dims of a tensor value: a constant's own, else its declared type's.
pub(super) fn dims_of(g: &Graph, v: ValueId) -> Option<Vec<Dim>> {
    if let Some(t) = const_tensor(g, v) {
        return Some(t.dims.iter().map(|&d| Dim::fixed(d)).collect());
    }
    if let Some(ty) = &g.value(v).ty {
        if let Some((_, Some(s))) = ty.as_tensor() {
            return Some(s.dims.clone());
        }
    }
    let c = const_value(g, v)?;
    Some(c.shape().iter().map(|&d| Dim::fixed(d as i64)).collect())
}

/// The element type of a tensor value, when known.
pub(super) fn dtype_of(g: &Graph, v: ValueId) -> Option<DType> {
    if let Some(t) = const_tensor(g, v) {
        return Some(t.dtype);
    }
    if let Some(ty) = &g.value(v).ty {
        if let Some((d, _)) = ty.as_tensor() {
            return Some(d);
        }
    }
    const_value(g, v).map(|c| c.dtype())
}

pub(super) fn rank_of(g: &Graph, v: ValueId) -> Option<usize> {
    dims_of(g, v).map(|d| d.len())
}

/// Every dim as a number, when all are known.
pub(super) fn fixed_dims(d: &[Dim]) -> Option<Vec<i64>> {
    d.iter().map(Dim::as_fixed).collect()
}

/// Two dims known to be equal: the same number or the same symbolic name.
pub(super) fn same_dim(a: &Dim, b: &Dim) -> bool {
    match (&a.value, &b.value) {
        (DimValue::Fixed(x), DimValue::Fixed(y)) => x == y,
        (DimValue::Param(x), DimValue::Param(y)) => x == y,
        _ => false,
    }
}

/// Both values have known types with equal element types and equal shapes (every
/// dim a number or a name).
fn same_known_type(g: &Graph, a: ValueId, b: ValueId) -> bool {
    let (Some(da), Some(db)) = (dims_of(g, a), dims_of(g, b)) else {
        return false;
    };
    let types_agree = match (dtype_of(g, a), dtype_of(g, b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    };
    types_agree && da.len() == db.len() && da.iter().zip(&db).all(|(x, y)| same_dim(x, y))
}

/// Axes normalized against `rank` (needed only for negative ones), sorted; `None`
/// for duplicates or out-of-range axes.
pub(super) fn norm_axes(axes: &[i64], rank: Option<usize>) -> Option<Vec<usize>> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let n = if a < 0 { rank? as i64 + a } else { a };
        if n < 0 || rank.is_some_and(|r| n >= r as i64) {
            return None;
        }
        out.push(n as usize);
    }
    out.sort_unstable();
    let len = out.len();
    out.dedup();
    (out.len() == len).then_some(out)
}

/// The axes a Squeeze removes, normalized against its input's rank; computed from
/// the input's dims when not given (they must all be known then).
pub(super) fn squeeze_axes(
    g: &Graph,
    n: &Node,
    opset: i64,
    in_rank: Option<usize>,
) -> Option<Vec<usize>> {
    match int_param(g, n, "axes", 1, 13, opset) {
        Param::Known(a) => norm_axes(&a, in_rank),
        Param::Absent => {
            let d = fixed_dims(&dims_of(g, input(n, 0)?)?)?;
            Some((0..d.len()).filter(|&i| d[i] == 1).collect())
        }
        Param::Unknown => None,
    }
}

/// The axes an Unsqueeze inserts, normalized against its output's rank.
pub(super) fn unsqueeze_axes(
    g: &Graph,
    n: &Node,
    opset: i64,
    in_rank: Option<usize>,
) -> Option<Vec<usize>> {
    match int_param(g, n, "axes", 1, 13, opset) {
        Param::Known(a) => {
            let r = in_rank.map(|r| r + a.len());
            norm_axes(&a, r)
        }
        _ => None,
    }
}

fn dropout_is_inference(g: &Graph, node: &Node, opset: i64) -> bool {
    if opset < 12 {
        // Before opset 12 Dropout has no training switch (the interpreter and
        // runtimes treat it as inference).
        return true;
    }
    match input(node, 2) {
        None => true,
        Some(t) => const_i64s(g, t).is_some_and(|v| v.iter().all(|&b| b == 0)),
    }
}

/// Reshape to the shape the input already has.
fn reshape_keeps_shape(g: &Graph, node: &Node, opset: i64, x: ValueId) -> bool {
    let Param::Known(target) = int_param(g, node, "shape", 1, 5, opset) else {
        return false;
    };
    let Some(d) = dims_of(g, x) else {
        return false;
    };
    let allowzero = int_attr(node, "allowzero", 0) != 0;
    if target.len() != d.len() {
        return false;
    }
    let mut minus = 0;
    let mut zero = false;
    for (&t, dim) in target.iter().zip(&d) {
        match t {
            -1 => minus += 1,
            0 if !allowzero => zero |= dim.as_fixed() == Some(0),
            t if t >= 0 => {
                if dim.as_fixed() != Some(t) {
                    return false;
                }
                zero |= t == 0;
            }
            _ => return false,
        }
    }
    // With one -1 and every other dim equal, the -1 is the input's dim (unless
    // the tensor is empty, where -1 is ambiguous).
    minus == 0 || (minus == 1 && !zero)
}

/// Expand by a shape that broadcasts to the input's own shape.
fn expand_keeps_shape(g: &Graph, node: &Node, x: ValueId) -> bool {
    let (Some(s), Some(d)) = (input(node, 1).and_then(|s| const_i64s(g, s)), dims_of(g, x)) else {
        return false;
    };
    s.len() <= d.len()
        && s.iter()
            .rev()
            .zip(d.iter().rev())
            .all(|(&t, dim)| t == 1 || dim.as_fixed() == Some(t))
}

/// A Slice's parameters as (starts, ends, axes as given, steps), when constant.
pub(super) type SliceParams = (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>);

/// The constant parameters of a Slice (attributes before opset 10), with the
/// defaults filled in: axes `0..n`, steps 1.
pub(super) fn slice_params(g: &Graph, node: &Node, opset: i64) -> Option<SliceParams> {
    let get = |name: &str, idx: usize| int_param(g, node, name, idx, 10, opset);
    let (Param::Known(starts), Param::Known(ends)) = (get("starts", 1), get("ends", 2)) else {
        return None;
    };
    let axes = match get("axes", 3) {
        Param::Known(a) => a,
        Param::Absent => (0..starts.len() as i64).collect(),
        Param::Unknown => return None,
    };
    let steps = match if opset >= 10 {
        get("steps", 4)
    } else {
        Param::Absent
    } {
        Param::Known(s) => s,
        Param::Absent => vec![1; starts.len()],
        Param::Unknown => return None,
    };
    let n = starts.len();
    (ends.len() == n && axes.len() == n && steps.len() == n).then_some((starts, ends, axes, steps))
}

/// A Slice that takes every sliced axis whole, with step 1.
fn slice_is_whole(g: &Graph, node: &Node, opset: i64, x: ValueId) -> bool {
    let Some((starts, ends, axes, steps)) = slice_params(g, node, opset) else {
        return false;
    };
    let dims = dims_of(g, x);
    let rank = dims.as_ref().map(|d| d.len());
    if norm_axes(&axes, rank).is_none() {
        return false;
    }
    for k in 0..starts.len() {
        if steps[k] != 1 {
            return false;
        }
        let a = if axes[k] < 0 {
            rank.unwrap_or(0) as i64 + axes[k]
        } else {
            axes[k]
        };
        let dim = dims
            .as_ref()
            .and_then(|d| d.get(a as usize))
            .and_then(Dim::as_fixed);
        let (s, e) = (starts[k], ends[k]);
        let start_ok = s == 0 || (s < 0 && dim.is_some_and(|d| s.saturating_add(d) <= 0));
        let end_ok = e >= i32::MAX as i64 || dim.is_some_and(|d| e >= d);
        if !start_ok || !end_ok {
            return false;
        }
    }
    true
}

/// Resize/Upsample by scales of 1 (or to the input's own sizes).
fn resize_is_identity(g: &Graph, node: &Node, opset: i64, x: ValueId) -> bool {
    let mode = node
        .attr("coordinate_transformation_mode")
        .and_then(|a| a.value.as_str());
    if mode == Some(b"tf_crop_and_resize".as_slice()) {
        return false;
    }
    let ones = |v: &[f64]| !v.is_empty() && v.iter().all(|&s| s == 1.0);
    if node.op_type == "Upsample" {
        if opset < 9 {
            return node
                .attr("scales")
                .and_then(|a| match &a.value {
                    crate::ir::attr::AttrValue::Floats(f) => Some(f.clone()),
                    _ => None,
                })
                .is_some_and(|f| ones(&f.iter().map(|&v| v as f64).collect::<Vec<_>>()));
        }
        return input(node, 1)
            .and_then(|s| const_f64s(g, s))
            .is_some_and(|s| ones(&s));
    }
    let (scales_idx, sizes_idx) = if opset < 11 { (1, None) } else { (2, Some(3)) };
    let scales = match input(node, scales_idx) {
        Some(s) => match const_f64s(g, s) {
            Some(v) => v,
            None => return false,
        },
        None => vec![],
    };
    if !scales.is_empty() {
        return ones(&scales);
    }
    let Some(sizes) = sizes_idx
        .and_then(|i| input(node, i))
        .and_then(|s| const_i64s(g, s))
    else {
        return false;
    };
    let Some(d) = dims_of(g, x) else {
        return false;
    };
    let rank = d.len() as i64;
    let axes: Vec<i64> = match node.attr("axes").and_then(|a| a.value.as_ints()) {
        Some(a) => a
            .iter()
            .map(|&v| if v < 0 { v + rank } else { v })
            .collect(),
        None => (0..rank).collect(),
    };
    sizes.len() == axes.len()
        && axes.iter().zip(&sizes).all(|(&a, &s)| {
            usize::try_from(a)
                .ok()
                .and_then(|a| d.get(a))
                .and_then(Dim::as_fixed)
                == Some(s)
        })
}

/// Unsqueeze(Squeeze(x, a), a) or Squeeze(Unsqueeze(x, a), a): `x`.
fn squeeze_unsqueeze_pair(g: &Graph, node: &Node, opset: i64, x: ValueId) -> Option<ValueId> {
    let p = g.producer(x)?;
    let first = g.node(p);
    let x0 = input(first, 0)?;
    let r0 = rank_of(g, x0);
    if is_op(node, "Unsqueeze") && is_op(first, "Squeeze") {
        let a1 = squeeze_axes(g, first, opset, r0)?;
        let mid_rank = r0.map(|r| r - a1.len()).or_else(|| rank_of(g, x));
        let a2 = unsqueeze_axes(g, node, opset, mid_rank)?;
        return (a1 == a2).then_some(x0);
    }
    if is_op(node, "Squeeze") && is_op(first, "Unsqueeze") {
        let a1 = unsqueeze_axes(g, first, opset, r0)?;
        let mid_rank = r0.map(|r| r + a1.len()).or_else(|| rank_of(g, x));
        let a2 = squeeze_axes(g, node, opset, mid_rank)?;
        return (a1 == a2).then_some(x0);
    }
    None
}

/// `dims` broadcast into `into` without growing it: rank not above, each dim 1 or
/// equal to the matching dim of `into`.
fn fits_into(dims: &[Dim], into: &[Dim]) -> bool {
    dims.len() <= into.len()
        && dims
            .iter()
            .rev()
            .zip(into.iter().rev())
            .all(|(d, i)| d.as_fixed() == Some(1) || same_dim(d, i))
}

/// Elements of a small constant as f64 (large constants are not examined).
fn small_const_f64s(g: &Graph, v: ValueId) -> Option<Vec<f64>> {
    let d = fixed_dims(&dims_of(g, v)?)?;
    if d.iter().product::<i64>() > 1 << 16 {
        return None;
    }
    const_f64s(g, v)
}

/// x*1, 1*x, x/1, x+0, 0+x, x-0: the non-constant operand, when the constant does
/// not broadcast the result beyond it.
fn arith_identity(g: &Graph, node: &Node) -> Option<ValueId> {
    if node.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (input(node, 0)?, input(node, 1)?);
    let (unit, commutes) = match node.op_type.as_str() {
        "Mul" => (1.0, true),
        "Div" => (1.0, false),
        "Add" => (0.0, true),
        _ => (0.0, false),
    };
    let pairs: &[(ValueId, ValueId)] = if commutes {
        &[(a, b), (b, a)]
    } else {
        &[(a, b)]
    };
    for &(x, c) in pairs {
        if !is_const(g, c) {
            continue;
        }
        let (Some(xd), Some(cd)) = (dims_of(g, x), dims_of(g, c)) else {
            continue;
        };
        if !fits_into(&cd, &xd) {
            continue;
        }
        if let (Some(tx), Some(tc)) = (dtype_of(g, x), dtype_of(g, c)) {
            if tx != tc {
                continue;
            }
        }
        if small_const_f64s(g, c).is_some_and(|v| v.iter().all(|&e| e == unit)) {
            return Some(x);
        }
    }
    None
}

/// Where with a constant all-true (all-false) condition: the second (third)
/// operand, when nothing broadcasts it to a bigger shape.
fn where_const(g: &Graph, node: &Node) -> Option<ValueId> {
    let (c, a, b) = (input(node, 0)?, input(node, 1)?, input(node, 2)?);
    let v = small_const_f64s(g, c)?;
    let chosen = if !v.is_empty() && v.iter().all(|&e| e != 0.0) {
        (a, b)
    } else if v.iter().all(|&e| e == 0.0) {
        (b, a)
    } else {
        return None;
    };
    let kept = dims_of(g, chosen.0)?;
    (fits_into(&dims_of(g, c)?, &kept) && fits_into(&dims_of(g, chosen.1)?, &kept))
        .then_some(chosen.0)
}

#[cfg(test)]
mod tests {
    use crate::{parse_model, print_model, PassManager, Pipeline};

    fn run(pipeline: &str, text: &str) -> String {
        let mut m = parse_model(text).unwrap();
        let mut pm = PassManager::new(Pipeline::parse(pipeline).unwrap());
        pm.verify_each = true;
        pm.run(&mut m).unwrap();
        print_model(&m)
    }

    #[test]
    fn squeeze_unsqueeze_attribute_axes_before_13() {
        let text = "opset _=11\ngraph @g(%x: f32[2,1,3]) -> (%y) {\n  %a = Squeeze(%x) {axes=[1]}\n  %b = Unsqueeze(%a) {axes=[-2]}\n  %y = Relu(%b)\n  return %y\n}\n";
        let out = run("noop,dce", text);
        assert!(out.contains("Relu(%x)"), "{out}");
        // At opset 13 the same attributes are not the axes: left alone.
        let text13 = text.replace("opset _=11", "opset _=13");
        let out = run("noop,dce", &text13);
        assert!(out.contains("Unsqueeze"), "{out}");
    }

    #[test]
    fn pad_attribute_before_11() {
        let text = "opset _=10\ngraph @g(%x: f32[2,3]) -> (%y) {\n  %a = Pad(%x) {pads=[0,0,0,0]}\n  %y = Relu(%a)\n  return %y\n}\n";
        assert!(run("noop,dce", text).contains("Relu(%x)"));
        let text = "opset _=10\ngraph @g(%x: f32[2,3]) -> (%y) {\n  %a = Pad(%x) {pads=[0,1,0,0]}\n  %y = Relu(%a)\n  return %y\n}\n";
        assert!(run("noop,dce", text).contains("Pad"));
    }

    #[test]
    fn slice_attributes_before_10() {
        let text = "opset _=9\ngraph @g(%x: f32[4,3]) -> (%y) {\n  %a = Slice(%x) {axes=[0], ends=[4], starts=[-4]}\n  %y = Relu(%a)\n  return %y\n}\n";
        assert!(run("noop,dce", text).contains("Relu(%x)"));
        let text = "opset _=9\ngraph @g(%x: f32[4,3]) -> (%y) {\n  %a = Slice(%x) {axes=[0], ends=[3], starts=[0]}\n  %y = Relu(%a)\n  return %y\n}\n";
        assert!(run("noop,dce", text).contains("Slice"));
    }

    #[test]
    fn identity_between_input_and_output_stays() {
        let text =
            "opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %y = Identity(%x)\n  return %y\n}\n";
        assert_eq!(run("noop,dce", text), text);
    }

    #[test]
    fn output_keeps_its_name_and_type() {
        let text = "opset _=17\ngraph @g(%x: f32[4]) -> (%y) {\n  %a = Relu(%x)\n  %y = Identity(%a) : f32[4]\n  return %y\n}\n";
        let out = run("noop,dce", text);
        assert!(out.contains("%y = Relu(%x) : f32[4]"), "{out}");
    }

    #[test]
    fn norm_axes_rules() {
        use super::norm_axes;
        assert_eq!(norm_axes(&[-1, 0], Some(3)), Some(vec![0, 2]));
        assert_eq!(norm_axes(&[-1], None), None);
        assert_eq!(norm_axes(&[1, 1], Some(3)), None);
        assert_eq!(norm_axes(&[3], Some(3)), None);
    }
}
