//! ConvTranspose: a direct gather (`kernels/conv_transpose.wgsl`), one output
//! element per invocation summing over the input positions and taps that map
//! onto it.
//!
//! The geometry (output sizes and begin pads from strides, dilations, pads,
//! output_padding, auto_pad and output_shape) follows the interpreter's
//! `conv_transpose_geom` in `ops/conv.rs` step for step; that function is private
//! there, so [`geometry`] restates it on top of the helpers the interpreter does
//! expose ([`spatial_attr`], [`pads_attr`], [`to3`]). End pads need no kernel
//! constant: an output position past the full output simply gathers nothing
//! (the interpreter crops or zero-extends the same way).

use super::template::{bindings, fill, grid};
use super::{conv_operands, op_ctx};
use crate::codegen::spec::{Dispatch, NodeInfo, NodeKernels, Slot};
use crate::ops::conv::{spatial_attr, to3};
use crate::ops::OpCtx;

const CONV_TRANSPOSE: &str = include_str!("../../../kernels/conv_transpose.wgsl");

pub(super) fn lower_conv_transpose(info: &NodeInfo) -> Result<NodeKernels, String> {
    let (x, w, bias, y) = conv_operands(info, "ConvTranspose")?;
    let (xs, ws) = (&x.shape, &w.shape);
    let ctx = op_ctx(info);
    let (out, pb) = geometry(&ctx, xs, ws)?;
    let group = usize::try_from(ctx.int("group", 1))
        .map_err(|_| "ConvTranspose: group must be >= 1".to_string())?;
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    if group == 0 || c % group != 0 || ws[0] != c {
        return Err(format!(
            "ConvTranspose: {c} input channels, weight {ws:?} and group {group} do not fit"
        ));
    }
    let m = mg * group;
    if let Some(b) = bias {
        if b.shape != [m] {
            return Err(format!("ConvTranspose: bias {:?} is not [{m}]", b.shape));
        }
    }
    let mut out_shape = vec![n, m];
    out_shape.extend(&out);
    if y.shape != out_shape {
        return Err(format!(
            "ConvTranspose: output {:?} is not {out_shape:?}",
            y.shape
        ));
    }
    if y.is_empty() {
        return Ok(NodeKernels::default());
    }
    if x.is_empty() || w.is_empty() {
        return Err(format!(
            "ConvTranspose over an empty input {xs:?} or weight {ws:?}"
        ));
    }
    let total = y.len();
    if total > (u32::MAX - 64) as usize || x.len() > u32::MAX as usize {
        return Err(format!(
            "ConvTranspose: {total} outputs exceed 32-bit indexing"
        ));
    }
    let e = |e: crate::ops::OpError| format!("ConvTranspose: {e}");
    let nsp = xs.len() - 2;
    let stride = spatial_attr(&ctx, "strides", nsp).map_err(e)?;
    let dil = spatial_attr(&ctx, "dilations", nsp).map_err(e)?;
    let (in3, out3, k3) = (
        to3(&xs[2..], 1).map_err(e)?,
        to3(&out, 1).map_err(e)?,
        to3(&ws[2..], 1).map_err(e)?,
    );
    let (s3, d3, p3) = (
        to3(&stride, 1).map_err(e)?,
        to3(&dil, 1).map_err(e)?,
        to3(&pb, 0).map_err(e)?,
    );
    // Every constant the shader computes with (o + P, k * D, strides and sums of
    // sizes) must stay within u32.
    for d in 0..3 {
        let reach = (k3[d] as u64).saturating_mul(d3[d] as u64);
        let span = (out3[d] as u64).saturating_add(p3[d] as u64);
        if reach > u64::from(u32::MAX) || span > u64::from(u32::MAX) {
            return Err("ConvTranspose: geometry exceeds 32-bit indexing".into());
        }
    }
    let label = "conv_transpose";
    let g = grid(label, (total as u64).div_ceil(64), &info.limits)?;

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
        ("C", c.to_string()),
        ("M", m.to_string()),
        ("CG", (c / group).to_string()),
        ("MG", mg.to_string()),
        ("TOTAL", total.to_string()),
        ("GRID_X", g[0].to_string()),
        ("GRID_Y", g[1].to_string()),
        ("BINDINGS", bindings(&slots, &names, &types)),
        (
            "BIAS",
            if bias.is_some() {
                " + bias[mo]".to_string()
            } else {
                String::new()
            },
        ),
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
            wgsl: fill(label, CONV_TRANSPOSE, &vars)?,
            slots,
            params: vec![],
            workgroups: g,
        }],
        temps: vec![],
    })
}

/// The output's spatial size and the begin pads: the interpreter's own geometry
/// (`crate::ops::conv::conv_transpose_geom`, normalised to three spatial dims with
/// leading 1s), cut back to the node's `xs.len() - 2` spatial dims.
fn geometry(ctx: &OpCtx, xs: &[usize], ws: &[usize]) -> Result<(Vec<usize>, Vec<usize>), String> {
    let g = crate::ops::conv::conv_transpose_geom(ctx, xs, ws)
        .map_err(|e| format!("ConvTranspose: {e}"))?;
    let nsp = xs.len() - 2;
    Ok((g.out[3 - nsp..].to_vec(), g.pad_begin[3 - nsp..].to_vec()))
}
