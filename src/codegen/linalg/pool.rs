//! MaxPool, AveragePool, GlobalAveragePool and GlobalMaxPool.
//!
//! Window geometry (auto_pad, pads, strides, dilations, ceil_mode) comes from the
//! interpreter's [`out_and_pads`], so output shapes and pads agree by
//! construction. As in the interpreter: MaxPool takes the first tap, then any
//! larger one (a NaN first tap stays), yields the type's lowest value for a window
//! with no real tap, and writes Indices as flat input offsets (row- or
//! column-major over the spatial dims); AveragePool divides by the real taps, or
//! with `count_include_pad` by the taps inside the explicitly padded input;
//! GlobalMaxPool propagates NaN.

use super::template::{bindings, f32_literal, fill, grid};
use super::{check_all_bindings, input, op_ctx, output, storage};
use crate::codegen::spec::{Dispatch, NodeInfo, NodeKernels, Slot, Storage};
use crate::ops::conv::{out_and_pads, pads_attr, spatial_attr, to3};

const POOL: &str = include_str!("../../../kernels/pool.wgsl");
const GLOBAL: &str = include_str!("../../../kernels/pool_global.wgsl");

/// Window geometry padded to 3 spatial dims.
struct Window {
    nsp: usize,
    input: [usize; 3],
    out: [usize; 3],
    kernel: [usize; 3],
    stride: [usize; 3],
    dil: [usize; 3],
    pad_begin: [usize; 3],
    pad_end: [usize; 3],
}

fn window(info: &NodeInfo, x_shape: &[usize], dilations: bool) -> Result<Window, String> {
    let op = &info.node.op_type;
    if x_shape.len() < 3 {
        return Err(format!("{op} needs an input of rank >= 3, got {x_shape:?}"));
    }
    let ctx = op_ctx(info);
    let nsp = x_shape.len() - 2;
    let kernel: Vec<usize> = match ctx.ints("kernel_shape") {
        Some(k) if k.len() == nsp && k.iter().all(|&v| v >= 1) => {
            k.iter().map(|&v| v as usize).collect()
        }
        Some(k) => {
            return Err(format!(
                "{op}: bad kernel_shape {k:?} for {nsp} spatial dims"
            ))
        }
        None => return Err(format!("{op}: kernel_shape is required")),
    };
    let err = |e: crate::ops::OpError| format!("{op}: {e}");
    let stride = spatial_attr(&ctx, "strides", nsp).map_err(err)?;
    let dil = if dilations {
        spatial_attr(&ctx, "dilations", nsp).map_err(err)?
    } else {
        vec![1; nsp]
    };
    let pads = pads_attr(&ctx, nsp).map_err(err)?;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let ceil = ctx.int("ceil_mode", 0) != 0;
    let input = &x_shape[2..];
    let (out, pb, pe) =
        out_and_pads(&auto_pad, input, &kernel, &stride, &dil, &pads, ceil).map_err(err)?;
    Ok(Window {
        nsp,
        input: to3(input, 1).map_err(err)?,
        out: to3(&out, 1).map_err(err)?,
        kernel: to3(&kernel, 1).map_err(err)?,
        stride: to3(&stride, 1).map_err(err)?,
        dil: to3(&dil, 1).map_err(err)?,
        pad_begin: to3(&pb, 0).map_err(err)?,
        pad_end: to3(&pe, 0).map_err(err)?,
    })
}

/// The lowest value of a storage type, as WGSL.
fn lowest(t: Storage) -> String {
    match t {
        Storage::F32 => f32_literal(f32::NEG_INFINITY),
        Storage::I32 => "i32(-2147483648)".into(),
        Storage::U32 => "0u".into(),
    }
}

pub(super) fn lower_pool(info: &NodeInfo) -> Result<NodeKernels, String> {
    let op = info.node.op_type.as_str();
    let x = input(info, 0)?;
    let y = output(info, 0)?;
    let t = storage(x, &format!("{op} input"))?;
    let is_max = op == "MaxPool";
    if !is_max && t != Storage::F32 {
        return Err(format!("{op} of {:?} (f32 only)", x.dtype));
    }
    check_all_bindings(info)?;
    let w = window(info, &x.shape, is_max || info.opset >= 19)?;
    let mut out_shape = x.shape[..2].to_vec();
    out_shape.extend_from_slice(&w.out[3 - w.nsp..]);
    if y.shape != out_shape {
        return Err(format!(
            "{op}: output {:?} is not the window's {out_shape:?}",
            y.shape
        ));
    }
    let total = y.len();
    if total == 0 {
        return Ok(NodeKernels::default());
    }
    let with_indices = is_max && info.outputs.len() > 1;
    let ctx = op_ctx(info);
    let (init, accum, result, extra) = if is_max {
        let at = if ctx.int("storage_order", 0) != 0 {
            match w.nsp {
                1 => "i2",
                2 => "i1 + i2 * IN1",
                _ => "i0 + i1 * IN0 + i2 * IN0 * IN1",
            }
        } else {
            "off"
        };
        (
            format!("    var best = {};\n    var first = true;\n    var at = -1;", lowest(t)),
            format!("                if (first || v > best) {{\n                    best = v;\n                    first = false;\n                    at = i32(plane * IN_SZ + {at});\n                }}"),
            "best".to_string(),
            if with_indices { "    indices[idx] = at;".to_string() } else { String::new() },
        )
    } else {
        let include = ctx.int("count_include_pad", 0) != 0;
        let divisor = if include {
            "f32(counted(o0, S0, D0, K0, L0) * counted(o1, S1, D1, K1, L1) * counted(o2, S2, D2, K2, L2))"
        } else {
            "f32(n)"
        };
        (
            "    var sum = 0.0;\n    var n = 0u;".to_string(),
            "                sum = sum + v;\n                n = n + 1u;".to_string(),
            format!("sum / {divisor}"),
            String::new(),
        )
    };
    let label = if is_max { "max_pool" } else { "average_pool" };
    let groups = total.div_ceil(64) as u64;
    let g = grid(label, groups, &info.limits)?;
    let mut slots = vec![Slot::Input(0), Slot::Output(0)];
    let mut names = vec!["x", "y"];
    let mut types = vec![t.wgsl().to_string(), t.wgsl().to_string()];
    if with_indices {
        slots.push(Slot::Output(1));
        names.push("indices");
        types.push("i32".into());
    }
    let mut vars: Vec<(&str, String)> = vec![
        ("T", t.wgsl().into()),
        ("TOTAL", total.to_string()),
        ("GRID_X", g[0].to_string()),
        ("GRID_Y", g[1].to_string()),
        ("BINDINGS", bindings(&slots, &names, &types)),
        ("INIT", init),
        ("ACCUM", accum),
        ("RESULT", result),
        ("EXTRA_STORE", extra),
    ];
    const DIMS: [[&str; 7]; 3] = [
        ["IN0", "OUT0", "K0", "S0", "D0", "P0", "L0"],
        ["IN1", "OUT1", "K1", "S1", "D1", "P1", "L1"],
        ["IN2", "OUT2", "K2", "S2", "D2", "P2", "L2"],
    ];
    for (d, keys) in DIMS.iter().enumerate() {
        let values = [
            w.input[d],
            w.out[d],
            w.kernel[d],
            w.stride[d],
            w.dil[d],
            w.pad_begin[d],
            w.pad_begin[d] + w.input[d] + w.pad_end[d],
        ];
        for (k, v) in keys.iter().zip(values) {
            vars.push((*k, v.to_string()));
        }
    }
    Ok(NodeKernels {
        dispatches: vec![Dispatch {
            label: label.into(),
            wgsl: fill(label, POOL, &vars)?,
            slots,
            params: vec![],
            workgroups: g,
        }],
        temps: vec![],
    })
}

pub(super) fn lower_global(info: &NodeInfo) -> Result<NodeKernels, String> {
    let op = info.node.op_type.as_str();
    let x = input(info, 0)?;
    let y = output(info, 0)?;
    if storage(x, op)? != Storage::F32 || y.dtype != x.dtype {
        return Err(format!("{op} of {:?} (f32 only)", x.dtype));
    }
    check_all_bindings(info)?;
    if x.shape.len() < 2 {
        return Err(format!("{op} needs rank >= 2, got {:?}", x.shape));
    }
    let planes = x.shape[0] * x.shape[1];
    let size: usize = x.shape[2..].iter().product();
    if y.len() != planes {
        return Err(format!(
            "{op}: output {:?} does not hold {planes} values",
            y.shape
        ));
    }
    if planes == 0 {
        return Ok(NodeKernels::default());
    }
    if size == 0 {
        return Err(format!("{op} over empty planes {:?}", x.shape));
    }
    let (label, identity, combine, finish) = if op == "GlobalMaxPool" {
        (
            "global_max_pool",
            f32_literal(f32::NEG_INFINITY),
            // NaN by its bits: `b != b` may be compiled as an ordered comparison.
            "select(a, b, b > a || (bitcast<u32>(b) & 0x7fffffffu) > 0x7f800000u)".to_string(),
            "acc".to_string(),
        )
    } else {
        (
            "global_average_pool",
            "0.0".into(),
            "a + b".into(),
            format!("acc / f32({size})"),
        )
    };
    let g = grid(label, planes as u64, &info.limits)?;
    let slots = vec![Slot::Input(0), Slot::Output(0)];
    let vars: Vec<(&str, String)> = vec![
        ("T", "f32".into()),
        ("PLANES", planes.to_string()),
        ("SIZE", size.to_string()),
        ("GRID_X", g[0].to_string()),
        ("GRID_Y", g[1].to_string()),
        (
            "BINDINGS",
            bindings(&slots, &["x", "y"], &["f32".into(), "f32".into()]),
        ),
        ("IDENTITY", identity),
        ("COMBINE", combine),
        ("FINISH", finish),
    ];
    Ok(NodeKernels {
        dispatches: vec![Dispatch {
            label: label.into(),
            wgsl: fill(label, GLOBAL, &vars)?,
            slots,
            params: vec![],
            workgroups: g,
        }],
        temps: vec![],
    })
}
