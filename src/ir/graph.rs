//! The graph: an arena of nodes and first-class values.
//!
//! A [`Graph`] owns its nodes and values. Ids ([`NodeId`], [`ValueId`]) stay valid
//! while nodes are added and removed (removed nodes leave a tombstone). A node may
//! have several outputs, and input or output slots may be empty, as ONNX allows.
//! Values a subgraph reads from an enclosing graph are `Outer` values of the
//! subgraph, resolved by name.
//!
//! ```
//! use modc::{DType, Graph, Shape, Type};
//! let mut g = Graph::new("main");
//! let x = g.add_input("x", Some(Type::tensor(DType::F32, Shape::fixed(&[4]))));
//! let (_, outs) = g.add_node("Relu", "", vec![Some(x)], &["y"], vec![]);
//! g.outputs.push(outs[0]);
//! assert_eq!(g.node_count(), 1);
//! assert_eq!(g.topo_order().unwrap().len(), 1);
//! ```

use crate::ir::attr::Attr;
use crate::ir::tensor::{SparseTensor, Tensor};
use crate::ir::types::Type;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

/// What defines a value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueDef {
    /// A graph input (it may also have a default, see [`Value::init`]).
    Input,
    /// Output `slot` of `node`.
    Node { node: NodeId, slot: usize },
    /// An initializer that is not a graph input: a constant.
    Const,
    /// A name defined by an enclosing graph (subgraphs only).
    Outer,
}

/// An initializer's data.
#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    Dense(Tensor),
    Sparse(Box<SparseTensor>),
}

/// A value: a name, an optional declared type, and what defines it.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub name: String,
    pub ty: Option<Type>,
    pub def: ValueDef,
    /// Data of an initializer: set for `Const` values and for inputs with a default.
    pub init: Option<Initializer>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
}

/// A node keeps its ONNX identity and attributes losslessly.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: Option<String>,
    pub op_type: String,
    /// The operator domain as written; `""` is the default ONNX domain.
    pub domain: String,
    pub overload: Option<String>,
    pub inputs: Vec<Option<ValueId>>,
    pub outputs: Vec<Option<ValueId>>,
    pub attrs: Vec<Attr>,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
    /// ONNX fields modc does not interpret (device configurations), kept verbatim.
    pub device_configurations: Vec<crate::onnx::proto::NodeDeviceConfigurationProto>,
}

impl Node {
    /// A node of `op_type` in `domain` (`""` is ONNX's) with the given attributes and
    /// no inputs, outputs or metadata yet.
    pub fn new(op_type: &str, domain: &str, attrs: Vec<Attr>) -> Node {
        Node {
            name: None,
            op_type: op_type.to_string(),
            domain: domain.to_string(),
            overload: None,
            inputs: vec![],
            outputs: vec![],
            attrs,
            doc_string: None,
            metadata_props: vec![],
            device_configurations: vec![],
        }
    }

    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
}

/// A graph (the model's main graph, a subgraph of If/Loop/Scan, or a function body).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Graph {
    pub name: String,
    pub doc_string: Option<String>,
    values: Vec<Value>,
    nodes: Vec<Option<Node>>,
    pub inputs: Vec<ValueId>,
    pub outputs: Vec<ValueId>,
    /// Initializers in file order (dense and sparse); each is a `Const` value or an input.
    pub initializers: Vec<ValueId>,
    /// Values that had a `value_info` entry, in file order.
    pub value_info: Vec<ValueId>,
    pub metadata_props: Vec<(String, String)>,
    /// ONNX fields modc does not interpret, kept verbatim.
    pub quantization_annotation: Vec<crate::onnx::proto::TensorAnnotation>,
}

impl Graph {
    pub fn new(name: &str) -> Graph {
        Graph {
            name: name.to_string(),
            ..Graph::default()
        }
    }

    pub fn value(&self, id: ValueId) -> &Value {
        &self.values[id.0 as usize]
    }
    pub fn value_mut(&mut self, id: ValueId) -> &mut Value {
        &mut self.values[id.0 as usize]
    }
    /// Every value id, including values of removed nodes.
    pub fn value_ids(&self) -> impl Iterator<Item = ValueId> {
        (0..self.values.len() as u32).map(ValueId)
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[id.0 as usize]
            .as_ref()
            .expect("node was removed")
    }
    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        self.nodes[id.0 as usize]
            .as_mut()
            .expect("node was removed")
    }
    pub fn contains_node(&self, id: NodeId) -> bool {
        self.nodes.get(id.0 as usize).is_some_and(|n| n.is_some())
    }
    /// Live nodes in insertion order.
    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_some())
            .map(|(i, _)| NodeId(i as u32))
    }
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }
    pub fn node_count(&self) -> usize {
        self.nodes.iter().filter(|n| n.is_some()).count()
    }

    pub fn add_value(&mut self, value: Value) -> ValueId {
        self.values.push(value);
        ValueId(self.values.len() as u32 - 1)
    }

    pub fn add_input(&mut self, name: &str, ty: Option<Type>) -> ValueId {
        let id = self.add_value(Value::new(name, ValueDef::Input));
        self.value_mut(id).ty = ty;
        self.inputs.push(id);
        id
    }

    /// Adds a constant (an initializer that is not an input).
    pub fn add_const(&mut self, tensor: Tensor) -> ValueId {
        let mut v = Value::new(&tensor.name, ValueDef::Const);
        v.init = Some(Initializer::Dense(tensor));
        let id = self.add_value(v);
        self.initializers.push(id);
        id
    }

    /// Adds a node in the default form and new output values named `outputs`.
    pub fn add_node(
        &mut self,
        op_type: &str,
        domain: &str,
        inputs: Vec<Option<ValueId>>,
        outputs: &[&str],
        attrs: Vec<Attr>,
    ) -> (NodeId, Vec<ValueId>) {
        let node = Node {
            inputs,
            ..Node::new(op_type, domain, attrs)
        };
        let id = self.push_node(node);
        let mut outs = Vec::new();
        for (slot, name) in outputs.iter().enumerate() {
            let v = self.add_value(Value::new(name, ValueDef::Node { node: id, slot }));
            outs.push(v);
            self.node_mut(id).outputs.push(Some(v));
        }
        (id, outs)
    }

    /// Adds a node whose output values already exist (their `def` is updated).
    pub fn push_node(&mut self, node: Node) -> NodeId {
        let id = NodeId(self.nodes.len() as u32);
        for (slot, out) in node.outputs.iter().enumerate() {
            if let Some(v) = out {
                self.values[v.0 as usize].def = ValueDef::Node { node: id, slot };
            }
        }
        self.nodes.push(Some(node));
        id
    }

    /// Removes a node; its output values stay but are no longer defined by it.
    pub fn remove_node(&mut self, id: NodeId) -> Option<Node> {
        self.nodes.get_mut(id.0 as usize).and_then(|n| n.take())
    }

    /// The node producing `v`, if any.
    pub fn producer(&self, v: ValueId) -> Option<NodeId> {
        match self.value(v).def {
            ValueDef::Node { node, .. } if self.contains_node(node) => Some(node),
            _ => None,
        }
    }

    /// Nodes in a topological order that keeps the insertion order wherever the
    /// dependencies allow (so an already sorted graph keeps its order exactly).
    /// Returns the nodes on a cycle as the error.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Vec<NodeId>> {
        let live: Vec<NodeId> = self.node_ids().collect();
        let mut indegree: HashMap<NodeId, usize> = HashMap::new();
        let mut users: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        // Values subgraphs read by name count as inputs of the node holding them.
        let mut by_name: Option<HashMap<&str, NodeId>> = None;
        for &n in &live {
            let mut preds = HashSet::new();
            for v in self.node(n).inputs.iter().flatten() {
                if let Some(p) = self.producer(*v) {
                    preds.insert(p);
                }
            }
            for a in &self.node(n).attrs {
                for sub in a.value.graphs() {
                    let names = by_name.get_or_insert_with(|| {
                        self.nodes()
                            .flat_map(|(id, node)| {
                                node.outputs
                                    .iter()
                                    .flatten()
                                    .map(move |&v| (self.value(v).name.as_str(), id))
                            })
                            .collect()
                    });
                    for name in crate::fused::outer_reads(sub) {
                        if let Some(&p) = names.get(name.as_str()) {
                            if p != n {
                                preds.insert(p);
                            }
                        }
                    }
                }
            }
            indegree.insert(n, preds.len());
            for p in preds {
                users.entry(p).or_default().push(n);
            }
        }
        let mut ready: BinaryHeap<std::cmp::Reverse<NodeId>> = live
            .iter()
            .filter(|n| indegree[n] == 0)
            .map(|&n| std::cmp::Reverse(n))
            .collect();
        let mut order = Vec::with_capacity(live.len());
        while let Some(std::cmp::Reverse(n)) = ready.pop() {
            order.push(n);
            for &u in users.get(&n).map(|v| v.as_slice()).unwrap_or(&[]) {
                let d = indegree.get_mut(&u).expect("user is live");
                *d -= 1;
                if *d == 0 {
                    ready.push(std::cmp::Reverse(u));
                }
            }
        }
        if order.len() == live.len() {
            Ok(order)
        } else {
            let done: HashSet<NodeId> = order.into_iter().collect();
            Err(live.into_iter().filter(|n| !done.contains(n)).collect())
        }
    }

    /// Users of every value: value → list of (node, input slot).
    pub fn uses(&self) -> HashMap<ValueId, Vec<(NodeId, usize)>> {
        let mut m: HashMap<ValueId, Vec<(NodeId, usize)>> = HashMap::new();
        for (id, n) in self.nodes() {
            for (slot, v) in n.inputs.iter().enumerate() {
                if let Some(v) = v {
                    m.entry(*v).or_default().push((id, slot));
                }
            }
        }
        m
    }

    /// Values read from enclosing graphs (by this graph or its own subgraphs).
    pub fn outer_values(&self) -> Vec<ValueId> {
        self.value_ids()
            .filter(|&v| self.value(v).def == ValueDef::Outer)
            .collect()
    }

    /// Looks a value up by its ONNX name.
    pub fn find_value(&self, name: &str) -> Option<ValueId> {
        self.value_ids().find(|&v| self.value(v).name == name)
    }

    /// The graph as a petgraph directed graph of nodes (edges follow values), for
    /// graph algorithms (cycle checks, dominators, cuts).
    pub fn dependency_graph(&self) -> petgraph::graphmap::DiGraphMap<NodeId, ValueId> {
        let mut g = petgraph::graphmap::DiGraphMap::new();
        for (id, n) in self.nodes() {
            g.add_node(id);
            for v in n.inputs.iter().flatten() {
                if let Some(p) = self.producer(*v) {
                    g.add_edge(p, id, *v);
                }
            }
        }
        g
    }

    /// Total number of nodes, including the nodes of every subgraph; a fused
    /// kernel node counts once (its body is its implementation).
    pub fn node_count_recursive(&self) -> usize {
        self.nodes()
            .map(|(_, n)| {
                if crate::fused::is_fused(n) {
                    return 1;
                }
                1 + n
                    .attrs
                    .iter()
                    .flat_map(|a| a.value.graphs())
                    .map(|g| g.node_count_recursive())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Counts of op types (`domain::op` for non-default domains), subgraphs
    /// included; a fused kernel node counts once (its body is its implementation).
    pub fn op_histogram(&self, into: &mut BTreeMap<String, usize>) {
        for (_, n) in self.nodes() {
            let key = if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}::{}", n.domain, n.op_type)
            };
            *into.entry(key).or_default() += 1;
            if crate::fused::is_fused(n) {
                continue;
            }
            for a in &n.attrs {
                for g in a.value.graphs() {
                    g.op_histogram(into);
                }
            }
        }
    }

    /// Calls `f` on every initializer tensor and tensor attribute, subgraphs included.
    pub fn for_each_tensor<'a>(&'a self, f: &mut dyn FnMut(&'a Tensor)) {
        for &v in &self.initializers {
            match &self.value(v).init {
                Some(Initializer::Dense(t)) => f(t),
                Some(Initializer::Sparse(s)) => {
                    f(&s.values);
                    f(&s.indices);
                }
                None => {}
            }
        }
        for (_, n) in self.nodes() {
            for a in &n.attrs {
                use crate::ir::attr::AttrValue as A;
                match &a.value {
                    A::Tensor(t) => f(t),
                    A::Tensors(ts) => ts.iter().for_each(&mut *f),
                    A::SparseTensor(s) => {
                        f(&s.values);
                        f(&s.indices);
                    }
                    A::SparseTensors(ss) => ss.iter().for_each(|s| {
                        f(&s.values);
                        f(&s.indices);
                    }),
                    A::Graph(g) => g.for_each_tensor(f),
                    A::Graphs(gs) => gs.iter().for_each(|g| g.for_each_tensor(f)),
                    _ => {}
                }
            }
        }
    }
}

impl Value {
    pub fn new(name: &str, def: ValueDef) -> Value {
        Value {
            name: name.to_string(),
            ty: None,
            def,
            init: None,
            doc_string: None,
            metadata_props: vec![],
        }
    }
}
