//! Elementwise arithmetic with broadcasting (numpy style; before opset 7 the
//! legacy `broadcast`/`axis` attributes, see [`super::binary::legacy_broadcast`]).

use super::binary::legacy_broadcast;
use super::broadcast::zip2;
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Add", add);
    r.add("Sub", sub);
    r.add("Mul", mul);
    r.add("Div", div);
    r.add("Relu", relu);
}

/// Applies a binary arithmetic function to two tensors of the same numeric type:
/// `$f` for floats (half types compute in f32), `$i` for integers (wrapping, as
/// numpy and onnxruntime do).
macro_rules! arith {
    ($a:expr, $b:expr, |$p:ident, $q:ident| $f:expr, $i:expr, $name:literal) => {{
        use TensorValue as T;
        macro_rules! int {
            ($v:ident, $x:expr, $y:expr) => {
                T::$v(zip2($x, $y, |$p, $q| {
                    let ($p, $q) = (*$p, *$q);
                    $i
                })?)
            };
        }
        Ok(match ($a, $b) {
            (T::F32(x), T::F32(y)) => T::F32(zip2(x, y, |$p, $q| {
                let ($p, $q) = (*$p, *$q);
                $f
            })?),
            (T::F64(x), T::F64(y)) => T::F64(zip2(x, y, |$p, $q| {
                let ($p, $q) = (*$p, *$q);
                $f
            })?),
            (T::F16(x), T::F16(y)) => T::F16(zip2(x, y, |$p, $q| {
                let ($p, $q) = ($p.to_f32(), $q.to_f32());
                f16::from_f32($f)
            })?),
            (T::BF16(x), T::BF16(y)) => T::BF16(zip2(x, y, |$p, $q| {
                let ($p, $q) = ($p.to_f32(), $q.to_f32());
                bf16::from_f32($f)
            })?),
            (T::I8(x), T::I8(y)) => int!(I8, x, y),
            (T::I16(x), T::I16(y)) => int!(I16, x, y),
            (T::I32(x), T::I32(y)) => int!(I32, x, y),
            (T::I64(x), T::I64(y)) => int!(I64, x, y),
            (T::U8(x), T::U8(y)) => int!(U8, x, y),
            (T::U16(x), T::U16(y)) => int!(U16, x, y),
            (T::U32(x), T::U32(y)) => int!(U32, x, y),
            (T::U64(x), T::U64(y)) => int!(U64, x, y),
            (x, y) => return Err(OpError::Invalid(format!("{} of {} and {} is not defined", $name, x.dtype(), y.dtype()))),
        })
    }};
}
pub(crate) use arith;

fn add(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    one(arith!(a, &*b, |p, q| p + q, p.wrapping_add(q), "Add")?)
}

fn sub(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    one(arith!(a, &*b, |p, q| p - q, p.wrapping_sub(q), "Sub")?)
}

fn mul(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    one(arith!(a, &*b, |p, q| p * q, p.wrapping_mul(q), "Mul")?)
}

fn div(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let a = ctx.input(inputs, 0)?;
    let b = &*legacy_broadcast(ctx, a, ctx.input(inputs, 1)?)?;
    if a.dtype().bits().is_some()
        && !matches!(
            a.dtype(),
            crate::DType::F32 | crate::DType::F64 | crate::DType::F16 | crate::DType::BF16
        )
    {
        if let Some(v) = b.to_i64_vec() {
            if v.contains(&0) {
                return Err(OpError::Invalid("integer division by zero".into()));
            }
        }
    }
    one(arith!(a, b, |p, q| p / q, p.wrapping_div(q), "Div")?)
}

fn relu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    one(match x {
        T::F32(a) => T::F32(a.mapv(|v| if v > 0.0 { v } else { 0.0 })),
        T::F64(a) => T::F64(a.mapv(|v| if v > 0.0 { v } else { 0.0 })),
        T::F16(a) => T::F16(a.mapv(|v| if v > f16::ZERO { v } else { f16::ZERO })),
        T::BF16(a) => T::BF16(a.mapv(|v| if v > bf16::ZERO { v } else { bf16::ZERO })),
        T::I8(a) => T::I8(a.mapv(|v| v.max(0))),
        T::I16(a) => T::I16(a.mapv(|v| v.max(0))),
        T::I32(a) => T::I32(a.mapv(|v| v.max(0))),
        T::I64(a) => T::I64(a.mapv(|v| v.max(0))),
        t => {
            return Err(OpError::Invalid(format!(
                "Relu of {} is not defined",
                t.dtype()
            )))
        }
    })
}
