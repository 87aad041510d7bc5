//! `gemm-fold`: `Add(MatMul(A, B), C)` becomes `Gemm(A, B, C)` when the ranks
//! allow.
//!
//! Conditions: `A` and `B` are matrices (rank 2, known from their types, their
//! constant data, or a producer such as Flatten or a Reshape to a constant
//! 2-element shape), the element type is a float Gemm takes at the model's opset
//! (f32, f64, f16; bf16 from opset 13), the opset is at least 7 (Gemm's
//! unidirectional broadcast of `C`), the MatMul's output has no other reader, and
//! `C` broadcasts to `[M, N]` without widening the Add's output: a scalar, `[N]`,
//! `[1|M, 1|N]`. `C` need not be constant.
//!
//! Left alone: MatMuls of rank 3 or more (a transformer's `[batch, seq, k]`
//! projections: turning them into Gemm needs Reshapes around it, a later rule
//! that knows the shapes), a MatMul whose rank is unknown, integer types, and a
//! bias that would widen the output (`[2, M, N]`, `[M, N]` read against a
//! smaller product).
//!
//! ```
//! let text = "opset _=17\ngraph @g(%x: f32[3,4]) -> (%y) {\n  %w = const f32[4,2] @w [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]\n  %b = const f32[2] @b [0.5, -0.5]\n  %m = MatMul(%x, %w)\n  %y = Add(%m, %b)\n  return %y\n}\n";
//! let mut m = modc::parse_model(text).unwrap();
//! modc::PassManager::new(modc::Pipeline::parse("gemm-fold,dce").unwrap()).run(&mut m).unwrap();
//! assert_eq!(m.graph.node_count(), 1);
//! assert!(modc::print_model(&m).contains("= Gemm(%x, "));
//! ```

use super::conv_fold::{dtype_of, fold_each, is_float, rank_of, Uses};
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, NodeId, ValueId};
use crate::ir::types::{Dim, DimValue};
use crate::pass::edit::{const_value, is_op, replace_value};
use crate::pass::{Pass, PassCtx, PassError};

pub struct GemmFold;

impl Pass for GemmFold {
    fn name(&self) -> &'static str {
        "gemm-fold"
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        if cx.opset < 7 {
            return Ok(false);
        }
        Ok(fold_each(g, cx, "MatMul", try_fold))
    }
}

/// The dimensions of a value: of its constant data, or its declared shape.
fn dims(g: &Graph, v: ValueId) -> Option<Vec<Dim>> {
    if let Some(t) = const_value(g, v) {
        return Some(t.shape().iter().map(|&d| Dim::fixed(d as i64)).collect());
    }
    let (_, s) = g.value(v).ty.as_ref()?.as_tensor()?;
    Some(s?.dims.clone())
}

/// Known to be the same dimension (equal numbers or equal names).
fn same(a: &Dim, b: &Dim) -> bool {
    a.value == b.value && a.value != DimValue::Unknown
}

fn is_one(d: &Dim) -> bool {
    d.as_fixed() == Some(1)
}

fn try_fold(g: &mut Graph, cx: &PassCtx, uses: &Uses, mm: NodeId) -> Option<()> {
    let node = g.node(mm);
    let (a, b) = match node.inputs.as_slice() {
        [Some(a), Some(b)] => (*a, *b),
        _ => return None,
    };
    let y = match node.outputs.as_slice() {
        [Some(y)] => *y,
        _ => return None,
    };
    let (add, slot) = uses.sole_reader(g, y)?;
    let an = g.node(add);
    if !is_op(an, "Add") || an.inputs.len() != 2 {
        return None;
    }
    let c = an.inputs[1 - slot]?;
    let out = an.outputs.first().copied().flatten()?;
    // The operands share one type (MatMul and Add require it); any known one tells.
    let known: Vec<DType> = [a, b, c].iter().filter_map(|&v| dtype_of(g, v)).collect();
    let dt = *known.first()?;
    if known.iter().any(|&d| d != dt) || !is_float(dt) || (dt == DType::BF16 && cx.opset < 13) {
        return None;
    }
    if rank_of(g, a)? != 2 || rank_of(g, b)? != 2 {
        return None;
    }
    // Unknown dimensions only match a bias dimension of 1.
    let dim2 = |v| dims(g, v).filter(|d| d.len() == 2);
    let da = dim2(a).unwrap_or_else(|| vec![Dim::unknown(), Dim::unknown()]);
    let db = dim2(b).unwrap_or_else(|| vec![Dim::unknown(), Dim::unknown()]);
    let dc = dims(g, c)?;
    let (m, n) = (&da[0], &db[1]);
    let fits = match dc.as_slice() {
        [] => true,
        [c1] => is_one(c1) || same(c1, n),
        [c0, c1] => (is_one(c0) || same(c0, m)) && (is_one(c1) || same(c1, n)),
        _ => false,
    };
    if !fits {
        return None;
    }
    let gn = g.node_mut(mm);
    gn.op_type = "Gemm".to_string();
    gn.inputs.push(Some(c));
    replace_value(g, out, y);
    g.remove_node(add);
    Some(())
}

#[cfg(test)]
mod tests {
    use super::super::conv_fold::testing::check;

    fn text(opset: i64, dt: &str) -> String {
        format!("opset _={opset}\ngraph @g(%x: {dt}[3,2]) -> (%y) {{\n  %w = const {dt}[2,2] @w [1.0, 2.0, 3.0, 4.0]\n  %b = const {dt}[2] @b [0.5, -0.5]\n  %m = MatMul(%x, %w)\n  %y = Add(%m, %b)\n  return %y\n}}\n")
    }

    #[test]
    fn opsets_and_types() {
        assert_eq!(check(&text(6, "f32"), "gemm-fold", true).1, 0);
        assert_eq!(check(&text(7, "f32"), "gemm-fold", true).1, 1);
        assert_eq!(check(&text(17, "f64"), "gemm-fold", true).1, 1);
    }

    #[test]
    fn rank_from_a_reshape_or_flatten() {
        let t = "opset _=17\ngraph @g(%x: f32[1,2,2,2]) -> (%y, %z) {\n  %s = const i64[2] @s [1, 8]\n  %w = const f32[8,2] @w [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]\n  %b = const f32[2] @b [0.5, -0.5]\n  %r = Reshape(%x, %s)\n  %m = MatMul(%r, %w)\n  %y = Add(%m, %b)\n  %f = Flatten(%x)\n  %n = MatMul(%f, %w)\n  %z = Add(%b, %n)\n  return %y, %z\n}\n";
        let (m, n) = check(t, "gemm-fold", true);
        assert_eq!(n, 2);
        assert_eq!(m.graph.node_count(), 4);
    }

    #[test]
    fn then_conv_fold_scales_the_gemm() {
        let t = text(17, "f32").replace(
            "%y = Add(%m, %b)",
            "%a = Add(%m, %b)\n  %k = const f32[1,2] @k [2.0, -1.0]\n  %y = Mul(%a, %k)",
        );
        let (m, _) = check(&t, "(gemm-fold,conv-fold,dce),init-cleanup", true);
        assert_eq!(m.graph.node_count(), 1);
    }
}
