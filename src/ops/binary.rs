//! Binary and variadic elementwise operators with numpy broadcasting: Pow, Mod,
//! Max, Min, Sum, Mean, BitShift, BitwiseAnd/Or/Xor and PRelu; plus the legacy
//! (opset < 7) `broadcast`/`axis` attribute form shared by the binary ops.
//!
//! Decisions where the spec is loose:
//! - Pow: the result has the base's type. Same-type float pairs compute in the
//!   base's precision (f32 for f32/f16/bf16); a mixed pair computes in f64 and
//!   converts back (as numpy does), so an integer base with a float exponent
//!   truncates. Integer powers wrap; a negative integer exponent gives 1 for a
//!   base of 1, ±1 for -1 and 0 otherwise (the truncated real result).
//! - Mod: integers follow Python's `%` (sign of the divisor) with `fmod=0` and C's
//!   truncated remainder with `fmod=1`; floats always use C's `fmod` (the spec
//!   requires `fmod=1` for floats; onnx's reference does the same). An integer
//!   modulus by zero gives 0 (numpy's result) rather than an error.
//! - Max/Min propagate NaN (numpy's maximum/minimum). Mean is for floats only.
//! - BitShift by the type's width or more gives 0.
//! - PRelu: the slope broadcasts unidirectionally to X; a 1-D slope whose length
//!   is X's channel count (dim 1) but that does not broadcast numpy-style (the
//!   opset 6 form PyTorch exported) is applied per channel.

use super::broadcast::zip2;
use super::elementwise::arith;
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::borrow::Cow;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Pow", pow);
    r.add("Mod", modulo);
    r.add("Max", max);
    r.add("Min", min);
    r.add("Sum", sum);
    r.add("Mean", mean);
    r.add("BitShift", bit_shift);
    r.add("BitwiseAnd", bitwise_and);
    r.add("BitwiseOr", bitwise_or);
    r.add("BitwiseXor", bitwise_xor);
    r.add("PRelu", prelu);
}

/// Reshapes a tensor (same element count).
pub(crate) fn reshape(t: &TensorValue, shape: &[usize]) -> Result<TensorValue, OpError> {
    let bad = |e: ndarray::ShapeError| OpError::Invalid(format!("cannot reshape: {e}"));
    Ok(crate::map_tensor_same!(t, a => a
        .clone()
        .into_shape_with_order(IxDyn(shape))
        .map_err(bad)?))
}

/// The second operand of a binary op, adjusted for the legacy broadcasting of
/// opsets before 7: with `broadcast=1`, `b`'s dimensions line up with `a`'s
/// starting at `axis` (default: suffix alignment). Otherwise `b` unchanged.
pub(crate) fn legacy_broadcast<'a>(
    ctx: &OpCtx,
    a: &TensorValue,
    b: &'a TensorValue,
) -> Result<Cow<'a, TensorValue>, OpError> {
    if ctx.opset >= 7 || ctx.int("broadcast", 0) == 0 {
        return Ok(Cow::Borrowed(b));
    }
    let (ra, bs) = (a.shape().len(), b.shape());
    let axis = match ctx.int_opt("axis") {
        Some(ax) if ax < 0 => ax + ra as i64,
        Some(ax) => ax,
        None => ra as i64 - bs.len() as i64,
    };
    if axis < 0 || axis as usize + bs.len() > ra {
        return Err(OpError::Invalid(format!(
            "broadcast: shape {bs:?} does not fit shape {:?} at axis {axis}",
            a.shape()
        )));
    }
    let axis = axis as usize;
    let mut shape = vec![1; ra];
    shape[axis..axis + bs.len()].copy_from_slice(bs);
    Ok(Cow::Owned(reshape(b, &shape)?))
}

// ---------------------------------------------------------------------------
// Pow

/// Integer power with wrapping; see the module doc for negative exponents.
fn ipow<T>(base: T, e: i64) -> T
where
    T: Copy + Into<i128> + num_traits::WrappingMul + num_traits::One + num_traits::Zero,
{
    if e < 0 {
        let b: i128 = base.into();
        return if b == 1 || b == -1 {
            if e % 2 != 0 {
                base
            } else {
                T::one()
            }
        } else {
            T::zero()
        };
    }
    let (mut acc, mut b, mut e) = (T::one(), base, e as u64);
    while e > 0 {
        if e & 1 == 1 {
            acc = acc.wrapping_mul(&b);
        }
        e >>= 1;
        if e > 0 {
            b = b.wrapping_mul(&b);
        }
    }
    acc
}

fn as_f64_array(t: &TensorValue) -> Result<ArrayD<f64>, OpError> {
    match super::cast::cast_tensor(t, DType::F64)? {
        TensorValue::F64(a) => Ok(a),
        _ => Err(OpError::Invalid("internal: cast to f64 failed".into())),
    }
}

fn pow(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let y = legacy_broadcast(ctx, x, ctx.input(inputs, 1)?)?;
    let y = &*y;
    let is_float = |d: DType| matches!(d, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    if matches!(
        (x, y),
        (T::Str(_) | T::Bool(_), _) | (_, T::Str(_) | T::Bool(_))
    ) {
        return Err(OpError::Invalid(format!(
            "Pow of {} and {} is not defined",
            x.dtype(),
            y.dtype()
        )));
    }
    match (x, y) {
        (T::F32(b), T::F32(e)) => return one(T::F32(zip2(b, e, |b, e| b.powf(*e))?)),
        (T::F64(b), T::F64(e)) => return one(T::F64(zip2(b, e, |b, e| b.powf(*e))?)),
        (T::F16(b), T::F16(e)) => {
            return one(T::F16(zip2(b, e, |b, e| {
                f16::from_f32(b.to_f32().powf(e.to_f32()))
            })?))
        }
        (T::BF16(b), T::BF16(e)) => {
            return one(T::BF16(zip2(b, e, |b, e| {
                bf16::from_f32(b.to_f32().powf(e.to_f32()))
            })?))
        }
        _ => {}
    }
    if !is_float(x.dtype()) && !is_float(y.dtype()) {
        let e = match super::cast::cast_tensor(y, DType::I64)? {
            T::I64(e) => e,
            _ => return Err(OpError::Invalid("internal: cast to i64 failed".into())),
        };
        macro_rules! ip {
            ($($v:ident),*) => {
                match x {
                    $(T::$v(b) => T::$v(zip2(b, &e, |b, e| ipow(*b, *e))?),)*
                    t => return Err(OpError::Invalid(format!("Pow of {} is not defined", t.dtype()))),
                }
            };
        }
        return one(ip!(I8, I16, I32, I64, U8, U16, U32, U64));
    }
    // Mixed types: compute in f64, convert back to the base's type.
    let (b, e) = (as_f64_array(x)?, as_f64_array(y)?);
    let r = T::F64(zip2(&b, &e, |b, e| b.powf(*e))?);
    one(super::cast::cast_tensor(&r, x.dtype())?)
}

// ---------------------------------------------------------------------------
// Mod

trait IntRem: Copy {
    /// Python's `%`: the result has the divisor's sign.
    fn py_mod(self, q: Self) -> Self;
    /// C's `%`: the result has the dividend's sign.
    fn c_mod(self, q: Self) -> Self;
}

macro_rules! int_rem_signed {
    ($($t:ty),*) => {$(
        impl IntRem for $t {
            fn py_mod(self, q: $t) -> $t {
                if q == 0 {
                    return 0;
                }
                let r = self.wrapping_rem(q);
                // r and q have opposite signs here, so the sum cannot overflow.
                if r != 0 && ((r < 0) != (q < 0)) { r + q } else { r }
            }
            fn c_mod(self, q: $t) -> $t {
                if q == 0 { 0 } else { self.wrapping_rem(q) }
            }
        }
    )*};
}
macro_rules! int_rem_unsigned {
    ($($t:ty),*) => {$(
        impl IntRem for $t {
            fn py_mod(self, q: $t) -> $t {
                self.c_mod(q)
            }
            fn c_mod(self, q: $t) -> $t {
                if q == 0 { 0 } else { self % q }
            }
        }
    )*};
}
int_rem_signed!(i8, i16, i32, i64);
int_rem_unsigned!(u8, u16, u32, u64);

fn modulo(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = ctx.input(inputs, 1)?;
    let r = match ctx.int("fmod", 0) {
        0 => arith!(a, b, |p, q| p % q, p.py_mod(q), "Mod")?,
        1 => arith!(a, b, |p, q| p % q, p.c_mod(q), "Mod")?,
        f => {
            return Err(OpError::Invalid(format!(
                "Mod: fmod must be 0 or 1, not {f}"
            )))
        }
    };
    one(r)
}

// ---------------------------------------------------------------------------
// Variadic Max, Min, Sum, Mean

/// Folds the (at least one) inputs pairwise with `f`, broadcasting.
fn fold_inputs(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    op: &str,
    f: impl Fn(&TensorValue, &TensorValue) -> Result<TensorValue, OpError>,
) -> Result<TensorValue, OpError> {
    if inputs.is_empty() {
        return Err(OpError::Invalid(format!("{op} needs at least one input")));
    }
    let mut acc = ctx.input(inputs, 0)?.clone();
    for i in 1..inputs.len() {
        acc = f(&acc, ctx.input(inputs, i)?)?;
    }
    Ok(acc)
}

fn max(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    one(fold_inputs(ctx, inputs, "Max", |a, b| {
        arith!(
            a,
            b,
            |p, q| if p >= q || p.is_nan() { p } else { q },
            if p >= q { p } else { q },
            "Max"
        )
    })?)
}

fn min(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    one(fold_inputs(ctx, inputs, "Min", |a, b| {
        arith!(
            a,
            b,
            |p, q| if p <= q || p.is_nan() { p } else { q },
            if p <= q { p } else { q },
            "Min"
        )
    })?)
}

fn sum(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    one(fold_inputs(ctx, inputs, "Sum", |a, b| {
        arith!(a, b, |p, q| p + q, p.wrapping_add(q), "Sum")
    })?)
}

fn mean(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let s = fold_inputs(ctx, inputs, "Mean", |a, b| {
        arith!(a, b, |p, q| p + q, p.wrapping_add(q), "Mean")
    })?;
    let n = inputs.len() as f64;
    one(match s {
        T::F32(a) => T::F32(a.mapv(|v| v / n as f32)),
        T::F64(a) => T::F64(a.mapv(|v| v / n)),
        T::F16(a) => T::F16(a.mapv(|v| f16::from_f32(v.to_f32() / n as f32))),
        T::BF16(a) => T::BF16(a.mapv(|v| bf16::from_f32(v.to_f32() / n as f32))),
        t => {
            return Err(OpError::Invalid(format!(
                "Mean of {} is not defined",
                t.dtype()
            )))
        }
    })
}

// ---------------------------------------------------------------------------
// Bitwise

/// Applies an integer-only binary function to two tensors of the same integer type.
macro_rules! int_zip {
    ($a:expr, $b:expr, $op:expr, |$p:ident, $q:ident| $e:expr) => {
        int_zip!(@arms $a, $b, $op, |$p, $q| $e; I8, I16, I32, I64, U8, U16, U32, U64)
    };
    (@arms $a:expr, $b:expr, $op:expr, |$p:ident, $q:ident| $e:expr; $($v:ident),*) => {
        match ($a, $b) {
            $((TensorValue::$v(x), TensorValue::$v(y)) => TensorValue::$v(zip2(x, y, |$p, $q| {
                let ($p, $q) = (*$p, *$q);
                $e
            })?),)*
            (x, y) => {
                return Err(OpError::Invalid(format!(
                    "{} of {} and {} is not defined",
                    $op,
                    x.dtype(),
                    y.dtype()
                )))
            }
        }
    };
}

/// A shift count as u32 (`None` when negative or too large).
fn shift_amount<T: TryInto<u32>>(q: T) -> Option<u32> {
    q.try_into().ok()
}

fn bit_shift(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    let dir = ctx.string("direction").unwrap_or_default();
    one(match dir.as_str() {
        "LEFT" => int_zip!(a, b, "BitShift", |p, q| shift_amount(q)
            .and_then(|s| p.checked_shl(s))
            .unwrap_or(0)),
        "RIGHT" => int_zip!(a, b, "BitShift", |p, q| shift_amount(q)
            .and_then(|s| p.checked_shr(s))
            .unwrap_or(0)),
        d => {
            return Err(OpError::Invalid(format!(
                "BitShift: direction must be LEFT or RIGHT, not '{d}'"
            )))
        }
    })
}

fn bitwise_and(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    one(int_zip!(a, b, "BitwiseAnd", |p, q| p & q))
}

fn bitwise_or(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    one(int_zip!(a, b, "BitwiseOr", |p, q| p | q))
}

fn bitwise_xor(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    one(int_zip!(a, b, "BitwiseXor", |p, q| p ^ q))
}

// ---------------------------------------------------------------------------
// PRelu

fn prelu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let slope = ctx.input(inputs, 1)?;
    let (xs, ss) = (x.shape(), slope.shape());
    let numpy_ok = super::broadcast::broadcast_shape(xs, ss).is_ok_and(|s| s == xs);
    let slope: Cow<TensorValue> = if !numpy_ok && ss.len() == 1 && xs.len() >= 2 && ss[0] == xs[1] {
        let mut shape = vec![1; xs.len() - 1];
        shape[0] = ss[0];
        Cow::Owned(reshape(slope, &shape)?)
    } else {
        Cow::Borrowed(slope)
    };
    let r = match (x, &*slope) {
        (T::U8(_) | T::U16(_) | T::U32(_) | T::U64(_), s) if s.dtype() == x.dtype() => x.clone(),
        (T::F32(a), T::F32(s)) => T::F32(zip2(a, s, |&p, &q| if p < 0.0 { p * q } else { p })?),
        (T::F64(a), T::F64(s)) => T::F64(zip2(a, s, |&p, &q| if p < 0.0 { p * q } else { p })?),
        (T::F16(a), T::F16(s)) => T::F16(zip2(a, s, |&p, &q| {
            if p < f16::ZERO {
                f16::from_f32(p.to_f32() * q.to_f32())
            } else {
                p
            }
        })?),
        (T::BF16(a), T::BF16(s)) => T::BF16(zip2(a, s, |&p, &q| {
            if p < bf16::ZERO {
                bf16::from_f32(p.to_f32() * q.to_f32())
            } else {
                p
            }
        })?),
        (a, b) => int_zip!(@arms a, b, "PRelu", |p, q| if p < 0 { p.wrapping_mul(q) } else { p };
            I8, I16, I32, I64),
    };
    if r.shape() != xs {
        return Err(OpError::Invalid(format!(
            "PRelu: slope of shape {:?} does not broadcast to X's shape {xs:?}",
            slope.shape()
        )));
    }
    one(r)
}

#[cfg(test)]
mod tests {
    use super::super::unary::tests::run_op;
    use super::*;
    use crate::ir::attr::{Attr, AttrValue};
    use ndarray::arr1;

    fn i32s(v: &[i32]) -> TensorValue {
        TensorValue::I32(arr1(v).into_dyn())
    }

    #[test]
    fn mod_sign_rules() {
        let a = i32s(&[-4, 7, 5, 4, -7, 8]);
        let b = i32s(&[2, -3, 8, -2, 3, 0]);
        let r = run_op("Mod", 13, vec![], vec![Some(a.clone()), Some(b.clone())]).unwrap();
        assert_eq!(r, i32s(&[0, -2, 5, 0, 2, 0]));
        let fm = vec![Attr::new("fmod", AttrValue::Int(1))];
        let r = run_op("Mod", 13, fm, vec![Some(a), Some(b)]).unwrap();
        assert_eq!(r, i32s(&[0, 1, 5, 0, -1, 0]));
    }

    #[test]
    fn pow_types() {
        let r = run_op(
            "Pow",
            15,
            vec![],
            vec![
                Some(i32s(&[2, 3, -2])),
                Some(TensorValue::from_i64(&[1], vec![3])),
            ],
        )
        .unwrap();
        assert_eq!(r, i32s(&[8, 27, -8]));
        let r = run_op(
            "Pow",
            15,
            vec![],
            vec![
                Some(TensorValue::from_f32(&[2], vec![2.0, 4.0])),
                Some(TensorValue::from_f32(&[2], vec![0.5, 2.0])),
            ],
        )
        .unwrap();
        assert_eq!(r, TensorValue::from_f32(&[2], vec![2f32.sqrt(), 16.0]));
        assert_eq!(ipow(2i8, 8), 0);
        assert_eq!(ipow(-1i64, -3), -1);
    }

    #[test]
    fn variadic_and_legacy_broadcast() {
        let a = TensorValue::from_f32(&[2, 2], vec![1.0, 5.0, f32::NAN, 0.0]);
        let b = TensorValue::from_f32(&[2], vec![3.0, 2.0]);
        let c = TensorValue::from_f32(&[1], vec![4.0]);
        let r = run_op("Max", 13, vec![], vec![Some(a), Some(b), Some(c)]).unwrap();
        let v = r.to_f64_vec().unwrap();
        assert_eq!((v[0], v[1], v[3]), (4.0, 5.0, 4.0));
        assert!(v[2].is_nan());
        // Opset 6: B of shape [2] lines up with axis 0 of A [2, 3].
        let a = TensorValue::from_f32(&[2, 3], vec![0.0; 6]);
        let b = TensorValue::from_f32(&[2], vec![1.0, 2.0]);
        let attrs = vec![
            Attr::new("broadcast", AttrValue::Int(1)),
            Attr::new("axis", AttrValue::Int(0)),
        ];
        let r = run_op(
            "Pow",
            6,
            attrs.clone(),
            vec![Some(a.clone()), Some(b.clone())],
        )
        .unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        let r = run_op("Add", 6, attrs, vec![Some(a), Some(b)]).unwrap();
        assert_eq!(
            r,
            TensorValue::from_f32(&[2, 3], vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
        );
    }

    #[test]
    fn shifts_and_prelu() {
        let a = TensorValue::U8(arr1(&[1u8, 128, 16]).into_dyn());
        let s = TensorValue::U8(arr1(&[1u8, 1, 9]).into_dyn());
        let attrs = vec![Attr::new("direction", AttrValue::String("LEFT".into()))];
        let r = run_op("BitShift", 11, attrs, vec![Some(a), Some(s)]).unwrap();
        assert_eq!(r, TensorValue::U8(arr1(&[2u8, 0, 0]).into_dyn()));
        let x = TensorValue::from_f32(&[1, 2, 2], vec![-1.0, 1.0, -2.0, 2.0]);
        let slope = TensorValue::from_f32(&[2], vec![0.5, 0.25]);
        let r = run_op("PRelu", 6, vec![], vec![Some(x), Some(slope)]).unwrap();
        // numpy broadcasting of [2] against the last axis applies first.
        assert_eq!(
            r,
            TensorValue::from_f32(&[1, 2, 2], vec![-0.5, 1.0, -1.0, 2.0])
        );
    }
}
