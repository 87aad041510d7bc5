//! Normalisation operators: BatchNormalization, InstanceNormalization,
//! LayerNormalization, GroupNormalization, RMSNormalization, LRN,
//! LpNormalization and MeanVarianceNormalization.
//!
//! Also home of [`Real`], the small float abstraction the float kernels of
//! `norm`, `softmax`, `resize`, `recurrent` and `quant` share: f32 and f64
//! compute natively, f16/bf16 compute through f32 and are rounded back once.
//!
//! Decisions where the spec is loose:
//! - BatchNormalization trains (batch statistics, running-statistic outputs)
//!   when `training_mode = 1` (opset ≥ 14), or before opset 14 when the node
//!   asks for the extra outputs (opset 6: unless `is_test = 1`).
//! - LayerNormalization's Mean/InvStdDev are float32 when `stash_type = 1`
//!   (the spec's type `U`), else the type of X; statistics are computed in the
//!   input's compute type (f32 or f64).
//! - GroupNormalization takes scale/bias per group (opset 18) or per channel
//!   (opset 21) by their length; the two agree when groups == channels.
//! - LpNormalization divides by the p-norm (p = 1 uses |x|); a zero norm
//!   gives 0, like the reference implementation.
//! - MeanVarianceNormalization follows its function body:
//!   `(X - E[X]) / (sqrt(E[X²] - E[X]²) + 1e-9)`.

use super::{norm_axis, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::borrow::Cow;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("BatchNormalization", batch_norm);
    r.add("InstanceNormalization", instance_norm);
    r.add("LayerNormalization", layer_norm);
    r.add("GroupNormalization", group_norm);
    r.add("RMSNormalization", rms_norm);
    r.add("LRN", lrn);
    r.add("LpNormalization", lp_norm);
    r.add("MeanVarianceNormalization", mvn);
}

// ---------------------------------------------------------------------------
// Shared float helpers
// ---------------------------------------------------------------------------

/// A compute float type (f32 or f64) and its conversions to and from tensors.
pub(crate) trait Real:
    num_traits::Float
    + num_traits::FloatConst
    + std::iter::Sum
    + std::ops::AddAssign
    + std::ops::MulAssign
    + Default
    + ndarray::LinalgScalar
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    fn of_f64(v: f64) -> Self;
    fn of_f32(v: f32) -> Self;
    fn of_usize(v: usize) -> Self {
        Self::of_f64(v as f64)
    }
    /// Any float tensor as an array of `Self` (borrowed when it already is).
    fn cast_array(t: &TensorValue) -> Result<Cow<'_, ArrayD<Self>>, OpError>;
    /// Wraps computed values as a tensor of `dtype` (a float type).
    fn wrap(dtype: DType, a: ArrayD<Self>) -> TensorValue;
}

fn not_float(t: &TensorValue) -> OpError {
    OpError::Invalid(format!("expected a float tensor, got {}", t.dtype()))
}

impl Real for f32 {
    fn of_f64(v: f64) -> Self {
        v as f32
    }
    fn of_f32(v: f32) -> Self {
        v
    }
    fn cast_array(t: &TensorValue) -> Result<Cow<'_, ArrayD<f32>>, OpError> {
        Ok(match t {
            TensorValue::F32(a) => Cow::Borrowed(a),
            TensorValue::F64(a) => Cow::Owned(a.mapv(|v| v as f32)),
            TensorValue::F16(a) => Cow::Owned(a.mapv(|v| v.to_f32())),
            TensorValue::BF16(a) => Cow::Owned(a.mapv(|v| v.to_f32())),
            t => return Err(not_float(t)),
        })
    }
    fn wrap(dtype: DType, a: ArrayD<f32>) -> TensorValue {
        match dtype {
            DType::F16 => TensorValue::F16(a.mapv(f16::from_f32)),
            DType::BF16 => TensorValue::BF16(a.mapv(bf16::from_f32)),
            DType::F64 => TensorValue::F64(a.mapv(|v| v as f64)),
            _ => TensorValue::F32(a),
        }
    }
}

impl Real for f64 {
    fn of_f64(v: f64) -> Self {
        v
    }
    fn of_f32(v: f32) -> Self {
        v as f64
    }
    fn cast_array(t: &TensorValue) -> Result<Cow<'_, ArrayD<f64>>, OpError> {
        Ok(match t {
            TensorValue::F64(a) => Cow::Borrowed(a),
            TensorValue::F32(a) => Cow::Owned(a.mapv(|v| v as f64)),
            TensorValue::F16(a) => Cow::Owned(a.mapv(|v| v.to_f64())),
            TensorValue::BF16(a) => Cow::Owned(a.mapv(|v| v.to_f64())),
            t => return Err(not_float(t)),
        })
    }
    fn wrap(dtype: DType, a: ArrayD<f64>) -> TensorValue {
        match dtype {
            DType::F16 => TensorValue::F16(a.mapv(f16::from_f64)),
            DType::BF16 => TensorValue::BF16(a.mapv(bf16::from_f64)),
            DType::F32 => TensorValue::F32(a.mapv(|v| v as f32)),
            _ => TensorValue::F64(a),
        }
    }
}

/// Whether `t` is a float tensor (the float kernels' inputs).
pub(crate) fn is_float(t: &TensorValue) -> bool {
    matches!(
        t,
        TensorValue::F32(_) | TensorValue::F64(_) | TensorValue::F16(_) | TensorValue::BF16(_)
    )
}

/// Runs `$f::<f64>` for f64 tensors and `$f::<f32>` for the other float types.
macro_rules! by_float {
    ($x:expr, $f:ident ( $($arg:expr),* )) => {{
        let x: &TensorValue = $x;
        match x {
            TensorValue::F64(_) => $f::<f64>($($arg),*),
            t if $crate::ops::norm::is_float(t) => $f::<f32>($($arg),*),
            t => Err(OpError::Invalid(format!("expected a float tensor, got {}", t.dtype()))),
        }
    }};
}
pub(crate) use by_float;

/// The elements in logical (row-major) order, borrowed when contiguous.
pub(crate) fn flat<T: Clone>(a: &ArrayD<T>) -> Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

/// An array of `shape` from row-major data.
pub(crate) fn shaped<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, OpError> {
    ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| OpError::Invalid(e.to_string()))
}

/// One tensor of the given dtype.
fn out1<T: Real>(dtype: DType, shape: &[usize], v: Vec<T>) -> OpResult {
    Ok(vec![RtValue::Tensor(T::wrap(dtype, shaped(shape, v)?))])
}

/// Whether the node uses output `i`.
fn wants_output(ctx: &OpCtx, i: usize) -> bool {
    matches!(ctx.node.outputs.get(i), Some(Some(_)))
}

/// A per-channel parameter vector of length `c` (accepts any shape holding
/// exactly `c` elements, or a single element broadcast to all channels).
fn channel_param<T: Real>(t: &TensorValue, c: usize, what: &str) -> Result<Vec<T>, OpError> {
    let a = T::cast_array(t)?;
    let v = flat(&a);
    if v.len() == c {
        Ok(v.into_owned())
    } else if v.len() == 1 {
        Ok(vec![v[0]; c])
    } else {
        Err(OpError::Invalid(format!(
            "{what} has {} elements, expected {c}",
            v.len()
        )))
    }
}

/// Mean and population variance of a slice (two passes, for accuracy).
fn mean_var<T: Real>(v: &[T]) -> (T, T) {
    if v.is_empty() {
        return (T::zero(), T::zero());
    }
    let n = T::of_usize(v.len());
    let m = v.iter().copied().sum::<T>() / n;
    let var = v.iter().map(|&x| (x - m) * (x - m)).sum::<T>() / n;
    (m, var)
}

/// Splits X's shape into (N, C, spatial size); rank must be at least 2.
fn ncs(shape: &[usize], op: &str) -> Result<(usize, usize, usize), OpError> {
    if shape.len() < 2 {
        return Err(OpError::Invalid(format!(
            "{op} needs an input of rank at least 2, got {shape:?}"
        )));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
}

// ---------------------------------------------------------------------------
// BatchNormalization
// ---------------------------------------------------------------------------

fn batch_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, batch_norm_t(ctx, inputs))
}

fn batch_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let (n, c, s) = ncs(&shape, "BatchNormalization")?;
    let scale = channel_param::<T>(ctx.input(inputs, 1)?, c, "scale")?;
    let bias = channel_param::<T>(ctx.input(inputs, 2)?, c, "B")?;
    let mean_t = ctx.input(inputs, 3)?;
    let var_t = ctx.input(inputs, 4)?;
    let mean = channel_param::<T>(mean_t, c, "input_mean")?;
    let var = channel_param::<T>(var_t, c, "input_var")?;
    let eps = T::of_f32(ctx.float("epsilon", 1e-5));
    let momentum = T::of_f32(ctx.float("momentum", 0.9));
    let training = if ctx.opset >= 14 {
        ctx.int("training_mode", 0) != 0
    } else {
        (1..5).any(|i| wants_output(ctx, i)) && !(ctx.opset < 7 && ctx.int("is_test", 0) != 0)
    };
    let xs = flat(&x);
    let (use_mean, use_var) = if training {
        // Batch statistics per channel over N and the spatial axes.
        let mut bm = vec![T::zero(); c];
        let mut bv = vec![T::zero(); c];
        let count = T::of_usize(n * s);
        if n * s > 0 {
            for ch in 0..c {
                let mut sum = T::zero();
                for b in 0..n {
                    let o = (b * c + ch) * s;
                    sum += xs[o..o + s].iter().copied().sum::<T>();
                }
                let m = sum / count;
                let mut sq = T::zero();
                for b in 0..n {
                    let o = (b * c + ch) * s;
                    sq += xs[o..o + s].iter().map(|&v| (v - m) * (v - m)).sum::<T>();
                }
                bm[ch] = m;
                bv[ch] = sq / count;
            }
        }
        (bm, bv)
    } else {
        (mean.clone(), var.clone())
    };
    let mut y = vec![T::zero(); xs.len()];
    for b in 0..n {
        for ch in 0..c {
            let k = scale[ch] / (use_var[ch] + eps).sqrt();
            let off = bias[ch] - use_mean[ch] * k;
            let o = (b * c + ch) * s;
            for (d, &v) in y[o..o + s].iter_mut().zip(&xs[o..o + s]) {
                *d = v * k + off;
            }
        }
    }
    let mut out = vec![RtValue::Tensor(T::wrap(xt.dtype(), shaped(&shape, y)?))];
    if training {
        let one = T::one();
        let run_mean: Vec<T> = (0..c)
            .map(|i| mean[i] * momentum + use_mean[i] * (one - momentum))
            .collect();
        let run_var: Vec<T> = (0..c)
            .map(|i| var[i] * momentum + use_var[i] * (one - momentum))
            .collect();
        out.push(RtValue::Tensor(T::wrap(
            mean_t.dtype(),
            shaped(&[c], run_mean)?,
        )));
        out.push(RtValue::Tensor(T::wrap(
            var_t.dtype(),
            shaped(&[c], run_var)?,
        )));
        if ctx.opset < 14 {
            // saved_mean, saved_var (the batch statistics).
            out.push(RtValue::Tensor(T::wrap(
                mean_t.dtype(),
                shaped(&[c], use_mean)?,
            )));
            out.push(RtValue::Tensor(T::wrap(
                var_t.dtype(),
                shaped(&[c], use_var)?,
            )));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// InstanceNormalization
// ---------------------------------------------------------------------------

fn instance_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, instance_norm_t(ctx, inputs))
}

fn instance_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let (n, c, s) = ncs(&shape, "InstanceNormalization")?;
    let scale = channel_param::<T>(ctx.input(inputs, 1)?, c, "scale")?;
    let bias = channel_param::<T>(ctx.input(inputs, 2)?, c, "B")?;
    let eps = T::of_f32(ctx.float("epsilon", 1e-5));
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    for b in 0..n {
        for ch in 0..c {
            let o = (b * c + ch) * s;
            let row = &xs[o..o + s];
            let (m, v) = mean_var(row);
            let k = scale[ch] / (v + eps).sqrt();
            let off = bias[ch] - m * k;
            for (d, &v) in y[o..o + s].iter_mut().zip(row) {
                *d = v * k + off;
            }
        }
    }
    out1(xt.dtype(), &shape, y)
}

// ---------------------------------------------------------------------------
// LayerNormalization and RMSNormalization
// ---------------------------------------------------------------------------

/// A scale/bias input broadcast against X from `axis` on: the values per
/// normalised row (length `inner`), or for the whole of X when the parameter
/// has more dimensions than the normalised part (length `outer * inner`).
fn row_param<T: Real>(t: &TensorValue, shape: &[usize], axis: usize) -> Result<Vec<T>, OpError> {
    let a = T::cast_array(t)?;
    let target = if a.ndim() <= shape.len() - axis {
        &shape[axis..]
    } else {
        shape
    };
    let v = super::broadcast::view_as(&a, target)?;
    Ok(v.iter().copied().collect())
}

fn layer_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, layer_norm_t(ctx, inputs))
}

fn layer_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let axis = norm_axis(ctx.int("axis", -1), shape.len())?.min(shape.len());
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let scale = row_param::<T>(ctx.input(inputs, 1)?, &shape, axis)?;
    let bias = match ctx.opt_input(inputs, 2)? {
        Some(b) => Some(row_param::<T>(b, &shape, axis)?),
        None => None,
    };
    let eps = T::of_f32(ctx.float("epsilon", 1e-5));
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    let mut means = vec![T::zero(); outer];
    let mut invs = vec![T::zero(); outer];
    for o in 0..outer {
        let r = o * inner..(o + 1) * inner;
        let (m, v) = mean_var(&xs[r.clone()]);
        let inv = T::one() / (v + eps).sqrt();
        means[o] = m;
        invs[o] = inv;
        let so = if scale.len() == inner { 0 } else { o * inner };
        let sc = &scale[so..so + inner];
        let yr = &mut y[r.clone()];
        match &bias {
            Some(b) => {
                let bo = if b.len() == inner { 0 } else { o * inner };
                let bi = &b[bo..bo + inner];
                for i in 0..inner {
                    yr[i] = (xs[r.start + i] - m) * inv * sc[i] + bi[i];
                }
            }
            None => {
                for i in 0..inner {
                    yr[i] = (xs[r.start + i] - m) * inv * sc[i];
                }
            }
        }
    }
    let stat_dtype = if ctx.int("stash_type", 1) == 1 {
        DType::F32
    } else {
        xt.dtype()
    };
    let mut stat_shape = shape[..axis].to_vec();
    stat_shape.resize(shape.len(), 1);
    Ok(vec![
        RtValue::Tensor(T::wrap(xt.dtype(), shaped(&shape, y)?)),
        RtValue::Tensor(T::wrap(stat_dtype, shaped(&stat_shape, means)?)),
        RtValue::Tensor(T::wrap(stat_dtype, shaped(&stat_shape, invs)?)),
    ])
}

fn rms_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, rms_norm_t(ctx, inputs))
}

fn rms_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let axis = norm_axis(ctx.int("axis", -1), shape.len())?.min(shape.len());
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let scale = row_param::<T>(ctx.input(inputs, 1)?, &shape, axis)?;
    let eps = T::of_f32(ctx.float("epsilon", 1e-5));
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    let n = T::of_usize(inner.max(1));
    for o in 0..outer {
        let row = &xs[o * inner..(o + 1) * inner];
        let ms = row.iter().map(|&v| v * v).sum::<T>() / n;
        let inv = T::one() / (ms + eps).sqrt();
        let so = if scale.len() == inner { 0 } else { o * inner };
        let sc = &scale[so..so + inner];
        for ((d, &v), &k) in y[o * inner..(o + 1) * inner].iter_mut().zip(row).zip(sc) {
            *d = v * inv * k;
        }
    }
    out1(xt.dtype(), &shape, y)
}

// ---------------------------------------------------------------------------
// GroupNormalization
// ---------------------------------------------------------------------------

fn group_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, group_norm_t(ctx, inputs))
}

fn group_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let (n, c, s) = ncs(&shape, "GroupNormalization")?;
    let g = ctx.int("num_groups", 0);
    if g <= 0 || c % (g as usize) != 0 {
        return Err(OpError::Invalid(format!(
            "num_groups {g} must be positive and divide the {c} channels"
        )));
    }
    let g = g as usize;
    let cpg = c / g;
    // Per channel (opset 21) or per group (opset 18): expand to per channel.
    let per_channel = |t: &TensorValue, what: &str| -> Result<Vec<T>, OpError> {
        let a = T::cast_array(t)?;
        let v = flat(&a);
        if v.len() == c {
            Ok(v.into_owned())
        } else if v.len() == g {
            Ok((0..c).map(|ch| v[ch / cpg]).collect())
        } else {
            Err(OpError::Invalid(format!(
                "{what} has {} elements, expected {c} (channels) or {g} (groups)",
                v.len()
            )))
        }
    };
    let scale = per_channel(ctx.input(inputs, 1)?, "scale")?;
    let bias = per_channel(ctx.input(inputs, 2)?, "bias")?;
    let eps = T::of_f32(ctx.float("epsilon", 1e-5));
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    let glen = cpg * s;
    for b in 0..n {
        for gi in 0..g {
            let o = (b * c + gi * cpg) * s;
            let (m, v) = mean_var(&xs[o..o + glen]);
            let inv = T::one() / (v + eps).sqrt();
            for k in 0..cpg {
                let ch = gi * cpg + k;
                let kk = scale[ch] * inv;
                let off = bias[ch] - m * kk;
                let r = o + k * s..o + (k + 1) * s;
                for (d, &v) in y[r.clone()].iter_mut().zip(&xs[r]) {
                    *d = v * kk + off;
                }
            }
        }
    }
    out1(xt.dtype(), &shape, y)
}

// ---------------------------------------------------------------------------
// LRN
// ---------------------------------------------------------------------------

fn lrn(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, lrn_t(ctx, inputs))
}

fn lrn_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let (n, c, s) = ncs(&shape, "LRN")?;
    let size = ctx.int("size", 0);
    if size <= 0 {
        return Err(OpError::Invalid(format!(
            "LRN size must be positive, got {size}"
        )));
    }
    let size = size as usize;
    let alpha = T::of_f32(ctx.float("alpha", 1e-4));
    let beta = T::of_f32(ctx.float("beta", 0.75));
    let bias = T::of_f32(ctx.float("bias", 1.0));
    let before = (size - 1) / 2;
    let after = size - 1 - before;
    let k = alpha / T::of_usize(size);
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    let mut sq = vec![T::zero(); s];
    for b in 0..n {
        for ch in 0..c {
            sq.iter_mut().for_each(|v| *v = T::zero());
            let lo = ch.saturating_sub(before);
            let hi = (ch + after).min(c - 1);
            for cc in lo..=hi {
                let o = (b * c + cc) * s;
                for (a, &v) in sq.iter_mut().zip(&xs[o..o + s]) {
                    *a += v * v;
                }
            }
            let o = (b * c + ch) * s;
            for ((d, &v), &q) in y[o..o + s].iter_mut().zip(&xs[o..o + s]).zip(&sq) {
                *d = v / (bias + k * q).powf(beta);
            }
        }
    }
    out1(xt.dtype(), &shape, y)
}

// ---------------------------------------------------------------------------
// LpNormalization and MeanVarianceNormalization
// ---------------------------------------------------------------------------

fn lp_norm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, lp_norm_t(ctx, inputs))
}

fn lp_norm_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let p = ctx.int("p", 2);
    if p != 1 && p != 2 {
        return Err(OpError::Invalid(format!(
            "LpNormalization p must be 1 or 2, got {p}"
        )));
    }
    if shape.is_empty() {
        return Err(OpError::Invalid("LpNormalization needs rank ≥ 1".into()));
    }
    let axis = norm_axis(ctx.int("axis", -1), shape.len())?;
    let (outer, len, inner) = split3(&shape, axis);
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            let mut acc = T::zero();
            for k in 0..len {
                let v = xs[base + k * inner];
                acc += if p == 1 { v.abs() } else { v * v };
            }
            let norm = if p == 1 { acc } else { acc.sqrt() };
            for k in 0..len {
                let j = base + k * inner;
                y[j] = if norm == T::zero() {
                    T::zero()
                } else {
                    xs[j] / norm
                };
            }
        }
    }
    out1(xt.dtype(), &shape, y)
}

/// (product before `axis`, the axis length, product after it).
pub(crate) fn split3(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    let outer = shape[..axis].iter().product();
    let len = shape.get(axis).copied().unwrap_or(1);
    let inner = shape.get(axis + 1..).map_or(1, |s| s.iter().product());
    (outer, len, inner)
}

fn mvn(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, mvn_t(ctx, inputs))
}

fn mvn_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let rank = shape.len();
    let axes = ctx.ints("axes").unwrap_or_else(|| vec![0, 2, 3]);
    let mut reduced = vec![false; rank];
    for &a in &axes {
        reduced[norm_axis(a, rank)?] = true;
    }
    // Statistics shape: X's shape with the reduced axes set to 1.
    let stat_shape: Vec<usize> = shape
        .iter()
        .zip(&reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let count: usize = shape
        .iter()
        .zip(&reduced)
        .filter(|(_, &r)| r)
        .map(|(&d, _)| d)
        .product();
    // Each element's position in the statistics arrays (X's row-major order).
    let xs = flat(&x);
    let stat_strides = strides_of(&stat_shape, &reduced);
    let stat_len: usize = stat_shape.iter().product();
    let mut positions = Vec::with_capacity(xs.len());
    let mut idx = vec![0usize; rank];
    for _ in 0..xs.len() {
        positions.push(
            idx.iter()
                .zip(&stat_strides)
                .map(|(&i, &s)| i * s)
                .sum::<usize>(),
        );
        for d in (0..rank).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    let mut sum = vec![T::zero(); stat_len];
    let mut sumsq = vec![T::zero(); stat_len];
    for (&p, &v) in positions.iter().zip(xs.iter()) {
        sum[p] += v;
        sumsq[p] += v * v;
    }
    let n = T::of_usize(count.max(1));
    let eps = T::of_f64(1e-9);
    let y: Vec<T> = positions
        .iter()
        .zip(xs.iter())
        .map(|(&p, &v)| {
            let m = sum[p] / n;
            let var = sumsq[p] / n - m * m;
            (v - m) / (var.max(T::zero()).sqrt() + eps)
        })
        .collect();
    out1(xt.dtype(), &shape, y)
}

/// Row-major strides of `stat_shape`, zero on reduced axes.
fn strides_of(stat_shape: &[usize], reduced: &[bool]) -> Vec<usize> {
    let mut strides = vec![0; stat_shape.len()];
    let mut acc = 1;
    for d in (0..stat_shape.len()).rev() {
        strides[d] = if reduced[d] { 0 } else { acc };
        acc *= stat_shape[d];
    }
    strides
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::attr::{Attr, AttrValue};
    use crate::ir::graph::Node;

    pub(crate) fn node(op: &str, attrs: Vec<(&str, AttrValue)>, n_out: usize) -> Node {
        let mut node = Node::new(
            op,
            "",
            attrs.into_iter().map(|(n, v)| Attr::new(n, v)).collect(),
        );
        node.outputs = (0..n_out)
            .map(|i| Some(crate::ir::graph::ValueId(i as u32)))
            .collect();
        node
    }

    fn f32s(v: &RtValue) -> Vec<f32> {
        match v {
            RtValue::Tensor(TensorValue::F32(a)) => a.iter().copied().collect(),
            _ => panic!("not f32"),
        }
    }

    fn t(shape: &[usize], v: Vec<f32>) -> Option<RtValue> {
        Some(RtValue::Tensor(TensorValue::from_f32(shape, v)))
    }

    #[test]
    fn layer_norm_rows() {
        let n = node("LayerNormalization", vec![], 3);
        let ctx = OpCtx {
            node: &n,
            opset: 17,
        };
        let out = layer_norm(
            &ctx,
            &[
                t(&[2, 2], vec![1.0, 3.0, 2.0, 2.0]),
                t(&[2], vec![1.0, 2.0]),
                t(&[2], vec![0.0, 1.0]),
            ],
        )
        .unwrap();
        let y = f32s(&out[0]);
        assert!((y[0] + 1.0).abs() < 1e-3 && (y[1] - 3.0).abs() < 1e-3);
        assert_eq!(&y[2..], &[0.0, 1.0]);
        assert_eq!(f32s(&out[1]), vec![2.0, 2.0]);
    }

    #[test]
    fn mvn_matches_formula() {
        let n = node(
            "MeanVarianceNormalization",
            vec![("axes", AttrValue::Ints(vec![1]))],
            1,
        );
        let ctx = OpCtx {
            node: &n,
            opset: 13,
        };
        let out = mvn(&ctx, &[t(&[1, 2], vec![1.0, 3.0])]).unwrap();
        let y = f32s(&out[0]);
        assert!((y[0] + 1.0).abs() < 1e-6 && (y[1] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn lrn_single_channel() {
        let n = node(
            "LRN",
            vec![
                ("size", AttrValue::Int(1)),
                ("alpha", AttrValue::Float(1.0)),
                ("beta", AttrValue::Float(1.0)),
            ],
            1,
        );
        let ctx = OpCtx {
            node: &n,
            opset: 13,
        };
        let out = lrn(&ctx, &[t(&[1, 1, 1, 1], vec![2.0])]).unwrap();
        assert_eq!(f32s(&out[0]), vec![2.0 / 5.0]);
    }
}
