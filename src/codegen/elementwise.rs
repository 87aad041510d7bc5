//! (being written)

use super::spec::{Lowering, NodeInfo};

pub(crate) fn lower(_info: &NodeInfo) -> Option<Lowering> {
    None
}
