//! (being written)

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};

pub struct ShapeFold;

impl Pass for ShapeFold {
    fn name(&self) -> &'static str {
        "shape-fold"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}
