//! Fused nodes (`ai.modc::Fused`) whose body is all elementwise ops, views and
//! constants: the whole chain becomes one kernel, intermediates stay in registers.

use super::emit::{attr_i, check_types, emit};
use super::kernel::Sym;
use super::{broadcast, generate, is_default_domain, OPS, VIEWS};
use crate::codegen::spec::{Lowering, NodeInfo};
use crate::interp::value::TensorValue;
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, ValueId};
use std::collections::HashMap;

/// Is `n` an op the fused generator handles (elementwise, view or constant)?
fn fusable(n: &Node) -> bool {
    is_default_domain(&n.domain)
        && (OPS.contains(&n.op_type.as_str())
            || VIEWS.contains(&n.op_type.as_str())
            || n.op_type == "Constant")
}

fn concrete_shape(g: &Graph, v: ValueId) -> Option<Vec<usize>> {
    let (_, s) = g.value(v).ty.as_ref()?.as_tensor()?;
    s?.dims
        .iter()
        .map(|d| d.as_fixed().and_then(|n| usize::try_from(n).ok()))
        .collect()
}

/// A fused node whose body is all elementwise: one kernel.
pub(super) fn fused(info: &NodeInfo) -> Option<Lowering> {
    let body = crate::fused::fused_body(info.node)?;
    if !body.nodes().all(|(_, n)| fusable(n)) {
        return None;
    }
    Some(fused_kernel(info, body).unwrap_or_else(Lowering::Unsupported))
}

fn fused_kernel(info: &NodeInfo, body: &Graph) -> Result<Lowering, String> {
    let out0 = info.outputs.first().ok_or("no output")?.clone();
    if info.outputs.iter().any(|o| o.len() != out0.len()) {
        return Err("fused outputs of different sizes".into());
    }
    if body.inputs.len() != info.inputs.len() || body.outputs.len() != info.outputs.len() {
        return Err("the body's inputs or outputs do not match the node's".into());
    }
    let order = body
        .topo_order()
        .map_err(|_| "the body has a cycle".to_string())?;
    let mut env: HashMap<ValueId, Sym> = HashMap::new();
    for (k, (&v, d)) in body.inputs.iter().zip(&info.inputs).enumerate() {
        if let Some(d) = d {
            env.insert(
                v,
                Sym::Input {
                    k,
                    shape: d.shape.clone(),
                    dtype: d.dtype,
                },
            );
        }
    }
    for v in body.value_ids() {
        if env.contains_key(&v) {
            continue;
        }
        if let Some(Initializer::Dense(t)) = &body.value(v).init {
            let tv = TensorValue::from_tensor(t).map_err(|e| e.to_string())?;
            let shape = tv.shape().to_vec();
            env.insert(v, Sym::Const { t: tv, shape });
        }
    }
    let kernels = generate(info, &out0, |g| {
        for &nid in &order {
            let n = body.node(nid);
            let outv = n
                .outputs
                .first()
                .copied()
                .flatten()
                .ok_or("a body node has no output")?;
            let desc = format!(
                "body node {} ({})",
                n.name.as_deref().unwrap_or("?"),
                n.op_type
            );
            if n.op_type == "Constant" {
                let t = match n.attr("value").map(|a| &a.value) {
                    Some(crate::ir::attr::AttrValue::Tensor(t)) => {
                        TensorValue::from_tensor(t).map_err(|e| e.to_string())?
                    }
                    _ => return Err(format!("{desc}: only tensor constants")),
                };
                let shape = t.shape().to_vec();
                env.insert(outv, Sym::Const { t, shape });
                continue;
            }
            let ins: Vec<Option<Sym>> = n
                .inputs
                .iter()
                .map(|i| {
                    i.map(|v| {
                        env.get(&v)
                            .cloned()
                            .ok_or(format!("{desc}: an input has no value"))
                    })
                    .transpose()
                })
                .collect::<Result<_, _>>()?;
            let x = ins
                .first()
                .cloned()
                .flatten()
                .ok_or(format!("{desc}: input 0 missing"))?;
            if VIEWS.contains(&n.op_type.as_str()) {
                let shape = concrete_shape(body, outv)
                    .ok_or(format!("{desc}: the view's shape is unknown"))?;
                let len: usize = shape.iter().product();
                let s = match x {
                    Sym::Input { k, dtype, .. } => Sym::Input { k, shape, dtype },
                    Sym::Const { t, .. } => Sym::Const { t, shape },
                    Sym::Comp { v, dtype, .. } if len == g.n() => Sym::Comp { v, shape, dtype },
                    Sym::Comp { .. } => {
                        return Err(format!("{desc}: a view of a broadcast intermediate"))
                    }
                };
                env.insert(outv, s);
                continue;
            }
            let dtypes: Vec<Option<DType>> =
                ins.iter().map(|s| s.as_ref().map(|s| s.dtype())).collect();
            let shapes: Vec<&[usize]> = ins.iter().flatten().map(|s| s.shape()).collect();
            let shape = broadcast(&shapes).map_err(|e| format!("{desc}: {e}"))?;
            let out_dtype = match n.op_type.as_str() {
                "Cast" => DType::from_onnx(attr_i(n, "to", 1) as i32),
                "Less" | "Greater" | "Equal" | "LessOrEqual" | "GreaterOrEqual" | "Not" | "And"
                | "Or" | "Xor" | "IsNaN" | "IsInf" => DType::Bool,
                "Where" => dtypes
                    .get(1)
                    .copied()
                    .flatten()
                    .ok_or(format!("{desc}: Where needs X"))?,
                _ => x.dtype(),
            };
            check_types(&n.op_type, &dtypes, out_dtype).map_err(|e| format!("{desc}: {e}"))?;
            let args = ins
                .iter()
                .map(|s| s.as_ref().map(|s| g.get(s)).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let v = emit(&mut g.body, &mut g.helpers, n, &args, &dtypes, out_dtype)
                .map_err(|e| format!("{desc}: {e}"))?;
            env.insert(
                outv,
                Sym::Comp {
                    v,
                    shape,
                    dtype: out_dtype,
                },
            );
        }
        let mut outs = vec![];
        for (j, &v) in body.outputs.iter().enumerate() {
            let s = env
                .get(&v)
                .cloned()
                .ok_or(format!("body output {j} has no value"))?;
            if s.dtype() != info.outputs[j].dtype {
                return Err(format!(
                    "body output {j} is {} but the node's is {}",
                    s.dtype(),
                    info.outputs[j].dtype
                ));
            }
            let val = g.get(&s)?;
            outs.push((val, info.outputs[j].dtype));
        }
        Ok(outs)
    })?;
    Ok(Lowering::Kernels(kernels))
}
