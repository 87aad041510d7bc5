//! Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
//! ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp, ReduceSumSquare.
//!
//! - Axes come from the `axes` input from opset 13 (ReduceSum) or 18 (the
//!   others), from the `axes` attribute before. Empty axes mean "all axes" unless
//!   `noop_with_empty_axes` is set, in which case the input is returned as is.
//!   Repeated axes count once.
//! - The input is arranged as `[outer, reduced, inner]` (a copy with permuted
//!   axes only when the reduced axes are not adjacent) and folded over contiguous
//!   slices.
//! - Floats accumulate in their own type (f16/bf16 in f32); integers accumulate
//!   in i64/u64 with wrapping arithmetic and are cast back (the same result as
//!   wrapping in the narrow type for sums and products). Integer means truncate;
//!   integer L2/LogSum/LogSumExp are computed in f64 and truncated.
//! - Empty reductions follow the spec: sum 0, product 1, max of nothing is the
//!   lowest value (-inf for floats), min the highest, log-sum -inf, mean NaN
//!   (0 for integers).
//! - Bool inputs are accepted by ReduceMax (any) and ReduceMin (all).
//! - LogSumExp subtracts the running maximum for stability.

use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("ReduceSum", |c, i| reduce(c, i, Kind::Sum));
    r.add("ReduceMean", |c, i| reduce(c, i, Kind::Mean));
    r.add("ReduceMax", |c, i| reduce(c, i, Kind::Max));
    r.add("ReduceMin", |c, i| reduce(c, i, Kind::Min));
    r.add("ReduceProd", |c, i| reduce(c, i, Kind::Prod));
    r.add("ReduceL1", |c, i| reduce(c, i, Kind::L1));
    r.add("ReduceL2", |c, i| reduce(c, i, Kind::L2));
    r.add("ReduceLogSum", |c, i| reduce(c, i, Kind::LogSum));
    r.add("ReduceLogSumExp", |c, i| reduce(c, i, Kind::LogSumExp));
    r.add("ReduceSumSquare", |c, i| reduce(c, i, Kind::SumSquare));
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Sum,
    Mean,
    Max,
    Min,
    Prod,
    L1,
    L2,
    LogSum,
    LogSumExp,
    SumSquare,
}

/// The accumulation type of a reduction.
trait Acc: Copy + Default {
    const ZERO: Self;
    const ONE: Self;
    const LOWEST: Self;
    const HIGHEST: Self;
    fn add(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    /// Maximum, propagating NaN.
    fn max(self, o: Self) -> Self;
    fn min(self, o: Self) -> Self;
    fn abs(self) -> Self;
    fn div_count(self, n: usize) -> Self;
    fn sqrt(self) -> Self;
    fn ln(self) -> Self;
    fn exp(self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn is_finite(self) -> bool;
}

macro_rules! acc_float {
    ($t:ty) => {
        impl Acc for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            const HIGHEST: Self = <$t>::INFINITY;
            #[inline]
            fn add(self, o: Self) -> Self {
                self + o
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self * o
            }
            #[inline]
            fn max(self, o: Self) -> Self {
                if o > self || o.is_nan() {
                    o
                } else {
                    self
                }
            }
            #[inline]
            fn min(self, o: Self) -> Self {
                if o < self || o.is_nan() {
                    o
                } else {
                    self
                }
            }
            fn abs(self) -> Self {
                self.abs()
            }
            fn div_count(self, n: usize) -> Self {
                self / n as $t
            }
            fn sqrt(self) -> Self {
                self.sqrt()
            }
            fn ln(self) -> Self {
                self.ln()
            }
            fn exp(self) -> Self {
                self.exp()
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn is_finite(self) -> bool {
                self.is_finite()
            }
        }
    };
}
acc_float!(f32);
acc_float!(f64);

macro_rules! acc_int {
    ($t:ty, $abs:expr) => {
        impl Acc for $t {
            const ZERO: Self = 0;
            const ONE: Self = 1;
            const LOWEST: Self = <$t>::MIN;
            const HIGHEST: Self = <$t>::MAX;
            #[inline]
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            #[inline]
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            #[inline]
            fn max(self, o: Self) -> Self {
                Ord::max(self, o)
            }
            #[inline]
            fn min(self, o: Self) -> Self {
                Ord::min(self, o)
            }
            fn abs(self) -> Self {
                $abs(self)
            }
            fn div_count(self, n: usize) -> Self {
                if n == 0 {
                    0
                } else {
                    self / (n as $t)
                }
            }
            fn sqrt(self) -> Self {
                (self as f64).sqrt() as $t
            }
            fn ln(self) -> Self {
                (self as f64).ln() as $t
            }
            fn exp(self) -> Self {
                (self as f64).exp() as $t
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn is_finite(self) -> bool {
                true
            }
        }
    };
}
acc_int!(i64, i64::wrapping_abs);
acc_int!(u64, |v| v);

/// Folds `data` laid out as `[outer, red, inner]` over the middle axis.
fn fold_block<A: Acc>(
    data: &[A],
    outer: usize,
    red: usize,
    inner: usize,
    init: A,
    f: impl Fn(A, A) -> A,
) -> Vec<A> {
    let mut out = vec![init; outer * inner];
    if red == 0 || inner == 0 {
        return out;
    }
    if inner == 1 {
        for (o, lane) in out.iter_mut().zip(data.chunks_exact(red)) {
            *o = lane.iter().fold(init, |a, &v| f(a, v));
        }
    } else {
        for (acc, block) in out
            .chunks_exact_mut(inner)
            .zip(data.chunks_exact(red * inner))
        {
            for row in block.chunks_exact(inner) {
                for (a, &v) in acc.iter_mut().zip(row) {
                    *a = f(*a, v);
                }
            }
        }
    }
    out
}

/// Reduces `data` (`[outer, red, inner]`, already mapped to `A`) by `kind`.
fn reduce_block<A: Acc>(
    mut data: Vec<A>,
    outer: usize,
    red: usize,
    inner: usize,
    kind: Kind,
) -> Vec<A> {
    match kind {
        Kind::Sum => fold_block(&data, outer, red, inner, A::ZERO, A::add),
        Kind::Mean => {
            let mut v = fold_block(&data, outer, red, inner, A::ZERO, A::add);
            v.iter_mut().for_each(|x| *x = x.div_count(red));
            v
        }
        Kind::Max => fold_block(&data, outer, red, inner, A::LOWEST, A::max),
        Kind::Min => fold_block(&data, outer, red, inner, A::HIGHEST, A::min),
        Kind::Prod => fold_block(&data, outer, red, inner, A::ONE, A::mul),
        Kind::L1 => {
            data.iter_mut().for_each(|x| *x = x.abs());
            fold_block(&data, outer, red, inner, A::ZERO, A::add)
        }
        Kind::SumSquare => {
            data.iter_mut().for_each(|x| *x = x.mul(*x));
            fold_block(&data, outer, red, inner, A::ZERO, A::add)
        }
        Kind::L2 => {
            data.iter_mut().for_each(|x| *x = x.mul(*x));
            let mut v = fold_block(&data, outer, red, inner, A::ZERO, A::add);
            v.iter_mut().for_each(|x| *x = x.sqrt());
            v
        }
        Kind::LogSum => {
            let mut v = fold_block(&data, outer, red, inner, A::ZERO, A::add);
            v.iter_mut().for_each(|x| *x = x.ln());
            v
        }
        Kind::LogSumExp => {
            let mut shift = fold_block(&data, outer, red, inner, A::LOWEST, A::max);
            for s in shift.iter_mut() {
                if !s.is_finite() {
                    *s = A::ZERO;
                }
            }
            if inner > 0 && red > 0 {
                for (block, sh) in data
                    .chunks_exact_mut(red * inner)
                    .zip(shift.chunks_exact(inner))
                {
                    for row in block.chunks_exact_mut(inner) {
                        for (x, &s) in row.iter_mut().zip(sh) {
                            *x = x.sub(s).exp();
                        }
                    }
                }
            }
            let mut v = fold_block(&data, outer, red, inner, A::ZERO, A::add);
            for (x, &s) in v.iter_mut().zip(&shift) {
                *x = x.ln().add(s);
            }
            v
        }
    }
}

/// Reduces `a` over the (sorted, distinct) `axes`, converting elements with
/// `fin` and results with `fout`.
fn run<T, A: Acc, O>(
    a: &ArrayD<T>,
    axes: &[usize],
    keep: bool,
    kind: Kind,
    fin: impl Fn(&T) -> A,
    fout: impl Fn(A) -> O,
) -> Result<ArrayD<O>, OpError> {
    let shape = a.shape();
    let rank = shape.len();
    let red: usize = axes.iter().map(|&x| shape[x]).product();
    let kept: Vec<usize> = (0..rank).filter(|d| !axes.contains(d)).collect();
    let adjacent = axes.windows(2).all(|w| w[1] == w[0] + 1);
    let (data, outer, inner): (Vec<A>, usize, usize) = if adjacent {
        let first = axes.first().copied().unwrap_or(rank);
        let last = axes.last().map(|l| l + 1).unwrap_or(rank);
        let outer: usize = shape[..first].iter().product();
        let inner: usize = shape[last..].iter().product();
        (a.iter().map(&fin).collect(), outer, inner)
    } else {
        let mut perm = kept.clone();
        perm.extend_from_slice(axes);
        let outer: usize = kept.iter().map(|&d| shape[d]).product();
        let p = a.view().permuted_axes(IxDyn(&perm));
        (p.iter().map(&fin).collect(), outer, 1)
    };
    let res = reduce_block(data, outer, red, inner, kind);
    let out_shape: Vec<usize> = if keep {
        (0..rank)
            .map(|d| if axes.contains(&d) { 1 } else { shape[d] })
            .collect()
    } else {
        kept.iter().map(|&d| shape[d]).collect()
    };
    ArrayD::from_shape_vec(IxDyn(&out_shape), res.into_iter().map(fout).collect())
        .map_err(|e| OpError::Invalid(e.to_string()))
}

fn reduce(ctx: &OpCtx, inputs: &[Option<RtValue>], kind: Kind) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let axes_from_input = if kind == Kind::Sum {
        ctx.opset >= 13
    } else {
        ctx.opset >= 18
    };
    let axes: Option<Vec<i64>> = if axes_from_input {
        ctx.opt_i64s(inputs, 1)?
    } else {
        ctx.ints("axes")
    };
    let keep = ctx.int("keepdims", 1) != 0;
    let noop = ctx.int("noop_with_empty_axes", 0) != 0;
    let rank = x.shape().len();
    let axes: Vec<usize> = match axes {
        Some(v) if !v.is_empty() => {
            let mut r = Vec::with_capacity(v.len());
            for a in v {
                let n = super::norm_axis(a, rank)?;
                if n >= rank {
                    return Err(OpError::Invalid(format!(
                        "axis {a} is out of range for rank {rank}"
                    )));
                }
                r.push(n);
            }
            r.sort_unstable();
            r.dedup();
            r
        }
        _ if noop => return one(x.clone()),
        _ => (0..rank).collect(),
    };
    macro_rules! go {
        ($v:ident, $a:expr, $fin:expr, $fout:expr) => {
            T::$v(run($a, &axes, keep, kind, $fin, $fout)?)
        };
    }
    one(match x {
        T::F32(a) => go!(F32, a, |&v: &f32| v, |v| v),
        T::F64(a) => go!(F64, a, |&v: &f64| v, |v| v),
        T::F16(a) => go!(F16, a, |v: &f16| v.to_f32(), f16::from_f32),
        T::BF16(a) => go!(BF16, a, |v: &bf16| v.to_f32(), bf16::from_f32),
        T::I8(a) => go!(I8, a, |&v: &i8| v as i64, |v: i64| v as i8),
        T::I16(a) => go!(I16, a, |&v: &i16| v as i64, |v: i64| v as i16),
        T::I32(a) => go!(I32, a, |&v: &i32| v as i64, |v: i64| v as i32),
        T::I64(a) => go!(I64, a, |&v: &i64| v, |v: i64| v),
        T::U8(a) => go!(U8, a, |&v: &u8| v as u64, |v: u64| v as u8),
        T::U16(a) => go!(U16, a, |&v: &u16| v as u64, |v: u64| v as u16),
        T::U32(a) => go!(U32, a, |&v: &u32| v as u64, |v: u64| v as u32),
        T::U64(a) => go!(U64, a, |&v: &u64| v, |v: u64| v),
        T::Bool(a) if matches!(kind, Kind::Max | Kind::Min) => {
            go!(Bool, a, |&v: &bool| v as u64, |v: u64| v != 0)
        }
        t => {
            return Err(OpError::Unsupported(format!(
                "{kind:?} reduction of {}",
                t.dtype()
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    fn r(a: &ArrayD<f32>, axes: &[usize], keep: bool, kind: Kind) -> ArrayD<f32> {
        run(a, axes, keep, kind, |&v| v, |v| v).unwrap()
    }

    #[test]
    fn reductions() {
        let a = array![[[1.0f32, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]].into_dyn();
        assert_eq!(
            r(&a, &[1], false, Kind::Sum),
            array![[4.0f32, 6.0], [12.0, 14.0]].into_dyn()
        );
        assert_eq!(
            r(&a, &[0, 2], true, Kind::Max),
            array![[[6.0f32], [8.0]]].into_dyn()
        );
        assert_eq!(
            r(&a, &[2], false, Kind::Mean),
            array![[1.5f32, 3.5], [5.5, 7.5]].into_dyn()
        );
        assert_eq!(r(&a, &[0, 1, 2], false, Kind::Prod)[[]], 40320.0);
        let lse = r(&a, &[2], false, Kind::LogSumExp);
        assert!((lse[[0, 0]] - (1f32.exp() + 2f32.exp()).ln()).abs() < 1e-5);
        let e = ArrayD::<f32>::zeros(IxDyn(&[2, 0, 3]));
        assert_eq!(
            r(&e, &[1], true, Kind::Prod),
            ArrayD::from_elem(IxDyn(&[2, 1, 3]), 1.0)
        );
        assert_eq!(r(&e, &[1], true, Kind::Max)[[0, 0, 0]], f32::NEG_INFINITY);
        assert_eq!(r(&e, &[2], true, Kind::Sum).shape(), &[2, 0, 1]);
    }
}
