//! Pooling: MaxPool (with the optional Indices output), AveragePool, LpPool,
//! GlobalAveragePool, GlobalMaxPool, GlobalLpPool and MaxUnpool, for 1-D to 3-D
//! spatial inputs.
//!
//! - Window geometry (auto_pad, pads, strides, dilations, ceil_mode) is shared
//!   with Conv ([`super::conv::out_and_pads`]). In ceil mode a last window
//!   starting in the end padding is dropped, as onnxruntime and PyTorch do.
//! - For each spatial dim the valid input taps of each output position are
//!   tabulated once; the window loop then only visits real input elements.
//! - AveragePool divides by the number of real elements, or with
//!   `count_include_pad` by the number of taps inside the explicitly padded
//!   input (taps added by ceil_mode beyond the end pad are never counted).
//! - LpPool sums `|x|^p` over the real elements (padding contributes 0).
//! - MaxPool's Indices are flat offsets into the input (row-major, or
//!   column-major over the spatial dims with `storage_order` = 1), and the first
//!   maximum wins. A window with no real element yields the type's lowest value
//!   and index -1.
//! - MaxUnpool scatters into a zero tensor of the inferred shape (the indices
//!   address it, as MaxPool produced them); a requested `output_shape` holds that
//!   block at its origin, zero-padded or cropped (the spec's example does this).
//! - Float types compute in their own precision (f16/bf16 in f32); MaxPool also
//!   takes 8-bit integers.

use super::conv::{checked_total, out_and_pads, pads_attr, spatial_attr, to3};
use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("MaxPool", max_pool);
    r.add("AveragePool", average_pool);
    r.add("LpPool", lp_pool);
    r.add("GlobalAveragePool", |c, i| global_pool(c, i, Global::Avg));
    r.add("GlobalMaxPool", |c, i| global_pool(c, i, Global::Max));
    r.add("GlobalLpPool", |c, i| global_pool(c, i, Global::Lp));
    r.add("MaxUnpool", max_unpool);
}

fn invalid<T>(msg: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(msg.into()))
}

/// Per spatial dim: for each output index the valid input indices, and the
/// number of taps counted by `count_include_pad`.
struct Taps {
    start: Vec<usize>,
    idx: Vec<usize>,
    counted: Vec<usize>,
}

impl Taps {
    fn new(n_in: usize, n_out: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize) -> Taps {
        let mut t = Taps {
            start: Vec::with_capacity(n_out + 1),
            idx: Vec::new(),
            counted: Vec::with_capacity(n_out),
        };
        for o in 0..n_out {
            t.start.push(t.idx.len());
            let mut counted = 0;
            for j in 0..k {
                let p = o * s + j * d; // position in the padded input
                if p < pb + n_in + pe {
                    counted += 1;
                }
                if p >= pb && p - pb < n_in {
                    t.idx.push(p - pb);
                }
            }
            t.counted.push(counted);
        }
        t.start.push(t.idx.len());
        t
    }
    #[inline]
    fn of(&self, o: usize) -> &[usize] {
        &self.idx[self.start[o]..self.start[o + 1]]
    }
}

/// Pool geometry: spatial dims (padded to 3), out dims, tap tables.
struct PoolGeom {
    nsp: usize,
    input: [usize; 3],
    out: [usize; 3],
    taps: [Taps; 3],
}

fn pool_geom(ctx: &OpCtx, x_shape: &[usize], dilations: bool) -> Result<PoolGeom, OpError> {
    if x_shape.len() < 3 {
        return invalid(format!(
            "pooling needs an input of rank >= 3, got {x_shape:?}"
        ));
    }
    let nsp = x_shape.len() - 2;
    let kernel: Vec<usize> = match ctx.ints("kernel_shape") {
        Some(k) if k.len() == nsp && k.iter().all(|&v| v >= 1) => {
            k.iter().map(|&v| v as usize).collect()
        }
        Some(k) => return invalid(format!("bad kernel_shape {k:?} for {nsp} spatial dims")),
        None => return invalid("kernel_shape is required"),
    };
    let stride = spatial_attr(ctx, "strides", nsp)?;
    let dil = if dilations {
        spatial_attr(ctx, "dilations", nsp)?
    } else {
        vec![1; nsp]
    };
    let pads = pads_attr(ctx, nsp)?;
    let auto_pad = ctx.string("auto_pad").unwrap_or_else(|| "NOTSET".into());
    let ceil = ctx.int("ceil_mode", 0) != 0;
    let input = &x_shape[2..];
    let (out, pb, pe) = out_and_pads(&auto_pad, input, &kernel, &stride, &dil, &pads, ceil)?;
    let (i3, o3) = (to3(input, 1)?, to3(&out, 1)?);
    let (k3, s3, d3, pb3, pe3) = (
        to3(&kernel, 1)?,
        to3(&stride, 1)?,
        to3(&dil, 1)?,
        to3(&pb, 0)?,
        to3(&pe, 0)?,
    );
    let taps = [0, 1, 2].map(|i| Taps::new(i3[i], o3[i], k3[i], s3[i], d3[i], pb3[i], pe3[i]));
    Ok(PoolGeom {
        nsp,
        input: i3,
        out: o3,
        taps,
    })
}

impl PoolGeom {
    fn out_shape(&self, x_shape: &[usize]) -> Vec<usize> {
        let mut s = x_shape[..2].to_vec();
        s.extend_from_slice(&self.out[3 - self.nsp..]);
        s
    }
    /// Calls `f(out_index, taps0, taps1, taps2)` for every output element of a
    /// plane, with the real input taps of its window along each dim.
    #[inline]
    fn for_each_window(&self, mut f: impl FnMut(usize, &[usize], &[usize], &[usize])) {
        let mut oi = 0;
        for o0 in 0..self.out[0] {
            let t0 = self.taps[0].of(o0);
            for o1 in 0..self.out[1] {
                let t1 = self.taps[1].of(o1);
                for o2 in 0..self.out[2] {
                    f(oi, t0, t1, self.taps[2].of(o2));
                    oi += 1;
                }
            }
        }
    }
    fn counted(&self, out_index: usize) -> usize {
        let o2 = out_index % self.out[2];
        let o1 = (out_index / self.out[2]) % self.out[1];
        let o0 = out_index / (self.out[1] * self.out[2]);
        self.taps[0].counted[o0] * self.taps[1].counted[o1] * self.taps[2].counted[o2]
    }
}

/// A float pooling kernel over f32/f64 planes: `acc(sum, v)` accumulates,
/// `fin(sum, real, counted)` finishes (`counted` is 0 unless `need_counted`).
fn float_pool<F: Copy + num_traits::Float>(
    x: &ArrayD<F>,
    g: &PoolGeom,
    need_counted: bool,
    acc: impl Fn(F, F) -> F,
    fin: impl Fn(F, usize, usize) -> F,
) -> Result<ArrayD<F>, OpError> {
    let xs = x.shape().to_vec();
    let x = x.as_standard_layout();
    let data = x
        .as_slice()
        .ok_or_else(|| OpError::Invalid("pool: layout".into()))?;
    let in_sz: usize = g.input.iter().product();
    let [_, in1, in2] = g.input;
    let out_sz = checked_total(&g.out)?;
    let planes = xs[0] * xs[1];
    let mut y = Vec::with_capacity(planes * out_sz);
    for p in 0..planes {
        let plane = &data[p * in_sz..(p + 1) * in_sz];
        g.for_each_window(|oi, t0, t1, t2| {
            let mut s = F::zero();
            for &i0 in t0 {
                for &i1 in t1 {
                    let row = &plane[(i0 * in1 + i1) * in2..];
                    for &i2 in t2 {
                        s = acc(s, row[i2]);
                    }
                }
            }
            let counted = if need_counted { g.counted(oi) } else { 0 };
            y.push(fin(s, t0.len() * t1.len() * t2.len(), counted));
        });
    }
    ArrayD::from_shape_vec(IxDyn(&g.out_shape(&xs)), y).map_err(|e| OpError::Invalid(e.to_string()))
}

/// Runs `f` on a float tensor as f32/f64, converting halves through f32.
macro_rules! on_float {
    ($x:expr, $what:literal, |$a:ident| $body:expr) => {{
        use TensorValue as T;
        match $x {
            T::F32($a) => T::F32($body),
            T::F64($a) => T::F64($body),
            T::F16(h) => {
                let $a = &h.mapv(f16::to_f32);
                T::F16(($body).mapv(f16::from_f32))
            }
            T::BF16(h) => {
                let $a = &h.mapv(bf16::to_f32);
                T::BF16(($body).mapv(bf16::from_f32))
            }
            t => return Err(OpError::Unsupported(format!("{} of {}", $what, t.dtype()))),
        }
    }};
}

fn div_count<F: num_traits::Float>(s: F, d: usize) -> F {
    s / F::from(d).unwrap_or_else(F::nan)
}

fn average_pool(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let g = pool_geom(ctx, x.shape(), ctx.opset >= 19)?;
    let include = ctx.int("count_include_pad", 0) != 0;
    one(on_float!(x, "AveragePool", |a| float_pool(
        a,
        &g,
        include,
        |s, v| s + v,
        |s, n, c| {
            let d = if include { c } else { n };
            div_count(s, d)
        }
    )?))
}

fn lp_pool(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let g = pool_geom(ctx, x.shape(), true)?;
    let p = ctx.int("p", 2);
    if p < 1 {
        return invalid(format!("LpPool: p must be >= 1, got {p}"));
    }
    one(on_float!(x, "LpPool", |a| lp_pool_typed(a, &g, p)?))
}

fn lp_pool_typed<F: num_traits::Float>(
    a: &ArrayD<F>,
    g: &PoolGeom,
    p: i64,
) -> Result<ArrayD<F>, OpError> {
    let pf: F = num_traits::cast(p).unwrap_or_else(F::one);
    let inv = F::one() / pf;
    if p == 2 {
        float_pool(a, g, false, |s, v| s + v * v, |s, _, _| s.sqrt())
    } else if p == 1 {
        float_pool(a, g, false, |s, v| s + v.abs(), |s, _, _| s)
    } else {
        float_pool(
            a,
            g,
            false,
            |s, v| s + v.abs().powf(pf),
            |s, _, _| s.powf(inv),
        )
    }
}

/// Max pooling of one element type, with the flat indices of the maxima.
fn max_pool_typed<T: Copy + PartialOrd>(
    x: &ArrayD<T>,
    g: &PoolGeom,
    lowest: T,
    col_major: bool,
    want_idx: bool,
) -> Result<(ArrayD<T>, Option<ArrayD<i64>>), OpError> {
    let xs = x.shape().to_vec();
    let x = x.as_standard_layout();
    let data = x
        .as_slice()
        .ok_or_else(|| OpError::Invalid("pool: layout".into()))?;
    let in_sz: usize = g.input.iter().product();
    let out_sz = checked_total(&g.out)?;
    let planes = xs[0] * xs[1];
    let mut y = Vec::with_capacity(planes * out_sz);
    let mut idx: Vec<i64> = Vec::with_capacity(if want_idx { planes * out_sz } else { 0 });
    let [in0, in1, in2] = g.input;
    for p in 0..planes {
        let plane = &data[p * in_sz..(p + 1) * in_sz];
        g.for_each_window(|_, t0, t1, t2| {
            let mut best = lowest;
            let mut at: Option<usize> = None;
            for &i0 in t0 {
                for &i1 in t1 {
                    let base = (i0 * in1 + i1) * in2;
                    for &i2 in t2 {
                        let v = plane[base + i2];
                        if at.is_none() || v > best {
                            best = v;
                            at = Some(base + i2);
                        }
                    }
                }
            }
            y.push(best);
            if want_idx {
                idx.push(match at {
                    None => -1,
                    Some(off) => {
                        let inner = if col_major {
                            let (i0, i1, i2) = (off / (in1 * in2), (off / in2) % in1, off % in2);
                            // Column-major over the real spatial dims (leading size-1 dims add 0).
                            match g.nsp {
                                1 => i2,
                                2 => i1 + i2 * in1,
                                _ => i0 + i1 * in0 + i2 * in0 * in1,
                            }
                        } else {
                            off
                        };
                        (p * in_sz + inner) as i64
                    }
                });
            }
        });
    }
    let shape = IxDyn(&g.out_shape(&xs));
    let err = |e: ndarray::ShapeError| OpError::Invalid(e.to_string());
    let ya = ArrayD::from_shape_vec(shape.clone(), y).map_err(err)?;
    let ia = if want_idx {
        Some(ArrayD::from_shape_vec(shape, idx).map_err(err)?)
    } else {
        None
    };
    Ok((ya, ia))
}

fn max_pool(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let g = pool_geom(ctx, x.shape(), true)?;
    let col_major = ctx.int("storage_order", 0) != 0;
    let want = ctx.node.outputs.len() > 1;
    macro_rules! go {
        ($a:expr, $lowest:expr, $wrap:expr) => {{
            let (y, i) = max_pool_typed($a, &g, $lowest, col_major, want)?;
            (T::from($wrap(y)), i)
        }};
    }
    let (y, idx): (TensorValue, Option<ArrayD<i64>>) = match x {
        T::F32(a) => go!(a, f32::NEG_INFINITY, T::F32),
        T::F64(a) => go!(a, f64::NEG_INFINITY, T::F64),
        T::F16(a) => go!(a, f16::NEG_INFINITY, T::F16),
        T::BF16(a) => go!(a, bf16::NEG_INFINITY, T::BF16),
        T::I8(a) => go!(a, i8::MIN, T::I8),
        T::U8(a) => go!(a, u8::MIN, T::U8),
        T::I32(a) => go!(a, i32::MIN, T::I32),
        T::I64(a) => go!(a, i64::MIN, T::I64),
        t => return Err(OpError::Unsupported(format!("MaxPool of {}", t.dtype()))),
    };
    let mut out = vec![RtValue::Tensor(y)];
    if let Some(i) = idx {
        out.push(RtValue::Tensor(T::I64(i)));
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Global {
    Avg,
    Max,
    Lp,
}

fn global_typed<F: num_traits::Float>(
    a: &ArrayD<F>,
    kind: Global,
    p: i64,
) -> Result<ArrayD<F>, OpError> {
    let xs = a.shape().to_vec();
    if xs.len() < 2 {
        return invalid(format!("global pooling needs rank >= 2, got {xs:?}"));
    }
    let a = a.as_standard_layout();
    let data = a
        .as_slice()
        .ok_or_else(|| OpError::Invalid("pool: layout".into()))?;
    let sp: usize = xs[2..].iter().product();
    let planes = xs[0] * xs[1];
    let pf: F = num_traits::cast(p).unwrap_or_else(F::one);
    let nf: F = num_traits::cast(sp).unwrap_or_else(F::nan);
    let mut y = Vec::with_capacity(planes);
    for pl in 0..planes {
        let s = &data[pl * sp..(pl + 1) * sp];
        y.push(match kind {
            Global::Avg => s.iter().fold(F::zero(), |a, &v| a + v) / nf,
            Global::Max => {
                s.iter().fold(
                    F::neg_infinity(),
                    |a, &v| if v > a || v.is_nan() { v } else { a },
                )
            }
            Global::Lp if p == 2 => s.iter().fold(F::zero(), |a, &v| a + v * v).sqrt(),
            Global::Lp => s
                .iter()
                .fold(F::zero(), |a, &v| a + v.abs().powf(pf))
                .powf(F::one() / pf),
        });
    }
    let mut shape = xs[..2].to_vec();
    shape.extend(std::iter::repeat_n(1, xs.len() - 2));
    ArrayD::from_shape_vec(IxDyn(&shape), y).map_err(|e| OpError::Invalid(e.to_string()))
}

fn global_pool(ctx: &OpCtx, inputs: &[Option<RtValue>], kind: Global) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let p = ctx.int("p", 2);
    if matches!(kind, Global::Lp) && p < 1 {
        return invalid(format!("GlobalLpPool: p must be >= 1, got {p}"));
    }
    one(on_float!(x, "global pooling", |a| global_typed(
        a, kind, p
    )?))
}

fn max_unpool(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let idx = ctx.i64s(inputs, 1)?;
    let xs = x.shape().to_vec();
    if xs.len() < 3 {
        return invalid(format!("MaxUnpool needs rank >= 3, got {xs:?}"));
    }
    if idx.len() != x.len() {
        return invalid("MaxUnpool: indices and input sizes differ");
    }
    let nsp = xs.len() - 2;
    let kernel: Vec<usize> = match ctx.ints("kernel_shape") {
        Some(k) if k.len() == nsp && k.iter().all(|&v| v >= 1) => {
            k.iter().map(|&v| v as usize).collect()
        }
        _ => return invalid("MaxUnpool: bad or missing kernel_shape"),
    };
    let stride = spatial_attr(ctx, "strides", nsp)?;
    let pads = pads_attr(ctx, nsp)?;
    let mut inferred = xs[..2].to_vec();
    for i in 0..nsp {
        let full = (xs[i + 2].saturating_sub(1))
            .checked_mul(stride[i])
            .and_then(|v| v.checked_add(kernel[i]))
            .ok_or_else(|| OpError::Invalid("MaxUnpool: output too large".into()))?;
        inferred
            .push(full.checked_sub(pads[i] + pads[nsp + i]).ok_or_else(|| {
                OpError::Invalid("MaxUnpool: pads larger than the output".into())
            })?);
    }
    let requested: Option<Vec<usize>> = match ctx.opt_i64s(inputs, 2)? {
        Some(s) => {
            if s.len() != xs.len() || s.iter().any(|&d| d < 0) {
                return invalid(format!("MaxUnpool: bad output_shape {s:?}"));
            }
            Some(s.iter().map(|&d| d as usize).collect())
        }
        None => None,
    };
    let total = checked_total(&inferred)?;
    if let Some(r) = &requested {
        checked_total(r)?;
    }
    // Indices address the inferred shape (as MaxPool produced them); a larger
    // requested output_shape holds that block at its origin, padded with zeros.
    macro_rules! scatter {
        ($a:expr, $zero:expr) => {{
            let mut y = vec![$zero; total];
            for (&v, &i) in $a.iter().zip(&idx) {
                let slot = usize::try_from(i)
                    .ok()
                    .and_then(|i| y.get_mut(i))
                    .ok_or_else(|| {
                        OpError::Invalid(format!(
                            "MaxUnpool: index {i} is out of range for {total} elements"
                        ))
                    })?;
                *slot = v;
            }
            let y = ArrayD::from_shape_vec(IxDyn(&inferred), y)
                .map_err(|e| OpError::Invalid(e.to_string()))?;
            match &requested {
                Some(r) if *r != inferred => {
                    let mut out = ArrayD::from_elem(IxDyn(r), $zero);
                    let common: Vec<usize> =
                        r.iter().zip(&inferred).map(|(&a, &b)| a.min(b)).collect();
                    out.slice_each_axis_mut(|ax| ndarray::Slice::from(0..common[ax.axis.index()]))
                        .assign(&y.slice_each_axis(|ax| {
                            ndarray::Slice::from(0..common[ax.axis.index()])
                        }));
                    out
                }
                _ => y,
            }
        }};
    }
    one(match x {
        T::F32(a) => T::F32(scatter!(a, 0f32)),
        T::F64(a) => T::F64(scatter!(a, 0f64)),
        T::F16(a) => T::F16(scatter!(a, f16::ZERO)),
        T::BF16(a) => T::BF16(scatter!(a, bf16::ZERO)),
        T::I8(a) => T::I8(scatter!(a, 0i8)),
        T::U8(a) => T::U8(scatter!(a, 0u8)),
        T::I32(a) => T::I32(scatter!(a, 0i32)),
        T::I64(a) => T::I64(scatter!(a, 0i64)),
        t => return Err(OpError::Unsupported(format!("MaxUnpool of {}", t.dtype()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_with_padding() {
        // in 4, kernel 3, stride 2, pad 1/1: outputs 2, windows [-1..2), [1..4)
        let t = Taps::new(4, 2, 3, 2, 1, 1, 1);
        assert_eq!(t.of(0), &[0, 1]);
        assert_eq!(t.of(1), &[1, 2, 3]);
        assert_eq!(t.counted, vec![3, 3]);
    }

    /// Rough timings: `cargo test --lib pool::tests::bench -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench() {
        let (c, hw) = (64usize, 320usize);
        let taps = [0, 1, 2].map(|i| {
            if i == 0 {
                Taps::new(1, 1, 1, 1, 1, 0, 0)
            } else {
                Taps::new(hw, hw / 2, 3, 2, 1, 1, 1)
            }
        });
        let g = PoolGeom {
            nsp: 2,
            input: [1, hw, hw],
            out: [1, hw / 2, hw / 2],
            taps,
        };
        let x = ArrayD::from_shape_fn(IxDyn(&[1, c, hw, hw]), |i| {
            ((i[2] * 7 + i[3] * 3) % 11) as f32
        });
        let t = std::time::Instant::now();
        let (y, _) = max_pool_typed(&x, &g, f32::NEG_INFINITY, false, false).unwrap();
        eprintln!(
            "maxpool 3x3/2 {c}x{hw}x{hw}: {:.1} ms",
            t.elapsed().as_secs_f64() * 1e3
        );
        let t = std::time::Instant::now();
        let z = float_pool(&x, &g, false, |s, v| s + v, |s, n, _| div_count(s, n)).unwrap();
        eprintln!(
            "avgpool 3x3/2 {c}x{hw}x{hw}: {:.1} ms ({} {})",
            t.elapsed().as_secs_f64() * 1e3,
            y.len(),
            z.len()
        );
    }
}
