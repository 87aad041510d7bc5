//! `conv-fold`: a per-channel affine map after a Conv, ConvTranspose, Gemm or
//! MatMul is folded into the producer's constant weights.
//!
//! The follower must be the producer's only reader, and is one of:
//! - `BatchNormalization` in inference form (no statistics outputs, which
//!   mean training before opset 14; `training_mode=0`; scale/B/mean/var constant vectors of one value per channel): the
//!   producer's output is scaled by `s = scale / sqrt(var + epsilon)` and shifted
//!   by `B - mean * s`;
//! - `Mul` or `Div` by a constant (a scale), `Add` or `Sub` of a constant (a
//!   shift), when the constant holds one value per output channel or one value
//!   (shapes `[C,1,1]`, `[1,C,1,1]`, `[1]`, scalar for a Conv; `[N]`, `[1,N]`
//!   for a Gemm/MatMul) and does not widen the output by broadcasting.
//!
//! A Conv's weights are scaled along their output channels (dim 0; for
//! ConvTranspose the output channel of `W[ci, j]` is `group(ci) * W.dim1 + j`)
//! and its bias becomes `bias * scale + shift` (a bias is added when there was
//! none). A Gemm's `B` is scaled per column (respecting `transB`) and `C`
//! becomes `beta * C * scale + shift` with `beta = 1`. A MatMul with a constant
//! 2-D right operand takes scales only (a shift needs a bias: `gemm-fold`).
//! Arithmetic is in f64 and stored back in the weight's type (f32, f64, f16,
//! bf16). A weight read by other nodes is copied, not changed, and only when
//! the copy is small or the size guard is lifted; a weight read only by the
//! producer is rewritten in place (keeping its name).
//!
//! Left alone: integer types, BatchNormalization in training mode or with
//! non-constant parameters, constants that broadcast over spatial dims or the
//! batch, a producer whose output has other readers, ops of other domains.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[1,1,4,4]) -> (%y) {\n  %w = const f32[2,1,1,1] @w [1.0, 2.0]\n  %k = const f32[2,1,1] @k [3.0, 4.0]\n  %c = Conv(%x, %w)\n  %y = Mul(%c, %k)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("conv-fold,dce,init-cleanup").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! ```

use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, NodeId, ValueDef, ValueId};
use crate::ir::types::{Shape, Type};
use crate::pass::edit::{
    add_const_value, const_value, is_onnx, is_op, replace_value, tidy_value_info, use_counts,
    NameGen,
};
use crate::pass::{Pass, PassCtx, PassError};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

pub struct ConvFold;

impl Pass for ConvFold {
    fn name(&self) -> &'static str {
        "conv-fold"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let Ok(order) = g.topo_order() else {
            return Ok(false);
        };
        // Uses are recomputed only after a fold changed the graph.
        let mut uses: Option<Uses> = None;
        let mut folded = 0;
        for n in order {
            // A producer may absorb a chain (BN, then Mul, then Add).
            while g.contains_node(n) {
                let u = uses.get_or_insert_with(|| Uses::of(g));
                if !fold_next(g, cx, u, n) {
                    break;
                }
                folded += 1;
                uses = None;
            }
        }
        if folded > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += folded;
        Ok(folded > 0)
    }
}

/// The fold loop of `pad-fold` and `gemm-fold`: `try_fold` on every `op` node,
/// with uses recomputed only after a fold changed the graph.
pub(super) fn fold_each(
    g: &mut Graph,
    cx: &mut PassCtx,
    op: &str,
    try_fold: fn(&mut Graph, &PassCtx, &Uses, NodeId) -> Option<()>,
) -> bool {
    let nodes: Vec<NodeId> = g
        .nodes()
        .filter(|(_, n)| is_op(n, op))
        .map(|(id, _)| id)
        .collect();
    let mut folded = 0;
    let mut uses: Option<Uses> = None;
    for n in nodes {
        if !g.contains_node(n) {
            continue;
        }
        let u = uses.get_or_insert_with(|| Uses::of(g));
        if try_fold(g, cx, u, n).is_some() {
            folded += 1;
            uses = None;
        }
    }
    if folded > 0 {
        tidy_value_info(g);
    }
    cx.rewrites += folded;
    folded > 0
}

/// Readers of every value, and use counts that include graph outputs and
/// subgraph reads.
pub(super) struct Uses {
    readers: HashMap<ValueId, Vec<(NodeId, usize)>>,
    counts: HashMap<ValueId, usize>,
}

impl Uses {
    pub(super) fn of(g: &Graph) -> Uses {
        Uses {
            readers: g.uses(),
            counts: use_counts(g),
        }
    }
    pub(super) fn count(&self, v: ValueId) -> usize {
        self.counts.get(&v).copied().unwrap_or(0)
    }
    /// The default-domain node that is `v`'s only reader (read once, `v` not a
    /// graph output nor read by a subgraph), with the input slot.
    pub(super) fn sole_reader(&self, g: &Graph, v: ValueId) -> Option<(NodeId, usize)> {
        if self.count(v) != 1 {
            return None;
        }
        match self.readers.get(&v).map(|r| r.as_slice()) {
            Some(&[(n, slot)]) if is_onnx(g.node(n)) => Some((n, slot)),
            _ => None,
        }
    }
}

/// An integer attribute (`default` when absent; `None` when it is a reference
/// to a function attribute or of another kind).
pub(super) fn attr_int(n: &Node, name: &str, default: i64) -> Option<i64> {
    match n.attr(name) {
        None => Some(default),
        Some(a) if a.ref_attr_name.is_some() => None,
        Some(a) => a.value.as_int(),
    }
}

pub(super) fn attr_float(n: &Node, name: &str, default: f32) -> Option<f32> {
    match n.attr(name) {
        None => Some(default),
        Some(a) if a.ref_attr_name.is_some() => None,
        Some(a) => a.value.as_float(),
    }
}

pub(super) fn attr_ints(n: &Node, name: &str) -> Option<Option<Vec<i64>>> {
    match n.attr(name) {
        None => Some(None),
        Some(a) if a.ref_attr_name.is_some() => None,
        Some(a) => a.value.as_ints().map(|v| Some(v.to_vec())),
    }
}

pub(super) fn attr_str(n: &Node, name: &str, default: &str) -> Option<String> {
    match n.attr(name) {
        None => Some(default.to_string()),
        Some(a) if a.ref_attr_name.is_some() => None,
        Some(a) => a
            .value
            .as_str()
            .map(|s| String::from_utf8_lossy(s).into_owned()),
    }
}

/// Sets (or adds) an attribute.
pub(super) fn set_attr(n: &mut Node, a: Attr) {
    match n.attrs.iter_mut().find(|x| x.name == a.name) {
        Some(x) => *x = a,
        None => n.attrs.push(a),
    }
}

pub(super) fn is_float(d: DType) -> bool {
    matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16)
}

/// A float tensor of `dtype` from f64 elements.
pub(super) fn tensor_from_f64(dtype: DType, shape: &[usize], v: &[f64]) -> Option<TensorValue> {
    let s = IxDyn(shape);
    Some(match dtype {
        DType::F32 => {
            TensorValue::F32(ArrayD::from_shape_vec(s, v.iter().map(|&x| x as f32).collect()).ok()?)
        }
        DType::F64 => TensorValue::F64(ArrayD::from_shape_vec(s, v.to_vec()).ok()?),
        DType::F16 => TensorValue::F16(
            ArrayD::from_shape_vec(s, v.iter().map(|&x| half::f16::from_f64(x)).collect()).ok()?,
        ),
        DType::BF16 => TensorValue::BF16(
            ArrayD::from_shape_vec(s, v.iter().map(|&x| half::bf16::from_f64(x)).collect()).ok()?,
        ),
        _ => return None,
    })
}

/// The element type of a value (declared, or of its constant data).
pub(super) fn dtype_of(g: &Graph, v: ValueId) -> Option<DType> {
    if let Some((d, _)) = g.value(v).ty.as_ref().and_then(|t| t.as_tensor()) {
        return Some(d);
    }
    const_value(g, v).map(|t| t.dtype())
}

/// The shape of a value when every dimension is a known number.
pub(super) fn fixed_shape(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    if let Some(t) = const_value(g, v) {
        return Some(t.shape().to_vec());
    }
    let (_, s) = g.value(v).ty.as_ref()?.as_tensor()?;
    s?.dims
        .iter()
        .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect()
}

/// The rank of a value: declared, of its constant data, or what its producer
/// makes plain (a Reshape to a constant shape, Flatten, Gemm), for values whose
/// type inference has not reached yet.
pub(super) fn rank_of(g: &Graph, v: ValueId) -> Option<usize> {
    if let Some((_, Some(s))) = g.value(v).ty.as_ref().and_then(|t| t.as_tensor()) {
        return Some(s.rank());
    }
    if let Some(t) = const_value(g, v) {
        return Some(t.shape().len());
    }
    let n = g.node(g.producer(v)?);
    if is_op(n, "Flatten") || is_op(n, "Gemm") {
        return Some(2);
    }
    if is_op(n, "Reshape") {
        let shape = const_value(g, n.inputs.get(1).copied().flatten()?)?;
        return (shape.shape().len() == 1).then(|| shape.len());
    }
    None
}

/// The values of a constant `k` that broadcasts against an output of rank `rank`
/// along axis `axis` only (size `c`), one per channel; `None` when `k` has
/// another layout or would widen the output.
fn per_channel(k: &TensorValue, rank: usize, axis: usize, c: usize) -> Option<Vec<f64>> {
    let ks = k.shape();
    if ks.len() > rank {
        return None;
    }
    let off = rank - ks.len();
    for (i, &d) in ks.iter().enumerate() {
        let ok = if off + i == axis {
            d == 1 || d == c
        } else {
            d == 1
        };
        if !ok {
            return None;
        }
    }
    let v = k.to_f64_vec()?;
    match v.len() {
        1 => Some(vec![v[0]; c]),
        n if n == c => Some(v),
        _ => None,
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Conv,
    ConvTranspose,
    Gemm,
    MatMul,
}

/// What a producer looks like to the folding: where its channels are and which
/// inputs hold the weight and bias.
struct Host {
    kind: Kind,
    /// The weight (Conv `W`, Gemm/MatMul `B`) when constant.
    w: Option<TensorValue>,
    /// Output channels (Conv) or columns (Gemm/MatMul).
    channels: usize,
    /// Output rank, and the channel axis in it.
    rank: usize,
    axis: usize,
    dtype: DType,
}

fn host_of(g: &Graph, n: NodeId) -> Option<Host> {
    let node = g.node(n);
    let kind = if is_op(node, "Conv") {
        Kind::Conv
    } else if is_op(node, "ConvTranspose") {
        Kind::ConvTranspose
    } else if is_op(node, "Gemm") {
        Kind::Gemm
    } else if is_op(node, "MatMul") {
        Kind::MatMul
    } else {
        return None;
    };
    if node.outputs.len() != 1 || node.outputs[0].is_none() {
        return None;
    }
    let wv = node.inputs.get(1).copied().flatten()?;
    let w = const_value(g, wv);
    let dtype = dtype_of(g, wv)?;
    if !is_float(dtype) {
        return None;
    }
    let ws = fixed_shape(g, wv)?;
    match kind {
        Kind::Conv | Kind::ConvTranspose => {
            if ws.len() < 3 {
                return None;
            }
            let group = usize::try_from(attr_int(node, "group", 1)?).ok()?;
            let channels = if kind == Kind::Conv {
                ws[0]
            } else {
                if group == 0 || ws[0] % group != 0 {
                    return None;
                }
                ws[1] * group
            };
            Some(Host {
                kind,
                w,
                channels,
                rank: ws.len(),
                axis: 1,
                dtype,
            })
        }
        Kind::Gemm => {
            if ws.len() != 2 {
                return None;
            }
            let tb = attr_int(node, "transB", 0)? != 0;
            Some(Host {
                kind,
                w,
                channels: if tb { ws[0] } else { ws[1] },
                rank: 2,
                axis: 1,
                dtype,
            })
        }
        Kind::MatMul => {
            // The right operand must be a constant matrix; the output rank is
            // A's (1 when unknown: then only constants of rank <= 1 fit).
            if ws.len() != 2 || w.is_none() {
                return None;
            }
            let a = node.inputs.first().copied().flatten()?;
            let rank = match rank_of(g, a) {
                Some(r) if r >= 2 => r,
                _ => 1,
            };
            Some(Host {
                kind,
                w,
                channels: ws[1],
                rank,
                axis: rank - 1,
                dtype,
            })
        }
    }
}

/// A per-channel `y * scale + shift`, with the follower's inputs it consumes.
struct Affine {
    scale: Option<Vec<f64>>,
    shift: Option<Vec<f64>>,
}

/// The affine map `r` applies to its input `slot` (the host's output), when it is
/// one `host` can absorb.
fn affine_of(g: &Graph, r: NodeId, slot: usize, host: &Host) -> Option<Affine> {
    let node = g.node(r);
    let c = host.channels;
    let other = |g: &Graph| -> Option<TensorValue> {
        if node.inputs.len() != 2 {
            return None;
        }
        let k = node.inputs[1 - slot]?;
        let t = const_value(g, k)?;
        is_float(t.dtype()).then_some(t)
    };
    match node.op_type.as_str() {
        "BatchNormalization" => {
            if slot != 0 || node.inputs.len() != 5 || node.outputs.is_empty() {
                return None;
            }
            // Statistics outputs mean training before opset 14, and are only
            // computed in training from 14.
            if node.outputs[1..].iter().any(|o| o.is_some()) {
                return None;
            }
            if attr_int(node, "training_mode", 0)? != 0 || attr_int(node, "spatial", 1)? != 1 {
                return None;
            }
            let eps = attr_float(node, "epsilon", 1e-5)? as f64;
            let mut p = vec![];
            for i in 1..5 {
                let t = const_value(g, node.inputs[i]?)?;
                if t.shape() != [c] {
                    return None;
                }
                p.push(t.to_f64_vec()?);
            }
            let s: Vec<f64> = (0..c).map(|i| p[0][i] / (p[3][i] + eps).sqrt()).collect();
            let t: Vec<f64> = (0..c).map(|i| p[1][i] - p[2][i] * s[i]).collect();
            if s.iter().chain(&t).any(|v| !v.is_finite()) {
                return None;
            }
            Some(Affine {
                scale: Some(s),
                shift: Some(t),
            })
        }
        "Mul" | "Div" | "Add" | "Sub" => {
            if node.op_type != "Mul" && node.op_type != "Add" && slot != 0 {
                return None;
            }
            let k = per_channel(&other(g)?, host.rank, host.axis, c)?;
            Some(match node.op_type.as_str() {
                "Mul" => Affine {
                    scale: Some(k),
                    shift: None,
                },
                "Div" => {
                    if k.contains(&0.0) {
                        return None;
                    }
                    Affine {
                        scale: Some(k.iter().map(|v| 1.0 / v).collect()),
                        shift: None,
                    }
                }
                "Add" => Affine {
                    scale: None,
                    shift: Some(k),
                },
                _ => Affine {
                    scale: None,
                    shift: Some(k.iter().map(|v| -v).collect()),
                },
            })
        }
        _ => None,
    }
}

/// `w` scaled along the host's output channels.
fn scale_weight(host: &Host, node: &Node, w: &TensorValue, s: &[f64]) -> Option<TensorValue> {
    let shape = w.shape().to_vec();
    let mut v = w.to_f64_vec()?;
    let c = host.channels;
    match host.kind {
        Kind::Conv => {
            let block = v.len() / c.max(1);
            for (i, x) in v.iter_mut().enumerate() {
                *x *= s[i / block];
            }
        }
        Kind::ConvTranspose => {
            let group = usize::try_from(attr_int(node, "group", 1)?).ok()?;
            let per_group_in = shape[0] / group;
            let ksize: usize = shape[2..].iter().product();
            let (m, inner) = (shape[1], shape[1] * ksize);
            if inner == 0 {
                return None;
            }
            for (i, x) in v.iter_mut().enumerate() {
                let ci = i / inner;
                let j = (i / ksize) % m;
                *x *= s[(ci / per_group_in) * m + j];
            }
        }
        Kind::Gemm | Kind::MatMul => {
            let tb = host.kind == Kind::Gemm && attr_int(node, "transB", 0)? != 0;
            let cols = shape[1];
            for (i, x) in v.iter_mut().enumerate() {
                *x *= s[if tb { i / cols } else { i % cols }];
            }
        }
    }
    tensor_from_f64(w.dtype(), &shape, &v)
}

/// A planned replacement of one input of the host.
struct Edit {
    slot: usize,
    value: TensorValue,
}

/// Folds the sole reader of `n`'s output into `n`; returns whether it did.
fn fold_next(g: &mut Graph, cx: &PassCtx, uses: &Uses, n: NodeId) -> bool {
    try_fold(g, cx, uses, n).is_some()
}

/// Whether the constant `v` can be rewritten in place: a dense initializer read
/// once (by the host).
fn in_place(g: &Graph, uses: &Uses, v: ValueId) -> bool {
    g.value(v).def == ValueDef::Const
        && g.initializers.contains(&v)
        && matches!(g.value(v).init, Some(Initializer::Dense(_)))
        && uses.count(v) == 1
}

fn const_bytes(g: &Graph, v: ValueId) -> i64 {
    match crate::pass::edit::const_tensor(g, v) {
        Some(t) => t.byte_size() as i64,
        None => const_value(g, v).map_or(0, |t| t.byte_size() as i64),
    }
}

fn try_fold(g: &mut Graph, cx: &PassCtx, uses: &Uses, n: NodeId) -> Option<()> {
    // Cheap checks first: the weights are decoded only for a foldable reader.
    let (reader, _) = uses.sole_reader(g, g.node(n).outputs.first().copied().flatten()?)?;
    if !["BatchNormalization", "Mul", "Add", "Sub", "Div"]
        .iter()
        .any(|op| is_op(g.node(reader), op))
    {
        return None;
    }
    let host = host_of(g, n)?;
    if host.kind == Kind::Gemm && cx.opset < 7 {
        return None;
    }
    let y = g.node(n).outputs[0]?;
    let (r, slot) = uses.sole_reader(g, y)?;
    if is_op(g.node(r), "BatchNormalization") && host.axis != 1 {
        return None;
    }
    let aff = affine_of(g, r, slot, &host)?;
    let r_out = g.node(r).outputs.first().copied().flatten()?;
    let node = g.node(n).clone();
    let c = host.channels;
    let mut edits = vec![];
    let mut beta_one = false;
    if let Some(s) = &aff.scale {
        let w = host.w.as_ref()?;
        edits.push(Edit {
            slot: 1,
            value: scale_weight(&host, &node, w, s)?,
        });
    }
    let affine = |x: f64, j: usize| {
        let x = aff.scale.as_ref().map_or(x, |s| x * s[j]);
        aff.shift.as_ref().map_or(x, |t| x + t[j])
    };
    let bias = node.inputs.get(2).copied().flatten();
    match host.kind {
        Kind::MatMul => {
            if aff.shift.is_some() {
                return None;
            }
        }
        Kind::Conv | Kind::ConvTranspose => {
            let old = match bias {
                Some(b) => {
                    let t = const_value(g, b)?;
                    if t.shape() != [c] {
                        return None;
                    }
                    Some(t.to_f64_vec()?)
                }
                None => None,
            };
            if old.is_some() || aff.shift.is_some() {
                let old = old.unwrap_or_else(|| vec![0.0; c]);
                let b: Vec<f64> = (0..c).map(|j| affine(old[j], j)).collect();
                edits.push(Edit {
                    slot: 2,
                    value: tensor_from_f64(host.dtype, &[c], &b)?,
                });
            }
        }
        Kind::Gemm => {
            let beta = attr_float(&node, "beta", 1.0)? as f64;
            match bias {
                Some(b) => {
                    let t = const_value(g, b)?;
                    if !is_float(t.dtype()) {
                        return None;
                    }
                    let cs = t.shape().to_vec();
                    let vals = t.to_f64_vec()?;
                    let (rows, cols) = match cs.len() {
                        0 => (1, 1),
                        1 => (1, cs[0]),
                        2 => (cs[0], cs[1]),
                        _ => return None,
                    };
                    // C of [M,1] would widen to [M,N].
                    if (cols != 1 && cols != c) || rows * c > vals.len().max(c) {
                        return None;
                    }
                    let mut out = Vec::with_capacity(rows * c);
                    for m in 0..rows {
                        for j in 0..c {
                            let x = vals[m * cols + if cols == 1 { 0 } else { j }];
                            // beta = 0 ignores C, even where it is not finite.
                            out.push(affine(if beta == 0.0 { 0.0 } else { beta * x }, j));
                        }
                    }
                    let shape: Vec<usize> = if cs.len() == 2 {
                        vec![rows, c]
                    } else {
                        vec![c]
                    };
                    edits.push(Edit {
                        slot: 2,
                        value: tensor_from_f64(t.dtype(), &shape, &out)?,
                    });
                    beta_one = beta != 1.0;
                }
                None => {
                    if let Some(t) = &aff.shift {
                        if cx.opset < 11 {
                            return None;
                        }
                        edits.push(Edit {
                            slot: 2,
                            value: tensor_from_f64(host.dtype, &[c], t)?,
                        });
                        beta_one = beta != 1.0;
                    }
                }
            }
        }
    }
    // The size guard: copies of shared weights and new biases must stay small,
    // counting the constants that become unused.
    let mut growth: i64 = 0;
    for e in &edits {
        let new = e.value.byte_size() as i64;
        match node.inputs.get(e.slot).copied().flatten() {
            Some(old) if in_place(g, uses, old) => growth += new - const_bytes(g, old),
            Some(old) if uses.count(old) == 1 => growth += new - const_bytes(g, old),
            _ => growth += new,
        }
    }
    for &k in g.node(r).inputs.iter().flatten() {
        if k != y && uses.count(k) == 1 {
            growth -= const_bytes(g, k);
        }
    }
    if cx.options.size_guard && growth > cx.options.fold_small_bytes as i64 {
        return None;
    }
    let mut names: Option<NameGen> = None;
    for e in edits {
        let old = g.node(n).inputs.get(e.slot).copied().flatten();
        match old {
            Some(o) if in_place(g, uses, o) => {
                let name = g.value(o).name.clone();
                let dims: Vec<i64> = e.value.shape().iter().map(|&d| d as i64).collect();
                let v = g.value_mut(o);
                v.init = Some(Initializer::Dense(e.value.to_tensor(&name)));
                v.ty = Some(Type::tensor(e.value.dtype(), Shape::fixed(&dims)));
            }
            _ => {
                let base = match (old, e.slot) {
                    (Some(o), _) => g.value(o).name.clone(),
                    (None, _) => match node.inputs.get(1).copied().flatten() {
                        Some(w) => format!("{}_bias", g.value(w).name),
                        None => "bias".to_string(),
                    },
                };
                if names.is_none() {
                    names = Some(NameGen::new(g));
                }
                let v = add_const_value(g, names.as_mut().expect("set"), &base, &e.value);
                let hn = g.node_mut(n);
                while hn.inputs.len() <= e.slot {
                    hn.inputs.push(None);
                }
                hn.inputs[e.slot] = Some(v);
            }
        }
    }
    if beta_one {
        set_attr(g.node_mut(n), Attr::new("beta", AttrValue::Float(1.0)));
    }
    replace_value(g, r_out, y);
    g.remove_node(r);
    Some(())
}

/// Test support shared by the folding passes' tests.
#[cfg(test)]
pub(super) mod testing {
    use crate::ir::model::Model;
    use crate::pass::equiv::{check_equivalent, EquivOptions};
    use crate::{parse_model, PassManager, Pipeline};

    /// Runs `pipeline` on `text` (size guard on or off) with the verifier, checks
    /// the outputs stay the same and that a second run changes nothing; returns
    /// the result and the rewrites of the first run.
    pub fn check(text: &str, pipeline: &str, guard: bool) -> (Model, usize) {
        check_model(parse_model(text).unwrap(), pipeline, guard, 1e-5)
    }

    /// [`check`] on a model, with an absolute tolerance.
    pub fn check_model(original: Model, pipeline: &str, guard: bool, atol: f64) -> (Model, usize) {
        let mut m = original.clone();
        let mut pm = PassManager::new(Pipeline::parse(pipeline).unwrap());
        pm.verify_each = true;
        pm.options.size_guard = guard;
        let r = pm.run(&mut m).unwrap();
        let rewrites: usize = r.passes.iter().map(|p| p.rewrites).sum();
        let mut opts = EquivOptions::default();
        opts.tolerance.atol = atol;
        let eq = check_equivalent(&original, &m, &opts).unwrap();
        assert!(eq.runs > 0);
        let mut again = m.clone();
        let r2 = pm.run(&mut again).unwrap();
        assert_eq!(r2.passes.iter().map(|p| p.rewrites).sum::<usize>(), 0);
        (m, rewrites)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{check, check_model};
    use crate::ir::dtype::DType;
    use crate::print_model;

    fn lits(n: usize, f: impl Fn(usize) -> f64) -> String {
        let v: Vec<String> = (0..n).map(|i| format!("{:.3}", f(i))).collect();
        format!("[{}]", v.join(", "))
    }

    /// `text` with every f32 initializer and input turned to `dtype`.
    fn retyped(text: &str, dtype: DType) -> crate::ir::model::Model {
        use crate::interp::value::TensorValue;
        use crate::ir::graph::Initializer;
        use crate::ir::types::TypeKind;
        let mut m = crate::parse_model(text).unwrap();
        let g = &mut m.graph;
        for v in g.initializers.clone() {
            let Some(Initializer::Dense(t)) = &g.value(v).init else {
                continue;
            };
            let tv = TensorValue::from_tensor(t).unwrap();
            let shape = tv.shape().to_vec();
            let nv = super::tensor_from_f64(dtype, &shape, &tv.to_f64_vec().unwrap()).unwrap();
            let name = t.name.clone();
            g.value_mut(v).init = Some(Initializer::Dense(nv.to_tensor(&name)));
        }
        for v in g.value_ids().collect::<Vec<_>>() {
            if let Some(ty) = &mut g.value_mut(v).ty {
                if let TypeKind::Tensor { elem, .. } = &mut ty.kind {
                    *elem = dtype;
                }
            }
        }
        m
    }

    #[test]
    fn f16_weights_stay_f16() {
        let text = format!(
            "opset _=17\ngraph @g(%x: f32[1,2,4,4]) -> (%y) {{\n  %w = const f32[3,2,1,1] @w {}\n  %s = const f32[3] @s [0.5, 1.0, 2.0]\n  %b = const f32[3] @b [0.0, 0.25, -0.5]\n  %m = const f32[3] @m [0.1, 0.2, 0.3]\n  %v = const f32[3] @v [1.0, 0.5, 2.0]\n  %c = Conv(%x, %w)\n  %y = BatchNormalization(%c, %s, %b, %m, %v)\n  return %y\n}}\n",
            lits(6, |i| i as f64 * 0.25 - 0.5)
        );
        let model = retyped(&text, DType::F16);
        let (m, n) = check_model(model, "conv-fold,dce,init-cleanup", true, 1e-2);
        assert!(n >= 1);
        let g = &m.graph;
        assert_eq!(g.node_count(), 1);
        assert_eq!(g.initializers.len(), 2);
        for &v in &g.initializers {
            let t = super::const_value(g, v).unwrap();
            assert_eq!(t.dtype(), DType::F16);
        }
    }

    #[test]
    fn shared_weights_are_copied_only_when_small_or_unguarded() {
        // 64 output channels x 8 inputs: 2 KiB of f32, over the 1 KiB guard.
        let text = format!(
            "opset _=17\ngraph @g(%x: f32[1,8,2,2]) -> (%y, %z) {{\n  %w = const f32[64,8,1,1] @w {}\n  %k = const f32[64,1,1] @k {}\n  %c = Conv(%x, %w)\n  %y = Mul(%c, %k)\n  %z = Conv(%x, %w)\n  return %y, %z\n}}\n",
            lits(512, |i| ((i * 7) % 13) as f64 / 13.0 - 0.5),
            lits(64, |i| 1.0 + i as f64 / 64.0)
        );
        let (m, n) = check(&text, "conv-fold,dce,init-cleanup", true);
        assert_eq!(n, 0);
        assert_eq!(m.graph.node_count(), 3);
        let (m, n) = check(&text, "conv-fold,dce,init-cleanup", false);
        assert!(n >= 1);
        let g = &m.graph;
        assert_eq!(g.node_count(), 2);
        // The original weight stays for the other Conv, next to the scaled copy.
        assert_eq!(g.initializers.len(), 2);
        assert!(print_model(&m).contains("@w_1"));
    }

    #[test]
    fn small_shared_weights_are_copied() {
        let text = "opset _=17\ngraph @g(%x: f32[1,1,3,3]) -> (%y, %z) {\n  %w = const f32[2,1,1,1] @w [1.0, -2.0]\n  %k = const f32[1,2,1,1] @k [0.5, 3.0]\n  %c = Conv(%x, %w)\n  %y = Mul(%c, %k)\n  %z = Conv(%x, %w)\n  return %y, %z\n}\n";
        let (m, n) = check(text, "conv-fold,dce", true);
        assert_eq!(n, 1);
        assert_eq!(m.graph.node_count(), 2);
        assert_eq!(m.graph.initializers.len(), 3);
    }

    #[test]
    fn training_batchnorm_and_used_statistics_stay() {
        let bn = |opset: i64, attrs: &str, outs: &str, rets: &str| {
            format!(
                "opset _={opset}\ngraph @g(%x: f32[2,2,3,3]) -> (%y{rets}) {{\n  %w = const f32[2,2,1,1] @w [1.0, 2.0, 3.0, 4.0]\n  %s = const f32[2] @s [0.5, 1.0]\n  %b = const f32[2] @b [0.0, 0.25]\n  %m = const f32[2] @m [0.1, 0.2]\n  %v = const f32[2] @v [1.0, 0.5]\n  %c = Conv(%x, %w)\n  %y{outs} = BatchNormalization(%c, %s, %b, %m, %v){attrs}\n  return %y{rets}\n}}\n"
            )
        };
        let unchanged = |text: &str| {
            let m = crate::parse_model(text).unwrap();
            let mut m2 = m.clone();
            crate::PassManager::new(crate::Pipeline::parse("conv-fold").unwrap())
                .run(&mut m2)
                .unwrap();
            assert_eq!(m, m2);
        };
        unchanged(&bn(15, " {training_mode=1}", "", ""));
        unchanged(&bn(15, " {training_mode=1}", ", %rm, %rv", ""));
        unchanged(&bn(9, "", ", %rm, %rv", ", %rm"));
        // Before opset 14 statistics outputs mean training, used or not.
        unchanged(&bn(9, "", ", %rm, %rv", ""));
        unchanged(&bn(15, "", ", %rm, %rv", ""));
        let plain = bn(9, "", "", "");
        assert_eq!(check(&plain, "conv-fold", true).1, 1);
    }

    #[test]
    fn gemm_before_opset_7_and_integer_conv_stay() {
        let text = "opset _=6\ngraph @g(%x: f32[2,2]) -> (%y) {\n  %w = const f32[2,2] @w [1.0, 2.0, 3.0, 4.0]\n  %c = const f32[2,2] @c [0.0, 0.0, 0.0, 0.0]\n  %k = const f32[2] @k [2.0, 3.0]\n  %o = Gemm(%x, %w, %c)\n  %y = Mul(%o, %k)\n  return %y\n}\n";
        let (_, n) = check(text, "conv-fold", true);
        assert_eq!(n, 0);
    }

    #[test]
    fn gemm_scalar_bias_widens_to_columns() {
        let text = "opset _=13\ngraph @g(%x: f32[3,2]) -> (%y) {\n  %w = const f32[2,2] @w [1.0, 2.0, 3.0, 4.0]\n  %c = const f32[] @c [0.5]\n  %k = const f32[2] @k [2.0, 3.0]\n  %o = Gemm(%x, %w, %c) {beta=0.5}\n  %y = Mul(%o, %k)\n  return %y\n}\n";
        let (m, n) = check(text, "conv-fold,dce", true);
        assert_eq!(n, 1);
        assert!(print_model(&m).contains("beta=1.0"));
        // A [M,1] bias would widen to [M,N]: left alone.
        let text = text.replace("f32[] @c [0.5]", "f32[3,1] @c [0.5, 1.0, 1.5]");
        let (_, n) = check(&text, "conv-fold", true);
        assert_eq!(n, 0);
    }

    #[test]
    fn per_channel_layouts() {
        use super::per_channel;
        use crate::interp::value::TensorValue;
        let t = |s: &[usize], n: usize| TensorValue::from_f32(s, vec![1.5; n]);
        assert!(per_channel(&t(&[3, 1, 1], 3), 4, 1, 3).is_some());
        assert!(per_channel(&t(&[1, 3, 1, 1], 3), 4, 1, 3).is_some());
        assert!(per_channel(&t(&[], 1), 4, 1, 3).is_some());
        assert!(per_channel(&t(&[1], 1), 4, 1, 3).is_some());
        assert!(per_channel(&t(&[3], 3), 4, 1, 3).is_none());
        assert!(per_channel(&t(&[1, 1, 3, 3], 9), 4, 1, 3).is_none());
        assert!(per_channel(&t(&[1, 1, 1, 1, 1], 1), 4, 1, 3).is_none());
        assert!(per_channel(&t(&[3], 3), 2, 1, 3).is_some());
        assert!(per_channel(&t(&[3, 1], 3), 2, 1, 3).is_none());
    }
}
