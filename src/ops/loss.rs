//! (being written)

use super::OpRegistry;

pub(super) fn register(_r: &mut OpRegistry) {}
