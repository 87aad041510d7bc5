//! (being written)

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};

pub struct Noop;

impl Pass for Noop {
    fn name(&self) -> &'static str {
        "noop"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}

pub struct MergeChains;

impl Pass for MergeChains {
    fn name(&self) -> &'static str {
        "merge-chains"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}
