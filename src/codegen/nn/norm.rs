//! LayerNormalization, RMSNormalization, InstanceNormalization, LpNormalization
//! (`kernels/norm.wgsl`, one workgroup per normalised row) and
//! BatchNormalization in inference mode (`kernels/norm_batch.wgsl`, one
//! invocation per element).
//!
//! Semantics are `ops/norm.rs`'s: the variance takes a second pass over the row;
//! scale and bias of Layer/RMS normalization broadcast against X right-aligned
//! (per row, or per element of X when they have more dimensions than the
//! normalised part); LayerNormalization's Mean and InvStdDev are written when the
//! node uses them; a zero Lp norm gives 0. BatchNormalization in training mode
//! falls back to the CPU. f32 only.
//!
//! Row normalizations over the storage binding limit are split into groups of
//! whole rows, one dispatch each, binding the windows of X, Y and the statistics
//! the group covers; scale and bias must fit one binding (they are bound whole).
//! A single row over the limit, and BatchNormalization over it, are refused.

use super::shader::{self, answer, fill, grid_for, offset_fn, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage, TensorDesc};
use crate::codegen::tile::{
    chunk_flat, contiguous, fits, flat_dispatches, over_limit, row_accesses, slot_len, Access,
};

const NORM: &str = include_str!("../../../kernels/norm.wgsl");
const NORM_BATCH: &str = include_str!("../../../kernels/norm_batch.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let r = match info.node.op_type.as_str() {
        "LayerNormalization" => rows(info, Op::Layer),
        "RMSNormalization" => rows(info, Op::Rms),
        "InstanceNormalization" => rows(info, Op::Instance),
        "LpNormalization" => rows(info, Op::Lp),
        "BatchNormalization" => batch(info),
        _ => return None,
    };
    answer(r)
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Layer,
    Rms,
    Instance,
    Lp,
}

fn f32_only(info: &NodeInfo) -> Result<(), String> {
    for t in info.inputs.iter().flatten().chain(&info.outputs) {
        if shader::storage(t) != Storage::F32 {
            return Err(format!(
                "{} of {} has no kernel",
                info.node.op_type, t.dtype
            ));
        }
    }
    Ok(())
}

/// `fn NAME(i: u32, row: u32) -> f32` reading `buf` broadcast right-aligned
/// against X (`i` is the element's index in X).
fn broadcast_param(name: &str, buf: &str, p: &TensorDesc, x: &[usize]) -> Result<String, String> {
    let (rank, prank) = (x.len(), p.shape.len());
    if prank > rank {
        return Err(format!(
            "{buf} {:?} has more dimensions than X {x:?}",
            p.shape
        ));
    }
    let ps = shader::strides(&p.shape);
    let mut st = vec![0i64; rank];
    for (d, s) in st.iter_mut().enumerate().skip(rank - prank) {
        let j = d - (rank - prank);
        if p.shape[j] == x[d] {
            *s = ps[j];
        } else if p.shape[j] != 1 {
            return Err(format!("{buf} {:?} does not broadcast to X {x:?}", p.shape));
        }
    }
    Ok(format!(
        "{}fn {name}(i: u32, row: u32) -> f32 {{\n    return {buf}[{name}_off(i)];\n}}\n",
        offset_fn(&format!("{name}_off"), x, &st, 0)
    ))
}

/// `fn NAME(i: u32, row: u32) -> f32` reading `buf` per channel (`row % C`), or
/// its single element.
fn channel_param(name: &str, buf: &str, p: &TensorDesc, c: usize) -> Result<String, String> {
    let idx = match p.len() {
        1 => "0u".to_string(),
        n if n == c => format!("row % {c}u"),
        n => return Err(format!("{buf} has {n} elements, expected {c}")),
    };
    Ok(format!(
        "fn {name}(i: u32, row: u32) -> f32 {{\n    return {buf}[{idx}];\n}}\n"
    ))
}

fn rows(info: &NodeInfo, op: Op) -> Result<Lowering, String> {
    f32_only(info)?;
    let x = shader::input(info, 0)?;
    let shape = &x.shape;
    let rank = shape.len();
    let eps = shader::attr_float(info, "epsilon", 1e-5);
    let (rows, len, inner, mode) = match op {
        Op::Layer | Op::Rms => {
            let axis = shader::norm_axis(shader::attr_int(info, "axis", -1), rank)?.min(rank);
            let outer: usize = shape[..axis].iter().product();
            let len: usize = shape[axis..].iter().product();
            (outer, len, 1, if op == Op::Layer { 0 } else { 1 })
        }
        Op::Instance => {
            if rank < 2 {
                return Err(format!(
                    "InstanceNormalization needs rank 2 or more, got {shape:?}"
                ));
            }
            (shape[0] * shape[1], shape[2..].iter().product(), 1, 0)
        }
        Op::Lp => {
            if rank == 0 {
                return Err("LpNormalization needs rank 1 or more".into());
            }
            let p = shader::attr_int(info, "p", 2);
            if p != 1 && p != 2 {
                return Err(format!("LpNormalization p must be 1 or 2, got {p}"));
            }
            let axis = shader::norm_axis(shader::attr_int(info, "axis", -1), rank)?;
            let outer: usize = shape[..axis].iter().product();
            let inner: usize = shape[axis + 1..].iter().product();
            (
                outer * inner,
                shape[axis],
                inner,
                if p == 1 { 2 } else { 3 },
            )
        }
    };
    if rows == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    if len == 0 {
        return Err(format!(
            "{} over empty rows has no kernel",
            info.node.op_type
        ));
    }
    let mut decls: Vec<(&str, &str, bool)> = vec![("x", "f32", false)];
    let mut slots = vec![Slot::Input(0)];
    let mut params = String::new();
    let unit = "fn NAME(i: u32, row: u32) -> f32 {\n    return VALUE;\n}\n";
    match op {
        Op::Layer | Op::Rms | Op::Instance => {
            let scale = shader::input(info, 1)?;
            decls.push(("scale", "f32", false));
            slots.push(Slot::Input(1));
            params += &if op == Op::Instance {
                channel_param("scale_at", "scale", scale, shape[1])?
            } else {
                broadcast_param("scale_at", "scale", scale, shape)?
            };
            let bias_input = if op == Op::Rms {
                None
            } else {
                info.inputs.get(2).cloned().flatten()
            };
            match bias_input {
                Some(b) => {
                    decls.push(("bias", "f32", false));
                    slots.push(Slot::Input(2));
                    params += &if op == Op::Instance {
                        channel_param("bias_at", "bias", &b, shape[1])?
                    } else {
                        broadcast_param("bias_at", "bias", &b, shape)?
                    };
                }
                None => params += &unit.replace("NAME", "bias_at").replace("VALUE", "0.0"),
            }
        }
        Op::Lp => {
            params += &unit.replace("NAME", "scale_at").replace("VALUE", "1.0");
            params += &unit.replace("NAME", "bias_at").replace("VALUE", "0.0");
        }
    }
    decls.push(("y", "f32", true));
    slots.push(Slot::Output(0));
    let mut stats = String::new();
    if op == Op::Layer {
        for (k, name, value) in [(1, "mean_out", "m"), (2, "inv_out", "inv")] {
            if shader::wants_output(info, k) {
                decls.push((name, "f32", true));
                slots.push(Slot::Output(k));
                stats += &format!("{name}[row - P.{name}_base] = {value};\n    ");
            }
        }
    }
    // Rows are (outer, inner) pairs; a row's elements lie `inner` apart.
    let row_dims = [rows / inner, inner];
    let row_strides = [(len * inner) as i64, 1];
    let span = ((len - 1) * inner) as i64;
    let mut accesses = vec![];
    for &slot in &slots {
        accesses.extend(match slot {
            Slot::Input(0) | Slot::Output(0) => {
                row_accesses(info, slot, &row_dims, &row_strides, span)
            }
            Slot::Output(_) => vec![Access {
                slot,
                len: slot_len(info, slot),
                base: 0,
                axes: contiguous(&row_dims),
            }],
            _ => {
                let t = info.inputs[slot_index(slot)]
                    .as_ref()
                    .ok_or("a bound input is missing")?;
                if !fits(t, &info.limits) {
                    return Err(over_limit(
                        &format!("{} parameter", info.node.op_type),
                        t,
                        &info.limits,
                        "parameters are bound whole",
                    ));
                }
                vec![Access {
                    slot,
                    len: slot_len(info, slot),
                    base: 0,
                    axes: vec![],
                }]
            }
        });
    }
    let chunks = chunk_flat(&row_dims, &accesses, &info.limits, 1)
        .map_err(|e| format!("{}: {e}", info.node.op_type))?;
    let part: Vec<String> = decls
        .iter()
        .map(|(name, _, _)| format!("{name}_base: u32"))
        .collect();
    let wg = shader::workgroup_size(info).min((len as u32).next_power_of_two().max(32));
    let wgsl = fill(
        NORM,
        &[
            ("BINDINGS", shader::bindings(&decls)),
            (
                "PART",
                format!(
                    "struct Part {{ start: u32, count: u32, {} }}\n@group(0) @binding({}) var<uniform> P: Part;",
                    part.join(", "),
                    decls.len()
                ),
            ),
            ("LEN", len.to_string()),
            ("INNER", inner.to_string()),
            ("WG", wg.to_string()),
            ("MODE", mode.to_string()),
            ("EPS", shader::f32_lit(eps)),
            ("PARAMS", params),
            ("STATS", stats),
        ],
    );
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches(&info.node.op_type.to_lowercase(), &wgsl, &chunks, |n| {
            grid_for(n as usize, 1, info)
        })?,
        temps: vec![],
    }))
}

/// The input or output index a slot names.
fn slot_index(s: Slot) -> usize {
    match s.base() {
        Slot::Input(k) | Slot::Output(k) | Slot::Temp(k) => k,
        _ => 0,
    }
}

fn batch(info: &NodeInfo) -> Result<Lowering, String> {
    if let Some(l) = shader::binding_limit(info) {
        return Ok(l);
    }
    f32_only(info)?;
    let training = if info.opset >= 14 {
        shader::attr_int(info, "training_mode", 0) != 0
    } else {
        (1..5).any(|k| matches!(info.node.outputs.get(k), Some(Some(_))))
            && !(info.opset < 7 && shader::attr_int(info, "is_test", 0) != 0)
    };
    if training {
        return Err("BatchNormalization in training mode has no kernel".into());
    }
    let x = shader::input(info, 0)?;
    if x.shape.len() < 2 {
        return Err(format!(
            "BatchNormalization needs rank 2 or more, got {:?}",
            x.shape
        ));
    }
    let c = x.shape[1];
    for k in 1..5 {
        let p = shader::input(info, k)?;
        if p.len() != c && p.len() != 1 {
            return Err(format!("input {k} has {} elements, expected {c}", p.len()));
        }
    }
    let n = x.len();
    if n == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    let wgsl = fill(
        NORM_BATCH,
        &[
            ("N", n.to_string()),
            ("C", c.to_string()),
            ("S", x.shape[2..].iter().product::<usize>().to_string()),
            (
                "EPS",
                shader::f32_lit(shader::attr_float(info, "epsilon", 1e-5)),
            ),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(shader::single(
        "batchnorm".into(),
        wgsl,
        (0..5).map(Slot::Input).chain([Slot::Output(0)]).collect(),
        grid_for(n, ELEMENT_WG, info)?,
    ))
}
