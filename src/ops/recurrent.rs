//! Recurrent layers: RNN, GRU and LSTM (directions forward, reverse and
//! bidirectional; `activations` with `activation_alpha`/`activation_beta`;
//! `clip`; `sequence_lens`; initial states; peepholes; `input_forget`;
//! `layout`; outputs Y, Y_h and Y_c).
//!
//! The input projection `X·Wᵀ + Wb (+ Rb)` of a direction is one matrix
//! product over every time step (`general_mat_mul`); each step then adds
//! `H·Rᵀ` (one product for the whole batch) and applies the gate equations.
//! Decisions where the spec is loose:
//! - A batch entry whose `sequence_lens` is shorter than the sequence keeps
//!   its state past its end and writes zeros to Y there; the reverse
//!   direction starts at its own last step. Y_h/Y_c are the states after the
//!   last step of each entry.
//! - `activation_alpha`/`activation_beta` are consumed in order by the
//!   activations that take them (as onnxruntime does); missing ones take
//!   the defaults of the same-named ONNX operators.
//! - `clip` bounds the gate pre-activations, before the activation function.

use super::norm::{by_float, flat, shaped, Real};
use super::{OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use std::borrow::Cow;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("RNN", rnn);
    r.add("GRU", gru);
    r.add("LSTM", lstm);
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) enum Cell {
    Rnn,
    Gru,
    Lstm,
}

impl Cell {
    pub(crate) fn gates(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Gru => 3,
            Cell::Lstm => 4,
        }
    }
    /// The default activations of one direction.
    pub(crate) fn default_acts(self) -> &'static [&'static str] {
        match self {
            Cell::Rnn => &["Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
        }
    }
}

fn rnn(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Cell::Rnn))
}

fn gru(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Cell::Gru))
}

fn lstm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    by_float!(ctx.input(inputs, 0)?, run(ctx, inputs, Cell::Lstm))
}

/// An activation function with its parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Act {
    Sigmoid,
    Tanh,
    Relu,
    Affine(f32, f32),
    LeakyRelu(f32),
    ThresholdedRelu(f32),
    ScaledTanh(f32, f32),
    HardSigmoid(f32, f32),
    Elu(f32),
    Softsign,
    Softplus,
}

impl Act {
    fn apply<T: Real>(self, v: T) -> T {
        let one = T::one();
        let zero = T::zero();
        match self {
            Act::Sigmoid => {
                // Numerically stable for large |v|.
                if v >= zero {
                    one / (one + (-v).exp())
                } else {
                    let e = v.exp();
                    e / (one + e)
                }
            }
            Act::Tanh => v.tanh(),
            Act::Relu => v.max(zero),
            Act::Affine(a, b) => T::of_f32(a) * v + T::of_f32(b),
            Act::LeakyRelu(a) => {
                if v >= zero {
                    v
                } else {
                    T::of_f32(a) * v
                }
            }
            Act::ThresholdedRelu(a) => {
                if v > T::of_f32(a) {
                    v
                } else {
                    zero
                }
            }
            Act::ScaledTanh(a, b) => T::of_f32(a) * (T::of_f32(b) * v).tanh(),
            Act::HardSigmoid(a, b) => (T::of_f32(a) * v + T::of_f32(b)).max(zero).min(one),
            Act::Elu(a) => {
                if v >= zero {
                    v
                } else {
                    T::of_f32(a) * (v.exp() - one)
                }
            }
            Act::Softsign => v / (one + v.abs()),
            Act::Softplus => {
                // log(1 + e^v) without overflow.
                if v > zero {
                    v + (-v).exp().ln_1p()
                } else {
                    v.exp().ln_1p()
                }
            }
        }
    }
}

/// Parses the activations of every direction.
pub(crate) fn activations(ctx: &OpCtx, cell: Cell, dirs: usize) -> Result<Vec<Act>, OpError> {
    let per = cell.default_acts().len();
    let names: Vec<String> = match ctx.strings("activations") {
        Some(v) if !v.is_empty() => v,
        _ => (0..dirs)
            .flat_map(|_| cell.default_acts().iter().map(|s| s.to_string()))
            .collect(),
    };
    // A single direction's list is reused for both when bidirectional.
    let names: Vec<String> = if names.len() == per && dirs == 2 {
        names.iter().chain(names.iter()).cloned().collect()
    } else {
        names
    };
    if names.len() != per * dirs {
        return Err(OpError::Invalid(format!(
            "{} activations, expected {}",
            names.len(),
            per * dirs
        )));
    }
    let alphas = ctx.floats("activation_alpha").unwrap_or_default();
    let betas = ctx.floats("activation_beta").unwrap_or_default();
    let (mut ai, mut bi) = (alphas.iter(), betas.iter());
    let mut alpha = |d: f32| ai.next().copied().unwrap_or(d);
    names
        .iter()
        .map(|n| {
            Ok(match n.to_ascii_lowercase().as_str() {
                "sigmoid" => Act::Sigmoid,
                "tanh" => Act::Tanh,
                "relu" => Act::Relu,
                "affine" => Act::Affine(alpha(1.0), bi.next().copied().unwrap_or(0.0)),
                "leakyrelu" => Act::LeakyRelu(alpha(0.01)),
                "thresholdedrelu" => Act::ThresholdedRelu(alpha(1.0)),
                "scaledtanh" => Act::ScaledTanh(alpha(1.0), bi.next().copied().unwrap_or(1.0)),
                "hardsigmoid" => Act::HardSigmoid(alpha(0.2), bi.next().copied().unwrap_or(0.5)),
                "elu" => Act::Elu(alpha(1.0)),
                "softsign" => Act::Softsign,
                "softplus" => Act::Softplus,
                other => {
                    return Err(OpError::Invalid(format!(
                        "unknown activation function '{other}'"
                    )))
                }
            })
        })
        .collect()
}

/// A float input as row-major data with its expected shape checked (borrowed
/// when it already is contiguous data of type `T`).
fn param<'a, T: Real>(
    t: &'a TensorValue,
    want: &[usize],
    what: &str,
) -> Result<Cow<'a, [T]>, OpError> {
    let a = T::cast_array(t)?;
    if a.shape() != want {
        return Err(OpError::Invalid(format!(
            "{what} has shape {:?}, expected {want:?}",
            a.shape()
        )));
    }
    Ok(match a {
        Cow::Borrowed(a) => flat(a),
        Cow::Owned(a) => Cow::Owned(flat(&a).into_owned()),
    })
}

/// A sum of products with several accumulators (so it vectorises).
#[inline]
fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += *x * *y;
    }
    s
}

/// `out = x · wᵀ` for row-major `x` [m, k] and `w` [n, k] (`out` [m, n]):
/// dot products for a few rows (no packing of `w`), a GEMM otherwise.
fn mul_bt<T: Real>(
    x: &[T],
    w: &[T],
    m: usize,
    k: usize,
    n: usize,
    out: &mut [T],
) -> Result<(), OpError> {
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        out[..m * n].fill(T::zero());
        return Ok(());
    }
    if m <= 4 {
        for (xr, orow) in x.chunks_exact(k).zip(out.chunks_exact_mut(n)).take(m) {
            for (o, wr) in orow.iter_mut().zip(w.chunks_exact(k)) {
                *o = dot(xr, wr);
            }
        }
        return Ok(());
    }
    let bad = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    let xv = ArrayView2::from_shape((m, k), x).map_err(bad)?;
    let wv = ArrayView2::from_shape((n, k), w).map_err(bad)?;
    let mut ov = ArrayViewMut2::from_shape((m, n), out).map_err(bad)?;
    general_mat_mul(T::one(), &xv, &wv.t(), T::zero(), &mut ov);
    Ok(())
}

fn run<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>], cell: Cell) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let dtype = xt.dtype();
    let x = T::cast_array(xt)?;
    if x.ndim() != 3 {
        return Err(OpError::Invalid(format!(
            "X must have rank 3, got {:?}",
            x.shape()
        )));
    }
    let layout = ctx.int("layout", 0);
    let (seq, batch, input) = if layout == 0 {
        (x.shape()[0], x.shape()[1], x.shape()[2])
    } else {
        (x.shape()[1], x.shape()[0], x.shape()[2])
    };
    let hidden = ctx.int("hidden_size", 0);
    let wt = ctx.input(inputs, 1)?;
    let w_rows = wt.shape().get(1).copied().unwrap_or(0);
    let hidden = if hidden > 0 {
        // W's shape is checked below; this only keeps the products in range.
        if hidden as u64 > w_rows as u64 {
            return Err(OpError::Invalid(format!(
                "hidden_size {hidden} does not match W of shape {:?}",
                wt.shape()
            )));
        }
        hidden as usize
    } else {
        // Infer from W when the attribute is absent.
        w_rows / cell.gates()
    };
    let dirs = match ctx.string("direction").as_deref().unwrap_or("forward") {
        "forward" | "reverse" => 1,
        "bidirectional" => 2,
        d => return Err(OpError::Invalid(format!("unknown direction '{d}'"))),
    };
    let reverse_only = ctx.string("direction").as_deref() == Some("reverse");
    let g = cell.gates();
    let gh = g * hidden;
    let w = param::<T>(wt, &[dirs, gh, input], "W")?;
    let r = param::<T>(ctx.input(inputs, 2)?, &[dirs, gh, hidden], "R")?;
    let b = match ctx.opt_input(inputs, 3)? {
        Some(t) => param::<T>(t, &[dirs, 2 * gh], "B")?,
        None => Cow::Owned(vec![T::zero(); dirs * 2 * gh]),
    };
    let lens: Vec<usize> = match ctx.opt_i64s(inputs, 4)? {
        Some(v) => {
            if v.len() != batch {
                return Err(OpError::Invalid(format!(
                    "sequence_lens has {} entries for batch {batch}",
                    v.len()
                )));
            }
            v.iter()
                .map(|&l| {
                    if l < 0 || l as usize > seq {
                        Err(OpError::Invalid(format!(
                            "sequence length {l} out of range 0..={seq}"
                        )))
                    } else {
                        Ok(l as usize)
                    }
                })
                .collect::<Result<_, _>>()?
        }
        None => vec![seq; batch],
    };
    // States are kept as [dirs, batch, hidden].
    let state_in = |i: usize, what: &str| -> Result<Option<Vec<T>>, OpError> {
        match ctx.opt_input(inputs, i)? {
            None => Ok(None),
            Some(t) => {
                if layout == 0 {
                    Ok(Some(
                        param::<T>(t, &[dirs, batch, hidden], what)?.into_owned(),
                    ))
                } else {
                    let v = param::<T>(t, &[batch, dirs, hidden], what)?;
                    let mut o = vec![T::zero(); v.len()];
                    for bb in 0..batch {
                        for d in 0..dirs {
                            let src = (bb * dirs + d) * hidden;
                            let dst = (d * batch + bb) * hidden;
                            o[dst..dst + hidden].copy_from_slice(&v[src..src + hidden]);
                        }
                    }
                    Ok(Some(o))
                }
            }
        }
    };
    let h0 = state_in(5, "initial_h")?;
    let (c0, peep) = if cell == Cell::Lstm {
        let c0 = state_in(6, "initial_c")?;
        let p = match ctx.opt_input(inputs, 7)? {
            Some(t) => Some(param::<T>(t, &[dirs, 3 * hidden], "P")?),
            None => None,
        };
        (c0, p)
    } else {
        (None, None)
    };
    let acts = activations(ctx, cell, dirs)?;
    let clip = ctx.float("clip", 0.0);
    let clip = if ctx.has_attr("clip") && clip > 0.0 {
        Some(T::of_f32(clip))
    } else {
        None
    };
    let linear_before_reset = ctx.int("linear_before_reset", 0) != 0;
    let input_forget = ctx.int("input_forget", 0) != 0;

    // X as [seq * batch, input] in time-major order.
    let xs: Cow<[T]> = if layout == 0 {
        flat(&x)
    } else {
        let v = flat(&x);
        let mut o = vec![T::zero(); v.len()];
        for bb in 0..batch {
            for t in 0..seq {
                let src = (bb * seq + t) * input;
                let dst = (t * batch + bb) * input;
                o[dst..dst + input].copy_from_slice(&v[src..src + input]);
            }
        }
        Cow::Owned(o)
    };

    let mut y = vec![T::zero(); seq * dirs * batch * hidden];
    let mut yh = vec![T::zero(); dirs * batch * hidden];
    let mut yc = vec![T::zero(); dirs * batch * hidden];
    let cfg = StepCfg {
        cell,
        hidden,
        clip,
        linear_before_reset,
        input_forget,
    };
    for d in 0..dirs {
        let reverse = reverse_only || d == 1;
        let wd = &w[d * gh * input..(d + 1) * gh * input];
        let rd = &r[d * gh * hidden..(d + 1) * gh * hidden];
        let wb = &b[d * 2 * gh..d * 2 * gh + gh];
        let rb = &b[d * 2 * gh + gh..(d + 1) * 2 * gh];
        // Input projection for every step, with the biases folded in (GRU
        // with linear_before_reset keeps Rb of the hidden gate apart).
        let mut xp = vec![T::zero(); seq * batch * gh];
        mul_bt(&xs, wd, seq * batch, input, gh, &mut xp)?;
        let mut fold = vec![T::zero(); gh];
        for k in 0..gh {
            let keep_rb = cell == Cell::Gru && k >= 2 * hidden;
            fold[k] = wb[k] + if keep_rb { T::zero() } else { rb[k] };
        }
        if gh > 0 {
            xp.chunks_exact_mut(gh).for_each(|row| {
                row.iter_mut().zip(&fold).for_each(|(v, &f)| *v += f);
            });
        }
        let acts_d = &acts[d * cell.default_acts().len()..(d + 1) * cell.default_acts().len()];
        let mut h: Vec<T> = match &h0 {
            Some(v) => v[d * batch * hidden..(d + 1) * batch * hidden].to_vec(),
            None => vec![T::zero(); batch * hidden],
        };
        let mut c: Vec<T> = match &c0 {
            Some(v) => v[d * batch * hidden..(d + 1) * batch * hidden].to_vec(),
            None => vec![T::zero(); batch * hidden],
        };
        let pd = peep
            .as_ref()
            .map(|p| &p[d * 3 * hidden..(d + 1) * 3 * hidden]);
        let rbh = if cell == Cell::Gru {
            &rb[2 * hidden..]
        } else {
            &rb[..0]
        };
        let mut hp = vec![T::zero(); batch * gh];
        let mut scratch = vec![T::zero(); 4 * hidden];
        for s in 0..seq {
            mul_bt(&h, rd, batch, hidden, gh, &mut hp)?;
            let hps = &hp[..];
            for bb in 0..batch {
                let len = lens[bb];
                if s >= len {
                    continue;
                }
                let t = if reverse { len - 1 - s } else { s };
                let xg = &xp[(t * batch + bb) * gh..(t * batch + bb + 1) * gh];
                let hg = &hps[bb * gh..(bb + 1) * gh];
                let hs = &mut h[bb * hidden..(bb + 1) * hidden];
                let cs = &mut c[bb * hidden..(bb + 1) * hidden];
                step(&cfg, acts_d, xg, hg, rbh, rd, pd, hs, cs, &mut scratch);
                let yo = ((t * dirs + d) * batch + bb) * hidden;
                y[yo..yo + hidden].copy_from_slice(hs);
            }
        }
        yh[d * batch * hidden..(d + 1) * batch * hidden].copy_from_slice(&h);
        yc[d * batch * hidden..(d + 1) * batch * hidden].copy_from_slice(&c);
    }

    // Outputs in the requested layout.
    let (y_shape, y) = if layout == 0 {
        (vec![seq, dirs, batch, hidden], y)
    } else {
        let mut o = vec![T::zero(); y.len()];
        for t in 0..seq {
            for d in 0..dirs {
                for bb in 0..batch {
                    let src = ((t * dirs + d) * batch + bb) * hidden;
                    let dst = ((bb * seq + t) * dirs + d) * hidden;
                    o[dst..dst + hidden].copy_from_slice(&y[src..src + hidden]);
                }
            }
        }
        (vec![batch, seq, dirs, hidden], o)
    };
    let state_out = |v: Vec<T>| -> (Vec<usize>, Vec<T>) {
        if layout == 0 {
            (vec![dirs, batch, hidden], v)
        } else {
            let mut o = vec![T::zero(); v.len()];
            for d in 0..dirs {
                for bb in 0..batch {
                    let src = (d * batch + bb) * hidden;
                    let dst = (bb * dirs + d) * hidden;
                    o[dst..dst + hidden].copy_from_slice(&v[src..src + hidden]);
                }
            }
            (vec![batch, dirs, hidden], o)
        }
    };
    let (hs, yh) = state_out(yh);
    let mut out = vec![
        RtValue::Tensor(T::wrap(dtype, shaped(&y_shape, y)?)),
        RtValue::Tensor(T::wrap(dtype, shaped(&hs, yh)?)),
    ];
    if cell == Cell::Lstm {
        let (cs, yc) = state_out(yc);
        out.push(RtValue::Tensor(T::wrap(dtype, shaped(&cs, yc)?)));
    }
    Ok(out)
}

struct StepCfg<T> {
    cell: Cell,
    hidden: usize,
    clip: Option<T>,
    linear_before_reset: bool,
    input_forget: bool,
}

/// One time step of one batch entry: updates `h` (and `c` for LSTM).
/// `xg` holds the input projection with biases, `hg` the H·Rᵀ product.
#[allow(clippy::too_many_arguments)]
fn step<T: Real>(
    cfg: &StepCfg<T>,
    acts: &[Act],
    xg: &[T],
    hg: &[T],
    rbh: &[T],
    rd: &[T],
    peep: Option<&[T]>,
    h: &mut [T],
    c: &mut [T],
    scratch: &mut [T],
) {
    let n = cfg.hidden;
    let clip = |v: T| match cfg.clip {
        Some(c) => v.max(-c).min(c),
        None => v,
    };
    match cfg.cell {
        Cell::Rnn => {
            for j in 0..n {
                h[j] = acts[0].apply(clip(xg[j] + hg[j]));
            }
        }
        Cell::Gru => {
            // Gate order z, r, h.
            let (f, gact) = (acts[0], acts[1]);
            let (z, rest) = scratch.split_at_mut(n);
            let (rg, rest) = rest.split_at_mut(n);
            let (cand, rest) = rest.split_at_mut(n);
            let rh = &mut rest[..n];
            for j in 0..n {
                z[j] = f.apply(clip(xg[j] + hg[j]));
                rg[j] = f.apply(clip(xg[n + j] + hg[n + j]));
            }
            if cfg.linear_before_reset {
                for j in 0..n {
                    cand[j] = xg[2 * n + j] + rg[j] * (hg[2 * n + j] + rbh[j]);
                }
            } else {
                // (r ⊙ H)·Rhᵀ + Rbh: needs its own product.
                for j in 0..n {
                    rh[j] = rg[j] * h[j];
                }
                for j in 0..n {
                    let row = &rd[(2 * n + j) * n..(2 * n + j + 1) * n];
                    cand[j] = xg[2 * n + j] + (rbh[j] + dot(rh, row));
                }
            }
            for j in 0..n {
                let ht = gact.apply(clip(cand[j]));
                h[j] = (T::one() - z[j]) * ht + z[j] * h[j];
            }
        }
        Cell::Lstm => {
            // Gate order i, o, f, c; peepholes i, o, f.
            let (f, gact, hact) = (acts[0], acts[1], acts[2]);
            for j in 0..n {
                let cp = c[j];
                let (pi, po, pf) = match peep {
                    Some(p) => (p[j], p[n + j], p[2 * n + j]),
                    None => (T::zero(), T::zero(), T::zero()),
                };
                let i = f.apply(clip(xg[j] + hg[j] + pi * cp));
                let fg = if cfg.input_forget {
                    T::one() - i
                } else {
                    f.apply(clip(xg[2 * n + j] + hg[2 * n + j] + pf * cp))
                };
                let cand = gact.apply(clip(xg[3 * n + j] + hg[3 * n + j]));
                let ct = fg * cp + i * cand;
                let o = f.apply(clip(xg[n + j] + hg[n + j] + po * ct));
                c[j] = ct;
                h[j] = o * hact.apply(ct);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rnn_step_identity_weights() {
        let cfg = StepCfg::<f32> {
            cell: Cell::Rnn,
            hidden: 2,
            clip: None,
            linear_before_reset: false,
            input_forget: false,
        };
        let rd = vec![0.0f32; 4];
        let mut h = vec![0.0f32; 2];
        let mut c = vec![0.0f32; 2];
        step(
            &cfg,
            &[Act::Relu],
            &[1.0, -1.0],
            &[0.5, 0.0],
            &[],
            &rd,
            None,
            &mut h,
            &mut c,
            &mut [0.0; 8],
        );
        assert_eq!(h, vec![1.5, 0.0]);
    }

    #[test]
    fn activation_values() {
        assert!((Act::Sigmoid.apply(0.0f32) - 0.5).abs() < 1e-7);
        assert!((Act::Softplus.apply(0.0f64) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(Act::HardSigmoid(0.2, 0.5).apply(10.0f32), 1.0);
    }
}
