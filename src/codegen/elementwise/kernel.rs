//! The kernel skeleton of elementwise code: the symbolic values of its dataflow
//! ([`Sym`]) and the generator ([`Gen`]) that reads inputs with broadcasting,
//! inlines constants and prints the grid-stride shader with its uniform words.

use super::{broadcast, ty_of, WORKGROUP};
use crate::codegen::builder::{literal, Body, Ty, Val};
use crate::codegen::spec::{Dispatch, Slot, Storage};
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
    /// Uniform words after the header (n, width, stride) and dims/strides of the
    /// iteration shape.
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
        let mut params = vec![0u32; 3];
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

    /// The index expression of a tensor of `shape` at the iteration index.
    pub(super) fn index(&mut self, shape: &[usize]) -> Result<String, String> {
        let len: usize = shape.iter().product();
        if len == self.n() {
            return Ok("i".into());
        }
        if len == 1 {
            return Ok("0u".into());
        }
        let r = self.shape.len();
        if shape.len() > r {
            return Err(format!(
                "shape {shape:?} is larger than the output {:?}",
                self.shape
            ));
        }
        let full = broadcast(&[shape, &self.shape])?;
        if full != self.shape {
            return Err(format!(
                "shape {shape:?} does not broadcast to {:?}",
                self.shape
            ));
        }
        self.uses_coords = true;
        let mut terms = vec![];
        let mut stride = 1usize;
        let off = r - shape.len();
        let mut strides = vec![0usize; r];
        for k in (0..shape.len()).rev() {
            if shape[k] != 1 {
                strides[off + k] = stride;
            }
            stride *= shape[k];
        }
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
                let raw = format!("in{b}[{idx}]");
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

    /// The shader for stores of `outs` (output k ← value).
    pub(super) fn finish(
        mut self,
        label: &str,
        outs: &[(Val, DType)],
        limits: &crate::codegen::spec::DeviceLimits,
    ) -> Dispatch {
        for (j, (v, d)) in outs.iter().enumerate() {
            let code = match (v.ty, d) {
                (Ty::Bool, _) => format!("select(0u, 1u, {v})"),
                (Ty::U32, DType::U8) => format!("({v} & 255u)"),
                _ => v.code.clone(),
            };
            self.body.stmt(format!("out{j}[i] = {code};"));
        }
        let mut src = String::new();
        let words = self.params.len().div_ceil(4).max(1);
        for (b, &k) in self.bound.iter().enumerate() {
            let _ = k;
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
        let pbind = self.bound.len() + outs.len();
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
            "@compute @workgroup_size({WORKGROUP})\nfn main(@builtin(global_invocation_id) gid: vec3<u32>) {{\n  let n = pr(0u);\n  for (var i: u32 = gid.x + gid.y * pr(1u); i < n; i = i + pr(2u)) {{\n"
        );
        let r = self.shape.len();
        if self.uses_coords {
            for d in 0..r {
                src += &format!(
                    "    let c{d}: u32 = (i / pr({}u)) % pr({}u);\n",
                    3 + r + d,
                    3 + d
                );
            }
        }
        for l in self.body.lines() {
            src += "    ";
            src += l;
            src += "\n";
        }
        src += "  }\n}\n";
        // Dispatch: 2-D, grid-stride.
        let n = self.n() as u64;
        let max = limits.max_workgroups_per_dim.max(1) as u64;
        let groups = n.div_ceil(WORKGROUP as u64).max(1);
        let gx = groups.min(max);
        let gy = groups.div_ceil(gx).min(max);
        self.params[0] = n as u32;
        self.params[1] = (gx * WORKGROUP as u64) as u32;
        self.params[2] = (gx * gy * WORKGROUP as u64).min(u32::MAX as u64) as u32;
        let mut slots: Vec<Slot> = self.bound.iter().map(|&k| Slot::Input(k)).collect();
        slots.extend((0..outs.len()).map(Slot::Output));
        Dispatch {
            label: label.to_string(),
            wgsl: src,
            slots,
            params: self.params,
            workgroups: [gx as u32, gy as u32, 1],
        }
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
