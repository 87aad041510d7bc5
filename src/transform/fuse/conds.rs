//! The named conditions of rules, written in Rust.
//!
//! A condition reads the match (variables bound to e-classes, the root e-class)
//! and the analysis (types, shapes, constant values), and may compute values the
//! right side uses (`$name`): attribute values or new constants. Arguments are
//! `?var` (an e-class), `$name` (a value: computed here, or read if an earlier
//! condition computed it) and numbers. The table [`CONDITIONS`] lists them with
//! their argument kinds (`v` variable, `b` value, `n` number) and what they check;
//! `passes/README.md` documents them for rule writers.

use super::conds_layout as L;
use super::lang::{approx_eq, norm_axis, splat_of, FuseGraph, Info};
use crate::interp::value::TensorValue;
use crate::ir::attr::AttrValue;
use crate::ir::dtype::DType;
use crate::ir::types::{Dim, DimValue};
use egg::{Id, Subst, Var};
use std::collections::HashMap;

/// An argument of a condition.
#[derive(Clone, Debug)]
pub enum CondArg {
    Var(Var),
    Bind(String),
    Num(f64),
}

/// A value a condition computed.
#[derive(Clone, Debug)]
pub enum Bound {
    Attr(AttrValue),
    Tensor(TensorValue),
    Class(Id),
}

pub type Bindings = HashMap<String, Bound>;

/// What a condition sees.
pub struct CondCtx<'a> {
    pub eg: &'a FuseGraph,
    pub root: Id,
    pub subst: &'a Subst,
}

impl CondCtx<'_> {
    fn info(&self, a: &CondArg) -> Option<&Info> {
        match a {
            CondArg::Var(v) => self.subst.get(*v).map(|&id| &self.eg[id].data),
            _ => None,
        }
    }
    fn class(&self, a: &CondArg) -> Option<Id> {
        match a {
            CondArg::Var(v) => self.subst.get(*v).copied(),
            _ => None,
        }
    }
    fn root_info(&self) -> &Info {
        &self.eg[self.root].data
    }
}

pub type CondFn = fn(&CondCtx, &[CondArg], &mut Bindings) -> bool;

/// Every condition: name, argument kinds, function, description.
pub const CONDITIONS: &[(&str, &str, CondFn, &str)] = &[
    ("opset", "n", opset, "the model's default-domain opset is at least N"),
    ("opset-below", "n", opset_below, "the model's default-domain opset is below N"),
    ("const", "v", is_const, "?x is a constant"),
    ("not-const", "v", not_const, "?x is not a constant"),
    ("float", "v", is_float, "?x has a floating-point element type"),
    ("keeps-shape", "v", keeps_shape, "?x has the (known) shape of the matched expression"),
    ("same-shape", "vv", same_shape, "?a and ?b have the same known shape"),
    ("broadcast-keeps", "vv", broadcast_keeps, "broadcasting ?a with ?b gives ?a's (known) shape"),
    ("broadcast-is-root", "vv", broadcast_is_root, "broadcasting ?a with ?b gives the matched expression's shape"),
    ("scalar", "vb", scalar, "?c is a constant whose elements are all equal; $v is that value (float attribute)"),
    ("positive-scalar", "vb", positive_scalar, "like scalar, and the value is > 0"),
    ("inverse", "vv", inverse, "?a and ?b are all-equal constants with a*b = 1"),
    ("reciprocal", "vb", reciprocal, "?c is a float constant without zeros; $r is 1/?c"),
    ("single-axis", "vvb", single_axis, "?axes is a constant with one axis of ?x; $a is it, normalised (>= 0)"),
    ("softmax-axis", "vvb", softmax_axis, "single-axis, and the opset's Softmax means the same for it (before 13, only the last axis)"),
    ("trailing-axes", "vvb", trailing_axes, "?axes are the last k axes of ?x (k >= 1); $a is -k"),
    ("mean-scale", "vvv", mean_scale, "?c is 1/N, N the element count of ?x over ?axes (a sum times ?c is a mean)"),
    ("keepdims-reshape", "vvv", keepdims_reshape, "the shape ?s (a constant, or a run-time shape of known dims) reshapes a keepdims=0 reduction of ?x over ?axes into its keepdims=1 shape"),
    ("norm-param", "vvbb", norm_param, "?w (a constant, or exactly the normalised shape) broadcasts only over the axes from $a on of ?x; $p is ?w shaped to those axes"),
    ("max-axis-not-last", "vvbbb", axis_to_last, "?axes is one axis of ?x that is not the last; $perm moves it last, $inv moves it back, $a is -1"),
    ("gemm-operands", "vvv", gemm_operands, "?a and ?b are rank 2 and ?c broadcasts to their product's shape (Gemm's C)"),
    ("composed-perm", "vb", L::composed_perm, "the match is a Transpose of a Transpose of ?x; $p is the one perm doing both"),
    ("identity-perm", "v", L::identity_perm, "the match is a Transpose of ?x that keeps every axis in place"),
    ("plain-shape", "v", L::plain_shape, "?s is a constant 1-D shape without 0 entries (a 0 would copy a dim of the Reshape's input)"),
    ("attention-inputs", "vvv", L::attention_inputs, "?q ?k ?v are float [B,Hq,L,E], [B,Hkv,S,E], [B,Hkv,S,Ev] with Hkv = Hq or 1"),
    ("attention-mask", "vvvv", L::attention_mask, "?m is float and broadcasts to the scores' shape [B,Hq,L,S] of ?q ?k ?v without growing it"),
    ("scale-product", "vvb", L::scale_product, "?a and ?b are positive all-equal constants; $s is their product"),
    ("moved-param", "vvbb", moved_param, "?w broadcasts over ?x except along the axis $perm moves last; $p is ?w as a vector along that axis"),
];

/// The condition of a name, with its argument kinds.
pub fn lookup(name: &str) -> Option<(&'static str, CondFn)> {
    CONDITIONS.iter().find(|c| c.0 == name).map(|c| (c.1, c.2))
}

/// Names of every condition.
pub fn names() -> Vec<&'static str> {
    CONDITIONS.iter().map(|c| c.0).collect()
}

fn num(a: &CondArg) -> Option<f64> {
    match a {
        CondArg::Num(n) => Some(*n),
        _ => None,
    }
}

fn bind_name(a: &CondArg) -> Option<&str> {
    match a {
        CondArg::Bind(b) => Some(b),
        _ => None,
    }
}

fn value<'a>(cx: &'a CondCtx, a: &CondArg) -> Option<&'a TensorValue> {
    cx.info(a)?.value.as_deref()
}

fn dims_equal(a: &[Dim], b: &[Dim]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (&x.value, &y.value) {
            (DimValue::Fixed(p), DimValue::Fixed(q)) => p == q,
            (DimValue::Param(p), DimValue::Param(q)) => p == q,
            _ => false,
        })
}

fn opset(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    num(&args[0]).is_some_and(|n| cx.eg.analysis.opset >= n as i64)
}

fn opset_below(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    num(&args[0]).is_some_and(|n| cx.eg.analysis.opset < n as i64)
}

fn gemm_operands(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let rank2 = |a: &CondArg| rank_of(cx, a) == Some(2);
    let (Some(c), Some(r)) = (
        cx.info(&args[2]).and_then(|i| i.shape.as_ref()),
        cx.root_info().shape.as_ref(),
    ) else {
        return false;
    };
    rank2(&args[0])
        && rank2(&args[1])
        && c.len() <= 2
        && super::lang::broadcast(c, r).is_some_and(|s| dims_equal(&s, r))
}

fn is_const(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    value(cx, &args[0]).is_some()
}

fn not_const(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    cx.info(&args[0]).is_some_and(|i| i.value.is_none())
}

pub(super) fn is_float_type(t: Option<DType>) -> bool {
    matches!(t, Some(DType::F32 | DType::F64 | DType::F16 | DType::BF16))
}

fn is_float(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    cx.info(&args[0]).is_some_and(|i| is_float_type(i.dtype))
}

fn keeps_shape(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    match (
        cx.info(&args[0]).and_then(|i| i.shape.as_ref()),
        &cx.root_info().shape,
    ) {
        (Some(a), Some(b)) => dims_equal(a, b),
        _ => false,
    }
}

fn same_shape(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    match (
        cx.info(&args[0]).and_then(|i| i.shape.as_ref()),
        cx.info(&args[1]).and_then(|i| i.shape.as_ref()),
    ) {
        (Some(a), Some(b)) => dims_equal(a, b),
        _ => false,
    }
}

fn broadcast_keeps(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let (Some(a), Some(b)) = (
        cx.info(&args[0]).and_then(|i| i.shape.as_ref()),
        cx.info(&args[1]).and_then(|i| i.shape.as_ref()),
    ) else {
        return false;
    };
    super::lang::broadcast(a, b).is_some_and(|s| dims_equal(&s, a))
}

fn broadcast_is_root(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let (Some(a), Some(b), Some(r)) = (
        cx.info(&args[0]).and_then(|i| i.shape.as_ref()),
        cx.info(&args[1]).and_then(|i| i.shape.as_ref()),
        cx.root_info().shape.as_ref(),
    ) else {
        return false;
    };
    super::lang::broadcast(a, b).is_some_and(|s| dims_equal(&s, r))
}

fn scalar(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(v) = value(cx, &args[0]).and_then(splat_of) else {
        return false;
    };
    if let Some(name) = bind_name(&args[1]) {
        b.insert(name.into(), Bound::Attr(AttrValue::Float(v as f32)));
    }
    true
}

fn positive_scalar(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    value(cx, &args[0])
        .and_then(splat_of)
        .is_some_and(|v| v > 0.0)
        && scalar(cx, args, b)
}

fn inverse(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    match (
        value(cx, &args[0]).and_then(splat_of),
        value(cx, &args[1]).and_then(splat_of),
    ) {
        (Some(a), Some(c)) => approx_eq(a * c, 1.0),
        _ => false,
    }
}

fn reciprocal(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(v) = value(cx, &args[0]) else {
        return false;
    };
    if !is_float_type(Some(v.dtype())) {
        return false;
    }
    let Some(xs) = v.to_f64_vec() else {
        return false;
    };
    if xs.iter().any(|&x| x == 0.0 || !x.is_finite()) {
        return false;
    }
    let shape: Vec<usize> = v.shape().to_vec();
    let r = TensorValue::from_f32(&shape, xs.iter().map(|x| (1.0 / x) as f32).collect());
    let Ok(r) = crate::ops::cast::cast_tensor(&r, v.dtype()) else {
        return false;
    };
    if let Some(name) = bind_name(&args[1]) {
        b.insert(name.into(), Bound::Tensor(r));
    }
    true
}

/// The axes of a constant, normalised against `rank`, sorted.
fn axes_of(cx: &CondCtx, axes: &CondArg, rank: usize) -> Option<Vec<usize>> {
    let v = value(cx, axes)?.to_i64_vec()?;
    let mut out: Vec<usize> = v
        .iter()
        .map(|&a| norm_axis(a, rank))
        .collect::<Option<_>>()?;
    out.sort_unstable();
    out.dedup();
    (out.len() == v.len() && !out.is_empty()).then_some(out)
}

fn rank_of(cx: &CondCtx, x: &CondArg) -> Option<usize> {
    cx.info(x)?.shape.as_ref().map(|s| s.len())
}

fn single_axis(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(rank) = rank_of(cx, &args[1]) else {
        return false;
    };
    match axes_of(cx, &args[0], rank).as_deref() {
        Some(&[a]) => {
            if let Some(name) = bind_name(&args[2]) {
                b.insert(name.into(), Bound::Attr(AttrValue::Int(a as i64)));
            }
            true
        }
        _ => false,
    }
}

fn softmax_axis(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(rank) = rank_of(cx, &args[1]) else {
        return false;
    };
    match axes_of(cx, &args[0], rank).as_deref() {
        Some(&[a]) if cx.eg.analysis.opset >= 13 || a + 1 == rank => {
            if let Some(name) = bind_name(&args[2]) {
                b.insert(name.into(), Bound::Attr(AttrValue::Int(a as i64)));
            }
            true
        }
        _ => false,
    }
}

fn trailing_axes(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(rank) = rank_of(cx, &args[1]) else {
        return false;
    };
    let Some(axes) = axes_of(cx, &args[0], rank) else {
        return false;
    };
    let k = axes.len();
    if axes != ((rank - k)..rank).collect::<Vec<_>>() {
        return false;
    }
    if let Some(name) = bind_name(&args[2]) {
        b.insert(name.into(), Bound::Attr(AttrValue::Int(-(k as i64))));
    }
    true
}

fn mean_scale(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let (Some(c), Some(shape)) = (
        value(cx, &args[0]).and_then(splat_of),
        cx.info(&args[1]).and_then(|i| i.shape.clone()),
    ) else {
        return false;
    };
    let Some(axes) = axes_of(cx, &args[2], shape.len()) else {
        return false;
    };
    let n: Option<i64> = axes.iter().map(|&a| shape[a].as_fixed()).product();
    n.is_some_and(|n| n > 0 && approx_eq(c * n as f64, 1.0))
}

fn keepdims_reshape(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    // The target shape: a constant, or a shape computed at run time whose
    // elements the analysis knows as dims (`Concat(Slice(Shape(x)), [1])` holds
    // `[batch, 1]`), as exporters write keepdims reshapes over a symbolic batch.
    let target: Option<Vec<Dim>> = match value(cx, &args[0]) {
        Some(v) => v
            .to_i64_vec()
            .map(|s| s.into_iter().map(Dim::fixed).collect()),
        None => cx.info(&args[0]).and_then(|i| i.dims_value.clone()),
    };
    let (Some(s), Some(shape)) = (target, cx.info(&args[1]).and_then(|i| i.shape.clone())) else {
        return false;
    };
    let Some(axes) = axes_of(cx, &args[2], shape.len()) else {
        return false;
    };
    if s.len() != shape.len() || s.iter().filter(|d| d.as_fixed() == Some(-1)).count() > 1 {
        return false;
    }
    // The reduced (keepdims=0) input dims, for `0` entries.
    let reduced: Vec<&Dim> = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| !axes.contains(i))
        .map(|(_, d)| d)
        .collect();
    s.iter().enumerate().all(|(i, d)| {
        let want: Option<i64> = if axes.contains(&i) {
            Some(1)
        } else {
            shape[i].as_fixed()
        };
        match &d.value {
            DimValue::Fixed(-1) => true,
            DimValue::Fixed(0) => reduced.get(i).is_some_and(|r| {
                axes.contains(&i) && r.as_fixed() == Some(1)
                    || !axes.contains(&i) && *r == &shape[i]
            }),
            DimValue::Fixed(d) => want == Some(*d),
            // A named dim of the input, kept where it was.
            DimValue::Param(p) => {
                !axes.contains(&i) && matches!(&shape[i].value, DimValue::Param(q) if q == p)
            }
            DimValue::Unknown => false,
        }
    })
}

fn norm_param(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let (Some(w), Some(x)) = (cx.info(&args[0]), cx.info(&args[1])) else {
        return false;
    };
    let (Some(ws), Some(xs)) = (&w.shape, &x.shape) else {
        return false;
    };
    let Some(Bound::Attr(AttrValue::Int(axis))) = bind_name(&args[2]).and_then(|n| b.get(n)) else {
        return false;
    };
    let Some(axis) = norm_axis(*axis, xs.len()) else {
        return false;
    };
    if ws.len() > xs.len() {
        return false;
    }
    let off = xs.len() - ws.len();
    let tail = &xs[axis..];
    for (i, d) in ws.iter().enumerate() {
        let p = off + i;
        let one = d.as_fixed() == Some(1);
        if p < axis && !one {
            return false;
        }
        if p >= axis && !one && !dims_equal(std::slice::from_ref(d), std::slice::from_ref(&xs[p])) {
            return false;
        }
    }
    let out = bind_name(&args[3]).map(str::to_string);
    if dims_equal(ws, tail) {
        if let (Some(name), Some(id)) = (out, cx.class(&args[0])) {
            b.insert(name, Bound::Class(id));
        }
        return true;
    }
    // A constant: broadcast to the normalised shape.
    let Some(v) = w.value.as_deref() else {
        return false;
    };
    let Some(target): Option<Vec<usize>> = tail
        .iter()
        .map(|d| d.as_fixed().map(|n| n as usize))
        .collect()
    else {
        return false;
    };
    let Some(t) = reshape_broadcast(v, &target) else {
        return false;
    };
    if let Some(name) = out {
        b.insert(name, Bound::Tensor(t));
    }
    true
}

/// `v` (whose dims, right-aligned, are 1 or equal to `target`'s) broadcast to
/// exactly `target`.
fn reshape_broadcast(v: &TensorValue, target: &[usize]) -> Option<TensorValue> {
    let xs = v.to_f64_vec()?;
    let vs = v.shape();
    let lead = vs.len().checked_sub(target.len());
    let vdims: Vec<usize> = match lead {
        Some(l) => {
            if vs[..l].iter().any(|&d| d != 1) {
                return None;
            }
            vs[l..].to_vec()
        }
        None => {
            let mut d = vec![1; target.len() - vs.len()];
            d.extend_from_slice(vs);
            d
        }
    };
    let n: usize = target.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let mut rem = flat;
        let mut src = 0usize;
        let mut stride = 1usize;
        let mut idx = vec![0usize; target.len()];
        for k in (0..target.len()).rev() {
            idx[k] = rem % target[k];
            rem /= target[k];
        }
        for k in (0..target.len()).rev() {
            let i = if vdims[k] == 1 { 0 } else { idx[k] };
            src += i * stride;
            stride *= vdims[k];
        }
        out.push(xs[src] as f32);
    }
    let t = TensorValue::from_f32(target, out);
    crate::ops::cast::cast_tensor(&t, v.dtype()).ok()
}

fn axis_to_last(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(rank) = rank_of(cx, &args[1]) else {
        return false;
    };
    let Some(&[a]) = axes_of(cx, &args[0], rank).as_deref() else {
        return false;
    };
    if a + 1 == rank {
        return false;
    }
    let mut perm: Vec<i64> = (0..rank as i64).filter(|&i| i != a as i64).collect();
    perm.push(a as i64);
    let mut inv = vec![0i64; rank];
    for (i, &p) in perm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    let names: Vec<Option<&str>> = args[2..].iter().map(bind_name).collect();
    if let [Some(p), Some(q), Some(ax)] = names[..] {
        b.insert(p.into(), Bound::Attr(AttrValue::Ints(perm)));
        b.insert(q.into(), Bound::Attr(AttrValue::Ints(inv)));
        b.insert(ax.into(), Bound::Attr(AttrValue::Int(-1)));
    }
    true
}

fn moved_param(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let (Some(v), Some(xs)) = (
        value(cx, &args[0]),
        cx.info(&args[1]).and_then(|i| i.shape.clone()),
    ) else {
        return false;
    };
    let Some(Bound::Attr(AttrValue::Ints(perm))) = bind_name(&args[2]).and_then(|n| b.get(n))
    else {
        return false;
    };
    let axis = *perm.last().expect("rank >= 1") as usize;
    let Some(n) = xs[axis].as_fixed() else {
        return false;
    };
    let vs = v.shape();
    if vs.len() > xs.len() {
        return false;
    }
    let off = xs.len() - vs.len();
    for (i, &d) in vs.iter().enumerate() {
        // Size 1 anywhere; the axis' own size along it.
        if d != 1 && (off + i != axis || d as i64 != n) {
            return false;
        }
    }
    let Some(vals) = v.to_f64_vec() else {
        return false;
    };
    let vec: Vec<f32> = if vals.len() == 1 {
        vec![vals[0] as f32; n as usize]
    } else {
        vals.iter().map(|&x| x as f32).collect()
    };
    let t = TensorValue::from_f32(&[n as usize], vec);
    let Ok(t) = crate::ops::cast::cast_tensor(&t, v.dtype()) else {
        return false;
    };
    if let Some(name) = bind_name(&args[3]) {
        b.insert(name.into(), Bound::Tensor(t));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_to_normalised_shape() {
        let v = TensorValue::from_f32(&[1, 3, 1], vec![1.0, 2.0, 3.0]);
        let t = reshape_broadcast(&v, &[3, 2]).unwrap();
        assert_eq!(t.to_f64_vec().unwrap(), vec![1.0, 1.0, 2.0, 2.0, 3.0, 3.0]);
        assert!(reshape_broadcast(&TensorValue::from_f32(&[2, 1], vec![1.0, 2.0]), &[3]).is_none());
    }

    #[test]
    fn every_condition_is_documented_once() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CONDITIONS.len());
        let readme = include_str!("../../../passes/README.md");
        for n in names {
            assert!(
                readme.contains(&format!("`{n}`")),
                "passes/README.md does not document '{n}'"
            );
        }
    }
}
