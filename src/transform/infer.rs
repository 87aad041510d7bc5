//! Shape inference as a pass: [`crate::infer_shapes`] on one graph and its
//! subgraphs. It changes nothing but types, and reports a change only when a value
//! got a type or a more precise one.

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};

pub struct InferShapes;

impl Pass for InferShapes {
    fn name(&self) -> &'static str {
        "infer"
    }
    fn recurse(&self) -> bool {
        false
    }
    fn run(&self, g: &mut Graph, cx: &mut PassCtx) -> Result<bool, PassError> {
        let r = crate::ops::shape_infer::infer_graph_shapes(g, cx.opset);
        cx.rewrites += r.inferred;
        Ok(r.inferred > 0)
    }
}
