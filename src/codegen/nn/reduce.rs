//! The Reduce* family and ArgMax/ArgMin.
//!
//! A reduction is `ROWS` rows (one per output element, numbered over the kept
//! axes) of `LEN` elements (over the reduced axes, adjacent or not). The offsets
//! of a row and of an element in it are baked into the shader, so no transpose is
//! needed. Rows of 64 elements or more are shared by a workgroup (a tree in
//! workgroup memory, `kernels/reduce.wgsl`); shorter rows take one invocation each
//! (`kernels/reduce_rows.wgsl`). Axes follow the interpreter (`ops/reduce.rs`):
//! an input from opset 13 (ReduceSum) or 18 (the others), an attribute before;
//! empty axes reduce everything unless `noop_with_empty_axes` (then the output
//! aliases the input).
//!
//! Element types: f32 for every reduction; i32 storage (int32, int64) for Sum,
//! Mean, Max, Min, Prod, L1 and SumSquare, with the wrapping arithmetic of the
//! interpreter (int64 results must fit 32 bits); u32 storage (bool, uint8) for Max
//! and Min. The rest falls back to the CPU.
//!
//! A tensor over the storage binding limit is split into groups of whole rows,
//! one dispatch each, binding the window of the input the group reads (a row
//! reaches from its first element to its last reduced one) and of the output; a
//! single row over the limit is refused.

use super::shader::{self, answer, fill, grid_for, offset_fn, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::codegen::tile::{
    chunk_flat, contiguous, flat_dispatches, row_accesses, slot_len, Access, Chunk,
};

const REDUCE_WG: &str = include_str!("../../../kernels/reduce.wgsl");
const REDUCE_ROWS: &str = include_str!("../../../kernels/reduce_rows.wgsl");
const REDUCE_ARG: &str = include_str!("../../../kernels/reduce_arg.wgsl");

/// Rows at least this long are reduced by a whole workgroup.
const WORKGROUP_ROW: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let kind = match info.node.op_type.as_str() {
        "ReduceSum" => Kind::Sum,
        "ReduceMean" => Kind::Mean,
        "ReduceMax" => Kind::Max,
        "ReduceMin" => Kind::Min,
        "ReduceProd" => Kind::Prod,
        "ReduceL1" => Kind::L1,
        "ReduceL2" => Kind::L2,
        "ReduceLogSum" => Kind::LogSum,
        "ReduceLogSumExp" => Kind::LogSumExp,
        "ReduceSumSquare" => Kind::SumSquare,
        "ArgMax" => return answer(arg(info, true)),
        "ArgMin" => return answer(arg(info, false)),
        _ => return None,
    };
    answer(reduce(info, kind))
}

/// The (sorted, distinct) reduced axes, or `None` for "copy the input".
fn axes(info: &NodeInfo, kind: Kind, rank: usize) -> Result<Option<Vec<usize>>, String> {
    let from_input = if kind == Kind::Sum {
        info.opset >= 13
    } else {
        info.opset >= 18
    };
    let given = if from_input {
        shader::const_ints(info, 1, "axes")?
    } else {
        shader::attr_ints(info, "axes")
    };
    let noop = shader::attr_int(info, "noop_with_empty_axes", 0) != 0;
    match given {
        Some(v) if !v.is_empty() => {
            let mut r = v
                .iter()
                .map(|&a| shader::norm_axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            r.sort_unstable();
            r.dedup();
            Ok(Some(r))
        }
        _ if noop => Ok(None),
        _ => Ok(Some((0..rank).collect())),
    }
}

/// WGSL snippets of a reduction: (init, combine, load, finish).
fn snippets(kind: Kind, t: Storage) -> Result<[String; 4], String> {
    let ty = t.wgsl();
    let zero = shader::lit(t, 0.0);
    let (lowest, highest) = match t {
        Storage::F32 => (
            shader::f32_lit(f32::NEG_INFINITY),
            shader::f32_lit(f32::INFINITY),
        ),
        Storage::I32 => ("i32(-2147483648)".into(), "2147483647i".into()),
        Storage::U32 => ("0u".into(), "4294967295u".into()),
    };
    let int_ok = matches!(
        kind,
        Kind::Sum | Kind::Mean | Kind::Max | Kind::Min | Kind::Prod | Kind::L1 | Kind::SumSquare
    );
    let ok = match t {
        Storage::F32 => true,
        Storage::I32 => int_ok,
        Storage::U32 => matches!(kind, Kind::Max | Kind::Min),
    };
    if !ok {
        return Err(format!("{kind:?} reduction of {ty} storage has no kernel"));
    }
    let add = "return a + b;".to_string();
    let plain = "return v;".to_string();
    let same = "return a;".to_string();
    Ok(match kind {
        Kind::Sum => [zero, add, plain, same],
        Kind::Mean => [zero, add, plain, format!("return a / {ty}(LEN);")],
        Kind::Max => [lowest, "return max_nan(a, b);".into(), plain, same],
        Kind::Min => [
            highest,
            "return select(a, b, b < a || b != b);".into(),
            plain,
            same,
        ],
        Kind::Prod => [shader::lit(t, 1.0), "return a * b;".into(), plain, same],
        Kind::L1 => [zero, add, "return abs(v);".into(), same],
        Kind::SumSquare => [zero, add, "return v * v;".into(), same],
        Kind::L2 => [zero, add, "return v * v;".into(), "return sqrt(a);".into()],
        Kind::LogSum => [zero, add, plain, "return log(a);".into()],
        Kind::LogSumExp => [
            zero,
            add,
            "return exp(v - shift);".into(),
            "return log(a) + shift;".into(),
        ],
    })
}

/// The value of a reduction over no elements (the interpreter's).
fn empty_value(kind: Kind, t: Storage) -> f64 {
    let float = t == Storage::F32;
    match kind {
        Kind::Sum | Kind::L1 | Kind::L2 | Kind::SumSquare => 0.0,
        Kind::Mean if float => f64::NAN,
        Kind::Mean => 0.0,
        Kind::Prod => 1.0,
        Kind::Max if float => f64::NEG_INFINITY,
        Kind::Max if t == Storage::I32 => i32::MIN as f64,
        Kind::Max => 0.0,
        Kind::Min if float => f64::INFINITY,
        Kind::Min if t == Storage::I32 => i32::MAX as f64,
        Kind::Min => u32::MAX as f64,
        Kind::LogSum | Kind::LogSumExp => f64::NEG_INFINITY,
    }
}

/// Groups of whole rows within the binding limit: row `r` (flat over `kdims`)
/// starts at `Σ c_d · kstr[d]` of the input and reaches `span` elements past it;
/// output element `r` is its result.
fn row_chunks(
    info: &NodeInfo,
    kdims: &[usize],
    kstr: &[i64],
    span: i64,
) -> Result<Vec<Chunk>, String> {
    let mut accesses = row_accesses(info, Slot::Input(0), kdims, kstr, span);
    accesses.push(Access {
        slot: Slot::Output(0),
        len: slot_len(info, Slot::Output(0)),
        base: 0,
        axes: contiguous(kdims),
    });
    chunk_flat(kdims, &accesses, &info.limits, 1).map_err(|e| format!("{}: {e}", info.node.op_type))
}

fn reduce(info: &NodeInfo, kind: Kind) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    let t = shader::storage(x);
    let rank = x.shape.len();
    let Some(axes) = axes(info, kind, rank)? else {
        return Ok(Lowering::Alias);
    };
    let [init, combine, load, finish] = snippets(kind, t)?;
    let st = shader::strides(&x.shape);
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let pick = |ds: &[usize]| -> (Vec<usize>, Vec<i64>) {
        (
            ds.iter().map(|&d| x.shape[d]).collect(),
            ds.iter().map(|&d| st[d]).collect(),
        )
    };
    let (kdims, kstr) = pick(&kept);
    let (rdims, rstr) = pick(&axes);
    let rows: usize = kdims.iter().product();
    let len: usize = rdims.iter().product();
    if rows != y.len() {
        return Err(format!(
            "output shape {:?} does not hold the {rows} reduced rows",
            y.shape
        ));
    }
    if rows == 0 {
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    if len == 0 {
        return Ok(Lowering::Kernels(NodeKernels {
            dispatches: vec![shader::fill_dispatch(
                info,
                &format!("{}_empty", info.node.op_type),
                t,
                &format!("return {};", shader::lit(t, empty_value(kind, t))),
                rows,
            )?],
            temps: vec![],
        }));
    }
    let span: i64 = rdims
        .iter()
        .zip(&rstr)
        .map(|(&d, &s)| (d as i64 - 1) * s)
        .sum();
    let chunks = row_chunks(info, &kdims, &kstr, span)?;
    let wide = len >= WORKGROUP_ROW;
    let wg = if wide {
        shader::workgroup_size(info)
    } else {
        ELEMENT_WG
    };
    let is_finite = if t == Storage::F32 {
        "return v == v && abs(v) <= 3.4028235e38;"
    } else {
        "return true;"
    };
    let lowest = match t {
        Storage::F32 => shader::f32_lit(f32::NEG_INFINITY),
        Storage::I32 => "i32(-2147483648)".into(),
        Storage::U32 => "0u".into(),
    };
    let wgsl = fill(
        if wide { REDUCE_WG } else { REDUCE_ROWS },
        &[
            ("T", t.wgsl().into()),
            ("LEN", len.to_string()),
            ("WG", wg.to_string()),
            ("SHIFTED", (kind == Kind::LogSumExp).to_string()),
            ("ROW_BASE", offset_fn("row_base", &kdims, &kstr, 0)),
            ("RED_OFF", offset_fn("red_off", &rdims, &rstr, 0)),
            ("COMBINE", combine),
            ("LOAD", load),
            ("FINISH", finish),
            ("INIT", init),
            ("ZERO", shader::lit(t, 0.0)),
            ("LOWEST", lowest),
            ("IS_FINITE", is_finite.into()),
        ],
    );
    let per_group = if wide { 1 } else { wg };
    let label = format!(
        "{}_{}",
        info.node.op_type.to_lowercase(),
        if wide { "workgroup" } else { "rows" }
    );
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches(&label, &wgsl, &chunks, |n| {
            grid_for(n as usize, per_group, info)
        })?,
        temps: vec![],
    }))
}

fn arg(info: &NodeInfo, max: bool) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let t = shader::storage(x);
    let rank = x.shape.len();
    if rank == 0 {
        return Err("ArgMax/ArgMin of a scalar".into());
    }
    let axis = shader::norm_axis(shader::attr_int(info, "axis", 0), rank)?;
    let len = x.shape[axis];
    if len == 0 {
        return Err("ArgMax/ArgMin over an empty axis".into());
    }
    let st = shader::strides(&x.shape);
    let kept: Vec<usize> = (0..rank).filter(|&d| d != axis).collect();
    let kdims: Vec<usize> = kept.iter().map(|&d| x.shape[d]).collect();
    let kstr: Vec<i64> = kept.iter().map(|&d| st[d]).collect();
    let rows: usize = kdims.iter().product();
    if rows == 0 {
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    let chunks = row_chunks(info, &kdims, &kstr, (len as i64 - 1) * st[axis])?;
    let select_last = shader::attr_int(info, "select_last_index", 0) != 0;
    let wgsl = fill(
        REDUCE_ARG,
        &[
            ("T", t.wgsl().into()),
            ("LEN", len.to_string()),
            ("STRIDE", st[axis].to_string()),
            ("SELECT_LAST", select_last.to_string()),
            ("ROW_BASE", offset_fn("row_base", &kdims, &kstr, 0)),
            ("BETTER", if max { "c > b" } else { "c < b" }.into()),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    let label = if max { "argmax" } else { "argmin" };
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches(label, &wgsl, &chunks, |n| {
            grid_for(n as usize, ELEMENT_WG, info)
        })?,
        temps: vec![],
    }))
}
