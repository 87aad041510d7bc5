//! The per-op conversions of the opset upgrade: one function per schema change
//! that needs the node rewritten (`Change::Convert` in the version table).
//!
//! Each conversion moves one node across one version step, in place: attributes
//! that became inputs become constant inputs, changed defaults are written out
//! explicitly, deprecated ops are renamed to their replacement, and Softmax-like
//! ops that used to coerce their input to 2-D get a Flatten and a Reshape around
//! them. A conversion that meets what it cannot keep equal (an unknown rank, a
//! non-constant operand it must read, a training-mode output) refuses with the
//! reason; the caller names the node and the step.
//!
//! New nodes are written in the target opset's form (an Unsqueeze at 13 or later
//! takes its axes as an input).

use super::node_edit::{float_tensor, NodeEdit};
use crate::interp::value::TensorValue;
use crate::ir::attr::{Attr, AttrValue};
use crate::ir::dtype::DType;
use crate::ir::graph::{Node, ValueId};
use crate::pass::edit;
use bytes::Bytes;

/// What a conversion did to the node.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome {
    Unchanged,
    Changed,
    /// The node is now this op (its steps continue from the step's version).
    Renamed(&'static str),
}

/// Why a conversion did not happen.
#[derive(Debug, PartialEq)]
pub(super) enum Refusal {
    /// No conversion is written for this (op, version) step.
    NoConversion,
    /// The node uses what the newer version cannot express equally.
    Refused(String),
}

type Res = Result<Outcome, Refusal>;

fn refuse<T>(why: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal::Refused(why.into()))
}

fn changed(c: bool) -> Outcome {
    if c {
        Outcome::Changed
    } else {
        Outcome::Unchanged
    }
}

const CONSUMED_INPUTS_OPS: &[&str] = &[
    "Abs",
    "Add",
    "BatchNormalization",
    "Ceil",
    "Clip",
    "Div",
    "Dropout",
    "Elu",
    "Exp",
    "Floor",
    "HardSigmoid",
    "InstanceNormalization",
    "LeakyRelu",
    "Log",
    "Max",
    "Mean",
    "Min",
    "Mul",
    "Neg",
    "PRelu",
    "Reciprocal",
    "Relu",
    "Sigmoid",
    "Sqrt",
    "Sub",
    "Sum",
    "Tanh",
];
const LEGACY_BROADCAST_OPS: &[&str] = &[
    "Add", "Sub", "Mul", "Div", "And", "Or", "Xor", "Equal", "Greater", "Less", "Pow",
];
const REDUCE_OPS: &[&str] = &[
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSumSquare",
];

/// Converts the node across the step that brings `op` to `version`.
pub(super) fn convert(op: &str, version: i64, e: &mut NodeEdit) -> Res {
    match (op, version) {
        ("Selu", 6) => selu_6(e),
        ("Reshape", 5) => {
            e.drop_attr("consumed_inputs");
            if !e.ints_to_input("shape", 1)? && e.input(1).is_none() {
                return refuse("no shape attribute");
            }
            Ok(Outcome::Changed)
        }
        (o, 6) if CONSUMED_INPUTS_OPS.contains(&o) => Ok(changed(e.drop_attr("consumed_inputs"))),
        (o, 7) if LEGACY_BROADCAST_OPS.contains(&o) => legacy_broadcast(e),
        ("Gemm", 7) => Ok(changed(e.drop_attr("broadcast"))),
        ("PRelu", 7) => prelu_7(e),
        ("BatchNormalization" | "Dropout", 7) => Ok(changed(e.drop_attr("is_test"))),
        ("GRU" | "LSTM" | "RNN", 7) => Ok(changed(e.drop_attr("output_sequence"))),
        ("BatchNormalization", 9) => {
            if e.int_attr("spatial")?.is_some_and(|s| s != 1) {
                return refuse("spatial=0 (per-activation statistics) has no opset 9 form");
            }
            Ok(changed(e.drop_attr("spatial")))
        }
        ("BatchNormalization", 14) => batch_norm_14(e),
        ("Cast", 6) => cast_6(e),
        ("Clip", 11) => clip_11(e),
        ("Concat", 4) => {
            if e.has_attr("axis") {
                return Ok(Outcome::Unchanged);
            }
            e.set_attr("axis", AttrValue::Int(1));
            Ok(Outcome::Changed)
        }
        ("ConvTranspose", 11) => match e.str_attr("auto_pad")?.as_deref() {
            Some("SAME_UPPER" | "SAME_LOWER") => {
                refuse("auto_pad SAME_UPPER/SAME_LOWER puts the odd padding on the other side from opset 11")
            }
            _ => Ok(Outcome::Unchanged),
        },
        ("DFT", 20) => {
            let axis = e.int_attr("axis")?.unwrap_or(1);
            let a = e.add_const("axis", TensorValue::from_i64(&[], vec![axis]));
            e.set_input(2, Some(a));
            e.drop_attr("axis");
            Ok(Outcome::Changed)
        }
        ("Dropout", 10) => match e.node().outputs.get(1).copied().flatten() {
            Some(m) if e.is_used(m) => refuse("the mask output is used and becomes bool at opset 10"),
            _ => Ok(Outcome::Unchanged),
        },
        ("Dropout", 12) => {
            let Some(r) = e.float_attr("ratio")? else {
                return Ok(Outcome::Unchanged);
            };
            let c = e.add_const("ratio", TensorValue::from_f32(&[], vec![r]));
            e.set_input(1, Some(c));
            e.drop_attr("ratio");
            Ok(Outcome::Changed)
        }
        ("GridSample", 20) => {
            let new = match e.str_attr("mode")?.as_deref() {
                Some("bilinear") => "linear",
                Some("bicubic") => "cubic",
                _ => return Ok(Outcome::Unchanged),
            };
            e.set_attr("mode", AttrValue::String(Bytes::from(new)));
            Ok(Outcome::Changed)
        }
        ("GroupNormalization", 21) => group_norm_21(e),
        ("LpPool" | "GlobalLpPool", 2) => match e.literal("p")? {
            Some(AttrValue::Float(p)) if p.fract() == 0.0 && p.is_finite() => {
                let p = *p as i64;
                e.set_attr("p", AttrValue::Int(p));
                Ok(Outcome::Changed)
            }
            Some(AttrValue::Float(p)) => refuse(format!("p={p} is not an integer")),
            _ => Ok(Outcome::Unchanged),
        },
        ("Pad", 2) => match e.ints_attr("paddings")? {
            Some(p) => {
                e.drop_attr("paddings");
                e.set_attr("pads", AttrValue::Ints(p));
                Ok(Outcome::Changed)
            }
            None => Ok(Outcome::Unchanged),
        },
        ("Pad", 11) => pad_11(e),
        ("Range", 27) => match e.input(0).and_then(|v| e.dtype(v)) {
            Some(d @ (DType::F16 | DType::BF16)) => {
                // Keep the accumulation in the input's own type, as before.
                e.set_attr("stash_type", AttrValue::Int(d.onnx_code() as i64));
                Ok(Outcome::Changed)
            }
            Some(_) => Ok(Outcome::Unchanged),
            None => refuse("the input type is unknown (float16 ranges change precision)"),
        },
        ("ReduceSum", 13) => optional_axes_to_input(e),
        (o, 18) if REDUCE_OPS.contains(&o) => optional_axes_to_input(e),
        ("Resize", 11) => resize_11(e),
        ("Resize", 13) => match e.str_attr("coordinate_transformation_mode")?.as_deref() {
            Some("tf_half_pixel_for_nn") => refuse("coordinate_transformation_mode tf_half_pixel_for_nn was removed at opset 13"),
            _ => Ok(Outcome::Unchanged),
        },
        ("RoiAlign", 16) => {
            if e.has_attr("coordinate_transformation_mode") {
                return Ok(Outcome::Unchanged);
            }
            e.set_attr(
                "coordinate_transformation_mode",
                AttrValue::String(Bytes::from_static(b"output_half_pixel")),
            );
            Ok(Outcome::Changed)
        }
        ("Scatter", 11) => {
            e.node_mut().op_type = "ScatterElements".into();
            Ok(Outcome::Renamed("ScatterElements"))
        }
        ("Slice", 10) => slice_10(e),
        ("Softmax" | "LogSoftmax" | "Hardmax", 13) => softmax_13(e),
        ("Split", 2) => split_2(e),
        ("Split", 13) => Ok(changed(e.ints_to_input("split", 1)?)),
        ("Split", 18) => {
            if e.input(1).is_some() || e.has_attr("num_outputs") {
                return Ok(Outcome::Unchanged);
            }
            let n = e.node().outputs.len() as i64;
            e.set_attr("num_outputs", AttrValue::Int(n));
            Ok(Outcome::Changed)
        }
        ("Squeeze", 13) => optional_axes_to_input(e),
        ("Unsqueeze", 13) => {
            if !e.ints_to_input("axes", 1)? {
                return refuse("no axes attribute");
            }
            Ok(Outcome::Changed)
        }
        ("TopK", 10) => {
            let Some(k) = e.int_attr("k")? else {
                return refuse("no k attribute");
            };
            let c = e.const_i64s("k", &[k]);
            e.set_input(1, Some(c));
            e.drop_attr("k");
            Ok(Outcome::Changed)
        }
        ("Upsample", 7) => upsample_7(e),
        ("Upsample", 9) => {
            let Some(s) = e.floats_attr("scales")? else {
                return refuse("no scales attribute");
            };
            let c = e.add_const("scales", TensorValue::from_f32(&[s.len()], s));
            e.set_input(1, Some(c));
            e.drop_attr("scales");
            Ok(Outcome::Changed)
        }
        ("Upsample", 10) => {
            // Resize-10 is Upsample-9 under a new name.
            e.node_mut().op_type = "Resize".into();
            Ok(Outcome::Renamed("Resize"))
        }
        _ => Err(Refusal::NoConversion),
    }
}

/// Reductions and Squeeze: `axes` moves to input 1. An empty list meant "all
/// axes" (every reduction; every unit dimension for Squeeze), which the newer
/// form says by leaving the input out.
fn optional_axes_to_input(e: &mut NodeEdit) -> Res {
    if e.ints_attr("axes")?.is_some_and(|a| a.is_empty()) {
        e.drop_attr("axes");
        return Ok(Outcome::Changed);
    }
    Ok(changed(e.ints_to_input("axes", 1)?))
}

fn selu_6(e: &mut NodeEdit) -> Res {
    e.drop_attr("consumed_inputs");
    // The opset-1 defaults, written out (opset 6 changed them).
    if !e.has_attr("alpha") {
        e.set_attr("alpha", AttrValue::Float(1.6732));
    }
    if !e.has_attr("gamma") {
        e.set_attr("gamma", AttrValue::Float(1.0507));
    }
    Ok(Outcome::Changed)
}

/// Opset 7 replaced `broadcast`/`axis` by NumPy-style broadcasting. A B aligned
/// with A's trailing dimensions broadcasts the same way; B aligned at an earlier
/// `axis` gets trailing unit dimensions.
fn legacy_broadcast(e: &mut NodeEdit) -> Res {
    let broadcast = e.int_attr("broadcast")?.unwrap_or(0);
    let axis = e.int_attr("axis")?;
    let dropped = e.drop_attr("broadcast") | e.drop_attr("axis");
    let (Some(axis), true) = (axis, broadcast != 0) else {
        return Ok(changed(dropped));
    };
    let (Some(a), Some(b)) = (e.input(0), e.input(1)) else {
        return refuse("broadcast needs two inputs");
    };
    let (Some(ra), Some(rb)) = (e.rank(a), e.rank(b)) else {
        return refuse("broadcast with axis needs the ranks of both inputs");
    };
    let axis = if axis < 0 { axis + ra as i64 } else { axis };
    let trailing = ra as i64 - axis - rb as i64;
    if trailing < 0 || axis < 0 {
        return refuse(format!("axis {axis} does not fit ranks {ra} and {rb}"));
    }
    if trailing > 0 {
        let axes: Vec<i64> = (rb as i64..rb as i64 + trailing).collect();
        let nb = e.unsqueeze(b, &axes);
        e.set_input(1, Some(nb));
    }
    Ok(Outcome::Changed)
}

/// PRelu before opset 7 broadcasts its slope NumPy-style where that fits and
/// otherwise per channel (axis 1) for a one-dimensional slope (as the
/// interpreter reads it); from opset 7 only NumPy-style broadcasting remains, so
/// a per-channel [C] slope becomes [C,1,...,1].
fn prelu_7(e: &mut NodeEdit) -> Res {
    let (Some(x), Some(s)) = (e.input(0), e.input(1)) else {
        return refuse("PRelu needs two inputs");
    };
    let (Some(dx), Some(ds)) = (e.dims(x), e.dims(s)) else {
        return refuse("the shapes of X and slope are unknown");
    };
    if ds.iter().all(|d| *d == Some(1)) {
        return Ok(Outcome::Unchanged);
    }
    // NumPy-style: every slope dimension is 1 or equals X's aligned one.
    let numpy = ds.len() <= dx.len()
        && ds
            .iter()
            .rev()
            .zip(dx.iter().rev())
            .all(|(s, x)| *s == Some(1) || (s.is_some() && s == x));
    if numpy {
        return Ok(Outcome::Unchanged);
    }
    let per_channel = ds.len() == 1 && dx.len() > 2 && ds[0].is_some() && ds[0] == dx[1];
    if !per_channel {
        return refuse(format!(
            "cannot tell how a slope of shape {} broadcasts against X of shape {}",
            dims_text(&ds),
            dims_text(&dx)
        ));
    }
    let axes: Vec<i64> = (1..dx.len() as i64 - 1).collect();
    let ns = e.unsqueeze(s, &axes);
    e.set_input(1, Some(ns));
    Ok(Outcome::Changed)
}

fn dims_text(d: &[Option<i64>]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|v| v.map_or("?".to_string(), |n| n.to_string()))
        .collect();
    format!("[{}]", parts.join(","))
}

/// Opset 14 replaced BatchNormalization's training outputs (mean, var,
/// saved_mean, saved_var) by running_mean/running_var; the inference form (one
/// output) is unchanged. Unused extra outputs are dropped.
fn batch_norm_14(e: &mut NodeEdit) -> Res {
    let extra: Vec<ValueId> = e.node().outputs.iter().skip(1).flatten().copied().collect();
    if extra.is_empty() {
        return Ok(Outcome::Unchanged);
    }
    if extra.iter().any(|&v| e.is_used(v)) {
        return refuse("a training-mode output (mean/var) is used");
    }
    e.node_mut().outputs.truncate(1);
    e.dropped_outputs = true;
    Ok(Outcome::Changed)
}

fn cast_6(e: &mut NodeEdit) -> Res {
    const CODES: &[(&str, i64)] = &[
        ("FLOAT", 1),
        ("UINT8", 2),
        ("INT8", 3),
        ("UINT16", 4),
        ("INT16", 5),
        ("INT32", 6),
        ("INT64", 7),
        ("STRING", 8),
        ("BOOL", 9),
        ("FLOAT16", 10),
        ("DOUBLE", 11),
        ("UINT32", 12),
        ("UINT64", 13),
        ("COMPLEX64", 14),
        ("COMPLEX128", 15),
    ];
    let name = match e.literal("to")? {
        Some(AttrValue::String(s)) => String::from_utf8_lossy(s).to_uppercase(),
        _ => return Ok(Outcome::Unchanged),
    };
    let Some(&(_, code)) = CODES.iter().find(|(n, _)| *n == name) else {
        return refuse(format!("unknown type name '{name}'"));
    };
    e.set_attr("to", AttrValue::Int(code));
    Ok(Outcome::Changed)
}

/// A scalar of `x`'s (float) element type, for Clip bounds and Pad values.
fn typed_scalar(e: &NodeEdit, x: Option<ValueId>, v: f32) -> Result<TensorValue, Refusal> {
    let Some(d) = x.and_then(|x| e.dtype(x)) else {
        return refuse("the input's element type is unknown");
    };
    match float_tensor(d, &[], &[v as f64]) {
        Some(t) => Ok(t),
        None => refuse(format!(
            "the input's element type {d:?} is not a float type"
        )),
    }
}

fn clip_11(e: &mut NodeEdit) -> Res {
    let (lo, hi) = (e.float_attr("min")?, e.float_attr("max")?);
    if lo.is_none() && hi.is_none() {
        return Ok(changed(e.drop_attr("min") | e.drop_attr("max")));
    }
    let x = e.input(0);
    for (slot, name, v) in [(1, "min", lo), (2, "max", hi)] {
        if let Some(v) = v {
            let t = typed_scalar(e, x, v)?;
            let c = e.add_const(name, t);
            e.set_input(slot, Some(c));
        }
    }
    e.drop_attr("min");
    e.drop_attr("max");
    Ok(Outcome::Changed)
}

fn pad_11(e: &mut NodeEdit) -> Res {
    let Some(pads) = e.ints_attr("pads")? else {
        return refuse("no pads attribute");
    };
    let mode = e.str_attr("mode")?.unwrap_or_else(|| "constant".into());
    let value = e.float_attr("value")?.unwrap_or(0.0);
    if mode == "constant" && value != 0.0 {
        let t = typed_scalar(e, e.input(0), value)?;
        let c = e.add_const("value", t);
        e.set_input(2, Some(c));
    }
    let p = e.const_i64s("pads", &pads);
    e.set_input(1, Some(p));
    e.drop_attr("pads");
    e.drop_attr("value");
    Ok(Outcome::Changed)
}

fn slice_10(e: &mut NodeEdit) -> Res {
    let (Some(starts), Some(ends)) = (e.ints_attr("starts")?, e.ints_attr("ends")?) else {
        return refuse("starts and ends attributes are required");
    };
    let s = e.const_i64s("starts", &starts);
    let t = e.const_i64s("ends", &ends);
    e.set_input(1, Some(s));
    e.set_input(2, Some(t));
    e.ints_to_input("axes", 3)?;
    e.drop_attr("starts");
    e.drop_attr("ends");
    Ok(Outcome::Changed)
}

/// Resize-10 computes coordinates as `x_resized / scale` (asymmetric) and picks
/// the nearest pixel by flooring when upsampling and by ceiling when
/// downsampling; opset 11 names both choices.
fn resize_11(e: &mut NodeEdit) -> Res {
    let mode = e.str_attr("mode")?.unwrap_or_else(|| "nearest".into());
    if mode == "nearest" {
        let scales = match e.input(1).and_then(|s| edit::const_f64s(e.g, s)) {
            Some(s) => s,
            // Upsample's scales are at least 1 by its definition.
            None if e.origin == "Upsample" => vec![],
            None => return refuse("nearest mode needs constant scales to choose the rounding"),
        };
        let moving: Vec<f64> = scales.into_iter().filter(|&s| s != 1.0).collect();
        let rounding = if moving.iter().all(|&s| s > 1.0) {
            "floor"
        } else if moving.iter().all(|&s| s < 1.0) {
            "ceil"
        } else {
            return refuse("nearest mode scales both up and down (no single rounding mode)");
        };
        e.set_attr("nearest_mode", AttrValue::String(Bytes::from(rounding)));
    }
    e.set_attr(
        "coordinate_transformation_mode",
        AttrValue::String(Bytes::from_static(b"asymmetric")),
    );
    let scales = e.input(1);
    let roi = if e.target >= 13 {
        None
    } else {
        Some(e.add_const("roi", TensorValue::from_f32(&[0], vec![])))
    };
    e.node_mut().inputs.truncate(1);
    e.set_input(1, roi);
    e.set_input(2, scales);
    Ok(Outcome::Changed)
}

fn split_2(e: &mut NodeEdit) -> Res {
    let Some(s) = e.input(1) else {
        return Ok(Outcome::Unchanged);
    };
    let Some(sizes) = edit::const_f64s(e.g, s) else {
        return refuse("the split input is not a constant");
    };
    if sizes.iter().any(|v| v.fract() != 0.0 || *v < 0.0) {
        return refuse("the split sizes are not whole numbers");
    }
    let sizes: Vec<i64> = sizes.iter().map(|&v| v as i64).collect();
    e.node_mut().inputs.truncate(1);
    e.set_attr("split", AttrValue::Ints(sizes));
    Ok(Outcome::Changed)
}

/// Before opset 13, Softmax, LogSoftmax and Hardmax coerce the input to 2-D at
/// `axis` (default 1) and normalize each row; from 13 they normalize along one
/// axis (default -1). Where every dimension after `axis` is 1 (`axis` is the
/// last one, or e.g. [N,C,1,1] at axis 1) the two agree and the axis is written
/// out; otherwise the node becomes Flatten → op(axis=1) → Reshape to the
/// input's shape.
fn softmax_13(e: &mut NodeEdit) -> Res {
    let axis = e.int_attr("axis")?.unwrap_or(1);
    let Some(x) = e.input(0) else {
        return refuse("no input");
    };
    let Some(y) = e.node().outputs.first().copied().flatten() else {
        return Ok(Outcome::Unchanged);
    };
    if let Some(dims) = e.dims(x) {
        let r = dims.len();
        let norm = if axis < 0 { axis + r as i64 } else { axis };
        if norm < 0 || norm >= r.max(1) as i64 {
            return refuse(format!("axis {axis} is out of range for rank {r}"));
        }
        // The 2-D view's rows are exactly the slices along `axis` when every
        // later dimension is 1 (or there is none).
        let trailing_ones = dims.iter().skip(norm as usize + 1).all(|d| *d == Some(1));
        if trailing_ones {
            let explicit = e.has_attr("axis");
            e.set_attr("axis", AttrValue::Int(axis));
            return Ok(changed(!explicit));
        }
    }
    let flat = e.add_node(
        "Flatten",
        vec![Some(x)],
        vec![Attr::new("axis", AttrValue::Int(axis))],
        "2d",
    );
    let shape = e.add_node("Shape", vec![Some(x)], vec![], "in_shape");
    // The op now reads the 2-D view and writes a fresh value; a Reshape gives
    // that value the original output (name, type and readers).
    let base = e.base("2d_out");
    let rows = e.names.fresh(&base);
    let rows = e.g.add_value(crate::ir::graph::Value::new(
        &rows,
        crate::ir::graph::ValueDef::Node {
            node: e.id,
            slot: 0,
        },
    ));
    e.node_mut().outputs[0] = Some(rows);
    e.set_input(0, Some(flat));
    e.set_attr("axis", AttrValue::Int(1));
    let reshape = Node {
        inputs: vec![Some(rows), Some(shape)],
        outputs: vec![Some(y)],
        ..Node::new("Reshape", "", vec![])
    };
    e.g.push_node(reshape);
    Ok(Outcome::Changed)
}

/// GroupNormalization-18 takes one scale and bias per group, 21 one per channel:
/// constant per-group values are repeated over each group's channels.
fn group_norm_21(e: &mut NodeEdit) -> Res {
    let (Some(x), Some(s), Some(b)) = (e.input(0), e.input(1), e.input(2)) else {
        return refuse("GroupNormalization needs three inputs");
    };
    let Some(groups) = e.int_attr("num_groups")? else {
        return refuse("no num_groups attribute");
    };
    let Some(Some(c)) = e.dims(x).and_then(|d| d.get(1).copied()) else {
        return refuse("the channel count of X is unknown");
    };
    if groups <= 0 || c % groups != 0 {
        return refuse(format!("{c} channels do not split into {groups} groups"));
    }
    if groups == c {
        return Ok(Outcome::Unchanged);
    }
    let per = (c / groups) as usize;
    for (slot, v, what) in [(1, s, "scale"), (2, b, "bias")] {
        let Some(t) = edit::const_value(e.g, v) else {
            return refuse(format!("the {what} is not a constant"));
        };
        let vals = t.to_f64_vec().unwrap_or_default();
        if vals.len() != groups as usize {
            return refuse(format!(
                "the {what} has {} values for {groups} groups",
                vals.len()
            ));
        }
        let wide: Vec<f64> = vals
            .iter()
            .flat_map(|&v| std::iter::repeat_n(v, per))
            .collect();
        let Some(nt) = float_tensor(t.dtype(), &[c as usize], &wide) else {
            return refuse(format!("the {what} is not a float tensor"));
        };
        let nc = e.add_const(what, nt);
        e.set_input(slot, Some(nc));
    }
    Ok(Outcome::Changed)
}

fn upsample_7(e: &mut NodeEdit) -> Res {
    let (Some(h), Some(w)) = (e.float_attr("height_scale")?, e.float_attr("width_scale")?) else {
        return refuse("height_scale and width_scale are required");
    };
    e.drop_attr("height_scale");
    e.drop_attr("width_scale");
    e.set_attr("scales", AttrValue::Floats(vec![1.0, 1.0, h, w]));
    if e.str_attr("mode")?.as_deref() == Some("bilinear") {
        e.set_attr("mode", AttrValue::String(Bytes::from_static(b"linear")));
    }
    Ok(Outcome::Changed)
}
