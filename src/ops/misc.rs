//! Miscellaneous operators: Dropout, CumProd, NonMaxSuppression, GridSample,
//! AffineGrid, Det, CenterCropPad, RoiAlign, Col2Im and BitCast.
//!
//! Float computation is in f32 for f32/f16/bf16 and in f64 for f64.
//!
//! Decisions where the spec is loose:
//! - Dropout is the identity (mask all true) unless `training_mode` is true and
//!   the ratio is positive. In training it draws uniform numbers from an
//!   MT19937 generator seeded with the `seed` attribute exactly as numpy's
//!   `RandomState(seed).uniform` does (so it reproduces the ONNX reference
//!   implementation); without a seed the generator is seeded randomly.
//!   Before opset 10 the mask has the input's type (1/0), later it is bool.
//! - CumProd on integers wraps on overflow; f16/bf16 round after each product.
//! - NonMaxSuppression orders equal scores by box index and computes IoU in
//!   the boxes' precision; a box is suppressed when IoU > iou_threshold.
//! - GridSample (any number of spatial dimensions) follows the reference
//!   implementation: `nearest` rounds half to even; `border`/`reflection`
//!   padding first moves out-of-range coordinates inside and then resolves
//!   each tap the same way; opset 16's `bilinear`/`bicubic` names are accepted.
//! - RoiAlign `max` mode takes the maximum of the weighted corner values per
//!   sample (what onnxruntime and the reference implementation do).
//! - BitCast reinterprets the little-endian bytes between types of the same
//!   width (bool is one byte 0/1; reinterpreting bytes as bool maps non-zero
//!   to true).

use super::norm::{by_float, flat, shaped, Real};
use super::{norm_axis, one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn, Slice};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Dropout", dropout);
    r.add("CumProd", cumprod);
    r.add("NonMaxSuppression", non_max_suppression);
    r.add("GridSample", grid_sample);
    r.add("AffineGrid", affine_grid);
    r.add("Det", det);
    r.add("CenterCropPad", center_crop_pad);
    r.add("RoiAlign", roi_align);
    r.add("Col2Im", col2im);
    r.add("BitCast", bitcast);
}

fn invalid<T>(m: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(m.into()))
}

/// A dimension or count from a (checked non-negative) i64.
fn to_usize(v: i64, what: &str) -> Result<usize, OpError> {
    usize::try_from(v)
        .map_err(|_| OpError::Invalid(format!("{what} must be non-negative, got {v}")))
}

// ---------------------------------------------------------------------------
// Dropout
// ---------------------------------------------------------------------------

/// numpy's legacy MT19937 generator (`numpy.random.RandomState`).
struct Mt19937 {
    mt: [u32; 624],
    idx: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            let p = mt[i - 1];
            mt[i] = 1812433253u32
                .wrapping_mul(p ^ (p >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            for i in 0..624 {
                let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
                let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    v ^= 0x9908_b0df;
                }
                self.mt[i] = v;
            }
            self.idx = 0;
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// A double in [0, 1) with 53 random bits (numpy's `random_sample`).
    fn next_f64(&mut self) -> f64 {
        let a = (self.next_u32() >> 5) as f64;
        let b = (self.next_u32() >> 6) as f64;
        (a * 67108864.0 + b) / 9007199254740992.0
    }
}

fn dropout(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (ratio, training) = if ctx.opset >= 12 {
        let ratio = match ctx.opt_input(inputs, 1)? {
            Some(r) => match r.to_f64_vec().as_deref() {
                Some([v]) => *v,
                _ => return invalid("Dropout ratio must be a scalar number"),
            },
            None => 0.5,
        };
        let training = match ctx.opt_input(inputs, 2)? {
            Some(TensorValue::Bool(a)) if a.len() == 1 => a.iter().all(|&b| b),
            Some(_) => return invalid("Dropout training_mode must be a boolean scalar"),
            None => false,
        };
        (ratio, training)
    } else {
        (ctx.float("ratio", 0.5) as f64, false)
    };
    let legacy_mask = ctx.opset < 10;
    if !training || ratio == 0.0 {
        let mask = if legacy_mask {
            crate::map_tensor_same!(x, a => a.map(|_| OneLike::one_like()))
        } else {
            TensorValue::Bool(ArrayD::from_elem(IxDyn(x.shape()), true))
        };
        return Ok(vec![RtValue::Tensor(x.clone()), RtValue::Tensor(mask)]);
    }
    if !(0.0..1.0).contains(&ratio) {
        return invalid(format!("Dropout ratio {ratio} is not in [0, 1)"));
    }
    let seed = match ctx.int_opt("seed") {
        Some(s) => s as u32,
        None => rand::random::<u32>(),
    };
    let mut rng = Mt19937::new(seed);
    let keep: Vec<bool> = (0..x.len()).map(|_| rng.next_f64() >= ratio).collect();
    by_float!(x, dropout_train(x, &keep, ratio))
}

/// `1` of each element type, for the legacy (typed) Dropout mask.
trait OneLike {
    fn one_like() -> Self;
}
macro_rules! one_like {
    ($($t:ty => $v:expr),*) => {$(impl OneLike for $t { fn one_like() -> Self { $v } })*};
}
one_like!(f32 => 1.0, f64 => 1.0, f16 => f16::ONE, bf16 => bf16::ONE, i8 => 1, i16 => 1,
    i32 => 1, i64 => 1, u8 => 1, u16 => 1, u32 => 1, u64 => 1, bool => true,
    String => "1".to_string());

fn dropout_train<T: Real>(x: &TensorValue, keep: &[bool], ratio: f64) -> OpResult {
    let a = T::cast_array(x)?;
    let scale = T::of_f64(1.0 / (1.0 - ratio));
    let v: Vec<T> = flat(&a)
        .iter()
        .zip(keep)
        .map(|(&v, &k)| if k { v * scale } else { T::zero() })
        .collect();
    let y = T::wrap(x.dtype(), shaped(x.shape(), v)?);
    let mask = TensorValue::Bool(shaped(x.shape(), keep.to_vec())?);
    Ok(vec![RtValue::Tensor(y), RtValue::Tensor(mask)])
}

// ---------------------------------------------------------------------------
// CumProd
// ---------------------------------------------------------------------------

trait Prod: Copy {
    const ONE: Self;
    fn times(self, o: Self) -> Self;
}
macro_rules! prod_int {
    ($($t:ty),*) => {$(impl Prod for $t { const ONE: Self = 1; fn times(self, o: Self) -> Self { self.wrapping_mul(o) } })*};
}
prod_int!(i8, i16, i32, i64, u8, u16, u32, u64);
impl Prod for f32 {
    const ONE: Self = 1.0;
    fn times(self, o: Self) -> Self {
        self * o
    }
}
impl Prod for f64 {
    const ONE: Self = 1.0;
    fn times(self, o: Self) -> Self {
        self * o
    }
}
impl Prod for f16 {
    const ONE: Self = f16::ONE;
    fn times(self, o: Self) -> Self {
        f16::from_f32(self.to_f32() * o.to_f32())
    }
}
impl Prod for bf16 {
    const ONE: Self = bf16::ONE;
    fn times(self, o: Self) -> Self {
        bf16::from_f32(self.to_f32() * o.to_f32())
    }
}

fn cumprod_t<T: Prod>(
    a: &ArrayD<T>,
    axis: usize,
    exclusive: bool,
    reverse: bool,
) -> Result<ArrayD<T>, OpError> {
    let sh = a.shape();
    let len = sh[axis];
    let inner: usize = sh[axis + 1..].iter().product();
    let outer: usize = sh[..axis].iter().product();
    let src = flat(a);
    let mut out = vec![T::ONE; src.len()];
    for o in 0..outer {
        for i in 0..inner {
            let mut acc = T::ONE;
            for step in 0..len {
                let k = if reverse { len - 1 - step } else { step };
                let at = (o * len + k) * inner + i;
                if exclusive {
                    out[at] = acc;
                    acc = acc.times(src[at]);
                } else {
                    acc = acc.times(src[at]);
                    out[at] = acc;
                }
            }
        }
    }
    shaped(sh, out)
}

fn cumprod(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let axis = match ctx.i64s(inputs, 1)?.as_slice() {
        [a] => *a,
        _ => return invalid("CumProd axis must be a scalar"),
    };
    if x.shape().is_empty() {
        return invalid("CumProd input must have rank >= 1");
    }
    let axis = norm_axis(axis, x.shape().len())?;
    let ex = ctx.int("exclusive", 0) != 0;
    let rev = ctx.int("reverse", 0) != 0;
    one(match x {
        T::F32(a) => T::F32(cumprod_t(a, axis, ex, rev)?),
        T::F64(a) => T::F64(cumprod_t(a, axis, ex, rev)?),
        T::F16(a) => T::F16(cumprod_t(a, axis, ex, rev)?),
        T::BF16(a) => T::BF16(cumprod_t(a, axis, ex, rev)?),
        T::I8(a) => T::I8(cumprod_t(a, axis, ex, rev)?),
        T::I16(a) => T::I16(cumprod_t(a, axis, ex, rev)?),
        T::I32(a) => T::I32(cumprod_t(a, axis, ex, rev)?),
        T::I64(a) => T::I64(cumprod_t(a, axis, ex, rev)?),
        T::U8(a) => T::U8(cumprod_t(a, axis, ex, rev)?),
        T::U16(a) => T::U16(cumprod_t(a, axis, ex, rev)?),
        T::U32(a) => T::U32(cumprod_t(a, axis, ex, rev)?),
        T::U64(a) => T::U64(cumprod_t(a, axis, ex, rev)?),
        t => return invalid(format!("CumProd of {} is not defined", t.dtype())),
    })
}

// ---------------------------------------------------------------------------
// NonMaxSuppression
// ---------------------------------------------------------------------------

fn non_max_suppression(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let b = ctx.input(inputs, 0)?;
    by_float!(b, nms_t(ctx, inputs))
}

/// A box as (x_min, y_min, x_max, y_max).
fn corners<T: Real>(b: &[T], center: bool) -> [T; 4] {
    let two = T::of_f64(2.0);
    if center {
        let (hw, hh) = (b[2] / two, b[3] / two);
        [b[0] - hw, b[1] - hh, b[0] + hw, b[1] + hh]
    } else {
        [
            b[1].min(b[3]),
            b[0].min(b[2]),
            b[1].max(b[3]),
            b[0].max(b[2]),
        ]
    }
}

fn iou_exceeds<T: Real>(a: &[T; 4], b: &[T; 4], threshold: T) -> bool {
    let ix0 = a[0].max(b[0]);
    let ix1 = a[2].min(b[2]);
    if ix1 <= ix0 {
        return false;
    }
    let iy0 = a[1].max(b[1]);
    let iy1 = a[3].min(b[3]);
    if iy1 <= iy0 {
        return false;
    }
    let inter = (ix1 - ix0) * (iy1 - iy0);
    let area_a = (a[2] - a[0]) * (a[3] - a[1]);
    let area_b = (b[2] - b[0]) * (b[3] - b[1]);
    let union = area_a + area_b - inter;
    if inter <= T::zero() || area_a <= T::zero() || area_b <= T::zero() || union <= T::zero() {
        return false;
    }
    inter / union > threshold
}

fn nms_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let boxes_a = T::cast_array(ctx.input(inputs, 0)?)?;
    let scores_a = T::cast_array(ctx.input(inputs, 1)?)?;
    let (bs, ss) = (boxes_a.shape(), scores_a.shape());
    if bs.len() != 3 || bs[2] != 4 || ss.len() != 3 || ss[0] != bs[0] || ss[2] != bs[1] {
        return invalid(format!(
            "boxes {bs:?} and scores {ss:?} must be [B, N, 4] and [B, C, N]"
        ));
    }
    let (nb, nc, nbox) = (bs[0], ss[1], bs[1]);
    let max_out = match ctx.opt_i64s(inputs, 2)? {
        Some(v) if !v.is_empty() => v[0].max(0) as u64,
        _ => 0,
    };
    let scalar = |i: usize| -> Result<Option<T>, OpError> {
        Ok(match ctx.opt_input(inputs, i)? {
            Some(t) if !t.is_empty() => Some(
                T::cast_array(t)?
                    .iter()
                    .next()
                    .copied()
                    .unwrap_or(T::zero()),
            ),
            _ => None,
        })
    };
    let iou_th = scalar(3)?.unwrap_or(T::zero());
    let score_th = scalar(4)?;
    let center = ctx.int("center_point_box", 0) != 0;
    let boxes = flat(&boxes_a);
    let scores = flat(&scores_a);
    let mut out: Vec<i64> = Vec::new();
    let mut cand: Vec<usize> = Vec::with_capacity(nbox);
    let mut kept: Vec<[T; 4]> = Vec::new();
    for bi in 0..nb {
        let bx: Vec<[T; 4]> = (0..nbox)
            .map(|i| corners(&boxes[(bi * nbox + i) * 4..(bi * nbox + i) * 4 + 4], center))
            .collect();
        for ci in 0..nc {
            let sc = &scores[(bi * nc + ci) * nbox..(bi * nc + ci + 1) * nbox];
            cand.clear();
            cand.extend((0..nbox).filter(|&i| score_th.is_none_or(|t| sc[i] > t)));
            // Highest score first; equal scores by box index (stable sort).
            cand.sort_by(|&i, &j| {
                sc[j]
                    .partial_cmp(&sc[i])
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            kept.clear();
            for &i in &cand {
                if kept.len() as u64 >= max_out {
                    break;
                }
                if kept.iter().any(|k| iou_exceeds(&bx[i], k, iou_th)) {
                    continue;
                }
                kept.push(bx[i]);
                out.extend([bi as i64, ci as i64, i as i64]);
            }
        }
    }
    let n = out.len() / 3;
    one(TensorValue::I64(shaped(&[n, 3], out)?))
}

// ---------------------------------------------------------------------------
// GridSample
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Interp {
    Nearest,
    Linear,
    Cubic,
}

#[derive(Clone, Copy, PartialEq)]
enum Padding {
    Zeros,
    Border,
    Reflection,
}

fn grid_sample(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, grid_sample_t(ctx, inputs))
}

/// Reflects `x` into [lo, hi] by repeated mirroring at the borders.
fn reflect<T: Real>(x: T, lo: T, hi: T) -> T {
    let range = hi - lo;
    if range <= T::zero() {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range).floor();
        let r = dx - n * range;
        if n.to_i64().unwrap_or(0) % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range).floor();
        let r = dx - n * range;
        if n.to_i64().unwrap_or(0) % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// Keys' cubic convolution weights (alpha = -0.75) for taps at -1, 0, 1, 2.
fn cubic_weights<T: Real>(t: T) -> [T; 4] {
    let a = T::of_f64(-0.75);
    let c = |v: f64| T::of_f64(v);
    let x = t.abs();
    let x1 = x + T::one();
    let x2 = T::one() - x;
    let x3 = c(2.0) - x;
    [
        ((a * x1 - c(5.0) * a) * x1 + c(8.0) * a) * x1 - c(4.0) * a,
        ((a + c(2.0)) * x - (a + c(3.0))) * x * x + T::one(),
        ((a + c(2.0)) * x2 - (a + c(3.0))) * x2 * x2 + T::one(),
        ((a * x3 - c(5.0) * a) * x3 + c(8.0) * a) * x3 - c(4.0) * a,
    ]
}

/// Round half to even.
fn round_even<T: Real>(x: T) -> T {
    let r = x.round();
    if (x - x.trunc()).abs() == T::of_f64(0.5) {
        let h = x.trunc();
        if (h / T::of_f64(2.0)).fract() == T::zero() {
            h
        } else {
            r
        }
    } else {
        r
    }
}

fn grid_sample_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let g = T::cast_array(ctx.input(inputs, 1)?)?;
    let xs = x.shape();
    let gs = g.shape();
    let nd = xs.len().saturating_sub(2);
    if xs.len() < 3 || gs.len() != xs.len() || gs[0] != xs[0] || gs[gs.len() - 1] != nd {
        return invalid(format!(
            "GridSample: X {xs:?} and grid {gs:?} must be [N, C, D1..Dk] and [N, d1..dk, k]"
        ));
    }
    let mode = match ctx.string("mode").as_deref().unwrap_or(if ctx.opset >= 20 {
        "linear"
    } else {
        "bilinear"
    }) {
        "nearest" => Interp::Nearest,
        "linear" | "bilinear" => Interp::Linear,
        "cubic" | "bicubic" => Interp::Cubic,
        m => return invalid(format!("GridSample: unknown mode '{m}'")),
    };
    let pad = match ctx.string("padding_mode").as_deref().unwrap_or("zeros") {
        "zeros" => Padding::Zeros,
        "border" => Padding::Border,
        "reflection" => Padding::Reflection,
        m => return invalid(format!("GridSample: unknown padding_mode '{m}'")),
    };
    let align = ctx.int("align_corners", 0) != 0;
    let (n, c) = (xs[0], xs[1]);
    let dims = &xs[2..];
    let out_sp = &gs[1..gs.len() - 1];
    let out_count: usize = out_sp.iter().product();
    let in_count: usize = dims.iter().product();
    let xv = flat(&x);
    let gv = flat(&g);
    let mut y = vec![T::zero(); n * c * out_count];
    let half = T::of_f64(0.5);
    // Per spatial dim: taps (index or None for a zero) and weights.
    let mut taps: Vec<Vec<(Option<usize>, T)>> = vec![Vec::with_capacity(4); nd];
    let mut strides = vec![1usize; nd];
    for d in (0..nd.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * dims[d + 1];
    }
    for ni in 0..n {
        for p in 0..out_count {
            let gp = &gv[(ni * out_count + p) * nd..(ni * out_count + p + 1) * nd];
            for d in 0..nd {
                let len = dims[d];
                let lf = T::of_usize(len);
                // The grid lists coordinates innermost-first (x, y, z).
                let gn = gp[nd - 1 - d];
                let (lo, hi) = if align {
                    (T::zero(), lf - T::one())
                } else {
                    (-half, lf - half)
                };
                let mut v = if align {
                    (gn + T::one()) * half * (lf - T::one())
                } else {
                    ((gn + T::one()) * lf - T::one()) * half
                };
                if mode == Interp::Nearest {
                    v = round_even(v);
                }
                if v < lo || v > hi {
                    match pad {
                        Padding::Border => v = v.max(T::zero()).min(lf - T::one()),
                        Padding::Reflection => v = reflect(v, lo, hi),
                        Padding::Zeros => {}
                    }
                }
                let resolve = |i: i64| -> Option<usize> {
                    let last = len as i64 - 1;
                    match pad {
                        Padding::Zeros => (0..=last).contains(&i).then_some(i as usize),
                        Padding::Border => (last >= 0).then(|| i.clamp(0, last) as usize),
                        Padding::Reflection => {
                            let r = reflect(T::of_f64(i as f64), lo, hi).trunc();
                            let r = r.to_i64().unwrap_or(0);
                            (last >= 0).then(|| r.clamp(0, last) as usize)
                        }
                    }
                };
                let t = &mut taps[d];
                t.clear();
                if !v.is_finite() {
                    t.push((None, T::one()));
                    continue;
                }
                match mode {
                    Interp::Nearest => t.push((resolve(v.trunc().to_i64().unwrap_or(0)), T::one())),
                    Interp::Linear => {
                        let f = v.floor();
                        let i0 = f.to_i64().unwrap_or(0);
                        let w = v - f;
                        t.push((resolve(i0), T::one() - w));
                        t.push((resolve(i0 + 1), w));
                    }
                    Interp::Cubic => {
                        let f = v.floor();
                        let i0 = f.to_i64().unwrap_or(0);
                        let w = cubic_weights(v - f);
                        for (k, wk) in w.into_iter().enumerate() {
                            t.push((resolve(i0 - 1 + k as i64), wk));
                        }
                    }
                }
            }
            // Sum over the tensor product of the taps.
            let total: usize = taps.iter().map(|t| t.len()).product();
            for ci in 0..c {
                let plane = &xv[(ni * c + ci) * in_count..(ni * c + ci + 1) * in_count];
                let mut acc = T::zero();
                for combo in 0..total {
                    let mut rem = combo;
                    let mut w = T::one();
                    let mut off = Some(0usize);
                    for d in (0..nd).rev() {
                        let t = &taps[d];
                        let (idx, wd) = t[rem % t.len()];
                        rem /= t.len();
                        w *= wd;
                        off = match (off, idx) {
                            (Some(o), Some(i)) => Some(o + i * strides[d]),
                            _ => None,
                        };
                    }
                    if let Some(o) = off {
                        acc += w * plane[o];
                    }
                }
                y[(ni * c + ci) * out_count + p] = acc;
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(out_sp);
    one(T::wrap(xt.dtype(), shaped(&shape, y)?))
}

// ---------------------------------------------------------------------------
// AffineGrid
// ---------------------------------------------------------------------------

fn affine_grid(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let t = ctx.input(inputs, 0)?;
    by_float!(t, affine_grid_t(ctx, inputs))
}

fn affine_grid_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let tt = ctx.input(inputs, 0)?;
    let theta = T::cast_array(tt)?;
    let size = ctx.i64s(inputs, 1)?;
    let size: Vec<usize> = size
        .iter()
        .map(|&v| to_usize(v, "size"))
        .collect::<Result<_, _>>()?;
    let nd = size.len().saturating_sub(2);
    let ts = theta.shape();
    if !(nd == 2 || nd == 3) || ts != [size[0], nd, nd + 1] {
        return invalid(format!(
            "AffineGrid: theta {ts:?} and size {size:?} must be [N, 2, 3] with [N, C, H, W] or [N, 3, 4] with [N, C, D, H, W]"
        ));
    }
    let align = ctx.int("align_corners", 0) != 0;
    // Base coordinates per spatial dim (outermost first).
    let base: Vec<Vec<T>> = size[2..]
        .iter()
        .map(|&len| {
            (0..len)
                .map(|i| {
                    let (i, l) = (T::of_usize(i), T::of_usize(len));
                    if align {
                        if len > 1 {
                            -T::one() + i * T::of_f64(2.0) / (l - T::one())
                        } else {
                            -T::one()
                        }
                    } else {
                        -T::one() + (T::of_f64(2.0) * i + T::one()) / l
                    }
                })
                .collect()
        })
        .collect();
    let sp = &size[2..];
    let count: usize = sp.iter().product();
    let th = flat(&theta);
    let mut out = Vec::with_capacity(size[0] * count * nd);
    let mut coord = vec![T::zero(); nd + 1];
    for n in 0..size[0] {
        let m = &th[n * nd * (nd + 1)..(n + 1) * nd * (nd + 1)];
        for p in 0..count {
            // Homogeneous point (x, y[, z], 1): innermost dim first.
            let mut rem = p;
            for d in (0..nd).rev() {
                coord[nd - 1 - d] = base[d][rem % sp[d]];
                rem /= sp[d];
            }
            coord[nd] = T::one();
            for r in 0..nd {
                let row = &m[r * (nd + 1)..(r + 1) * (nd + 1)];
                out.push(
                    row.iter()
                        .zip(&coord)
                        .fold(T::zero(), |a, (&w, &v)| a + w * v),
                );
            }
        }
    }
    let mut shape = vec![size[0]];
    shape.extend_from_slice(sp);
    shape.push(nd);
    one(T::wrap(tt.dtype(), shaped(&shape, out)?))
}

// ---------------------------------------------------------------------------
// Det
// ---------------------------------------------------------------------------

fn det(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, det_t(x))
}

fn det_t<T: Real>(xt: &TensorValue) -> OpResult {
    let x = T::cast_array(xt)?;
    let s = x.shape();
    let r = s.len();
    if r < 2 || s[r - 1] != s[r - 2] {
        return invalid(format!("Det needs [*, M, M], got {s:?}"));
    }
    let m = s[r - 1];
    let v = flat(&x);
    let batch: usize = s[..r - 2].iter().product();
    let mut out = Vec::with_capacity(batch);
    let mut a = vec![T::zero(); m * m];
    for b in 0..batch {
        a.copy_from_slice(&v[b * m * m..(b + 1) * m * m]);
        let mut d = T::one();
        for col in 0..m {
            // Partial pivoting.
            let piv = (col..m)
                .max_by(|&i, &j| {
                    a[i * m + col]
                        .abs()
                        .partial_cmp(&a[j * m + col].abs())
                        .unwrap_or(std::cmp::Ordering::Equal)
                })
                .unwrap_or(col);
            if a[piv * m + col] == T::zero() {
                d = T::zero();
                break;
            }
            if piv != col {
                for k in 0..m {
                    a.swap(piv * m + k, col * m + k);
                }
                d = -d;
            }
            let p = a[col * m + col];
            d *= p;
            for i in col + 1..m {
                let f = a[i * m + col] / p;
                if f != T::zero() {
                    for k in col..m {
                        let sub = f * a[col * m + k];
                        a[i * m + k] = a[i * m + k] - sub;
                    }
                }
            }
        }
        out.push(d);
    }
    one(T::wrap(xt.dtype(), shaped(&s[..r - 2], out)?))
}

// ---------------------------------------------------------------------------
// CenterCropPad
// ---------------------------------------------------------------------------

fn center_crop_pad(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let shape = ctx.i64s(inputs, 1)?;
    let rank = x.shape().len();
    let axes: Vec<usize> = match ctx.ints("axes") {
        Some(a) => a
            .iter()
            .map(|&a| norm_axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if axes.len() != shape.len() {
        return invalid(format!(
            "CenterCropPad: {} target sizes for {} axes",
            shape.len(),
            axes.len()
        ));
    }
    let mut new_shape = x.shape().to_vec();
    // Per axis: (source range start, destination range start, length).
    let mut spans: Vec<(usize, usize, usize)> = x.shape().iter().map(|&d| (0, 0, d)).collect();
    for (&a, &want) in axes.iter().zip(&shape) {
        let want = to_usize(want, "CenterCropPad shape")?;
        let dim = x.shape()[a];
        new_shape[a] = want;
        spans[a] = if want <= dim {
            ((dim - want) / 2, 0, want)
        } else {
            (0, (want - dim) / 2, dim)
        };
    }
    fn crop<T: Clone + Default>(
        a: &ArrayD<T>,
        new_shape: &[usize],
        spans: &[(usize, usize, usize)],
    ) -> ArrayD<T> {
        let mut out = ArrayD::from_elem(IxDyn(new_shape), T::default());
        let src = a.slice_each_axis(|ax| {
            let (s, _, l) = spans[ax.axis.index()];
            Slice::from(s..s + l)
        });
        out.slice_each_axis_mut(|ax| {
            let (_, d, l) = spans[ax.axis.index()];
            Slice::from(d..d + l)
        })
        .assign(&src);
        out
    }
    one(crate::map_tensor_same!(x, a => crop(a, &new_shape, &spans)))
}

// ---------------------------------------------------------------------------
// RoiAlign
// ---------------------------------------------------------------------------

fn roi_align(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, roi_align_t(ctx, inputs))
}

fn roi_align_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let rois_a = T::cast_array(ctx.input(inputs, 1)?)?;
    let bidx = ctx.i64s(inputs, 2)?;
    let xs = x.shape();
    if xs.len() != 4 {
        return invalid(format!("RoiAlign X must be [N, C, H, W], got {xs:?}"));
    }
    let nr = bidx.len();
    if rois_a.shape() != [nr, 4] {
        return invalid(format!(
            "RoiAlign rois {:?} must be [{nr}, 4]",
            rois_a.shape()
        ));
    }
    let (n, c, h, w) = (xs[0], xs[1], xs[2], xs[3]);
    let oh = to_usize(ctx.int("output_height", 1), "output_height")?;
    let ow = to_usize(ctx.int("output_width", 1), "output_width")?;
    let ratio = ctx.int("sampling_ratio", 0);
    let scale = T::of_f32(ctx.float("spatial_scale", 1.0));
    let default_ctm = if ctx.opset >= 16 {
        "half_pixel"
    } else {
        "output_half_pixel"
    };
    let half_pixel = match ctx
        .string("coordinate_transformation_mode")
        .as_deref()
        .unwrap_or(default_ctm)
    {
        "half_pixel" => true,
        "output_half_pixel" => false,
        m => {
            return invalid(format!(
                "RoiAlign: unknown coordinate_transformation_mode '{m}'"
            ))
        }
    };
    let max_mode = match ctx.string("mode").as_deref().unwrap_or("avg") {
        "avg" => false,
        "max" => true,
        m => return invalid(format!("RoiAlign: unknown mode '{m}'")),
    };
    if oh == 0 || ow == 0 {
        return invalid("RoiAlign output size must be positive");
    }
    let xv = flat(&x);
    let rois = flat(&rois_a);
    let mut y = vec![T::zero(); nr * c * oh * ow];
    let offset = if half_pixel {
        T::of_f64(0.5)
    } else {
        T::zero()
    };
    let (hf, wf) = (T::of_usize(h), T::of_usize(w));
    // One sample: four (position, weight) pairs.
    let mut samples: Vec<[(usize, T); 4]> = Vec::new();
    for r in 0..nr {
        let b = bidx[r];
        if b < 0 || b as usize >= n {
            return invalid(format!("RoiAlign batch index {b} is outside [0, {n})"));
        }
        let b = b as usize;
        let roi = &rois[r * 4..r * 4 + 4];
        let sw = roi[0] * scale - offset;
        let sh = roi[1] * scale - offset;
        let mut rw = roi[2] * scale - offset - sw;
        let mut rh = roi[3] * scale - offset - sh;
        if !half_pixel {
            rw = rw.max(T::one());
            rh = rh.max(T::one());
        }
        let bh = rh / T::of_usize(oh);
        let bw = rw / T::of_usize(ow);
        let grid = |extent: T, bins: usize| -> usize {
            if ratio > 0 {
                ratio as usize
            } else {
                (extent / T::of_usize(bins))
                    .ceil()
                    .to_usize()
                    .unwrap_or(0)
                    .min(1 << 16)
            }
        };
        let (gh, gw) = (grid(rh, oh), grid(rw, ow));
        let count = T::of_usize((gh * gw).max(1));
        samples.clear();
        for ph in 0..oh {
            for pw in 0..ow {
                for iy in 0..gh {
                    let yy = sh
                        + T::of_usize(ph) * bh
                        + (T::of_usize(iy) + T::of_f64(0.5)) * bh / T::of_usize(gh);
                    for ix in 0..gw {
                        let xx = sw
                            + T::of_usize(pw) * bw
                            + (T::of_usize(ix) + T::of_f64(0.5)) * bw / T::of_usize(gw);
                        if yy < -T::one()
                            || yy > hf
                            || xx < -T::one()
                            || xx > wf
                            || h == 0
                            || w == 0
                        {
                            samples.push([(0, T::zero()); 4]);
                            continue;
                        }
                        let (mut yv, mut xv_) = (yy.max(T::zero()), xx.max(T::zero()));
                        let mut yl = yv.to_usize().unwrap_or(0);
                        let mut xl = xv_.to_usize().unwrap_or(0);
                        let yh = if yl >= h - 1 {
                            yl = h - 1;
                            yv = T::of_usize(yl);
                            yl
                        } else {
                            yl + 1
                        };
                        let xh = if xl >= w - 1 {
                            xl = w - 1;
                            xv_ = T::of_usize(xl);
                            xl
                        } else {
                            xl + 1
                        };
                        let ly = yv - T::of_usize(yl);
                        let lx = xv_ - T::of_usize(xl);
                        let (hy, hx) = (T::one() - ly, T::one() - lx);
                        samples.push([
                            (yl * w + xl, hy * hx),
                            (yl * w + xh, hy * lx),
                            (yh * w + xl, ly * hx),
                            (yh * w + xh, ly * lx),
                        ]);
                    }
                }
            }
        }
        let per_bin = gh * gw;
        for ci in 0..c {
            let plane = &xv[(b * c + ci) * h * w..(b * c + ci + 1) * h * w];
            for bin in 0..oh * ow {
                let ss = &samples[bin * per_bin..(bin + 1) * per_bin];
                let v = if max_mode {
                    let mut m: Option<T> = None;
                    for s in ss {
                        let val = s
                            .iter()
                            .map(|&(p, wt)| wt * plane[p])
                            .fold(T::neg_infinity(), |a, b| a.max(b));
                        m = Some(m.map_or(val, |o| o.max(val)));
                    }
                    m.unwrap_or(T::zero())
                } else {
                    let sum = ss
                        .iter()
                        .map(|s| s.iter().fold(T::zero(), |a, &(p, wt)| a + wt * plane[p]))
                        .fold(T::zero(), |a, b| a + b);
                    sum / count
                };
                y[(r * c + ci) * oh * ow + bin] = v;
            }
        }
    }
    one(T::wrap(xt.dtype(), shaped(&[nr, c, oh, ow], y)?))
}

// ---------------------------------------------------------------------------
// Col2Im
// ---------------------------------------------------------------------------

fn col2im(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    by_float!(x, col2im_t(ctx, inputs))
}

fn col2im_t<T: Real>(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let xt = ctx.input(inputs, 0)?;
    let x = T::cast_array(xt)?;
    let img: Vec<usize> = ctx
        .i64s(inputs, 1)?
        .iter()
        .map(|&v| to_usize(v, "image_shape"))
        .collect::<Result<_, _>>()?;
    let blk: Vec<usize> = ctx
        .i64s(inputs, 2)?
        .iter()
        .map(|&v| to_usize(v, "block_shape"))
        .collect::<Result<_, _>>()?;
    let nd = img.len();
    if blk.len() != nd || nd == 0 {
        return invalid("Col2Im: image_shape and block_shape must have the same non-zero length");
    }
    let attr = |name: &str, def: i64, len: usize| -> Result<Vec<usize>, OpError> {
        let v = ctx.ints(name).unwrap_or_else(|| vec![def; len]);
        if v.len() != len {
            return invalid(format!("Col2Im: {name} must have {len} values"));
        }
        v.iter().map(|&x| to_usize(x, name)).collect()
    };
    let dil = attr("dilations", 1, nd)?;
    let pads = attr("pads", 0, 2 * nd)?;
    let strides = attr("strides", 1, nd)?;
    if strides.contains(&0) || dil.contains(&0) {
        return invalid("Col2Im: strides and dilations must be positive");
    }
    let xs = x.shape();
    let bl: usize = blk.iter().product();
    if xs.len() != 3 || bl == 0 || xs[1] % bl != 0 {
        return invalid(format!("Col2Im: input {xs:?} must be [N, C * {bl}, L]"));
    }
    let (n, c) = (xs[0], xs[1] / bl);
    // Number of blocks per dim.
    let mut nblk = Vec::with_capacity(nd);
    for d in 0..nd {
        let span = dil[d] * (blk[d].saturating_sub(1)) + 1;
        let padded = img[d] + pads[d] + pads[d + nd];
        if padded < span {
            return invalid("Col2Im: the block does not fit the padded image");
        }
        nblk.push((padded - span) / strides[d] + 1);
    }
    let l: usize = nblk.iter().product();
    if xs[2] != l {
        return invalid(format!("Col2Im: input has {} blocks, expected {l}", xs[2]));
    }
    let img_count: usize = img.iter().product();
    let xv = flat(&x);
    let mut out = vec![T::zero(); n * c * img_count];
    let mut koff = vec![0usize; nd];
    let mut bpos = vec![0usize; nd];
    for ni in 0..n {
        for ci in 0..c {
            let dst = &mut out[(ni * c + ci) * img_count..(ni * c + ci + 1) * img_count];
            for k in 0..bl {
                let mut rem = k;
                for d in (0..nd).rev() {
                    koff[d] = rem % blk[d];
                    rem /= blk[d];
                }
                let src = &xv[((ni * c + ci) * bl + k) * l..((ni * c + ci) * bl + k + 1) * l];
                for (bi, &v) in src.iter().enumerate() {
                    let mut rem = bi;
                    for d in (0..nd).rev() {
                        bpos[d] = rem % nblk[d];
                        rem /= nblk[d];
                    }
                    let mut off = 0usize;
                    let mut inside = true;
                    for d in 0..nd {
                        let p = (bpos[d] * strides[d] + koff[d] * dil[d]) as i64 - pads[d] as i64;
                        if p < 0 || p as usize >= img[d] {
                            inside = false;
                            break;
                        }
                        off = off * img[d] + p as usize;
                    }
                    if inside {
                        dst[off] += v;
                    }
                }
            }
        }
    }
    let mut shape = vec![n, c];
    shape.extend_from_slice(&img);
    one(T::wrap(xt.dtype(), shaped(&shape, out)?))
}

// ---------------------------------------------------------------------------
// BitCast
// ---------------------------------------------------------------------------

fn bitcast(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let code = ctx
        .int_opt("to")
        .ok_or_else(|| OpError::Invalid("BitCast: the 'to' attribute is missing".into()))?;
    let to = DType::from_onnx(
        i32::try_from(code)
            .map_err(|_| OpError::Invalid(format!("BitCast: bad type code {code}")))?,
    );
    if x.dtype() == DType::Str || to == DType::Str {
        return invalid("BitCast from or to string is not defined");
    }
    let (from_bits, to_bits) = (x.dtype().bits(), to.bits());
    if from_bits.is_none() || from_bits != to_bits {
        return invalid(format!(
            "BitCast needs types of the same width: {} and {to}",
            x.dtype()
        ));
    }
    let t = x.to_tensor("x");
    let raw = t.raw_bytes().map_err(|e| OpError::Invalid(e.to_string()))?;
    let dims: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
    let out = crate::ir::tensor::Tensor::from_raw("y", to, &dims, raw);
    let v = TensorValue::from_tensor(&out).map_err(|e| OpError::Unsupported(e.to_string()))?;
    one(v)
}

#[cfg(test)]
pub(crate) fn test_node(
    op: &str,
    attrs: Vec<(&str, crate::ir::attr::AttrValue)>,
    n_out: usize,
) -> crate::ir::graph::Node {
    let mut node = crate::ir::graph::Node::new(
        op,
        "",
        attrs
            .into_iter()
            .map(|(n, v)| crate::ir::attr::Attr::new(n, v))
            .collect(),
    );
    node.outputs = (0..n_out)
        .map(|i| Some(crate::ir::graph::ValueId(i as u32)))
        .collect();
    node
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::attr::AttrValue;

    fn f32s(v: &RtValue) -> Vec<f64> {
        v.as_tensor().unwrap().to_f64_vec().unwrap()
    }

    #[test]
    fn mt19937_matches_numpy() {
        // numpy.random.RandomState(0).uniform(0, 1, 3)
        let mut r = Mt19937::new(0);
        let want = [0.5488135039273248, 0.7151893663724195, 0.6027633760716439];
        for w in want {
            assert!((r.next_f64() - w).abs() < 1e-15);
        }
    }

    #[test]
    fn cumprod_exclusive_reverse() {
        let n = test_node(
            "CumProd",
            vec![
                ("exclusive", AttrValue::Int(1)),
                ("reverse", AttrValue::Int(1)),
            ],
            1,
        );
        let ctx = OpCtx {
            node: &n,
            opset: 26,
        };
        let x = TensorValue::from_f32(&[4], vec![1.0, 2.0, 3.0, 4.0]);
        let axis = TensorValue::from_i64(&[], vec![0]);
        let out = cumprod(&ctx, &[Some(x.into()), Some(axis.into())]).unwrap();
        assert_eq!(f32s(&out[0]), vec![24.0, 12.0, 4.0, 1.0]);
    }

    #[test]
    fn det_of_2x2_and_singular() {
        let n = test_node("Det", vec![], 1);
        let ctx = OpCtx {
            node: &n,
            opset: 22,
        };
        let x = TensorValue::from_f32(&[2, 2, 2], vec![1.0, 2.0, 3.0, 4.0, 1.0, 2.0, 2.0, 4.0]);
        let out = det(&ctx, &[Some(x.into())]).unwrap();
        let v = f32s(&out[0]);
        assert!((v[0] + 2.0).abs() < 1e-6 && v[1] == 0.0, "{v:?}");
    }

    #[test]
    fn col2im_sums_overlaps() {
        // 1 channel, 1-D-like 1x3 image, block 1x2, stride 1: two blocks overlap at x=1.
        let n = test_node("Col2Im", vec![], 1);
        let ctx = OpCtx {
            node: &n,
            opset: 18,
        };
        let x = TensorValue::from_f32(&[1, 2, 2], vec![1.0, 2.0, 10.0, 20.0]);
        let img = TensorValue::from_i64(&[2], vec![1, 3]);
        let blk = TensorValue::from_i64(&[2], vec![1, 2]);
        let out = col2im(&ctx, &[Some(x.into()), Some(img.into()), Some(blk.into())]).unwrap();
        assert_eq!(f32s(&out[0]), vec![1.0, 12.0, 20.0]);
    }
}
