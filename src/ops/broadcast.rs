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

/// Applies `f` elementwise to two broadcast arrays.
pub fn zip2<A: Clone, B: Clone, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(&A, &B) -> O,
) -> Result<ArrayD<O>, OpError> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let va = view_as(a, &shape)?;
    let vb = view_as(b, &shape)?;
    Ok(Zip::from(&va).and(&vb).map_collect(|x, y| f(x, y)))
}

/// Applies `f` elementwise to three broadcast arrays.
pub fn zip3<A: Clone, B: Clone, C: Clone, O>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    c: &ArrayD<C>,
    f: impl Fn(&A, &B, &C) -> O,
) -> Result<ArrayD<O>, OpError> {
    let shape = broadcast_shape(&broadcast_shape(a.shape(), b.shape())?, c.shape())?;
    let va = view_as(a, &shape)?;
    let vb = view_as(b, &shape)?;
    let vc = view_as(c, &shape)?;
    Ok(Zip::from(&va)
        .and(&vb)
        .and(&vc)
        .map_collect(|x, y, z| f(x, y, z)))
}
