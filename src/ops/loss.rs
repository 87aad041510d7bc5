//! Loss operators: NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
//! (with its optional `log_prob` output).
//!
//! Computation is in f32 for f32/f16/bf16 and in f64 for f64.
//!
//! Decisions where the spec is loose:
//! - `reduction = "mean"` divides the summed loss by the summed weights of the
//!   samples that are not ignored (weight 1 each without a `weight` input),
//!   as PyTorch does; when every sample is ignored that is 0 / 0 = NaN.
//! - A target outside `[0, C)` that is not `ignore_index` is an error.

use super::norm::{by_float, flat, shaped, Real};
use super::{OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("NegativeLogLikelihoodLoss", nll_loss);
    r.add("SoftmaxCrossEntropyLoss", sce_loss);
}

#[derive(Clone, Copy)]
enum Reduction {
    None,
    Sum,
    Mean,
}

fn reduction(ctx: &OpCtx) -> Result<Reduction, OpError> {
    match ctx.string("reduction").as_deref().unwrap_or("mean") {
        "none" => Ok(Reduction::None),
        "sum" => Ok(Reduction::Sum),
        "mean" => Ok(Reduction::Mean),
        r => Err(OpError::Invalid(format!("unknown reduction '{r}'"))),
    }
}

/// (N, C, D): batch, classes and the product of the trailing dimensions of a
/// (N, C, d1, ..., dk) input, checked against the target's shape.
fn dims(x: &[usize], target: &[usize]) -> Result<(usize, usize, usize), OpError> {
    if x.len() < 2 {
        return Err(OpError::Invalid(format!(
            "input must have shape (N, C, ...), got {x:?}"
        )));
    }
    let mut want = vec![x[0]];
    want.extend_from_slice(&x[2..]);
    if target != want.as_slice() {
        return Err(OpError::Invalid(format!(
            "target shape {target:?} does not match input shape {x:?}"
        )));
    }
    Ok((x[0], x[1], x[2..].iter().product()))
}

/// The (weighted) negative log likelihood of log-probabilities `logp`
/// laid out as (N, C, D), reduced as asked; `target_shape` for `none`.
#[allow(clippy::too_many_arguments)]
fn nll<T: Real>(
    logp: &[T],
    (n, c, d): (usize, usize, usize),
    target: &[i64],
    target_shape: &[usize],
    weight: Option<&[T]>,
    ignore: Option<i64>,
    red: Reduction,
) -> Result<ndarray::ArrayD<T>, OpError> {
    if let Some(w) = weight {
        if w.len() != c {
            return Err(OpError::Invalid(format!(
                "weight has {} elements for {c} classes",
                w.len()
            )));
        }
    }
    let mut loss = vec![T::zero(); n * d];
    let mut wsum = T::zero();
    for i in 0..n {
        for k in 0..d {
            let t = target[i * d + k];
            if Some(t) == ignore {
                continue;
            }
            if t < 0 || t as usize >= c {
                return Err(OpError::Invalid(format!("target {t} is outside [0, {c})")));
            }
            let t = t as usize;
            let w = weight.map_or(T::one(), |w| w[t]);
            loss[i * d + k] = -logp[(i * c + t) * d + k] * w;
            wsum += w;
        }
    }
    match red {
        Reduction::None => shaped(target_shape, loss),
        Reduction::Sum => shaped(&[], vec![loss.iter().copied().sum()]),
        Reduction::Mean => shaped(&[], vec![loss.iter().copied().sum::<T>() / wsum]),
    }
}

/// (target, weight, ignore_index).
type Targets<T> = (Vec<i64>, Option<Vec<T>>, Option<i64>);

/// The inputs and attribute common to both losses.
fn targets_weights<T: Real>(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
) -> Result<Targets<T>, OpError> {
    let target = ctx.i64s(inputs, 1)?;
    let weight = match ctx.opt_input(inputs, 2)? {
        Some(w) => Some(T::cast_array(w)?.iter().copied().collect()),
        None => None,
    };
    Ok((target, weight, ctx.int_opt("ignore_index")))
}

fn nll_loss(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, nll_t(ctx, inputs))
}

fn nll_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let tshape = ctx.input(inputs, 1)?.shape().to_vec();
    let dm = dims(x.shape(), &tshape)?;
    let (target, weight, ignore) = targets_weights::<T>(ctx, inputs)?;
    let loss = nll(
        &flat(&x),
        dm,
        &target,
        &tshape,
        weight.as_deref(),
        ignore,
        reduction(ctx)?,
    )?;
    Ok(vec![RtValue::Tensor(T::wrap(xt.dtype(), loss))])
}

fn sce_loss(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, sce_t(ctx, inputs))
}

fn sce_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let tshape = ctx.input(inputs, 1)?.shape().to_vec();
    let (n, c, d) = dims(x.shape(), &tshape)?;
    let (target, weight, ignore) = targets_weights::<T>(ctx, inputs)?;
    // log_softmax over the class axis of (N, C, D).
    let mut logp = flat(&x).into_owned();
    for i in 0..n {
        let base = i * c * d;
        for k in 0..d {
            let idx = |j: usize| base + j * d + k;
            let mx = (0..c).fold(T::neg_infinity(), |m, j| m.max(logp[idx(j)]));
            let sum: T = (0..c).map(|j| (logp[idx(j)] - mx).exp()).sum();
            let lse = mx + sum.ln();
            for j in 0..c {
                logp[idx(j)] = logp[idx(j)] - lse;
            }
        }
    }
    let loss = nll(
        &logp,
        (n, c, d),
        &target,
        &tshape,
        weight.as_deref(),
        ignore,
        reduction(ctx)?,
    )?;
    let dt = xt.dtype();
    Ok(vec![
        RtValue::Tensor(T::wrap(dt, loss)),
        RtValue::Tensor(T::wrap(dt, shaped(x.shape(), logp)?)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::attr::AttrValue;
    use crate::ops::misc::test_node;

    #[test]
    fn nll_weighted_mean_matches_spec_example() {
        let n = test_node(
            "NegativeLogLikelihoodLoss",
            vec![(
                "reduction",
                AttrValue::String(bytes::Bytes::from_static(b"mean")),
            )],
            1,
        );
        let ctx = OpCtx {
            node: &n,
            opset: 22,
        };
        let x = TensorValue::from_f32(
            &[2, 3, 2],
            vec![1.0, 2.0, 2.0, 2.0, 3.0, 2.0, 0.0, 1.0, 2.0, 2.0, 1.0, 2.0],
        );
        let t = TensorValue::from_i64(&[2, 2], vec![2, 1, 0, 2]);
        let w = TensorValue::from_f32(&[3], vec![0.2, 0.3, 0.1]);
        let out = nll_loss(&ctx, &[Some(x.into()), Some(t.into()), Some(w.into())]).unwrap();
        let v = out[0].as_tensor().unwrap().to_f64_vec().unwrap();
        assert!((v[0] + 11.0 / 7.0).abs() < 1e-6, "{v:?}");
    }
}
