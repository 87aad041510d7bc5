//! Indexed reads and writes: Gather, GatherElements, GatherND, ScatterElements,
//! ScatterND and the deprecated Scatter.
//!
//! Indices may be negative (counted from the end of their axis); an index out of
//! range is an error (`OpError::Invalid`), never a panic. Gathers and plain
//! scatters work for every element type; scatter reductions (`add`, `mul`,
//! `max`, `min`) need a numeric type: integers wrap, half types compute in f32.
//!
//! Decisions where the spec is loose:
//! - Duplicate indices with `reduction="none"` apply in index order, so the last
//!   update wins (as the reference implementation does).
//! - GatherElements / ScatterElements require the indices (and updates) to be no
//!   larger than the data on the non-indexed axes; there is no broadcasting.

use super::shape::{axis_in, contig, from_vec, inv, numel, outer_inner, strides_of};
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::map_tensor_same;
use half::{bf16, f16};
use ndarray::ArrayD;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Gather", gather);
    r.add("GatherElements", gather_elements);
    r.add("GatherND", gather_nd);
    r.add("ScatterElements", scatter_elements);
    r.add("Scatter", scatter_elements);
    r.add("ScatterND", scatter_nd);
}

/// Numeric element types: the arithmetic reductions and accumulations need.
pub(crate) trait Num: Copy {
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
}

macro_rules! num_int {
    ($($t:ty)*) => {$(
        impl Num for $t {
            fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            fn max(self, o: Self) -> Self { Ord::max(self, o) }
            fn min(self, o: Self) -> Self { Ord::min(self, o) }
        }
    )*};
}
num_int!(i8 i16 i32 i64 u8 u16 u32 u64);

macro_rules! num_float {
    ($($t:ty)*) => {$(
        impl Num for $t {
            fn add(self, o: Self) -> Self { self + o }
            fn mul(self, o: Self) -> Self { self * o }
            fn max(self, o: Self) -> Self { if self.is_nan() || o.is_nan() { <$t>::NAN } else { <$t>::max(self, o) } }
            fn min(self, o: Self) -> Self { if self.is_nan() || o.is_nan() { <$t>::NAN } else { <$t>::min(self, o) } }
        }
    )*};
}
num_float!(f32 f64);

macro_rules! num_half {
    ($($t:ty)*) => {$(
        impl Num for $t {
            fn add(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() + o.to_f32()) }
            fn mul(self, o: Self) -> Self { <$t>::from_f32(self.to_f32() * o.to_f32()) }
            fn max(self, o: Self) -> Self { <$t>::from_f32(Num::max(self.to_f32(), o.to_f32())) }
            fn min(self, o: Self) -> Self { <$t>::from_f32(Num::min(self.to_f32(), o.to_f32())) }
        }
    )*};
}
num_half!(f16 bf16);

/// Applies `$body` to two tensors of one element type, bound as `$x`, `$y`,
/// re-wrapping the result; `$vars` lists the variants accepted.
macro_rules! map_pair {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr; $($var:ident)*) => {
        match ($a, $b) {
            $((TensorValue::$var($x), TensorValue::$var($y)) => TensorValue::$var($body),)*
            (p, q) => {
                return Err(OpError::Invalid(format!(
                    "not defined for element types {} and {}",
                    p.dtype(),
                    q.dtype()
                )))
            }
        }
    };
}

/// Index `i` normalised against `dim` (negative counts from the end).
pub(crate) fn fix_index(i: i64, dim: usize) -> Result<usize, OpError> {
    let d = dim as i64;
    let j = if i < 0 { i.saturating_add(d) } else { i };
    if (0..d).contains(&j) {
        Ok(j as usize)
    } else {
        Err(inv(format!(
            "index {i} is out of range for dimension {dim}"
        )))
    }
}

fn index_input(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
) -> Result<(Vec<i64>, Vec<usize>), OpError> {
    let t = ctx.input(inputs, i)?;
    let v = t
        .to_i64_vec()
        .ok_or_else(|| inv(format!("input {i} (indices) must be an integer tensor")))?;
    Ok((v, t.shape().to_vec()))
}

fn gather(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (idx, ishape) = index_input(ctx, inputs, 1)?;
    let s = x.shape();
    if s.is_empty() {
        return Err(inv("Gather from a scalar"));
    }
    let axis = axis_in(ctx.int("axis", 0), s.len())?;
    let (outer, dim, inner) = outer_inner(s, axis);
    let idx: Vec<usize> = idx
        .iter()
        .map(|&i| fix_index(i, dim))
        .collect::<Result<_, _>>()?;
    let mut out_shape = s[..axis].to_vec();
    out_shape.extend_from_slice(&ishape);
    out_shape.extend_from_slice(&s[axis + 1..]);
    let total = numel(&out_shape)?;
    one(map_tensor_same!(x, a => {
        let src = contig(a);
        let mut out = Vec::with_capacity(total);
        for o in 0..outer {
            let base = o * dim * inner;
            for &i in &idx {
                let at = base + i * inner;
                out.extend_from_slice(&src[at..at + inner]);
            }
        }
        from_vec(&out_shape, out)?
    }))
}

/// For GatherElements / ScatterElements: the flat data offset of every index
/// element, in the index tensor's row-major order.
fn element_offsets(
    data_shape: &[usize],
    ishape: &[usize],
    idx: &[i64],
    axis: usize,
) -> Result<Vec<usize>, OpError> {
    if ishape.len() != data_shape.len() {
        return Err(inv(format!(
            "indices rank {} differs from data rank {}",
            ishape.len(),
            data_shape.len()
        )));
    }
    for (k, (&i, &d)) in ishape.iter().zip(data_shape).enumerate() {
        if k != axis && i > d {
            return Err(inv(format!(
                "indices shape {ishape:?} exceeds data shape {data_shape:?}"
            )));
        }
    }
    let ds = strides_of(data_shape);
    let mut pos = vec![0usize; ishape.len()];
    let mut out = Vec::with_capacity(idx.len());
    for &i in idx {
        let mut off = 0;
        for k in 0..pos.len() {
            let c = if k == axis {
                fix_index(i, data_shape[k])?
            } else {
                pos[k]
            };
            off += c * ds[k];
        }
        out.push(off);
        // Advance the row-major position over the index shape.
        for k in (0..pos.len()).rev() {
            pos[k] += 1;
            if pos[k] < ishape[k] {
                break;
            }
            pos[k] = 0;
        }
    }
    Ok(out)
}

fn gather_elements(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (idx, ishape) = index_input(ctx, inputs, 1)?;
    let axis = axis_in(ctx.int("axis", 0), x.shape().len())?;
    let offs = element_offsets(x.shape(), &ishape, &idx, axis)?;
    one(map_tensor_same!(x, a => {
        let src = contig(a);
        from_vec(&ishape, take(&src, &offs))?
    }))
}

/// The elements of `src` at `offs`.
fn take<T: Clone>(src: &[T], offs: &[usize]) -> Vec<T> {
    offs.iter().map(|&o| src[o].clone()).collect()
}

/// For GatherND / ScatterND: the flat offset of every addressed slice and the
/// slice length, with `batch_dims` leading batch axes.
fn nd_offsets(
    data_shape: &[usize],
    ishape: &[usize],
    idx: &[i64],
    batch_dims: usize,
) -> Result<(Vec<usize>, usize), OpError> {
    let q = ishape.len();
    let r = data_shape.len();
    let m = *ishape
        .last()
        .ok_or_else(|| inv("indices must have rank 1 or more"))?;
    if batch_dims >= q || batch_dims >= r || m > r - batch_dims {
        return Err(inv(format!(
            "indices shape {ishape:?} and batch_dims {batch_dims} do not fit data shape {data_shape:?}"
        )));
    }
    if ishape[..batch_dims] != data_shape[..batch_dims] {
        return Err(inv("batch dimensions of data and indices differ"));
    }
    let ds = strides_of(data_shape);
    let slice: usize = data_shape[batch_dims + m..].iter().product();
    let batch_size: usize = data_shape[batch_dims..].iter().product();
    let per_batch: usize = ishape[batch_dims..q - 1].iter().product();
    let mut offs = Vec::with_capacity(idx.len() / m.max(1));
    let tuples = idx
        .len()
        .checked_div(m)
        .unwrap_or_else(|| ishape[..q - 1].iter().product());
    for t in 0..tuples {
        let b = t.checked_div(per_batch).unwrap_or(0);
        let mut off = b * batch_size;
        for k in 0..m {
            off += fix_index(idx[t * m + k], data_shape[batch_dims + k])? * ds[batch_dims + k];
        }
        offs.push(off);
    }
    Ok((offs, slice))
}

fn gather_nd(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (idx, ishape) = index_input(ctx, inputs, 1)?;
    let b = usize::try_from(ctx.int("batch_dims", 0)).map_err(|_| inv("negative batch_dims"))?;
    let s = x.shape();
    let (offs, slice) = nd_offsets(s, &ishape, &idx, b)?;
    let m = ishape[ishape.len() - 1];
    let mut out_shape = ishape[..ishape.len() - 1].to_vec();
    out_shape.extend_from_slice(&s[b + m..]);
    numel(&out_shape)?;
    one(map_tensor_same!(x, a => {
        let src = contig(a);
        let mut out = Vec::with_capacity(offs.len() * slice);
        for &o in &offs {
            out.extend_from_slice(&src[o..o + slice]);
        }
        from_vec(&out_shape, out)?
    }))
}

#[derive(Clone, Copy, PartialEq)]
enum Reduction {
    None,
    Add,
    Mul,
    Max,
    Min,
}

fn reduction(ctx: &OpCtx) -> Result<Reduction, OpError> {
    Ok(match ctx.string("reduction").as_deref() {
        None | Some("none") => Reduction::None,
        Some("add") => Reduction::Add,
        Some("mul") => Reduction::Mul,
        Some("max") => Reduction::Max,
        Some("min") => Reduction::Min,
        Some(r) => return Err(inv(format!("unknown reduction '{r}'"))),
    })
}

/// Writes `upd[k]` into the slices of length `slice` at `offs[k]`.
fn scatter_copy<T: Clone>(
    data: &ArrayD<T>,
    upd: &ArrayD<T>,
    offs: &[usize],
    slice: usize,
) -> Result<ArrayD<T>, OpError> {
    let mut out = contig(data).into_owned();
    let u = contig(upd);
    if u.len() != offs.len() * slice {
        return Err(inv("updates do not match the indices"));
    }
    for (k, &o) in offs.iter().enumerate() {
        out[o..o + slice].clone_from_slice(&u[k * slice..(k + 1) * slice]);
    }
    from_vec(data.shape(), out)
}

fn scatter_reduce<T: Num>(
    data: &ArrayD<T>,
    upd: &ArrayD<T>,
    offs: &[usize],
    slice: usize,
    red: Reduction,
) -> Result<ArrayD<T>, OpError> {
    let mut out = contig(data).into_owned();
    let u = contig(upd);
    if u.len() != offs.len() * slice {
        return Err(inv("updates do not match the indices"));
    }
    let f: fn(T, T) -> T = match red {
        Reduction::Add => T::add,
        Reduction::Mul => T::mul,
        Reduction::Max => T::max,
        Reduction::Min => T::min,
        Reduction::None => |_, b| b,
    };
    for (k, &o) in offs.iter().enumerate() {
        for (d, &s) in out[o..o + slice]
            .iter_mut()
            .zip(&u[k * slice..(k + 1) * slice])
        {
            *d = f(*d, s);
        }
    }
    from_vec(data.shape(), out)
}

fn scatter_any(
    x: &TensorValue,
    u: &TensorValue,
    offs: &[usize],
    slice: usize,
    red: Reduction,
) -> Result<TensorValue, OpError> {
    Ok(if red == Reduction::None {
        map_pair!(x, u, (a, b) => scatter_copy(a, b, offs, slice)?;
            F32 F64 F16 BF16 I8 I16 I32 I64 U8 U16 U32 U64 Bool Str)
    } else {
        map_pair!(x, u, (a, b) => scatter_reduce(a, b, offs, slice, red)?;
            F32 F64 F16 BF16 I8 I16 I32 I64 U8 U16 U32 U64)
    })
}

fn scatter_elements(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (idx, ishape) = index_input(ctx, inputs, 1)?;
    let u = ctx.input(inputs, 2)?;
    if u.shape() != ishape.as_slice() {
        return Err(inv(format!(
            "updates shape {:?} differs from indices shape {ishape:?}",
            u.shape()
        )));
    }
    let axis = axis_in(ctx.int("axis", 0), x.shape().len())?;
    let offs = element_offsets(x.shape(), &ishape, &idx, axis)?;
    one(scatter_any(x, u, &offs, 1, reduction(ctx)?)?)
}

fn scatter_nd(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (idx, ishape) = index_input(ctx, inputs, 1)?;
    let u = ctx.input(inputs, 2)?;
    let (offs, slice) = nd_offsets(x.shape(), &ishape, &idx, 0)?;
    let m = ishape[ishape.len() - 1];
    let mut want = ishape[..ishape.len() - 1].to_vec();
    want.extend_from_slice(&x.shape()[m..]);
    if u.shape() != want.as_slice() {
        return Err(inv(format!(
            "updates shape {:?} should be {want:?}",
            u.shape()
        )));
    }
    one(scatter_any(x, u, &offs, slice, reduction(ctx)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nd_offsets_batch() {
        // data [2,2,2], indices [2,1,1] with batch_dims 1.
        let (offs, slice) = nd_offsets(&[2, 2, 2], &[2, 1, 1], &[1, 0], 1).unwrap();
        assert_eq!(slice, 2);
        assert_eq!(offs, vec![2, 4]);
        assert!(nd_offsets(&[2, 2], &[1, 1], &[5], 0).is_err());
    }

    #[test]
    fn element_offsets_axis1() {
        // data [2,3], indices [[-1, 0], [1, 2]] on axis 1.
        let offs = element_offsets(&[2, 3], &[2, 2], &[-1, 0, 1, 2], 1).unwrap();
        assert_eq!(offs, vec![2, 0, 4, 5]);
    }

    #[test]
    fn reduce_duplicates() {
        let d = from_vec(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
        let u = from_vec(&[2], vec![10.0f32, 20.0]).unwrap();
        let out = scatter_reduce(&d, &u, &[1, 1], 1, Reduction::Add).unwrap();
        assert_eq!(out.as_slice().unwrap(), &[1.0, 32.0, 3.0]);
    }

    /// Every kernel of the shape, index and gather families, fed hostile inputs
    /// and attributes, must return (Ok or Err), never panic.
    #[test]
    fn hostile_inputs_do_not_panic() {
        use crate::ir::attr::{Attr, AttrValue};
        use crate::ir::graph::Node;
        let node = |op: &str, attrs: Vec<(&str, AttrValue)>, n_out: usize| Node {
            outputs: vec![None; n_out],
            ..Node::new(
                op,
                "",
                attrs.into_iter().map(|(n, v)| Attr::new(n, v)).collect(),
            )
        };
        let reg = crate::ops::OpRegistry::standard();
        let f = |s: &[usize]| {
            let n = s.iter().product();
            RtValue::Tensor(TensorValue::from_f32(s, (0..n).map(|v| v as f32).collect()))
        };
        let i = |s: &[usize], v: Vec<i64>| RtValue::Tensor(TensorValue::from_i64(s, v));
        let big = i64::MAX;
        let tensors = vec![
            f(&[]),
            f(&[0]),
            f(&[2, 3]),
            f(&[1, 4, 2, 2]),
            i(&[], vec![big]),
            i(&[2], vec![-big, big]),
            i(&[1], vec![i64::MIN]),
            i(&[4], vec![0, -1, 3, 1 << 40]),
            i(&[2, 1], vec![-7, 9]),
            i(&[8], vec![big, big, big, big, i64::MIN, i64::MIN, 0, 0]),
        ];
        let attr_sets: Vec<Vec<(&str, AttrValue)>> = vec![
            vec![],
            vec![
                ("axis", AttrValue::Int(big)),
                ("blocksize", AttrValue::Int(big)),
            ],
            vec![
                ("axis", AttrValue::Int(-1)),
                ("blocksize", AttrValue::Int(2)),
                ("k", AttrValue::Int(big)),
            ],
            vec![
                ("perm", AttrValue::Ints(vec![0, 0])),
                ("mode", AttrValue::String("reflect".into())),
            ],
            vec![
                ("batch_dims", AttrValue::Int(1)),
                ("mode", AttrValue::String("wrap".into())),
            ],
            vec![
                ("reduction", AttrValue::String("mul".into())),
                ("num_outputs", AttrValue::Int(3)),
            ],
        ];
        let ops = [
            "Identity",
            "Shape",
            "Size",
            "Reshape",
            "Flatten",
            "Squeeze",
            "Unsqueeze",
            "Transpose",
            "Expand",
            "Concat",
            "Split",
            "Slice",
            "Tile",
            "Pad",
            "ConstantOfShape",
            "Range",
            "EyeLike",
            "Trilu",
            "DepthToSpace",
            "SpaceToDepth",
            "NonZero",
            "TopK",
            "ArgMax",
            "ArgMin",
            "CumSum",
            "OneHot",
            "Unique",
            "Compress",
            "ReverseSequence",
            "Gather",
            "GatherElements",
            "GatherND",
            "ScatterElements",
            "ScatterND",
            "Scatter",
        ];
        for op in ops {
            let k = reg.get("", op).unwrap();
            for attrs in &attr_sets {
                let n = node(op, attrs.clone(), 2);
                for opset in [9, 18] {
                    let ctx = OpCtx { node: &n, opset };
                    for a in &tensors {
                        for b in &tensors {
                            let _ = k(&ctx, &[Some(a.clone()), Some(b.clone())]);
                            for c in tensors.iter().step_by(3) {
                                let _ =
                                    k(&ctx, &[Some(a.clone()), Some(b.clone()), Some(c.clone())]);
                                let _ = k(
                                    &ctx,
                                    &[
                                        Some(a.clone()),
                                        Some(b.clone()),
                                        Some(c.clone()),
                                        Some(b.clone()),
                                    ],
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
