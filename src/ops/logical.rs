//! Comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual), boolean
//! logic (And, Or, Xor) and Where, all with numpy broadcasting.
//!
//! Decisions where the spec is loose:
//! - Comparisons accept any pair of tensors of the same element type, strings and
//!   bools included (the spec only lists strings and bools for Equal); floats
//!   compare with IEEE rules, so NaN is unequal to everything.
//! - Before opset 7 these ops broadcast only with `broadcast=1` (and an optional
//!   `axis`); that legacy form is handled by [`super::binary::legacy_broadcast`].

use super::binary::legacy_broadcast;
use super::broadcast::{zip2, zip3};
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use ndarray::ArrayD;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Equal", equal);
    r.add("Less", less);
    r.add("Greater", greater);
    r.add("LessOrEqual", less_or_equal);
    r.add("GreaterOrEqual", greater_or_equal);
    r.add("And", and);
    r.add("Or", or);
    r.add("Xor", xor);
    r.add("Where", where_op);
}

/// A comparison.
#[derive(Clone, Copy)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Gt,
    Le,
    Ge,
}

fn cmp_arrays<T: PartialOrd + Clone>(
    x: &ArrayD<T>,
    y: &ArrayD<T>,
    c: Cmp,
) -> Result<ArrayD<bool>, OpError> {
    // The match is outside the loop so each comparison gets its own tight loop.
    match c {
        Cmp::Eq => zip2(x, y, |p, q| p == q),
        Cmp::Lt => zip2(x, y, |p, q| p < q),
        Cmp::Gt => zip2(x, y, |p, q| p > q),
        Cmp::Le => zip2(x, y, |p, q| p <= q),
        Cmp::Ge => zip2(x, y, |p, q| p >= q),
    }
}

/// Compares two tensors of the same element type elementwise.
pub(crate) fn compare(
    a: &TensorValue,
    b: &TensorValue,
    c: Cmp,
    op: &str,
) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    Ok(T::Bool(match (a, b) {
        (T::F32(x), T::F32(y)) => cmp_arrays(x, y, c)?,
        (T::F64(x), T::F64(y)) => cmp_arrays(x, y, c)?,
        (T::F16(x), T::F16(y)) => cmp_arrays(x, y, c)?,
        (T::BF16(x), T::BF16(y)) => cmp_arrays(x, y, c)?,
        (T::I8(x), T::I8(y)) => cmp_arrays(x, y, c)?,
        (T::I16(x), T::I16(y)) => cmp_arrays(x, y, c)?,
        (T::I32(x), T::I32(y)) => cmp_arrays(x, y, c)?,
        (T::I64(x), T::I64(y)) => cmp_arrays(x, y, c)?,
        (T::U8(x), T::U8(y)) => cmp_arrays(x, y, c)?,
        (T::U16(x), T::U16(y)) => cmp_arrays(x, y, c)?,
        (T::U32(x), T::U32(y)) => cmp_arrays(x, y, c)?,
        (T::U64(x), T::U64(y)) => cmp_arrays(x, y, c)?,
        (T::Bool(x), T::Bool(y)) => cmp_arrays(x, y, c)?,
        (T::Str(x), T::Str(y)) => cmp_arrays(x, y, c)?,
        (x, y) => {
            return Err(OpError::Invalid(format!(
                "{op} of {} and {} is not defined",
                x.dtype(),
                y.dtype()
            )))
        }
    }))
}

fn cmp_kernel(ctx: &OpCtx, inputs: &[Option<RtValue>], c: Cmp, op: &str) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    one(compare(a, &b, c, op)?)
}

fn equal(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    cmp_kernel(ctx, inputs, Cmp::Eq, "Equal")
}
fn less(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    cmp_kernel(ctx, inputs, Cmp::Lt, "Less")
}
fn greater(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    cmp_kernel(ctx, inputs, Cmp::Gt, "Greater")
}
fn less_or_equal(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    cmp_kernel(ctx, inputs, Cmp::Le, "LessOrEqual")
}
fn greater_or_equal(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    cmp_kernel(ctx, inputs, Cmp::Ge, "GreaterOrEqual")
}

fn bool_kernel(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    op: &str,
    f: fn(bool, bool) -> bool,
) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    match (a, &*b) {
        (TensorValue::Bool(x), TensorValue::Bool(y)) => {
            one(TensorValue::Bool(zip2(x, y, |p, q| f(*p, *q))?))
        }
        (x, y) => Err(OpError::Invalid(format!(
            "{op} of {} and {} is not defined (bool only)",
            x.dtype(),
            y.dtype()
        ))),
    }
}

fn and(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    bool_kernel(ctx, inputs, "And", |p, q| p && q)
}
fn or(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    bool_kernel(ctx, inputs, "Or", |p, q| p || q)
}
fn xor(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    bool_kernel(ctx, inputs, "Xor", |p, q| p != q)
}

fn where_op(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let cond = match ctx.input(inputs, 0)? {
        T::Bool(c) => c,
        t => {
            return Err(OpError::Invalid(format!(
                "Where: condition must be bool, not {}",
                t.dtype()
            )))
        }
    };
    let (x, y) = (ctx.input(inputs, 1)?, ctx.input(inputs, 2)?);
    macro_rules! sel {
        ($($v:ident),*) => {
            match (x, y) {
                $((T::$v(p), T::$v(q)) => T::$v(zip3(cond, p, q, |c, p, q| {
                    if *c { p.clone() } else { q.clone() }
                })?),)*
                (p, q) => {
                    return Err(OpError::Invalid(format!(
                        "Where: X and Y must have the same type, not {} and {}",
                        p.dtype(),
                        q.dtype()
                    )))
                }
            }
        };
    }
    one(sel!(
        F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64, Bool, Str
    ))
}

#[cfg(test)]
mod tests {
    use super::super::unary::tests::run_op;
    use super::*;
    use ndarray::arr1;

    #[test]
    fn compare_broadcast() {
        let a = TensorValue::F32(ndarray::arr2(&[[1.0f32, 2.0], [3.0, f32::NAN]]).into_dyn());
        let b = TensorValue::F32(arr1(&[2.0f32, 2.0]).into_dyn());
        let r = run_op("Less", 13, vec![], vec![Some(a.clone()), Some(b.clone())]).unwrap();
        assert_eq!(
            r,
            TensorValue::Bool(ndarray::arr2(&[[true, false], [false, false]]).into_dyn())
        );
        let r = run_op("GreaterOrEqual", 16, vec![], vec![Some(a), Some(b)]).unwrap();
        assert_eq!(
            r,
            TensorValue::Bool(ndarray::arr2(&[[false, true], [true, false]]).into_dyn())
        );
    }

    #[test]
    fn equal_strings_and_where() {
        let a = TensorValue::Str(arr1(&["a".to_string(), "b".into()]).into_dyn());
        let b = TensorValue::Str(arr1(&["a".to_string()]).into_dyn());
        let r = run_op("Equal", 19, vec![], vec![Some(a), Some(b)]).unwrap();
        assert_eq!(r, TensorValue::Bool(arr1(&[true, false]).into_dyn()));
        let c = TensorValue::Bool(arr1(&[true, false]).into_dyn());
        let x = TensorValue::from_i64(&[2], vec![1, 2]);
        let y = TensorValue::from_i64(&[1], vec![9]);
        let r = run_op("Where", 16, vec![], vec![Some(c), Some(x), Some(y)]).unwrap();
        assert_eq!(r, TensorValue::from_i64(&[2], vec![1, 9]));
    }

    #[test]
    fn mismatched_types_are_invalid() {
        let a = TensorValue::from_f32(&[1], vec![1.0]);
        let b = TensorValue::from_i64(&[1], vec![1]);
        assert!(matches!(
            run_op("Equal", 13, vec![], vec![Some(a), Some(b)]),
            Err(OpError::Invalid(_))
        ));
    }
}
