//! Pad (`kernels/data_pad.wgsl`) in the modes constant, edge, reflect and wrap,
//! negative pads (cropping) included, as `ops/shape.rs`. The pads (and the axes,
//! opset 18) must be constants; the constant value may be an input on the device.
//!
//! An output over the storage binding limit is cut into aligned ranges, one
//! dispatch each, with the input bound whole; an input over the limit is refused
//! (edge, reflect and wrap read it anywhere).

use crate::codegen::nn::shader::{self, answer, fill, grid_for, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::codegen::tile::{
    chunk_flat, contiguous, fits, flat_dispatches, over_limit, slot_len, Access, ALIGN,
};

const PAD: &str = include_str!("../../../kernels/data_pad.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    if info.node.op_type != "Pad" {
        return None;
    }
    answer(pad(info))
}

/// The WGSL of `fn src(i: u32) -> i32`: the input offset output element `i` reads,
/// or -1 for the constant.
fn src_fn(x: &[usize], y: &[usize], begin: &[i64], mode: &str) -> String {
    let xs = shader::strides(x);
    let mut body = String::from("    var r = i;\n    var o: i32 = 0;\n");
    for d in (0..y.len()).rev() {
        let (di, b) = (x[d] as i64, begin[d]);
        body += &format!(
            "    var c{d} = i32(r % {}u) - ({b});\n    r = r / {}u;\n",
            y[d], y[d]
        );
        let fix = match mode {
            "edge" => format!("    c{d} = clamp(c{d}, 0, {});\n", di - 1),
            "wrap" => format!("    c{d} = ((c{d} % {di}) + {di}) % {di};\n"),
            "reflect" if di == 1 => format!("    c{d} = 0;\n"),
            "reflect" => {
                let p = 2 * (di - 1);
                format!(
                    "    c{d} = ((c{d} % {p}) + {p}) % {p};\n    if (c{d} >= {di}) {{ c{d} = {p} - c{d}; }}\n"
                )
            }
            _ => format!("    if (c{d} < 0 || c{d} >= {di}) {{ return -1; }}\n"),
        };
        body += &fix;
        body += &format!("    o += c{d} * ({});\n", xs[d]);
    }
    format!("fn src(i: u32) -> i32 {{\n{body}    return o;\n}}\n")
}

fn pad(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    let t = shader::storage(x);
    let rank = x.shape.len();
    let mode = shader::attr_str(info, "mode", "constant");
    if !matches!(mode.as_str(), "constant" | "edge" | "wrap" | "reflect") {
        return Err(format!("Pad: unknown mode '{mode}'"));
    }
    let (raw, axes) = if info.opset < 11 {
        let p = shader::attr_ints(info, "pads")
            .or_else(|| shader::attr_ints(info, "paddings"))
            .ok_or("Pad needs pads")?;
        (p, None)
    } else {
        (
            shader::const_ints(info, 1, "pads")?.ok_or("Pad needs pads")?,
            shader::const_ints(info, 3, "axes")?,
        )
    };
    let axes: Vec<usize> = match axes {
        Some(a) => a
            .iter()
            .map(|&a| shader::norm_axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if raw.len() != 2 * axes.len() {
        return Err(format!("Pad: {} pads for {} axes", raw.len(), axes.len()));
    }
    let mut begin = vec![0i64; rank];
    for (i, &a) in axes.iter().enumerate() {
        begin[a] = raw[i];
    }
    let n = y.len();
    if n == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    if x.is_empty() && mode != "constant" {
        return Err(format!("Pad: {mode} padding of an empty input"));
    }
    let mut slots = vec![Slot::Input(0), Slot::Output(0)];
    let value = if info.opset < 11 {
        if t != Storage::F32 {
            return Err(format!("Pad-{} of {}", info.opset, x.dtype));
        }
        format!(
            "return {};",
            shader::f32_lit(shader::attr_float(info, "value", 0.0))
        )
    } else if mode == "constant"
        && info
            .inputs
            .get(2)
            .cloned()
            .flatten()
            .is_some_and(|v| !v.is_empty())
    {
        slots.push(Slot::Input(2));
        "return v[0];".to_string()
    } else {
        format!("return {};", shader::lit(t, 0.0))
    };
    if !fits(x, &info.limits) {
        return Err(over_limit(
            "Pad input",
            x,
            &info.limits,
            "Pad tiles its output only",
        ));
    }
    // The input (and the value) bound whole, the output by ranges.
    let mut accesses = vec![
        Access {
            slot: Slot::Input(0),
            len: slot_len(info, Slot::Input(0)),
            base: 0,
            axes: vec![],
        },
        Access {
            slot: Slot::Output(0),
            len: slot_len(info, Slot::Output(0)),
            base: 0,
            axes: contiguous(&y.shape),
        },
    ];
    if slots.len() == 3 {
        accesses.push(Access {
            slot: Slot::Input(2),
            len: slot_len(info, Slot::Input(2)),
            base: 0,
            axes: vec![],
        });
    }
    let chunks =
        chunk_flat(&y.shape, &accesses, &info.limits, ALIGN).map_err(|e| format!("Pad: {e}"))?;
    let mut wgsl = fill(
        PAD,
        &[
            ("T", t.wgsl().into()),
            ("PBIND", slots.len().to_string()),
            ("SRC", src_fn(&x.shape, &y.shape, &begin, &mode)),
            ("VALUE", value),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    if slots.len() == 3 {
        wgsl += &format!(
            "\n@group(0) @binding(2) var<storage, read> v: array<{}>;\n",
            t.wgsl()
        );
    }
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches(&format!("pad_{mode}"), &wgsl, &chunks, |n| {
            grid_for(n as usize, ELEMENT_WG, info)
        })?,
        temps: vec![],
    }))
}
