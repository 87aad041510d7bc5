//! Output types of the recurrent ops (LSTM, GRU, RNN): they depend only on
//! the input shapes and attributes, never on values.
//!
//! With `layout` 0, X is `[seq, batch, input]`, Y `[seq, dirs, batch, hidden]`
//! and the states `[dirs, batch, hidden]`; with `layout` 1, X is
//! `[batch, seq, input]`, Y `[batch, seq, dirs, hidden]` and the states
//! `[batch, dirs, hidden]`. The hidden size is the `hidden_size` attribute, or
//! R's last dimension.

use super::{attr_int, dims_of, parts, tensor};
use crate::ir::graph::Node;
use crate::ir::types::{Dim, Type};

/// Y, Y_h (and Y_c for LSTM), as far as the shapes of X and R tell.
pub(super) fn infer(n: &Node, ins: &[Option<Type>]) -> Vec<Option<Type>> {
    let Some((elem, Some(x))) = parts(ins.first().unwrap_or(&None)) else {
        return vec![];
    };
    if x.len() != 3 {
        return vec![];
    }
    let dirs = match n.attr("direction").and_then(|a| a.value.as_str()) {
        Some(b"bidirectional") => 2,
        _ => 1,
    };
    let hidden = match attr_int(n, "hidden_size", -1) {
        h if h > 0 => Dim::fixed(h),
        _ => match ins.get(2).and_then(dims_of) {
            Some(r) if r.len() == 3 => r[2].clone(),
            _ => Dim::unknown(),
        },
    };
    let layout = attr_int(n, "layout", 0);
    let (seq, batch) = if layout == 0 {
        (x[0].clone(), x[1].clone())
    } else {
        (x[1].clone(), x[0].clone())
    };
    let dirs = Dim::fixed(dirs);
    let (y, state) = if layout == 0 {
        (
            vec![seq, dirs.clone(), batch.clone(), hidden.clone()],
            vec![dirs, batch, hidden],
        )
    } else {
        (
            vec![batch.clone(), seq, dirs.clone(), hidden.clone()],
            vec![batch, dirs, hidden],
        )
    };
    let states = if n.op_type == "LSTM" { 2 } else { 1 };
    let mut out = vec![tensor(elem, y)];
    out.extend((0..states).map(|_| tensor(elem, state.clone())));
    out
}
