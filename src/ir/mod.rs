//! The IR: graphs, nodes, values, tensors, types, attributes, and the text form.

pub mod attr;
pub mod dtype;
pub mod graph;
pub mod model;
pub mod tensor;
pub mod text;
pub mod types;
pub mod verify;
