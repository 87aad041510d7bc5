//! The GPU runtime: a wgpu device ([`Gpu`]), running the kernels that
//! [`codegen::lower`](crate::codegen::lower) generates for a node ([`run_node`],
//! [`Gpu::run_kernels`], [`Gpu::time_kernels`]), and sessions that run a whole
//! model with CPU fallback for nodes without kernels ([`Session`]). A session
//! keeps its intermediate tensors in one arena buffer placed by the memory
//! planner ([`plan::pack`](crate::plan::pack)) and binds every dispatch once at
//! build ([`SessionMemory`] gives the figures).
//!
//! The device is picked by wgpu from the environment (`WGPU_BACKEND=vulkan|gl|...`
//! is honoured) or by a substring of the adapter's name ([`GpuOptions::adapter`]).
//! Without a GPU, Mesa's lavapipe (`llvmpipe`, Vulkan on the CPU) serves.
//!
//! ```no_run
//! use modc::runtime::{Gpu, GpuOptions};
//! let gpu = Gpu::new(&GpuOptions::default())?;
//! println!("{}", gpu.adapter_name());
//! # Ok::<(), modc::runtime::RuntimeError>(())
//! ```

mod arena;
mod bind;
mod device;
mod exec;
mod program;
mod session;
mod transfer;

pub use arena::{ArenaSlot, SessionMemory};
pub use device::{Gpu, GpuOptions};
pub use session::{OpBackends, Session, StepTime};

use crate::codegen::spec::{Lowering, NodeInfo, TensorDesc};
use crate::interp::value::TensorValue;
use crate::ir::graph::Node;
use std::sync::OnceLock;

/// What went wrong on the GPU path.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("no GPU adapter: {0} (install mesa-vulkan-drivers for lavapipe, or set WGPU_BACKEND)")]
    NoAdapter(String),
    #[error("no adapter whose name contains '{name}'; available: {}", if available.is_empty() { "none".to_string() } else { available.join("; ") })]
    NoMatchingAdapter {
        name: String,
        available: Vec<String>,
    },
    #[error("device: {0}")]
    Device(String),
    #[error("shader '{label}': {message}")]
    Shader { label: String, message: String },
    #[error("dispatch '{label}': {message}")]
    Dispatch { label: String, message: String },
    #[error("tensor '{name}': {message}")]
    Tensor { name: String, message: String },
    #[error("node '{node}' ({op}): no GPU kernel: {reason}")]
    Unsupported {
        node: String,
        op: String,
        reason: String,
    },
    #[error("node '{node}' ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
}

fn node_label(node: &Node) -> String {
    node.name
        .clone()
        .unwrap_or_else(|| format!("<{}>", node.op_type))
}

/// Lowers one node with [`codegen::lower`](crate::codegen::lower) and runs it on
/// host inputs (`None` = absent optional input). Every given input is also passed
/// to the generator as a constant, as if it were an initializer. An alias
/// (view op) returns input 0's elements with the output's shape.
pub fn run_node(
    gpu: &Gpu,
    node: &Node,
    opset: i64,
    inputs: &[Option<TensorValue>],
    outputs: &[TensorDesc],
) -> Result<Vec<TensorValue>, RuntimeError> {
    let info = NodeInfo {
        node,
        opset,
        inputs: inputs
            .iter()
            .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
            .collect(),
        outputs: outputs.to_vec(),
        consts: inputs.iter().map(|t| t.as_ref()).collect(),
        limits: gpu.limits(),
    };
    let fail = |message: String| RuntimeError::Node {
        node: node_label(node),
        op: node.op_type.clone(),
        message,
    };
    match crate::codegen::lower(&info) {
        Lowering::Kernels(k) => gpu
            .run_kernels(&k, inputs, outputs)
            .map_err(|e| fail(e.to_string())),
        Lowering::Alias => {
            let x = inputs
                .first()
                .and_then(|t| t.as_ref())
                .ok_or_else(|| fail("an alias needs input 0".into()))?;
            let out = outputs
                .first()
                .ok_or_else(|| fail("an alias needs output 0".into()))?;
            if x.len() != out.len() {
                return Err(fail(format!(
                    "alias of {:?} as {:?}: element counts differ",
                    x.shape(),
                    out.shape
                )));
            }
            // Through the device, so the alias path is the one sessions take.
            let d = gpu.upload("input 0", x)?;
            let mut v =
                gpu.download(&[("output 0", &d, &TensorDesc::new(x.dtype(), &out.shape))])?;
            Ok(vec![v.remove(0)])
        }
        Lowering::Unsupported(reason) => Err(RuntimeError::Unsupported {
            node: node_label(node),
            op: node.op_type.clone(),
            reason,
        }),
    }
}

/// The device for tests, opened once. `None` (after printing why to stderr) when
/// there is no adapter; panics with the reason when `MODC_REQUIRE_GPU=1`, so CI
/// fails instead of skipping.
pub fn test_device() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let r = GPU.get_or_init(|| Gpu::new(&GpuOptions::default()).map_err(|e| e.to_string()));
    match r {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("MODC_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("MODC_REQUIRE_GPU=1 but no GPU device: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
