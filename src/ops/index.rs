//! Index-producing and order-based operators: NonZero, TopK, ArgMax, ArgMin,
//! CumSum, OneHot, Unique, Compress and ReverseSequence.
//!
//! Ordering uses a total order per element type ([`Key`]): integers, bools and
//! strings as usual; floats numerically with NaN above every number (as numpy
//! sorts). Decisions where the spec is loose:
//! - TopK with `sorted=0` still returns sorted results; ties go to the lower
//!   index.
//! - ArgMax and ArgMin pick a NaN if there is one (numpy's behaviour).
//! - CumSum of half types accumulates in f32 and rounds each output.
//! - Compress: a condition longer than the axis is accepted only when the extra
//!   entries are false.
//! - OneHot: an index outside `[-depth, depth)` gives an all-`off` row.

use super::gather::Num;
use super::shape::{axis_in, contig, from_vec, inv, numel, outer_inner, scalar_i64};
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::{map_tensor, map_tensor_same};
use half::{bf16, f16};
use ndarray::ArrayD;
use std::cmp::Ordering;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("NonZero", non_zero);
    r.add("TopK", top_k);
    r.add("ArgMax", arg_max);
    r.add("ArgMin", arg_min);
    r.add("CumSum", cum_sum);
    r.add("OneHot", one_hot);
    r.add("Unique", unique);
    r.add("Compress", compress);
    r.add("ReverseSequence", reverse_sequence);
}

/// A total order on an element type, plus the NaN test numpy-style reductions need.
pub(crate) trait Key: Clone {
    fn key_cmp(&self, o: &Self) -> Ordering;
    fn is_nan_key(&self) -> bool {
        false
    }
    /// Whether the element counts as "true" (non-zero, non-empty).
    fn nonzero(&self) -> bool;
}

macro_rules! key_ord {
    ($($t:ty)*) => {$(
        impl Key for $t {
            fn key_cmp(&self, o: &Self) -> Ordering { self.cmp(o) }
            fn nonzero(&self) -> bool { *self != <$t>::default() }
        }
    )*};
}
key_ord!(i8 i16 i32 i64 u8 u16 u32 u64 bool);

impl Key for String {
    fn key_cmp(&self, o: &Self) -> Ordering {
        self.cmp(o)
    }
    fn nonzero(&self) -> bool {
        !self.is_empty()
    }
}

macro_rules! key_float {
    ($($t:ty)*) => {$(
        impl Key for $t {
            fn key_cmp(&self, o: &Self) -> Ordering {
                match (self.is_nan(), o.is_nan()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    _ => self.partial_cmp(o).unwrap_or(Ordering::Equal),
                }
            }
            fn is_nan_key(&self) -> bool { self.is_nan() }
            fn nonzero(&self) -> bool { *self != <$t>::default() }
        }
    )*};
}
key_float!(f32 f64 f16 bf16);

fn non_zero(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape().to_vec();
    let flags: Vec<bool> = map_tensor!(x, a => a.iter().map(Key::nonzero).collect());
    let nnz = flags.iter().filter(|&&f| f).count();
    let r = s.len();
    let mut out = vec![0i64; r * nnz];
    let mut pos = vec![0usize; r];
    let mut col = 0;
    for f in flags {
        if f {
            for (k, &p) in pos.iter().enumerate() {
                out[k * nnz + col] = p as i64;
            }
            col += 1;
        }
        for k in (0..r).rev() {
            pos[k] += 1;
            if pos[k] < s[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    one(TensorValue::I64(from_vec(&[r, nnz], out)?))
}

fn top_k_impl<T: Key>(
    a: &ArrayD<T>,
    axis: usize,
    k: usize,
    largest: bool,
) -> Result<(ArrayD<T>, ArrayD<i64>), OpError> {
    let s = a.shape();
    let (outer, n, inner) = outer_inner(s, axis);
    if k > n {
        return Err(inv(format!("TopK: k={k} exceeds the axis length {n}")));
    }
    let src = contig(a);
    let mut out_shape = s.to_vec();
    out_shape[axis] = k;
    let total = outer * k * inner;
    let mut vals = Vec::with_capacity(total);
    let mut idxs = vec![0i64; total];
    let mut order: Vec<usize> = Vec::with_capacity(n);
    let mut col_vals: Vec<Vec<T>> = Vec::new();
    for o in 0..outer {
        col_vals.clear();
        for i in 0..inner {
            order.clear();
            order.extend(0..n);
            let at = |j: usize| &src[o * n * inner + j * inner + i];
            let cmp = |p: &usize, q: &usize| {
                let c = at(*p).key_cmp(at(*q));
                if largest {
                    c.reverse()
                } else {
                    c
                }
            };
            if k < n {
                if k > 0 {
                    order.select_nth_unstable_by(k - 1, |p, q| cmp(p, q).then(p.cmp(q)));
                }
                order.truncate(k);
            }
            order.sort_by(|p, q| cmp(p, q).then(p.cmp(q)));
            for (j, &src_j) in order.iter().enumerate() {
                idxs[o * k * inner + j * inner + i] = src_j as i64;
            }
            col_vals.push(order.iter().map(|&j| at(j).clone()).collect());
        }
        for j in 0..k {
            for col in &col_vals {
                vals.push(col[j].clone());
            }
        }
    }
    Ok((from_vec(&out_shape, vals)?, from_vec(&out_shape, idxs)?))
}

fn top_k(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    if x.shape().is_empty() {
        return Err(inv("TopK of a scalar"));
    }
    let axis = axis_in(ctx.int("axis", -1), x.shape().len())?;
    let k = if ctx.opset >= 10 {
        scalar_i64(ctx, inputs, 1)?
    } else {
        ctx.int_opt("k").ok_or_else(|| inv("TopK needs k"))?
    };
    let k = usize::try_from(k).map_err(|_| inv(format!("TopK: negative k {k}")))?;
    let largest = ctx.int("largest", 1) != 0;
    let idx;
    let vals = map_tensor_same!(x, a => {
        let (v, i) = top_k_impl(a, axis, k, largest)?;
        idx = i;
        v
    });
    Ok(vec![
        RtValue::Tensor(vals),
        RtValue::Tensor(TensorValue::I64(idx)),
    ])
}

fn arg_impl<T: Key>(a: &ArrayD<T>, axis: usize, max: bool, last: bool) -> Vec<i64> {
    let (outer, n, inner) = outer_inner(a.shape(), axis);
    let src = contig(a);
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| &src[o * n * inner + j * inner + i];
            let mut best = 0usize;
            for j in 1..n {
                let (b, c) = (at(best), at(j));
                if b.is_nan_key() {
                    if last && c.is_nan_key() {
                        best = j;
                    }
                    continue;
                }
                if c.is_nan_key() {
                    best = j;
                    continue;
                }
                let ord = c.key_cmp(b);
                let better = if max {
                    ord == Ordering::Greater
                } else {
                    ord == Ordering::Less
                };
                if better || (last && ord == Ordering::Equal) {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    out
}

fn arg_reduce(ctx: &OpCtx, inputs: &[Option<RtValue>], max: bool) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let s = x.shape();
    if s.is_empty() {
        return Err(inv("ArgMax/ArgMin of a scalar"));
    }
    let axis = axis_in(ctx.int("axis", 0), s.len())?;
    if s[axis] == 0 {
        return Err(inv("ArgMax/ArgMin over an empty axis"));
    }
    let last = ctx.int("select_last_index", 0) != 0;
    let v = map_tensor!(x, a => arg_impl(a, axis, max, last));
    let mut shape = s.to_vec();
    if ctx.int("keepdims", 1) != 0 {
        shape[axis] = 1;
    } else {
        shape.remove(axis);
    }
    one(TensorValue::I64(from_vec(&shape, v)?))
}

fn arg_max(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    arg_reduce(ctx, inputs, true)
}

fn arg_min(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    arg_reduce(ctx, inputs, false)
}

fn cum_sum_impl<T: Num + Default>(
    a: &ArrayD<T>,
    axis: usize,
    exclusive: bool,
    reverse: bool,
) -> Result<ArrayD<T>, OpError> {
    let (outer, n, inner) = outer_inner(a.shape(), axis);
    let src = contig(a);
    let mut out = vec![T::default(); src.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::default();
            for step in 0..n {
                let j = if reverse { n - 1 - step } else { step };
                let at = o * n * inner + j * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = acc.add(src[at]);
                } else {
                    acc = acc.add(src[at]);
                    out[at] = acc;
                }
            }
        }
    }
    from_vec(a.shape(), out)
}

fn cum_sum(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    if x.shape().is_empty() {
        return Err(inv("CumSum of a scalar"));
    }
    let axis = axis_in(scalar_i64(ctx, inputs, 1)?, x.shape().len())?;
    let excl = ctx.int("exclusive", 0) != 0;
    let rev = ctx.int("reverse", 0) != 0;
    macro_rules! go {
        ($($v:ident)*) => {
            match x {
                $(T::$v(a) => T::$v(cum_sum_impl(a, axis, excl, rev)?),)*
                T::F16(a) => T::F16(cum_sum_impl(&a.mapv(f16::to_f32), axis, excl, rev)?.mapv(f16::from_f32)),
                T::BF16(a) => T::BF16(cum_sum_impl(&a.mapv(bf16::to_f32), axis, excl, rev)?.mapv(bf16::from_f32)),
                t => return Err(inv(format!("CumSum of {}", t.dtype()))),
            }
        };
    }
    one(go!(F32 F64 I8 I16 I32 I64 U8 U16 U32 U64))
}

fn one_hot(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let ind = ctx.input(inputs, 0)?;
    let idx: Vec<i64> = match ind.to_i64_vec() {
        Some(v) => v,
        None => ind
            .to_f64_vec()
            .ok_or_else(|| inv("OneHot: indices must be numeric"))?
            .into_iter()
            .map(|v| v as i64)
            .collect(),
    };
    let depth_t = ctx.input(inputs, 1)?;
    let depth = depth_t
        .to_f64_vec()
        .and_then(|v| v.first().copied())
        .ok_or_else(|| inv("OneHot: depth must be a numeric scalar"))?;
    if !(depth >= 1.0 && depth <= super::shape::MAX_ELEMS as f64) {
        return Err(inv(format!("OneHot: depth {depth}")));
    }
    let depth = depth as usize;
    let values = ctx.input(inputs, 2)?;
    if values.len() != 2 {
        return Err(inv("OneHot: values must hold [off, on]"));
    }
    let is = ind.shape();
    let axis = axis_in(ctx.int("axis", -1), is.len() + 1)?;
    let mut out_shape = is.to_vec();
    out_shape.insert(axis, depth);
    numel(&out_shape)?;
    let outer: usize = is[..axis].iter().product();
    let inner: usize = is[axis..].iter().product();
    one(map_tensor_same!(values, v => {
        let vs = contig(v);
        from_vec(&out_shape, one_hot_fill(&vs[0], &vs[1], &idx, outer, depth, inner))?
    }))
}

/// The OneHot output as `[outer, depth, inner]`: `on` where the index points.
fn one_hot_fill<T: Clone>(
    off: &T,
    on: &T,
    idx: &[i64],
    outer: usize,
    depth: usize,
    inner: usize,
) -> Vec<T> {
    let d = depth as i64;
    let mut out = vec![off.clone(); outer * depth * inner];
    for o in 0..outer {
        for i in 0..inner {
            let j = idx[o * inner + i];
            let j = if j < 0 { j + d } else { j };
            if (0..d).contains(&j) {
                out[o * depth * inner + j as usize * inner + i] = on.clone();
            }
        }
    }
    out
}

/// Unique's outputs: values, first indices, inverse indices, counts.
type UniqueOut<T> = (ArrayD<T>, Vec<i64>, Vec<i64>, Vec<i64>);

/// Unique slices along `axis` (or elements when `axis` is None).
fn unique_impl<T: Key>(
    a: &ArrayD<T>,
    axis: Option<usize>,
    sorted: bool,
) -> Result<UniqueOut<T>, OpError> {
    let src = contig(a);
    let (shape, (outer, n, inner)) = match axis {
        Some(ax) => (a.shape().to_vec(), outer_inner(a.shape(), ax)),
        None => (vec![src.len()], (1, src.len(), 1)),
    };
    let axis = axis.unwrap_or(0);
    let elem = |j: usize, e: usize| &src[(e / inner) * n * inner + j * inner + e % inner];
    let slice_cmp = |p: usize, q: usize| {
        (0..outer * inner)
            .map(|e| elem(p, e).key_cmp(elem(q, e)))
            .find(|c| c.is_ne())
            .unwrap_or(Ordering::Equal)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&p, &q| slice_cmp(p, q).then(p.cmp(&q)));
    // Groups of equal slices in sorted order: (first occurrence, members).
    let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
    for &j in &order {
        match groups.last_mut() {
            Some((f, m)) if slice_cmp(*f, j) == Ordering::Equal => m.push(j),
            _ => groups.push((j, vec![j])),
        }
    }
    if !sorted {
        groups.sort_by_key(|g| g.0);
    }
    let u = groups.len();
    let mut inverse = vec![0i64; n];
    for (g, (_, members)) in groups.iter().enumerate() {
        for &j in members {
            inverse[j] = g as i64;
        }
    }
    let mut out_shape = shape;
    out_shape[axis] = u;
    let mut out = Vec::with_capacity(outer * u * inner);
    for o in 0..outer {
        for (first, _) in &groups {
            let at = o * n * inner + first * inner;
            out.extend_from_slice(&src[at..at + inner]);
        }
    }
    Ok((
        from_vec(&out_shape, out)?,
        groups.iter().map(|g| g.0 as i64).collect(),
        inverse,
        groups.iter().map(|g| g.1.len() as i64).collect(),
    ))
}

fn unique(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let axis = match ctx.int_opt("axis") {
        Some(a) => Some(axis_in(a, x.shape().len())?),
        None => None,
    };
    if axis.is_some() && x.shape().is_empty() {
        return Err(inv("Unique along an axis of a scalar"));
    }
    let sorted = ctx.int("sorted", 1) != 0;
    let (i, inv_, c);
    let y = map_tensor_same!(x, a => {
        let (y, i_, v_, c_) = unique_impl(a, axis, sorted)?;
        (i, inv_, c) = (i_, v_, c_);
        y
    });
    let v = |v: Vec<i64>| RtValue::Tensor(TensorValue::from_i64(&[v.len()], v));
    Ok(vec![RtValue::Tensor(y), v(i), v(inv_), v(c)])
}

fn compress(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let cond: Vec<bool> = ctx.i64s(inputs, 1)?.iter().map(|&c| c != 0).collect();
    let (shape, axis) = match ctx.int_opt("axis") {
        Some(a) => (x.shape().to_vec(), axis_in(a, x.shape().len())?),
        None => (vec![x.len()], 0),
    };
    if shape.is_empty() {
        return Err(inv("Compress of a scalar along an axis"));
    }
    let (outer, n, inner) = outer_inner(&shape, axis);
    if cond.iter().skip(n).any(|&c| c) {
        return Err(inv("Compress: condition selects past the end of the axis"));
    }
    let keep: Vec<usize> = (0..n).filter(|&j| cond.get(j) == Some(&true)).collect();
    let mut out_shape = shape;
    out_shape[axis] = keep.len();
    one(map_tensor_same!(x, a => {
        let src = contig(a);
        let mut out = Vec::with_capacity(outer * keep.len() * inner);
        for o in 0..outer {
            for &j in &keep {
                let at = o * n * inner + j * inner;
                out.extend_from_slice(&src[at..at + inner]);
            }
        }
        from_vec(&out_shape, out)?
    }))
}

fn reverse_sequence(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let lens = ctx.i64s(inputs, 1)?;
    let s = x.shape();
    if s.len() < 2 {
        return Err(inv("ReverseSequence needs rank 2 or more"));
    }
    let ba = axis_in(ctx.int("batch_axis", 1), s.len())?;
    let ta = axis_in(ctx.int("time_axis", 0), s.len())?;
    if ba == ta || ba > 1 || ta > 1 {
        return Err(inv(
            "ReverseSequence: batch_axis and time_axis must be 0 and 1",
        ));
    }
    let (batch, time) = (s[ba], s[ta]);
    if lens.len() != batch {
        return Err(inv(
            "ReverseSequence: one sequence length per batch entry needed",
        ));
    }
    let lens: Vec<usize> = lens
        .iter()
        .map(|&l| usize::try_from(l).ok().filter(|&l| l <= time))
        .collect::<Option<_>>()
        .ok_or_else(|| inv("ReverseSequence: sequence length out of range"))?;
    let inner: usize = s[2..].iter().product();
    // Flat offset of (batch b, time t).
    let off = |b: usize, t: usize| {
        if ba == 0 {
            (b * time + t) * inner
        } else {
            (t * batch + b) * inner
        }
    };
    one(map_tensor_same!(x, a => {
        let src = contig(a);
        let mut out = src.to_vec();
        for (b, &l) in lens.iter().enumerate() {
            for t in 0..l {
                let (d, f) = (off(b, t), off(b, l - 1 - t));
                out[d..d + inner].clone_from_slice(&src[f..f + inner]);
            }
        }
        from_vec(s, out)?
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_largest_ties() {
        let a = from_vec(&[5], vec![1.0f32, 3.0, 3.0, f32::NAN, 0.0]).unwrap();
        let (v, i) = top_k_impl(&a, 0, 3, true).unwrap();
        assert!(v[[0]].is_nan());
        assert_eq!(i.as_slice().unwrap(), &[3, 1, 2]);
        let (_, i) = top_k_impl(&a, 0, 2, false).unwrap();
        assert_eq!(i.as_slice().unwrap(), &[4, 0]);
    }

    #[test]
    fn arg_last_index() {
        let a = from_vec(&[2, 3], vec![1, 5, 5, 2, 2, 0]).unwrap();
        assert_eq!(arg_impl(&a, 1, true, false), vec![1, 0]);
        assert_eq!(arg_impl(&a, 1, true, true), vec![2, 1]);
        assert_eq!(arg_impl(&a, 0, false, false), vec![0, 1, 1]);
    }

    #[test]
    fn unique_unsorted() {
        let a = from_vec(&[6], vec![2, 1, 1, 3, 4, 3]).unwrap();
        let (y, i, inv_, c) = unique_impl(&a, None, false).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[2, 1, 3, 4]);
        assert_eq!(i, vec![0, 1, 3, 4]);
        assert_eq!(inv_, vec![0, 1, 1, 2, 3, 2]);
        assert_eq!(c, vec![1, 2, 2, 1]);
    }

    #[test]
    fn cum_sum_exclusive_reverse() {
        let a = from_vec(&[4], vec![1i64, 2, 3, 4]).unwrap();
        let out = cum_sum_impl(&a, 0, true, true).unwrap();
        assert_eq!(out.as_slice().unwrap(), &[9, 7, 4, 0]);
    }
}
