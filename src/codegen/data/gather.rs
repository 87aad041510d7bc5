//! Gather and GatherElements (`kernels/data_gather*.wgsl`): the indices are read
//! on the device, so they need not be constant. Negative indices count from the
//! end; out-of-range ones are clamped (the interpreter rejects them).
//!
//! Tiling (a tensor over the storage binding limit): Gather splits its input
//! along the gathered axis into row ranges (an embedding table larger than a
//! binding) and its output into ranges; each dispatch writes the outputs of its
//! range whose index falls in its rows, so every output is written exactly once.
//! Output ranges stay within one outer index when the input or the indices are
//! split. GatherElements splits its indices and output into aligned ranges and
//! binds the part of its input those rows can reach.

use crate::codegen::nn::shader::{self, answer, fill, grid_for, offset_fn, ELEMENT_WG};
use crate::codegen::spec::{
    DeviceLimits, Dispatch, Lowering, NodeInfo, NodeKernels, Slot, Storage,
};
use crate::codegen::tile::{
    bind, binding_elems, chunk_flat, flat_dispatches, slot_len, Access, Axis, Bound, ALIGN,
    MAX_DISPATCHES, SLACK,
};

const GATHER: &str = include_str!("../../../kernels/data_gather.wgsl");
const GATHER_ELEMENTS: &str = include_str!("../../../kernels/data_gather_elements.wgsl");

pub(super) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let r = match info.node.op_type.as_str() {
        "Gather" => gather(info),
        "GatherElements" => gather_elements(info),
        _ => return None,
    };
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
    let geo = Geometry {
        outer: x.shape[..axis].iter().product(),
        j: idx.len().max(1),
        dim,
        inner: x.shape[axis + 1..].iter().product(),
    };
    if geo.outer * geo.j * geo.inner != n {
        return Err(format!(
            "Gather: output {:?} does not match the input",
            y.shape
        ));
    }
    let parts = geo.parts(info)?;
    let wgsl = fill(
        GATHER,
        &[
            ("J", geo.j.to_string()),
            ("INNER", geo.inner.to_string()),
            ("DIM", dim.to_string()),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    let many = parts.len() > 1;
    let dispatches = parts
        .iter()
        .enumerate()
        .map(|(c, p)| {
            Ok(Dispatch {
                label: if many {
                    format!("gather_tile{c}")
                } else {
                    "gather".into()
                },
                wgsl: wgsl.clone(),
                slots: p.bound.iter().map(|b| b.slot).collect(),
                params: vec![
                    p.y.0 as u32,
                    (p.y.1 - p.y.0) as u32,
                    p.k.0 as u32,
                    p.k.1 as u32,
                    p.bound[0].word(),
                    p.bound[1].word(),
                    p.bound[2].word(),
                ],
                workgroups: grid_for(p.y.1 - p.y.0, ELEMENT_WG, info)?,
            })
        })
        .collect::<Result<_, String>>()?;
    Ok(Lowering::Kernels(NodeKernels {
        dispatches,
        temps: vec![],
    }))
}

/// Gather's iteration: the output is `[outer, j, inner]`, the input
/// `[outer, dim, inner]`.
struct Geometry {
    outer: usize,
    j: usize,
    dim: usize,
    inner: usize,
}

/// One dispatch of a Gather: outputs `y.0..y.1`, of which it writes those whose
/// index falls in `k.0..k.1`; x, the indices and y bound in that order.
struct Part {
    y: (usize, usize),
    k: (usize, usize),
    bound: Vec<Bound>,
}

impl Geometry {
    /// Splits the output into ranges and the input's gathered axis into row
    /// ranges so that every binding fits; everything fitting is one part.
    fn parts(&self, info: &NodeInfo) -> Result<Vec<Part>, String> {
        let limits = &info.limits;
        let lens = [
            slot_len(info, Slot::Input(0)),
            slot_len(info, Slot::Input(1)),
            slot_len(info, Slot::Output(0)),
        ];
        let fit = |l: u64| 4 * l <= limits.max_storage_binding;
        let room = binding_elems(limits).saturating_sub(SLACK) as usize;
        // Rows of the gathered axis per part.
        let rows = if fit(lens[0]) {
            self.dim
        } else {
            room / self.inner.max(1)
        };
        if rows == 0 {
            return Err(format!(
                "Gather: one slice of the input ({} elements) exceeds the {}-byte storage binding limit",
                self.inner, limits.max_storage_binding
            ));
        }
        // Output ranges: within one outer index unless x and the indices fit.
        let n = self.outer * self.j * self.inner;
        let block = if fit(lens[0]) && fit(lens[1]) {
            n
        } else {
            self.j * self.inner
        };
        let piece = if lens.iter().all(|&l| fit(l)) {
            n
        } else {
            room.max(1)
        };
        let count = (n / block.max(1)) * block.div_ceil(piece) * self.dim.div_ceil(rows);
        if count as u64 > MAX_DISPATCHES {
            return Err(format!(
                "Gather: tiling within the {}-byte storage binding limit needs {count} dispatches (over {MAX_DISPATCHES})",
                limits.max_storage_binding
            ));
        }
        let mut parts = vec![];
        for b0 in (0..n).step_by(block.max(1)) {
            let b1 = (b0 + block).min(n);
            for y0 in (b0..b1).step_by(piece) {
                let y1 = (y0 + piece).min(b1);
                for k0 in (0..self.dim).step_by(rows) {
                    let k1 = (k0 + rows).min(self.dim);
                    let bound = self.bind(lens, (y0, y1), (k0, k1), limits).ok_or_else(|| {
                        format!(
                            "Gather: outputs {y0}..{y1} do not fit the {}-byte storage binding limit",
                            limits.max_storage_binding
                        )
                    })?;
                    parts.push(Part {
                        y: (y0, y1),
                        k: (k0, k1),
                        bound,
                    });
                }
            }
        }
        Ok(parts)
    }

    /// Binds x, the indices and y for outputs `y0..y1` and rows `k0..k1`.
    fn bind(
        &self,
        lens: [u64; 3],
        (y0, y1): (usize, usize),
        (k0, k1): (usize, usize),
        limits: &DeviceLimits,
    ) -> Option<Vec<Bound>> {
        let (ji, last) = (self.j * self.inner, y1 - 1);
        let (oa, ob) = (y0 / ji, last / ji);
        let x_lo = (oa * self.dim + k0) * self.inner;
        let x_hi = (ob * self.dim + k1 - 1) * self.inner + self.inner - 1;
        let (j_lo, j_hi) = if oa == ob {
            ((y0 % ji) / self.inner, (last % ji) / self.inner)
        } else {
            (0, self.j - 1)
        };
        let j_hi = j_hi.min(lens[1].max(1) as usize - 1);
        let w = |v: usize| v as u64;
        Some(vec![
            bind(Slot::Input(0), lens[0], w(x_lo), w(x_hi), limits)?,
            bind(Slot::Input(1), lens[1], w(j_lo.min(j_hi)), w(j_hi), limits)?,
            bind(Slot::Output(0), lens[2], w(y0), w(last), limits)?,
        ])
    }
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
    // x is read at base(i) + k * stride, k anywhere along the axis: its window
    // spans both ends; the indices and y at i.
    let access = |slot: Slot, offset: i64, strides: &[i64]| Access {
        slot,
        len: slot_len(info, slot),
        base: offset,
        axes: idx
            .shape
            .iter()
            .zip(strides)
            .map(|(&d, &s)| Axis::new(d, s))
            .collect(),
    };
    let last = (x.shape[axis] as i64 - 1) * xs[axis];
    let own = shader::strides(&idx.shape);
    let accesses = [
        access(Slot::Input(0), 0, &base),
        access(Slot::Input(0), last, &base),
        access(Slot::Input(1), 0, &own),
        access(Slot::Output(0), 0, &own),
    ];
    let chunks = chunk_flat(&idx.shape, &accesses, &info.limits, ALIGN)
        .map_err(|e| format!("GatherElements: {e}"))?;
    let wgsl = fill(
        GATHER_ELEMENTS,
        &[
            ("DIM", x.shape[axis].to_string()),
            ("STRIDE", xs[axis].to_string()),
            ("BASE", offset_fn("base", &idx.shape, &base, 0)),
            ("WG", ELEMENT_WG.to_string()),
        ],
    );
    Ok(Lowering::Kernels(NodeKernels {
        dispatches: flat_dispatches("gather_elements", &wgsl, &chunks, |n| {
            grid_for(n as usize, ELEMENT_WG, info)
        })?,
        temps: vec![],
    }))
}
