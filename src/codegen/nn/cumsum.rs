//! CumSum (`kernels/reduce_cumsum.wgsl`): one invocation per line along the axis,
//! inclusive or exclusive, forward or reversed, as `ops/index.rs`. The axis is an
//! input and must be a constant. f32 and i32 storage (int64 results must fit
//! 32 bits). A tensor over the storage binding limit is split into groups of
//! whole lines, one dispatch each; a single line over the limit is refused.

use super::shader::{self, answer, fill, grid_for, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::codegen::tile::{chunk_flat, flat_dispatches, row_accesses};

const CUMSUM: &str = include_str!("../../../kernels/reduce_cumsum.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    (info.node.op_type == "CumSum").then(|| answer(cumsum(info)))?
}

fn cumsum(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let t = shader::storage(x);
    if t == Storage::U32 {
        return Err(format!("CumSum of {} has no kernel", x.dtype));
    }
    let rank = x.shape.len();
    if rank == 0 {
        return Err("CumSum of a scalar".into());
    }
    let axis = match shader::const_ints(info, 1, "axis")?.as_deref() {
        Some([a]) => shader::norm_axis(*a, rank)?,
        _ => return Err("CumSum needs a one-element axis input".into()),
    };
    let outer: usize = x.shape[..axis].iter().product();
    let inner: usize = x.shape[axis + 1..].iter().product();
    let lines = outer * inner;
    if lines == 0 || x.shape[axis] == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    let len = x.shape[axis];
    let dims = [outer, inner];
    let strides = [(len * inner) as i64, 1];
    let span = ((len - 1) * inner) as i64;
    let mut accesses = row_accesses(info, Slot::Input(0), &dims, &strides, span);
    accesses.extend(row_accesses(info, Slot::Output(0), &dims, &strides, span));
    let chunks =
        chunk_flat(&dims, &accesses, &info.limits, 1).map_err(|e| format!("CumSum: {e}"))?;
    let wgsl = fill(
        CUMSUM,
        &[
            ("T", t.wgsl().into()),
            ("LEN", x.shape[axis].to_string()),
            ("INNER", inner.to_string()),
            (
                "EXCLUSIVE",
                (shader::attr_int(info, "exclusive", 0) != 0).to_string(),
            ),
            (
                "REVERSE",
                (shader::attr_int(info, "reverse", 0) != 0).to_string(),
            ),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches("cumsum", &wgsl, &chunks, |n| {
            grid_for(n as usize, ELEMENT_WG, info)
        })?,
        temps: vec![],
    }))
}
