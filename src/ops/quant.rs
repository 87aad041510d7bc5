//! Quantisation: QuantizeLinear, DequantizeLinear, DynamicQuantizeLinear,
//! QLinearMatMul and QLinearConv.
//!
//! Scales and zero points are per tensor (one element), per axis (1-D, along
//! `axis`) or blocked (`block_size` > 0: the parameter has X's rank and
//! `ceil(X.shape[axis] / block_size)` entries along `axis`).
//! Quantised types: uint8, int8, uint16, int16 (int32 also as a
//! DequantizeLinear input); float8, int4 and int2 are reported Unsupported.
//!
//! Arithmetic follows the ONNX reference implementation so results match
//! bit for bit: QuantizeLinear computes `x / scale` in f32 (f64 when an input
//! is f64) and rounds half to even; DequantizeLinear computes
//! `(f32(x) - f32(zp)) * scale` in f32 and returns the scale's type (or
//! `output_dtype`); QLinearMatMul/QLinearConv accumulate exactly in i64, form
//! the multiplier `a_scale * b_scale / y_scale` in the scales' type and
//! requantise in f64 with round-half-to-even and saturation.

use super::broadcast::broadcast_shape;
use super::norm::split3;
use super::{norm_axis, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("QuantizeLinear", quantize_linear);
    r.add("DequantizeLinear", dequantize_linear);
    r.add("DynamicQuantizeLinear", dynamic_quantize_linear);
    r.add("QLinearMatMul", qlinear_matmul);
    r.add("QLinearConv", qlinear_conv);
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The integer range of a quantised type.
fn quant_range(d: DType) -> Result<(i64, i64), OpError> {
    Ok(match d {
        DType::U8 => (0, 255),
        DType::I8 => (-128, 127),
        DType::U16 => (0, 65535),
        DType::I16 => (-32768, 32767),
        DType::I32 => (i32::MIN as i64, i32::MAX as i64),
        d => return Err(OpError::Unsupported(format!("quantised type {d}"))),
    })
}

/// An integer tensor of type `d` from values already in its range.
fn int_tensor(d: DType, shape: &[usize], v: Vec<i64>) -> Result<TensorValue, OpError> {
    let s = IxDyn(shape);
    let bad = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    Ok(match d {
        DType::U8 => TensorValue::U8(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as u8).collect()).map_err(bad)?,
        ),
        DType::I8 => TensorValue::I8(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as i8).collect()).map_err(bad)?,
        ),
        DType::U16 => TensorValue::U16(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as u16).collect()).map_err(bad)?,
        ),
        DType::I16 => TensorValue::I16(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as i16).collect()).map_err(bad)?,
        ),
        DType::I32 => TensorValue::I32(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as i32).collect()).map_err(bad)?,
        ),
        d => return Err(OpError::Unsupported(format!("quantised type {d}"))),
    })
}

/// The elements of an integer tensor (quantised data or zero points).
fn ints(t: &TensorValue, what: &str) -> Result<Vec<i64>, OpError> {
    match t {
        TensorValue::U8(_)
        | TensorValue::I8(_)
        | TensorValue::U16(_)
        | TensorValue::I16(_)
        | TensorValue::I32(_) => t
            .to_i64_vec()
            .ok_or_else(|| OpError::Invalid(format!("{what} must be an integer tensor"))),
        t => Err(OpError::Unsupported(format!(
            "{what} of type {}",
            t.dtype()
        ))),
    }
}

/// The elements of an 8- or 16-bit integer tensor (QLinear operands, so
/// that exact i64 accumulation cannot overflow).
fn small_ints(t: &TensorValue, what: &str) -> Result<Vec<i64>, OpError> {
    match t {
        TensorValue::U8(_) | TensorValue::I8(_) | TensorValue::U16(_) | TensorValue::I16(_) => {
            ints(t, what)
        }
        t => Err(OpError::Unsupported(format!(
            "{what} of type {}",
            t.dtype()
        ))),
    }
}

/// The elements of a float tensor as f64 (scales, and float inputs).
fn floats(t: &TensorValue, what: &str) -> Result<Vec<f64>, OpError> {
    match t {
        TensorValue::F32(_) | TensorValue::F64(_) | TensorValue::F16(_) | TensorValue::BF16(_) => t
            .to_f64_vec()
            .ok_or_else(|| OpError::Invalid(format!("{what} must be a float tensor"))),
        t => Err(OpError::Invalid(format!(
            "{what} must be a float tensor, got {}",
            t.dtype()
        ))),
    }
}

/// Rounds `v` to the precision of `d` (f32, f16, bf16; f64 unchanged).
fn round_to(d: DType, v: f64) -> f64 {
    match d {
        DType::F32 => v as f32 as f64,
        DType::F16 => f16::from_f64(v).to_f64(),
        DType::BF16 => bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// A float tensor of type `d` from f64 values.
fn float_tensor(d: DType, shape: &[usize], v: Vec<f64>) -> Result<TensorValue, OpError> {
    let s = IxDyn(shape);
    let bad = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    Ok(match d {
        DType::F64 => TensorValue::F64(ArrayD::from_shape_vec(s, v).map_err(bad)?),
        DType::F16 => TensorValue::F16(
            ArrayD::from_shape_vec(s, v.into_iter().map(f16::from_f64).collect()).map_err(bad)?,
        ),
        DType::BF16 => TensorValue::BF16(
            ArrayD::from_shape_vec(s, v.into_iter().map(bf16::from_f64).collect()).map_err(bad)?,
        ),
        DType::F32 => TensorValue::F32(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as f32).collect()).map_err(bad)?,
        ),
        d => {
            return Err(OpError::Invalid(format!(
                "output type {d} is not a float type"
            )))
        }
    })
}

/// How a scale/zero point maps onto the elements of X.
#[derive(Clone, Copy, Debug)]
enum ParamLayout {
    Tensor,
    /// Per index along the axis: X is (outer, len, inner).
    Axis {
        outer: usize,
        len: usize,
        inner: usize,
    },
    /// Blocked along the axis: the parameter is (outer, blocks, inner).
    Block {
        outer: usize,
        len: usize,
        inner: usize,
        bs: usize,
        blocks: usize,
    },
}

impl ParamLayout {
    fn new(ctx: &OpCtx, x_shape: &[usize], scale_shape: &[usize]) -> Result<ParamLayout, OpError> {
        let count: usize = scale_shape.iter().product();
        let block = ctx.int("block_size", 0);
        if block < 0 {
            return Err(OpError::Invalid(format!("block_size {block} is negative")));
        }
        if block == 0 && count == 1 && scale_shape.len() <= 1 {
            return Ok(ParamLayout::Tensor);
        }
        if ctx.opset < 13 {
            return Err(OpError::Invalid(
                "scales must be per tensor before opset 13".into(),
            ));
        }
        let axis = norm_axis(ctx.int("axis", 1), x_shape.len())?;
        if x_shape.is_empty() {
            return Err(OpError::Invalid(
                "a per-axis scale needs X of rank ≥ 1".into(),
            ));
        }
        let (outer, len, inner) = split3(x_shape, axis);
        if block == 0 {
            if scale_shape.len() != 1 || scale_shape[0] != len {
                return Err(OpError::Invalid(format!(
                    "scale shape {scale_shape:?} does not match axis {axis} of {x_shape:?}"
                )));
            }
            return Ok(ParamLayout::Axis { outer, len, inner });
        }
        let bs = block as usize;
        let blocks = len.div_ceil(bs);
        let mut want = x_shape.to_vec();
        want[axis] = blocks;
        if scale_shape != want.as_slice() {
            return Err(OpError::Invalid(format!(
                "blocked scale shape {scale_shape:?}, expected {want:?}"
            )));
        }
        Ok(ParamLayout::Block {
            outer,
            len,
            inner,
            bs,
            blocks,
        })
    }

    /// The parameter index of every element of X, in order.
    fn indices(self, n: usize) -> Vec<usize> {
        match self {
            ParamLayout::Tensor => vec![0; n],
            ParamLayout::Axis { outer, len, inner } => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..outer {
                    for k in 0..len {
                        v.extend(std::iter::repeat_n(k, inner));
                    }
                }
                v
            }
            ParamLayout::Block {
                outer,
                len,
                inner,
                bs,
                blocks,
            } => {
                let mut v = Vec::with_capacity(n);
                for o in 0..outer {
                    for k in 0..len {
                        let base = (o * blocks + k / bs) * inner;
                        v.extend(base..base + inner);
                    }
                }
                v
            }
        }
    }
}

fn check_zp_shape(zp: &TensorValue, scale: &TensorValue) -> Result<(), OpError> {
    if zp.len() != scale.len() {
        return Err(OpError::Invalid(format!(
            "zero point shape {:?} does not match scale shape {:?}",
            zp.shape(),
            scale.shape()
        )));
    }
    Ok(())
}

/// Requantises an exact value: round half to even, add the zero point, saturate.
fn requant(v: f64, zp: i64, lo: i64, hi: i64) -> i64 {
    let r = v.round_ties_even();
    if r.is_nan() {
        return zp.clamp(lo, hi);
    }
    let r = r.clamp(-1e18, 1e18) as i64;
    r.saturating_add(zp).clamp(lo, hi)
}

// ---------------------------------------------------------------------------
// QuantizeLinear / DequantizeLinear
// ---------------------------------------------------------------------------

fn quantize_linear(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let scale = ctx.input(inputs, 1)?;
    let zp = ctx.opt_input(inputs, 2)?;
    let out_dtype = match zp {
        Some(z) => z.dtype(),
        None => match ctx.int("output_dtype", 0) {
            0 => DType::U8,
            v => DType::from_onnx(v as i32),
        },
    };
    let (lo, hi) = match out_dtype {
        DType::U8 | DType::I8 | DType::U16 | DType::I16 => quant_range(out_dtype)?,
        d => return Err(OpError::Unsupported(format!("QuantizeLinear to {d}"))),
    };
    let layout = ParamLayout::new(ctx, x.shape(), scale.shape())?;
    let xs: Vec<f64> = match x {
        TensorValue::I32(_) => ints(x, "x")?.into_iter().map(|v| v as f64).collect(),
        _ => floats(x, "x")?,
    };
    let ss = floats(scale, "y_scale")?;
    let zs = match zp {
        Some(z) => {
            check_zp_shape(z, scale)?;
            ints(z, "y_zero_point")?
        }
        None => vec![0; ss.len()],
    };
    let wide = x.dtype() == DType::F64 || scale.dtype() == DType::F64;
    let idx = layout.indices(xs.len());
    let q: Vec<i64> = xs
        .iter()
        .zip(&idx)
        .map(|(&v, &p)| {
            let d = if wide {
                v / ss[p]
            } else {
                ((v as f32) / (ss[p] as f32)) as f64
            };
            requant(d, zs[p], lo, hi)
        })
        .collect();
    Ok(vec![RtValue::Tensor(int_tensor(out_dtype, x.shape(), q)?)])
}

fn dequantize_linear(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let scale = ctx.input(inputs, 1)?;
    let zp = ctx.opt_input(inputs, 2)?;
    let xs = ints(x, "x")?;
    if let Some(z) = zp {
        if z.dtype() != x.dtype() {
            return Err(OpError::Invalid(format!(
                "zero point type {} differs from x type {}",
                z.dtype(),
                x.dtype()
            )));
        }
        check_zp_shape(z, scale)?;
    }
    let layout = ParamLayout::new(ctx, x.shape(), scale.shape())?;
    let ss = floats(scale, "x_scale")?;
    let zs = match zp {
        Some(z) => ints(z, "x_zero_point")?,
        None => vec![0; ss.len()],
    };
    let out_dtype = match ctx.int("output_dtype", 0) {
        0 => scale.dtype(),
        v => DType::from_onnx(v as i32),
    };
    let wide = scale.dtype() == DType::F64;
    let idx = layout.indices(xs.len());
    let y: Vec<f64> = xs
        .iter()
        .zip(&idx)
        .map(|(&v, &p)| {
            if wide {
                (v as f64 - zs[p] as f64) * ss[p]
            } else {
                ((v as f32 - zs[p] as f32) * ss[p] as f32) as f64
            }
        })
        .collect();
    Ok(vec![RtValue::Tensor(float_tensor(
        out_dtype,
        x.shape(),
        y,
    )?)])
}

fn dynamic_quantize_linear(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let xs: Vec<f32> = floats(x, "x")?.into_iter().map(|v| v as f32).collect();
    let maxx = xs.iter().copied().fold(0.0f32, f32::max);
    let minx = xs.iter().copied().fold(0.0f32, f32::min);
    let scale = if maxx == minx { 1.0 } else { maxx - minx } / 255.0f32;
    let zp = (0.0f32 - minx / scale).clamp(0.0, 255.0).round_ties_even();
    let y: Vec<i64> = xs
        .iter()
        .map(|&v| ((v / scale).round_ties_even() + zp).clamp(0.0, 255.0) as i64)
        .collect();
    Ok(vec![
        RtValue::Tensor(int_tensor(DType::U8, x.shape(), y)?),
        RtValue::Tensor(float_tensor(x.dtype(), &[], vec![scale as f64])?),
        RtValue::Tensor(int_tensor(DType::U8, &[], vec![zp as i64])?),
    ])
}

// ---------------------------------------------------------------------------
// QLinearMatMul
// ---------------------------------------------------------------------------

/// The requantisation multiplier `a * b / y`, computed in the scales' type.
fn multiplier(d: DType, a: f64, b: f64, y: f64) -> f64 {
    round_to(d, round_to(d, a * b) / y)
}

/// A per-tensor parameter (one element).
fn scalar_f(t: &TensorValue, what: &str) -> Result<f64, OpError> {
    let v = floats(t, what)?;
    match v.as_slice() {
        [s] => Ok(*s),
        _ => Err(OpError::Unsupported(format!(
            "{what} with {} elements",
            v.len()
        ))),
    }
}

fn opt_zp(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
    what: &str,
) -> Result<Vec<i64>, OpError> {
    match ctx.opt_input(inputs, i)? {
        Some(z) => small_ints(z, what),
        None => Ok(vec![0]),
    }
}

fn qlinear_matmul(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = ctx.input(inputs, 3)?;
    let a_scale = ctx.input(inputs, 1)?;
    let sa = scalar_f(a_scale, "a_scale")?;
    let sb = floats(ctx.input(inputs, 4)?, "b_scale")?;
    let sy = scalar_f(ctx.input(inputs, 6)?, "y_scale")?;
    let za = opt_zp(ctx, inputs, 2, "a_zero_point")?;
    let zb = opt_zp(ctx, inputs, 5, "b_zero_point")?;
    let y_type = match ctx.opt_input(inputs, 7)? {
        Some(z) => z.dtype(),
        None => a.dtype(),
    };
    let zy = opt_zp(ctx, inputs, 7, "y_zero_point")?;
    let (lo, hi) = quant_range(y_type)?;
    if za.len() != 1 || zy.len() != 1 {
        return Err(OpError::Unsupported(
            "per-row zero points for a or y".into(),
        ));
    }
    let av = small_ints(a, "a")?;
    let bv = small_ints(b, "b")?;
    // Promote 1-D operands to matrices, as MatMul does.
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    if ash.is_empty() || bsh.is_empty() {
        return Err(OpError::Invalid(
            "QLinearMatMul operands must have rank ≥ 1".into(),
        ));
    }
    let a1 = ash.len() == 1;
    let b1 = bsh.len() == 1;
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (k2, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != k2 {
        return Err(OpError::Invalid(format!(
            "QLinearMatMul inner dimensions differ: {:?} x {:?}",
            a.shape(),
            b.shape()
        )));
    }
    // Per-column b parameters (length N) or per tensor.
    let per_col = |v: &[i64], what: &str| -> Result<Vec<i64>, OpError> {
        match v.len() {
            1 => Ok(vec![v[0]; n]),
            l if l == n => Ok(v.to_vec()),
            l => Err(OpError::Invalid(format!(
                "{what} has {l} elements for {n} columns"
            ))),
        }
    };
    let zb = per_col(&zb, "b_zero_point")?;
    let sb: Vec<f64> = match sb.len() {
        1 => vec![sb[0]; n],
        l if l == n => sb,
        l => {
            return Err(OpError::Invalid(format!(
                "b_scale has {l} elements for {n} columns"
            )))
        }
    };
    let scale_type = a_scale.dtype();
    let mult: Vec<f64> = sb
        .iter()
        .map(|&s| multiplier(scale_type, sa, s, sy))
        .collect();
    let abatch = &ash[..ash.len() - 2];
    let bbatch = &bsh[..bsh.len() - 2];
    let batch = broadcast_shape(abatch, bbatch)?;
    let nb: usize = batch.iter().product();
    let strides = |shape: &[usize]| -> Vec<usize> {
        // Strides (in matrices) of a batch shape aligned right to `batch`, 0 where broadcast.
        let off = batch.len() - shape.len();
        let mut s = vec![0; batch.len()];
        let mut acc = 1;
        for d in (0..shape.len()).rev() {
            s[off + d] = if shape[d] == 1 { 0 } else { acc };
            acc *= shape[d];
        }
        s
    };
    let (ast, bst) = (strides(abatch), strides(bbatch));
    let mut out = Vec::with_capacity(nb * m * n);
    let mut acc = vec![0i64; n];
    for bi in 0..nb {
        // Decompose the batch index.
        let (mut rem, mut ao, mut bo) = (bi, 0, 0);
        for d in (0..batch.len()).rev() {
            let i = rem % batch[d];
            rem /= batch[d];
            ao += i * ast[d];
            bo += i * bst[d];
        }
        let am = &av[ao * m * k..(ao + 1) * m * k];
        let bm = &bv[bo * k * n..(bo + 1) * k * n];
        for i in 0..m {
            acc.iter_mut().for_each(|v| *v = 0);
            for p in 0..k {
                let x = am[i * k + p] - za[0];
                let row = &bm[p * n..(p + 1) * n];
                for j in 0..n {
                    acc[j] = acc[j].wrapping_add(x.wrapping_mul(row[j] - zb[j]));
                }
            }
            for j in 0..n {
                out.push(requant(acc[j] as f64 * mult[j], zy[0], lo, hi));
            }
        }
    }
    let mut shape = batch.clone();
    if !a1 {
        shape.push(m);
    }
    if !b1 {
        shape.push(n);
    }
    Ok(vec![RtValue::Tensor(int_tensor(y_type, &shape, out)?)])
}

// ---------------------------------------------------------------------------
// QLinearConv
// ---------------------------------------------------------------------------

fn qlinear_conv(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let w = ctx.input(inputs, 3)?;
    let x_scale = ctx.input(inputs, 1)?;
    let sx = scalar_f(x_scale, "x_scale")?;
    let sw = floats(ctx.input(inputs, 4)?, "w_scale")?;
    let sy = scalar_f(ctx.input(inputs, 6)?, "y_scale")?;
    let zx = opt_zp(ctx, inputs, 2, "x_zero_point")?;
    let zw = opt_zp(ctx, inputs, 5, "w_zero_point")?;
    let y_type = match ctx.opt_input(inputs, 7)? {
        Some(z) => z.dtype(),
        None => x.dtype(),
    };
    let zy = opt_zp(ctx, inputs, 7, "y_zero_point")?;
    if zx.len() != 1 || zy.len() != 1 {
        return Err(OpError::Invalid(
            "x and y zero points must be per tensor".into(),
        ));
    }
    let (lo, hi) = quant_range(y_type)?;
    let xs = x.shape().to_vec();
    let ws = w.shape().to_vec();
    if xs.len() < 3 || ws.len() != xs.len() {
        return Err(OpError::Invalid(format!(
            "QLinearConv needs X (N, C, ...) and W of the same rank, got {xs:?} and {ws:?}"
        )));
    }
    let nsp = xs.len() - 2;
    let (nb, c) = (xs[0], xs[1]);
    let (mo, cg) = (ws[0], ws[1]);
    let group = ctx.int("group", 1);
    if group <= 0 || c as i64 != cg as i64 * group || mo as i64 % group != 0 {
        return Err(OpError::Invalid(format!(
            "group {group} does not fit {c} input channels, weight {ws:?}"
        )));
    }
    let group = group as usize;
    let mg = mo / group;
    let ksz: Vec<usize> = ws[2..].to_vec();
    let attr = |name: &str, default: i64, len: usize| -> Result<Vec<usize>, OpError> {
        let v = ctx.ints(name).unwrap_or_else(|| vec![default; len]);
        if v.len() != len || v.iter().any(|&s| s < 0 || (s == 0 && name != "pads")) {
            return Err(OpError::Invalid(format!("bad {name} {v:?}")));
        }
        Ok(v.into_iter().map(|s| s as usize).collect())
    };
    let strides = attr("strides", 1, nsp)?;
    let dil = attr("dilations", 1, nsp)?;
    let in_sp = &xs[2..];
    let mut pads = attr("pads", 0, 2 * nsp)?;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let mut out_sp = Vec::with_capacity(nsp);
    for d in 0..nsp {
        let ek = dil[d] * (ksz[d].max(1) - 1) + 1;
        match auto_pad.as_str() {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = in_sp[d].div_ceil(strides[d]);
                let total = ((o.max(1) - 1) * strides[d] + ek).saturating_sub(in_sp[d]);
                let small = total / 2;
                let (b, e) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[d] = b;
                pads[d + nsp] = e;
            }
            "VALID" => {
                pads[d] = 0;
                pads[d + nsp] = 0;
            }
            _ => {}
        }
        let span = in_sp[d] + pads[d] + pads[d + nsp];
        if span < ek {
            return Err(OpError::Invalid("kernel larger than padded input".into()));
        }
        out_sp.push((span - ek) / strides[d] + 1);
    }
    let per_m = |v: Vec<i64>, what: &str| -> Result<Vec<i64>, OpError> {
        match v.len() {
            1 => Ok(vec![v[0]; mo]),
            l if l == mo => Ok(v),
            l => Err(OpError::Invalid(format!(
                "{what} has {l} elements for {mo} channels"
            ))),
        }
    };
    let zw = per_m(zw, "w_zero_point")?;
    let sw: Vec<f64> = match sw.len() {
        1 => vec![sw[0]; mo],
        l if l == mo => sw,
        l => {
            return Err(OpError::Invalid(format!(
                "w_scale has {l} elements for {mo} channels"
            )))
        }
    };
    let bias = match ctx.opt_input(inputs, 8)? {
        Some(b) => per_m(ints(b, "B")?, "B")?,
        None => vec![0; mo],
    };
    let scale_type = x_scale.dtype();
    let mult: Vec<f64> = sw
        .iter()
        .map(|&s| multiplier(scale_type, sx, s, sy))
        .collect();
    let xv: Vec<i64> = small_ints(x, "x")?.into_iter().map(|v| v - zx[0]).collect();
    let wv = small_ints(w, "w")?;
    // Kernel offsets: spatial positions of the kernel, row-major.
    let kcount: usize = ksz.iter().product();
    let in_count: usize = in_sp.iter().product();
    let out_count: usize = out_sp.iter().product();
    let mut out = vec![0i64; nb * mo * out_count];
    let mut opos = vec![0usize; nsp];
    let mut kpos = vec![0usize; nsp];
    for o in 0..out_count {
        // Output multi-index.
        let mut rem = o;
        for d in (0..nsp).rev() {
            opos[d] = rem % out_sp[d];
            rem /= out_sp[d];
        }
        // Input offsets of each kernel tap (None when in the padding).
        let mut taps: Vec<Option<usize>> = Vec::with_capacity(kcount);
        for kk in 0..kcount {
            let mut rem = kk;
            for d in (0..nsp).rev() {
                kpos[d] = rem % ksz[d];
                rem /= ksz[d];
            }
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..nsp {
                let p = (opos[d] * strides[d] + kpos[d] * dil[d]) as i64 - pads[d] as i64;
                if p < 0 || p >= in_sp[d] as i64 {
                    inside = false;
                    break;
                }
                off = off * in_sp[d] + p as usize;
            }
            taps.push(inside.then_some(off));
        }
        for n in 0..nb {
            for m in 0..mo {
                let g = m / mg;
                let mut acc = bias[m];
                for ci in 0..cg {
                    let ch = g * cg + ci;
                    let xbase = (n * c + ch) * in_count;
                    let wbase = (m * cg + ci) * kcount;
                    for (kk, t) in taps.iter().enumerate() {
                        if let Some(off) = t {
                            acc = acc
                                .wrapping_add(xv[xbase + off].wrapping_mul(wv[wbase + kk] - zw[m]));
                        }
                    }
                }
                out[(n * mo + m) * out_count + o] = requant(acc as f64 * mult[m], zy[0], lo, hi);
            }
        }
    }
    let mut shape = vec![nb, mo];
    shape.extend(&out_sp);
    Ok(vec![RtValue::Tensor(int_tensor(y_type, &shape, out)?)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requant_rounds_half_even_and_saturates() {
        assert_eq!(requant(2.5, 0, 0, 255), 2);
        assert_eq!(requant(3.5, 1, 0, 255), 5);
        assert_eq!(requant(300.0, 0, 0, 255), 255);
        assert_eq!(requant(-1.0, 0, 0, 255), 0);
    }

    #[test]
    fn block_indices() {
        let l = ParamLayout::Block {
            outer: 1,
            len: 3,
            inner: 2,
            bs: 2,
            blocks: 2,
        };
        assert_eq!(l.indices(6), vec![0, 1, 0, 1, 2, 3]);
        let l = ParamLayout::Axis {
            outer: 2,
            len: 2,
            inner: 1,
        };
        assert_eq!(l.indices(4), vec![0, 1, 0, 1]);
    }
}
