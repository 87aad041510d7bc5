//! A model: the main graph, opset imports, functions and metadata.
//!
//! ```
//! use modc::{Graph, Model};
//! let m = Model::new(Graph::new("main"), &[("", 17)]);
//! assert_eq!(m.opset_version(""), Some(17));
//! assert_eq!(m.opset_version("ai.onnx"), Some(17));
//! ```

use crate::ir::attr::Attr;
use crate::ir::graph::Graph;
use crate::onnx::proto;

/// An opset import: a domain and its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    pub domain: String,
    pub version: i64,
}

/// A model-local ONNX function. Its body is a [`Graph`] whose inputs and outputs
/// are the function's formal parameters (without types).
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub domain: String,
    pub overload: Option<String>,
    /// Names of attributes without defaults.
    pub attributes: Vec<String>,
    /// Attributes with default values.
    pub attribute_defaults: Vec<Attr>,
    pub opset_imports: Vec<OpsetImport>,
    pub body: Graph,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
}

/// A whole ONNX model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub ir_version: Option<i64>,
    pub opset_imports: Vec<OpsetImport>,
    pub producer_name: Option<String>,
    pub producer_version: Option<String>,
    pub domain: Option<String>,
    pub model_version: Option<i64>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
    pub graph: Graph,
    pub functions: Vec<Function>,
    /// ONNX parts modc does not interpret (training info, device configurations),
    /// kept verbatim so a load/save round trip never drops them.
    pub training_info: Vec<proto::TrainingInfoProto>,
    pub configuration: Vec<proto::DeviceConfigurationProto>,
}

impl Model {
    pub fn new(graph: Graph, opsets: &[(&str, i64)]) -> Model {
        Model {
            ir_version: Some(10),
            opset_imports: opsets
                .iter()
                .map(|(d, v)| OpsetImport {
                    domain: d.to_string(),
                    version: *v,
                })
                .collect(),
            producer_name: Some("modc".into()),
            producer_version: Some(env!("CARGO_PKG_VERSION").into()),
            domain: None,
            model_version: None,
            doc_string: None,
            metadata_props: vec![],
            graph,
            functions: vec![],
            training_info: vec![],
            configuration: vec![],
        }
    }

    /// The imported version of `domain` (`""` and `"ai.onnx"` are the same domain).
    pub fn opset_version(&self, domain: &str) -> Option<i64> {
        let norm = |d: &str| {
            if d == "ai.onnx" {
                String::new()
            } else {
                d.to_string()
            }
        };
        let want = norm(domain);
        self.opset_imports
            .iter()
            .find(|o| norm(&o.domain) == want)
            .map(|o| o.version)
    }
}
