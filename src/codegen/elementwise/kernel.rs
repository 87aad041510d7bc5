//! The kernel skeleton of elementwise code: the symbolic values of its dataflow
//! ([`Sym`]) and the generator ([`Gen`]) that reads inputs with broadcasting,
//! inlines constants and prints the grid-stride shader with its uniform words.
//!
//! A dispatch computes the output elements `start..start + n` (words 3 and 0):
//! the loop index `i` is local, `g = i + start` is the element, and every binding
//! (input `inB`, output `outJ`) is indexed relative to the first element it binds
//! (`ibB`, `obJ`, the last words). One dispatch binds every tensor whole; a node
//! with a tensor over the storage binding limit becomes several, each binding
//! windows of the large tensors ([`crate::codegen::tile::chunk_flat`]).

use super::{broadcast, ty_of, WORKGROUP};
use crate::codegen::builder::{literal, Body, Ty, Val};
use crate::codegen::spec::{DeviceLimits, Dispatch, NodeInfo, Slot, Storage};
use crate::codegen::tile::{chunk_flat, contiguous, Access, Axis, ALIGN};
use crate::interp::value::TensorValue;
use crate::ir::dtype::DType;
use std::collections::{BTreeSet, HashMap};

/// A value of the kernel's dataflow.
#[derive(Clone)]
pub(super) enum Sym {
    /// Node input `k`, read with `shape`.
    Input {
        k: usize,
        shape: Vec<usize>,
        dtype: DType,
    },
    /// A constant (fused bodies), read with `shape`.
    Const { t: TensorValue, shape: Vec<usize> },
    /// Computed at the iteration index; `shape` broadcasts to the iteration shape.
    Comp {
        v: Val,
        shape: Vec<usize>,
        dtype: DType,
    },
}

impl Sym {
    pub(super) fn shape(&self) -> &[usize] {
        match self {
            Sym::Input { shape, .. } | Sym::Const { shape, .. } | Sym::Comp { shape, .. } => shape,
        }
    }
    pub(super) fn dtype(&self) -> DType {
        match self {
            Sym::Input { dtype, .. } | Sym::Comp { dtype, .. } => *dtype,
            Sym::Const { t, .. } => t.dtype(),
        }
    }
}

/// Generates one kernel over the iteration shape.
pub(super) struct Gen {
    pub(super) shape: Vec<usize>,
    pub(super) body: Body,
    /// Uniform words: the header (n, width, stride, start), the dims and strides
    /// of the iteration shape, then broadcast strides of reads.
    pub(super) params: Vec<u32>,
    /// Node inputs read: input index → binding.
    pub(super) bound: Vec<usize>,
    pub(super) loads: HashMap<(usize, Vec<usize>), Val>,
    pub(super) consts: Vec<String>,
    pub(super) helpers: BTreeSet<&'static str>,
    pub(super) uses_coords: bool,
}

impl Gen {
    pub(super) fn new(shape: &[usize]) -> Gen {
        let r = shape.len();
        let mut params = vec![0u32; HEADER];
        params.extend(shape.iter().map(|&d| d as u32));
        let mut stride = 1usize;
        let mut strides = vec![0u32; r];
        for d in (0..r).rev() {
            strides[d] = stride as u32;
            stride *= shape[d];
        }
        params.extend(strides);
        Gen {
            shape: shape.to_vec(),
            body: Body::default(),
            params,
            bound: vec![],
            loads: HashMap::new(),
            consts: vec![],
            helpers: BTreeSet::new(),
            uses_coords: false,
        }
    }

    pub(super) fn n(&self) -> usize {
        self.shape.iter().product()
    }

    /// The element index of a tensor of `shape` at the iteration element `g`.
    pub(super) fn index(&mut self, shape: &[usize]) -> Result<String, String> {
        let len: usize = shape.iter().product();
        if len == self.n() {
            return Ok("g".into());
        }
        if len == 1 {
            return Ok("0u".into());
        }
        let strides = broadcast_strides(shape, &self.shape)?;
        self.uses_coords = true;
        let mut terms = vec![];
        for (d, &s) in strides.iter().enumerate() {
            if s != 0 {
                let w = self.params.len();
                self.params.push(s as u32);
                terms.push(format!("c{d} * pr({w}u)"));
            }
        }
        Ok(format!("({})", terms.join(" + ")))
    }

    /// The value of `s` at the iteration index.
    pub(super) fn get(&mut self, s: &Sym) -> Result<Val, String> {
        match s {
            Sym::Comp { v, .. } => Ok(v.clone()),
            Sym::Input { k, shape, dtype } => {
                if let Some(v) = self.loads.get(&(*k, shape.clone())) {
                    return Ok(v.clone());
                }
                let idx = self.index(shape)?;
                let b = match self.bound.iter().position(|&x| x == *k) {
                    Some(b) => b,
                    None => {
                        self.bound.push(*k);
                        self.bound.len() - 1
                    }
                };
                let ty = ty_of(*dtype)?;
                let raw = format!("in{b}[{idx} - ib{b}]");
                let v = match ty {
                    Ty::Bool => self.body.bind(ty, format!("({raw} != 0u)")),
                    _ => self.body.bind(ty, raw),
                };
                self.loads.insert((*k, shape.clone()), v.clone());
                Ok(v)
            }
            Sym::Const { t, shape } => {
                let ty = ty_of(t.dtype())?;
                let vals = t
                    .to_f64_vec()
                    .ok_or_else(|| "a constant is not numeric".to_string())?;
                if vals.len() == 1 {
                    return Ok(literal(ty, vals[0]));
                }
                let name = format!("K{}", self.consts.len());
                let items: Vec<String> = vals.iter().map(|&v| literal(ty, v).code).collect();
                self.consts.push(format!(
                    "const {name} = array<{}, {}>({});",
                    ty.wgsl(),
                    vals.len(),
                    items.join(", ")
                ));
                let idx = self.index(shape)?;
                Ok(self.body.bind(ty, format!("{name}[{idx}]")))
            }
        }
    }

    /// The dispatches storing `outs` (output j ← value): one, or one per chunk
    /// of the output when a tensor exceeds the storage binding limit.
    pub(super) fn finish(
        mut self,
        label: &str,
        outs: &[(Val, DType)],
        info: &NodeInfo,
    ) -> Result<Vec<Dispatch>, String> {
        let accesses = self.accesses(outs.len(), info)?;
        let chunks = chunk_flat(&self.shape, &accesses, &info.limits, ALIGN)?;
        for (j, (v, d)) in outs.iter().enumerate() {
            let code = match (v.ty, d) {
                (Ty::Bool, _) => format!("select(0u, 1u, {v})"),
                (Ty::U32, DType::U8) => format!("({v} & 255u)"),
                _ => v.code.clone(),
            };
            self.body.stmt(format!("out{j}[g - ob{j}] = {code};"));
        }
        // The bindings' first elements: the last words.
        let first_base = self.params.len();
        let nb = self.bound.len() + outs.len();
        self.params.extend(std::iter::repeat_n(0, nb));
        let mut src = String::new();
        let words = self.params.len().div_ceil(4).max(1);
        for b in 0..self.bound.len() {
            src += &format!(
                "@group(0) @binding({b}) var<storage, read> in{b}: array<{}>;\n",
                self.storage_of_input(b)
            );
        }
        for (j, (_, d)) in outs.iter().enumerate() {
            let st = Storage::of(*d).map(|s| s.wgsl()).unwrap_or("u32");
            src += &format!(
                "@group(0) @binding({}) var<storage, read_write> out{j}: array<{st}>;\n",
                self.bound.len() + j
            );
        }
        let pbind = nb;
        src += &format!(
            "struct Params {{ w: array<vec4<u32>, {words}> }}\n@group(0) @binding({pbind}) var<uniform> P: Params;\nfn pr(k: u32) -> u32 {{ return P.w[k >> 2u][k & 3u]; }}\n"
        );
        for c in &self.consts {
            src += c;
            src += "\n";
        }
        for h in &self.helpers {
            src += super::emit::helper_source(h);
        }
        src += &format!(
            "@compute @workgroup_size({WORKGROUP})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n  let n = pr(0u);\n  let start = pr(3u);\n"
        );
        for b in 0..self.bound.len() {
            src += &format!("  let ib{b} = pr({}u);\n", first_base + b);
        }
        for j in 0..outs.len() {
            src += &format!(
                "  let ob{j} = pr({}u);\n",
                first_base + self.bound.len() + j
            );
        }
        src += "  for (var i: u32 = gid.x + gid.y * pr(1u); i < n; i = i + pr(2u)) {\n    let g = i + start;\n";
        let r = self.shape.len();
        if self.uses_coords {
            for d in 0..r {
                src += &format!(
                    "    let c{d}: u32 = (g / pr({}u)) % pr({}u);\n",
                    HEADER + r + d,
                    HEADER + d
                );
            }
        }
        for l in self.body.lines() {
            src += "    ";
            src += l;
            src += "\n";
        }
        src += "  }\n}\n";
        let count = chunks.len();
        chunks
            .into_iter()
            .enumerate()
            .map(|(c, chunk)| {
                let (workgroups, width, stride) = grid(chunk.count, &info.limits);
                let mut params = self.params.clone();
                params[0] = chunk.count as u32;
                params[1] = width;
                params[2] = stride;
                params[3] = chunk.start as u32;
                for (b, bound) in chunk.bound.iter().enumerate() {
                    params[first_base + b] = bound.word();
                }
                Ok(Dispatch {
                    label: if count == 1 {
                        label.to_string()
                    } else {
                        format!("{label}_tile{c}")
                    },
                    wgsl: src.clone(),
                    slots: chunk.bound.iter().map(|b| b.slot).collect(),
                    params,
                    workgroups,
                })
            })
            .collect()
    }

    /// What each binding reads or writes at each output element, in binding
    /// order: every shape an input is read with, then the outputs.
    fn accesses(&self, outs: usize, info: &NodeInfo) -> Result<Vec<Access>, String> {
        let mut acc = vec![];
        for &k in &self.bound {
            let len = info
                .inputs
                .get(k)
                .cloned()
                .flatten()
                .ok_or_else(|| format!("input {k} is missing"))?
                .len() as u64;
            let mut shapes: Vec<&Vec<usize>> = self
                .loads
                .keys()
                .filter(|(kk, _)| *kk == k)
                .map(|(_, s)| s)
                .collect();
            shapes.sort();
            for shape in shapes {
                let l: usize = shape.iter().product();
                let axes = if l == self.n() {
                    contiguous(&self.shape)
                } else if l == 1 {
                    self.shape.iter().map(|&d| Axis::new(d, 0)).collect()
                } else {
                    broadcast_strides(shape, &self.shape)?
                        .iter()
                        .zip(&self.shape)
                        .map(|(&s, &d)| Axis::new(d, s as i64))
                        .collect()
                };
                acc.push(Access {
                    slot: Slot::Input(k),
                    len,
                    base: 0,
                    axes,
                });
            }
        }
        for j in 0..outs {
            acc.push(Access {
                slot: Slot::Output(j),
                len: self.n() as u64,
                base: 0,
                axes: contiguous(&self.shape),
            });
        }
        Ok(acc)
    }

    fn storage_of_input(&self, b: usize) -> &'static str {
        let k = self.bound[b];
        self.loads
            .iter()
            .find(|((kk, _), _)| *kk == k)
            .map(|(_, v)| match v.ty {
                Ty::F32 => "f32",
                Ty::I32 => "i32",
                Ty::U32 | Ty::Bool => "u32",
            })
            .unwrap_or("u32")
    }
}

/// Words of the uniform header: n, width, stride, start.
const HEADER: usize = 4;

/// The 2-D grid-stride layout of `n` invocations: workgroups, the row width and
/// the loop stride in invocations.
fn grid(n: u64, limits: &DeviceLimits) -> ([u32; 3], u32, u32) {
    let max = limits.max_workgroups_per_dim.max(1) as u64;
    let groups = n.div_ceil(WORKGROUP as u64).max(1);
    let gx = groups.min(max);
    let gy = groups.div_ceil(gx).min(max);
    (
        [gx as u32, gy as u32, 1],
        (gx * WORKGROUP as u64) as u32,
        (gx * gy * WORKGROUP as u64).min(u32::MAX as u64) as u32,
    )
}

/// Per-dimension element strides of a tensor of `shape` read at the coordinates
/// of `out` with numpy broadcasting (0 where it broadcasts).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Result<Vec<usize>, String> {
    let r = out.len();
    if shape.len() > r {
        return Err(format!("shape {shape:?} is larger than the output {out:?}"));
    }
    if broadcast(&[shape, out])? != out {
        return Err(format!("shape {shape:?} does not broadcast to {out:?}"));
    }
    let mut stride = 1usize;
    let off = r - shape.len();
    let mut strides = vec![0usize; r];
    for k in (0..shape.len()).rev() {
        if shape[k] != 1 {
            strides[off + k] = stride;
        }
        stride *= shape[k];
    }
    Ok(strides)
}
