//! What the reduction, normalization and data-movement generators share: filling
//! `kernels/*.wgsl` templates, workgroup grids within the device limits, index
//! arithmetic baked into WGSL, and reading a node's attributes and constant inputs.
//!
//! Templates name their parameters `{{NAME}}`; [`fill`] replaces each one. Shapes
//! and strides are baked into the shader as constants (a shader is generated per
//! node and shape), so the index arithmetic is a few divisions by constants:
//!
//! ```ignore
//! let f = offset_fn("src", &[2, 3], &[1, 2], 0);
//! // fn src(i: u32) -> i32 { var r = i; var o: i32 = 0; ... return o; }
//! ```

use crate::codegen::spec::{DeviceLimits, Lowering, NodeInfo, Storage, TensorDesc};
use crate::ir::attr::AttrValue;

/// Invocations per workgroup of the element-parallel kernels.
pub(crate) const ELEMENT_WG: u32 = 64;

/// Replaces every `{{KEY}}` of `template` by its value.
pub(crate) fn fill(template: &str, subs: &[(&str, String)]) -> String {
    let mut s = template.to_string();
    for (k, v) in subs {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

/// Workgroup counts for `groups` workgroups: as many as allowed along x, the rest
/// along y (shaders compute the linear id as `wid.x + wid.y * nwg.x` and skip ids
/// past the end). `None` when even the 2-D grid is too small.
pub(crate) fn grid(groups: u64, limits: &DeviceLimits) -> Option<[u32; 3]> {
    let max = limits.max_workgroups_per_dim.max(1) as u64;
    if groups == 0 {
        return Some([0, 1, 1]);
    }
    let x = groups.min(max);
    let y = groups.div_ceil(x);
    (y <= max).then_some([x as u32, y as u32, 1])
}

/// The grid for `n` items at `per_group` items per workgroup, or the reason.
pub(crate) fn grid_for(n: usize, per_group: u32, info: &NodeInfo) -> Result<[u32; 3], String> {
    grid((n as u64).div_ceil(per_group as u64), &info.limits)
        .ok_or_else(|| format!("{n} items exceed the device's workgroup grid"))
}

/// Row-major strides of a contiguous tensor, in elements.
pub(crate) fn strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for k in (0..shape.len().saturating_sub(1)).rev() {
        s[k] = s[k + 1] * shape[k + 1] as i64;
    }
    s
}

/// A WGSL function `fn NAME(i: u32) -> i32` that splits `i` into coordinates over
/// `dims` (row-major) and returns `base + Σ coord_k · strides[k]`.
pub(crate) fn offset_fn(name: &str, dims: &[usize], strides: &[i64], base: i64) -> String {
    offset_fn_mod(name, dims, &vec![0; dims.len()], strides, base)
}

/// Like [`offset_fn`], with each coordinate taken modulo `mods[k]` first (0: no
/// modulo), which is how Tile repeats its input.
pub(crate) fn offset_fn_mod(
    name: &str,
    dims: &[usize],
    mods: &[usize],
    strides: &[i64],
    base: i64,
) -> String {
    let mut body = String::new();
    for k in (0..dims.len()).rev() {
        let d = dims[k];
        let coord = if k == 0 {
            "r".to_string()
        } else {
            format!("(r % {d}u)")
        };
        let coord = if mods[k] > 1 {
            format!("({coord} % {}u)", mods[k])
        } else if mods[k] == 1 {
            "0u".to_string()
        } else {
            coord
        };
        if strides[k] != 0 && d > 1 && coord != "0u" {
            body.push_str(&format!("    o += i32({coord}) * ({});\n", strides[k]));
        }
        if k > 0 && d != 1 {
            body.push_str(&format!("    r = r / {d}u;\n"));
        }
    }
    format!(
        "fn {name}(i: u32) -> i32 {{\n    var r = i;\n    var o: i32 = {base};\n{body}    return o;\n}}\n"
    )
}

/// A WGSL literal of an f32 (infinities and NaN by their bits).
pub(crate) fn f32_lit(v: f32) -> String {
    if v.is_finite() {
        format!("{v:?}f")
    } else {
        format!("bitcast<f32>({}u)", v.to_bits())
    }
}

/// A WGSL literal of `v` in the given storage type.
pub(crate) fn lit(storage: Storage, v: f64) -> String {
    match storage {
        Storage::F32 => f32_lit(v as f32),
        Storage::I32 => {
            let i = v as i64 as i32;
            if i == i32::MIN {
                "i32(-2147483648)".to_string()
            } else {
                format!("{i}i")
            }
        }
        Storage::U32 => format!("{}u", v as i64 as u32),
    }
}

/// The storage type of a tensor (callers have checked it has one).
pub(crate) fn storage(t: &TensorDesc) -> Storage {
    Storage::of(t.dtype).unwrap_or(Storage::F32)
}

/// Input `k`'s description, or why it is missing.
pub(crate) fn input<'a>(info: &'a NodeInfo, k: usize) -> Result<&'a TensorDesc, String> {
    info.inputs
        .get(k)
        .and_then(|i| i.as_ref())
        .ok_or_else(|| format!("{} needs input {k}", info.node.op_type))
}

/// Output `k`'s description, or why it is missing.
pub(crate) fn output<'a>(info: &'a NodeInfo, k: usize) -> Result<&'a TensorDesc, String> {
    info.outputs
        .get(k)
        .ok_or_else(|| format!("{} has no output {k}", info.node.op_type))
}

/// Whether input `k` is given.
pub(crate) fn has_input(info: &NodeInfo, k: usize) -> bool {
    matches!(info.inputs.get(k), Some(Some(_)))
}

/// The integer values of constant input `k`: `Ok(None)` when the input is absent,
/// an error naming the input when it is given but not a constant.
pub(crate) fn const_ints(
    info: &NodeInfo,
    k: usize,
    what: &str,
) -> Result<Option<Vec<i64>>, String> {
    if !has_input(info, k) {
        return Ok(None);
    }
    match info.consts.get(k).copied().flatten() {
        Some(t) => t
            .to_i64_vec()
            .map(Some)
            .ok_or_else(|| format!("{what} (input {k}) is not an integer tensor")),
        None => Err(format!(
            "{what} (input {k}) is not a constant: the kernel depends on its values"
        )),
    }
}

pub(crate) fn attr_int(info: &NodeInfo, name: &str, default: i64) -> i64 {
    info.node
        .attr(name)
        .and_then(|a| a.value.as_int())
        .unwrap_or(default)
}

pub(crate) fn attr_float(info: &NodeInfo, name: &str, default: f32) -> f32 {
    info.node
        .attr(name)
        .and_then(|a| a.value.as_float())
        .unwrap_or(default)
}

pub(crate) fn attr_ints(info: &NodeInfo, name: &str) -> Option<Vec<i64>> {
    info.node.attr(name).and_then(|a| match &a.value {
        AttrValue::Ints(v) => Some(v.clone()),
        AttrValue::Int(i) => Some(vec![*i]),
        _ => None,
    })
}

pub(crate) fn attr_str(info: &NodeInfo, name: &str, default: &str) -> String {
    info.node
        .attr(name)
        .and_then(|a| a.value.as_str())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_else(|| default.to_string())
}

/// Normalizes a possibly negative axis against `rank`.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let a = if axis < 0 { axis + rank as i64 } else { axis };
    if a < 0 || a >= rank.max(1) as i64 {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// `Unsupported` when a tensor of the node exceeds the device's storage binding
/// (such tensors need tiling these kernels do not do).
pub(crate) fn binding_limit(info: &NodeInfo) -> Option<Lowering> {
    let max = info.limits.max_storage_binding;
    let too_big = info
        .inputs
        .iter()
        .flatten()
        .chain(info.outputs.iter())
        .find(|t| t.device_bytes() > max)?;
    Some(Lowering::Unsupported(format!(
        "a tensor of shape {:?} ({} bytes) exceeds the {max}-byte storage binding",
        too_big.shape,
        too_big.device_bytes()
    )))
}

/// Finishes a generator's answer: `Err` becomes `Unsupported` with the reason.
pub(crate) fn answer(r: Result<Lowering, String>) -> Option<Lowering> {
    Some(r.unwrap_or_else(Lowering::Unsupported))
}

/// Invocations per workgroup of the row kernels: a power of two, at most 256 and
/// within the device's limit.
pub(crate) fn workgroup_size(info: &NodeInfo) -> u32 {
    let max = info.limits.max_invocations.clamp(1, 256);
    1 << (31 - max.leading_zeros())
}

const FILL: &str = include_str!("../../../kernels/data_fill.wgsl");

/// A dispatch writing to each of the first `n` elements `i` of output 0 the value
/// `value_fn` returns (the body of a WGSL `fn value(i: u32) -> T`).
pub(crate) fn fill_dispatch(
    info: &NodeInfo,
    label: &str,
    t: Storage,
    value_fn: &str,
    n: usize,
) -> Result<crate::codegen::spec::Dispatch, String> {
    Ok(crate::codegen::spec::Dispatch {
        label: label.to_string(),
        wgsl: fill(
            FILL,
            &[
                ("T", t.wgsl().into()),
                ("N", n.to_string()),
                ("VALUE_FN", value_fn.to_string()),
                ("WG", ELEMENT_WG.to_string()),
            ],
        ),
        slots: vec![crate::codegen::spec::Slot::Output(0)],
        params: vec![],
        workgroups: grid_for(n, ELEMENT_WG, info)?,
    })
}

/// WGSL declarations of group 0's storage buffers, binding `i` for entry `i`:
/// `(name, element type, writable)`.
pub(crate) fn bindings(decls: &[(&str, &str, bool)]) -> String {
    decls
        .iter()
        .enumerate()
        .map(|(i, (name, ty, write))| {
            let access = if *write { "read_write" } else { "read" };
            format!("@group(0) @binding({i}) var<storage, {access}> {name}: array<{ty}>;\n")
        })
        .collect()
}

/// One dispatch as a whole lowering.
pub(crate) fn single(
    label: String,
    wgsl: String,
    slots: Vec<crate::codegen::spec::Slot>,
    workgroups: [u32; 3],
) -> Lowering {
    Lowering::Kernels(crate::codegen::spec::NodeKernels {
        dispatches: vec![crate::codegen::spec::Dispatch {
            label,
            wgsl,
            slots,
            params: vec![],
            workgroups,
        }],
        temps: vec![],
    })
}

/// Whether the node's output slot `k` is used.
pub(crate) fn wants_output(info: &NodeInfo, k: usize) -> bool {
    matches!(info.node.outputs.get(k), Some(Some(_))) && k < info.outputs.len()
}
