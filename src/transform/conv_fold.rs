//! (being written)

use crate::ir::graph::Graph;
use crate::pass::{Pass, PassCtx, PassError};

pub struct ConvFold;

impl Pass for ConvFold {
    fn name(&self) -> &'static str {
        "conv-fold"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}

pub struct PadFold;

impl Pass for PadFold {
    fn name(&self) -> &'static str {
        "pad-fold"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}

pub struct GemmFold;

impl Pass for GemmFold {
    fn name(&self) -> &'static str {
        "gemm-fold"
    }
    fn run(&self, _g: &mut Graph, _cx: &mut PassCtx) -> Result<bool, PassError> {
        Ok(false)
    }
}
