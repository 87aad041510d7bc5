//! Softmax, LogSoftmax and Hardmax.
//!
//! Before opset 13 these ops coerce the input to 2-D at `axis` (default 1)
//! and normalise each row of `prod(shape[axis..])` elements; from opset 13
//! they normalise along the single axis `axis` (default -1). Both cases are
//! one computation over an (outer, len, inner) view of the data.
//! Softmax subtracts the maximum first, so large inputs do not overflow;
//! Hardmax marks the first maximum (NaN never wins).

use super::norm::{by_float, flat, shaped, Real};
use super::{norm_axis, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Softmax", softmax);
    r.add("LogSoftmax", log_softmax);
    r.add("Hardmax", hardmax);
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Soft,
    LogSoft,
    Hard,
}

fn softmax(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Mode::Soft))
}

fn log_softmax(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Mode::LogSoft))
}

fn hardmax(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Mode::Hard))
}

/// The (outer, len, inner) split the op's opset and axis define.
fn layout(ctx: &OpCtx, shape: &[usize]) -> Result<(usize, usize, usize), OpError> {
    let rank = shape.len();
    if ctx.opset < 13 {
        let axis = norm_axis(ctx.int("axis", 1), rank)?.min(rank);
        let outer = shape[..axis].iter().product();
        let len = shape[axis..].iter().product();
        Ok((outer, len, 1))
    } else {
        if rank == 0 {
            return Ok((1, 1, 1));
        }
        let axis = norm_axis(ctx.int("axis", -1), rank)?;
        Ok(super::norm::split3(shape, axis))
    }
}

fn run<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>], mode: Mode) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let shape = x.shape().to_vec();
    let (outer, len, inner) = layout(ctx, &shape)?;
    let xs = flat(&x);
    let mut y = vec![T::zero(); xs.len()];
    if len > 0 && inner > 0 {
        if inner == 1 {
            for (src, dst) in xs.chunks_exact(len).zip(y.chunks_exact_mut(len)) {
                row(src, dst, mode);
            }
        } else {
            // Strided rows: gather each into a buffer, normalise, scatter back.
            let mut buf = vec![T::zero(); len];
            let mut out = vec![T::zero(); len];
            for o in 0..outer {
                for i in 0..inner {
                    let base = o * len * inner + i;
                    for (k, b) in buf.iter_mut().enumerate() {
                        *b = xs[base + k * inner];
                    }
                    row(&buf, &mut out, mode);
                    for (k, &v) in out.iter().enumerate() {
                        y[base + k * inner] = v;
                    }
                }
            }
        }
    }
    Ok(vec![RtValue::Tensor(T::wrap(
        xt.dtype(),
        shaped(&shape, y)?,
    ))])
}

/// Normalises one row.
fn row<T: Real>(src: &[T], dst: &mut [T], mode: Mode) {
    let mut max = T::neg_infinity();
    let mut arg = 0;
    for (k, &v) in src.iter().enumerate() {
        if v > max {
            max = v;
            arg = k;
        }
    }
    match mode {
        Mode::Hard => {
            dst.iter_mut().for_each(|d| *d = T::zero());
            dst[arg] = T::one();
        }
        Mode::Soft => {
            if max == T::neg_infinity() {
                // All -inf (or NaN): numpy gives NaN; keep that.
                max = T::zero();
            }
            let mut sum = T::zero();
            for (d, &v) in dst.iter_mut().zip(src) {
                let e = (v - max).exp();
                *d = e;
                sum += e;
            }
            let inv = T::one() / sum;
            dst.iter_mut().for_each(|d| *d *= inv);
        }
        Mode::LogSoft => {
            if max == T::neg_infinity() {
                max = T::zero();
            }
            // (v - max) - ln Σ e^(v - max): exact differences for large inputs.
            let sum: T = src.iter().map(|&v| (v - max).exp()).sum();
            let ln_sum = sum.ln();
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = (v - max) - ln_sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::attr::{Attr, AttrValue};
    use crate::ir::graph::{Node, ValueId};

    fn node(op: &str, axis: Option<i64>) -> Node {
        let attrs = axis
            .map(|a| vec![Attr::new("axis", AttrValue::Int(a))])
            .unwrap_or_default();
        Node {
            outputs: vec![Some(ValueId(0))],
            ..Node::new(op, "", attrs)
        }
    }

    fn vals(r: &OpResult) -> Vec<f32> {
        match &r.as_ref().unwrap()[0] {
            RtValue::Tensor(TensorValue::F32(a)) => a.iter().copied().collect(),
            _ => panic!(),
        }
    }

    #[test]
    fn softmax_axis0_and_coerced() {
        let x = vec![Some(RtValue::Tensor(TensorValue::from_f32(
            &[2, 2],
            vec![0.0, 0.0, 0.0, 2.0f32.ln()],
        )))];
        let n = node("Softmax", Some(0));
        let y = vals(&softmax(
            &OpCtx {
                node: &n,
                opset: 13,
            },
            &x,
        ));
        assert!((y[0] - 0.5).abs() < 1e-6 && (y[1] - 1.0 / 3.0).abs() < 1e-6);
        // Opset 11, axis 0: the whole tensor is one row.
        let y = vals(&softmax(
            &OpCtx {
                node: &n,
                opset: 11,
            },
            &x,
        ));
        assert!((y[3] - 0.4).abs() < 1e-6);
        let n = node("Hardmax", None);
        let y = vals(&hardmax(
            &OpCtx {
                node: &n,
                opset: 13,
            },
            &x,
        ));
        assert_eq!(y, vec![1.0, 0.0, 0.0, 1.0]);
    }
}
