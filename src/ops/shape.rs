//! Shape and layout operators: Identity, Constant, Shape, Size, Reshape, Flatten,
//! Squeeze, Unsqueeze, Transpose, Expand, Concat, Split, Slice, Tile, Pad,
//! ConstantOfShape, Range, EyeLike, Trilu, DepthToSpace and SpaceToDepth.
//!
//! All of them move elements without arithmetic, so they work for every element
//! type (strings included). Outputs are always in standard (row-major) layout.
//!
//! Also the small helpers the index and gather families share (`contig`,
//! `from_vec`, `gather_axes`, `outer_inner`, …).
//!
//! Decisions where the spec is loose:
//! - Outputs whose size comes from data (Expand, Tile, ConstantOfShape, Range,
//!   Pad, …) are refused above [`MAX_ELEMS`] elements rather than aborting on
//!   allocation failure.
//! - Pad with `reflect`, `edge` or `wrap` and negative pads maps each output
//!   position back into the input as those modes define (no separate crop step).
//! - Split with `num_outputs` that does not divide the axis gives the first
//!   outputs `ceil(dim / n)` elements and the last the remainder (as onnx's
//!   reference does).
//! - Range's `stash_type` is ignored: each element is `start + i * delta` in the
//!   input type (integers in wide arithmetic, so no overflow).

use super::broadcast::broadcast_shape;
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use crate::map_tensor_same;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::borrow::Cow;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Identity", identity);
    r.add("Constant", constant);
    r.add("Shape", shape_op);
    r.add("Size", size);
    r.add("Reshape", reshape);
    r.add("Flatten", flatten);
    r.add("Squeeze", squeeze);
    r.add("Unsqueeze", unsqueeze);
    r.add("Transpose", transpose);
    r.add("Expand", expand);
    r.add("Concat", concat);
    r.add("Split", split);
    r.add("Slice", slice);
    r.add("Tile", tile);
    r.add("Pad", pad);
    r.add("ConstantOfShape", constant_of_shape);
    r.add("Range", range);
    r.add("EyeLike", eye_like);
    r.add("Trilu", trilu);
    r.add("DepthToSpace", depth_to_space);
    r.add("SpaceToDepth", space_to_depth);
}

// ---------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------

/// The largest number of elements a kernel here creates from data-given sizes.
pub(crate) const MAX_ELEMS: usize = 1 << 32;

pub(crate) fn inv(msg: impl Into<String>) -> OpError {
    OpError::Invalid(msg.into())
}

/// The element count of `shape`, refusing overflow and sizes above [`MAX_ELEMS`].
pub(crate) fn numel(shape: &[usize]) -> Result<usize, OpError> {
    let mut n: usize = 1;
    for &d in shape {
        n = n
            .checked_mul(d)
            .ok_or_else(|| inv(format!("shape {shape:?} is too large")))?;
    }
    if n > MAX_ELEMS {
        return Err(inv(format!("shape {shape:?} is too large")));
    }
    Ok(n)
}

/// The elements in row-major order, borrowed when already contiguous.
pub(crate) fn contig<T: Clone>(a: &ArrayD<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// An array from row-major data.
pub(crate) fn from_vec<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| inv(format!("internal shape error: {e}")))
}

/// A copy of `a` with a new shape of the same element count.
pub(crate) fn reshaped<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, OpError> {
    if numel(shape)? != a.len() {
        return Err(inv(format!("cannot reshape {:?} to {shape:?}", a.shape())));
    }
    from_vec(shape, contig(a).into_owned())
}

/// Row-major strides of `shape`.
pub(crate) fn strides_of(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// `(outer, dim, inner)`: the shape seen as three axes around `axis`.
pub(crate) fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let inner = shape[axis + 1..].iter().product();
    (outer, shape[axis], inner)
}

/// Dimensions from an i64 list; negative values are an error.
pub(crate) fn dims(v: &[i64], what: &str) -> Result<Vec<usize>, OpError> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| inv(format!("{what}: negative dimension {d}"))))
        .collect()
}

/// A scalar (or one-element) integer input.
pub(crate) fn scalar_i64(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
) -> Result<i64, OpError> {
    let v = ctx.i64s(inputs, i)?;
    match v.as_slice() {
        [x] => Ok(*x),
        _ => Err(inv(format!(
            "input {i} must hold one value, it has {}",
            v.len()
        ))),
    }
}

/// A possibly negative axis normalised against `rank` (which must be at least 1).
pub(crate) fn axis_in(axis: i64, rank: usize) -> Result<usize, OpError> {
    if rank == 0 {
        return Err(inv(format!("axis {axis} given for a scalar")));
    }
    super::norm_axis(axis, rank)
}

/// Marks an output position as "fill" in [`gather_axes`].
pub(crate) const FILL: usize = usize::MAX;

/// Builds an array whose axis `k` takes input index `maps[k][j]` at output index
/// `j` (every map entry must be in range for its axis, or [`FILL`] to use `fill`).
pub(crate) fn gather_axes<T: Clone>(
    a: &ArrayD<T>,
    maps: &[Vec<usize>],
    fill: Option<&T>,
) -> Result<ArrayD<T>, OpError> {
    if maps.len() != a.ndim() {
        return Err(inv("internal: axis maps do not match the rank"));
    }
    let src = contig(a);
    let out_shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    from_vec(&out_shape, gather_slice(&src, a.shape(), maps, fill)?)
}

/// [`gather_axes`] over row-major data `src` of shape `shape`: the gathered
/// elements in row-major order. Trailing axes taken whole are copied as blocks
/// and runs of consecutive indices on the last gathered axis as one slice.
pub(crate) fn gather_slice<T: Clone>(
    src: &[T],
    shape: &[usize],
    maps: &[Vec<usize>],
    fill: Option<&T>,
) -> Result<Vec<T>, OpError> {
    let r = shape.len();
    if maps.len() != r {
        return Err(inv("internal: axis maps do not match the rank"));
    }
    let out_shape: Vec<usize> = maps.iter().map(|m| m.len()).collect();
    let total = numel(&out_shape)?;
    if total == 0 {
        return Ok(Vec::new());
    }
    for (m, &d) in maps.iter().zip(shape) {
        for &i in m {
            if (i == FILL && fill.is_none()) || (i != FILL && i >= d) {
                return Err(inv("internal: index out of range"));
            }
        }
    }
    // Trailing axes whose maps are the identity form one contiguous block.
    let mut t = r;
    while t > 0
        && maps[t - 1].len() == shape[t - 1]
        && maps[t - 1].iter().enumerate().all(|(j, &i)| i == j)
    {
        t -= 1;
    }
    if t == 0 {
        return Ok(src.to_vec());
    }
    let strides = strides_of(shape);
    let block: usize = shape[t..].iter().product();
    // Runs of the last gathered axis: (first input index or FILL, length).
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &i in &maps[t - 1] {
        match runs.last_mut() {
            Some((s, n)) if *s != FILL && i != FILL && i == *s + *n => *n += 1,
            Some((s, n)) if *s == FILL && i == FILL => *n += 1,
            _ => runs.push((i, 1)),
        }
    }
    let ls = strides[t - 1];
    let mut out = Vec::with_capacity(total);
    let mut idx = vec![0usize; t - 1];
    let outer: usize = out_shape[..t - 1].iter().product();
    for _ in 0..outer {
        let base = idx.iter().enumerate().try_fold(0usize, |acc, (k, &j)| {
            let i = maps[k][j];
            (i != FILL).then(|| acc + i * strides[k])
        });
        for &(s, n) in &runs {
            match (base, s) {
                (Some(b), s) if s != FILL => {
                    out.extend_from_slice(&src[b + s * ls..b + (s + n) * ls])
                }
                _ => {
                    let f = fill.ok_or_else(|| inv("internal: index out of range"))?;
                    out.resize(out.len() + n * block, f.clone());
                }
            }
        }
        for k in (0..t - 1).rev() {
            idx[k] += 1;
            if idx[k] < maps[k].len() {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(out)
}

/// `src` (row-major, shape `shape`) with its axes permuted: output axis `k` is
/// input axis `perm[k]`. Size-1 axes are dropped and axes that stay adjacent
/// merged first; the remaining copy is a run copy when the last axis stays in
/// place and a cache-blocked 2-D transpose otherwise.
pub(crate) fn permute_slice<T: Clone>(src: &[T], shape: &[usize], perm: &[usize]) -> Vec<T> {
    let n = src.len();
    if n == 0 {
        return Vec::new();
    }
    // Drop size-1 axes.
    let mut new_of = vec![usize::MAX; shape.len()];
    let mut s1 = Vec::with_capacity(shape.len());
    for (i, &d) in shape.iter().enumerate() {
        if d != 1 {
            new_of[i] = s1.len();
            s1.push(d);
        }
    }
    let p1: Vec<usize> = perm
        .iter()
        .map(|&a| new_of[a])
        .filter(|&a| a != usize::MAX)
        .collect();
    // Merge input axes that stay adjacent and in order in the output.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for &a in &p1 {
        match groups.last_mut() {
            Some(g) if *g.last().expect("non-empty") + 1 == a => g.push(a),
            _ => groups.push(vec![a]),
        }
    }
    // Groups sorted by input position give the merged input shape.
    let mut by_in: Vec<usize> = (0..groups.len()).collect();
    by_in.sort_by_key(|&g| groups[g][0]);
    let mut s: Vec<usize> = vec![0; groups.len()];
    let mut p: Vec<usize> = vec![0; groups.len()];
    for (new_in, &g) in by_in.iter().enumerate() {
        s[new_in] = groups[g].iter().map(|&a| s1[a]).product();
        p[g] = new_in;
    }
    let r = s.len();
    if r <= 1 || p.iter().enumerate().all(|(k, &a)| k == a) {
        return src.to_vec();
    }
    let is = strides_of(&s);
    let os_shape: Vec<usize> = p.iter().map(|&a| s[a]).collect();
    let os = strides_of(&os_shape);
    // Output position of each input axis.
    let mut pos = vec![0usize; r];
    for (k, &a) in p.iter().enumerate() {
        pos[a] = k;
    }
    if p[r - 1] == r - 1 {
        // The innermost axis stays: copy runs, walking the output in order.
        let run = s[r - 1];
        let mut out = Vec::with_capacity(n);
        let mut idx = vec![0usize; r - 1];
        let mut base = 0usize;
        for _ in 0..n / run {
            out.extend_from_slice(&src[base..base + run]);
            for k in (0..r - 1).rev() {
                idx[k] += 1;
                base += is[p[k]];
                if idx[k] < os_shape[k] {
                    break;
                }
                base -= is[p[k]] * os_shape[k];
                idx[k] = 0;
            }
        }
        return out;
    }
    // Blocked 2-D transpose of the plane (input last axis, output last axis),
    // for every index of the other axes.
    let a = p[r - 1];
    let (ni, nj) = (s[r - 1], s[a]);
    let (os_i, is_j) = (os[pos[r - 1]], is[a]);
    let others: Vec<usize> = p
        .iter()
        .copied()
        .filter(|&x| x != a && x != r - 1)
        .collect();
    let mut out = vec![src[0].clone(); n];
    let mut idx = vec![0usize; others.len()];
    let (mut ib, mut ob) = (0usize, 0usize);
    let planes = n / (ni * nj);
    const B: usize = 32;
    for _ in 0..planes {
        for i0 in (0..ni).step_by(B) {
            let i1 = (i0 + B).min(ni);
            for j0 in (0..nj).step_by(B) {
                let j1 = (j0 + B).min(nj);
                for i in i0..i1 {
                    let o = ob + i * os_i;
                    let inp = ib + i;
                    for j in j0..j1 {
                        out[o + j] = src[inp + j * is_j].clone();
                    }
                }
            }
        }
        for k in (0..others.len()).rev() {
            let ax = others[k];
            idx[k] += 1;
            ib += is[ax];
            ob += os[pos[ax]];
            if idx[k] < s[ax] {
                break;
            }
            ib -= is[ax] * s[ax];
            ob -= os[pos[ax]] * s[ax];
            idx[k] = 0;
        }
    }
    out
}

/// Reshapes to `s1`, permutes the axes and reshapes to `s2` (a copy).
fn reshape_permute<T: Clone>(
    a: &ArrayD<T>,
    s1: &[usize],
    perm: &[usize],
    s2: &[usize],
) -> Result<ArrayD<T>, OpError> {
    if numel(s1)? != a.len() || numel(s2)? != a.len() {
        return Err(inv(format!("cannot view {:?} as {s1:?}", a.shape())));
    }
    let data = contig(a);
    from_vec(s2, permute_slice(&data, s1, perm))
}

/// Resolves ONNX slice bounds for one axis: the input indices taken.
fn slice_indices(dim: usize, start: i64, end: i64, step: i64) -> Result<Vec<usize>, OpError> {
    if step == 0 {
        return Err(inv("slice step must not be 0"));
    }
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (fix(start), fix(end));
    let mut out = Vec::new();
    if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        let mut i = s;
        while i < e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    } else {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        let mut i = s;
        while i > e {
            out.push(i as usize);
            i = i.saturating_add(step);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Kernels
// ---------------------------------------------------------------------------

fn identity(_ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    match inputs.first() {
        Some(Some(v)) => Ok(vec![v.clone()]),
        _ => Err(inv("input 0 is missing")),
    }
}

fn constant(ctx: &OpCtx, _inputs: &[Option<RtValue>]) -> OpResult {
    use crate::ir::attr::AttrValue;
    if let Some(t) = ctx.tensor("value") {
        return one(TensorValue::from_tensor(t).map_err(|e| inv(e.to_string()))?);
    }
    if let Some(v) = ctx
        .node
        .attr("value_float")
        .and_then(|a| a.value.as_float())
    {
        return one(TensorValue::F32(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = ctx.floats("value_floats") {
        return one(TensorValue::F32(from_vec(&[v.len()], v)?));
    }
    if let Some(v) = ctx.int_opt("value_int") {
        return one(TensorValue::I64(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = ctx.ints("value_ints") {
        return one(TensorValue::I64(from_vec(&[v.len()], v)?));
    }
    if let Some(v) = ctx.string("value_string") {
        return one(TensorValue::Str(ArrayD::from_elem(IxDyn(&[]), v)));
    }
    if let Some(v) = ctx.strings("value_strings") {
        return one(TensorValue::Str(from_vec(&[v.len()], v)?));
    }
    if let Some(AttrValue::SparseTensor(sp)) = ctx.node.attr("sparse_value").map(|a| &a.value) {
        return one(sparse_to_dense(sp)?);
    }
    Err(inv("Constant has no value attribute"))
}

fn sparse_to_dense(sp: &crate::ir::tensor::SparseTensor) -> Result<TensorValue, OpError> {
    let shape = dims(&sp.dims, "sparse_value")?;
    let total = numel(&shape)?;
    let values = TensorValue::from_tensor(&sp.values).map_err(|e| inv(e.to_string()))?;
    let idx = TensorValue::from_tensor(&sp.indices)
        .map_err(|e| inv(e.to_string()))?
        .to_i64_vec()
        .ok_or_else(|| inv("sparse indices must be integers"))?;
    let nnz = values.len();
    let strides = strides_of(&shape);
    // Linear indices ([NNZ]) or coordinates ([NNZ, rank]).
    let linear: Vec<usize> = if idx.len() == nnz {
        idx.iter()
            .map(|&i| usize::try_from(i).ok().filter(|&i| i < total))
            .collect::<Option<_>>()
            .ok_or_else(|| inv("sparse index out of range"))?
    } else if idx.len() == nnz * shape.len() {
        idx.chunks(shape.len().max(1))
            .map(|c| {
                c.iter()
                    .zip(&shape)
                    .zip(&strides)
                    .try_fold(0usize, |acc, ((&i, &d), &s)| {
                        usize::try_from(i)
                            .ok()
                            .filter(|&i| i < d)
                            .map(|i| acc + i * s)
                    })
            })
            .collect::<Option<_>>()
            .ok_or_else(|| inv("sparse index out of range"))?
    } else {
        return Err(inv("sparse indices do not match the values"));
    };
    Ok(map_tensor_same!(values, v => from_vec(&shape, dense(&v, &linear, total))?))
}

/// `total` default elements with `v`'s elements placed at the offsets `at`.
fn dense<T: Clone + Default>(v: &ArrayD<T>, at: &[usize], total: usize) -> Vec<T> {
    let mut out = vec![T::default(); total];
    for (&o, x) in at.iter().zip(v.iter()) {
        out[o] = x.clone();
    }
    out
}

fn shape_op(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let s = ctx.input(inputs, 0)?.shape();
    let r = s.len() as i64;
    let fix = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = fix(ctx.int("start", 0));
    let end = fix(ctx.int("end", r));
    let v: Vec<i64> = if start < end {
        s[start..end].iter().map(|&d| d as i64).collect()
    } else {
        vec![]
    };
    one(TensorValue::from_i64(&[v.len()], v))
}

fn size(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let n = ctx.input(inputs, 0)?.len() as i64;
    one(TensorValue::I64(ArrayD::from_elem(IxDyn(&[]), n)))
}

fn reshape(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let spec = if ctx.opset < 5 {
        ctx.ints("shape")
            .ok_or_else(|| inv("Reshape needs a shape"))?
    } else {
        ctx.i64s(inputs, 1)?
    };
    let allowzero = ctx.int("allowzero", 0) != 0;
    let in_shape = x.shape();
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if !allowzero => out.push(*in_shape.get(i).ok_or_else(|| {
                inv(format!(
                    "Reshape: dimension {i} copies a missing input dimension"
                ))
            })?),
            -1 => {
                if infer.replace(i).is_some() {
                    return Err(inv("Reshape: more than one -1 in the shape"));
                }
                out.push(1);
            }
            d if d < 0 => return Err(inv(format!("Reshape: invalid dimension {d}"))),
            d => out.push(usize::try_from(d).map_err(|_| inv("Reshape: dimension too large"))?),
        }
    }
    if let Some(i) = infer {
        let known = numel(&out)?;
        if known == 0 || x.len() % known != 0 {
            return Err(inv(format!(
                "Reshape: cannot infer a dimension reshaping {in_shape:?} to {spec:?}"
            )));
        }
        out[i] = x.len() / known;
    }
    one(map_tensor_same!(x, a => reshaped(a, &out)?))
}

fn flatten(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    let r = s.len() as i64;
    let axis = ctx.int("axis", 1);
    let axis = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&axis) {
        return Err(inv(format!(
            "Flatten: axis {axis} out of range for rank {r}"
        )));
    }
    let a = axis as usize;
    let out = [s[..a].iter().product(), s[a..].iter().product()];
    one(map_tensor_same!(x, t => reshaped(t, &out)?))
}

fn axes_arg(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    input_since: i64,
) -> Result<Option<Vec<i64>>, OpError> {
    if ctx.opset >= input_since {
        ctx.opt_i64s(inputs, 1)
    } else {
        Ok(ctx.ints("axes"))
    }
}

fn squeeze(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    let keep: Vec<bool> = match axes_arg(ctx, inputs, 13)? {
        Some(axes) => {
            let mut keep = vec![true; s.len()];
            for a in axes {
                let a = axis_in(a, s.len())?;
                if s.get(a) != Some(&1) {
                    return Err(inv(format!("Squeeze: dimension {a} of {s:?} is not 1")));
                }
                keep[a] = false;
            }
            keep
        }
        None => s.iter().map(|&d| d != 1).collect(),
    };
    let out: Vec<usize> = s
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(&d, _)| d)
        .collect();
    one(map_tensor_same!(x, t => reshaped(t, &out)?))
}

fn unsqueeze(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    let axes = axes_arg(ctx, inputs, 13)?.ok_or_else(|| inv("Unsqueeze needs axes"))?;
    let r = s.len() + axes.len();
    let mut ones = vec![false; r];
    for a in axes {
        let a = axis_in(a, r)?;
        if std::mem::replace(&mut ones[a], true) {
            return Err(inv("Unsqueeze: repeated axis"));
        }
    }
    let mut it = s.iter();
    let out: Vec<usize> = ones
        .iter()
        .map(|&o| if o { Some(1) } else { it.next().copied() })
        .collect::<Option<_>>()
        .ok_or_else(|| inv("Unsqueeze: bad axes"))?;
    one(map_tensor_same!(x, t => reshaped(t, &out)?))
}

fn transpose(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let r = x.shape().len();
    let perm: Vec<usize> = match ctx.ints("perm") {
        Some(p) => {
            let p: Vec<usize> = p.iter().map(|&a| axis_in(a, r)).collect::<Result<_, _>>()?;
            let mut seen = vec![false; r];
            for &a in &p {
                if std::mem::replace(&mut seen[a], true) {
                    return Err(inv("Transpose: perm repeats an axis"));
                }
            }
            if p.len() != r {
                return Err(inv(format!("Transpose: perm {p:?} does not fit rank {r}")));
            }
            p
        }
        None => (0..r).rev().collect(),
    };
    let out_shape: Vec<usize> = perm.iter().map(|&a| x.shape()[a]).collect();
    one(
        map_tensor_same!(x, a => from_vec(&out_shape, permute_slice(&contig(a), a.shape(), &perm))?),
    )
}

fn expand(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let want = dims(&ctx.i64s(inputs, 1)?, "Expand")?;
    let shape = broadcast_shape(x.shape(), &want)?;
    numel(&shape)?;
    let mut in_shape = vec![1usize; shape.len() - x.shape().len()];
    in_shape.extend_from_slice(x.shape());
    let maps: Vec<Vec<usize>> = in_shape
        .iter()
        .zip(&shape)
        .map(|(&d, &o)| if d == o { (0..o).collect() } else { vec![0; o] })
        .collect();
    one(
        map_tensor_same!(x, a => from_vec(&shape, gather_slice(&contig(a), &in_shape, &maps, None)?)?),
    )
}

/// Applies `$body` to the arrays of a list of tensors of one element type, bound
/// as `$v: Vec<&ArrayD<T>>`; the result is re-wrapped in that type.
macro_rules! map_list_same {
    ($ts:expr, $v:ident => $body:expr) => {
        map_list_same!(@go $ts, $v => $body; F32 F64 F16 BF16 I8 I16 I32 I64 U8 U16 U32 U64 Bool Str)
    };
    (@go $ts:expr, $v:ident => $body:expr; $($var:ident)*) => {{
        let ts: &[&TensorValue] = $ts;
        match ts.first() {
            $(Some(TensorValue::$var(_)) => {
                let $v = ts
                    .iter()
                    .map(|t| match t {
                        TensorValue::$var(a) => Ok(a),
                        o => Err(OpError::Invalid(format!(
                            "inputs of different element types ({} and {})",
                            DType::$var, o.dtype()
                        ))),
                    })
                    .collect::<Result<Vec<_>, OpError>>()?;
                TensorValue::$var($body)
            })*
            None => return Err(OpError::Invalid("no inputs".into())),
        }
    }};
}

fn concat(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let ts: Vec<&TensorValue> = (0..inputs.len())
        .map(|i| ctx.input(inputs, i))
        .collect::<Result<_, _>>()?;
    let axis = ctx
        .int_opt("axis")
        .ok_or_else(|| inv("Concat needs an axis"))?;
    one(concat_tensors(&ts, axis)?)
}

/// Concatenates tensors of one element type along `axis` (negative counts from the
/// end); every other dimension must agree. Shared by Concat, ConcatFromSequence and
/// the scan outputs of Loop and Scan.
pub(crate) fn concat_tensors(ts: &[&TensorValue], axis: i64) -> Result<TensorValue, OpError> {
    let first = ts.first().ok_or_else(|| inv("Concat needs inputs"))?;
    let r = first.shape().len();
    let axis = axis_in(axis, r)?;
    let mut shape = first.shape().to_vec();
    if r == 0 {
        return Err(inv("Concat of scalars"));
    }
    shape[axis] = 0;
    for t in ts {
        let s = t.shape();
        if s.len() != r
            || s.iter()
                .zip(first.shape())
                .enumerate()
                .any(|(i, (a, b))| i != axis && a != b)
        {
            return Err(inv(format!(
                "Concat: shapes {:?} and {s:?} do not fit",
                first.shape()
            )));
        }
        shape[axis] += s[axis];
    }
    numel(&shape)?;
    let (outer, _, inner) = outer_inner(&shape, axis);
    Ok(map_list_same!(ts, arrs => {
        let parts: Vec<_> = arrs.iter().map(|a| contig(a)).collect();
        let mut out = Vec::with_capacity(shape.iter().product());
        for o in 0..outer {
            for (p, a) in parts.iter().zip(&arrs) {
                let block = a.shape()[axis] * inner;
                out.extend_from_slice(&p[o * block..(o + 1) * block]);
            }
        }
        from_vec(&shape, out)?
    }))
}

fn split(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    let axis = axis_in(ctx.int("axis", 0), s.len())?;
    if s.is_empty() {
        return Err(inv("Split of a scalar"));
    }
    let dim = s[axis];
    let n_out = ctx.node.outputs.len();
    let parts: Vec<usize> = match ctx.opt_i64s(inputs, 1)? {
        Some(v) => dims(&v, "Split")?,
        None if ctx.opset < 13 && ctx.has_attr("split") => {
            dims(&ctx.ints("split").unwrap_or_default(), "Split")?
        }
        None => {
            let n = match ctx.int_opt("num_outputs") {
                Some(n) if n > 0 => n as usize,
                Some(n) => return Err(inv(format!("Split: num_outputs {n}"))),
                None => n_out,
            };
            if n == 0 {
                return Err(inv("Split with no outputs"));
            }
            if dim % n == 0 {
                vec![dim / n; n]
            } else {
                let c = dim.div_ceil(n);
                let used = c * (n - 1);
                if used > dim {
                    return Err(inv(format!("Split: cannot split {dim} into {n} parts")));
                }
                let mut v = vec![c; n - 1];
                v.push(dim - used);
                v
            }
        }
    };
    if parts.iter().sum::<usize>() != dim {
        return Err(inv(format!(
            "Split: parts {parts:?} do not add up to {dim}"
        )));
    }
    if parts.len() != n_out {
        return Err(inv(format!(
            "Split: {} parts for {n_out} outputs",
            parts.len()
        )));
    }
    let mut outs = Vec::with_capacity(parts.len());
    let mut pos = 0;
    for p in parts {
        let mut maps: Vec<Vec<usize>> = s.iter().map(|&d| (0..d).collect()).collect();
        maps[axis] = (pos..pos + p).collect();
        let t = map_tensor_same!(x, a => gather_axes(a, &maps, None)?);
        outs.push(RtValue::Tensor(t));
        pos += p;
    }
    Ok(outs)
}

fn slice(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    let r = s.len();
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (
            ctx.ints("starts")
                .ok_or_else(|| inv("Slice needs starts"))?,
            ctx.ints("ends").ok_or_else(|| inv("Slice needs ends"))?,
            ctx.ints("axes"),
            None,
        )
    } else {
        (
            ctx.i64s(inputs, 1)?,
            ctx.i64s(inputs, 2)?,
            ctx.opt_i64s(inputs, 3)?,
            ctx.opt_i64s(inputs, 4)?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(inv("Slice: starts, ends, axes and steps differ in length"));
    }
    let mut maps: Vec<Vec<usize>> = s.iter().map(|&d| (0..d).collect()).collect();
    let mut done = vec![false; r];
    for i in 0..starts.len() {
        let a = axis_in(axes[i], r)?;
        if std::mem::replace(&mut done[a], true) {
            return Err(inv("Slice: repeated axis"));
        }
        maps[a] = slice_indices(s[a], starts[i], ends[i], steps[i])?;
    }
    one(map_tensor_same!(x, t => gather_axes(t, &maps, None)?))
}

fn tile(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let reps = dims(&ctx.i64s(inputs, 1)?, "Tile repeats")?;
    let s = x.shape();
    if reps.len() != s.len() {
        return Err(inv("Tile: repeats must have one entry per axis"));
    }
    let out: Vec<usize> = s
        .iter()
        .zip(&reps)
        .map(|(&d, &r)| d.checked_mul(r))
        .collect::<Option<_>>()
        .ok_or_else(|| inv("Tile: output too large"))?;
    numel(&out)?;
    let maps: Vec<Vec<usize>> = s
        .iter()
        .zip(&out)
        .map(|(&d, &o)| (0..o).map(|i| i % d).collect())
        .collect();
    one(map_tensor_same!(x, t => gather_axes(t, &maps, None)?))
}

fn pad(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape().to_vec();
    let r = s.len();
    let mode = ctx.string("mode").unwrap_or_else(|| "constant".into());
    let (raw, value, axes) = if ctx.opset < 11 {
        let p = ctx
            .ints("pads")
            .or_else(|| ctx.ints("paddings"))
            .ok_or_else(|| inv("Pad needs pads"))?;
        let v = ctx.float("value", 0.0);
        let value = match x {
            TensorValue::F32(_) => TensorValue::F32(ArrayD::from_elem(IxDyn(&[]), v)),
            TensorValue::F64(_) => TensorValue::F64(ArrayD::from_elem(IxDyn(&[]), v as f64)),
            TensorValue::F16(_) => {
                TensorValue::F16(ArrayD::from_elem(IxDyn(&[]), f16::from_f32(v)))
            }
            _ => {
                return Err(OpError::Unsupported(format!(
                    "Pad-{} of {}",
                    ctx.opset,
                    x.dtype()
                )))
            }
        };
        (p, Some(value), None)
    } else {
        (
            ctx.i64s(inputs, 1)?,
            ctx.opt_input(inputs, 2)?.cloned(),
            ctx.opt_i64s(inputs, 3)?,
        )
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a.iter().map(|&a| axis_in(a, r)).collect::<Result<_, _>>()?,
        None => (0..r).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(inv(format!(
            "Pad: {} pads for {} axes",
            raw.len(),
            axes.len()
        )));
    }
    let mut pads = vec![(0i64, 0i64); r];
    for (i, &a) in axes.iter().enumerate() {
        pads[a] = (raw[i], raw[i + axes.len()]);
    }
    if !matches!(mode.as_str(), "constant" | "edge" | "wrap" | "reflect") {
        return Err(inv(format!("Pad: unknown mode '{mode}'")));
    }
    let mut out_shape = Vec::with_capacity(r);
    for (a, &d) in s.iter().enumerate() {
        let (b, e) = pads[a];
        let o = (d as i64).saturating_add(b).saturating_add(e);
        if o < 0 {
            return Err(inv(format!("Pad: axis {a} would have size {o}")));
        }
        if d == 0 && o > 0 && mode != "constant" {
            return Err(inv(format!("Pad: {mode} padding of an empty axis")));
        }
        out_shape.push(usize::try_from(o).map_err(|_| inv("Pad: output too large"))?);
    }
    numel(&out_shape)?;
    let mut maps = Vec::with_capacity(r);
    for (a, (&d, &o)) in s.iter().zip(&out_shape).enumerate() {
        let b = pads[a].0;
        let di = d as i64;
        let m: Vec<usize> = (0..o as i64)
            .map(|j| {
                let i = j.saturating_sub(b);
                match mode.as_str() {
                    "edge" => i.clamp(0, di - 1) as usize,
                    "wrap" => i.rem_euclid(di) as usize,
                    "reflect" => {
                        if di == 1 {
                            0
                        } else {
                            let p = 2 * (di - 1);
                            let m = i.rem_euclid(p);
                            (if m >= di { p - m } else { m }) as usize
                        }
                    }
                    _ => {
                        if (0..di).contains(&i) {
                            i as usize
                        } else {
                            FILL
                        }
                    }
                }
            })
            .collect();
        maps.push(m);
    }
    let out = match value {
        Some(v) => {
            let both = [x, &v];
            map_list_same!(&both, arrs => {
                let fill = arrs[1].iter().next().cloned().ok_or_else(|| inv("Pad: empty constant_value"))?;
                gather_axes(arrs[0], &maps, Some(&fill))?
            })
        }
        None => map_tensor_same!(x, t => gather_axes(t, &maps, Some(&Default::default()))?),
    };
    one(out)
}

fn constant_of_shape(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let shape = dims(&ctx.i64s(inputs, 0)?, "ConstantOfShape")?;
    numel(&shape)?;
    let value = match ctx.tensor("value") {
        Some(t) => TensorValue::from_tensor(t).map_err(|e| inv(e.to_string()))?,
        None => TensorValue::from_f32(&[1], vec![0.0]),
    };
    one(map_tensor_same!(value, v => {
        let x = v.iter().next().cloned().ok_or_else(|| inv("ConstantOfShape: empty value"))?;
        ArrayD::from_elem(IxDyn(&shape), x)
    }))
}

fn range(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let (s, l, d) = (
        ctx.input(inputs, 0)?,
        ctx.input(inputs, 1)?,
        ctx.input(inputs, 2)?,
    );
    fn first<X: Clone>(a: &ArrayD<X>) -> Result<X, OpError> {
        a.iter()
            .next()
            .cloned()
            .ok_or_else(|| inv("Range: empty input"))
    }
    fn count(n: f64) -> Result<usize, OpError> {
        let n = n.ceil().max(0.0);
        if !n.is_finite() || n > MAX_ELEMS as f64 {
            return Err(inv("Range: too many elements"));
        }
        Ok(n as usize)
    }
    macro_rules! float {
        ($v:ident, $t:ty) => {{
            let (T::$v(a), T::$v(b), T::$v(c)) = (s, l, d) else {
                return Err(inv("Range: inputs differ in type"));
            };
            let (a, b, c) = (first(a)?, first(b)?, first(c)?);
            if c == 0.0 {
                return Err(inv("Range: delta is 0"));
            }
            let n = count(((b - a) / c) as f64)?;
            T::$v(from_vec(&[n], (0..n).map(|i| a + (i as $t) * c).collect())?)
        }};
    }
    macro_rules! int {
        ($v:ident, $t:ty) => {{
            let (T::$v(a), T::$v(b), T::$v(c)) = (s, l, d) else {
                return Err(inv("Range: inputs differ in type"));
            };
            let (a, b, c) = (first(a)? as i128, first(b)? as i128, first(c)? as i128);
            if c == 0 {
                return Err(inv("Range: delta is 0"));
            }
            let span = b - a;
            let n = if (span > 0) != (c > 0) || span == 0 {
                0
            } else {
                (span + c - c.signum()) / c
            };
            if n > MAX_ELEMS as i128 {
                return Err(inv("Range: too many elements"));
            }
            let n = n as usize;
            T::$v(from_vec(
                &[n],
                (0..n).map(|i| (a + i as i128 * c) as $t).collect(),
            )?)
        }};
    }
    let out = match s {
        T::F32(_) => float!(F32, f32),
        T::F64(_) => float!(F64, f64),
        T::I16(_) => int!(I16, i16),
        T::I32(_) => int!(I32, i32),
        T::I64(_) => int!(I64, i64),
        T::I8(_) => int!(I8, i8),
        T::U8(_) => int!(U8, u8),
        T::U16(_) => int!(U16, u16),
        T::U32(_) => int!(U32, u32),
        T::U64(_) => int!(U64, u64),
        T::F16(_) | T::BF16(_) => {
            let f = |t: &TensorValue| -> Result<f32, OpError> {
                Ok(match t {
                    T::F16(a) => first(a)?.to_f32(),
                    T::BF16(a) => first(a)?.to_f32(),
                    _ => return Err(inv("Range: inputs differ in type")),
                })
            };
            let (a, b, c) = (f(s)?, f(l)?, f(d)?);
            if c == 0.0 {
                return Err(inv("Range: delta is 0"));
            }
            let n = count(((b - a) / c) as f64)?;
            let v = (0..n).map(|i| a + i as f32 * c);
            if let T::F16(_) = s {
                T::F16(from_vec(&[n], v.map(f16::from_f32).collect())?)
            } else {
                T::BF16(from_vec(&[n], v.map(bf16::from_f32).collect())?)
            }
        }
        t => return Err(inv(format!("Range of {}", t.dtype()))),
    };
    one(out)
}

/// A tensor of `dtype` and `shape` with ones at the flat offsets `at`.
fn ones_at(dtype: DType, shape: &[usize], at: &[usize]) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    let mut t =
        TensorValue::zeros(dtype, shape).map_err(|e| OpError::Unsupported(e.to_string()))?;
    macro_rules! set {
        ($a:expr, $one:expr) => {{
            if let Some(s) = $a.as_slice_mut() {
                for &i in at {
                    if let Some(x) = s.get_mut(i) {
                        *x = $one;
                    }
                }
            }
        }};
    }
    match &mut t {
        T::F32(a) => set!(a, 1.0),
        T::F64(a) => set!(a, 1.0),
        T::F16(a) => set!(a, f16::ONE),
        T::BF16(a) => set!(a, bf16::ONE),
        T::I8(a) => set!(a, 1),
        T::I16(a) => set!(a, 1),
        T::I32(a) => set!(a, 1),
        T::I64(a) => set!(a, 1),
        T::U8(a) => set!(a, 1),
        T::U16(a) => set!(a, 1),
        T::U32(a) => set!(a, 1),
        T::U64(a) => set!(a, 1),
        T::Bool(a) => set!(a, true),
        T::Str(_) => return Err(inv("EyeLike of strings")),
    }
    Ok(t)
}

fn eye_like(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    if s.len() != 2 {
        return Err(inv("EyeLike needs a 2-D input"));
    }
    let dtype = match ctx.int_opt("dtype") {
        Some(c) => DType::from_onnx(c as i32),
        None => x.dtype(),
    };
    let k = ctx.int("k", 0);
    let at: Vec<usize> = (0..s[0])
        .filter_map(|i| {
            let j = (i as i64).checked_add(k)?;
            (0..s[1] as i64).contains(&j).then(|| i * s[1] + j as usize)
        })
        .collect();
    one(ones_at(dtype, s, &at)?)
}

fn trilu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err(inv("Trilu needs rank 2 or more"));
    }
    let k = match ctx.opt_input(inputs, 1)? {
        Some(_) => scalar_i64(ctx, inputs, 1)?,
        None => 0,
    };
    let upper = ctx.int("upper", 1) != 0;
    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
    let keep = |i: usize, j: usize| {
        let d = j as i64 - i as i64;
        if upper {
            d >= k
        } else {
            d <= k
        }
    };
    one(map_tensor_same!(x, a => {
        let mut v = contig(a).into_owned();
        if rows * cols > 0 {
            for m in v.chunks_mut(rows * cols) {
                for (i, row) in m.chunks_mut(cols).enumerate() {
                    for (j, e) in row.iter_mut().enumerate() {
                        if !keep(i, j) {
                            *e = Default::default();
                        }
                    }
                }
            }
        }
        from_vec(s, v)?
    }))
}

fn block_size(ctx: &OpCtx) -> Result<usize, OpError> {
    match ctx.int_opt("blocksize") {
        Some(b) if b > 0 => Ok(b as usize),
        _ => Err(inv("a positive blocksize is required")),
    }
}

fn depth_to_space(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let b = block_size(ctx)?;
    let &[n, c, h, w] = x.shape() else {
        return Err(inv("DepthToSpace needs a 4-D input"));
    };
    let bb = b.checked_mul(b).filter(|&bb| c % bb == 0);
    let (Some(bb), Some(hb), Some(wb)) = (bb, h.checked_mul(b), w.checked_mul(b)) else {
        return Err(inv(format!("DepthToSpace: {c} channels, blocksize {b}")));
    };
    let c2 = c / bb;
    let crd = ctx.string("mode").as_deref() == Some("CRD");
    let (s1, perm): ([usize; 6], [usize; 6]) = if crd {
        ([n, c2, b, b, h, w], [0, 1, 4, 2, 5, 3])
    } else {
        ([n, b, b, c2, h, w], [0, 3, 4, 1, 5, 2])
    };
    let s2 = [n, c2, hb, wb];
    one(map_tensor_same!(x, a => reshape_permute(a, &s1, &perm, &s2)?))
}

fn space_to_depth(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let b = block_size(ctx)?;
    let &[n, c, h, w] = x.shape() else {
        return Err(inv("SpaceToDepth needs a 4-D input"));
    };
    let cbb = c.checked_mul(b).and_then(|v| v.checked_mul(b));
    let Some(cbb) = cbb.filter(|_| h % b == 0 && w % b == 0) else {
        return Err(inv(format!("SpaceToDepth: {h}x{w} with blocksize {b}")));
    };
    let s1 = [n, c, h / b, b, w / b, b];
    let s2 = [n, cbb, h / b, w / b];
    one(map_tensor_same!(x, a => reshape_permute(a, &s1, &[0, 3, 5, 1, 2, 4], &s2)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_bounds() {
        assert_eq!(slice_indices(5, 1, 4, 1).unwrap(), vec![1, 2, 3]);
        assert_eq!(slice_indices(5, -1, -6, -2).unwrap(), vec![4, 2, 0]);
        assert_eq!(
            slice_indices(5, i64::MAX, i64::MIN, -1).unwrap(),
            vec![4, 3, 2, 1, 0]
        );
        assert_eq!(slice_indices(5, 0, i64::MAX, 3).unwrap(), vec![0, 3]);
        assert!(slice_indices(5, 0, 1, 0).is_err());
    }

    #[test]
    fn gather_axes_pad() {
        let a = from_vec(&[2, 2], vec![1, 2, 3, 4]).unwrap();
        let maps = vec![vec![FILL, 0, 1], vec![1, 0]];
        let out = gather_axes(&a, &maps, Some(&0)).unwrap();
        assert_eq!(out.as_slice().unwrap(), &[0, 0, 2, 1, 4, 3]);
    }

    #[test]
    fn permute_matches_ndarray() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[3, 5], &[1, 0]),
            (&[1, 40, 70, 1], &[0, 2, 1, 3]),
            (&[2, 3, 4], &[0, 2, 1]),
            (&[2, 3, 4], &[2, 0, 1]),
            (&[2, 3, 4], &[1, 0, 2]),
            (&[2, 3, 4, 5], &[3, 1, 0, 2]),
            (&[2, 3, 4, 5], &[0, 1, 3, 2]),
            (&[2, 1, 4, 5], &[2, 1, 3, 0]),
            (&[33, 65, 3], &[1, 0, 2]),
            (&[33, 65, 3], &[2, 1, 0]),
            (&[1, 1], &[1, 0]),
            (&[2, 3, 4, 5, 6], &[4, 2, 0, 3, 1]),
        ];
        for (shape, perm) in cases {
            let n: usize = shape.iter().product();
            let a = from_vec(shape, (0..n as i32).collect()).unwrap();
            let want: Vec<i32> = a
                .view()
                .permuted_axes(IxDyn(perm))
                .iter()
                .copied()
                .collect();
            assert_eq!(
                permute_slice(a.as_slice().unwrap(), shape, perm),
                want,
                "{shape:?} {perm:?}"
            );
        }
    }

    #[test]
    fn gather_runs_and_fill() {
        let a = from_vec(&[3, 4], (0..12).collect::<Vec<i32>>()).unwrap();
        let maps = vec![vec![2, 0, FILL], vec![FILL, 1, 2, 3, 3, 2]];
        let out = gather_axes(&a, &maps, Some(&-1)).unwrap();
        assert_eq!(
            out.as_slice().unwrap(),
            &[-1, 9, 10, 11, 11, 10, -1, 1, 2, 3, 3, 2, -1, -1, -1, -1, -1, -1]
        );
        let maps = vec![vec![1, 2], (0..4).collect()];
        let out = gather_axes(&a, &maps, None).unwrap();
        assert_eq!(out.as_slice().unwrap(), &(4..12).collect::<Vec<i32>>()[..]);
        assert!(gather_axes(&a, &[vec![3], vec![0]], None).is_err());
    }

    #[test]
    fn space_depth_round_trip() {
        let a = from_vec(&[1, 4, 2, 2], (0..16).collect::<Vec<i32>>()).unwrap();
        let d =
            reshape_permute(&a, &[1, 1, 2, 2, 2, 2], &[0, 1, 4, 2, 5, 3], &[1, 1, 4, 4]).unwrap();
        let back =
            reshape_permute(&d, &[1, 1, 2, 2, 2, 2], &[0, 1, 3, 5, 2, 4], &[1, 4, 2, 2]).unwrap();
        assert_eq!(a, back);
    }
}
