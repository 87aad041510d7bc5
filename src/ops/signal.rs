//! Signal processing: DFT, STFT, the Hann/Hamming/Blackman windows and
//! MelWeightMatrix.
//!
//! Decisions where the spec is loose:
//! - Transforms compute in f64 whatever the input float type (f32/f64/f16/bf16)
//!   and round once at the end: the backend data comes from numpy's f64 FFT, and
//!   exact zeros (imaginary parts of real signals) only survive the tight
//!   absolute tolerance when the twiddle error stays far below f32 precision.
//! - FFT: iterative radix-2 for power-of-two lengths, a direct O(n²) sum for
//!   short other lengths, Bluestein (chirp-z via a power-of-two FFT) for long ones.
//! - DFT `axis`: an attribute (default 1) before opset 20, an optional scalar
//!   input (default -2) from opset 20. `onesided` on complex input keeps the
//!   first `n/2+1` bins (as the ONNX reference does). IRFFT (`inverse` and
//!   `onesided`) reads the first `n/2+1` bins, ignores the imaginary parts of the
//!   DC and Nyquist bins (as numpy's `irfft`) and returns `[..., n, 1]`.
//! - STFT: a frame has the window's length (the frame length when there is no
//!   window); it is zero-padded or cut to `frame_length` for the DFT.
//!   `onesided` defaults to 1.
//! - Windows of length 1 whose denominator would be 0 (symmetric) are `[1]`.
//! - MelWeightMatrix follows the ONNX reference / onnxruntime: the mel range is
//!   split into `num_mel_bins + 2` steps and bin edges are
//!   `floor((dft_length + 1) * hz / sample_rate)`; edges outside the output are
//!   dropped rather than written.

use super::cast::cast_tensor;
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::ir::dtype::DType;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};
use std::f64::consts::PI;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("DFT", dft);
    r.add("STFT", stft);
    r.add("HannWindow", hann_window);
    r.add("HammingWindow", hamming_window);
    r.add("BlackmanWindow", blackman_window);
    r.add("MelWeightMatrix", mel_weight_matrix);
}

// ---------------------------------------------------------------------------
// Complex numbers and FFT plans
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn new(re: f64, im: f64) -> C {
        C { re, im }
    }
    /// `e^{i·angle}`.
    fn cis(angle: f64) -> C {
        C::new(angle.cos(), angle.sin())
    }
    fn conj(self) -> C {
        C::new(self.re, -self.im)
    }
    fn scale(self, s: f64) -> C {
        C::new(self.re * s, self.im * s)
    }
}

impl std::ops::Add for C {
    type Output = C;
    fn add(self, o: C) -> C {
        C::new(self.re + o.re, self.im + o.im)
    }
}
impl std::ops::Sub for C {
    type Output = C;
    fn sub(self, o: C) -> C {
        C::new(self.re - o.re, self.im - o.im)
    }
}
impl std::ops::Mul for C {
    type Output = C;
    fn mul(self, o: C) -> C {
        C::new(
            self.re * o.re - self.im * o.im,
            self.re * o.im + self.im * o.re,
        )
    }
}

/// Lengths up to this use the direct sum when not a power of two.
const NAIVE_MAX: usize = 64;

/// A forward transform of one length, `X[k] = Σ x[j]·e^{-2πi·jk/n}`.
enum Plan {
    /// Power-of-two length: `tw[k] = e^{-2πik/n}` for `k < n/2`.
    Radix2 { n: usize, tw: Vec<C> },
    /// Direct sum: `tw[k] = e^{-2πik/n}` for `k < n`.
    Naive { tw: Vec<C> },
    /// Bluestein: `chirp[k] = e^{-πi·k²/n}`, `filt` the length-`m` FFT of the
    /// conjugate chirp laid out circularly, `inner` the length-`m` plan.
    Bluestein {
        n: usize,
        chirp: Vec<C>,
        filt: Vec<C>,
        inner: Box<Plan>,
    },
}

/// Twiddles `e^{-2πik/n}` for `k < count`.
fn twiddles(n: usize, count: usize) -> Vec<C> {
    (0..count)
        .map(|k| C::cis(-2.0 * PI * k as f64 / n as f64))
        .collect()
}

impl Plan {
    fn new(n: usize) -> Plan {
        if n.is_power_of_two() {
            Plan::Radix2 {
                n,
                tw: twiddles(n, n / 2),
            }
        } else if n <= NAIVE_MAX {
            Plan::Naive { tw: twiddles(n, n) }
        } else {
            // k² mod 2n keeps the chirp angle small (exact for the integer part).
            let two_n = 2 * n as u128;
            let chirp: Vec<C> = (0..n)
                .map(|k| {
                    let q = (k as u128 * k as u128) % two_n;
                    C::cis(-PI * q as f64 / n as f64)
                })
                .collect();
            let m = (2 * n - 1).next_power_of_two();
            let inner = Box::new(Plan::new(m));
            let mut filt = vec![C::default(); m];
            filt[0] = chirp[0].conj();
            for k in 1..n {
                filt[k] = chirp[k].conj();
                filt[m - k] = chirp[k].conj();
            }
            let mut scratch = Vec::new();
            inner.forward(&mut filt, &mut scratch);
            Plan::Bluestein {
                n,
                chirp,
                filt,
                inner,
            }
        }
    }

    /// Transforms `buf` (of the plan's length) in place.
    fn forward(&self, buf: &mut [C], scratch: &mut Vec<C>) {
        match self {
            Plan::Radix2 { n, tw } => radix2(buf, *n, tw),
            Plan::Naive { tw } => {
                let n = tw.len();
                scratch.clear();
                scratch.extend_from_slice(buf);
                for (k, out) in buf.iter_mut().enumerate() {
                    let mut acc = C::default();
                    let mut idx = 0usize;
                    for &x in scratch.iter() {
                        acc = acc + x * tw[idx];
                        idx += k;
                        if idx >= n {
                            idx -= n;
                        }
                    }
                    *out = acc;
                }
            }
            Plan::Bluestein {
                n,
                chirp,
                filt,
                inner,
            } => {
                let m = filt.len();
                let mut a = vec![C::default(); m];
                for k in 0..*n {
                    a[k] = buf[k] * chirp[k];
                }
                inner.forward(&mut a, scratch);
                // Inverse of the product through conjugation: ifft(z) = conj(fft(conj z))/m.
                for (v, &f) in a.iter_mut().zip(filt.iter()) {
                    *v = (*v * f).conj();
                }
                inner.forward(&mut a, scratch);
                let s = 1.0 / m as f64;
                for k in 0..*n {
                    buf[k] = a[k].conj().scale(s) * chirp[k];
                }
            }
        }
    }

    /// The inverse transform, normalised by `1/n`.
    fn inverse(&self, buf: &mut [C], scratch: &mut Vec<C>) {
        buf.iter_mut().for_each(|v| *v = v.conj());
        self.forward(buf, scratch);
        let s = 1.0 / buf.len().max(1) as f64;
        buf.iter_mut().for_each(|v| *v = v.conj().scale(s));
    }
}

/// In-place iterative radix-2 FFT; `tw` holds `e^{-2πik/n}` for `k < n/2`.
fn radix2(buf: &mut [C], n: usize, tw: &[C]) {
    if n <= 1 {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            buf.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let half = len / 2;
        let step = n / len;
        for start in (0..n).step_by(len) {
            for k in 0..half {
                let w = tw[k * step];
                let a = buf[start + k];
                let b = buf[start + k + half] * w;
                buf[start + k] = a + b;
                buf[start + k + half] = a - b;
            }
        }
        len *= 2;
    }
}

// ---------------------------------------------------------------------------
// Float tensor helpers
// ---------------------------------------------------------------------------

/// The elements of a float tensor as f64 (in logical order).
fn float_data(t: &TensorValue, what: &str) -> Result<Vec<f64>, OpError> {
    Ok(match t {
        TensorValue::F32(a) => a.iter().map(|&v| v as f64).collect(),
        TensorValue::F64(a) => a.iter().copied().collect(),
        TensorValue::F16(a) => a.iter().map(|v| v.to_f64()).collect(),
        TensorValue::BF16(a) => a.iter().map(|v| v.to_f64()).collect(),
        t => {
            return Err(OpError::Invalid(format!(
                "{what} must be a float tensor, not {}",
                t.dtype()
            )))
        }
    })
}

/// A float tensor of type `dtype` from f64 values.
fn float_tensor(dtype: DType, shape: &[usize], v: Vec<f64>) -> Result<TensorValue, OpError> {
    let bad = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    let s = IxDyn(shape);
    Ok(match dtype {
        DType::F32 => TensorValue::F32(
            ArrayD::from_shape_vec(s, v.into_iter().map(|x| x as f32).collect()).map_err(bad)?,
        ),
        DType::F64 => TensorValue::F64(ArrayD::from_shape_vec(s, v).map_err(bad)?),
        DType::F16 => TensorValue::F16(
            ArrayD::from_shape_vec(s, v.into_iter().map(f16::from_f64).collect()).map_err(bad)?,
        ),
        DType::BF16 => TensorValue::BF16(
            ArrayD::from_shape_vec(s, v.into_iter().map(bf16::from_f64).collect()).map_err(bad)?,
        ),
        d => return Err(OpError::Invalid(format!("{d} is not a float type"))),
    })
}

/// A scalar (or one-element) integer input.
fn int_scalar(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
    what: &str,
) -> Result<i64, OpError> {
    match ctx.i64s(inputs, i)?.as_slice() {
        [v] => Ok(*v),
        v => Err(OpError::Invalid(format!(
            "{what} must be a scalar, got {} values",
            v.len()
        ))),
    }
}

fn opt_int_scalar(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
    what: &str,
) -> Result<Option<i64>, OpError> {
    match ctx.opt_input(inputs, i)? {
        Some(_) => int_scalar(ctx, inputs, i, what).map(Some),
        None => Ok(None),
    }
}

/// A scalar (or one-element) numeric input as f64.
fn num_scalar(
    ctx: &OpCtx,
    inputs: &[Option<RtValue>],
    i: usize,
    what: &str,
) -> Result<f64, OpError> {
    let t = ctx.input(inputs, i)?;
    match t.to_f64_vec().as_deref() {
        Some([v]) => Ok(*v),
        _ => Err(OpError::Invalid(format!("{what} must be a numeric scalar"))),
    }
}

/// The longest transform or window accepted: a bound on what one bad attribute
/// or input can make the kernel allocate.
const MAX_LEN: usize = 1 << 28;

/// A positive length, at most [`MAX_LEN`].
fn length(v: i64, what: &str) -> Result<usize, OpError> {
    usize::try_from(v)
        .ok()
        .filter(|n| (1..=MAX_LEN).contains(n))
        .ok_or_else(|| OpError::Invalid(format!("{what} must be in 1..={MAX_LEN}, got {v}")))
}

fn product(dims: &[usize]) -> Result<usize, OpError> {
    dims.iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| OpError::Invalid("output is too large".into()))
}

// ---------------------------------------------------------------------------
// DFT
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Forward {
        onesided: bool,
    },
    Inverse,
    /// IRFFT: one-sided complex spectrum → real signal.
    InverseReal,
}

/// Transforms every line along `axis` of `data` (shape `shape`, last dim the
/// complex part, 1 or 2) with DFT length `n`. Returns the data and shape of the
/// result.
fn dft_lines(
    data: &[f64],
    shape: &[usize],
    axis: usize,
    n: usize,
    mode: Mode,
) -> Result<(Vec<f64>, Vec<usize>), OpError> {
    let r = shape.len();
    let c = shape[r - 1];
    let n_in = shape[axis];
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..r - 1].iter().product();
    let (out_len, oc) = match mode {
        Mode::Forward { onesided: true } => (n / 2 + 1, 2),
        Mode::Forward { onesided: false } | Mode::Inverse => (n, 2),
        Mode::InverseReal => (n, 1),
    };
    let mut out_shape = shape.to_vec();
    out_shape[axis] = out_len;
    out_shape[r - 1] = oc;
    let mut out = vec![0.0; product(&out_shape)?];
    let take = match mode {
        Mode::InverseReal => n_in.min(n / 2 + 1),
        _ => n_in.min(n),
    };
    let plan = Plan::new(n);
    let mut buf = vec![C::default(); n];
    let mut scratch = Vec::new();
    for o in 0..outer {
        for i in 0..inner {
            buf.iter_mut().for_each(|v| *v = C::default());
            for (k, b) in buf.iter_mut().enumerate().take(take) {
                let at = ((o * n_in + k) * inner + i) * c;
                *b = C::new(data[at], if c == 2 { data[at + 1] } else { 0.0 });
            }
            match mode {
                Mode::Forward { .. } => plan.forward(&mut buf, &mut scratch),
                Mode::Inverse => plan.inverse(&mut buf, &mut scratch),
                Mode::InverseReal => {
                    // Rebuild the Hermitian spectrum from its first half.
                    buf[0].im = 0.0;
                    if n.is_multiple_of(2) && take > n / 2 {
                        buf[n / 2].im = 0.0;
                    }
                    for k in 1..take {
                        if n - k > k {
                            buf[n - k] = buf[k].conj();
                        }
                    }
                    plan.inverse(&mut buf, &mut scratch);
                }
            }
            for (k, v) in buf.iter().enumerate().take(out_len) {
                let at = ((o * out_len + k) * inner + i) * oc;
                out[at] = v.re;
                if oc == 2 {
                    out[at + 1] = v.im;
                }
            }
        }
    }
    Ok((out, out_shape))
}

fn dft(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let r = shape.len();
    if r < 2 || !(1..=2).contains(&shape[r - 1]) {
        return Err(OpError::Invalid(format!(
            "DFT input must be [..., 1] (real) or [..., 2] (complex), got {shape:?}"
        )));
    }
    let inverse = ctx.int("inverse", 0) != 0;
    let onesided = ctx.int("onesided", 0) != 0;
    let axis = if ctx.opset >= 20 {
        opt_int_scalar(ctx, inputs, 2, "DFT axis")?.unwrap_or(-2)
    } else {
        ctx.int("axis", 1)
    };
    let ri = r as i64;
    let a = if axis < 0 { axis + ri } else { axis };
    if a < 0 || a > ri - 2 {
        return Err(OpError::Invalid(format!(
            "DFT axis {axis} is out of range for rank {r} (the last dimension holds the complex parts)"
        )));
    }
    let axis = a as usize;
    let n_in = shape[axis];
    let n = match opt_int_scalar(ctx, inputs, 1, "DFT dft_length")? {
        Some(v) => length(v, "DFT dft_length")?,
        None if inverse && onesided => {
            length(2 * (n_in as i64 - 1), "DFT default IRFFT length 2*(n-1)")?
        }
        None => length(n_in as i64, "DFT signal length")?,
    };
    let mode = match (inverse, onesided) {
        (false, o) => Mode::Forward { onesided: o },
        (true, false) => Mode::Inverse,
        (true, true) => Mode::InverseReal,
    };
    let data = float_data(x, "DFT input")?;
    let (out, out_shape) = dft_lines(&data, &shape, axis, n, mode)?;
    one(float_tensor(x.dtype(), &out_shape, out)?)
}

// ---------------------------------------------------------------------------
// STFT
// ---------------------------------------------------------------------------

fn stft(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let shape = x.shape().to_vec();
    let [batch, len, c] = shape[..] else {
        return Err(OpError::Invalid(format!(
            "STFT signal must be [batch, length, 1 or 2], got {shape:?}"
        )));
    };
    if !(1..=2).contains(&c) {
        return Err(OpError::Invalid(format!(
            "STFT signal must be [batch, length, 1 or 2], got {shape:?}"
        )));
    }
    let step = length(
        int_scalar(ctx, inputs, 1, "STFT frame_step")?,
        "STFT frame_step",
    )?;
    let window = match ctx.opt_input(inputs, 2)? {
        Some(w) => {
            if w.shape().len() != 1 {
                return Err(OpError::Invalid(format!(
                    "STFT window must be 1-D, got {:?}",
                    w.shape()
                )));
            }
            Some(float_data(w, "STFT window")?)
        }
        None => None,
    };
    let frame_len = match opt_int_scalar(ctx, inputs, 3, "STFT frame_length")? {
        Some(v) => length(v, "STFT frame_length")?,
        None => match &window {
            Some(w) => length(w.len() as i64, "STFT window length")?,
            None => length(len as i64, "STFT signal length")?,
        },
    };
    let win_len = window.as_ref().map_or(frame_len, |w| w.len());
    if len < frame_len {
        return Err(OpError::Invalid(format!(
            "STFT frame_length {frame_len} exceeds the signal length {len}"
        )));
    }
    let frames = 1 + (len - frame_len) / step;
    let onesided = ctx.int("onesided", 1) != 0;
    let bins = if onesided {
        frame_len / 2 + 1
    } else {
        frame_len
    };
    let data = float_data(x, "STFT signal")?;
    let out_shape = [batch, frames, bins, 2];
    let mut out = vec![0.0; product(&out_shape)?];
    let plan = Plan::new(frame_len);
    let mut buf = vec![C::default(); frame_len];
    let mut scratch = Vec::new();
    for b in 0..batch {
        for f in 0..frames {
            buf.iter_mut().for_each(|v| *v = C::default());
            let start = f * step;
            let avail = win_len.min(frame_len).min(len - start);
            for (k, v) in buf.iter_mut().enumerate().take(avail) {
                let at = (b * len + start + k) * c;
                let w = window.as_ref().map_or(1.0, |w| w[k]);
                *v = C::new(data[at] * w, if c == 2 { data[at + 1] * w } else { 0.0 });
            }
            plan.forward(&mut buf, &mut scratch);
            let base = (b * frames + f) * bins * 2;
            for (k, v) in buf.iter().enumerate().take(bins) {
                out[base + 2 * k] = v.re;
                out[base + 2 * k + 1] = v.im;
            }
        }
    }
    one(float_tensor(x.dtype(), &out_shape, out)?)
}

// ---------------------------------------------------------------------------
// Windows
// ---------------------------------------------------------------------------

/// The `output_datatype` attribute (default float).
fn output_type(ctx: &OpCtx) -> Result<DType, OpError> {
    let code = ctx.int("output_datatype", 1);
    let code =
        i32::try_from(code).map_err(|_| OpError::Invalid(format!("bad output_datatype {code}")))?;
    Ok(DType::from_onnx(code))
}

/// Values of type `dtype` from f64 values (float types directly, others by Cast).
fn typed(dtype: DType, shape: &[usize], v: Vec<f64>) -> Result<TensorValue, OpError> {
    match dtype {
        DType::F32 | DType::F64 | DType::F16 | DType::BF16 => float_tensor(dtype, shape, v),
        d => cast_tensor(&float_tensor(DType::F64, shape, v)?, d),
    }
}

/// A window of `size` values `f(2π·n/N)`, `N = size` (periodic) or `size - 1`.
fn window(ctx: &OpCtx, inputs: &[Option<RtValue>], f: fn(f64) -> f64) -> OpResult {
    let size = int_scalar(ctx, inputs, 0, "window size")?;
    let size = usize::try_from(size)
        .ok()
        .filter(|&n| n <= MAX_LEN)
        .ok_or_else(|| {
            OpError::Invalid(format!("window size must be in 0..={MAX_LEN}, got {size}"))
        })?;
    let periodic = ctx.int("periodic", 1) != 0;
    let denom = if periodic {
        size
    } else {
        size.saturating_sub(1)
    };
    let v: Vec<f64> = (0..size)
        .map(|i| {
            if denom == 0 {
                1.0
            } else {
                f(2.0 * PI * i as f64 / denom as f64)
            }
        })
        .collect();
    one(typed(output_type(ctx)?, &[size], v)?)
}

fn hann_window(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    window(ctx, inputs, |t| {
        let s = (t / 2.0).sin();
        s * s
    })
}

fn hamming_window(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    window(ctx, inputs, |t| {
        let alpha = 25.0 / 46.0;
        alpha - (1.0 - alpha) * t.cos()
    })
}

fn blackman_window(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    window(ctx, inputs, |t| {
        0.42 - 0.5 * t.cos() + 0.08 * (2.0 * t).cos()
    })
}

// ---------------------------------------------------------------------------
// MelWeightMatrix
// ---------------------------------------------------------------------------

fn mel_weight_matrix(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let mels = int_scalar(ctx, inputs, 0, "num_mel_bins")?;
    let mels = usize::try_from(mels)
        .ok()
        .filter(|&n| n <= MAX_LEN)
        .ok_or_else(|| OpError::Invalid(format!("num_mel_bins must be >= 0, got {mels}")))?;
    let dft_len = length(int_scalar(ctx, inputs, 1, "dft_length")?, "dft_length")?;
    let rate = int_scalar(ctx, inputs, 2, "sample_rate")?;
    if rate <= 0 {
        return Err(OpError::Invalid(format!(
            "sample_rate must be positive, got {rate}"
        )));
    }
    let lower = num_scalar(ctx, inputs, 3, "lower_edge_hertz")?;
    let upper = num_scalar(ctx, inputs, 4, "upper_edge_hertz")?;
    let bins = dft_len / 2 + 1;
    let hz_to_mel = |f: f64| 2595.0 * (1.0 + f / 700.0).log10();
    let mel_to_hz = |m: f64| 700.0 * (10f64.powf(m / 2595.0) - 1.0);
    let (lo, hi) = (hz_to_mel(lower), hz_to_mel(upper));
    let points = mels + 2;
    let step = (hi - lo) / points as f64;
    // Edges as FFT bin indices; NaN or out-of-range edges become -1 (never written).
    let edges: Vec<i64> = (0..points)
        .map(|i| {
            let hz = mel_to_hz(lo + step * i as f64);
            let b = ((dft_len as f64 + 1.0) * hz / rate as f64).floor();
            if b.is_finite() && b.abs() < 1e15 {
                b as i64
            } else {
                -1
            }
        })
        .collect();
    if product(&[bins, mels])? > MAX_LEN {
        return Err(OpError::Invalid(format!(
            "MelWeightMatrix of {bins}x{mels} is too large"
        )));
    }
    let mut out = vec![0.0f64; bins * mels];
    // Rows `lo..=hi` clipped to the matrix (edges may fall outside it).
    let rows = |lo: i64, hi: i64| lo.max(0)..=hi.min(bins as i64 - 1);
    for i in 0..mels {
        let (left, center, right) = (edges[i], edges[i + 1], edges[i + 2]);
        let up = center - left;
        if up == 0 {
            for j in rows(center, center) {
                out[j as usize * mels + i] = 1.0;
            }
        } else if up > 0 {
            for j in rows(left, center) {
                out[j as usize * mels + i] = (j - left) as f64 / up as f64;
            }
        }
        let down = right - center;
        if down > 0 {
            for j in rows(center, right - 1) {
                out[j as usize * mels + i] = (right - j) as f64 / down as f64;
            }
        }
    }
    one(typed(output_type(ctx)?, &[bins, mels], out)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[C]) -> Vec<C> {
        let n = x.len();
        (0..n)
            .map(|k| {
                x.iter().enumerate().fold(C::default(), |acc, (j, &v)| {
                    acc + v * C::cis(-2.0 * PI * ((j * k) % n) as f64 / n as f64)
                })
            })
            .collect()
    }

    fn check_plan(n: usize) {
        let x: Vec<C> = (0..n)
            .map(|i| C::new((i as f64 * 0.37).sin(), (i as f64 * 0.11).cos()))
            .collect();
        let want = naive(&x);
        let mut got = x.clone();
        let plan = Plan::new(n);
        let mut scratch = Vec::new();
        plan.forward(&mut got, &mut scratch);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g.re - w.re).abs() < 1e-9 && (g.im - w.im).abs() < 1e-9,
                "n={n}"
            );
        }
        plan.inverse(&mut got, &mut scratch);
        for (g, w) in got.iter().zip(&x) {
            assert!(
                (g.re - w.re).abs() < 1e-9 && (g.im - w.im).abs() < 1e-9,
                "n={n}"
            );
        }
    }

    #[test]
    fn plans_match_direct_sum() {
        for n in [1, 2, 3, 5, 8, 10, 64, 65, 100, 128, 400] {
            check_plan(n);
        }
    }

    #[test]
    fn rfft_then_irfft_round_trips() {
        let x: Vec<f64> = (0..10).map(|i| i as f64 * 0.5 - 1.0).collect();
        let (spec, s) = dft_lines(&x, &[10, 1], 0, 10, Mode::Forward { onesided: true }).unwrap();
        assert_eq!(s, vec![6, 2]);
        assert_eq!(spec[0], x.iter().sum::<f64>());
        let (back, s) = dft_lines(&spec, &[6, 2], 0, 10, Mode::InverseReal).unwrap();
        assert_eq!(s, vec![10, 1]);
        for (a, b) in back.iter().zip(&x) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    fn node(op: &str, attrs: Vec<(&str, crate::ir::attr::AttrValue)>) -> crate::ir::graph::Node {
        crate::ir::graph::Node::new(
            op,
            "",
            attrs
                .into_iter()
                .map(|(k, v)| crate::ir::attr::Attr::new(k, v))
                .collect(),
        )
    }

    #[test]
    fn symmetric_hann_window_and_double_output() {
        use crate::ir::attr::AttrValue;
        let n = node(
            "HannWindow",
            vec![
                ("periodic", AttrValue::Int(0)),
                ("output_datatype", AttrValue::Int(11)),
            ],
        );
        let ctx = OpCtx {
            node: &n,
            opset: 17,
        };
        let size = TensorValue::from_i64(&[], vec![5]);
        let out = hann_window(&ctx, &[Some(size.into())]).unwrap();
        let t = out[0].as_tensor().unwrap();
        assert_eq!(t.dtype(), DType::F64);
        let v = t.to_f64_vec().unwrap();
        let want = [0.0, 0.5, 1.0, 0.5, 0.0];
        for (a, b) in v.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{v:?}");
        }
    }

    #[test]
    fn dft_opset20_default_axis_and_length() {
        let n = node("DFT", vec![]);
        let ctx = OpCtx {
            node: &n,
            opset: 20,
        };
        // Two signals of length 4 (real): default axis -2, dft_length 2 truncates.
        let x = TensorValue::from_f32(&[2, 4, 1], vec![1., 2., 3., 4., 0., 1., 0., -1.]);
        let len = TensorValue::from_i64(&[], vec![2]);
        let out = dft(&ctx, &[Some(x.into()), Some(len.into())]).unwrap();
        let t = out[0].as_tensor().unwrap();
        assert_eq!(t.shape(), &[2, 2, 2]);
        assert_eq!(
            t.to_f64_vec().unwrap(),
            vec![3., 0., -1., 0., 1., 0., -1., 0.]
        );
    }
}
