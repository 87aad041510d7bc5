//! Conv: a direct, register-tiled convolution (`kernels/conv.wgsl`).
//!
//! The geometry (kernel from the weight's shape, strides, dilations, pads,
//! auto_pad) is computed with the interpreter's own [`out_and_pads`], so both
//! agree on output sizes and padding. Each invocation computes `TC` output channels
//! of one group at 4 consecutive positions of the last spatial dim; `TC` is 4, or 1
//! when a group has fewer than 4 output channels (depthwise), so no lanes idle.

use super::template::{bindings, fill, grid};
use super::{conv_operands, op_ctx};
use crate::codegen::spec::{Dispatch, NodeInfo, NodeKernels, Slot};
use crate::ops::conv::{out_and_pads, pads_attr, spatial_attr, to3};

const CONV: &str = include_str!("../../../kernels/conv.wgsl");

/// Output positions per invocation along the last spatial dim (`TP` in the shader).
const TP: usize = 4;

pub(super) fn lower_conv(info: &NodeInfo) -> Result<NodeKernels, String> {
    let (x, w, bias, y) = conv_operands(info, "Conv")?;
    let (xs, ws) = (&x.shape, &w.shape);
    let ctx = op_ctx(info);
    let nsp = xs.len() - 2;
    let kernel = ws[2..].to_vec();
    if let Some(ks) = ctx.ints("kernel_shape") {
        if ks.len() != nsp || ks.iter().zip(&kernel).any(|(&a, &b)| a != b as i64) {
            return Err(format!(
                "Conv: kernel_shape {ks:?} differs from weight {ws:?}"
            ));
        }
    }
    let err = |e: crate::ops::OpError| format!("Conv: {e}");
    let stride = spatial_attr(&ctx, "strides", nsp).map_err(err)?;
    let dil = spatial_attr(&ctx, "dilations", nsp).map_err(err)?;
    let pads = pads_attr(&ctx, nsp).map_err(err)?;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let (out, pb, _) =
        out_and_pads(&auto_pad, &xs[2..], &kernel, &stride, &dil, &pads, false).map_err(err)?;
    let group =
        usize::try_from(ctx.int("group", 1)).map_err(|_| "Conv: group must be >= 1".to_string())?;
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if group == 0 || c % group != 0 || m % group != 0 || ws[1] != c / group {
        return Err(format!(
            "Conv: {c} input channels, weight {ws:?} and group {group} do not fit"
        ));
    }
    if let Some(b) = bias {
        if b.shape != [m] {
            return Err(format!("Conv: bias {:?} is not [{m}]", b.shape));
        }
    }
    let mut out_shape = vec![n, m];
    out_shape.extend(&out);
    if y.shape != out_shape {
        return Err(format!("Conv: output {:?} is not {out_shape:?}", y.shape));
    }
    if y.is_empty() {
        return Ok(NodeKernels::default());
    }
    if x.is_empty() || w.is_empty() {
        return Err(format!("Conv over an empty input {xs:?} or weight {ws:?}"));
    }
    let e = err;
    let (in3, out3, k3) = (
        to3(&xs[2..], 1).map_err(e)?,
        to3(&out, 1).map_err(e)?,
        to3(&kernel, 1).map_err(e)?,
    );
    let (s3, d3, p3) = (
        to3(&stride, 1).map_err(e)?,
        to3(&dil, 1).map_err(e)?,
        to3(&pb, 0).map_err(e)?,
    );
    let (cg, mg) = (c / group, m / group);
    let tc = if mg >= 4 { 4 } else { 1 };
    let total = n * group * mg.div_ceil(tc) * out3[0] * out3[1] * out3[2].div_ceil(TP);
    let label = if tc == 4 { "conv_4x4" } else { "conv_1x4" };
    let g = grid(label, total.div_ceil(64) as u64, &info.limits)?;

    let mut slots = vec![Slot::Input(0), Slot::Input(1)];
    let mut names = vec!["x", "w"];
    if bias.is_some() {
        slots.push(Slot::Input(2));
        names.push("bias");
    }
    slots.push(Slot::Output(0));
    names.push("y");
    let types = vec!["f32".to_string(); slots.len()];

    let mut vars: Vec<(&str, String)> = vec![
        ("N", n.to_string()),
        ("C", c.to_string()),
        ("M", m.to_string()),
        ("CG", cg.to_string()),
        ("MG", mg.to_string()),
        ("GROUP", group.to_string()),
        ("TC", tc.to_string()),
        ("TOTAL", total.to_string()),
        ("GRID_X", g[0].to_string()),
        ("GRID_Y", g[1].to_string()),
        ("BINDINGS", bindings(&slots, &names, &types)),
        ("ACC_DECL", acc_decl(tc)),
        ("TAP", tap(tc)),
        ("STORE", store(tc, bias.is_some())),
    ];
    let keys = [
        ["IN0", "OUT0", "K0", "S0", "D0", "P0"],
        ["IN1", "OUT1", "K1", "S1", "D1", "P1"],
        ["IN2", "OUT2", "K2", "S2", "D2", "P2"],
    ];
    for (d, ks) in keys.iter().enumerate() {
        for (k, v) in ks.iter().zip([in3[d], out3[d], k3[d], s3[d], d3[d], p3[d]]) {
            vars.push((*k, v.to_string()));
        }
    }
    Ok(NodeKernels {
        dispatches: vec![Dispatch {
            label: label.into(),
            wgsl: fill(label, CONV, &vars)?,
            slots,
            params: vec![],
            workgroups: g,
        }],
        temps: vec![],
    })
}

fn acc_decl(tc: usize) -> String {
    let mut s = String::new();
    if tc == 4 {
        // One vec4 over the 4 channels per position; weight rows of the channels,
        // clamped so a partial channel block reads valid memory (its results are
        // not stored).
        for p in 0..TP {
            s.push_str(&format!("    var acc{p} = vec4<f32>(0.0);\n"));
        }
        for ch in 0..4 {
            s.push_str(&format!(
                "    let wrow{ch} = min(m0 + {ch}u, M - 1u) * CG * KSZ;\n"
            ));
        }
    } else {
        s.push_str("    var acc = vec4<f32>(0.0);\n    let wrow0 = m0 * CG * KSZ;\n");
    }
    s
}

fn tap(tc: usize) -> String {
    let ind = "                    ";
    let mut s = String::new();
    for p in 0..TP {
        s.push_str(&format!(
            "{ind}let q{p} = (o2 + {p}u) * S2 + k2 * D2;\n{ind}var x{p} = 0.0;\n{ind}if (q{p} >= P2 && q{p} - P2 < IN2) {{\n{ind}    x{p} = x[row + q{p} - P2];\n{ind}}}\n"
        ));
    }
    if tc == 4 {
        s.push_str(&format!(
            "{ind}let wv = vec4<f32>(w[wrow0 + tap], w[wrow1 + tap], w[wrow2 + tap], w[wrow3 + tap]);\n"
        ));
        for p in 0..TP {
            s.push_str(&format!(
                "{ind}acc{p} = fma(vec4<f32>(x{p}), wv, acc{p});\n"
            ));
        }
    } else {
        s.push_str(&format!(
            "{ind}acc = fma(vec4<f32>(x0, x1, x2, x3), vec4<f32>(w[wrow0 + tap]), acc);\n"
        ));
    }
    s
}

fn store(tc: usize, bias: bool) -> String {
    let mut s = String::new();
    let b = |ch: usize| {
        if bias {
            format!(" + bias[m0 + {ch}u]")
        } else {
            String::new()
        }
    };
    if tc == 4 {
        for ch in 0..4 {
            s.push_str(&format!("    if (cg0 + {ch}u < MG) {{\n"));
            for p in 0..TP {
                s.push_str(&format!(
                    "        if (o2 + {p}u < OUT2) {{\n            y[ybase + {ch}u * OUT_SZ + {p}u] = acc{p}[{ch}]{};\n        }}\n",
                    b(ch)
                ));
            }
            s.push_str("    }\n");
        }
    } else {
        for p in 0..TP {
            s.push_str(&format!(
                "    if (o2 + {p}u < OUT2) {{\n        y[ybase + {p}u] = acc[{p}]{};\n    }}\n",
                b(0)
            ));
        }
    }
    s
}
