//! Matrix products: MatMul, Gemm, MatMulInteger and Einsum.
//!
//! - f32 and f64 products go through `ndarray::linalg::general_mat_mul`
//!   (matrixmultiply's gemm) on contiguous 2-D views, one call per batch; when
//!   the right operand has no batch dimensions the batch is folded into the rows
//!   so a `[B, S, K] x [K, N]` product is a single gemm. f16/bf16 compute in f32.
//! - Integer products use a plain loop with wrapping arithmetic (numpy's and
//!   onnxruntime's behaviour on overflow); MatMulInteger accumulates in i32.
//! - Gemm supports floating types only (integer Gemm with float alpha/beta is
//!   reported as unsupported).
//! - Einsum parses the equation (explicit or implicit output, `...`, repeated
//!   labels within a term as diagonals) and evaluates the sum directly with an
//!   odometer over all labels: simple and exact, fine for the small products
//!   models use it for; it is not a tuned contraction planner.
//!
//! [`GemmElem`] is shared with the convolutions.

use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};
use ndarray::{linalg::general_mat_mul, ArrayD, ArrayView2, ArrayViewMut2, IxDyn};
use num_traits::{WrappingAdd, WrappingMul, Zero};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("MatMul", matmul);
    r.add("Gemm", gemm);
    r.add("MatMulInteger", matmul_integer);
    r.add("Einsum", einsum);
}

/// An element type with a matrix product `c = a·b + (accumulate ? c : 0)`.
pub(crate) trait GemmElem: Copy + Zero + Send + Sync + 'static {
    fn gemm(
        a: &ArrayView2<Self>,
        b: &ArrayView2<Self>,
        c: &mut ArrayViewMut2<Self>,
        accumulate: bool,
    );
    /// `self + a * b` (wrapping for integers).
    fn madd(self, a: Self, b: Self) -> Self;
}

impl GemmElem for f32 {
    fn gemm(a: &ArrayView2<f32>, b: &ArrayView2<f32>, c: &mut ArrayViewMut2<f32>, acc: bool) {
        general_mat_mul(1.0, a, b, if acc { 1.0 } else { 0.0 }, c);
    }
    #[inline(always)]
    fn madd(self, a: f32, b: f32) -> f32 {
        self + a * b
    }
}
impl GemmElem for f64 {
    fn gemm(a: &ArrayView2<f64>, b: &ArrayView2<f64>, c: &mut ArrayViewMut2<f64>, acc: bool) {
        general_mat_mul(1.0, a, b, if acc { 1.0 } else { 0.0 }, c);
    }
    #[inline(always)]
    fn madd(self, a: f64, b: f64) -> f64 {
        self + a * b
    }
}

/// Plain i-k-j loop with wrapping arithmetic, for integer types.
fn int_gemm<T: Copy + Zero + WrappingAdd + WrappingMul + PartialEq>(
    a: &ArrayView2<T>,
    b: &ArrayView2<T>,
    c: &mut ArrayViewMut2<T>,
    acc: bool,
) {
    if !acc {
        c.fill(T::zero());
    }
    for (arow, mut crow) in a.rows().into_iter().zip(c.rows_mut()) {
        for (&av, brow) in arow.iter().zip(b.rows()) {
            if av == T::zero() {
                continue;
            }
            crow.zip_mut_with(&brow, |cv, &bv| {
                *cv = cv.wrapping_add(&av.wrapping_mul(&bv))
            });
        }
    }
}

macro_rules! int_gemm_elem {
    ($($t:ty),*) => {$(
        impl GemmElem for $t {
            fn gemm(a: &ArrayView2<$t>, b: &ArrayView2<$t>, c: &mut ArrayViewMut2<$t>, acc: bool) {
                int_gemm(a, b, c, acc)
            }
            #[inline(always)]
            fn madd(self, a: $t, b: $t) -> $t {
                self.wrapping_add(a.wrapping_mul(b))
            }
        }
    )*};
}
int_gemm_elem!(i32, i64, u32, u64);

fn invalid<T>(msg: impl Into<String>) -> Result<T, OpError> {
    Err(OpError::Invalid(msg.into()))
}

/// Numpy `matmul` of two arrays: 1-D operands are promoted and the added axis
/// removed again; batch dimensions broadcast.
pub(crate) fn matmul_nd<T: GemmElem>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>, OpError> {
    if a.ndim() == 0 || b.ndim() == 0 {
        return invalid("MatMul operands must have rank >= 1");
    }
    let a_vec = a.ndim() == 1;
    let b_vec = b.ndim() == 1;
    let a_shape: Vec<usize> = if a_vec {
        vec![1, a.len()]
    } else {
        a.shape().to_vec()
    };
    let b_shape: Vec<usize> = if b_vec {
        vec![b.len(), 1]
    } else {
        b.shape().to_vec()
    };
    let (ar, br) = (a_shape.len(), b_shape.len());
    let (m, k) = (a_shape[ar - 2], a_shape[ar - 1]);
    let (k2, n) = (b_shape[br - 2], b_shape[br - 1]);
    if k != k2 {
        return invalid(format!(
            "MatMul: inner dimensions differ ({:?} x {:?})",
            a.shape(),
            b.shape()
        ));
    }
    let a_batch = &a_shape[..ar - 2];
    let b_batch = &b_shape[..br - 2];
    let batch = super::broadcast::broadcast_shape(a_batch, b_batch)?;
    let a_c = a.as_standard_layout();
    let b_c = b.as_standard_layout();
    let (a_data, b_data) = match (a_c.as_slice(), b_c.as_slice()) {
        (Some(x), Some(y)) => (x, y),
        _ => return invalid("MatMul: internal layout error"),
    };
    let nb: usize = batch.iter().product();
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    let mut out = vec![T::zero(); nb * m * n];
    let b_single = b_batch.iter().product::<usize>() == 1;
    let a_full = a_batch.iter().product::<usize>() == nb;
    if b_single && a_full {
        // Fold the batch into the rows: one gemm.
        let av = view2(a_data, nb * m, k)?;
        let bv = view2(b_data, k, n)?;
        let mut cv = view2_mut(&mut out, nb * m, n)?;
        T::gemm(&av, &bv, &mut cv, false);
    } else if nb > 0 {
        let a_off = batch_offsets(&batch, a_batch, m * k);
        let b_off = batch_offsets(&batch, b_batch, k * n);
        for (i, cchunk) in out.chunks_mut((m * n).max(1)).enumerate().take(nb) {
            let av = view2(&a_data[a_off[i]..], m, k)?;
            let bv = view2(&b_data[b_off[i]..], k, n)?;
            let mut cv = view2_mut(cchunk, m, n)?;
            T::gemm(&av, &bv, &mut cv, false);
        }
    }
    if b_vec {
        out_shape.pop();
    }
    if a_vec {
        let l = out_shape.len();
        out_shape.remove(l - if b_vec { 1 } else { 2 });
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| OpError::Invalid(e.to_string()))
}

/// For each index of the broadcast batch `batch`, the element offset of the
/// operand's matrix whose batch shape is `own` (right-aligned, size-1 dims broadcast).
fn batch_offsets(batch: &[usize], own: &[usize], mat: usize) -> Vec<usize> {
    let nb: usize = batch.iter().product();
    let pad = batch.len() - own.len();
    // Strides (in matrices) of the operand's batch dims, 0 where broadcast.
    let mut strides = vec![0usize; batch.len()];
    let mut s = 1usize;
    for d in (0..own.len()).rev() {
        strides[d + pad] = if own[d] == 1 { 0 } else { s };
        s *= own[d];
    }
    let mut idx = vec![0usize; batch.len()];
    let mut offs = Vec::with_capacity(nb);
    let mut cur = 0usize;
    for _ in 0..nb {
        offs.push(cur * mat);
        for d in (0..batch.len()).rev() {
            idx[d] += 1;
            cur += strides[d];
            if idx[d] < batch[d] {
                break;
            }
            cur -= strides[d] * idx[d];
            idx[d] = 0;
        }
    }
    offs
}

fn view2<T>(data: &[T], r: usize, c: usize) -> Result<ArrayView2<'_, T>, OpError> {
    let need = r * c;
    let d = data
        .get(..need)
        .ok_or_else(|| OpError::Invalid("matrix data too short".into()))?;
    ArrayView2::from_shape((r, c), d).map_err(|e| OpError::Invalid(e.to_string()))
}

fn view2_mut<T>(data: &mut [T], r: usize, c: usize) -> Result<ArrayViewMut2<'_, T>, OpError> {
    let need = r * c;
    let d = data
        .get_mut(..need)
        .ok_or_else(|| OpError::Invalid("matrix data too short".into()))?;
    ArrayViewMut2::from_shape((r, c), d).map_err(|e| OpError::Invalid(e.to_string()))
}

fn matmul(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let (a, b) = (ctx.input(inputs, 0)?, ctx.input(inputs, 1)?);
    one(match (a, b) {
        (T::F32(x), T::F32(y)) => T::F32(matmul_nd(x, y)?),
        (T::F64(x), T::F64(y)) => T::F64(matmul_nd(x, y)?),
        (T::F16(x), T::F16(y)) => {
            let r = matmul_nd(&x.mapv(f16::to_f32), &y.mapv(f16::to_f32))?;
            T::F16(r.mapv(f16::from_f32))
        }
        (T::BF16(x), T::BF16(y)) => {
            let r = matmul_nd(&x.mapv(bf16::to_f32), &y.mapv(bf16::to_f32))?;
            T::BF16(r.mapv(bf16::from_f32))
        }
        (T::I32(x), T::I32(y)) => T::I32(matmul_nd(x, y)?),
        (T::I64(x), T::I64(y)) => T::I64(matmul_nd(x, y)?),
        (T::U32(x), T::U32(y)) => T::U32(matmul_nd(x, y)?),
        (T::U64(x), T::U64(y)) => T::U64(matmul_nd(x, y)?),
        (x, y) => {
            return Err(OpError::Unsupported(format!(
                "MatMul of {} and {}",
                x.dtype(),
                y.dtype()
            )))
        }
    })
}

/// `alpha * op(A) op(B) + beta * C` for float arrays.
fn gemm_float<F>(
    a: &ArrayD<F>,
    b: &ArrayD<F>,
    c: Option<&ArrayD<F>>,
    alpha: F,
    beta: F,
    ta: bool,
    tb: bool,
) -> Result<ArrayD<F>, OpError>
where
    F: ndarray::LinalgScalar + PartialEq,
{
    fn to2<'a, F>(x: &'a ArrayD<F>, name: &str) -> Result<ArrayView2<'a, F>, OpError> {
        x.view()
            .into_dimensionality::<ndarray::Ix2>()
            .map_err(|_| OpError::Invalid(format!("Gemm: {name} must be 2-D, got {:?}", x.shape())))
    }
    let a2 = to2(a, "A")?;
    let b2 = to2(b, "B")?;
    let av = if ta { a2.t() } else { a2 };
    let bv = if tb { b2.t() } else { b2 };
    let (m, k) = av.dim();
    let (k2, n) = bv.dim();
    if k != k2 {
        return invalid(format!(
            "Gemm: inner dimensions differ ({m}x{k} and {k2}x{n})"
        ));
    }
    let mut y = ndarray::Array2::<F>::zeros((m, n));
    let mut beta_used = F::zero();
    if let Some(c) = c {
        if beta != F::zero() {
            let cv = c.broadcast(IxDyn(&[m, n])).ok_or_else(|| {
                OpError::Invalid(format!(
                    "Gemm: C {:?} does not broadcast to [{m}, {n}]",
                    c.shape()
                ))
            })?;
            y.assign(
                &cv.into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| OpError::Invalid(e.to_string()))?,
            );
            beta_used = beta;
        }
    }
    general_mat_mul(alpha, &av, &bv, beta_used, &mut y);
    Ok(y.into_dyn())
}

fn gemm(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let a = ctx.input(inputs, 0)?;
    let b = ctx.input(inputs, 1)?;
    let c = ctx.opt_input(inputs, 2)?;
    let alpha = ctx.float("alpha", 1.0);
    let beta = ctx.float("beta", 1.0);
    let ta = ctx.int("transA", 0) != 0;
    let tb = ctx.int("transB", 0) != 0;
    macro_rules! c_as {
        ($v:ident) => {
            match c {
                None => None,
                Some(T::$v(x)) => Some(x),
                Some(o) => {
                    return invalid(format!(
                        "Gemm: C has type {}, A has {}",
                        o.dtype(),
                        a.dtype()
                    ))
                }
            }
        };
    }
    one(match (a, b) {
        (T::F32(x), T::F32(y)) => T::F32(gemm_float(x, y, c_as!(F32), alpha, beta, ta, tb)?),
        (T::F64(x), T::F64(y)) => T::F64(gemm_float(
            x,
            y,
            c_as!(F64),
            alpha as f64,
            beta as f64,
            ta,
            tb,
        )?),
        (T::F16(x), T::F16(y)) => {
            let cc = c_as!(F16).map(|c| c.mapv(f16::to_f32));
            let r = gemm_float(
                &x.mapv(f16::to_f32),
                &y.mapv(f16::to_f32),
                cc.as_ref(),
                alpha,
                beta,
                ta,
                tb,
            )?;
            T::F16(r.mapv(f16::from_f32))
        }
        (T::BF16(x), T::BF16(y)) => {
            let cc = c_as!(BF16).map(|c| c.mapv(bf16::to_f32));
            let r = gemm_float(
                &x.mapv(bf16::to_f32),
                &y.mapv(bf16::to_f32),
                cc.as_ref(),
                alpha,
                beta,
                ta,
                tb,
            )?;
            T::BF16(r.mapv(bf16::from_f32))
        }
        (x, y) => {
            return Err(OpError::Unsupported(format!(
                "Gemm of {} and {}",
                x.dtype(),
                y.dtype()
            )))
        }
    })
}

/// An 8-bit integer tensor as i32 (MatMulInteger/ConvInteger operands and zero points).
pub(crate) fn int8_as_i32(t: &TensorValue, what: &str) -> Result<ArrayD<i32>, OpError> {
    match t {
        TensorValue::U8(a) => Ok(a.mapv(i32::from)),
        TensorValue::I8(a) => Ok(a.mapv(i32::from)),
        o => Err(OpError::Unsupported(format!(
            "{what} of type {}",
            o.dtype()
        ))),
    }
}

fn matmul_integer(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let mut a = int8_as_i32(ctx.input(inputs, 0)?, "MatMulInteger A")?;
    let mut b = int8_as_i32(ctx.input(inputs, 1)?, "MatMulInteger B")?;
    if let Some(zp) = ctx.opt_input(inputs, 2)? {
        let zp = int8_as_i32(zp, "MatMulInteger a_zero_point")?;
        if zp.len() == 1 {
            let z = zp.iter().next().copied().unwrap_or(0);
            a.mapv_inplace(|v| v - z);
        } else {
            // Per-row zero point: shape [M] (or [..., M, 1]) applies along axis -2.
            if a.ndim() < 2 {
                return invalid("MatMulInteger: per-row a_zero_point needs A of rank >= 2");
            }
            let m = a.shape()[a.ndim() - 2];
            if zp.len() != m {
                return invalid(format!(
                    "MatMulInteger: a_zero_point has {} values for {m} rows",
                    zp.len()
                ));
            }
            let z: Vec<i32> = zp.iter().copied().collect();
            let ax = a.ndim() - 2;
            for (i, mut lane) in a.axis_iter_mut(ndarray::Axis(ax)).enumerate() {
                lane.mapv_inplace(|v| v - z[i]);
            }
        }
    }
    if let Some(zp) = ctx.opt_input(inputs, 3)? {
        let zp = int8_as_i32(zp, "MatMulInteger b_zero_point")?;
        if zp.len() == 1 {
            let z = zp.iter().next().copied().unwrap_or(0);
            b.mapv_inplace(|v| v - z);
        } else {
            let n = b.shape().last().copied().unwrap_or(0);
            if zp.len() != n {
                return invalid(format!(
                    "MatMulInteger: b_zero_point has {} values for {n} columns",
                    zp.len()
                ));
            }
            let z = ndarray::Array1::from_iter(zp.iter().copied());
            b -= &z;
        }
    }
    one(TensorValue::I32(matmul_nd(&a, &b)?))
}

// ---------------------------------------------------------------- Einsum

/// A parsed einsum equation: per operand the label of each axis, and the
/// output labels. Letters are labels 0..52; ellipsis dims get labels 52.. .
struct Equation {
    inputs: Vec<Vec<usize>>,
    output: Vec<usize>,
}

const ELL_BASE: usize = 52;

fn letter(c: char) -> Option<usize> {
    match c {
        'a'..='z' => Some(c as usize - 'a' as usize),
        'A'..='Z' => Some(26 + c as usize - 'A' as usize),
        _ => None,
    }
}

/// Parses one term into letters and the position of `...` (if any).
fn parse_term(t: &str) -> Result<(Vec<usize>, Option<usize>), OpError> {
    let t = t.trim();
    let mut labels = Vec::new();
    let mut ell = None;
    let mut rest = t;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("...") {
            if ell.is_some() {
                return invalid(format!("Einsum: term '{t}' has two ellipses"));
            }
            ell = Some(labels.len());
            rest = r;
            continue;
        }
        let mut chars = rest.chars();
        let c = chars.next().unwrap_or(' ');
        rest = chars.as_str();
        if c.is_whitespace() {
            continue;
        }
        labels.push(letter(c).ok_or_else(|| OpError::Invalid(format!("Einsum: bad label '{c}'")))?);
    }
    Ok((labels, ell))
}

fn parse_equation(eq: &str, ranks: &[usize]) -> Result<Equation, OpError> {
    let (lhs, rhs) = match eq.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (eq, None),
    };
    let terms: Vec<&str> = lhs.split(',').collect();
    if terms.len() != ranks.len() {
        return invalid(format!(
            "Einsum: equation has {} terms for {} inputs",
            terms.len(),
            ranks.len()
        ));
    }
    let mut ell_rank = 0usize;
    let mut inputs = Vec::new();
    let mut counts = [0usize; ELL_BASE];
    for (t, &r) in terms.iter().zip(ranks) {
        let (letters, ell) = parse_term(t)?;
        for &l in &letters {
            counts[l] += 1;
        }
        let labels = match ell {
            None => {
                if letters.len() != r {
                    return invalid(format!(
                        "Einsum: term '{t}' has {} labels, input rank is {r}",
                        letters.len()
                    ));
                }
                letters
            }
            Some(p) => {
                if letters.len() > r {
                    return invalid(format!("Einsum: term '{t}' has more labels than rank {r}"));
                }
                let e = r - letters.len();
                ell_rank = ell_rank.max(e);
                let mut v = letters[..p].to_vec();
                // Ellipsis dims right-aligned against the widest ellipsis: filled below.
                v.extend((0..e).map(|i| usize::MAX - e + i));
                v.extend_from_slice(&letters[p..]);
                v
            }
        };
        inputs.push(labels);
    }
    // Map the placeholder ellipsis labels (usize::MAX - e + i) to ELL_BASE + (ell_rank - e + i).
    for labels in inputs.iter_mut() {
        for l in labels.iter_mut() {
            if *l >= usize::MAX - ell_rank {
                let from_end = usize::MAX - *l; // e - i
                *l = ELL_BASE + ell_rank - from_end;
            }
        }
    }
    let output = match rhs {
        Some(r) => {
            let (letters, ell) = parse_term(r)?;
            let mut seen = [false; ELL_BASE];
            for &l in &letters {
                if counts[l] == 0 {
                    return invalid(format!("Einsum: output label not in inputs: '{r}'"));
                }
                if seen[l] {
                    return invalid(format!("Einsum: output label repeated: '{r}'"));
                }
                seen[l] = true;
            }
            match ell {
                None => letters,
                Some(p) => {
                    let mut v = letters[..p].to_vec();
                    v.extend((0..ell_rank).map(|i| ELL_BASE + i));
                    v.extend_from_slice(&letters[p..]);
                    v
                }
            }
        }
        None => {
            let mut v: Vec<usize> = (0..ell_rank).map(|i| ELL_BASE + i).collect();
            // Implicit output: letters appearing once, in alphabetical order.
            let mut once: Vec<usize> = (0..ELL_BASE).filter(|&l| counts[l] == 1).collect();
            once.sort_by_key(|&l| if l < 26 { l + 26 } else { l - 26 }); // 'A'..'Z' sort before 'a'..'z'
            v.extend(once);
            v
        }
    };
    Ok(Equation { inputs, output })
}

/// Generic einsum over an accumulation type `A`; `ops` are the operands in
/// standard (row-major) layout.
fn einsum_eval<A>(eq: &Equation, ops: &[ArrayD<A>]) -> Result<ArrayD<A>, OpError>
where
    A: Copy + Zero + num_traits::One + std::ops::Mul<Output = A> + WrappingAdd,
{
    let nlab = ELL_BASE + 64;
    let mut size = vec![None::<usize>; nlab];
    for (labels, op) in eq.inputs.iter().zip(ops) {
        for (&l, &d) in labels.iter().zip(op.shape()) {
            if l >= nlab {
                return invalid("Einsum: too many ellipsis dimensions");
            }
            size[l] = match size[l] {
                None => Some(d),
                Some(s) if s == d || d == 1 => Some(s),
                Some(1) => Some(d),
                Some(s) => {
                    return invalid(format!("Einsum: label has sizes {s} and {d}"));
                }
            };
        }
    }
    let out_labels = &eq.output;
    let mut inner_labels: Vec<usize> = Vec::new();
    for labels in &eq.inputs {
        for &l in labels {
            if !out_labels.contains(&l) && !inner_labels.contains(&l) {
                inner_labels.push(l);
            }
        }
    }
    let all: Vec<usize> = out_labels.iter().chain(&inner_labels).copied().collect();
    let dims: Vec<usize> = all.iter().map(|&l| size[l].unwrap_or(1)).collect();
    // Per operand, per position in `all`: element stride (0 when broadcast).
    let mut strides: Vec<Vec<usize>> = Vec::new();
    let mut datas: Vec<&[A]> = Vec::new();
    for (labels, op) in eq.inputs.iter().zip(ops) {
        let data = op
            .as_slice()
            .ok_or_else(|| OpError::Invalid("Einsum: internal layout error".into()))?;
        datas.push(data);
        let mut s = vec![0usize; all.len()];
        let mut st = 1usize;
        for (&l, &d) in labels.iter().zip(op.shape()).rev() {
            if !(d == 1 && size[l].unwrap_or(1) != 1) {
                if let Some(p) = all.iter().position(|&x| x == l) {
                    s[p] += st;
                }
            }
            st *= d;
        }
        strides.push(s);
    }
    let out_shape: Vec<usize> = dims[..out_labels.len()].to_vec();
    let checked = |d: &[usize]| {
        d.iter()
            .try_fold(1usize, |a, &x| a.checked_mul(x))
            .ok_or_else(|| OpError::Invalid("Einsum: iteration space is too large".into()))
    };
    let out_total = checked(&out_shape)?;
    let inner_total = checked(&dims[out_labels.len()..])?;
    checked(&[out_total, inner_total])?;
    let mut out = Vec::with_capacity(out_total);
    if inner_total == 0 || out_total == 0 {
        out.resize(out_total, A::zero());
    } else {
        let mut idx = vec![0usize; all.len()];
        let mut offs = vec![0usize; ops.len()];
        for _ in 0..out_total {
            let mut acc = A::zero();
            for _ in 0..inner_total {
                let mut p = A::one();
                for (data, &o) in datas.iter().zip(&offs) {
                    p = p * data[o];
                }
                acc = acc.wrapping_add(&p);
                // Advance the odometer over all labels.
                for d in (0..all.len()).rev() {
                    idx[d] += 1;
                    if idx[d] < dims[d] {
                        for (o, s) in offs.iter_mut().zip(&strides) {
                            *o += s[d];
                        }
                        break;
                    }
                    for (o, s) in offs.iter_mut().zip(&strides) {
                        *o -= s[d] * (dims[d] - 1);
                    }
                    idx[d] = 0;
                }
            }
            out.push(acc);
        }
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), out).map_err(|e| OpError::Invalid(e.to_string()))
}

/// Float wrapper so floats fit the `WrappingAdd` bound of [`einsum_eval`].
#[derive(Clone, Copy)]
struct Fl<F>(F);
impl<F: num_traits::Float> std::ops::Add for Fl<F> {
    type Output = Self;
    fn add(self, o: Self) -> Self {
        Fl(self.0 + o.0)
    }
}
impl<F: num_traits::Float> std::ops::Mul for Fl<F> {
    type Output = Self;
    fn mul(self, o: Self) -> Self {
        Fl(self.0 * o.0)
    }
}
impl<F: num_traits::Float> Zero for Fl<F> {
    fn zero() -> Self {
        Fl(F::zero())
    }
    fn is_zero(&self) -> bool {
        self.0.is_zero()
    }
}
impl<F: num_traits::Float> num_traits::One for Fl<F> {
    fn one() -> Self {
        Fl(F::one())
    }
}
impl<F: num_traits::Float> WrappingAdd for Fl<F> {
    fn wrapping_add(&self, o: &Self) -> Self {
        Fl(self.0 + o.0)
    }
}

/// Converts the operands (standard layout) and evaluates.
fn einsum_typed<T, A>(
    eq: &Equation,
    arrs: &[&ArrayD<T>],
    f: impl Fn(&T) -> A,
) -> Result<ArrayD<A>, OpError>
where
    A: Copy + Zero + num_traits::One + std::ops::Mul<Output = A> + WrappingAdd,
{
    let ops: Vec<ArrayD<A>> = arrs
        .iter()
        .map(|a| ArrayD::from_shape_vec(a.raw_dim(), a.iter().map(&f).collect()))
        .collect::<Result<_, _>>()
        .map_err(|e| OpError::Invalid(e.to_string()))?;
    einsum_eval(eq, &ops)
}

fn einsum(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let eq_s = ctx
        .string("equation")
        .ok_or_else(|| OpError::Invalid("Einsum: missing equation".into()))?;
    let ts: Vec<&TensorValue> = (0..inputs.len())
        .map(|i| ctx.input(inputs, i))
        .collect::<Result<_, _>>()?;
    if ts.is_empty() {
        return invalid("Einsum: no inputs");
    }
    let ranks: Vec<usize> = ts.iter().map(|t| t.shape().len()).collect();
    let eq = parse_equation(&eq_s, &ranks)?;
    macro_rules! go {
        ($v:ident, $f:expr, $back:expr) => {{
            let arrs: Vec<_> = ts
                .iter()
                .map(|t| match t {
                    T::$v(a) => Ok(a),
                    _ => invalid("Einsum: inputs must share one element type"),
                })
                .collect::<Result<_, _>>()?;
            T::$v(einsum_typed(&eq, &arrs, $f)?.mapv($back))
        }};
    }
    one(match ts[0] {
        T::F32(_) => go!(F32, |&x| Fl(x), |x: Fl<f32>| x.0),
        T::F64(_) => go!(F64, |&x| Fl(x), |x: Fl<f64>| x.0),
        T::F16(_) => go!(F16, |x: &f16| Fl(x.to_f32()), |x: Fl<f32>| f16::from_f32(
            x.0
        )),
        T::BF16(_) => go!(
            BF16,
            |x: &bf16| Fl(x.to_f32()),
            |x: Fl<f32>| bf16::from_f32(x.0)
        ),
        T::I32(_) => go!(I32, |&x| x, |x| x),
        T::I64(_) => go!(I64, |&x| x, |x| x),
        T::U32(_) => go!(U32, |&x| x, |x| x),
        T::U64(_) => go!(U64, |&x| x, |x| x),
        t => return Err(OpError::Unsupported(format!("Einsum of {}", t.dtype()))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn matmul_batched_and_vectors() {
        let a = array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn();
        let b = array![[5.0f32, 6.0], [7.0, 8.0]].into_dyn();
        let c = matmul_nd(&a, &b).unwrap();
        assert_eq!(c, array![[19.0f32, 22.0], [43.0, 50.0]].into_dyn());
        let v = array![1.0f32, 1.0].into_dyn();
        assert_eq!(matmul_nd(&v, &b).unwrap(), array![12.0f32, 14.0].into_dyn());
        assert_eq!(matmul_nd(&a, &v).unwrap(), array![3.0f32, 7.0].into_dyn());
        assert_eq!(matmul_nd(&v, &v).unwrap().shape(), &[] as &[usize]);
        // Broadcast batch: [2,1,2,2] x [3,2,2] -> [2,3,2,2]
        let a4 = ArrayD::from_shape_fn(IxDyn(&[2, 1, 2, 2]), |i| {
            (i[0] * 4 + i[2] * 2 + i[3]) as i64
        });
        let b3 = ArrayD::from_shape_fn(IxDyn(&[3, 2, 2]), |i| (i[0] + i[1] + i[2]) as i64);
        let r = matmul_nd(&a4, &b3).unwrap();
        assert_eq!(r.shape(), &[2, 3, 2, 2]);
        for bi in 0..2 {
            for bj in 0..3 {
                for i in 0..2 {
                    for j in 0..2 {
                        let want: i64 = (0..2).map(|k| a4[[bi, 0, i, k]] * b3[[bj, k, j]]).sum();
                        assert_eq!(r[[bi, bj, i, j]], want);
                    }
                }
            }
        }
    }

    #[test]
    fn einsum_forms() {
        let a = ArrayD::from_shape_fn(IxDyn(&[2, 3]), |i| Fl((i[0] * 3 + i[1]) as f32));
        let eq = parse_equation("ij->ji", &[2]).unwrap();
        let r = einsum_eval(&eq, std::slice::from_ref(&a)).unwrap();
        assert_eq!(r.shape(), &[3, 2]);
        assert_eq!(r[[2, 1]].0, 5.0);
        let eq = parse_equation("ij", &[2]).unwrap();
        assert_eq!(eq.output, vec![8, 9]);
        let eq = parse_equation("ij->", &[2]).unwrap();
        assert_eq!(
            einsum_eval(&eq, std::slice::from_ref(&a)).unwrap()[[]].0,
            15.0
        );
        let eq = parse_equation("...ii->...i", &[3]).unwrap();
        let d = ArrayD::from_shape_fn(IxDyn(&[2, 2, 2]), |i| {
            Fl((i[0] * 4 + i[1] * 2 + i[2]) as f32)
        });
        let r = einsum_eval(&eq, std::slice::from_ref(&d)).unwrap();
        assert_eq!(r.shape(), &[2, 2]);
        assert_eq!(r[[1, 1]].0, 7.0);
    }
}
