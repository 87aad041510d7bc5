//! Convolutions: Conv, ConvTranspose and ConvInteger, for 1-D, 2-D and 3-D
//! spatial inputs (lower ranks are handled as 3-D with leading size-1 dims).
//!
//! - Conv is im2col + gemm per (batch, group): the patch matrix is built for a
//!   band of output rows at a time (bounded to a few MiB) and multiplied with the
//!   group's weights by [`GemmElem::gemm`] (matrixmultiply for f32/f64). A 1x1,
//!   stride-1, unpadded convolution uses the input directly. f16/bf16 compute in
//!   f32; ConvInteger subtracts the zero points and computes in i32 (wrapping).
//! - ConvTranspose is gemm + col2im: `W_gᵀ · X_g` gives every (output channel,
//!   kernel tap, input position) product, which is scattered into the output.
//! - Padding: `auto_pad` SAME_UPPER puts the extra pad at the end, SAME_LOWER at
//!   the beginning (output = ceil(in / stride)); VALID means no padding. For
//!   ConvTranspose with `output_shape` the total padding is split as the spec
//!   says (SAME_UPPER: begin = total/2; otherwise begin = total - total/2); with
//!   explicit `pads` and an `output_shape`, the pads are used and the output is
//!   cropped or zero-extended at the end to `output_shape`.
//!
//! [`Geom`] and [`out_and_pads`] are shared with the pools.

use super::matmul::{int8_as_i32, GemmElem};
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use num_traits::Zero;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Conv", conv);
    r.add("ConvTranspose", conv_transpose);
    r.add("ConvInteger", conv_integer);
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(msg.into()))
}

/// Spatial geometry of a convolution or pool, padded to 3 dims (leading dims
/// of size 1, kernel 1, stride 1, no pads).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Geom {
    pub input: [usize; 3],
    pub out: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dil: [usize; 3],
    pub pad_begin: [usize; 3],
    pub pad_end: [usize; 3],
}

/// `a * b * c`, or an error when it overflows (absurd shapes or attributes).
pub(crate) fn checked_total(parts: &[usize]) -> Result<usize, OpError> {
    parts
        .iter()
        .try_fold(1usize, |acc, &p| acc.checked_mul(p))
        .filter(|&t| t <= isize::MAX as usize / 16)
        .ok_or_else(|| OpError::Invalid(format!("output of {parts:?} elements is too large")))
}

impl Geom {
    pub fn in_size(&self) -> usize {
        self.input.iter().product()
    }
    pub fn kernel_size(&self) -> usize {
        self.kernel.iter().product()
    }
}

/// Reads a per-spatial-dim attribute (`strides`, `dilations`): default 1.
pub(crate) fn spatial_attr(ctx: &OpCtx, name: &str, n: usize) -> Result<Vec<usize>, OpError> {
    match ctx.ints(name) {
        None => Ok(vec![1; n]),
        Some(v) if v.is_empty() => Ok(vec![1; n]),
        Some(v) => {
            if v.len() != n {
                return invalid(format!(
                    "{name} has {} values for {n} spatial dims",
                    v.len()
                ));
            }
            v.iter()
                .map(|&x| {
                    if x >= 1 {
                        Ok(x as usize)
                    } else {
                        invalid(format!("{name} must be >= 1, got {x}"))
                    }
                })
                .collect()
        }
    }
}

/// Explicit `pads` attribute (begin..., end...), default 0.
pub(crate) fn pads_attr(ctx: &OpCtx, n: usize) -> Result<Vec<usize>, OpError> {
    match ctx.ints("pads") {
        None => Ok(vec![0; 2 * n]),
        Some(v) if v.is_empty() => Ok(vec![0; 2 * n]),
        Some(v) => {
            if v.len() != 2 * n {
                return invalid(format!("pads has {} values for {n} spatial dims", v.len()));
            }
            v.iter()
                .map(|&x| {
                    if x >= 0 {
                        Ok(x as usize)
                    } else {
                        Err(OpError::Unsupported(format!("negative pads ({x})")))
                    }
                })
                .collect()
        }
    }
}

/// Output sizes, begin pads and end pads per spatial dim.
pub(crate) type OutAndPads = (Vec<usize>, Vec<usize>, Vec<usize>);

/// Output sizes and pads (begin, end) for a sliding window, from `auto_pad`,
/// explicit pads and `ceil_mode`. In ceil mode a last window that would start
/// in the end padding is dropped (as PyTorch and onnxruntime do).
pub(crate) fn out_and_pads(
    auto_pad: &str,
    input: &[usize],
    kernel: &[usize],
    stride: &[usize],
    dil: &[usize],
    pads: &[usize],
    ceil: bool,
) -> Result<OutAndPads, OpError> {
    let n = input.len();
    let mut out = vec![0; n];
    let mut pb = vec![0; n];
    let mut pe = vec![0; n];
    for i in 0..n {
        let ek = kernel[i]
            .checked_sub(1)
            .and_then(|k| k.checked_mul(dil[i]))
            .and_then(|k| k.checked_add(1))
            .ok_or_else(|| OpError::Invalid("kernel size must be >= 1".into()))?;
        match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => {
                let o = input[i].div_ceil(stride[i]);
                let total = ((o.max(1) - 1) * stride[i] + ek).saturating_sub(input[i]);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    pb[i] = small;
                    pe[i] = total - small;
                } else {
                    pe[i] = small;
                    pb[i] = total - small;
                }
            }
            "VALID" => {}
            "NOTSET" | "" => {
                pb[i] = pads[i];
                pe[i] = pads[n + i];
            }
            other => return invalid(format!("unknown auto_pad '{other}'")),
        }
        let span = input[i]
            .checked_add(pb[i])
            .and_then(|v| v.checked_add(pe[i]))
            .ok_or_else(|| OpError::Invalid("pads are too large".into()))?;
        if span < ek {
            return invalid(format!(
                "window {ek} is larger than the padded input {span} along spatial dim {i}"
            ));
        }
        let q = span - ek;
        let mut o = q / stride[i] + 1;
        if ceil && q % stride[i] != 0 {
            o += 1;
            if (o - 1) * stride[i] >= input[i] + pb[i] {
                o -= 1;
            }
        }
        out[i] = o;
    }
    Ok((out, pb, pe))
}

/// Pads a list of spatial sizes to 3 entries with `fill` in front.
pub(crate) fn to3(v: &[usize], fill: usize) -> Result<[usize; 3], OpError> {
    if v.is_empty() || v.len() > 3 {
        return Err(OpError::Unsupported(format!(
            "{} spatial dimensions (1 to 3 are supported)",
            v.len()
        )));
    }
    let mut r = [fill; 3];
    r[3 - v.len()..].copy_from_slice(v);
    Ok(r)
}

/// Output indices `o` in `0..n_out` for which `o * s + off` lies in `0..n_in`
/// (as a half-open range).
#[inline]
pub(crate) fn valid_range(n_out: usize, s: usize, off: isize, n_in: usize) -> (usize, usize) {
    let s_i = s as isize;
    let lo = if off >= 0 {
        0
    } else {
        ((-off) + s_i - 1) / s_i
    } as usize;
    let lim = n_in as isize - off; // need o * s < lim
    let hi = if lim <= 0 {
        0
    } else {
        ((lim + s_i - 1) / s_i) as usize
    };
    let lo = lo.min(n_out);
    let hi = hi.clamp(lo, n_out);
    (lo, hi)
}

/// Geometry of a Conv/ConvInteger node from its attributes and shapes.
fn conv_geom(ctx: &OpCtx, x_shape: &[usize], w_shape: &[usize]) -> Result<Geom, OpError> {
    let nsp = x_shape.len().saturating_sub(2);
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return invalid(format!(
            "Conv: input {x_shape:?} and weight {w_shape:?} ranks do not match"
        ));
    }
    let kernel: Vec<usize> = w_shape[2..].to_vec();
    if let Some(ks) = ctx.ints("kernel_shape") {
        if ks.len() != nsp || ks.iter().zip(&kernel).any(|(&a, &b)| a != b as i64) {
            return invalid(format!(
                "Conv: kernel_shape {ks:?} differs from weight {w_shape:?}"
            ));
        }
    }
    let stride = spatial_attr(ctx, "strides", nsp)?;
    let dil = spatial_attr(ctx, "dilations", nsp)?;
    let pads = pads_attr(ctx, nsp)?;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let input = &x_shape[2..];
    let (out, pb, pe) = out_and_pads(&auto_pad, input, &kernel, &stride, &dil, &pads, false)?;
    Ok(Geom {
        input: to3(input, 1)?,
        out: to3(&out, 1)?,
        kernel: to3(&kernel, 1)?,
        stride: to3(&stride, 1)?,
        dil: to3(&dil, 1)?,
        pad_begin: to3(&pb, 0)?,
        pad_end: to3(&pe, 0)?,
    })
}

/// Fills `col` (`[c * K, rows * out[2]]`, row-major) with the patches of the
/// output rows `r0..r0 + rows` (a row is one (o0, o1) pair) of `x` (`c` planes).
fn im2col<T: Copy + Zero>(x: &[T], c: usize, g: &Geom, r0: usize, rows: usize, col: &mut [T]) {
    let [_, in1, in2] = g.input;
    let in_sz = g.in_size();
    let out1 = g.out[1];
    let out2 = g.out[2];
    let width = rows * out2;
    let mut row = 0usize;
    for ci in 0..c {
        let plane = &x[ci * in_sz..(ci + 1) * in_sz];
        for k0 in 0..g.kernel[0] {
            for k1 in 0..g.kernel[1] {
                for k2 in 0..g.kernel[2] {
                    let dst = &mut col[row * width..(row + 1) * width];
                    row += 1;
                    let off2 = (k2 * g.dil[2]) as isize - g.pad_begin[2] as isize;
                    let (lo, hi) = valid_range(out2, g.stride[2], off2, in2);
                    for (r, seg) in dst.chunks_exact_mut(out2).enumerate() {
                        let rr = r0 + r;
                        let (o0, o1) = (rr / out1, rr % out1);
                        let i0 =
                            (o0 * g.stride[0] + k0 * g.dil[0]) as isize - g.pad_begin[0] as isize;
                        let i1 =
                            (o1 * g.stride[1] + k1 * g.dil[1]) as isize - g.pad_begin[1] as isize;
                        if i0 < 0 || i0 >= g.input[0] as isize || i1 < 0 || i1 >= in1 as isize {
                            seg.fill(T::zero());
                            continue;
                        }
                        let src = &plane[(i0 as usize * in1 + i1 as usize) * in2..][..in2];
                        seg[..lo].fill(T::zero());
                        seg[hi..].fill(T::zero());
                        if hi > lo {
                            let start = (lo as isize * g.stride[2] as isize + off2) as usize;
                            if g.stride[2] == 1 {
                                seg[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
                            } else {
                                for (j, d) in seg[lo..hi].iter_mut().enumerate() {
                                    *d = src[start + j * g.stride[2]];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One output plane of a single-input-channel convolution: for every kernel
/// tap, `y[o] += w * x[o * stride + offset]` over the valid output range.
fn depthwise<T: GemmElem>(x: &[T], w: &[T], g: &Geom, y: &mut [T]) {
    let [_, in1, in2] = g.input;
    let [out0, out1, out2] = g.out;
    let off = |k: usize, d: usize| (k * g.dil[d]) as isize - g.pad_begin[d] as isize;
    let mut t = 0;
    for k0 in 0..g.kernel[0] {
        let off0 = off(k0, 0);
        let (lo0, hi0) = valid_range(out0, g.stride[0], off0, g.input[0]);
        for k1 in 0..g.kernel[1] {
            let off1 = off(k1, 1);
            let (lo1, hi1) = valid_range(out1, g.stride[1], off1, in1);
            for k2 in 0..g.kernel[2] {
                let wv = w[t];
                t += 1;
                let off2 = off(k2, 2);
                let (lo2, hi2) = valid_range(out2, g.stride[2], off2, in2);
                if lo2 >= hi2 {
                    continue;
                }
                let s2 = g.stride[2];
                let start = (lo2 as isize * s2 as isize + off2) as usize;
                for o0 in lo0..hi0 {
                    let i0 = (o0 as isize * g.stride[0] as isize + off0) as usize;
                    for o1 in lo1..hi1 {
                        let i1 = (o1 as isize * g.stride[1] as isize + off1) as usize;
                        let src = &x[(i0 * in1 + i1) * in2..][..in2];
                        let dst = &mut y[(o0 * out1 + o1) * out2..][lo2..hi2];
                        if s2 == 1 {
                            for (d, &s) in dst.iter_mut().zip(&src[start..]) {
                                *d = d.madd(wv, s);
                            }
                        } else {
                            for (d, &s) in dst.iter_mut().zip(src[start..].iter().step_by(s2)) {
                                *d = d.madd(wv, s);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The convolution core. `x`: `[n, c, in...]` row-major, `w`: `[m, c/group, k...]`
/// row-major, `bias`: `[m]`. Returns `[n, m, out...]` row-major.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv_core<T: GemmElem>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    n: usize,
    c: usize,
    m: usize,
    group: usize,
    g: &Geom,
) -> Result<Vec<T>, OpError> {
    if group == 0 || !c.is_multiple_of(group) || !m.is_multiple_of(group) {
        return invalid(format!(
            "Conv: channels {c} -> {m} do not divide into {group} groups"
        ));
    }
    let cg = c / group;
    let mg = m / group;
    let ksz = g.kernel_size();
    let kdim = cg * ksz;
    let in_sz = g.in_size();
    let out_sz = checked_total(&g.out)?;
    checked_total(&[n, m, out_sz])?;
    if w.len() != m * kdim {
        return invalid(format!(
            "Conv: weight has {} elements, expected {m} x {cg} x {ksz}",
            w.len()
        ));
    }
    if x.len() != n * c * in_sz {
        return invalid("Conv: input size does not match its shape");
    }
    let mut y = vec![T::zero(); n * m * out_sz];
    if let Some(b) = bias {
        if b.len() != m {
            return invalid(format!(
                "Conv: bias has {} values for {m} output channels",
                b.len()
            ));
        }
        for (plane, &bv) in y.chunks_exact_mut(out_sz.max(1)).zip(b.iter().cycle()) {
            plane.fill(bv);
        }
    }
    if out_sz == 0 || n == 0 || m == 0 {
        return Ok(y);
    }
    let direct = ksz == 1
        && g.stride == [1, 1, 1]
        && g.pad_begin == [0, 0, 0]
        && g.pad_end == [0, 0, 0]
        && g.out == g.input;
    if cg == 1 && group > 1 && !direct {
        // Depthwise (one input channel per group): taps accumulated directly. A
        // single-channel input with one group (an STFT-like conv with a long
        // kernel) goes through gemm instead, which is far faster there.
        for b in 0..n {
            for gi in 0..group {
                let xp = &x[(b * c + gi) * in_sz..(b * c + gi + 1) * in_sz];
                for mi in gi * mg..(gi + 1) * mg {
                    let yp = &mut y[(b * m + mi) * out_sz..(b * m + mi + 1) * out_sz];
                    depthwise(xp, &w[mi * ksz..(mi + 1) * ksz], g, yp);
                }
            }
        }
        return Ok(y);
    }
    let out2 = g.out[2];
    let total_rows = g.out[0] * g.out[1];
    // Output rows per band: keep the patch matrix around 2M elements.
    let band = if direct {
        total_rows
    } else {
        (((1usize << 21) / (kdim * out2).max(1)).max(1)).min(total_rows)
    };
    let mut col = if direct {
        Vec::new()
    } else {
        vec![T::zero(); kdim * band * out2]
    };
    let acc = bias.is_some();
    for b in 0..n {
        for gi in 0..group {
            let xg = &x[(b * c + gi * cg) * in_sz..(b * c + (gi + 1) * cg) * in_sz];
            let wg = ArrayView2::from_shape((mg, kdim), &w[gi * mg * kdim..(gi + 1) * mg * kdim])
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            let yg = &mut y[(b * m + gi * mg) * out_sz..(b * m + (gi + 1) * mg) * out_sz];
            let mut yv = ArrayViewMut2::from_shape((mg, out_sz), yg)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            if direct {
                let xv = ArrayView2::from_shape((kdim, out_sz), xg)
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
                T::gemm(&wg, &xv, &mut yv, acc);
                continue;
            }
            let mut r0 = 0;
            while r0 < total_rows {
                let rows = band.min(total_rows - r0);
                let width = rows * out2;
                let colv = &mut col[..kdim * width];
                im2col(xg, cg, g, r0, rows, colv);
                let cv = ArrayView2::from_shape((kdim, width), &*colv)
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
                let mut ys = yv.slice_mut(ndarray::s![.., r0 * out2..r0 * out2 + width]);
                T::gemm(&wg, &cv, &mut ys, acc);
                r0 += rows;
            }
        }
    }
    Ok(y)
}

/// A float tensor as f32/f64 data for the conv cores.
enum FData<'a> {
    F32(std::borrow::Cow<'a, [f32]>),
    F64(std::borrow::Cow<'a, [f64]>),
}

fn contiguous<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

fn float_data(t: &TensorValue) -> Result<FData<'_>, OpError> {
    Ok(match t {
        TensorValue::F32(a) => FData::F32(contiguous(a)),
        TensorValue::F64(a) => FData::F64(contiguous(a)),
        TensorValue::F16(a) => FData::F32(std::borrow::Cow::Owned(
            a.iter().map(|v| v.to_f32()).collect(),
        )),
        TensorValue::BF16(a) => FData::F32(std::borrow::Cow::Owned(
            a.iter().map(|v| v.to_f32()).collect(),
        )),
        o => {
            return Err(OpError::Unsupported(format!(
                "convolution of {}",
                o.dtype()
            )))
        }
    })
}

/// Wraps f32/f64 results back into the input's element type.
fn float_result(like: &TensorValue, shape: &[usize], r: FResult) -> Result<TensorValue, OpError> {
    let s = IxDyn(shape);
    let err = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    Ok(match (like, r) {
        (TensorValue::F32(_), FResult::F32(v)) => {
            TensorValue::F32(ArrayD::from_shape_vec(s, v).map_err(err)?)
        }
        (TensorValue::F64(_), FResult::F64(v)) => {
            TensorValue::F64(ArrayD::from_shape_vec(s, v).map_err(err)?)
        }
        (TensorValue::F16(_), FResult::F32(v)) => TensorValue::F16(
            ArrayD::from_shape_vec(s, v.into_iter().map(f16::from_f32).collect()).map_err(err)?,
        ),
        (TensorValue::BF16(_), FResult::F32(v)) => TensorValue::BF16(
            ArrayD::from_shape_vec(s, v.into_iter().map(bf16::from_f32).collect()).map_err(err)?,
        ),
        _ => return invalid("convolution: internal type mismatch"),
    })
}

enum FResult {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

fn check_same_type(a: &TensorValue, b: &TensorValue, what: &str) -> Result<(), OpError> {
    if a.dtype() != b.dtype() {
        return invalid(format!(
            "{what}: element types {} and {} differ",
            a.dtype(),
            b.dtype()
        ));
    }
    Ok(())
}

fn conv(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let w = ctx.input(inputs, 1)?;
    let b = ctx.opt_input(inputs, 2)?;
    check_same_type(x, w, "Conv")?;
    if let Some(b) = b {
        check_same_type(x, b, "Conv")?;
    }
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let g = conv_geom(ctx, &xs, &ws)?;
    let group = usize::try_from(ctx.int("group", 1))
        .map_err(|_| OpError::Invalid("group must be >= 1".into()))?;
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if ws[1].checked_mul(group) != Some(c) {
        return invalid(format!(
            "Conv: weight {ws:?} does not match {c} input channels in {group} groups"
        ));
    }
    let mut out_shape = vec![n, m];
    out_shape.extend_from_slice(&g.out[3 - (xs.len() - 2)..]);
    let r = match (float_data(x)?, float_data(w)?) {
        (FData::F32(xd), FData::F32(wd)) => {
            let bd = match b.map(float_data).transpose()? {
                Some(FData::F32(v)) => Some(v),
                None => None,
                _ => return invalid("Conv: bias type mismatch"),
            };
            FResult::F32(conv_core(&xd, &wd, bd.as_deref(), n, c, m, group, &g)?)
        }
        (FData::F64(xd), FData::F64(wd)) => {
            let bd = match b.map(float_data).transpose()? {
                Some(FData::F64(v)) => Some(v),
                None => None,
                _ => return invalid("Conv: bias type mismatch"),
            };
            FResult::F64(conv_core(&xd, &wd, bd.as_deref(), n, c, m, group, &g)?)
        }
        _ => return invalid("Conv: element types differ"),
    };
    one(float_result(x, &out_shape, r)?)
}

/// Zero point of an 8-bit operand: a scalar, or (for the weights) one per output
/// channel. Returns per-channel values of length `per` (`per` = 1 for the input).
fn zero_points(t: Option<&TensorValue>, per: usize, what: &str) -> Result<Vec<i32>, OpError> {
    match t {
        None => Ok(vec![0; per]),
        Some(t) => {
            let z = int8_as_i32(t, what)?;
            let v: Vec<i32> = z.iter().copied().collect();
            if v.len() == 1 {
                Ok(vec![v[0]; per])
            } else if v.len() == per {
                Ok(v)
            } else {
                invalid(format!(
                    "{what} has {} values, expected 1 or {per}",
                    v.len()
                ))
            }
        }
    }
}

fn conv_integer(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let w = ctx.input(inputs, 1)?;
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let g = conv_geom(ctx, &xs, &ws)?;
    let group = usize::try_from(ctx.int("group", 1))
        .map_err(|_| OpError::Invalid("group must be >= 1".into()))?;
    let (n, c, m) = (xs[0], xs[1], ws[0]);
    if ws[1].checked_mul(group) != Some(c) {
        return invalid(format!(
            "ConvInteger: weight {ws:?} does not match {c} input channels in {group} groups"
        ));
    }
    let xz = zero_points(ctx.opt_input(inputs, 2)?, 1, "ConvInteger x_zero_point")?[0];
    let wz = zero_points(ctx.opt_input(inputs, 3)?, m, "ConvInteger w_zero_point")?;
    // The input is padded with its zero point: zeros once it is subtracted.
    let xd: Vec<i32> = int8_as_i32(x, "ConvInteger x")?
        .iter()
        .map(|&v| v - xz)
        .collect();
    let per_m = ws[1..].iter().product::<usize>();
    let wd: Vec<i32> = int8_as_i32(w, "ConvInteger w")?
        .iter()
        .enumerate()
        .map(|(i, &v)| v - wz[i / per_m.max(1)])
        .collect();
    let y = conv_core(&xd, &wd, None, n, c, m, group, &g)?;
    let mut out_shape = vec![n, m];
    out_shape.extend_from_slice(&g.out[3 - (xs.len() - 2)..]);
    one(TensorValue::I32(
        ArrayD::from_shape_vec(IxDyn(&out_shape), y)
            .map_err(|e| OpError::Invalid(e.to_string()))?,
    ))
}

/// ConvTranspose geometry: `g.input` is the (transposed conv's) input, `g.out`
/// the output; pads are those of the equivalent forward convolution.
pub(crate) fn conv_transpose_geom(
    ctx: &OpCtx,
    x_shape: &[usize],
    w_shape: &[usize],
) -> Result<Geom, OpError> {
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return invalid(format!(
            "ConvTranspose: input {x_shape:?} and weight {w_shape:?} ranks do not match"
        ));
    }
    let nsp = x_shape.len() - 2;
    let kernel: Vec<usize> = match ctx.ints("kernel_shape") {
        Some(k) if !k.is_empty() => {
            if k.len() != nsp || k.iter().zip(&w_shape[2..]).any(|(&a, &b)| a != b as i64) {
                return invalid(format!(
                    "ConvTranspose: kernel_shape {k:?} differs from weight {w_shape:?}"
                ));
            }
            w_shape[2..].to_vec()
        }
        _ => w_shape[2..].to_vec(),
    };
    let stride = spatial_attr(ctx, "strides", nsp)?;
    let dil = spatial_attr(ctx, "dilations", nsp)?;
    let pads = pads_attr(ctx, nsp)?;
    let out_pad: Vec<usize> = match ctx.ints("output_padding") {
        Some(v) if !v.is_empty() => {
            if v.len() != nsp || v.iter().any(|&p| p < 0) {
                return invalid(format!("ConvTranspose: bad output_padding {v:?}"));
            }
            v.iter().map(|&p| p as usize).collect()
        }
        _ => vec![0; nsp],
    };
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let output_shape: Option<Vec<usize>> = match ctx.ints("output_shape") {
        Some(v) if !v.is_empty() => {
            // Either the spatial shape or the full shape.
            let sp = if v.len() == nsp + 2 { &v[2..] } else { &v[..] };
            if sp.len() != nsp || sp.iter().any(|&d| d < 0) {
                return invalid(format!("ConvTranspose: bad output_shape {v:?}"));
            }
            Some(sp.iter().map(|&d| d as usize).collect())
        }
        _ => None,
    };
    let input = &x_shape[2..];
    let mut out = vec![0usize; nsp];
    let mut pb = vec![0usize; nsp];
    let mut pe = vec![0usize; nsp];
    let same = auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER";
    for i in 0..nsp {
        if kernel[i] == 0 {
            return invalid("ConvTranspose: kernel size must be >= 1");
        }
        let full = stride[i]
            .checked_mul(input[i].saturating_sub(1))
            .and_then(|v| v.checked_add(out_pad[i]))
            .and_then(|v| v.checked_add((kernel[i] - 1).checked_mul(dil[i])?))
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| OpError::Invalid("ConvTranspose: output size overflows".into()))?;
        let explicit = !same && auto_pad != "VALID";
        match (&output_shape, same) {
            (Some(os), _) if !explicit => {
                let total = full as i64 - os[i] as i64;
                let (b, _e) = if auto_pad == "SAME_UPPER" {
                    (total.div_euclid(2), total - total.div_euclid(2))
                } else {
                    (total - total.div_euclid(2), total.div_euclid(2))
                };
                if b < 0 {
                    return Err(OpError::Unsupported(
                        "ConvTranspose: negative padding".into(),
                    ));
                }
                pb[i] = b as usize;
                out[i] = os[i];
            }
            (Some(os), _) => {
                pb[i] = if auto_pad == "VALID" { 0 } else { pads[i] };
                out[i] = os[i];
            }
            (None, true) => {
                out[i] = input[i] * stride[i];
                let total = full.saturating_sub(out[i]);
                pb[i] = if auto_pad == "SAME_UPPER" {
                    total / 2
                } else {
                    total - total / 2
                };
            }
            (None, false) => {
                if auto_pad == "NOTSET" || auto_pad.is_empty() {
                    pb[i] = pads[i];
                    pe[i] = pads[nsp + i];
                } else if auto_pad != "VALID" {
                    return invalid(format!("unknown auto_pad '{auto_pad}'"));
                }
                out[i] = full
                    .checked_sub(pb[i].saturating_add(pe[i]))
                    .ok_or_else(|| {
                        OpError::Invalid("ConvTranspose: pads are larger than the output".into())
                    })?;
            }
        }
    }
    Ok(Geom {
        input: to3(input, 1)?,
        out: to3(&out, 1)?,
        kernel: to3(&kernel, 1)?,
        stride: to3(&stride, 1)?,
        dil: to3(&dil, 1)?,
        pad_begin: to3(&pb, 0)?,
        pad_end: to3(&pe, 0)?,
    })
}

/// Transposed convolution core. `x`: `[n, c, in...]`, `w`: `[c, m/group, k...]`.
#[allow(clippy::too_many_arguments)]
fn conv_transpose_core<T: GemmElem + std::ops::Add<Output = T>>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    n: usize,
    c: usize,
    mg: usize,
    group: usize,
    g: &Geom,
) -> Result<Vec<T>, OpError> {
    if group == 0 || !c.is_multiple_of(group) {
        return invalid(format!(
            "ConvTranspose: {c} input channels do not divide into {group} groups"
        ));
    }
    let cg = c / group;
    let m = mg * group;
    let ksz = g.kernel_size();
    let in_sz = g.in_size();
    let out_sz = checked_total(&g.out)?;
    checked_total(&[n, mg, group, out_sz])?;
    let rows = mg * ksz;
    if w.len() != c * rows || x.len() != n * c * in_sz {
        return invalid("ConvTranspose: weight or input size does not match its shape");
    }
    let mut y = vec![T::zero(); n * m * out_sz];
    if let Some(b) = bias {
        if b.len() != m {
            return invalid(format!(
                "ConvTranspose: bias has {} values for {m} output channels",
                b.len()
            ));
        }
        for (plane, &bv) in y.chunks_exact_mut(out_sz.max(1)).zip(b.iter().cycle()) {
            plane.fill(bv);
        }
    }
    if out_sz == 0 || in_sz == 0 || n == 0 || m == 0 {
        return Ok(y);
    }
    let mut col = vec![T::zero(); rows * in_sz];
    let [in0, in1, in2] = g.input;
    let [out0, out1, out2] = g.out;
    for b in 0..n {
        for gi in 0..group {
            let xg = ArrayView2::from_shape(
                (cg, in_sz),
                &x[(b * c + gi * cg) * in_sz..(b * c + (gi + 1) * cg) * in_sz],
            )
            .map_err(|e| OpError::Invalid(e.to_string()))?;
            let wg = ArrayView2::from_shape((cg, rows), &w[gi * cg * rows..(gi + 1) * cg * rows])
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            {
                let mut cv = ArrayViewMut2::from_shape((rows, in_sz), &mut col[..])
                    .map_err(|e| OpError::Invalid(e.to_string()))?;
                T::gemm(&wg.t(), &xg, &mut cv, false);
            }
            // col2im: scatter-add every (channel, tap) row into the output.
            let yg = &mut y[(b * m + gi * mg) * out_sz..(b * m + (gi + 1) * mg) * out_sz];
            for (r, crow) in col.chunks_exact(in_sz).enumerate() {
                let mi = r / ksz;
                let t = r % ksz;
                let (k0, k1, k2) = (
                    t / (g.kernel[1] * g.kernel[2]),
                    (t / g.kernel[2]) % g.kernel[1],
                    t % g.kernel[2],
                );
                let plane = &mut yg[mi * out_sz..(mi + 1) * out_sz];
                let off0 = (k0 * g.dil[0]) as isize - g.pad_begin[0] as isize;
                let off1 = (k1 * g.dil[1]) as isize - g.pad_begin[1] as isize;
                let off2 = (k2 * g.dil[2]) as isize - g.pad_begin[2] as isize;
                let (lo0, hi0) = valid_range(in0, g.stride[0], off0, out0);
                let (lo1, hi1) = valid_range(in1, g.stride[1], off1, out1);
                let (lo2, hi2) = valid_range(in2, g.stride[2], off2, out2);
                for i0 in lo0..hi0 {
                    let o0 = (i0 as isize * g.stride[0] as isize + off0) as usize;
                    for i1 in lo1..hi1 {
                        let o1 = (i1 as isize * g.stride[1] as isize + off1) as usize;
                        let src = &crow[(i0 * in1 + i1) * in2..][..in2];
                        let dst = &mut plane[(o0 * out1 + o1) * out2..][..out2];
                        for (i2, &v) in src.iter().enumerate().take(hi2).skip(lo2) {
                            let o2 = (i2 as isize * g.stride[2] as isize + off2) as usize;
                            dst[o2] = dst[o2] + v;
                        }
                    }
                }
            }
        }
    }
    Ok(y)
}

fn conv_transpose(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let w = ctx.input(inputs, 1)?;
    let b = ctx.opt_input(inputs, 2)?;
    check_same_type(x, w, "ConvTranspose")?;
    if let Some(b) = b {
        check_same_type(x, b, "ConvTranspose")?;
    }
    let (xs, ws) = (x.shape().to_vec(), w.shape().to_vec());
    let g = conv_transpose_geom(ctx, &xs, &ws)?;
    let group = usize::try_from(ctx.int("group", 1))
        .map_err(|_| OpError::Invalid("group must be >= 1".into()))?;
    let (n, c, mg) = (xs[0], xs[1], ws[1]);
    if ws[0] != c {
        return invalid(format!(
            "ConvTranspose: weight {ws:?} does not match {c} input channels"
        ));
    }
    let mut out_shape = vec![n, mg * group];
    out_shape.extend_from_slice(&g.out[3 - (xs.len() - 2)..]);
    let r = match (float_data(x)?, float_data(w)?) {
        (FData::F32(xd), FData::F32(wd)) => {
            let bd = match b.map(float_data).transpose()? {
                Some(FData::F32(v)) => Some(v),
                None => None,
                _ => return invalid("ConvTranspose: bias type mismatch"),
            };
            FResult::F32(conv_transpose_core(
                &xd,
                &wd,
                bd.as_deref(),
                n,
                c,
                mg,
                group,
                &g,
            )?)
        }
        (FData::F64(xd), FData::F64(wd)) => {
            let bd = match b.map(float_data).transpose()? {
                Some(FData::F64(v)) => Some(v),
                None => None,
                _ => return invalid("ConvTranspose: bias type mismatch"),
            };
            FResult::F64(conv_transpose_core(
                &xd,
                &wd,
                bd.as_deref(),
                n,
                c,
                mg,
                group,
                &g,
            )?)
        }
        _ => return invalid("ConvTranspose: element types differ"),
    };
    one(float_result(x, &out_shape, r)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom2(input: [usize; 2], k: [usize; 2], s: usize, p: usize) -> Geom {
        let (out, pb, pe) =
            out_and_pads("NOTSET", &input, &k, &[s, s], &[1, 1], &[p, p, p, p], false).unwrap();
        Geom {
            input: to3(&input, 1).unwrap(),
            out: to3(&out, 1).unwrap(),
            kernel: to3(&k, 1).unwrap(),
            stride: to3(&[s, s], 1).unwrap(),
            dil: [1; 3],
            pad_begin: to3(&pb, 0).unwrap(),
            pad_end: to3(&pe, 0).unwrap(),
        }
    }

    /// Naive direct convolution for comparison.
    fn naive(x: &[f32], w: &[f32], c: usize, m: usize, g: &Geom) -> Vec<f32> {
        let mut y = vec![0f32; m * g.out.iter().product::<usize>()];
        for mi in 0..m {
            for o1 in 0..g.out[1] {
                for o2 in 0..g.out[2] {
                    let mut s = 0f32;
                    for ci in 0..c {
                        for k1 in 0..g.kernel[1] {
                            for k2 in 0..g.kernel[2] {
                                let i1 = (o1 * g.stride[1] + k1) as isize - g.pad_begin[1] as isize;
                                let i2 = (o2 * g.stride[2] + k2) as isize - g.pad_begin[2] as isize;
                                if i1 < 0
                                    || i2 < 0
                                    || i1 >= g.input[1] as isize
                                    || i2 >= g.input[2] as isize
                                {
                                    continue;
                                }
                                s += x[(ci * g.input[1] + i1 as usize) * g.input[2] + i2 as usize]
                                    * w[((mi * c + ci) * g.kernel[1] + k1) * g.kernel[2] + k2];
                            }
                        }
                    }
                    y[(mi * g.out[1] + o1) * g.out[2] + o2] = s;
                }
            }
        }
        y
    }

    #[test]
    fn conv_matches_naive() {
        for &(s, p) in &[(1, 0), (1, 1), (2, 1), (3, 2)] {
            let g = geom2([7, 6], [3, 2], s, p);
            for (c, m) in [(3, 4), (1, 2)] {
                let x: Vec<f32> = (0..c * 42).map(|i| (i as f32 * 0.37).sin()).collect();
                let w: Vec<f32> = (0..m * c * 6).map(|i| (i as f32 * 0.11).cos()).collect();
                let y = conv_core(&x, &w, None, 1, c, m, 1, &g).unwrap();
                let want = naive(&x, &w, c, m, &g);
                for (a, b) in y.iter().zip(&want) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b} (s={s}, p={p}, c={c})");
                }
            }
        }
    }

    /// Rough timings: `cargo test --lib conv::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench() {
        let run = |c: usize, m: usize, group: usize, hw: usize, k: usize, s: usize| {
            let p = k / 2;
            let g = geom2([hw, hw], [k, k], s, p);
            let x: Vec<f32> = (0..c * hw * hw).map(|i| (i % 17) as f32 * 0.1).collect();
            let w: Vec<f32> = (0..m * (c / group) * k * k)
                .map(|i| (i % 13) as f32 * 0.01)
                .collect();
            let t = std::time::Instant::now();
            let y = conv_core(&x, &w, None, 1, c, m, group, &g).unwrap();
            let dt = t.elapsed().as_secs_f64();
            let flops = 2.0 * (m * (c / group) * k * k * g.out.iter().product::<usize>()) as f64;
            eprintln!(
                "c{c} m{m} g{group} {hw}x{hw} k{k} s{s}: {:.1} ms, {:.1} GFLOP/s ({})",
                dt * 1e3,
                flops / dt / 1e9,
                y.len()
            );
        };
        run(64, 64, 1, 160, 3, 1);
        run(3, 32, 1, 640, 3, 2);
        run(96, 96, 96, 160, 3, 1);
        run(96, 96, 96, 160, 5, 2);
        run(64, 256, 1, 80, 1, 1);
        run(256, 64, 1, 80, 1, 1);
    }

    #[test]
    fn valid_ranges() {
        assert_eq!(valid_range(5, 1, -1, 5), (1, 5));
        assert_eq!(valid_range(5, 2, -1, 5), (1, 3));
        assert_eq!(valid_range(3, 1, 2, 4), (0, 2));
        assert_eq!(valid_range(3, 1, 10, 4), (0, 0));
    }
}
