//! Resize (opsets 10–19+) and the older Upsample.
//!
//! Resizing is separable: each resized axis is resampled in turn (ascending
//! axis order) with a per-output-position list of taps (source index,
//! weight), computed once per axis in f64 from the coordinate transformation
//! mode and the interpolation kernel:
//! - nearest: one tap, chosen by `nearest_mode`; an integral source
//!   coordinate always picks itself;
//! - linear: two taps; cubic: four taps with coefficient `cubic_coeff_a`;
//! - antialias (linear/cubic, downsampling): the kernel is stretched by
//!   1/scale and the weights renormalised, as in the ONNX reference;
//! - `exclude_outside` zeroes taps outside the input and renormalises;
//!   otherwise out-of-range taps read the edge value;
//! - `tf_crop_and_resize` writes `extrapolation_value` where the source
//!   coordinate leaves the input.
//!
//! Output sizes from scales are `floor(in * scale)`; `keep_aspect_ratio_policy`
//! rounds half up. Resize opset 10 and Upsample use the `asymmetric`
//! transformation and, for nearest, onnxruntime's "simple" rounding (floor
//! when upsampling, ceil when downsampling).
//! `align_corners`, `pytorch_half_pixel` and `tf_crop_and_resize` use the
//! fractional output length `scale * in` (not the integer one), as the ONNX
//! reference and its test data do; onnxruntime differs when the scale does
//! not divide the length evenly.
//! Float types interpolate in their compute type (f16/bf16 through f32).
//! Nearest works on every numeric type; linear/cubic on integers computes in
//! f64 and rounds (half to even) with saturation, like the reference
//! (onnxruntime truncates instead).

use super::norm::{flat, is_float, shaped, Real};
use super::{OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use ndarray::ArrayD;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Resize", resize);
    r.add("Upsample", upsample);
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Mode {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Coord {
    HalfPixel,
    HalfPixelSymmetric,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    TfCropAndResize,
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Nearest {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
    /// onnxruntime's rounding for Upsample and Resize-10.
    Simple,
}

/// Everything that decides the taps of one axis.
pub(crate) struct Params {
    pub mode: Mode,
    pub coord: Coord,
    pub nearest: Nearest,
    pub cubic_a: f64,
    pub exclude_outside: bool,
    pub antialias: bool,
}

/// The taps of one output position: `None` writes the extrapolation value.
pub(crate) type Taps = Option<Vec<(usize, f64)>>;

/// The source coordinate of output position `y` along one axis.
fn source_coord(
    p: &Params,
    y: usize,
    scale: f64,
    in_len: usize,
    out_len: usize,
    roi: (f64, f64),
) -> f64 {
    let y = y as f64;
    let in_f = in_len as f64;
    let out_f = scale * in_f;
    match p.coord {
        Coord::HalfPixel => (y + 0.5) / scale - 0.5,
        Coord::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / out_f;
            let offset = in_f / 2.0 * (1.0 - adjustment);
            offset + (y + 0.5) / scale - 0.5
        }
        // As in the reference, these use the fractional output length
        // `scale * in`, which differs from `out_len` when scales are given.
        Coord::PytorchHalfPixel => {
            if out_f == 1.0 {
                -0.5
            } else {
                (y + 0.5) / scale - 0.5
            }
        }
        Coord::AlignCorners => {
            if out_f == 1.0 {
                0.0
            } else {
                y * (in_f - 1.0) / (out_f - 1.0)
            }
        }
        Coord::Asymmetric => y / scale,
        Coord::TfCropAndResize => {
            let (start, end) = roi;
            let x = if out_f == 1.0 {
                (end - start) * (in_f - 1.0) / 2.0
            } else {
                y * (end - start) * (in_f - 1.0) / (out_f - 1.0)
            };
            x + start * (in_f - 1.0)
        }
    }
}

fn cubic_weight(x: f64, a: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

/// The taps of every output position along one axis.
pub(crate) fn axis_taps(
    p: &Params,
    scale: f64,
    in_len: usize,
    out_len: usize,
    roi: (f64, f64),
) -> Vec<Taps> {
    let last = in_len as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last.max(0)) as usize;
    (0..out_len)
        .map(|y| {
            let x = source_coord(p, y, scale, in_len, out_len, roi);
            if p.coord == Coord::TfCropAndResize && (x < 0.0 || x > in_len as f64 - 1.0) {
                return None;
            }
            if p.mode == Mode::Nearest {
                let f = x.floor();
                let frac = x - f;
                let i = if frac == 0.0 {
                    f
                } else {
                    match p.nearest {
                        Nearest::RoundPreferFloor => {
                            if frac <= 0.5 {
                                f
                            } else {
                                f + 1.0
                            }
                        }
                        Nearest::RoundPreferCeil => {
                            if frac < 0.5 {
                                f
                            } else {
                                f + 1.0
                            }
                        }
                        Nearest::Floor => f,
                        Nearest::Ceil => f + 1.0,
                        Nearest::Simple => {
                            if scale < 1.0 {
                                f + 1.0
                            } else {
                                f
                            }
                        }
                    }
                };
                return Some(vec![(clamp(i as i64), 1.0)]);
            }
            // Integral coordinates count as ratio 1 from the previous index,
            // which fixes the tap window the way the reference does.
            let (base, ratio) = if x == x.floor() {
                (x as i64 - 1, 1.0)
            } else {
                (x.floor() as i64, x - x.floor())
            };
            let kscale = if p.antialias { scale.min(1.0) } else { 1.0 };
            // Kernel support: 1 (linear) or 2 (cubic), stretched by 1/kscale.
            let support = if p.mode == Mode::Linear { 1.0 } else { 2.0 };
            let start = (-support / kscale).floor() as i64 + 1;
            let n = 2 - 2 * start;
            let kernel = |d: f64| match p.mode {
                Mode::Linear => (1.0 - d.abs()).max(0.0),
                _ => cubic_weight(d, p.cubic_a),
            };
            let mut taps: Vec<(i64, f64)> = (start..start + n)
                .map(|k| (base + k, kernel((k as f64 - ratio) * kscale)))
                .collect();
            if p.antialias {
                let sum: f64 = taps.iter().map(|t| t.1).sum();
                if sum != 0.0 {
                    taps.iter_mut().for_each(|t| t.1 /= sum);
                }
            }
            if p.exclude_outside {
                for t in taps.iter_mut() {
                    if t.0 < 0 || t.0 > last {
                        t.1 = 0.0;
                    }
                }
                let sum: f64 = taps.iter().map(|t| t.1).sum();
                if sum != 0.0 {
                    taps.iter_mut().for_each(|t| t.1 /= sum);
                }
            }
            Some(
                taps.into_iter()
                    .filter(|t| t.1 != 0.0)
                    .map(|(i, w)| (clamp(i), w))
                    .collect(),
            )
        })
        .collect()
}

/// Resamples axis `axis` of row-major `data` (shape `shape`) with `taps`.
fn resample<T: Copy>(
    data: &[T],
    shape: &[usize],
    axis: usize,
    taps: &[Taps],
    zero: T,
    fill: T,
    mac: impl Fn(T, T, f64) -> T,
) -> Vec<T> {
    let outer: usize = shape[..axis].iter().product();
    let in_len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let out_len = taps.len();
    let mut out = vec![zero; outer * out_len * inner];
    for o in 0..outer {
        for (j, t) in taps.iter().enumerate() {
            let dst = &mut out[(o * out_len + j) * inner..(o * out_len + j + 1) * inner];
            match t {
                None => dst.iter_mut().for_each(|d| *d = fill),
                Some(t) => {
                    for &(i, w) in t {
                        let src = &data[(o * in_len + i) * inner..(o * in_len + i + 1) * inner];
                        for (d, &s) in dst.iter_mut().zip(src) {
                            *d = mac(*d, s, w);
                        }
                    }
                }
            }
        }
    }
    out
}

/// A resize plan: per axis, its output length and taps (`None`: unchanged).
struct Plan {
    out_shape: Vec<usize>,
    axes: Vec<Option<Vec<Taps>>>,
    nearest: bool,
    extrapolation: f32,
}

fn apply_float<T: Real>(x: &TensorValue, plan: &Plan) -> OpResult {
    let a = T::cast_array(x)?;
    let mut shape = a.shape().to_vec();
    let mut data = flat(&a).into_owned();
    let fill = T::of_f32(plan.extrapolation);
    for (axis, taps) in plan.axes.iter().enumerate() {
        let Some(taps) = taps else { continue };
        data = if plan.nearest {
            resample(&data, &shape, axis, taps, T::zero(), fill, |_, s, _| s)
        } else {
            resample(&data, &shape, axis, taps, T::zero(), fill, |d, s, w| {
                d + s * T::of_f64(w)
            })
        };
        shape[axis] = taps.len();
    }
    Ok(vec![RtValue::Tensor(T::wrap(
        x.dtype(),
        shaped(&shape, data)?,
    ))])
}

fn apply_nearest_any<T: Copy + Default + num_traits::NumCast>(
    a: &ArrayD<T>,
    plan: &Plan,
) -> Result<ArrayD<T>, OpError> {
    let mut shape = a.shape().to_vec();
    let mut data = flat(a).into_owned();
    let fill: T = num_traits::NumCast::from(plan.extrapolation).unwrap_or_default();
    for (axis, taps) in plan.axes.iter().enumerate() {
        let Some(taps) = taps else { continue };
        data = resample(&data, &shape, axis, taps, T::default(), fill, |_, s, _| s);
        shape[axis] = taps.len();
    }
    shaped(&shape, data)
}

/// Linear/cubic on an integer tensor: computes in f64, rounds half to even
/// and saturates to the type's range.
fn apply_int_interp<T: Copy + num_traits::NumCast + num_traits::Bounded>(
    a: &ArrayD<T>,
    plan: &Plan,
) -> Result<ArrayD<T>, OpError> {
    let mut shape = a.shape().to_vec();
    let mut data: Vec<f64> = a.iter().map(|v| v.to_f64().unwrap_or(0.0)).collect();
    for (axis, taps) in plan.axes.iter().enumerate() {
        let Some(taps) = taps else { continue };
        data = resample(
            &data,
            &shape,
            axis,
            taps,
            0.0,
            plan.extrapolation as f64,
            |d, s, w| d + s * w,
        );
        shape[axis] = taps.len();
    }
    let lo = T::min_value().to_f64().unwrap_or(f64::MIN);
    let hi = T::max_value().to_f64().unwrap_or(f64::MAX);
    let v: Vec<T> = data
        .into_iter()
        .map(|v| {
            let r = v.round_ties_even().clamp(lo, hi);
            T::from(r).unwrap_or_else(T::min_value)
        })
        .collect();
    shaped(&shape, v)
}

fn apply(x: &TensorValue, plan: &Plan) -> OpResult {
    use TensorValue as V;
    if is_float(x) {
        return match x {
            V::F64(_) => apply_float::<f64>(x, plan),
            _ => apply_float::<f32>(x, plan),
        };
    }
    macro_rules! ints {
        ($($v:ident),*) => {
            match x {
                $(V::$v(a) => V::$v(if plan.nearest {
                    apply_nearest_any(a, plan)?
                } else {
                    apply_int_interp(a, plan)?
                }),)*
                t => return Err(OpError::Invalid(format!("cannot resize a {} tensor", t.dtype()))),
            }
        };
    }
    Ok(vec![RtValue::Tensor(ints!(
        I8, I16, I32, I64, U8, U16, U32, U64
    ))])
}

/// Builds the plan from full-rank scales and output sizes.
fn plan(
    p: &Params,
    in_shape: &[usize],
    scales: &[f64],
    out_shape: &[usize],
    roi: Option<&[f64]>,
    extrapolation: f32,
) -> Result<Plan, OpError> {
    let r = in_shape.len();
    let mut axes = Vec::with_capacity(r);
    for d in 0..r {
        let (s, out) = (scales[d], out_shape[d]);
        if out == 0 {
            axes.push(Some(vec![]));
            continue;
        }
        if !(s.is_finite() && s > 0.0) {
            return Err(OpError::Invalid(format!(
                "scale {s} on axis {d} must be positive"
            )));
        }
        let roi_d = roi.map_or((0.0, 1.0), |v| (v[d], v[d + r]));
        let trivial_roi = p.coord != Coord::TfCropAndResize
            || ((roi_d.0).abs() < 1e-9 && (roi_d.1 - 1.0).abs() < 1e-9);
        if (s - 1.0).abs() < 1e-9 && out == in_shape[d] && trivial_roi {
            axes.push(None);
        } else if in_shape[d] == 0 && out > 0 {
            return Err(OpError::Invalid(format!(
                "cannot resize empty axis {d} to {out}"
            )));
        } else {
            axes.push(Some(axis_taps(p, s, in_shape[d], out, roi_d)));
        }
    }
    let total = out_shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    match total {
        Some(n) if n <= (1usize << 34) => {}
        _ => {
            return Err(OpError::Invalid(format!(
                "output shape {out_shape:?} is too large"
            )))
        }
    }
    Ok(Plan {
        out_shape: out_shape.to_vec(),
        axes,
        nearest: p.mode == Mode::Nearest,
        extrapolation,
    })
}

fn float_list(t: &TensorValue) -> Result<Vec<f64>, OpError> {
    if !is_float(t) {
        return Err(OpError::Invalid(format!(
            "expected float scales or roi, got {}",
            t.dtype()
        )));
    }
    t.to_f64_vec()
        .ok_or_else(|| OpError::Invalid("expected a float tensor".into()))
}

/// Output size for `in` scaled by `s`: floor, as the reference does.
fn scaled_size(input: usize, s: f64) -> Result<usize, OpError> {
    let v = (input as f64 * s).floor();
    if !(0.0..1e15).contains(&v) {
        return Err(OpError::Invalid(format!("scale {s} gives an invalid size")));
    }
    Ok(v as usize)
}

fn resize(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let in_shape = x.shape().to_vec();
    let r = in_shape.len();
    let mode = match ctx.string("mode").as_deref().unwrap_or("nearest") {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" | "trilinear" => Mode::Linear,
        "cubic" | "bicubic" => Mode::Cubic,
        m => return Err(OpError::Invalid(format!("unknown Resize mode '{m}'"))),
    };
    let (coord, nearest) = if ctx.opset < 11 {
        (Coord::Asymmetric, Nearest::Simple)
    } else {
        let coord = match ctx
            .string("coordinate_transformation_mode")
            .as_deref()
            .unwrap_or("half_pixel")
        {
            "half_pixel" => Coord::HalfPixel,
            "half_pixel_symmetric" => Coord::HalfPixelSymmetric,
            "pytorch_half_pixel" => Coord::PytorchHalfPixel,
            "align_corners" => Coord::AlignCorners,
            "asymmetric" => Coord::Asymmetric,
            "tf_crop_and_resize" => Coord::TfCropAndResize,
            "tf_half_pixel_for_nn" => {
                return Err(OpError::Unsupported(
                    "coordinate_transformation_mode tf_half_pixel_for_nn".into(),
                ))
            }
            m => {
                return Err(OpError::Invalid(format!(
                    "unknown coordinate_transformation_mode '{m}'"
                )))
            }
        };
        let nearest = match ctx
            .string("nearest_mode")
            .as_deref()
            .unwrap_or("round_prefer_floor")
        {
            "round_prefer_floor" => Nearest::RoundPreferFloor,
            "round_prefer_ceil" => Nearest::RoundPreferCeil,
            "floor" => Nearest::Floor,
            "ceil" => Nearest::Ceil,
            m => return Err(OpError::Invalid(format!("unknown nearest_mode '{m}'"))),
        };
        (coord, nearest)
    };
    let p = Params {
        mode,
        coord,
        nearest,
        cubic_a: ctx.float("cubic_coeff_a", -0.75) as f64,
        exclude_outside: ctx.int("exclude_outside", 0) != 0,
        antialias: ctx.int("antialias", 0) != 0 && mode != Mode::Nearest,
    };
    // Inputs: opset 10 (X, scales); later (X, roi, scales, sizes).
    let (roi_in, scales_in, sizes_in) = if ctx.opset < 11 {
        (None, ctx.opt_input(inputs, 1)?, None)
    } else {
        (
            ctx.opt_input(inputs, 1)?,
            ctx.opt_input(inputs, 2)?,
            ctx.opt_input(inputs, 3)?,
        )
    };
    let scales_in = scales_in.filter(|t| !t.is_empty());
    let sizes_in = sizes_in.filter(|t| !t.is_empty());
    let roi_in = roi_in.filter(|t| !t.is_empty());
    // The resized axes.
    let axes: Vec<usize> = match ctx.ints("axes") {
        Some(a) => {
            let mut v = Vec::with_capacity(a.len());
            for ax in a {
                let n = super::norm_axis(ax, r)?;
                if v.contains(&n) {
                    return Err(OpError::Invalid(format!("axis {ax} is repeated")));
                }
                v.push(n);
            }
            v
        }
        None => (0..r).collect(),
    };
    let mut scales = vec![1.0f64; r];
    let mut out_shape = in_shape.clone();
    match (scales_in, sizes_in) {
        (Some(s), None) => {
            let s = float_list(s)?;
            if s.len() != axes.len() {
                return Err(OpError::Invalid(format!(
                    "{} scales for {} axes",
                    s.len(),
                    axes.len()
                )));
            }
            for (&a, &v) in axes.iter().zip(&s) {
                scales[a] = v;
                out_shape[a] = scaled_size(in_shape[a], v)?;
            }
        }
        (None, Some(z)) => {
            let z = z
                .to_i64_vec()
                .ok_or_else(|| OpError::Invalid("sizes must be int64".into()))?;
            if z.len() != axes.len() {
                return Err(OpError::Invalid(format!(
                    "{} sizes for {} axes",
                    z.len(),
                    axes.len()
                )));
            }
            for (&a, &v) in axes.iter().zip(&z) {
                if v < 0 {
                    return Err(OpError::Invalid(format!("negative size {v}")));
                }
                out_shape[a] = v as usize;
                scales[a] = if in_shape[a] == 0 {
                    1.0
                } else {
                    v as f64 / in_shape[a] as f64
                };
            }
            let policy = ctx
                .string("keep_aspect_ratio_policy")
                .unwrap_or_else(|| "stretch".into());
            if policy != "stretch" && !axes.is_empty() {
                let it = axes.iter().map(|&a| scales[a]);
                let s = match policy.as_str() {
                    "not_larger" => it.fold(f64::INFINITY, f64::min),
                    "not_smaller" => it.fold(f64::NEG_INFINITY, f64::max),
                    p => {
                        return Err(OpError::Invalid(format!(
                            "unknown keep_aspect_ratio_policy '{p}'"
                        )))
                    }
                };
                for &a in &axes {
                    scales[a] = s;
                    out_shape[a] = (s * in_shape[a] as f64 + 0.5).floor() as usize;
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(OpError::Invalid(
                "only one of scales and sizes may be given".into(),
            ))
        }
        (None, None) => return Err(OpError::Invalid("Resize needs scales or sizes".into())),
    }
    // roi, full rank: [starts..., ends...].
    let roi = match roi_in {
        Some(t) if coord == Coord::TfCropAndResize => {
            let v = float_list(t)?;
            if v.len() != 2 * axes.len() {
                return Err(OpError::Invalid(format!(
                    "roi has {} values, expected {}",
                    v.len(),
                    2 * axes.len()
                )));
            }
            let mut full: Vec<f64> = vec![0.0; r];
            full.extend(std::iter::repeat_n(1.0, r));
            let n = axes.len();
            for (i, &a) in axes.iter().enumerate() {
                full[a] = v[i];
                full[r + a] = v[n + i];
            }
            Some(full)
        }
        _ => None,
    };
    let extrapolation = ctx.float("extrapolation_value", 0.0);
    let plan = plan(
        &p,
        &in_shape,
        &scales,
        &out_shape,
        roi.as_deref(),
        extrapolation,
    )?;
    debug_assert_eq!(plan.out_shape.len(), r);
    apply(x, &plan)
}

fn upsample(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let in_shape = x.shape().to_vec();
    let scales = if ctx.opset < 9 {
        ctx.floats("scales")
            .ok_or_else(|| OpError::Invalid("Upsample needs the scales attribute".into()))?
            .into_iter()
            .map(|v| v as f64)
            .collect()
    } else {
        float_list(ctx.input(inputs, 1)?)?
    };
    if scales.len() != in_shape.len() {
        return Err(OpError::Invalid(format!(
            "{} scales for rank {}",
            scales.len(),
            in_shape.len()
        )));
    }
    let mode = match ctx.string("mode").as_deref().unwrap_or("nearest") {
        "nearest" => Mode::Nearest,
        "linear" | "bilinear" => Mode::Linear,
        m => return Err(OpError::Invalid(format!("unknown Upsample mode '{m}'"))),
    };
    let p = Params {
        mode,
        coord: Coord::Asymmetric,
        nearest: Nearest::Simple,
        cubic_a: -0.75,
        exclude_outside: false,
        antialias: false,
    };
    let out_shape = in_shape
        .iter()
        .zip(&scales)
        .map(|(&d, &s)| scaled_size(d, s))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = plan(&p, &in_shape, &scales, &out_shape, None, 0.0)?;
    apply(x, &plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(mode: Mode, coord: Coord) -> Params {
        Params {
            mode,
            coord,
            nearest: Nearest::RoundPreferFloor,
            cubic_a: -0.75,
            exclude_outside: false,
            antialias: false,
        }
    }

    #[test]
    fn linear_half_pixel_upsample() {
        let p = params(Mode::Linear, Coord::HalfPixel);
        let taps = axis_taps(&p, 2.0, 2, 4, (0.0, 1.0));
        let data = [1.0f32, 3.0];
        let out = resample(&data, &[2], 0, &taps, 0.0, 0.0, |d, s, w| d + s * w as f32);
        assert_eq!(out, vec![1.0, 1.5, 2.5, 3.0]);
    }

    #[test]
    fn nearest_asymmetric_floor() {
        let mut p = params(Mode::Nearest, Coord::Asymmetric);
        p.nearest = Nearest::Floor;
        let taps = axis_taps(&p, 2.0, 2, 4, (0.0, 1.0));
        let idx: Vec<usize> = taps.iter().map(|t| t.as_ref().unwrap()[0].0).collect();
        assert_eq!(idx, vec![0, 0, 1, 1]);
    }
}
