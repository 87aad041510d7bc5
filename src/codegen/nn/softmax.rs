//! Softmax and LogSoftmax (`kernels/softmax.wgsl`).
//!
//! Before opset 13 the input is coerced to 2-D at `axis` (default 1) and each row
//! of `prod(shape[axis..])` elements is normalised; from opset 13 the op
//! normalises along the single axis `axis` (default -1), a strided row when the
//! axis is not the last. One workgroup per row, the maximum subtracted first, as
//! in `ops/softmax.rs`. f32 only.
//!
//! A tensor over the storage binding limit is split into groups of whole rows,
//! one dispatch each, binding the window of the input and the output the group
//! covers (a row's elements stay in one dispatch); a single row over the limit is
//! refused.

use super::shader::{self, answer, fill, grid_for};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::codegen::tile::{chunk_flat, flat_dispatches, row_accesses};

const SOFTMAX: &str = include_str!("../../../kernels/softmax.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let log = match info.node.op_type.as_str() {
        "Softmax" => false,
        "LogSoftmax" => true,
        _ => return None,
    };
    answer(softmax(info, log))
}

/// (rows, row length, stride of the row's elements).
fn layout(info: &NodeInfo, shape: &[usize]) -> Result<(usize, usize, usize), String> {
    let rank = shape.len();
    if info.opset < 13 {
        let axis = shader::norm_axis(shader::attr_int(info, "axis", 1), rank)?.min(rank);
        Ok((
            shape[..axis].iter().product(),
            shape[axis..].iter().product(),
            1,
        ))
    } else if rank == 0 {
        Ok((1, 1, 1))
    } else {
        let axis = shader::norm_axis(shader::attr_int(info, "axis", -1), rank)?;
        let outer: usize = shape[..axis].iter().product();
        let inner: usize = shape[axis + 1..].iter().product();
        Ok((outer * inner, shape[axis], inner))
    }
}

fn softmax(info: &NodeInfo, log: bool) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    if shader::storage(x) != Storage::F32 {
        return Err(format!(
            "{} of {} has no kernel",
            info.node.op_type, x.dtype
        ));
    }
    let (rows, len, inner) = layout(info, &x.shape)?;
    if rows == 0 || len == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    let wg = shader::workgroup_size(info).min((len as u32).next_power_of_two().max(32));
    // Rows are (outer, inner) pairs; a row's elements lie `inner` apart.
    let (outer, inner_rows) = (rows / inner, inner);
    let row_dims = [outer, inner_rows];
    let row_strides = [(len * inner) as i64, 1];
    let span = ((len - 1) * inner) as i64;
    let mut accesses = row_accesses(info, Slot::Input(0), &row_dims, &row_strides, span);
    accesses.extend(row_accesses(
        info,
        Slot::Output(0),
        &row_dims,
        &row_strides,
        span,
    ));
    let chunks = chunk_flat(&row_dims, &accesses, &info.limits, 1)
        .map_err(|e| format!("{}: {e}", info.node.op_type))?;
    let wgsl = fill(
        SOFTMAX,
        &[
            ("LEN", len.to_string()),
            ("INNER", inner.to_string()),
            ("WG", wg.to_string()),
            ("LOG", log.to_string()),
        ],
    );
    let label = if log { "log_softmax" } else { "softmax" };
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches(label, &wgsl, &chunks, |n| grid_for(n as usize, 1, info))?,
        temps: vec![],
    }))
}
