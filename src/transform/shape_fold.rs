//! `shape-fold`: shape arithmetic with known dimensions, after `infer` has given
//! values their (symbolic) shapes.
//!
//! The pass follows integer shape vectors (int64, and int32 where an exporter
//! casts shapes) through `Shape`, `Size`, `Gather` and `Slice` on them, `Concat`,
//! `Unsqueeze`/`Squeeze` of single elements, `Cast` between int64 and int32, and
//! `Identity`. Each element is either a known number or "dimension `k`
//! of value `x`" (with `x`'s symbolic name of that dimension, if it has one). Then:
//!
//! - a value whose elements are all known numbers becomes a constant: `Shape(x)`
//!   of a fully fixed `x` (with `start`/`end`, opset 15+), `Gather(Shape(x), 1)`
//!   of a fixed dimension 1 even when other dimensions are symbolic, `Size(x)`;
//! - the shape input of `Reshape(x, shape)` (`allowzero=0`) becomes a constant when
//!   each element is a known number, or provably dimension `i` of `x` at the same
//!   position `i` (written `0`, "copy"), with at most one other element written
//!   `-1` (inferred from the rest; this assumes a symbolic dimension copied with
//!   `0` is not 0 at run time, as ONNX Runtime's Reshape fusion does); when both
//!   `x`'s shape and the Reshape's inferred output shape are fully fixed, and the
//!   shape does not read graph inputs' data, the output's dimensions are used;
//! - the shape input of `Expand(x, shape)` becomes a constant when each element is
//!   a known number or provably the dimension of `x` it is aligned with (written
//!   `1`, which broadcasting turns into that dimension).
//!
//! `ConstantOfShape`, `Tile`, `Range` and scalar arithmetic on dimensions get
//! constant inputs from the first rule; `fold` finishes them, so
//! `(fold,shape-fold,dce)` collapses whole Shape→Gather→…→Concat chains.
//!
//! The pass walks If/Loop/Scan bodies itself, innermost first, so that a value a
//! body reads from an enclosing graph has its enclosing type there.
//!
//! Symbolic dimensions stay symbolic: a symbolic dimension is never replaced by a
//! number. Two dimensions are provably equal when they are the same dimension of
//! the same value, or carry the same symbolic name.
//!
//! Not done: arithmetic on symbolic dimensions (`Mul(batch, 3)` stays computed),
//! Reshape with `allowzero=1` unless its shape is fully known, and any guessing of
//! types: without `infer`'s shapes (or for values created after it ran) nothing
//! is known.
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[batch,3,4]) -> (%y) {\n  %s = Shape(%x)\n  %i = const i64[] @i [0]\n  %b = Gather(%s, %i)\n  %u = const i64[1] @u [0]\n  %b1 = Unsqueeze(%b, %u)\n  %m = const i64[1] @m [-1]\n  %t = Concat(%b1, %m) {axis=0}\n  %y = Reshape(%x, %t)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("infer,(fold,shape-fold,dce)").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! ```

use crate::interp::value::TensorValue;
use crate::ir::attr::AttrValue;
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, NodeId, ValueDef, ValueId};
use crate::ir::types::{Dim, DimValue, Type};
use crate::pass::edit::{
    add_const_value, const_i64s, const_tensor, const_value, is_const, is_onnx, tidy_value_info,
    NameGen,
};
use crate::pass::{Pass, PassCtx, PassError};
use std::collections::HashMap;

/// The longest shape vector followed (longer integer vectors are data, not shapes).
const MAX_LEN: usize = 64;

pub struct ShapeFold;

impl Pass for ShapeFold {
    fn name(&self) -> &'static str {
        "shape-fold"
    }
    /// Subgraphs are walked here (innermost first, like the manager does) so that
    /// the values a subgraph reads from enclosing graphs have their types.
    fn recurse(&self) -> bool {
        false
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(run_scoped(g, cx, &HashMap::new()))
    }
}

/// Runs on the subgraphs of `g` and then on `g`; `outer` holds the types of the
/// names visible from enclosing graphs.
fn run_scoped(g: &mut Graph, cx: &mut PassCtx, outer: &HashMap<String, Type>) -> bool {
    let mut changed = false;
    let has_subgraphs = g
        .nodes()
        .any(|(_, n)| n.attrs.iter().any(|a| !a.value.graphs().is_empty()));
    if has_subgraphs {
        let mut scope = outer.clone();
        for v in g.value_ids() {
            let val = g.value(v);
            if val.def == ValueDef::Outer {
                continue;
            }
            match &val.ty {
                Some(t) => scope.insert(val.name.clone(), t.clone()),
                None => scope.remove(&val.name),
            };
        }
        let ids: Vec<NodeId> = g.node_ids().collect();
        for n in ids {
            for i in 0..g.node(n).attrs.len() {
                if g.node(n).attrs[i].value.graphs().is_empty() {
                    continue;
                }
                let mut a = std::mem::replace(&mut g.node_mut(n).attrs[i].value, AttrValue::Int(0));
                cx.depth += 1;
                for sub in a.graphs_mut() {
                    changed |= run_scoped(sub, cx, &scope);
                }
                cx.depth -= 1;
                g.node_mut(n).attrs[i].value = a;
            }
        }
    }
    // Outer values get their enclosing types for the time of the run.
    let typed: Vec<ValueId> = g
        .value_ids()
        .filter(|&v| g.value(v).def == ValueDef::Outer && g.value(v).ty.is_none())
        .filter(|&v| outer.contains_key(&g.value(v).name))
        .collect();
    for &v in &typed {
        let t = outer[&g.value(v).name].clone();
        g.value_mut(v).ty = Some(t);
    }
    changed |= run_one(g, cx);
    for &v in &typed {
        g.value_mut(v).ty = None;
    }
    changed
}

fn run_one(g: &mut Graph, cx: &mut PassCtx) -> bool {
    let Ok(order) = g.topo_order() else {
        return false;
    };
    let mut st = State {
        vecs: HashMap::new(),
        names: None,
        rewrites: 0,
    };
    for n in order {
        if !g.contains_node(n) || !is_onnx(g.node(n)) || g.node(n).overload.is_some() {
            continue;
        }
        match g.node(n).op_type.as_str() {
            "Reshape" => st.reshape(g, n, cx.opset),
            "Expand" => st.expand(g, n),
            _ => {}
        }
        st.track(g, n, cx.opset);
    }
    if st.rewrites > 0 {
        tidy_value_info(g);
    }
    cx.rewrites += st.rewrites;
    st.rewrites > 0
}

/// One element of a shape vector.
#[derive(Clone, Debug, PartialEq)]
enum Sym {
    Fixed(i64),
    /// Dimension `axis` of `src` (not a known number); `param` is its symbolic name.
    Dim {
        src: ValueId,
        axis: usize,
        param: Option<String>,
    },
}

/// An integer shape vector: its elements, whether it is a scalar (one element,
/// rank 0) rather than a 1-D tensor, and its element type (int64, or int32 where
/// an exporter casts shapes).
#[derive(Clone, Debug)]
struct SymVec {
    elems: Vec<Sym>,
    scalar: bool,
    dtype: DType,
}

impl SymVec {
    fn fixed(&self) -> Option<Vec<i64>> {
        self.elems
            .iter()
            .map(|e| match e {
                Sym::Fixed(n) => Some(*n),
                Sym::Dim { .. } => None,
            })
            .collect()
    }
}

struct State {
    vecs: HashMap<ValueId, SymVec>,
    names: Option<NameGen>,
    rewrites: usize,
}

/// The dims of `v`'s declared tensor type, when its rank is known.
fn dims_of(g: &Graph, v: ValueId) -> Option<&[Dim]> {
    let (_, shape) = g.value(v).ty.as_ref()?.as_tensor()?;
    Some(&shape?.dims)
}

fn attr_int(g: &Graph, n: NodeId, name: &str) -> Option<i64> {
    g.node(n).attr(name).and_then(|a| a.value.as_int())
}

fn attr_ints(g: &Graph, n: NodeId, name: &str) -> Option<Vec<i64>> {
    g.node(n)
        .attr(name)
        .and_then(|a| a.value.as_ints())
        .map(|v| v.to_vec())
}

fn input(g: &Graph, n: NodeId, i: usize) -> Option<ValueId> {
    g.node(n).inputs.get(i).copied().flatten()
}

/// A list of integers given as an attribute before `since`, as input `i` after.
fn ints_at(g: &Graph, n: NodeId, opset: i64, since: i64, attr: &str, i: usize) -> Option<Vec<i64>> {
    if opset < since {
        attr_ints(g, n, attr)
    } else {
        const_i64s(g, input(g, n, i)?)
    }
}

/// Whether `e` is provably dimension `i` of `data`.
fn is_dim_of(e: &Sym, data: ValueId, data_dims: Option<&[Dim]>, i: usize) -> bool {
    let Sym::Dim { src, axis, param } = e else {
        return false;
    };
    if *src == data && *axis == i {
        return true;
    }
    match (param, data_dims.and_then(|d| d.get(i))) {
        (Some(p), Some(d)) => matches!(&d.value, DimValue::Param(q) if q == p),
        _ => false,
    }
}

/// Whether every axis list entry names axis 0 of a 1-D tensor.
fn only_axis0(axes: &[i64]) -> bool {
    axes.len() == 1 && (axes[0] == 0 || axes[0] == -1)
}

impl State {
    /// The shape vector of `v`: a tracked one, or a small int64/int32 constant.
    fn vec_of(&self, g: &Graph, v: ValueId) -> Option<SymVec> {
        if let Some(s) = self.vecs.get(&v) {
            return Some(s.clone());
        }
        let int = |d: DType| d == DType::I64 || d == DType::I32;
        if let Some(t) = const_tensor(g, v) {
            if !int(t.dtype) || t.dims.len() > 1 || t.num_elements()? > MAX_LEN as u64 {
                return None;
            }
        }
        let c = const_value(g, v)?;
        if !int(c.dtype()) || c.shape().len() > 1 || c.len() > MAX_LEN {
            return None;
        }
        Some(SymVec {
            elems: c.to_i64_vec()?.into_iter().map(Sym::Fixed).collect(),
            scalar: c.shape().is_empty(),
            dtype: c.dtype(),
        })
    }

    /// Computes the shape vector of `n`'s output; a fully known one that is not yet
    /// a constant becomes a constant.
    fn track(&mut self, g: &mut Graph, n: NodeId, opset: i64) {
        let node = g.node(n);
        if node.outputs.len() != 1 {
            return;
        }
        let Some(out) = node.outputs[0] else { return };
        let Some(sv) = self.compute(g, n, opset) else {
            return;
        };
        if sv.elems.len() > MAX_LEN {
            return;
        }
        if let Some(vals) = sv.fixed() {
            let shape: Vec<usize> = if sv.scalar { vec![] } else { vec![vals.len()] };
            let t = if sv.dtype == DType::I32 {
                let v32 = vals.iter().map(|&k| k as i32).collect();
                match ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&shape), v32) {
                    Ok(a) => TensorValue::I32(a),
                    Err(_) => return,
                }
            } else {
                TensorValue::from_i64(&shape, vals)
            };
            // The declared type, when there is one, must agree.
            let fits = match g.value(out).ty.as_ref().and_then(|t| t.as_tensor()) {
                Some((dt, s)) => {
                    dt == sv.dtype
                        && s.is_none_or(|s| {
                            s.rank() == shape.len()
                                && s.dims
                                    .iter()
                                    .zip(&shape)
                                    .all(|(d, &k)| d.as_fixed().is_none_or(|f| f == k as i64))
                        })
                }
                None => g.value(out).ty.is_none(),
            };
            if !fits {
                return;
            }
            super::fold::replace_by_consts(g, n, vec![(out, t)]);
            self.rewrites += 1;
        }
        self.vecs.insert(out, sv);
    }

    fn compute(&self, g: &Graph, n: NodeId, opset: i64) -> Option<SymVec> {
        let node = g.node(n);
        let x = input(g, n, 0)?;
        match node.op_type.as_str() {
            "Shape" if dims_of(g, x).is_none() => {
                // The shape of a shape vector: its length.
                let v = self.vecs.get(&x)?;
                let len = if v.scalar {
                    vec![]
                } else {
                    vec![Sym::Fixed(v.elems.len() as i64)]
                };
                let start_end = opset >= 15
                    && (g.node(n).attr("start").is_some() || g.node(n).attr("end").is_some());
                if start_end {
                    return None;
                }
                Some(SymVec {
                    elems: len,
                    scalar: false,
                    dtype: DType::I64,
                })
            }
            "Size" if dims_of(g, x).is_none() => {
                let v = self.vecs.get(&x)?;
                Some(SymVec {
                    elems: vec![Sym::Fixed(v.elems.len() as i64)],
                    scalar: true,
                    dtype: DType::I64,
                })
            }
            "Shape" => {
                let dims = dims_of(g, x)?;
                let r = dims.len() as i64;
                let norm = |a: i64| (if a < 0 { a + r } else { a }).clamp(0, r) as usize;
                let (start, end) = if opset >= 15 {
                    (
                        norm(attr_int(g, n, "start").unwrap_or(0)),
                        norm(attr_int(g, n, "end").unwrap_or(r)),
                    )
                } else {
                    (0, r as usize)
                };
                let elems = (start..end.max(start))
                    .map(|i| match &dims[i].value {
                        DimValue::Fixed(k) if *k >= 0 => Sym::Fixed(*k),
                        DimValue::Param(p) if !p.is_empty() => Sym::Dim {
                            src: x,
                            axis: i,
                            param: Some(p.clone()),
                        },
                        _ => Sym::Dim {
                            src: x,
                            axis: i,
                            param: None,
                        },
                    })
                    .collect();
                Some(SymVec {
                    elems,
                    scalar: false,
                    dtype: DType::I64,
                })
            }
            "Size" => {
                let dims = dims_of(g, x)?;
                let mut total: i64 = 1;
                for d in dims {
                    total = total.checked_mul(d.as_fixed().filter(|&k| k >= 0)?)?;
                }
                Some(SymVec {
                    elems: vec![Sym::Fixed(total)],
                    scalar: true,
                    dtype: DType::I64,
                })
            }
            "Identity" => self.vec_of(g, x),
            "Cast" => {
                // ONNX's INT64 is 7, INT32 is 6; dimensions fit in either.
                let mut v = self.vec_of(g, x)?;
                match attr_int(g, n, "to")? {
                    7 => v.dtype = DType::I64,
                    6 => {
                        v.dtype = DType::I32;
                        for e in &mut v.elems {
                            if let Sym::Fixed(k) = e {
                                *k = *k as i32 as i64;
                            }
                        }
                    }
                    _ => return None,
                }
                Some(v)
            }
            "Gather" => {
                let data = self.vec_of(g, x)?;
                let axis = attr_int(g, n, "axis").unwrap_or(0);
                if data.scalar || !(axis == 0 || axis == -1) {
                    return None;
                }
                let iv = input(g, n, 1)?;
                let idx = const_value(g, iv)?;
                if idx.shape().len() > 1 {
                    return None;
                }
                let len = data.elems.len() as i64;
                let elems = idx
                    .to_i64_vec()?
                    .into_iter()
                    .map(|i| {
                        let i = if i < 0 { i + len } else { i };
                        (0..len)
                            .contains(&i)
                            .then(|| data.elems[i as usize].clone())
                    })
                    .collect::<Option<Vec<_>>>()?;
                Some(SymVec {
                    elems,
                    scalar: idx.shape().is_empty(),
                    dtype: data.dtype,
                })
            }
            "Slice" => {
                let data = self.vec_of(g, x)?;
                if data.scalar {
                    return None;
                }
                let starts = ints_at(g, n, opset, 10, "starts", 1)?;
                let ends = ints_at(g, n, opset, 10, "ends", 2)?;
                let axes = if opset < 10 {
                    attr_ints(g, n, "axes")
                } else {
                    match input(g, n, 3) {
                        Some(a) => Some(const_i64s(g, a)?),
                        None => None,
                    }
                };
                let steps = if opset < 10 {
                    None
                } else {
                    match input(g, n, 4) {
                        Some(s) => Some(const_i64s(g, s)?),
                        None => None,
                    }
                };
                if starts.len() != 1 || ends.len() != 1 {
                    return None;
                }
                if axes.as_ref().is_some_and(|a| !only_axis0(a)) {
                    return None;
                }
                let step = match steps.as_deref() {
                    None => 1,
                    Some([s]) if *s != 0 => *s,
                    _ => return None,
                };
                let idx = slice_indices(data.elems.len() as i64, starts[0], ends[0], step);
                Some(SymVec {
                    elems: idx.into_iter().map(|i| data.elems[i].clone()).collect(),
                    scalar: false,
                    dtype: data.dtype,
                })
            }
            "Concat" => {
                let axis = attr_int(g, n, "axis")?;
                if !(axis == 0 || axis == -1) {
                    return None;
                }
                let mut elems = vec![];
                let mut dtype = None;
                for i in node.inputs.iter() {
                    let v = self.vec_of(g, (*i)?)?;
                    if v.scalar || *dtype.get_or_insert(v.dtype) != v.dtype {
                        return None;
                    }
                    elems.extend(v.elems);
                    if elems.len() > MAX_LEN {
                        return None;
                    }
                }
                Some(SymVec {
                    elems,
                    scalar: false,
                    dtype: dtype?,
                })
            }
            "Unsqueeze" => {
                let v = self.vec_of(g, x)?;
                let axes = ints_at(g, n, opset, 13, "axes", 1)?;
                if !v.scalar || !only_axis0(&axes) {
                    return None;
                }
                Some(SymVec { scalar: false, ..v })
            }
            "Squeeze" => {
                let v = self.vec_of(g, x)?;
                let axes = if opset < 13 {
                    attr_ints(g, n, "axes")
                } else {
                    match input(g, n, 1) {
                        Some(a) => Some(const_i64s(g, a)?),
                        None => None,
                    }
                };
                if v.scalar || v.elems.len() != 1 || axes.is_some_and(|a| !only_axis0(&a)) {
                    return None;
                }
                Some(SymVec { scalar: true, ..v })
            }
            _ => None,
        }
    }

    /// Makes input `slot` of `n` read a new int64 constant holding `vals`.
    fn set_const_input(
        &mut self,
        g: &mut Graph,
        n: NodeId,
        slot: usize,
        vals: Vec<i64>,
        base: &str,
    ) {
        let names = self.names.get_or_insert_with(|| NameGen::new(g));
        let t = TensorValue::from_i64(&[vals.len()], vals);
        let c = add_const_value(g, names, base, &t);
        g.node_mut(n).inputs[slot] = Some(c);
        self.rewrites += 1;
    }

    /// `Reshape(x, shape)` with a computed shape: see the module docs.
    fn reshape(&mut self, g: &mut Graph, n: NodeId, opset: i64) {
        if opset < 5 || attr_int(g, n, "allowzero").unwrap_or(0) != 0 {
            return;
        }
        let (Some(x), Some(s)) = (input(g, n, 0), input(g, n, 1)) else {
            return;
        };
        if is_const(g, s) {
            return;
        }
        let x_dims = dims_of(g, x);
        let new_shape = self.vec_of(g, s).and_then(|sv| {
            if sv.scalar {
                return None;
            }
            let mut out = vec![];
            let mut unknown = None;
            for (i, e) in sv.elems.iter().enumerate() {
                match e {
                    Sym::Fixed(k) => out.push(*k),
                    e if is_dim_of(e, x, x_dims, i) => out.push(0),
                    _ if unknown.is_none() => {
                        unknown = Some(i);
                        out.push(-1);
                    }
                    _ => return None,
                }
            }
            // One element left to infer: only when nothing else is -1 (a copied
            // dimension of size 0 would make the inference divide by zero; a
            // symbolic dimension is assumed not to be 0, as ONNX Runtime does).
            if let Some(u) = unknown {
                let others_ok = out.iter().enumerate().all(|(i, &k)| {
                    i == u
                        || k > 0
                        || (k == 0
                            && x_dims
                                .and_then(|d| d.get(i))
                                .is_some_and(|d| d.as_fixed() != Some(0)))
                });
                if !others_ok {
                    return None;
                }
            }
            Some(out)
        });
        let new_shape = new_shape.or_else(|| {
            // Both shapes fully fixed: the output's dims are the shape, unless the
            // shape is computed from data the caller gives (an input, even one
            // with a default, may change it whatever the inferred types say).
            if reads_graph_data(g, s) {
                return None;
            }
            let xd = x_dims?;
            let out = g.node(n).outputs.first().copied().flatten()?;
            let od = dims_of(g, out)?;
            let fixed = |d: &[Dim]| d.iter().map(|d| d.as_fixed()).collect::<Option<Vec<i64>>>();
            let (xf, of) = (fixed(xd)?, fixed(od)?);
            if of.iter().any(|&k| k <= 0)
                || xf.iter().product::<i64>() != of.iter().product::<i64>()
            {
                return None;
            }
            Some(of)
        });
        if let Some(shape) = new_shape {
            self.set_const_input(g, n, 1, shape, "shape");
        }
    }

    /// `Expand(x, shape)` with a computed shape: see the module docs.
    fn expand(&mut self, g: &mut Graph, n: NodeId) {
        let (Some(x), Some(s)) = (input(g, n, 0), input(g, n, 1)) else {
            return;
        };
        if is_const(g, s) {
            return;
        }
        let Some(sv) = self.vec_of(g, s) else { return };
        if sv.scalar || sv.fixed().is_some() {
            // A fully known shape becomes a constant by itself (see `track`).
            return;
        }
        let x_dims = dims_of(g, x);
        let rank = x_dims.map(|d| d.len());
        let len = sv.elems.len();
        let mut out = vec![];
        for (i, e) in sv.elems.iter().enumerate() {
            match e {
                Sym::Fixed(k) => out.push(*k),
                e => {
                    // Aligned from the right; without x's rank there is no alignment.
                    let j = rank.and_then(|r| (i + r).checked_sub(len));
                    match j {
                        Some(j) if is_dim_of(e, x, x_dims, j) => out.push(1),
                        _ => return,
                    }
                }
            }
        }
        self.set_const_input(g, n, 1, out, "shape");
    }
}

/// Whether the data of `v` may depend on a graph input (or a value of an
/// enclosing graph): only the shapes of Shape's and Size's inputs are read.
fn reads_graph_data(g: &Graph, v: ValueId) -> bool {
    let mut stack = vec![v];
    let mut seen = std::collections::HashSet::new();
    while let Some(v) = stack.pop() {
        if !seen.insert(v) || seen.len() > 256 {
            return seen.len() > 256;
        }
        match g.value(v).def {
            ValueDef::Input | ValueDef::Outer => return true,
            ValueDef::Const => {}
            ValueDef::Node { node, .. } => {
                if !g.contains_node(node) {
                    return true;
                }
                let nd = g.node(node);
                if !is_onnx(nd) || !nd.attrs.iter().all(|a| a.value.graphs().is_empty()) {
                    return true;
                }
                if nd.op_type == "Shape" || nd.op_type == "Size" {
                    continue;
                }
                stack.extend(nd.inputs.iter().flatten());
            }
        }
    }
    false
}

/// The indices a 1-D Slice picks from `len` elements (ONNX's clamping rules).
fn slice_indices(len: i64, start: i64, end: i64, step: i64) -> Vec<usize> {
    let norm = |v: i64| if v < 0 { v.saturating_add(len) } else { v };
    let (mut s, e) = if step > 0 {
        (norm(start).clamp(0, len), norm(end).clamp(0, len))
    } else {
        (norm(start).clamp(0, len - 1), norm(end).clamp(-1, len - 1))
    };
    let mut out = vec![];
    while (step > 0 && s < e) || (step < 0 && s > e) {
        out.push(s as usize);
        s += step;
        if out.len() > MAX_LEN {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::slice_indices;
    use crate::{parse_model, print_model, PassManager, Pipeline};

    fn run(text: &str, pipeline: &str) -> crate::ir::model::Model {
        let mut m = parse_model(text).unwrap();
        let mut pm = PassManager::new(Pipeline::parse(pipeline).unwrap());
        pm.verify_each = true;
        pm.run(&mut m).unwrap();
        m
    }

    #[test]
    fn slice_indices_follow_onnx() {
        assert_eq!(slice_indices(4, 1, i64::MAX, 1), vec![1, 2, 3]);
        assert_eq!(slice_indices(4, -1, i64::MIN, -1), vec![3, 2, 1, 0]);
        assert_eq!(slice_indices(4, 0, -1, 2), vec![0, 2]);
        assert_eq!(slice_indices(4, 5, 9, 1), Vec::<usize>::new());
    }

    #[test]
    fn shape_start_end_opset15() {
        let text = "opset _=15\ngraph @g(%x: f32[batch,3,4]) -> (%y) {\n  %s = Shape(%x) {start=1}\n  %y = Cast(%s) {to=1}\n  return %y\n}\n";
        let m = run(text, "infer,(fold,shape-fold,dce)");
        assert_eq!(m.graph.node_count(), 1, "{}", print_model(&m));
        let out = print_model(&m);
        assert!(out.contains("%y = Constant()"), "{out}");
    }

    #[test]
    fn shape_before_opset15_ignores_start() {
        // Opset 13 Shape has no start: the whole (symbolic) shape stays computed.
        let text = "opset _=13\ngraph @g(%x: f32[batch,3,4]) -> (%y) {\n  %s = Shape(%x)\n  %y = Cast(%s) {to=1}\n  return %y\n}\n";
        let m = run(text, "infer,(fold,shape-fold,dce)");
        assert_eq!(m.graph.node_count(), 2);
    }

    #[test]
    fn unsqueeze_axes_attribute_before_13() {
        let text = "opset _=11\ngraph @g(%x: f32[batch,3,4]) -> (%y) {\n  %s = Shape(%x)\n  %i = const i64[] @i [0]\n  %b = Gather(%s, %i)\n  %b1 = Unsqueeze(%b) {axes=[0]}\n  %m = const i64[1] @m [12]\n  %t = Concat(%b1, %m) {axis=0}\n  %y = Reshape(%x, %t)\n  return %y\n}\n";
        let m = run(text, "infer,(fold,shape-fold,dce)");
        assert_eq!(m.graph.node_count(), 1, "{}", print_model(&m));
        let y = m.graph.outputs[0];
        let r = m.graph.producer(y).unwrap();
        let s = m.graph.node(r).inputs[1].unwrap();
        assert_eq!(
            crate::pass::edit::const_i64s(&m.graph, s).unwrap(),
            vec![0, 12]
        );
    }

    #[test]
    fn reshape_with_moved_symbolic_dim_uses_minus_one() {
        // [b, 8, s, 4] -> [b, s, 32]: s moves, so it is written -1.
        let text = "opset _=17\ngraph @g(%x: f32[b,8,s,4]) -> (%y) {\n  %sh = Shape(%x)\n  %i0 = const i64[1] @i0 [0]\n  %i2 = const i64[1] @i2 [2]\n  %d0 = Gather(%sh, %i0)\n  %d2 = Gather(%sh, %i2)\n  %c = const i64[1] @c [32]\n  %t = Concat(%d0, %d2, %c) {axis=0}\n  %y = Reshape(%x, %t)\n  return %y\n}\n";
        let m = run(text, "infer,(fold,shape-fold,dce)");
        assert_eq!(m.graph.node_count(), 1, "{}", print_model(&m));
        let y = m.graph.outputs[0];
        let r = m.graph.producer(y).unwrap();
        let s = m.graph.node(r).inputs[1].unwrap();
        assert_eq!(
            crate::pass::edit::const_i64s(&m.graph, s).unwrap(),
            vec![0, -1, 32]
        );
    }

    #[test]
    fn two_moved_symbolic_dims_stay() {
        let text = "opset _=17\ngraph @g(%x: f32[b,s,t]) -> (%y) {\n  %sh = Shape(%x)\n  %i = const i64[3] @i [2, 1, 0]\n  %t = Gather(%sh, %i)\n  %y = Reshape(%x, %t)\n  return %y\n}\n";
        let m = run(text, "infer,(fold,shape-fold,dce)");
        assert_eq!(m.graph.node_count(), 3, "{}", print_model(&m));
    }
}
