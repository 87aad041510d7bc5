//! Symbolic values of shape tensors.
//!
//! Exporters compute shapes at run time: `Expand(x, Concat(Slice(Shape(input)),
//! [1], [256]))`. The elements of such a 1-D integer tensor are dims of other
//! tensors, so they can be followed symbolically: `Shape(x)` holds `x`'s dims
//! (`[batch,2048]`), and Cast, Slice, Gather, Concat, Squeeze and Unsqueeze move
//! them around. Shape inference (and the e-graph analysis of `fuse`) then gives
//! `Expand` and `Reshape` outputs a symbolic shape instead of "unknown".
//!
//! ```
//! use modc::{Dim, Shape};
//! // Reshape([batch,2048,64], [-1,512,256]): the -1 is solved symbolically.
//! let input = [Dim::param("batch"), Dim::fixed(2048), Dim::fixed(64)];
//! let target = [Dim::fixed(-1), Dim::fixed(512), Dim::fixed(256)];
//! let out = modc::reshape_dims(&input, &target).unwrap();
//! assert_eq!(Shape::from_dims(out).to_string(), "[batch,512,256]");
//! ```

use crate::ir::attr::{Attr, AttrValue};
use crate::ir::types::{Dim, DimValue};

fn attr_int(attrs: &[Attr], name: &str) -> Option<i64> {
    attrs.iter().find(|a| a.name == name)?.value.as_int()
}

fn attr_ints(attrs: &[Attr], name: &str) -> Option<Vec<i64>> {
    match &attrs.iter().find(|a| a.name == name)?.value {
        AttrValue::Ints(v) => Some(v.clone()),
        _ => None,
    }
}

fn fixed_all(d: &[Dim]) -> Option<Vec<i64>> {
    d.iter().map(|x| x.as_fixed()).collect()
}

/// The dims a shape-valued output holds, from its inputs' shapes and values.
/// `shapes[i]` is input i's shape, `values[i]` its value as dims (constants
/// included, as fixed dims). `None` when the op does not carry shape values or
/// something is unknown.
pub fn propagate(
    op: &str,
    attrs: &[Attr],
    opset: i64,
    shapes: &[Option<Vec<Dim>>],
    values: &[Option<Vec<Dim>>],
) -> Option<Vec<Dim>> {
    let value = |i: usize| values.get(i).cloned().flatten();
    let shape = |i: usize| shapes.get(i).cloned().flatten();
    let ints = |i: usize| value(i).as_deref().and_then(fixed_all);
    match op {
        "Shape" => {
            let s = shape(0)?;
            let r = s.len() as i64;
            let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
            let start = clamp(attr_int(attrs, "start").unwrap_or(0));
            let end = clamp(attr_int(attrs, "end").unwrap_or(r));
            Some(s[start..end.max(start)].to_vec())
        }
        "Cast" | "Identity" => value(0),
        "Slice" => {
            let d = value(0)?;
            let (starts, ends, axes, steps) = if opset < 10 {
                (
                    attr_ints(attrs, "starts")?,
                    attr_ints(attrs, "ends")?,
                    attr_ints(attrs, "axes").unwrap_or(vec![0]),
                    vec![1],
                )
            } else {
                (
                    ints(1)?,
                    ints(2)?,
                    if values.len() > 3 { ints(3)? } else { vec![0] },
                    if values.len() > 4 { ints(4)? } else { vec![1] },
                )
            };
            if starts.len() != 1
                || ends.len() != 1
                || !matches!(axes[..], [0] | [-1])
                || steps[..] != [1]
            {
                return None;
            }
            let n = d.len() as i64;
            let clamp = |x: i64| (if x < 0 { x + n } else { x }).clamp(0, n) as usize;
            let (a, b) = (clamp(starts[0]), clamp(ends[0]));
            Some(d[a..b.max(a)].to_vec())
        }
        "Gather" => {
            if attr_int(attrs, "axis").unwrap_or(0) != 0 {
                return None;
            }
            let d = value(0)?;
            let n = d.len() as i64;
            ints(1)?
                .iter()
                .map(|&i| d.get((if i < 0 { i + n } else { i }) as usize).cloned())
                .collect()
        }
        "Concat" => {
            let mut all = Vec::new();
            for i in 0..values.len() {
                all.extend(value(i)?);
            }
            Some(all)
        }
        // A scalar becomes a one-element vector and back: same elements.
        "Unsqueeze" | "Squeeze" | "Reshape" => {
            let s = shape(0)?;
            (s.len() <= 1).then(|| value(0)).flatten()
        }
        _ => None,
    }
}

/// Reshape's output dims for a target that may hold symbolic dims: `0` copies
/// the input dim, one `-1` is solved when the named dims cancel out.
pub fn reshape_dims(input: &[Dim], target: &[Dim]) -> Option<Vec<Dim>> {
    let mut out: Vec<Dim> = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, d) in target.iter().enumerate() {
        match d.as_fixed() {
            Some(0) => out.push(input.get(i)?.clone()),
            Some(-1) => {
                if infer_at.is_some() {
                    return None;
                }
                infer_at = Some(i);
                out.push(Dim::unknown());
            }
            _ => out.push(d.clone()),
        }
    }
    let Some(at) = infer_at else {
        return Some(out);
    };
    let mut fixed_in: i64 = 1;
    let mut params_in: Vec<&DimValue> = Vec::new();
    for d in input {
        match &d.value {
            DimValue::Fixed(n) => fixed_in *= n,
            DimValue::Param(_) => params_in.push(&d.value),
            DimValue::Unknown => return Some(out),
        }
    }
    let mut fixed_out: i64 = 1;
    for (i, d) in out.iter().enumerate() {
        if i == at {
            continue;
        }
        match &d.value {
            DimValue::Fixed(n) => fixed_out *= n,
            DimValue::Param(_) => match params_in.iter().position(|p| **p == d.value) {
                Some(pos) => {
                    params_in.remove(pos);
                }
                None => return Some(out),
            },
            DimValue::Unknown => return Some(out),
        }
    }
    if fixed_out == 0 || fixed_in % fixed_out != 0 {
        return Some(out);
    }
    let ratio = fixed_in / fixed_out;
    out[at] = match (params_in.as_slice(), ratio) {
        ([], r) => Dim::fixed(r),
        ([p], 1) => Dim {
            value: (*p).clone(),
            denotation: None,
        },
        _ => Dim::unknown(),
    };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_shape_through_slice_and_concat() {
        let b = Dim::param("b");
        let x = vec![b.clone(), Dim::fixed(2048)];
        let sh = propagate("Shape", &[], 17, &[Some(x)], &[None]).unwrap();
        let one = |v: i64| Some(vec![Dim::fixed(v)]);
        let sl = propagate(
            "Slice",
            &[],
            17,
            &[None, None, None, None],
            &[Some(sh), one(0), one(1), one(0)],
        )
        .unwrap();
        assert_eq!(sl, vec![b.clone()]);
        let cat = propagate("Concat", &[], 17, &[], &[Some(sl), one(1), one(256)]).unwrap();
        assert_eq!(cat, vec![b, Dim::fixed(1), Dim::fixed(256)]);
    }

    #[test]
    fn reshape_solves_minus_one() {
        let b = Dim::param("b");
        let out = reshape_dims(
            &[b.clone(), Dim::fixed(256)],
            &[Dim::fixed(-1), Dim::fixed(1), Dim::fixed(256)],
        )
        .unwrap();
        assert_eq!(out, vec![b.clone(), Dim::fixed(1), Dim::fixed(256)]);
        let out = reshape_dims(
            &[b.clone(), Dim::fixed(6)],
            &[Dim::fixed(-1), Dim::fixed(4)],
        )
        .unwrap();
        assert_eq!(out[0], Dim::unknown());
        let out = reshape_dims(
            &[Dim::fixed(2), Dim::fixed(6)],
            &[Dim::fixed(0), Dim::fixed(-1)],
        )
        .unwrap();
        assert_eq!(out, vec![Dim::fixed(2), Dim::fixed(6)]);
    }
}
