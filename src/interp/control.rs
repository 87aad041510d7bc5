//! Control flow (If, Loop, Scan), fused nodes and calls of model-local functions:
//! the nodes that run graphs of their own.

use super::value::{RtValue, TensorValue};
use super::{node_err, Frame, InterpError, Interpreter};
use crate::ir::attr::AttrValue;
use crate::ir::graph::{Graph, NodeId};
use crate::ir::model::{Function, OpsetImport};
use crate::map_tensor_same;
use ndarray::Axis;

pub(super) fn run(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    opsets: &[OpsetImport],
    opset: i64,
    frame: &Frame,
    args: Vec<Option<RtValue>>,
) -> Result<Vec<RtValue>, InterpError> {
    let node = g.node(n);
    let err = |m: String| node_err(g, n, m);
    let graph_attr = |name: &str| -> Result<&Graph, InterpError> {
        match node.attr(name).map(|a| &a.value) {
            Some(AttrValue::Graph(sub)) => Ok(sub),
            _ => Err(err(format!("attribute '{name}' (a graph) is missing"))),
        }
    };
    if crate::fused::is_fused(node) {
        // A function call: the body sees its inputs and nothing of this graph.
        let body = crate::fused::fused_body(node)
            .ok_or_else(|| err("the fused node has no graph attribute 'body'".into()))?;
        if args.len() != body.inputs.len() {
            return Err(err(format!(
                "the node has {} inputs, its body {}",
                args.len(),
                body.inputs.len()
            )));
        }
        let root = Frame {
            values: Default::default(),
            parent: None,
        };
        return interp.run_graph(body, opsets, &root, args);
    }
    match node.op_type.as_str() {
        "If" => {
            let cond = match args.first() {
                Some(Some(RtValue::Tensor(t))) => t
                    .to_i64_vec()
                    .filter(|v| v.len() == 1)
                    .map(|v| v[0] != 0)
                    .ok_or_else(|| err("the condition must be a one-element bool tensor".into()))?,
                _ => return Err(err("the condition is missing".into())),
            };
            let branch = graph_attr(if cond { "then_branch" } else { "else_branch" })?;
            interp.run_graph(branch, opsets, frame, vec![])
        }
        "Loop" => run_loop(interp, g, n, opsets, frame, args, graph_attr("body")?),
        "Scan" if opset >= 9 => run_scan(interp, g, n, opsets, frame, args, graph_attr("body")?),
        "Scan" => run_scan_v8(interp, g, n, opsets, frame, args, graph_attr("body")?),
        "SequenceMap" => run_sequence_map(interp, g, n, opsets, frame, args, graph_attr("body")?),
        op => Err(InterpError::Unsupported {
            node: super::node_name(g, n),
            op: format!("{op} (opset {opset})"),
            domain: node.domain.clone(),
        }),
    }
}

fn run_loop(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    opsets: &[OpsetImport],
    frame: &Frame,
    args: Vec<Option<RtValue>>,
    body: &Graph,
) -> Result<Vec<RtValue>, InterpError> {
    let err = |m: String| node_err(g, n, m);
    let scalar = |v: &Option<RtValue>| -> Result<Option<i64>, InterpError> {
        match v {
            None => Ok(None),
            Some(RtValue::Tensor(t)) => t
                .to_i64_vec()
                .filter(|v| v.len() == 1)
                .map(|v| Some(v[0]))
                .ok_or_else(|| err("M and cond must be one-element tensors".into())),
            Some(_) => Err(err("M and cond must be tensors".into())),
        }
    };
    let max_trips = scalar(args.first().unwrap_or(&None))?;
    let mut cond = scalar(args.get(1).unwrap_or(&None))?
        .map(|c| c != 0)
        .unwrap_or(true);
    let mut carried: Vec<RtValue> = args
        .iter()
        .skip(2)
        .map(|a| {
            a.clone()
                .ok_or_else(|| err("a loop-carried value is missing".into()))
        })
        .collect::<Result<_, _>>()?;
    let n_carried = carried.len();
    let n_scan = body.outputs.len().saturating_sub(1 + n_carried);
    let mut scans: Vec<Vec<RtValue>> = vec![Vec::new(); n_scan];
    let mut i: i64 = 0;
    while cond && max_trips.is_none_or(|m| i < m) {
        let mut inputs = vec![
            Some(RtValue::Tensor(TensorValue::from_i64(&[], vec![i]))),
            Some(RtValue::Tensor(TensorValue::Bool(
                ndarray::arr0(cond).into_dyn(),
            ))),
        ];
        inputs.extend(carried.iter().cloned().map(Some));
        let outs = interp.run_graph(body, opsets, frame, inputs)?;
        if outs.len() != 1 + n_carried + n_scan {
            return Err(err(format!(
                "the body returned {} values, expected {}",
                outs.len(),
                1 + n_carried + n_scan
            )));
        }
        let mut it = outs.into_iter();
        cond = match it.next() {
            Some(RtValue::Tensor(t)) => t
                .to_i64_vec()
                .and_then(|v| v.first().copied())
                .map(|c| c != 0)
                .unwrap_or(false),
            _ => return Err(err("the body's condition output must be a tensor".into())),
        };
        carried = it.by_ref().take(n_carried).collect();
        for (k, v) in it.enumerate() {
            scans[k].push(v);
        }
        i += 1;
    }
    let mut out = carried;
    for (k, items) in scans.into_iter().enumerate() {
        let declared = body
            .outputs
            .get(1 + n_carried + k)
            .and_then(|&o| body.value(o).ty.clone());
        out.push(stack(&items, 0, declared.as_ref()).map_err(err)?);
    }
    Ok(out)
}

/// Stacks tensors along a new axis (or, for non-tensor items, makes a sequence).
fn stack(
    items: &[RtValue],
    axis: usize,
    declared: Option<&crate::ir::types::Type>,
) -> Result<RtValue, String> {
    if items.is_empty() {
        let elem = declared
            .and_then(|t| t.as_tensor())
            .map(|(e, _)| e)
            .unwrap_or(crate::DType::F32);
        return TensorValue::zeros(elem, &[0])
            .map(RtValue::Tensor)
            .map_err(|e| e.to_string());
    }
    let tensors: Vec<&TensorValue> = items
        .iter()
        .map(|i| {
            i.as_tensor()
                .ok_or("scan outputs must be tensors".to_string())
        })
        .collect::<Result<_, _>>()?;
    let expanded: Vec<TensorValue> = tensors
        .iter()
        .map(|t| map_tensor_same!(t, a => a.clone().insert_axis(Axis(axis))))
        .collect();
    let refs: Vec<&TensorValue> = expanded.iter().collect();
    let t = crate::ops::concat_tensors(&refs, axis as i64)
        .map_err(|e| format!("scan outputs do not stack: {e}"))?;
    Ok(RtValue::Tensor(t))
}

fn run_scan(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    opsets: &[OpsetImport],
    frame: &Frame,
    args: Vec<Option<RtValue>>,
    body: &Graph,
) -> Result<Vec<RtValue>, InterpError> {
    let node = g.node(n);
    let err = |m: String| node_err(g, n, m);
    let int_list = |name: &str| {
        node.attr(name)
            .and_then(|a| a.value.as_ints())
            .map(|v| v.to_vec())
    };
    let m = node
        .attr("num_scan_inputs")
        .and_then(|a| a.value.as_int())
        .ok_or_else(|| err("num_scan_inputs is missing".into()))? as usize;
    let tensors = scan_tensors(args, m).map_err(err)?;
    let n_state = tensors.len() - m;
    let n_scan_out = body.outputs.len().saturating_sub(n_state);
    let in_axes = int_list("scan_input_axes").unwrap_or_else(|| vec![0; m]);
    let in_dirs = int_list("scan_input_directions").unwrap_or_else(|| vec![0; m]);
    let out_axes = int_list("scan_output_axes").unwrap_or_else(|| vec![0; n_scan_out]);
    let out_dirs = int_list("scan_output_directions").unwrap_or_else(|| vec![0; n_scan_out]);
    let mut state: Vec<RtValue> = tensors[..n_state]
        .iter()
        .cloned()
        .map(RtValue::Tensor)
        .collect();
    let scan_in = &tensors[n_state..];
    let mut axes = Vec::new();
    let mut len = None;
    for (k, t) in scan_in.iter().enumerate() {
        let ax = crate::ops::norm_axis(*in_axes.get(k).unwrap_or(&0), t.shape().len())
            .map_err(|e| err(e.to_string()))?;
        let l = t.shape()[ax];
        if len.is_some_and(|x| x != l) {
            return Err(err("scan inputs have different sequence lengths".into()));
        }
        len = Some(l);
        axes.push(ax);
    }
    let len = len.unwrap_or(0);
    let mut outs: Vec<Vec<RtValue>> = vec![Vec::new(); n_scan_out];
    for step in 0..len {
        let mut inputs: Vec<Option<RtValue>> = state.iter().cloned().map(Some).collect();
        for (k, t) in scan_in.iter().enumerate() {
            let idx = if in_dirs.get(k).copied().unwrap_or(0) == 1 {
                len - 1 - step
            } else {
                step
            };
            let ax = axes[k];
            inputs.push(Some(RtValue::Tensor(
                map_tensor_same!(t, a => a.index_axis(Axis(ax), idx).to_owned()),
            )));
        }
        let res = interp.run_graph(body, opsets, frame, inputs)?;
        if res.len() != n_state + n_scan_out {
            return Err(err("the body returned the wrong number of values".into()));
        }
        let mut it = res.into_iter();
        state = it.by_ref().take(n_state).collect();
        for (k, v) in it.enumerate() {
            outs[k].push(v);
        }
    }
    let mut result = state;
    for (k, mut items) in outs.into_iter().enumerate() {
        if out_dirs.get(k).copied().unwrap_or(0) == 1 {
            items.reverse();
        }
        let rank = items
            .first()
            .and_then(|i| i.as_tensor())
            .map(|t| t.shape().len())
            .unwrap_or(0);
        let ax = crate::ops::norm_axis(*out_axes.get(k).unwrap_or(&0), rank + 1)
            .map_err(|e| err(e.to_string()))?;
        let declared = body
            .outputs
            .get(n_state + k)
            .and_then(|&o| body.value(o).ty.clone());
        result.push(stack(&items, ax, declared.as_ref()).map_err(err)?);
    }
    Ok(result)
}

/// Runs a call of a model-local function: the body with the call's attributes
/// (or the function's defaults) substituted for attribute references.
pub(super) fn call_function(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    f: &Function,
    args: Vec<Option<RtValue>>,
) -> Result<Vec<RtValue>, InterpError> {
    let node = g.node(n);
    let mut body = f.body.clone();
    bind_attrs(&mut body, node, f);
    let opsets = if f.opset_imports.is_empty() {
        interp.model.opset_imports.clone()
    } else {
        f.opset_imports.clone()
    };
    let root = Frame {
        values: Default::default(),
        parent: None,
    };
    let mut inputs = args;
    inputs.resize(body.inputs.len(), None);
    interp.run_graph_with(&body, &opsets, &root, inputs, false)
}

fn bind_attrs(body: &mut Graph, call: &crate::ir::graph::Node, f: &Function) {
    let ids: Vec<NodeId> = body.node_ids().collect();
    for id in ids {
        let node = body.node_mut(id);
        let mut attrs = Vec::new();
        for mut a in std::mem::take(&mut node.attrs) {
            if let Some(r) = a.ref_attr_name.clone() {
                let found = call
                    .attr(&r)
                    .or_else(|| f.attribute_defaults.iter().find(|d| d.name == r));
                match found {
                    Some(v) => {
                        a.value = v.value.clone();
                        a.ref_attr_name = None;
                        attrs.push(a);
                    }
                    None => continue,
                }
            } else {
                for sub in a.value.graphs_mut() {
                    bind_attrs(sub, call, f);
                }
                attrs.push(a);
            }
        }
        node.attrs = attrs;
    }
}

/// Scan's state and scan inputs as tensors; `m` of them are scanned.
fn scan_tensors(args: Vec<Option<RtValue>>, m: usize) -> Result<Vec<TensorValue>, String> {
    let tensors: Vec<TensorValue> = args
        .into_iter()
        .map(|a| {
            a.and_then(|a| a.into_tensor())
                .ok_or_else(|| "Scan inputs must be tensors".to_string())
        })
        .collect::<Result<_, _>>()?;
    if m > tensors.len() {
        return Err(format!(
            "num_scan_inputs is {m} but the node has {} inputs",
            tensors.len()
        ));
    }
    Ok(tensors)
}

/// SequenceMap: runs the body once per item of the first input sequence; other
/// sequence inputs are indexed alike, tensor inputs are passed whole.
fn run_sequence_map(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    opsets: &[OpsetImport],
    frame: &Frame,
    args: Vec<Option<RtValue>>,
    body: &Graph,
) -> Result<Vec<RtValue>, InterpError> {
    let err = |m: String| node_err(g, n, m);
    let len = match args.first() {
        Some(Some(RtValue::Sequence(s))) => s.len(),
        _ => return Err(err("input 0 must be a sequence".into())),
    };
    for (i, a) in args.iter().enumerate() {
        if let Some(RtValue::Sequence(s)) = a {
            if s.len() != len {
                return Err(err(format!(
                    "sequence input {i} has {} items, input 0 has {len}",
                    s.len()
                )));
            }
        }
    }
    let mut outs: Vec<Vec<RtValue>> = vec![Vec::new(); body.outputs.len()];
    for i in 0..len {
        let inputs: Vec<Option<RtValue>> = args
            .iter()
            .map(|a| match a {
                Some(RtValue::Sequence(s)) => Some(s[i].clone()),
                other => other.clone(),
            })
            .collect();
        for (k, v) in interp
            .run_graph(body, opsets, frame, inputs)?
            .into_iter()
            .enumerate()
        {
            if let Some(o) = outs.get_mut(k) {
                o.push(v);
            }
        }
    }
    Ok(outs.into_iter().map(RtValue::Sequence).collect())
}

/// Scan as defined in opset 8: a leading batch axis, an optional `sequence_lens`
/// input, and scan inputs iterated along axis 1 (or reversed per `directions`).
fn run_scan_v8(
    interp: &Interpreter,
    g: &Graph,
    n: NodeId,
    opsets: &[OpsetImport],
    frame: &Frame,
    args: Vec<Option<RtValue>>,
    body: &Graph,
) -> Result<Vec<RtValue>, InterpError> {
    let node = g.node(n);
    let err = |m: String| node_err(g, n, m);
    let m = node
        .attr("num_scan_inputs")
        .and_then(|a| a.value.as_int())
        .ok_or_else(|| err("num_scan_inputs is missing".into()))? as usize;
    let dirs = node
        .attr("directions")
        .and_then(|a| a.value.as_ints())
        .map(|v| v.to_vec())
        .unwrap_or_else(|| vec![0; m]);
    let seq_lens = match args.first() {
        Some(Some(RtValue::Tensor(t))) => Some(
            t.to_i64_vec()
                .ok_or_else(|| err("sequence_lens must be integers".into()))?,
        ),
        _ => None,
    };
    let tensors = scan_tensors(args.into_iter().skip(1).collect(), m).map_err(err)?;
    let n_state = tensors.len() - m;
    let n_out = body.outputs.len().saturating_sub(n_state);
    let batch = tensors
        .first()
        .and_then(|t| t.shape().first().copied())
        .ok_or_else(|| err("inputs need a batch axis".into()))?;
    let mut per_batch_state: Vec<Vec<RtValue>> = Vec::new();
    let mut per_batch_out: Vec<Vec<RtValue>> = Vec::new();
    for b in 0..batch {
        let pick = |t: &TensorValue| -> Result<TensorValue, InterpError> {
            if t.shape().first() != Some(&batch) {
                return Err(err("all inputs need the same batch size".into()));
            }
            Ok(map_tensor_same!(t, a => a.index_axis(Axis(0), b).to_owned()))
        };
        let mut state: Vec<RtValue> = tensors[..n_state]
            .iter()
            .map(|t| pick(t).map(RtValue::Tensor))
            .collect::<Result<_, _>>()?;
        let scans: Vec<TensorValue> = tensors[n_state..]
            .iter()
            .map(pick)
            .collect::<Result<_, _>>()?;
        let full = scans
            .first()
            .and_then(|t| t.shape().first().copied())
            .unwrap_or(0);
        let len = seq_lens
            .as_ref()
            .and_then(|v| v.get(b))
            .map(|&l| l.clamp(0, full as i64) as usize)
            .unwrap_or(full);
        let mut outs: Vec<Vec<RtValue>> = vec![Vec::new(); n_out];
        for step in 0..len {
            let mut inputs: Vec<Option<RtValue>> = state.iter().cloned().map(Some).collect();
            for (k, t) in scans.iter().enumerate() {
                let idx = if dirs.get(k).copied().unwrap_or(0) == 1 {
                    len - 1 - step
                } else {
                    step
                };
                inputs.push(Some(RtValue::Tensor(
                    map_tensor_same!(t, a => a.index_axis(Axis(0), idx).to_owned()),
                )));
            }
            let res = interp.run_graph(body, opsets, frame, inputs)?;
            let mut it = res.into_iter();
            state = it.by_ref().take(n_state).collect();
            for (k, v) in it.enumerate() {
                if let Some(o) = outs.get_mut(k) {
                    o.push(v);
                }
            }
        }
        per_batch_state.push(state);
        let mut stacked = Vec::new();
        for (k, items) in outs.into_iter().enumerate() {
            let declared = body
                .outputs
                .get(n_state + k)
                .and_then(|&o| body.value(o).ty.clone());
            stacked.push(stack(&items, 0, declared.as_ref()).map_err(err)?);
        }
        per_batch_out.push(stacked);
    }
    let mut result = Vec::new();
    for k in 0..n_state {
        let items: Vec<RtValue> = per_batch_state.iter().map(|s| s[k].clone()).collect();
        result.push(stack(&items, 0, None).map_err(err)?);
    }
    for k in 0..n_out {
        let items: Vec<RtValue> = per_batch_out.iter().map(|s| s[k].clone()).collect();
        result.push(stack(&items, 0, None).map_err(err)?);
    }
    Ok(result)
}
