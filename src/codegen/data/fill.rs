//! Ops whose outputs are generated rather than moved: Shape and Size (values
//! known from the input's shape, written by `kernels/data_fill.wgsl`),
//! ConstantOfShape (the `value` attribute), Range (`kernels/data_range.wgsl`, start
//! and delta read on the device) and Trilu (`kernels/data_trilu.wgsl`, `k` a
//! constant input).

use crate::codegen::nn::shader::{self, answer, fill, grid_for, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, NodeKernels, Slot, Storage};
use crate::interp::value::TensorValue;
use crate::ir::attr::AttrValue;

const RANGE: &str = include_str!("../../../kernels/data_range.wgsl");
const TRILU: &str = include_str!("../../../kernels/data_trilu.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let r = match info.node.op_type.as_str() {
        "Shape" => shape(info),
        "Size" => {
            let n = shader::input(info, 0).map(|x| x.len() as f64);
            n.and_then(|n| constant(info, "size", &[n]))
        }
        "ConstantOfShape" => constant_of_shape(info),
        "Range" => range(info),
        "Trilu" => trilu(info),
        _ => return None,
    };
    if let Some(l) = shader::binding_limit(info) {
        return Some(l);
    }
    answer(r)
}

/// Output 0 holds `values` (one value repeated when there is one, else one each).
fn constant(info: &NodeInfo, label: &str, values: &[f64]) -> Result<Lowering, String> {
    let y = shader::output(info, 0)?;
    let t = shader::storage(y);
    let n = y.len();
    if n == 0 {
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    let body = match values {
        [v] => format!("return {};", shader::lit(t, *v)),
        vs if vs.len() == n => {
            let items: Vec<String> = vs.iter().map(|&v| shader::lit(t, v)).collect();
            format!(
                "var a = array<{}, {n}>({});\n    return a[i];",
                t.wgsl(),
                items.join(", ")
            )
        }
        vs => return Err(format!("{} values for an output of {n} elements", vs.len())),
    };
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: vec![shader::fill_dispatch(info, label, t, &body, n)?],
        temps: vec![],
    }))
}

fn shape(info: &NodeInfo) -> Result<Lowering, String> {
    let s = &shader::input(info, 0)?.shape;
    let r = s.len() as i64;
    let fix = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
    let start = fix(shader::attr_int(info, "start", 0));
    let end = fix(shader::attr_int(info, "end", r));
    let v: Vec<f64> = if start < end {
        s[start..end].iter().map(|&d| d as f64).collect()
    } else {
        vec![]
    };
    constant(info, "shape", &v)
}

fn constant_of_shape(info: &NodeInfo) -> Result<Lowering, String> {
    let v = match info.node.attr("value").map(|a| &a.value) {
        Some(AttrValue::Tensor(t)) => TensorValue::from_tensor(t)
            .map_err(|e| e.to_string())?
            .to_f64_vec()
            .and_then(|v| v.first().copied())
            .ok_or("ConstantOfShape's value is not one number")?,
        Some(_) => return Err("ConstantOfShape's value is not a tensor".into()),
        None => 0.0,
    };
    constant(info, "constant_of_shape", &[v])
}

fn range(info: &NodeInfo) -> Result<Lowering, String> {
    let y = shader::output(info, 0)?;
    let t = shader::storage(y);
    if t == Storage::U32 {
        return Err(format!("Range of {} has no kernel", y.dtype));
    }
    let n = y.len();
    if n == 0 {
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    let wgsl = fill(
        RANGE,
        &[
            ("T", t.wgsl().into()),
            ("N", n.to_string()),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(shader::single(
        "range".into(),
        wgsl,
        vec![Slot::Input(0), Slot::Input(2), Slot::Output(0)],
        grid_for(n, ELEMENT_WG, info)?,
    ))
}

fn trilu(info: &NodeInfo) -> Result<Lowering, String> {
    let x = shader::input(info, 0)?;
    let rank = x.shape.len();
    if rank < 2 {
        return Err(format!("Trilu needs rank 2 or more, got {:?}", x.shape));
    }
    let k = match shader::const_ints(info, 1, "k")?.as_deref() {
        None => 0,
        Some([k]) => *k,
        Some(v) => return Err(format!("Trilu's k has {} elements", v.len())),
    };
    let n = x.len();
    if n == 0 {
        return Ok(Lowering::Kernels(NodeKernels::default()));
    }
    let t = shader::storage(x);
    let k = k.clamp(i32::MIN as i64 + 1, i32::MAX as i64);
    let wgsl = fill(
        TRILU,
        &[
            ("T", t.wgsl().into()),
            ("N", n.to_string()),
            ("ROWS", x.shape[rank - 2].to_string()),
            ("COLS", x.shape[rank - 1].to_string()),
            ("K", format!("{k}i")),
            (
                "UPPER",
                (shader::attr_int(info, "upper", 1) != 0).to_string(),
            ),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(shader::single(
        "trilu".into(),
        wgsl,
        vec![Slot::Input(0), Slot::Output(0)],
        grid_for(n, ELEMENT_WG, info)?,
    ))
}
