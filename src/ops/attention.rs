//! Attention operators: Attention (opset 23/24, scaled dot-product attention
//! with grouped-query heads, masks, a KV cache and softcap) and
//! RotaryEmbedding (opset 23).
//!
//! Computation is in f32 for f32/f16/bf16 and in f64 for f64 (the
//! `softmax_precision` attribute is accepted; softmax always runs in that
//! working precision, which is at least as precise as any it can ask for
//! apart from f64 on f32 inputs).
//!
//! Decisions where the spec is loose:
//! - Attention scales Q and K each by `sqrt(scale)` before the product, as the
//!   spec's diagram (and the reference implementation) does.
//! - A mask whose last dimension is shorter than the total sequence length is
//!   padded with `-inf` (bool: `false`), as the reference implementation does.
//! - `qk_matmul_output_mode` follows the spec's wording: 0 is the scaled
//!   product, 1 the product after softcap, 2 after softcap and the mask/causal
//!   bias, 3 the softmax.
//! - A query row whose scores are all masked gets NaN, like the reference
//!   (a softmax over nothing is undefined).
//! - With GQA, query head `h` uses KV head `h / (q_heads / kv_heads)`
//!   (each KV head serves a contiguous block of query heads).

use super::norm::{by_float, flat, shaped, Real};
use super::{OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use ndarray::{ArrayD, Axis, IxDyn};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Attention", attention);
    r.add("RotaryEmbedding", rotary_embedding);
}

fn invalid<T>(m: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(m.into()))
}

/// Whether the node uses output `i`.
fn wants(ctx: &OpCtx, i: usize) -> bool {
    matches!(ctx.node.outputs.get(i), Some(Some(_)))
}

// ---------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------

fn attention(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let q = ctx.input(inputs, 0)?;
    by_float!(q, attention_t(ctx, inputs))
}

/// A [batch, heads, seq, head_size] tensor in row-major order.
struct Heads<T> {
    b: usize,
    h: usize,
    s: usize,
    d: usize,
    v: Vec<T>,
}

impl<T: Copy> Heads<T> {
    fn row(&self, b: usize, h: usize, s: usize) -> &[T] {
        let o = ((b * self.h + h) * self.s + s) * self.d;
        &self.v[o..o + self.d]
    }
}

/// Reads Q, K or V as [batch, heads, seq, head_size]: 4-D as is, 3-D
/// [batch, seq, heads * head_size] split into `heads` heads.
fn to_heads<T: Real>(t: &TensorValue, heads: Option<i64>, what: &str) -> Result<Heads<T>, OpError> {
    let a = T::cast_array(t)?;
    let sh = a.shape().to_vec();
    match sh.len() {
        4 => Ok(Heads {
            b: sh[0],
            h: sh[1],
            s: sh[2],
            d: sh[3],
            v: flat(&a).into_owned(),
        }),
        3 => {
            let h = match heads {
                Some(h) if h > 0 => h as usize,
                _ => {
                    return invalid(format!(
                        "3-D {what} needs a positive q_num_heads/kv_num_heads attribute"
                    ))
                }
            };
            if sh[2] % h != 0 {
                return invalid(format!(
                    "{what} hidden size {} is not divisible by {h} heads",
                    sh[2]
                ));
            }
            let (b, s, d) = (sh[0], sh[1], sh[2] / h);
            let src = flat(&a);
            let mut v = Vec::with_capacity(src.len());
            for bi in 0..b {
                for hi in 0..h {
                    for si in 0..s {
                        let o = (bi * s + si) * h * d + hi * d;
                        v.extend_from_slice(&src[o..o + d]);
                    }
                }
            }
            Ok(Heads { b, h, s, d, v })
        }
        r => invalid(format!("{what} must be 3-D or 4-D, got rank {r}")),
    }
}

/// Concatenates a past cache [b, h, p, d] before `cur` along the sequence.
fn concat_past<T: Real>(
    past: Option<&TensorValue>,
    cur: Heads<T>,
    what: &str,
) -> Result<Heads<T>, OpError> {
    let Some(past) = past else { return Ok(cur) };
    let p = to_heads::<T>(past, None, what)?;
    if past.shape().len() != 4 || p.b != cur.b || p.h != cur.h || p.d != cur.d {
        return invalid(format!(
            "{what} shape {:?} does not match [{}, {}, _, {}]",
            past.shape(),
            cur.b,
            cur.h,
            cur.d
        ));
    }
    let s = p.s + cur.s;
    let mut v = Vec::with_capacity(cur.b * cur.h * s * cur.d);
    for bi in 0..cur.b {
        for hi in 0..cur.h {
            let po = (bi * p.h + hi) * p.s * p.d;
            v.extend_from_slice(&p.v[po..po + p.s * p.d]);
            let co = (bi * cur.h + hi) * cur.s * cur.d;
            v.extend_from_slice(&cur.v[co..co + cur.s * cur.d]);
        }
    }
    Ok(Heads {
        b: cur.b,
        h: cur.h,
        s,
        d: cur.d,
        v,
    })
}

/// The additive bias from `attn_mask`, broadcast to [b, hq, sq, total]
/// (bool: true → 0, false → -inf; a short last dimension padded with -inf).
fn mask_bias<T: Real>(mask: &TensorValue, dims: [usize; 4]) -> Result<ArrayD<T>, OpError> {
    let m: ArrayD<T> = match mask {
        TensorValue::Bool(a) => a.mapv(|v| if v { T::zero() } else { T::neg_infinity() }),
        t => T::cast_array(t)?.into_owned(),
    };
    if m.ndim() == 0 || m.ndim() > 4 {
        return invalid(format!(
            "attn_mask must have rank 1 to 4, got {:?}",
            m.shape()
        ));
    }
    let total = dims[3];
    let last = m.shape()[m.ndim() - 1];
    let m = if last < total {
        let mut sh = m.shape().to_vec();
        sh[m.ndim() - 1] = total;
        let mut padded = ArrayD::from_elem(IxDyn(&sh), T::neg_infinity());
        padded
            .slice_axis_mut(Axis(m.ndim() - 1), (0..last).into())
            .assign(&m);
        padded
    } else {
        m
    };
    let v = m.broadcast(IxDyn(&dims)).ok_or_else(|| {
        OpError::Invalid(format!(
            "attn_mask shape {:?} cannot be broadcast to {dims:?}",
            mask.shape()
        ))
    })?;
    Ok(v.to_owned())
}

fn attention_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let qt = ctx.input(inputs, 0)?;
    let kt = ctx.input(inputs, 1)?;
    let vt = ctx.input(inputs, 2)?;
    let rank = qt.shape().len();
    if kt.shape().len() != rank || vt.shape().len() != rank {
        return invalid("Q, K and V must have the same rank");
    }
    let q_heads = ctx.int_opt("q_num_heads");
    let kv_heads = ctx.int_opt("kv_num_heads");
    let mut q = to_heads::<T>(qt, q_heads, "Q")?;
    let k = to_heads::<T>(kt, kv_heads, "K")?;
    let v = to_heads::<T>(vt, kv_heads, "V")?;
    if k.b != q.b || v.b != q.b || k.h != v.h || k.s != v.s {
        return invalid(format!(
            "Q, K, V shapes {:?}, {:?}, {:?} do not agree",
            qt.shape(),
            kt.shape(),
            vt.shape()
        ));
    }
    if k.d != q.d {
        return invalid(format!("Q head size {} != K head size {}", q.d, k.d));
    }
    if k.h == 0 || q.h % k.h != 0 {
        return invalid(format!(
            "{} query heads are not a multiple of {} key/value heads",
            q.h, k.h
        ));
    }
    let past_k = ctx.opt_input(inputs, 4)?;
    let past_v = ctx.opt_input(inputs, 5)?;
    if past_k.is_some() != past_v.is_some() {
        return invalid("past_key and past_value must be given together");
    }
    let past_len = past_k
        .map(|p| p.shape().get(2).copied().unwrap_or(0))
        .unwrap_or(0);
    let k = concat_past(past_k, k, "past_key")?;
    let v = concat_past(past_v, v, "past_value")?;
    if k.s != v.s {
        return invalid("past_key and past_value have different sequence lengths");
    }
    let (b, hq, sq, d) = (q.b, q.h, q.s, q.d);
    let (hkv, total, dv) = (k.h, k.s, v.d);
    let group = hq / hkv;

    // Scale Q and K by sqrt(scale) each.
    let scale = if ctx.has_attr("scale") {
        T::of_f32(ctx.float("scale", 1.0))
    } else {
        T::one() / T::of_usize(d).sqrt()
    };
    let root = scale.sqrt();
    q.v.iter_mut().for_each(|x| *x *= root);
    let ks: Vec<T> = k.v.iter().map(|&x| x * root).collect();
    let ksc = Heads {
        b,
        h: hkv,
        s: total,
        d,
        v: ks,
    };

    let dims = [b, hq, sq, total];
    let bias = match ctx.opt_input(inputs, 3)? {
        Some(m) => Some(mask_bias::<T>(m, dims)?),
        None => None,
    };
    let bias = bias.as_ref().map(|a| flat(a));
    let causal = ctx.int("is_causal", 0) != 0;
    let nonpad = ctx.opt_i64s(inputs, 6)?;
    if let Some(np) = &nonpad {
        if np.len() != b {
            return invalid(format!(
                "nonpad_kv_seqlen has {} entries for batch {b}",
                np.len()
            ));
        }
    }
    let softcap = ctx.float("softcap", 0.0);
    let cap = T::of_f32(softcap);
    let mode = ctx.int("qk_matmul_output_mode", 0);
    if !(0..=3).contains(&mode) {
        return invalid(format!("qk_matmul_output_mode {mode} is not 0..3"));
    }
    let want_qk = wants(ctx, 3);

    let mut y = vec![T::zero(); b * hq * sq * dv];
    let mut qk_out = if want_qk {
        vec![T::zero(); b * hq * sq * total]
    } else {
        Vec::new()
    };
    let mut scores = vec![T::zero(); total];
    for bi in 0..b {
        let limit = match &nonpad {
            Some(np) => (np[bi].max(0) as usize).min(total),
            None => total,
        };
        for hi in 0..hq {
            let kh = hi / group;
            for i in 0..sq {
                let qr = q.row(bi, hi, i);
                let row_off = ((bi * hq + hi) * sq + i) * total;
                for (j, s) in scores.iter_mut().enumerate() {
                    let kr = ksc.row(bi, kh, j);
                    *s = qr
                        .iter()
                        .zip(kr)
                        .fold(T::zero(), |acc, (&x, &y)| acc + x * y);
                }
                if want_qk && mode == 0 {
                    qk_out[row_off..row_off + total].copy_from_slice(&scores);
                }
                if softcap > 0.0 {
                    scores.iter_mut().for_each(|s| *s = cap * (*s / cap).tanh());
                }
                if want_qk && mode == 1 {
                    qk_out[row_off..row_off + total].copy_from_slice(&scores);
                }
                if let Some(bias) = &bias {
                    let br = &bias[row_off..row_off + total];
                    scores.iter_mut().zip(br).for_each(|(s, &m)| *s += m);
                }
                if causal {
                    // Column j is visible to query i when j <= i + past_len.
                    let first_hidden = (i + past_len + 1).min(total);
                    scores[first_hidden..]
                        .iter_mut()
                        .for_each(|s| *s = T::neg_infinity());
                }
                scores[limit..]
                    .iter_mut()
                    .for_each(|s| *s = T::neg_infinity());
                if want_qk && mode == 2 {
                    qk_out[row_off..row_off + total].copy_from_slice(&scores);
                }
                let mx = scores.iter().fold(T::neg_infinity(), |m, &s| m.max(s));
                let mut sum = T::zero();
                for s in scores.iter_mut() {
                    *s = (*s - mx).exp();
                    sum += *s;
                }
                scores.iter_mut().for_each(|s| *s = *s / sum);
                if want_qk && mode == 3 {
                    qk_out[row_off..row_off + total].copy_from_slice(&scores);
                }
                let yo = ((bi * hq + hi) * sq + i) * dv;
                let yr = &mut y[yo..yo + dv];
                for (j, &p) in scores.iter().enumerate() {
                    let vr = v.row(bi, kh, j);
                    yr.iter_mut().zip(vr).for_each(|(o, &x)| *o += p * x);
                }
            }
        }
    }

    let y_arr = if rank == 3 {
        // [b, hq, sq, dv] -> [b, sq, hq * dv]
        let mut t = vec![T::zero(); y.len()];
        for bi in 0..b {
            for hi in 0..hq {
                for i in 0..sq {
                    let src = ((bi * hq + hi) * sq + i) * dv;
                    let dst = (bi * sq + i) * hq * dv + hi * dv;
                    t[dst..dst + dv].copy_from_slice(&y[src..src + dv]);
                }
            }
        }
        shaped(&[b, sq, hq * dv], t)?
    } else {
        shaped(&[b, hq, sq, dv], y)?
    };
    let qd = qt.dtype();
    let mut out = vec![RtValue::Tensor(T::wrap(qd, y_arr))];
    if wants(ctx, 1) || wants(ctx, 2) || want_qk {
        out.push(RtValue::Tensor(T::wrap(
            kt.dtype(),
            shaped(&[b, hkv, total, d], k.v)?,
        )));
        out.push(RtValue::Tensor(T::wrap(
            vt.dtype(),
            shaped(&[b, hkv, total, dv], v.v)?,
        )));
    }
    if want_qk {
        out.push(RtValue::Tensor(T::wrap(
            qd,
            shaped(&[b, hq, sq, total], qk_out)?,
        )));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// RotaryEmbedding
// ---------------------------------------------------------------------------

fn rotary_embedding(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, rotary_t(ctx, inputs))
}

fn rotary_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let cos_a = T::cast_array(ctx.input(inputs, 1)?)?;
    let sin_a = T::cast_array(ctx.input(inputs, 2)?)?;
    let pos = ctx.opt_i64s(inputs, 3)?;
    let sh = x.shape().to_vec();
    // Layout: the offset of row (b, s, h) and the sizes.
    let (b, s, h, d, four_d) = match sh.len() {
        4 => (sh[0], sh[2], sh[1], sh[3], true),
        3 => {
            let nh = ctx.int("num_heads", 0);
            if nh <= 0 || sh[2] % nh as usize != 0 {
                return invalid(format!(
                    "3-D input of hidden size {} needs num_heads dividing it (got {nh})",
                    sh[2]
                ));
            }
            let nh = nh as usize;
            (sh[0], sh[1], nh, sh[2] / nh, false)
        }
        r => {
            return invalid(format!(
                "RotaryEmbedding input must be 3-D or 4-D, got rank {r}"
            ))
        }
    };
    let rd = match ctx.int("rotary_embedding_dim", 0) {
        0 => d,
        r if r > 0 && (r as usize) <= d && r % 2 == 0 => r as usize,
        r => {
            return invalid(format!(
                "rotary_embedding_dim {r} is invalid for head size {d}"
            ))
        }
    };
    let half = rd / 2;
    let interleaved = ctx.int("interleaved", 0) != 0;
    let cos = flat(&cos_a);
    let sin = flat(&sin_a);
    if cos_a.shape() != sin_a.shape() {
        return invalid("cos_cache and sin_cache shapes differ");
    }
    if cos_a.shape().last() != Some(&half) {
        return invalid(format!(
            "cos_cache last dimension {:?} must be rotary_embedding_dim / 2 = {half}",
            cos_a.shape().last()
        ));
    }
    // The cache row (offset) for (b, s).
    let cache_off = |bi: usize, si: usize| -> Result<usize, OpError> {
        match &pos {
            Some(p) => {
                if p.len() != b * s {
                    return invalid(format!("position_ids must have shape [{b}, {s}]"));
                }
                let id = p[bi * s + si];
                let rows = cos_a.shape()[0];
                if id < 0 || id as usize >= rows || cos_a.ndim() != 2 {
                    return invalid(format!(
                        "position id {id} is outside the cache of {rows} rows"
                    ));
                }
                Ok(id as usize * half)
            }
            None => {
                if cos_a.shape() != [b, s, half] {
                    return invalid(format!(
                        "without position_ids the caches must have shape [{b}, {s}, {half}]"
                    ));
                }
                Ok((bi * s + si) * half)
            }
        }
    };
    let src = flat(&x);
    let mut out = src.to_vec();
    for bi in 0..b {
        for si in 0..s {
            let co = cache_off(bi, si)?;
            let (c, sn) = (&cos[co..co + half], &sin[co..co + half]);
            for hi in 0..h {
                let o = if four_d {
                    ((bi * h + hi) * s + si) * d
                } else {
                    ((bi * s + si) * h + hi) * d
                };
                let xr = &src[o..o + d];
                let or = &mut out[o..o + d];
                for i in 0..half {
                    let (i1, i2) = if interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (xr[i1], xr[i2]);
                    or[i1] = c[i] * x1 - sn[i] * x2;
                    or[i2] = sn[i] * x1 + c[i] * x2;
                }
            }
        }
    }
    Ok(vec![RtValue::Tensor(T::wrap(
        xt.dtype(),
        shaped(&sh, out)?,
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::misc::test_node;

    #[test]
    fn attention_causal_first_row_sees_only_first_key() {
        let node = test_node(
            "Attention",
            vec![("is_causal", crate::ir::attr::AttrValue::Int(1))],
            1,
        );
        let ctx = OpCtx {
            node: &node,
            opset: 23,
        };
        // One head, two positions, head size 1; V = [10, 20].
        let q = TensorValue::from_f32(&[1, 1, 2, 1], vec![1.0, 1.0]);
        let k = TensorValue::from_f32(&[1, 1, 2, 1], vec![1.0, 1.0]);
        let v = TensorValue::from_f32(&[1, 1, 2, 1], vec![10.0, 20.0]);
        let out = attention(&ctx, &[Some(q.into()), Some(k.into()), Some(v.into())]).unwrap();
        let y = out[0].as_tensor().unwrap().to_f64_vec().unwrap();
        assert_eq!(y, vec![10.0, 15.0]);
    }

    #[test]
    fn rotary_rotates_half_pairs() {
        let node = test_node("RotaryEmbedding", vec![], 1);
        let ctx = OpCtx {
            node: &node,
            opset: 23,
        };
        // [1, 1, 1, 4], cos = 0, sin = 1: (x1, x2) -> (-x2, x1).
        let x = TensorValue::from_f32(&[1, 1, 1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let c = TensorValue::from_f32(&[1, 1, 2], vec![0.0, 0.0]);
        let s = TensorValue::from_f32(&[1, 1, 2], vec![1.0, 1.0]);
        let out =
            rotary_embedding(&ctx, &[Some(x.into()), Some(c.into()), Some(s.into())]).unwrap();
        let y = out[0].as_tensor().unwrap().to_f64_vec().unwrap();
        assert_eq!(y, vec![-3.0, -4.0, 1.0, 2.0]);
    }
}
