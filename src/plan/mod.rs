//! Lowering a graph to a plan: a schedule of steps, tensor lifetimes, and a memory
//! plan that packs intermediate tensors into arenas with reuse (being written).

pub mod shapes;
