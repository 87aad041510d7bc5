//! Conditions on layout (Transpose and Reshape chains) and on attention, part of
//! the table in [`super::conds::CONDITIONS`].
//!
//! The Transpose conditions read the attributes of the matched nodes themselves:
//! a pattern's attributes only filter, so `composed-perm` looks in the matched
//! e-class for the Transpose over a Transpose of `?x`. Every node of an e-class
//! computes the same value, so whichever pair it finds gives a correct perm.

use super::conds::{is_float_type, Bindings, Bound, CondArg, CondCtx};
use super::lang::{splat_of, ONode};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::types::{Dim, DimValue};
use egg::Id;

fn class(cx: &CondCtx, a: &CondArg) -> Option<Id> {
    match a {
        CondArg::Var(v) => cx.subst.get(*v).map(|&id| cx.eg.find(id)),
        _ => None,
    }
}

fn bind(a: &CondArg) -> Option<&str> {
    match a {
        CondArg::Bind(b) => Some(b),
        _ => None,
    }
}

fn shape(cx: &CondCtx, a: &CondArg) -> Option<Vec<Dim>> {
    let id = class(cx, a)?;
    cx.eg[id].data.shape.clone()
}

/// The Transpose nodes of e-class `id`: (perm, child), the default perm spelled
/// out when the child's rank is known.
fn transposes(cx: &CondCtx, id: Id) -> Vec<(Vec<i64>, Id)> {
    let mut out = Vec::new();
    for node in &cx.eg[id].nodes {
        let ONode::Op {
            op,
            domain,
            attrs,
            children,
        } = node
        else {
            continue;
        };
        if op.as_str() != "Transpose" || !domain.as_str().is_empty() || children.len() != 1 {
            continue;
        }
        let child = cx.eg.find(children[0]);
        let list: &[Attr] = cx
            .eg
            .analysis
            .attr_sets
            .get(attrs)
            .map(|v| v.as_slice())
            .unwrap_or(&[]);
        let perm = match list.iter().find(|a| a.name == "perm") {
            Some(a) => match &a.value {
                AttrValue::Ints(p) => p.clone(),
                _ => continue,
            },
            None => match &cx.eg[child].data.shape {
                Some(s) => (0..s.len() as i64).rev().collect(),
                None => continue,
            },
        };
        let n = perm.len() as i64;
        let mut seen = vec![false; perm.len()];
        let valid = perm
            .iter()
            .all(|&p| (0..n).contains(&p) && !std::mem::replace(&mut seen[p as usize], true));
        if valid {
            out.push((perm, child));
        }
    }
    out
}

/// `composed-perm ?x $p`: the match is a Transpose of a Transpose of ?x; $p is the
/// one perm that does both (`y[i] = x[q[p[i]]]`).
pub(super) fn composed_perm(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let Some(x) = class(cx, &args[0]) else {
        return false;
    };
    for (outer, t) in transposes(cx, cx.eg.find(cx.root)) {
        for (inner, c) in transposes(cx, t) {
            if c != x || inner.len() != outer.len() {
                continue;
            }
            let perm: Vec<i64> = outer.iter().map(|&p| inner[p as usize]).collect();
            if let Some(name) = bind(&args[1]) {
                b.insert(name.into(), Bound::Attr(AttrValue::Ints(perm)));
            }
            return true;
        }
    }
    false
}

/// `identity-perm ?x`: the match is a Transpose of ?x that keeps every axis.
pub(super) fn identity_perm(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let Some(x) = class(cx, &args[0]) else {
        return false;
    };
    transposes(cx, cx.eg.find(cx.root))
        .iter()
        .any(|(p, c)| *c == x && p.iter().enumerate().all(|(i, &a)| a == i as i64))
}

/// `plain-shape ?s`: ?s is a constant shape without 0 entries (a 0 copies a dim
/// of the Reshape's input, which another Reshape in front would change).
pub(super) fn plain_shape(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let Some(id) = class(cx, &args[0]) else {
        return false;
    };
    let Some(v) = cx.eg[id].data.value.as_deref() else {
        return false;
    };
    match v.to_i64_vec() {
        Some(dims) => v.shape().len() == 1 && !dims.contains(&0),
        None => false,
    }
}

fn fixed(d: &Dim) -> Option<i64> {
    match d.value {
        DimValue::Fixed(n) => Some(n),
        _ => None,
    }
}

fn same_dim(a: &Dim, b: &Dim) -> bool {
    match (&a.value, &b.value) {
        (DimValue::Fixed(p), DimValue::Fixed(q)) => p == q,
        (DimValue::Param(p), DimValue::Param(q)) => p == q,
        _ => false,
    }
}

/// The shape of the attention scores, `[B, Hq, L, S]`, when ?q ?k ?v are 4-D
/// `[B, Hq, L, E]`, `[B, Hkv, S, E]`, `[B, Hkv, S, Ev]` with Hkv equal to Hq or 1
/// (where the MatMuls' broadcasting and Attention's grouped heads agree).
fn scores_shape(cx: &CondCtx, args: &[CondArg]) -> Option<Vec<Dim>> {
    let (q, k, v) = (
        shape(cx, &args[0])?,
        shape(cx, &args[1])?,
        shape(cx, &args[2])?,
    );
    if q.len() != 4 || k.len() != 4 || v.len() != 4 {
        return None;
    }
    let batch = same_dim(&q[0], &k[0]) && same_dim(&k[0], &v[0]);
    let heads = same_dim(&k[1], &v[1])
        && (same_dim(&q[1], &k[1]) || (fixed(&k[1]) == Some(1) && fixed(&q[1]).is_some()));
    let lens = same_dim(&k[2], &v[2]) && same_dim(&q[3], &k[3]);
    (batch && heads && lens).then(|| vec![q[0].clone(), q[1].clone(), q[2].clone(), k[2].clone()])
}

/// `attention-inputs ?q ?k ?v`: see [`scores_shape`]; and the three are float.
pub(super) fn attention_inputs(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let float = args[..3]
        .iter()
        .all(|a| class(cx, a).is_some_and(|id| is_float_type(cx.eg[id].data.dtype)));
    float && scores_shape(cx, args).is_some()
}

/// `attention-mask ?m ?q ?k ?v`: ?m broadcasts to the scores' shape `[B, Hq, L, S]`
/// without growing it, as Attention's `attn_mask` must.
pub(super) fn attention_mask(cx: &CondCtx, args: &[CondArg], _: &mut Bindings) -> bool {
    let (Some(m), Some(scores)) = (shape(cx, &args[0]), scores_shape(cx, &args[1..])) else {
        return false;
    };
    let float = class(cx, &args[0]).is_some_and(|id| is_float_type(cx.eg[id].data.dtype));
    float
        && m.len() <= 4
        && m.iter()
            .rev()
            .zip(scores.iter().rev())
            .all(|(a, s)| fixed(a) == Some(1) || same_dim(a, s))
}

/// `scale-product ?a ?b $s`: ?a and ?b are positive all-equal constants; $s is
/// their product (a scale applied half to Q and half to Kᵀ).
pub(super) fn scale_product(cx: &CondCtx, args: &[CondArg], b: &mut Bindings) -> bool {
    let splat = |a: &CondArg| {
        let id = class(cx, a)?;
        splat_of(cx.eg[id].data.value.as_deref()?).filter(|&v| v > 0.0)
    };
    let (Some(x), Some(y)) = (splat(&args[0]), splat(&args[1])) else {
        return false;
    };
    if let Some(name) = bind(&args[2]) {
        b.insert(name.into(), Bound::Attr(AttrValue::Float((x * y) as f32)));
    }
    true
}
