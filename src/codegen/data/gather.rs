//! Gather and GatherElements (`kernels/data_gather*.wgsl`): the indices are read
//! on the device, so they need not be constant. Negative indices count from the
//! end; out-of-range ones are clamped (the interpreter rejects them).

use crate::codegen::nn::shader::{self, answer, fill, grid_for, offset_fn, ELEMENT_WG};
use crate::codegen::spec::{Lowering, NodeInfo, Slot, Storage};

const GATHER: &str = include_str!("../../../kernels/data_gather.wgsl");
const GATHER_ELEMENTS: &str = include_str!("../../../kernels/data_gather_elements.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let r = match info.node.op_type.as_str() {
        "Gather" => gather(info),
        "GatherElements" => gather_elements(info),
        _ => return None,
    };
    if let Some(l) = shader::binding_limit(info) {
        return Some(l);
    }
    answer(r)
}

fn check_indices(info: &NodeInfo) -> Result<(), String> {
    let idx = shader::input(info, 1)?;
    if shader::storage(idx) != Storage::I32 {
        return Err(format!("indices of type {} have no kernel", idx.dtype));
    }
    Ok(())
}

fn gather(info: &NodeInfo) -> Result<Lowering, String> {
    check_indices(info)?;
    let x = shader::input(info, 0)?;
    let idx = shader::input(info, 1)?;
    let y = shader::output(info, 0)?;
    let rank = x.shape.len();
    if rank == 0 {
        return Err("Gather of a scalar".into());
    }
    let axis = shader::norm_axis(shader::attr_int(info, "axis", 0), rank)?;
    let dim = x.shape[axis];
    let n = y.len();
    if n == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    if dim == 0 {
        return Err("Gather from an empty axis".into());
    }
    let wgsl = fill(
        GATHER,
        &[
            ("N", n.to_string()),
            ("J", idx.len().max(1).to_string()),
            (
                "INNER",
                x.shape[axis + 1..].iter().product::<usize>().to_string(),
            ),
            ("DIM", dim.to_string()),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(shader::single(
        "gather".into(),
        wgsl,
        vec![Slot::Input(0), Slot::Input(1), Slot::Output(0)],
        grid_for(n, ELEMENT_WG, info)?,
    ))
}

fn gather_elements(info: &NodeInfo) -> Result<Lowering, String> {
    check_indices(info)?;
    let x = shader::input(info, 0)?;
    let idx = shader::input(info, 1)?;
    let rank = x.shape.len();
    if rank == 0 || idx.shape.len() != rank {
        return Err(format!(
            "GatherElements of {:?} by {:?}",
            x.shape, idx.shape
        ));
    }
    let axis = shader::norm_axis(shader::attr_int(info, "axis", 0), rank)?;
    let n = idx.len();
    if n == 0 {
        return Ok(Lowering::Kernels(Default::default()));
    }
    if x.shape[axis] == 0 {
        return Err("GatherElements from an empty axis".into());
    }
    let xs = shader::strides(&x.shape);
    let mut base = xs.clone();
    base[axis] = 0;
    let wgsl = fill(
        GATHER_ELEMENTS,
        &[
            ("N", n.to_string()),
            ("DIM", x.shape[axis].to_string()),
            ("STRIDE", xs[axis].to_string()),
            ("BASE", offset_fn("base", &idx.shape, &base, 0)),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(shader::single(
        "gather_elements".into(),
        wgsl,
        vec![Slot::Input(0), Slot::Input(1), Slot::Output(0)],
        grid_for(n, ELEMENT_WG, info)?,
    ))
}
