//! Operators: for each supported ONNX op, a reference CPU kernel, registered by
//! domain and op type. One file per op family.
//!
//! A kernel receives an [`OpCtx`] (the node, its attributes, the opset version of
//! its domain) and its inputs (`None` for an empty optional slot) and returns its
//! outputs in order. Control flow (If, Loop, Scan) and model-local functions need
//! the interpreter itself and live in `interp/`.
//!
//! ```
//! let reg = modc::OpRegistry::standard();
//! assert!(reg.get("", "Add").is_some());
//! ```

use crate::interp::value::{RtValue, TensorValue};
use crate::ir::attr::AttrValue;
use crate::ir::graph::Node;
use crate::ir::tensor::Tensor;
use std::collections::HashMap;

mod attention;
mod binary;
pub(crate) mod broadcast;
pub(crate) mod cast;
pub(crate) mod conv;
mod elementwise;
mod gather;
mod index;
mod logical;
mod loss;
mod matmul;
mod misc;
mod norm;
mod pool;
mod quant;
pub(crate) mod recurrent;
mod reduce;
pub(crate) mod resize;
mod sequence;
mod shape;
pub(crate) mod shape_infer;
pub mod shape_values;
pub(crate) use shape::concat_tensors;
mod signal;
mod softmax;
mod strings;
mod unary;

/// What went wrong inside a kernel; the interpreter adds the node's name.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OpError {
    #[error("{0}")]
    Invalid(String),
    #[error("not supported: {0}")]
    Unsupported(String),
}

pub type OpResult = Result<Vec<RtValue>, OpError>;

/// A kernel: the node's context and its inputs → its outputs.
pub type Kernel = fn(&OpCtx, &[Option<RtValue>]) -> OpResult;

/// The context a kernel runs in.
pub struct OpCtx<'a> {
    pub node: &'a Node,
    /// The opset version imported for the node's domain.
    pub opset: i64,
}

impl OpCtx<'_> {
    fn attr(&self, name: &str) -> Option<&AttrValue> {
        self.node.attr(name).map(|a| &a.value)
    }
    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).and_then(|a| a.as_int()).unwrap_or(default)
    }
    pub fn int_opt(&self, name: &str) -> Option<i64> {
        self.attr(name).and_then(|a| a.as_int())
    }
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.attr(name)
            .and_then(|a| a.as_float())
            .unwrap_or(default)
    }
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name)
            .and_then(|a| a.as_ints())
            .map(|v| v.to_vec())
    }
    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        match self.attr(name) {
            Some(AttrValue::Floats(v)) => Some(v.clone()),
            _ => None,
        }
    }
    pub fn string(&self, name: &str) -> Option<String> {
        self.attr(name)
            .and_then(|a| a.as_str())
            .map(|s| String::from_utf8_lossy(s).into_owned())
    }
    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        match self.attr(name) {
            Some(AttrValue::Strings(v)) => Some(
                v.iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            ),
            _ => None,
        }
    }
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        match self.attr(name) {
            Some(AttrValue::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Input `i` as a tensor; an error naming the slot when it is missing.
    pub fn input<'v>(
        &self,
        inputs: &'v [Option<RtValue>],
        i: usize,
    ) -> Result<&'v TensorValue, OpError> {
        match inputs.get(i) {
            Some(Some(RtValue::Tensor(t))) => Ok(t),
            Some(Some(_)) => Err(OpError::Invalid(format!("input {i} is not a tensor"))),
            _ => Err(OpError::Invalid(format!("input {i} is missing"))),
        }
    }
    /// Input `i` as a tensor, or `None` when the optional slot is empty or absent.
    pub fn opt_input<'v>(
        &self,
        inputs: &'v [Option<RtValue>],
        i: usize,
    ) -> Result<Option<&'v TensorValue>, OpError> {
        match inputs.get(i) {
            Some(Some(RtValue::Tensor(t))) => Ok(Some(t)),
            Some(Some(_)) => Err(OpError::Invalid(format!("input {i} is not a tensor"))),
            _ => Ok(None),
        }
    }
    /// An integer input read as a list of i64 (shapes, axes, indices).
    pub fn i64s(&self, inputs: &[Option<RtValue>], i: usize) -> Result<Vec<i64>, OpError> {
        self.input(inputs, i)?
            .to_i64_vec()
            .ok_or_else(|| OpError::Invalid(format!("input {i} must be an integer tensor")))
    }
    pub fn opt_i64s(
        &self,
        inputs: &[Option<RtValue>],
        i: usize,
    ) -> Result<Option<Vec<i64>>, OpError> {
        match self.opt_input(inputs, i)? {
            Some(t) => Ok(Some(t.to_i64_vec().ok_or_else(|| {
                OpError::Invalid(format!("input {i} must be an integer tensor"))
            })?)),
            None => Ok(None),
        }
    }
}

/// One result: a single tensor output.
pub fn one(t: TensorValue) -> OpResult {
    Ok(vec![RtValue::Tensor(t)])
}

/// Normalises a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r.max(1) {
        return Err(OpError::Invalid(format!(
            "axis {axis} is out of range for rank {rank}"
        )));
    }
    Ok(a as usize)
}

/// The kernels, by (domain, op type). `""` and `"ai.onnx"` are the same domain.
pub struct OpRegistry {
    /// domain → op type → kernel (looked up without allocating).
    kernels: HashMap<String, HashMap<String, Kernel>>,
}

impl OpRegistry {
    /// Every kernel modc has.
    pub fn standard() -> OpRegistry {
        let mut r = OpRegistry {
            kernels: HashMap::new(),
        };
        elementwise::register(&mut r);
        unary::register(&mut r);
        binary::register(&mut r);
        logical::register(&mut r);
        cast::register(&mut r);
        shape::register(&mut r);
        index::register(&mut r);
        gather::register(&mut r);
        matmul::register(&mut r);
        conv::register(&mut r);
        pool::register(&mut r);
        reduce::register(&mut r);
        norm::register(&mut r);
        softmax::register(&mut r);
        resize::register(&mut r);
        recurrent::register(&mut r);
        quant::register(&mut r);
        sequence::register(&mut r);
        signal::register(&mut r);
        misc::register(&mut r);
        strings::register(&mut r);
        attention::register(&mut r);
        loss::register(&mut r);

        r
    }

    pub fn add(&mut self, op: &str, k: Kernel) {
        self.add_in("", op, k);
    }
    pub fn add_in(&mut self, domain: &str, op: &str, k: Kernel) {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.kernels
            .entry(d.to_string())
            .or_default()
            .insert(op.to_string(), k);
    }

    pub fn get(&self, domain: &str, op: &str) -> Option<Kernel> {
        let d = if domain == "ai.onnx" { "" } else { domain };
        self.kernels.get(d)?.get(op).copied()
    }

    /// Sorted names of every registered op (`domain::op` outside the default domain).
    pub fn op_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .kernels
            .iter()
            .flat_map(|(d, ops)| {
                ops.keys().map(move |o| {
                    if d.is_empty() {
                        o.clone()
                    } else {
                        format!("{d}::{o}")
                    }
                })
            })
            .collect();
        v.sort();
        v
    }
}
