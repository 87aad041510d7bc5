//! `merge-chains`: two consecutive ops of the same family become one, when the
//! first one's output has no other reader (nothing is duplicated).
//!
//! - Transpose∘Transpose: one Transpose by the composed permutation; nothing at
//!   all when the composition is the identity (then even if the first Transpose
//!   has other readers: the second one simply goes);
//! - Reshape, Flatten, Squeeze or Unsqueeze followed by Reshape: the Reshape reads
//!   the first op's input; a `0` in its shape (copy a dim) is kept when the first
//!   Reshape copied the same dim, replaced by the intermediate dim when that is a
//!   known number, and otherwise blocks the merge. Followed by Flatten: a Reshape
//!   to `[left, right]` (or `[left, -1]`, `[-1, right]`) when those are known;
//! - Squeeze∘Squeeze and Unsqueeze∘Unsqueeze: one with the combined axes, counted
//!   against the first input (Squeeze) or the final output (Unsqueeze);
//! - a Squeeze or Unsqueeze after another reshape-like op (Squeeze then Unsqueeze
//!   of other axes, Reshape then Squeeze, ...): one Reshape to the known output
//!   shape (numbers; `0` for a symbolic dim the input has at the same place; a
//!   single `-1` only when every other dim is a number);
//! - Slice∘Slice with constant parameters: one Slice; on different axes the
//!   entries are concatenated, on the same axis (steps 1, dim known) the ranges
//!   compose.
//!
//! Not merged: chains whose first node has other readers, parameters that are not
//! constant, axes that need an unknown rank, ops of other domains. Squeeze and
//! Unsqueeze axes are attributes before opset 13 and inputs from 13; Slice's
//! parameters attributes before 10; the merged node keeps the opset's form.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[2,3,4]) -> (%y) {\n  %a = Transpose(%x) {perm=[1,0,2]}\n  %b = Transpose(%a) {perm=[0,2,1]}\n  %y = Relu(%b)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("merge-chains,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 2);
//! assert!(modc::print_model(&m).contains("Transpose(%x) {perm=[1, 2, 0]}"));
//! ```

use super::noop::{
    dims_of, fixed_dims, input, int_attr, int_param, rank_of, remove_node_counted, slice_params,
    squeeze_axes, unsqueeze_axes, Param,
};
use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, Node, NodeId, ValueId};
use crate::ir::types::Dim;
use crate::pass::edit::{
    add_const_value, const_i64s, is_onnx, is_op, replace_needs_identity, replace_value,
    tidy_value_info, use_counts, NameGen,
};
use crate::pass::{Pass, PassCtx, PassError};

pub struct MergeChains;

/// An input of the merged node: an existing value, or a new 1-D int64 constant.
enum NewInput {
    Value(Option<ValueId>),
    Ints(&'static str, Vec<i64>),
}

/// What to do with the second node of a chain.
enum Rewrite {
    /// Its output is the first node's input.
    Bypass(ValueId),
    /// It becomes `op` on these inputs with these attributes.
    Become {
        op: &'static str,
        inputs: Vec<NewInput>,
        attrs: Vec<Attr>,
    },
}

impl Pass for MergeChains {
    fn name(&self) -> &'static str {
        "merge-chains"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let Ok(order) = g.topo_order() else {
            return Ok(false);
        };
        let mut uses = use_counts(g);
        let mut names: Option<NameGen> = None;
        // Constants this run added: dropped again when a later merge replaces them.
        let mut created: Vec<ValueId> = vec![];
        let mut merged = 0;
        for n2 in order {
            if !g.contains_node(n2) || !is_onnx(g.node(n2)) {
                continue;
            }
            let Some(mid) = input(g.node(n2), 0) else {
                continue;
            };
            let Some(n1) = g.producer(mid) else { continue };
            if !is_onnx(g.node(n1)) || g.node(n1).outputs.first() != Some(&Some(mid)) {
                continue;
            }
            let single = uses.get(&mid).copied().unwrap_or(0) == 1;
            let Some(rw) = plan(g, n1, n2, cx.opset, single) else {
                continue;
            };
            match rw {
                Rewrite::Bypass(x) => {
                    let Some(out) = g.node(n2).outputs.first().copied().flatten() else {
                        continue;
                    };
                    if g.node(n2).outputs.len() != 1 || replace_needs_identity(g, out, x) {
                        continue;
                    }
                    let out_ty = g
                        .outputs
                        .contains(&out)
                        .then(|| g.value(out).ty.clone())
                        .flatten();
                    replace_value(g, out, x);
                    if let (Some(t), true) = (out_ty, g.outputs.contains(&x)) {
                        g.value_mut(x).ty = Some(t);
                    }
                    let moved = uses.remove(&out).unwrap_or(0);
                    *uses.entry(x).or_default() += moved;
                    remove_node_counted(g, &mut uses, n2);
                }
                Rewrite::Become { op, inputs, attrs } => {
                    let names = names.get_or_insert_with(|| NameGen::new(g));
                    let base = g
                        .node(n2)
                        .outputs
                        .first()
                        .copied()
                        .flatten()
                        .map(|v| g.value(v).name.clone())
                        .unwrap_or_default();
                    let mut new_inputs = Vec::with_capacity(inputs.len());
                    for i in inputs {
                        new_inputs.push(match i {
                            NewInput::Value(v) => v,
                            NewInput::Ints(suffix, vals) => {
                                let t = TensorValue::from_i64(&[vals.len()], vals);
                                let c = add_const_value(g, names, &format!("{base}_{suffix}"), &t);
                                created.push(c);
                                Some(c)
                            }
                        });
                    }
                    for v in g.node(n2).inputs.iter().flatten() {
                        if let Some(c) = uses.get_mut(v) {
                            *c = c.saturating_sub(1);
                        }
                    }
                    for v in new_inputs.iter().flatten() {
                        *uses.entry(*v).or_default() += 1;
                    }
                    let old = std::mem::replace(&mut g.node_mut(n2).inputs, new_inputs);
                    let node = g.node_mut(n2);
                    node.op_type = op.to_string();
                    node.attrs = attrs;
                    for v in old.into_iter().flatten() {
                        if created.contains(&v) && uses.get(&v).copied().unwrap_or(0) == 0 {
                            g.initializers.retain(|&i| i != v);
                            g.value_mut(v).init = None;
                        }
                    }
                }
            }
            if uses.get(&mid).copied().unwrap_or(0) == 0 && g.contains_node(n1) {
                let others_unused = g
                    .node(n1)
                    .outputs
                    .iter()
                    .flatten()
                    .all(|v| uses.get(v).copied().unwrap_or(0) == 0);
                if others_unused {
                    remove_node_counted(g, &mut uses, n1);
                }
            }
            merged += 1;
        }
        if merged > 0 {
            tidy_value_info(g);
        }
        cx.rewrites += merged;
        Ok(merged > 0)
    }
}

/// How to merge `n1` (producing `n2`'s first input) into `n2`. `single`: `n2` is
/// the only reader of `n1`'s output.
fn plan(g: &Graph, n1: NodeId, n2: NodeId, opset: i64, single: bool) -> Option<Rewrite> {
    let (a, b) = (g.node(n1), g.node(n2));
    let x = input(a, 0)?;
    if is_op(a, "Transpose") && is_op(b, "Transpose") {
        return transposes(g, a, b, x, single);
    }
    if !single {
        return None;
    }
    let reshape_like = ["Reshape", "Flatten", "Squeeze", "Unsqueeze"];
    match (a.op_type.as_str(), b.op_type.as_str()) {
        (first, "Reshape" | "Flatten") if reshape_like.contains(&first) && opset >= 5 => {
            reshapes(g, a, b, x, opset)
        }
        ("Squeeze", "Squeeze") => {
            let r = rank_of(g, x);
            let a1 = squeeze_axes(g, a, opset, r)?;
            let r1 = r.map(|r| r - a1.len()).or_else(|| rank_of(g, input(b, 0)?));
            let a2 = squeeze_axes(g, b, opset, r1)?;
            let mut all = a1.clone();
            all.extend(a2.iter().map(|&j| nth_not_in(&a1, j)));
            Some(axes_node("Squeeze", x, all, opset))
        }
        ("Unsqueeze", "Unsqueeze") => {
            let r = rank_of(g, x);
            let a1 = unsqueeze_axes(g, a, opset, r)?;
            let r1 = r.map(|r| r + a1.len()).or_else(|| rank_of(g, input(b, 0)?));
            let a2 = unsqueeze_axes(g, b, opset, r1)?;
            let mut all = a2.clone();
            all.extend(a1.iter().map(|&p| nth_not_in(&a2, p)));
            Some(axes_node("Unsqueeze", x, all, opset))
        }
        (first, "Squeeze" | "Unsqueeze") if reshape_like.contains(&first) && opset >= 5 => {
            to_reshape(g, b, x)
        }
        ("Slice", "Slice") => slices(g, a, b, x, opset),
        _ => None,
    }
}

/// The `k`-th (from 0) non-negative integer not in `taken`.
fn nth_not_in(taken: &[usize], k: usize) -> usize {
    (0..)
        .filter(|i| !taken.contains(i))
        .nth(k)
        .expect("unbounded")
}

/// A Squeeze/Unsqueeze of `x` by `axes`, in the opset's form.
fn axes_node(op: &'static str, x: ValueId, mut axes: Vec<usize>, opset: i64) -> Rewrite {
    axes.sort_unstable();
    let axes: Vec<i64> = axes.into_iter().map(|a| a as i64).collect();
    if opset < 13 {
        Rewrite::Become {
            op,
            inputs: vec![NewInput::Value(Some(x))],
            attrs: vec![Attr::new("axes", AttrValue::Ints(axes))],
        }
    } else {
        Rewrite::Become {
            op,
            inputs: vec![NewInput::Value(Some(x)), NewInput::Ints("axes", axes)],
            attrs: vec![],
        }
    }
}

/// A Transpose's permutation (absent: reversed dims, which needs the rank).
fn perm_of(g: &Graph, n: &Node, rank: Option<usize>) -> Option<Vec<usize>> {
    let p: Vec<usize> = match n.attr("perm") {
        Some(a) => a
            .value
            .as_ints()?
            .iter()
            .map(|&v| usize::try_from(v).ok())
            .collect::<Option<_>>()?,
        None => (0..rank.or_else(|| rank_of(g, input(n, 0)?))?)
            .rev()
            .collect(),
    };
    let mut seen = vec![false; p.len()];
    for &v in &p {
        if v >= p.len() || std::mem::replace(&mut seen[v], true) {
            return None;
        }
    }
    Some(p)
}

fn transposes(g: &Graph, a: &Node, b: &Node, x: ValueId, single: bool) -> Option<Rewrite> {
    let p1 = perm_of(g, a, None)?;
    let p2 = perm_of(g, b, Some(p1.len()))?;
    if p1.len() != p2.len() {
        return None;
    }
    // out[i] = mid[p2[i]] = x[p1[p2[i]]]
    let q: Vec<usize> = p2.iter().map(|&i| p1[i]).collect();
    if q.iter().enumerate().all(|(i, &v)| i == v) {
        return Some(Rewrite::Bypass(x));
    }
    single.then(|| Rewrite::Become {
        op: "Transpose",
        inputs: vec![NewInput::Value(Some(x))],
        attrs: vec![Attr::new(
            "perm",
            AttrValue::Ints(q.into_iter().map(|v| v as i64).collect()),
        )],
    })
}

/// Reshape (or Flatten) of a reshape-like op: a Reshape of the first op's input.
fn reshapes(g: &Graph, a: &Node, b: &Node, x: ValueId, opset: i64) -> Option<Rewrite> {
    let mid = input(b, 0)?;
    // The first op's constant shape when it is a Reshape (allowzero off).
    let s1 = if a.op_type == "Reshape" {
        match int_param(g, a, "shape", 1, 5, opset) {
            Param::Known(s) => Some((s, int_attr(a, "allowzero", 0) != 0)),
            _ => None,
        }
    } else {
        None
    };
    let mut md: Option<Vec<Dim>> = dims_of(g, mid);
    if let Some((s, az)) = &s1 {
        let from_shape: Vec<Dim> = s
            .iter()
            .map(|&t| {
                if t > 0 || (t == 0 && *az) {
                    Dim::fixed(t)
                } else {
                    Dim::unknown()
                }
            })
            .collect();
        md = match md {
            Some(d) if d.len() == s.len() => Some(
                d.into_iter()
                    .zip(from_shape)
                    .map(|(d, f)| if f.as_fixed().is_some() { f } else { d })
                    .collect(),
            ),
            _ => Some(from_shape),
        };
    }
    if b.op_type == "Flatten" {
        let md = md?;
        let r = md.len() as i64;
        let axis = int_attr(b, "axis", 1);
        let axis = if axis < 0 { axis + r } else { axis };
        if !(0..=r).contains(&axis) {
            return None;
        }
        let prod = |d: &[Dim]| fixed_dims(d).map(|v| v.iter().product::<i64>());
        let left = prod(&md[..axis as usize]).filter(|&v| v > 0);
        let right = prod(&md[axis as usize..]).filter(|&v| v > 0);
        let target = match (left, right) {
            (Some(l), Some(r)) => vec![l, r],
            (Some(l), None) => vec![l, -1],
            (None, Some(r)) => vec![-1, r],
            (None, None) => return None,
        };
        return Some(Rewrite::Become {
            op: "Reshape",
            inputs: vec![NewInput::Value(Some(x)), NewInput::Ints("shape", target)],
            attrs: vec![],
        });
    }
    let shape_in = input(b, 1)?;
    let s2 = const_i64s(g, shape_in)?;
    let allowzero2 = int_attr(b, "allowzero", 0) != 0;
    if allowzero2 || !s2.contains(&0) {
        return Some(Rewrite::Become {
            op: "Reshape",
            inputs: vec![NewInput::Value(Some(x)), NewInput::Value(Some(shape_in))],
            attrs: b.attrs.clone(),
        });
    }
    let mut target = s2.clone();
    for (i, t) in target.iter_mut().enumerate() {
        if *t != 0 {
            continue;
        }
        // The first Reshape copied the same dim of `x`: copying it again is right.
        if let Some((s, false)) = &s1 {
            if s.get(i) == Some(&0) {
                continue;
            }
        }
        let v = md.as_ref()?.get(i)?.as_fixed().filter(|&v| v > 0)?;
        *t = v;
    }
    Some(Rewrite::Become {
        op: "Reshape",
        inputs: vec![NewInput::Value(Some(x)), NewInput::Ints("shape", target)],
        attrs: b.attrs.clone(),
    })
}

/// A Squeeze/Unsqueeze after another reshape-like op: one Reshape of `x` to the
/// second op's output shape, when that is known. Each dim of the target is a
/// number, a `0` for a symbolic dim `x` has at the same place, or (only when all
/// the others are numbers above 0) one `-1`.
fn to_reshape(g: &Graph, b: &Node, x: ValueId) -> Option<Rewrite> {
    let out = b.outputs.first().copied().flatten()?;
    let od = dims_of(g, out)?;
    let xd = dims_of(g, x).unwrap_or_default();
    let mut target = Vec::with_capacity(od.len());
    let mut unknown = vec![];
    let mut copies = false;
    for (i, d) in od.iter().enumerate() {
        match d.as_fixed() {
            Some(v) if v > 0 => target.push(v),
            Some(_) => return None,
            None if matches!(d.value, crate::ir::types::DimValue::Param(_))
                && xd.get(i).is_some_and(|xi| super::noop::same_dim(xi, d)) =>
            {
                copies = true;
                target.push(0)
            }
            None => {
                unknown.push(i);
                target.push(-1)
            }
        }
    }
    if !unknown.is_empty() && (unknown.len() > 1 || copies) {
        return None;
    }
    Some(Rewrite::Become {
        op: "Reshape",
        inputs: vec![NewInput::Value(Some(x)), NewInput::Ints("shape", target)],
        attrs: vec![],
    })
}

/// One Slice entry: axis (normalized), start, end, step.
type Entry = (usize, i64, i64, i64);

fn slice_entries(g: &Graph, n: &Node, opset: i64, rank: Option<usize>) -> Option<Vec<Entry>> {
    let (starts, ends, axes, steps) = slice_params(g, n, opset)?;
    super::noop::norm_axes(&axes, rank)?;
    let mut out = vec![];
    for k in 0..starts.len() {
        let a = if axes[k] < 0 {
            rank? as i64 + axes[k]
        } else {
            axes[k]
        };
        out.push((a as usize, starts[k], ends[k], steps[k]));
    }
    Some(out)
}

/// Start or end of a step-1 slice on a dim of `len`, as an index in `0..=len`.
fn clamp_index(v: i64, len: i64) -> i64 {
    let v = if v < 0 { v.saturating_add(len) } else { v };
    v.clamp(0, len)
}

fn slices(g: &Graph, a: &Node, b: &Node, x: ValueId, opset: i64) -> Option<Rewrite> {
    let dims = dims_of(g, x).or_else(|| dims_of(g, input(b, 0)?));
    let rank = dims.as_ref().map(|d| d.len());
    let mut entries = slice_entries(g, a, opset, rank)?;
    for (ax, s2, e2, st2) in slice_entries(g, b, opset, rank)? {
        match entries.iter().position(|e| e.0 == ax) {
            None => entries.push((ax, s2, e2, st2)),
            Some(k) => {
                let (_, s1, e1, st1) = entries[k];
                let d = dims.as_ref()?.get(ax)?.as_fixed()?;
                if st1 != 1 || st2 != 1 {
                    return None;
                }
                let (s1, e1) = (clamp_index(s1, d), clamp_index(e1, d));
                let len = (e1 - s1).max(0);
                let (s2, e2) = (clamp_index(s2, len), clamp_index(e2, len));
                entries[k] = (ax, s1 + s2, s1 + e2.max(s2), 1);
            }
        }
    }
    let starts: Vec<i64> = entries.iter().map(|e| e.1).collect();
    let ends: Vec<i64> = entries.iter().map(|e| e.2).collect();
    let axes: Vec<i64> = entries.iter().map(|e| e.0 as i64).collect();
    let steps: Vec<i64> = entries.iter().map(|e| e.3).collect();
    if opset < 10 {
        return Some(Rewrite::Become {
            op: "Slice",
            inputs: vec![NewInput::Value(Some(x))],
            attrs: vec![
                Attr::new("axes", AttrValue::Ints(axes)),
                Attr::new("ends", AttrValue::Ints(ends)),
                Attr::new("starts", AttrValue::Ints(starts)),
            ],
        });
    }
    let mut inputs = vec![
        NewInput::Value(Some(x)),
        NewInput::Ints("starts", starts),
        NewInput::Ints("ends", ends),
        NewInput::Ints("axes", axes),
    ];
    if steps.iter().any(|&s| s != 1) {
        inputs.push(NewInput::Ints("steps", steps));
    }
    Some(Rewrite::Become {
        op: "Slice",
        inputs,
        attrs: vec![],
    })
}

#[cfg(test)]
mod tests {
    use crate::{parse_model, print_model, PassManager, Pipeline};

    fn run(text: &str) -> String {
        let mut m = parse_model(text).unwrap();
        let mut pm = PassManager::new(Pipeline::parse("merge-chains,dce").unwrap());
        pm.verify_each = true;
        pm.run(&mut m).unwrap();
        print_model(&m)
    }

    #[test]
    fn unsqueeze_axes_count_against_the_output() {
        // x[3] -> Unsqueeze 0 -> [1,3] -> Unsqueeze 2 -> [1,3,1]: axes [0,2].
        let text = "opset _=11\ngraph @g(%x: f32[3]) -> (%y) {\n  %a = Unsqueeze(%x) {axes=[0]}\n  %y = Unsqueeze(%a) {axes=[2]}\n  return %y\n}\n";
        let out = run(text);
        assert!(out.contains("Unsqueeze(%x) {axes=[0, 2]}"), "{out}");
        // x[3] -> Unsqueeze 0 -> [1,3] -> Unsqueeze 0 -> [1,1,3]: axes [0,1].
        let text = text.replace("axes=[2]", "axes=[0]");
        assert!(run(&text).contains("Unsqueeze(%x) {axes=[0, 1]}"));
        // -1 on [1,3] is axis 2 of the output.
        let text = text.replace(
            "%y = Unsqueeze(%a) {axes=[0]}",
            "%y = Unsqueeze(%a) {axes=[-1]}",
        );
        assert!(run(&text).contains("Unsqueeze(%x) {axes=[0, 2]}"));
    }

    #[test]
    fn squeeze_axes_count_against_the_input() {
        // x[1,3,1,1] -> Squeeze 0 -> [3,1,1] -> Squeeze 2 -> [3,1]: axes [0,3].
        let text = "opset _=11\ngraph @g(%x: f32[1,3,1,1]) -> (%y) {\n  %a = Squeeze(%x) {axes=[0]}\n  %y = Squeeze(%a) {axes=[2]}\n  return %y\n}\n";
        assert!(run(text).contains("Squeeze(%x) {axes=[0, 3]}"));
    }

    #[test]
    fn slice_attributes_before_10() {
        let text = "opset _=9\ngraph @g(%x: f32[8,6]) -> (%y) {\n  %a = Slice(%x) {axes=[0], ends=[7], starts=[1]}\n  %y = Slice(%a) {axes=[0,1], ends=[3,6], starts=[1,2]}\n  return %y\n}\n";
        let out = run(text);
        assert!(
            out.contains("Slice(%x) {axes=[0, 1], ends=[4, 6], starts=[2, 2]}"),
            "{out}"
        );
    }

    #[test]
    fn converges_each_pass_changes_nothing_on_its_own_output() {
        let text = "opset _=13\ngraph @g(%x: f32[2,1,3,4], %v: f32[batch,6]) -> (%y, %z) {\n  %a1 = const i64[1] @a1 [1]\n  %a0 = const i64[1] @a0 [0]\n  %s = const i64[3] @s [0, 2, 3]\n  %p = Squeeze(%x, %a1)\n  %q = Transpose(%p) {perm=[0,2,1]}\n  %r = Transpose(%q) {perm=[0,2,1]}\n  %t = Unsqueeze(%r, %a1)\n  %u = Identity(%t)\n  %y = Unsqueeze(%u, %a0)\n  %w = Reshape(%v, %s)\n  %z = Flatten(%w) {axis=1}\n  return %y, %z\n}\n";
        let mut m = parse_model(text).unwrap();
        let mut pm = PassManager::new(
            Pipeline::parse("infer,(noop,merge-chains,dce),init-cleanup").unwrap(),
        );
        pm.verify_each = true;
        pm.run(&mut m).unwrap();
        let once = print_model(&m);
        assert_eq!(m.graph.node_count(), 2, "{once}");
        assert!(once.contains("Reshape(%v,"), "{once}");
        for p in ["noop", "merge-chains"] {
            let r = PassManager::new(Pipeline::parse(p).unwrap())
                .run(&mut m)
                .unwrap();
            assert!(r.per_pass().iter().all(|p| p.3 == 0), "{p} changed again");
        }
        assert_eq!(print_model(&m), once);
    }

    #[test]
    fn nth_not_in_counts_free_slots() {
        assert_eq!(super::nth_not_in(&[0, 2], 0), 1);
        assert_eq!(super::nth_not_in(&[0, 2], 1), 3);
        assert_eq!(super::nth_not_in(&[], 4), 4);
    }
}
