//! Ops that are one strided copy per input or output (`kernels/data_copy.wgsl`):
//! the iteration space, and the source and destination offsets as coordinates
//! times strides (negative for reversed slices, 0 for broadcast, modulo the
//! input's dimensions for Tile) baked into the shader.
//!
//! A dispatch copies the iteration indices `start..start + count` of its uniform;
//! a copy whose input or output exceeds the storage binding limit is cut into
//! chunks of the iteration, each binding the windows of the tensors it touches
//! ([`chunk_flat`]): contiguous and sliced reads, broadcasts, Tile, Concat and
//! Split tile well; a transpose that moves a large tensor's outer axis inward
//! reads across the whole tensor from any chunk and is refused with the reason.

use crate::codegen::nn::shader::{
    self, answer, fill, grid_for, offset_fn, offset_fn_mod, ELEMENT_WG,
};
use crate::codegen::spec::{Dispatch, Lowering, NodeInfo, NodeKernels, Slot};
use crate::codegen::tile::{chunk_flat, flat_dispatches, slot_len, Access, Axis, ALIGN};

const COPY: &str = include_str!("../../../kernels/data_copy.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let r = match info.node.op_type.as_str() {
        "Transpose" => transpose(info),
        "Slice" => slice(info),
        "Expand" => expand(info),
        "Tile" => tile(info),
        "Concat" => concat(info),
        "Split" => split(info),
        "DepthToSpace" => depth_to_space(info),
        "SpaceToDepth" => space_to_depth(info),
        _ => return None,
    };
    answer(r)
}

/// The source side of a copy: strides, coordinate moduli (0: none) and base.
struct Src {
    strides: Vec<i64>,
    mods: Vec<usize>,
    base: i64,
}

/// A copy over `dims` from `from` to `to` (destination offsets `dst_strides`
/// from `dst_base`): one dispatch, or one per chunk of a tiled copy.
fn copy(
    info: &NodeInfo,
    label: &str,
    (from, to): (Slot, Slot),
    dims: &[usize],
    src: Src,
    dst_strides: &[i64],
    dst_base: i64,
) -> Result<Vec<Dispatch>, String> {
    let n: usize = dims.iter().product();
    if n == 0 {
        return Ok(vec![]);
    }
    let axes = |strides: &[i64], mods: &[usize]| -> Vec<Axis> {
        dims.iter()
            .zip(strides)
            .zip(mods)
            .map(|((&d, &s), &m)| Axis {
                modulus: m as u64,
                ..Axis::new(d, s)
            })
            .collect()
    };
    let accesses = [
        Access {
            slot: from,
            len: slot_len(info, from),
            base: src.base,
            axes: axes(&src.strides, &src.mods),
        },
        Access {
            slot: to,
            len: slot_len(info, to),
            base: dst_base,
            axes: axes(dst_strides, &vec![0; dims.len()]),
        },
    ];
    let chunks =
        chunk_flat(dims, &accesses, &info.limits, ALIGN).map_err(|e| format!("{label}: {e}"))?;
    let wgsl = fill(
        COPY,
        &[
            (
                "SRC",
                offset_fn_mod("src", dims, &src.mods, &src.strides, src.base),
            ),
            ("DST", offset_fn("dst", dims, dst_strides, dst_base)),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    flat_dispatches(label, &wgsl, &chunks, |n| {
        grid_for(n as usize, ELEMENT_WG, info)
    })
}

fn kernels(dispatches: Vec<Vec<Dispatch>>) -> Lowering {
    Lowering::Kernels(NodeKernels {
        dispatches: dispatches.into_iter().flatten().collect(),
        temps: vec![],
    })
}

/// A copy of input 0 to output 0 over the output's shape.
fn gather_copy(info: &NodeInfo, label: &str, src: Src) -> Result<Lowering, String> {
    let y = shader::output(info, 0)?;
    let d = copy(
        info,
        label,
        (Slot::Input(0), Slot::Output(0)),
        &y.shape,
        src,
        &shader::strides(&y.shape),
        0,
    )?;
    Ok(kernels(vec![d]))
}

/// Output 0 as a transpose by `perm` of input 0 viewed with shape `view`.
fn permuted(
    info: &NodeInfo,
    label: &str,
    view: &[usize],
    perm: &[usize],
) -> Result<Lowering, String> {
    let y = shader::output(info, 0)?;
    let vs = shader::strides(view);
    let dims: Vec<usize> = perm.iter().map(|&p| view[p]).collect();
    if dims.iter().product::<usize>() != y.len() {
        return Err(format!(
            "{label}: output {:?} does not match the input",
            y.shape
        ));
    }
    let d = copy(
        info,
        label,
        (Slot::Input(0), Slot::Output(0)),
        &dims,
        Src {
            strides: perm.iter().map(|&p| vs[p]).collect(),
            mods: vec![0; dims.len()],
            base: 0,
        },
        &shader::strides(&dims),
        0,
    )?;
    Ok(kernels(vec![d]))
}

fn transpose(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let rank = x.shape.len();
    let perm: Vec<usize> = match shader::attr_ints(info, "perm") {
        Some(p) => p
            .iter()
            .map(|&a| shader::norm_axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).rev().collect(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..rank).collect::<Vec<_>>() {
        return Err(format!("perm {perm:?} is not a permutation of rank {rank}"));
    }
    permuted(info, "transpose", &x.shape, &perm)
}

/// The first index a Slice takes along an axis of `dim` (as `ops/shape.rs`).
fn slice_start(dim: usize, start: i64, step: i64) -> i64 {
    let d = dim as i64;
    let s = if start < 0 {
        start.saturating_add(d)
    } else {
        start
    };
    if step > 0 {
        s.clamp(0, d)
    } else {
        s.clamp(0, (d - 1).max(0))
    }
}

fn slice(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    let rank = x.shape.len();
    let (starts, axes, steps) = if info.opset < 10 {
        (
            shader::attr_ints(info, "starts").ok_or("Slice needs starts")?,
            shader::attr_ints(info, "axes"),
            None,
        )
    } else {
        (
            shader::const_ints(info, 1, "starts")?.ok_or("Slice needs starts")?,
            shader::const_ints(info, 3, "axes")?,
            shader::const_ints(info, 4, "steps")?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("Slice: starts, axes and steps differ in length".into());
    }
    if y.shape.len() != rank {
        return Err(format!("Slice output {:?} has another rank", y.shape));
    }
    let xs = shader::strides(&x.shape);
    let mut strides = xs.clone();
    let mut base = 0i64;
    for i in 0..starts.len() {
        let a = shader::norm_axis(axes[i], rank)?;
        if steps[i] == 0 {
            return Err("slice step must not be 0".into());
        }
        base += slice_start(x.shape[a], starts[i], steps[i]) * xs[a];
        strides[a] = xs[a] * steps[i];
    }
    gather_copy(
        info,
        "slice",
        Src {
            strides,
            mods: vec![0; rank],
            base,
        },
    )
}

fn expand(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    let (r, xr) = (y.shape.len(), x.shape.len());
    if xr > r {
        return Err(format!("Expand of {:?} to {:?}", x.shape, y.shape));
    }
    let xs = shader::strides(&x.shape);
    let mut strides = vec![0i64; r];
    for (d, s) in strides.iter_mut().enumerate().skip(r - xr) {
        let j = d - (r - xr);
        if x.shape[j] == y.shape[d] {
            *s = xs[j];
        } else if x.shape[j] != 1 {
            return Err(format!("{:?} does not broadcast to {:?}", x.shape, y.shape));
        }
    }
    gather_copy(
        info,
        "expand",
        Src {
            strides,
            mods: vec![0; r],
            base: 0,
        },
    )
}

fn tile(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let y = shader::output(info, 0)?;
    if x.shape.len() != y.shape.len() {
        return Err(format!("Tile of {:?} to {:?}", x.shape, y.shape));
    }
    // The repeats are in the output's shape; they need not be constant.
    gather_copy(
        info,
        "tile",
        Src {
            strides: shader::strides(&x.shape),
            mods: x.shape.clone(),
            base: 0,
        },
    )
}

fn concat(info: &NodeInfo) -> Result<Lowering, String> {
    let y = shader::output(info, 0)?;
    let rank = y.shape.len();
    let axis = shader::norm_axis(shader::attr_int(info, "axis", 0), rank)?;
    let ys = shader::strides(&y.shape);
    let mut pos = 0usize;
    let mut ds = Vec::new();
    for (k, t) in info.inputs.iter().enumerate() {
        let Some(t) = t else { continue };
        if t.shape.len() != rank {
            return Err(format!("Concat input {k} {:?} has another rank", t.shape));
        }
        ds.push(copy(
            info,
            "concat",
            (Slot::Input(k), Slot::Output(0)),
            &t.shape,
            Src {
                strides: shader::strides(&t.shape),
                mods: vec![0; rank],
                base: 0,
            },
            &ys,
            pos as i64 * ys[axis],
        )?);
        pos += t.shape[axis];
    }
    if pos != y.shape[axis] {
        return Err(format!(
            "Concat inputs do not fill the output {:?}",
            y.shape
        ));
    }
    Ok(kernels(ds))
}

fn split(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let rank = x.shape.len();
    let axis = shader::norm_axis(shader::attr_int(info, "axis", 0), rank)?;
    let xs = shader::strides(&x.shape);
    let mut pos = 0usize;
    let mut ds = Vec::new();
    // The pieces' sizes are the outputs' shapes (shape inference read `split`).
    for (k, o) in info.outputs.iter().enumerate() {
        if o.shape.len() != rank {
            return Err(format!("Split output {k} {:?} has another rank", o.shape));
        }
        ds.push(copy(
            info,
            "split",
            (Slot::Input(0), Slot::Output(k)),
            &o.shape,
            Src {
                strides: xs.clone(),
                mods: vec![0; rank],
                base: pos as i64 * xs[axis],
            },
            &shader::strides(&o.shape),
            0,
        )?);
        pos += o.shape[axis];
    }
    if pos > x.shape[axis] {
        return Err(format!("Split outputs exceed the input {:?}", x.shape));
    }
    Ok(kernels(ds))
}

fn nchw_block(info: &NodeInfo) -> Result<([usize; 4], usize), String> {
    let x = shader::input(info, 0)?;
    let b = shader::attr_int(info, "blocksize", 0);
    match (x.shape.as_slice(), b) {
        (&[n, c, h, w], b) if b > 0 => Ok(([n, c, h, w], b as usize)),
        _ => Err(format!(
            "{} needs a 4-D input and a positive blocksize, got {:?} and {b}",
            info.node.op_type, x.shape
        )),
    }
}

fn depth_to_space(info: &NodeInfo) -> Result<Lowering, String> {
    let ([n, c, h, w], b) = nchw_block(info)?;
    if !c.is_multiple_of(b * b) {
        return Err(format!(
            "{c} channels are not divisible by blocksize² {}",
            b * b
        ));
    }
    let c2 = c / (b * b);
    if shader::attr_str(info, "mode", "DCR") == "CRD" {
        permuted(
            info,
            "depth_to_space",
            &[n, c2, b, b, h, w],
            &[0, 1, 4, 2, 5, 3],
        )
    } else {
        permuted(
            info,
            "depth_to_space",
            &[n, b, b, c2, h, w],
            &[0, 3, 4, 1, 5, 2],
        )
    }
}

fn space_to_depth(info: &NodeInfo) -> Result<Lowering, String> {
    let ([n, c, h, w], b) = nchw_block(info)?;
    if !h.is_multiple_of(b) || !w.is_multiple_of(b) {
        return Err(format!("{h}x{w} is not divisible by blocksize {b}"));
    }
    permuted(
        info,
        "space_to_depth",
        &[n, c, h / b, b, w / b, b],
        &[0, 3, 5, 1, 2, 4],
    )
}
