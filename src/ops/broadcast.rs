//! Numpy-style (multidirectional) broadcasting, as ONNX defines it.

use super::OpError;
use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

/// The broadcast shape of two shapes.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, OpError> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(OpError::Invalid(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    Ok(out)
}

/// Broadcasts a view to `shape`.
pub fn view_as<'a, T>(a: &'a ArrayD<T>, shape: &[usize]) -> Result<ArrayViewD<'a, T>, OpError> {
    a.broadcast(IxDyn(shape)).ok_or_else(|| {
        OpError::Invalid(format!(
            "shape {:?} cannot be broadcast to {shape:?}",
            a.shape()
        ))
    })
}

/// Per-input element strides of `shape` broadcast to `out` (0 along broadcast
/// axes), for a row-major contiguous input.
fn bcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let n = out.len();
    let off = n - shape.len();
    let mut st = vec![0usize; n];
    let mut acc = 1usize;
    for i in (0..shape.len()).rev() {
        if shape[i] != 1 {
            st[off + i] = acc;
        }
        acc *= shape[i];
    }
    st
}

/// The output shape with adjacent axes merged where every input's strides
/// allow it (axes of size 1 are dropped): `(dims, strides per input)`.
fn coalesce(out: &[usize], strides: &[Vec<usize>]) -> (Vec<usize>, Vec<Vec<usize>>) {
    let mut dims: Vec<usize> = Vec::with_capacity(out.len());
    let mut sts: Vec<Vec<usize>> = vec![Vec::with_capacity(out.len()); strides.len()];
    for (i, &d) in out.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let merge = !dims.is_empty()
            && strides
                .iter()
                .zip(&sts)
                .all(|(s, m)| *m.last().expect("non-empty") == s[i] * d);
        if merge {
            *dims.last_mut().expect("non-empty") *= d;
            for (s, m) in strides.iter().zip(sts.iter_mut()) {
                *m.last_mut().expect("non-empty") = s[i];
            }
        } else {
            dims.push(d);
            for (s, m) in strides.iter().zip(sts.iter_mut()) {
                m.push(s[i]);
            }
        }
    }
    if dims.is_empty() {
        dims.push(1);
        for m in sts.iter_mut() {
            m.push(0);
        }
    }
    (dims, sts)
}

/// Calls `inner(offsets, len)` for each innermost run of the coalesced
/// iteration space, in row-major order; `offsets` are the inputs' offsets of
/// the run's first element.
fn for_each_run<const N: usize>(
    dims: &[usize],
    sts: &[Vec<usize>],
    mut inner: impl FnMut([usize; N], usize),
) {
    let r = dims.len();
    let last = dims[r - 1];
    let mut idx = vec![0usize; r - 1];
    let mut off = [0usize; N];
    let outer: usize = dims[..r - 1].iter().product();
    for _ in 0..outer {
        inner(off, last);
        // Advance the odometer over the outer axes.
        let mut k = r - 1;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            for (o, s) in off.iter_mut().zip(sts) {
                *o += s[k];
            }
            if idx[k] < dims[k] {
                break;
            }
            for (o, s) in off.iter_mut().zip(sts) {
                *o -= s[k] * dims[k];
            }
            idx[k] = 0;
        }
    }
}

/// Applies `f` elementwise to two broadcast arrays.
pub fn zip2<A: Clone, B: Clone, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(&A, &B) -> O,
) -> Result<ArrayD<O>, OpError> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    if let (Some(sa), Some(sb)) = (a.as_slice(), b.as_slice()) {
        let n: usize = shape.iter().product();
        let mut out: Vec<O> = Vec::with_capacity(n);
        if n > 0 {
            if sa.len() == n && sb.len() == n {
                out.extend(sa.iter().zip(sb).map(|(x, y)| f(x, y)));
            } else if sb.len() == 1 && sa.len() == n {
                let y = &sb[0];
                out.extend(sa.iter().map(|x| f(x, y)));
            } else if sa.len() == 1 && sb.len() == n {
                let x = &sa[0];
                out.extend(sb.iter().map(|y| f(x, y)));
            } else {
                let st = [
                    bcast_strides(a.shape(), &shape),
                    bcast_strides(b.shape(), &shape),
                ];
                let (dims, sts) = coalesce(&shape, &st);
                let (ia, ib) = (sts[0][dims.len() - 1], sts[1][dims.len() - 1]);
                for_each_run(&dims, &sts, |[oa, ob]: [usize; 2], len| match (ia, ib) {
                    (1, 1) => out.extend(
                        sa[oa..oa + len]
                            .iter()
                            .zip(&sb[ob..ob + len])
                            .map(|(x, y)| f(x, y)),
                    ),
                    (1, _) => {
                        let y = &sb[ob];
                        out.extend(sa[oa..oa + len].iter().map(|x| f(x, y)))
                    }
                    (_, 1) => {
                        let x = &sa[oa];
                        out.extend(sb[ob..ob + len].iter().map(|y| f(x, y)))
                    }
                    _ => out.extend((0..len).map(|k| f(&sa[oa + k * ia], &sb[ob + k * ib]))),
                });
            }
        }
        return ArrayD::from_shape_vec(IxDyn(&shape), out)
            .map_err(|e| OpError::Invalid(format!("internal shape error: {e}")));
    }
    let va = view_as(a, &shape)?;
    let vb = view_as(b, &shape)?;
    Ok(Zip::from(&va).and(&vb).map_collect(f))
}

/// Applies `f` elementwise to three broadcast arrays.
pub fn zip3<A: Clone, B: Clone, C: Clone, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    c: &ArrayD<C>,
    f: impl Fn(&A, &B, &C) -> O,
) -> Result<ArrayD<O>, OpError> {
    let shape = broadcast_shape(&broadcast_shape(a.shape(), b.shape())?, c.shape())?;
    if let (Some(sa), Some(sb), Some(sc)) = (a.as_slice(), b.as_slice(), c.as_slice()) {
        let n: usize = shape.iter().product();
        let mut out: Vec<O> = Vec::with_capacity(n);
        if n > 0 {
            if sa.len() == n && sb.len() == n && sc.len() == n {
                out.extend((0..n).map(|k| f(&sa[k], &sb[k], &sc[k])));
            } else {
                let st = [
                    bcast_strides(a.shape(), &shape),
                    bcast_strides(b.shape(), &shape),
                    bcast_strides(c.shape(), &shape),
                ];
                let (dims, sts) = coalesce(&shape, &st);
                let r = dims.len() - 1;
                let (ia, ib, ic) = (sts[0][r], sts[1][r], sts[2][r]);
                for_each_run(&dims, &sts, |[oa, ob, oc]: [usize; 3], len| {
                    out.extend(
                        (0..len).map(|k| f(&sa[oa + k * ia], &sb[ob + k * ib], &sc[oc + k * ic])),
                    )
                });
            }
        }
        return ArrayD::from_shape_vec(IxDyn(&shape), out)
            .map_err(|e| OpError::Invalid(format!("internal shape error: {e}")));
    }
    let va = view_as(a, &shape)?;
    let vb = view_as(b, &shape)?;
    let vc = view_as(c, &shape)?;
    Ok(Zip::from(&va).and(&vb).and(&vc).map_collect(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(shape: &[usize], v: Vec<i64>) -> ArrayD<i64> {
        ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
    }

    /// The fast paths agree with ndarray's broadcasting for assorted shapes.
    #[test]
    fn zip_fast_paths_match_ndarray() {
        let shapes: &[(&[usize], &[usize])] = &[
            (&[2, 3], &[2, 3]),
            (&[2, 3], &[]),
            (&[1], &[2, 3]),
            (&[2, 3, 4], &[3, 1]),
            (&[2, 1, 4], &[1, 3, 1]),
            (&[4, 1], &[1, 5]),
            (&[1, 512, 1], &[2, 512, 7]),
            (&[3, 1, 2, 1], &[2, 1]),
            (&[0, 3], &[3]),
            (&[2, 1, 3], &[2, 4, 1]),
        ];
        for (sa, sb) in shapes {
            let na: usize = sa.iter().product();
            let nb: usize = sb.iter().product();
            let a = arr(sa, (0..na as i64).collect());
            let b = arr(sb, (0..nb as i64).map(|v| v * 100).collect());
            let got = zip2(&a, &b, |x, y| x * 7 + y).unwrap();
            let shape = broadcast_shape(sa, sb).unwrap();
            let want = Zip::from(&a.broadcast(IxDyn(&shape)).unwrap())
                .and(&b.broadcast(IxDyn(&shape)).unwrap())
                .map_collect(|x, y| x * 7 + y);
            assert_eq!(got, want, "{sa:?} {sb:?}");
            let c = arr(&[1], vec![5]);
            let got3 = zip3(&a, &b, &c, |x, y, z| x * 7 + y + z).unwrap();
            assert_eq!(got3, want.mapv(|v| v + 5), "{sa:?} {sb:?}");
            let got3 = zip3(&b, &a, &b, |x, y, z| x + y * 7 + z).unwrap();
            assert_eq!(
                got3,
                want.mapv(|v| v) + &b.broadcast(IxDyn(&shape)).unwrap(),
                "{sa:?} {sb:?}"
            );
        }
    }
}
