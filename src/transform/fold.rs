//! (being written)

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};

pub struct Fold;

impl Pass for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}
