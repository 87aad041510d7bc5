//! `pad-fold`: a constant-mode Pad whose only reader is a Conv or a pooling op
//! becomes that op's `pads`.
//!
//! The Pad must pad with constant pads (the `pads` attribute before opset 11,
//! a constant input after; the `axes` input of opset 18 is honoured), only on the
//! spatial axes (the batch and channel pads are zero), by non-negative amounts,
//! and its output must have no other reader. The reader must use explicit pads
//! (`auto_pad` absent or `NOTSET`) and is one of:
//! - `Conv`, when the pad value is zero (absent or 0): a Conv pads with zeros;
//! - `AveragePool` with `count_include_pad=1`, when the pad value is zero:
//!   padded zeros then count in the divisor either way. With
//!   `count_include_pad=0` the pool would leave the added zeros out of the
//!   divisor, so it is left alone;
//! - `MaxPool` (without its indices output), only when the pad value is `-inf`:
//!   padding with 0 is not the same as the pool's own padding, which never wins
//!   the max.
//!
//! Pools with `ceil_mode=1` are left alone: a last window that starts in the
//! pool's own right padding is dropped, one that starts in padded data is not.
//!
//! Left alone: reflect/edge/wrap modes, negative pads, pads on the batch or
//! channel axes, a non-constant pad value, ConvTranspose, LpPool, ops of other
//! domains.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[1,1,4,4]) -> (%y) {\n  %w = const f32[1,1,3,3] @w [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]\n  %p = const i64[8] @p [0, 0, 1, 1, 0, 0, 1, 1]\n  %a = Pad(%x, %p)\n  %y = Conv(%a, %w)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("pad-fold,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert!(modc::print_model(&m).contains("pads=[1, 1, 1, 1]"));
//! ```

use super::conv_fold::{attr_float, attr_int, attr_ints, attr_str, fold_each, set_attr, Uses};
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::graph::{Graph, NodeId};
use crate::pass::edit::{const_f64s, const_i64s, is_op};
use crate::pass::{Pass, PassCtx, PassError};

pub struct PadFold;

impl Pass for PadFold {
    fn name(&self) -> &'static str {
        "pad-fold"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(fold_each(g, cx, "Pad", try_fold))
    }
}

/// A Pad's constant parameters: pads as `[begin.., end..]` over `axes` (or every
/// axis when `None`), and the pad value.
struct PadParams {
    pads: Vec<i64>,
    axes: Option<Vec<i64>>,
    value: f64,
}

fn pad_params(g: &Graph, cx: &PassCtx, p: NodeId) -> Option<PadParams> {
    let node = g.node(p);
    if attr_str(node, "mode", "constant")? != "constant" {
        return None;
    }
    if cx.opset < 11 {
        let pads = match attr_ints(node, "pads")? {
            Some(v) => v,
            None => attr_ints(node, "paddings")??,
        };
        let value = attr_float(node, "value", 0.0)? as f64;
        return Some(PadParams {
            pads,
            axes: None,
            value,
        });
    }
    let pads = const_i64s(g, node.inputs.get(1).copied().flatten()?)?;
    let value = match node.inputs.get(2).copied().flatten() {
        Some(v) => match const_f64s(g, v)?.as_slice() {
            [x] => *x,
            _ => return None,
        },
        None => 0.0,
    };
    let axes = match node.inputs.get(3).copied().flatten() {
        Some(a) if cx.opset >= 18 => Some(const_i64s(g, a)?),
        Some(_) => return None,
        None => None,
    };
    Some(PadParams { pads, axes, value })
}

/// The Pad's (begin, end) pads of the spatial axes of a rank-`rank` input, when
/// the batch and channel axes are not padded and no pad is negative.
fn spatial_pads(pp: &PadParams, rank: usize) -> Option<(Vec<i64>, Vec<i64>)> {
    let axes: Vec<usize> = match &pp.axes {
        Some(a) => a
            .iter()
            .map(|&x| {
                let x = if x < 0 { x + rank as i64 } else { x };
                usize::try_from(x).ok().filter(|&x| x < rank)
            })
            .collect::<Option<_>>()?,
        None => (0..rank).collect(),
    };
    if pp.pads.len() != 2 * axes.len() {
        return None;
    }
    let mut begin = vec![0i64; rank];
    let mut end = vec![0i64; rank];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] += pp.pads[i];
        end[a] += pp.pads[i + axes.len()];
    }
    if begin.iter().chain(&end).any(|&x| x < 0) || begin[..2] != [0, 0] || end[..2] != [0, 0] {
        return None;
    }
    Some((begin[2..].to_vec(), end[2..].to_vec()))
}

fn try_fold(g: &mut Graph, cx: &PassCtx, uses: &Uses, p: NodeId) -> Option<()> {
    let pnode = g.node(p);
    let x = pnode.inputs.first().copied().flatten()?;
    let out = match pnode.outputs.as_slice() {
        [Some(o)] => *o,
        _ => return None,
    };
    let (r, slot) = uses.sole_reader(g, out)?;
    if slot != 0 {
        return None;
    }
    let pp = pad_params(g, cx, p)?;
    let rn = g.node(r);
    if attr_str(rn, "auto_pad", "NOTSET")? != "NOTSET" {
        return None;
    }
    let rank = if is_op(rn, "Conv") {
        if pp.value != 0.0 {
            return None;
        }
        let w = rn.inputs.get(1).copied().flatten()?;
        super::conv_fold::fixed_shape(g, w)
            .map(|s| s.len())
            .or_else(|| attr_ints(rn, "kernel_shape").flatten().map(|k| k.len() + 2))?
    } else if is_op(rn, "AveragePool") {
        if pp.value != 0.0
            || attr_int(rn, "count_include_pad", 0)? != 1
            || attr_int(rn, "ceil_mode", 0)? != 0
        {
            return None;
        }
        attr_ints(rn, "kernel_shape")??.len() + 2
    } else if is_op(rn, "MaxPool") {
        let indices_used = rn
            .outputs
            .iter()
            .skip(1)
            .flatten()
            .any(|&o| uses.count(o) > 0);
        if pp.value != f64::NEG_INFINITY || indices_used || attr_int(rn, "ceil_mode", 0)? != 0 {
            return None;
        }
        attr_ints(rn, "kernel_shape")??.len() + 2
    } else {
        return None;
    };
    let (begin, end) = spatial_pads(&pp, rank)?;
    let s = rank - 2;
    let mut pads = attr_ints(rn, "pads")?.unwrap_or_else(|| vec![0; 2 * s]);
    if pads.len() != 2 * s {
        return None;
    }
    for i in 0..s {
        pads[i] += begin[i];
        pads[s + i] += end[i];
    }
    let rn = g.node_mut(r);
    set_attr(rn, Attr::new("pads", AttrValue::Ints(pads)));
    rn.inputs[0] = Some(x);
    g.remove_node(p);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::conv_fold::testing::check;

    const W: &str = "[0.5, -1.0, 0.25, 1.0, 0.75, -0.5, 0.125, 2.0, -0.25]";

    #[test]
    fn negative_pads_and_used_indices_stay() {
        let text = format!("opset _=10\ngraph @g(%x: f32[1,1,5,5]) -> (%y) {{\n  %w = const f32[1,1,3,3] @w {W}\n  %a = Pad(%x) {{pads=[0,0,1,-1,0,0,1,1]}}\n  %y = Conv(%a, %w)\n  return %y\n}}\n");
        assert_eq!(check(&text, "pad-fold", true).1, 0);
        let text = "opset _=17\ngraph @g(%x: f32[1,1,5,5]) -> (%y, %i) {\n  %p = const i64[8] @p [0, 0, 1, 1, 0, 0, 1, 1]\n  %n = const f32[] @n [-inf]\n  %a = Pad(%x, %p, %n)\n  %y, %i = MaxPool(%a) {kernel_shape=[2,2]}\n  return %y, %i\n}\n";
        assert_eq!(check(text, "pad-fold", true).1, 0);
        // Without the indices the -inf Pad folds.
        let text = text
            .replace("-> (%y, %i)", "-> (%y)")
            .replace("%y, %i = MaxPool", "%y, %_i = MaxPool")
            .replace("return %y, %i", "return %y");
        assert_eq!(check(&text, "pad-fold,dce", true).1, 1);
    }

    #[test]
    fn auto_pad_and_ceil_mode_stay() {
        let text = format!("opset _=17\ngraph @g(%x: f32[1,1,5,5]) -> (%y, %z) {{\n  %w = const f32[1,1,3,3] @w {W}\n  %p = const i64[8] @p [0, 0, 1, 0, 0, 0, 1, 1]\n  %a = Pad(%x, %p)\n  %y = Conv(%a, %w) {{auto_pad=\"SAME_UPPER\"}}\n  %b = Pad(%x, %p)\n  %z = AveragePool(%b) {{ceil_mode=1, count_include_pad=1, kernel_shape=[2,2], strides=[2,2]}}\n  return %y, %z\n}}\n");
        // With ceil_mode a last window starting in the pool's own right padding
        // is dropped, but not one starting in padded data: not the same.
        let (m, n) = check(&text, "pad-fold,dce", true);
        assert_eq!(n, 0);
        assert_eq!(m.graph.node_count(), 4);
    }
}
