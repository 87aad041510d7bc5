//! MatMul and Gemm as one strided, batched matrix product with an epilogue.
//!
//! Both ops become a [`Problem`]: `Y[b, m, n] = ALPHA * sum_k A[b, m, k] B[b, k, n]
//! (+ BETA * C[m, n])`, where A and B are read through element strides (so Gemm's
//! transposes and numpy's 1-D operands need no copies) and per-batch offsets
//! (numpy batch broadcasting). Two kernels compute it:
//!
//! - `matmul_tiled` (the default): register-tiled; a workgroup computes a
//!   `BM x BN` block, each invocation a block of `4*TM4 x 4*TN4` outputs held as
//!   vec4 accumulators; A and B tiles are staged in workgroup memory, loaded as
//!   vec4 where the layout allows (contiguous along k for A, along n for B, with the
//!   dimension a multiple of 4).
//! - `matmul_naive`: the classic 16x16 shared-memory tiled kernel, one output per
//!   invocation, kept as the benchmark's baseline.
//!
//! Every dispatch reads the part of the product it computes from a uniform
//! ([`split::Part`]: batches, rows, columns and the k range, and where each
//! operand's binding starts), so a product whose operands exceed one storage
//! binding runs as several dispatches of the same shader over windows of them
//! (`matmul/split.rs`); a product that fits is one part.
//!
//! On lavapipe (2 cores, 2026-11) `cargo test --bench matmul_gpu` measured, in one
//! run, 1024^3: naive 0.59 GFLOP/s, register-tiled (8x8 workgroups, 16x16 outputs
//! per invocation, BK 8) 12.3 GFLOP/s (20.9x); 512^3: 0.73 vs 12.6 GFLOP/s (17.2x).

mod split;

use super::template::{batch_offsets_body, bindings, f32_literal, fill, grid};
use super::{input, output, storage};
use crate::codegen::spec::{
    DeviceLimits, Dispatch, NodeInfo, NodeKernels, Slot, Storage, TensorDesc,
};
use split::{Lens, Part};

const TILED: &str = include_str!("../../../kernels/matmul_tiled.wgsl");
const NAIVE: &str = include_str!("../../../kernels/matmul_naive.wgsl");

/// Tiling of the register-tiled kernel: a `wg_x x wg_y` workgroup, each
/// invocation computing `4*tm4` rows by `4*tn4` columns, `bk` values of k staged
/// per step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileConfig {
    pub wg_x: u32,
    pub wg_y: u32,
    pub tm4: u32,
    pub tn4: u32,
    pub bk: u32,
}

impl TileConfig {
    /// The tiling for an `m x n` output. Large products get 16 x 16 outputs per
    /// invocation in 8 x 8 workgroups (128 x 128 blocks, 8 values of k per step):
    /// the fastest of the tilings measured on lavapipe (benches/matmul_gpu.rs,
    /// ~23x the naive kernel at 1024^3). Thin or small outputs get fewer rows or
    /// columns per invocation and smaller workgroups, so a matrix-vector product
    /// does not compute a block of padding.
    pub fn for_shape(m: usize, n: usize) -> TileConfig {
        // Vec4 rows (or columns) to cover; vec4s per invocation; invocations.
        let per = |v: usize| {
            if v >= 32 {
                4
            } else if v >= 16 {
                2
            } else {
                1
            }
        };
        let (rm, rn) = (m.div_ceil(4).max(1), n.div_ceil(4).max(1));
        let (tm4, tn4) = (per(rm), per(rn));
        let cover = |v: usize, t: u32, cap: u32| {
            (v.div_ceil(t as usize) as u32).next_power_of_two().min(cap)
        };
        let wg_y = cover(rm, tm4, 8);
        let wg_x = cover(rn, tn4, 64 / wg_y);
        let mut t = TileConfig {
            wg_x,
            wg_y,
            tm4,
            tn4,
            bk: if tm4 * tn4 >= 8 || wg_x + wg_y > 48 {
                8
            } else {
                16
            },
        };
        // Stay within 16 KiB of workgroup memory (WebGPU's minimum).
        while t.shared_bytes() > 16 << 10 {
            if t.bk > 4 {
                t.bk /= 2;
            } else {
                t.wg_x = (t.wg_x / 2).max(1);
            }
        }
        t
    }
    /// Workgroup memory for the A and B tiles.
    fn shared_bytes(&self) -> u32 {
        16 * self.bk * (self.tm4 * self.wg_y + self.tn4 * self.wg_x)
    }
    fn label(&self) -> String {
        format!("matmul_tiled_{}x{}", 4 * self.tm4, 4 * self.tn4)
    }
    fn block_m(&self) -> usize {
        (4 * self.tm4 * self.wg_y) as usize
    }
    fn block_n(&self) -> usize {
        (4 * self.tn4 * self.wg_x) as usize
    }
}

/// Which matrix-product kernel to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulKernel {
    /// One output per invocation, 16x16 tiles in workgroup memory (the baseline).
    Naive,
    /// Register-tiled (the default for MatMul and Gemm).
    Tiled(TileConfig),
}

/// A batched, strided matrix product with its epilogue.
#[derive(Debug, Clone)]
struct Problem {
    t: Storage,
    m: usize,
    n: usize,
    k: usize,
    /// The broadcast batch shape and each operand's element stride per batch dim.
    batch: Vec<usize>,
    a_batch: Vec<usize>,
    b_batch: Vec<usize>,
    a_sm: usize,
    a_sk: usize,
    b_sk: usize,
    b_sn: usize,
    alpha: f32,
    /// `(beta, C's row stride, C's column stride)`; strides are 0 where C broadcasts.
    c: Option<(f32, usize, usize)>,
}

impl Problem {
    fn batch_count(&self) -> usize {
        self.batch.iter().product()
    }
    fn slots(&self) -> Vec<Slot> {
        let mut s = vec![Slot::Input(0), Slot::Input(1)];
        if self.c.is_some() {
            s.push(Slot::Input(2));
        }
        s.push(Slot::Output(0));
        s
    }
    fn vec_a(&self) -> bool {
        self.a_sk == 1 && self.k.is_multiple_of(4)
    }
    fn vec_b(&self) -> bool {
        self.b_sn == 1 && self.n.is_multiple_of(4)
    }
    /// Binding declarations; `vec` says whether A and B are bound as vec4 arrays.
    fn bindings(&self, vec: bool) -> String {
        let t = self.t.wgsl();
        let v4 = format!("vec4<{t}>");
        let mut types = vec![
            if vec && self.vec_a() {
                v4.clone()
            } else {
                t.to_string()
            },
            if vec && self.vec_b() {
                v4
            } else {
                t.to_string()
            },
        ];
        let mut names = vec!["a", "b"];
        if self.c.is_some() {
            types.push(t.to_string());
            names.push("c");
        }
        types.push(t.to_string());
        names.push("y");
        bindings(&self.slots(), &names, &types)
    }
    fn epilogue(&self) -> String {
        let mut e = if self.alpha == 1.0 {
            "acc".to_string()
        } else {
            format!("{} * acc", f32_literal(self.alpha))
        };
        if let Some((beta, sm, sn)) = self.c {
            let c = format!("c[m * {sm}u + n * {sn}u - P.c_base]");
            if beta == 1.0 {
                e = format!("{e} + {c}");
            } else {
                e = format!("{e} + {} * {c}", f32_literal(beta));
            }
        }
        e
    }
    /// `alpha * acc`: what a k part after the first adds to the output.
    fn scaled(&self) -> String {
        if self.alpha == 1.0 {
            "acc".to_string()
        } else {
            format!("{} * acc", f32_literal(self.alpha))
        }
    }
    fn common_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("T", self.t.wgsl().to_string()),
            ("M", self.m.to_string()),
            ("N", self.n.to_string()),
            ("K", self.k.to_string()),
            ("BATCH", self.batch_count().to_string()),
            ("A_SM", self.a_sm.to_string()),
            ("A_SK", self.a_sk.to_string()),
            ("B_SK", self.b_sk.to_string()),
            ("B_SN", self.b_sn.to_string()),
            (
                "BATCH_OFFSETS",
                batch_offsets_body(&self.batch, &self.a_batch, &self.b_batch),
            ),
            ("EPILOGUE", self.epilogue()),
            ("SCALED", self.scaled()),
            ("PARAMS", params_decl(self.slots().len())),
        ]
    }

    /// The shader of a kernel and the rows and columns of its workgroups' blocks.
    fn shader(
        &self,
        kernel: MatmulKernel,
        limits: &DeviceLimits,
    ) -> Result<(String, String, usize, usize), String> {
        match kernel {
            MatmulKernel::Naive => {
                let label = "matmul_naive_16x16";
                let mut vars = self.common_vars();
                vars.push(("BINDINGS", self.bindings(false)));
                Ok((label.into(), fill(label, NAIVE, &vars)?, 16, 16))
            }
            MatmulKernel::Tiled(t) => {
                let (label, wgsl) = self.tiled(t, limits)?;
                Ok((label, wgsl, t.block_m(), t.block_n()))
            }
        }
    }

    /// One part's dispatch of a kernel's shader.
    fn dispatch(
        &self,
        (label, wgsl, bm, bn): &(String, String, usize, usize),
        part: &Part,
        limits: &DeviceLimits,
    ) -> Result<Dispatch, String> {
        let tiles_m = (part.m.1 - part.m.0).div_ceil(*bm);
        let tiles_n = (part.n.1 - part.n.0).div_ceil(*bn);
        let groups = (tiles_m * tiles_n) as u64 * part.nb as u64;
        let g = grid(label, groups, limits)?;
        let base = |s: Slot| {
            part.bound
                .iter()
                .find(|b| b.slot.base() == s)
                .map_or(0, |b| b.word())
        };
        let w = |v: usize| v as u32;
        Ok(Dispatch {
            label: label.clone(),
            wgsl: wgsl.clone(),
            slots: part.bound.iter().map(|b| b.slot).collect(),
            params: vec![
                w(part.m.0),
                w(part.m.1),
                w(part.n.0),
                w(part.n.1),
                w(part.k.0),
                w(part.k.1),
                w(part.b0),
                w(part.nb),
                w(tiles_m),
                w(tiles_n),
                g[0],
                g[1],
                base(Slot::Input(0)),
                base(Slot::Input(1)),
                base(Slot::Input(2)),
                base(Slot::Output(0)),
                u32::from(part.accumulate),
            ],
            workgroups: g,
        })
    }

    fn tiled(&self, cfg: TileConfig, limits: &DeviceLimits) -> Result<(String, String), String> {
        let label = cfg.label();
        if !cfg.bk.is_multiple_of(4) || cfg.wg_x * cfg.wg_y > limits.max_invocations {
            return Err(format!("kernel {label}: bad tiling {cfg:?}"));
        }
        let shared = cfg.shared_bytes();
        if shared > limits.max_workgroup_storage {
            return Err(format!(
                "kernel {label}: tiles need {shared} bytes of workgroup memory, over the device's {}",
                limits.max_workgroup_storage
            ));
        }
        let mut vars = self.common_vars();
        vars.extend([
            ("BINDINGS", self.bindings(true)),
            ("WG_X", cfg.wg_x.to_string()),
            ("WG_Y", cfg.wg_y.to_string()),
            ("TM4", cfg.tm4.to_string()),
            ("TN4", cfg.tn4.to_string()),
            ("BK", cfg.bk.to_string()),
            ("LOADS", self.loads()),
            ("ACC_DECL", acc_decl(self.t, cfg)),
            ("INNER", inner(self.t, cfg)),
            ("STORE", store(cfg)),
        ]);
        Ok((label.clone(), fill(&label, TILED, &vars)?))
    }

    /// `load_a4(base, m, k)`: A[m, k..k+4]; `load_b4(base, k, n)`: B[k, n..n+4];
    /// zero outside the matrices.
    fn loads(&self) -> String {
        let t = self.t.wgsl();
        let mut s = String::new();
        let scalar = |name: &str,
                      buf: &str,
                      outer: &str,
                      outer_n: &str,
                      inner: &str,
                      inner_n: &str,
                      so: &str,
                      si: &str| {
            let mut f = format!(
                "fn {name}(base: u32, {outer}: u32, {inner}: u32) -> vec4<{t}> {{\n    var v = vec4<{t}>({t}(0));\n    if ({outer} < {outer_n}) {{\n        let p = base + {outer} * {so} + {inner} * {si};\n"
            );
            for (i, comp) in ["x", "y", "z", "w"].iter().enumerate() {
                f.push_str(&format!(
                    "        if ({inner} + {i}u < {inner_n}) {{\n            v.{comp} = {buf}[p + {i}u * {si}];\n        }}\n"
                ));
            }
            f.push_str("    }\n    return v;\n}\n");
            f
        };
        let vector = |name: &str,
                      buf: &str,
                      outer: &str,
                      outer_n: &str,
                      inner: &str,
                      inner_n: &str,
                      so: &str| {
            format!(
                "fn {name}(base: u32, {outer}: u32, {inner}: u32) -> vec4<{t}> {{\n    if ({outer} < {outer_n} && {inner} < {inner_n}) {{\n        return {buf}[(base + {outer} * {so} + {inner}) / 4u];\n    }}\n    return vec4<{t}>({t}(0));\n}}\n"
            )
        };
        s.push_str(&if self.vec_a() {
            vector("load_a4", "a", "m", "P.m1", "k", "P.k1", "A_SM")
        } else {
            scalar("load_a4", "a", "m", "P.m1", "k", "P.k1", "A_SM", "A_SK")
        });
        s.push('\n');
        s.push_str(&if self.vec_b() {
            vector("load_b4", "b", "k", "P.k1", "n", "P.n1", "B_SK")
        } else {
            scalar("load_b4", "b", "k", "P.k1", "n", "P.n1", "B_SK", "B_SN")
        });
        s
    }
}

fn acc_name(i: u32, c: u32, j: u32) -> String {
    format!("acc_{i}_{c}_{j}")
}

fn acc_decl(t: Storage, cfg: TileConfig) -> String {
    let t = t.wgsl();
    let mut s = Vec::new();
    for i in 0..cfg.tm4 {
        for c in 0..4 {
            for j in 0..cfg.tn4 {
                s.push(format!(
                    "    var {} = vec4<{t}>({t}(0));",
                    acc_name(i, c, j)
                ));
            }
        }
    }
    s.join("\n")
}

fn inner(t: Storage, cfg: TileConfig) -> String {
    let ty = t.wgsl();
    let mut s = Vec::new();
    for i in 0..cfg.tm4 {
        s.push(format!(
            "            let a{i} = tile_a[kk][lid.y + {i}u * WG_Y];"
        ));
    }
    for j in 0..cfg.tn4 {
        s.push(format!(
            "            let b{j} = tile_b[kk][lid.x + {j}u * WG_X];"
        ));
    }
    for i in 0..cfg.tm4 {
        for (c, comp) in ["x", "y", "z", "w"].iter().enumerate() {
            for j in 0..cfg.tn4 {
                let acc = acc_name(i, c as u32, j);
                s.push(if t == Storage::F32 {
                    format!("            {acc} = fma(vec4<{ty}>(a{i}.{comp}), b{j}, {acc});")
                } else {
                    format!("            {acc} = {acc} + vec4<{ty}>(a{i}.{comp}) * b{j};")
                });
            }
        }
    }
    s.join("\n")
}

fn store(cfg: TileConfig) -> String {
    let mut s = Vec::new();
    for i in 0..cfg.tm4 {
        for c in 0..4 {
            for j in 0..cfg.tn4 {
                s.push(format!(
                    "    store4(ybase, row0 + (lid.y + {i}u * WG_Y) * 4u + {c}u, col0 + (lid.x + {j}u * WG_X) * 4u, {});",
                    acc_name(i, c, j)
                ));
            }
        }
    }
    s.join("\n")
}

/// Per-batch-dim element strides of an operand whose batch shape is `own`
/// (right-aligned against `batch`, 0 where broadcast), `mat` elements per matrix.
fn batch_strides(batch: &[usize], own: &[usize], mat: usize) -> Vec<usize> {
    let pad = batch.len() - own.len();
    let mut strides = vec![0; batch.len()];
    let mut s = mat;
    for d in (0..own.len()).rev() {
        strides[d + pad] = if own[d] == 1 { 0 } else { s };
        s *= own[d];
    }
    strides
}

/// The uniform a dispatch reads its part from (binding `at`, after the slots).
fn params_decl(at: usize) -> String {
    format!(
        "struct Part {{\n    m0: u32, m1: u32, n0: u32, n1: u32, k0: u32, k1: u32, b0: u32, nb: u32,\n    tiles_m: u32, tiles_n: u32, grid_x: u32, grid_y: u32,\n    a_base: u32, b_base: u32, c_base: u32, y_base: u32, accumulate: u32,\n}}\n@group(0) @binding({at}) var<uniform> P: Part;"
    )
}

fn kernels(
    p: &Problem,
    lens: Lens,
    kernel: MatmulKernel,
    limits: &DeviceLimits,
) -> Result<NodeKernels, String> {
    if p.m * p.n * p.batch_count() == 0 {
        return Ok(NodeKernels::default());
    }
    if p.k == 0 {
        return Err("matrix product over an empty inner dimension (K = 0)".into());
    }
    let parts = p.split(lens, limits)?;
    let shader = p.shader(kernel, limits)?;
    Ok(NodeKernels {
        dispatches: parts
            .iter()
            .map(|part| p.dispatch(&shader, part, limits))
            .collect::<Result<_, _>>()?,
        temps: vec![],
    })
}

/// The element counts of a node's operands.
fn lens(info: &NodeInfo) -> Lens {
    let len = |k: usize| {
        info.inputs
            .get(k)
            .cloned()
            .flatten()
            .map_or(0, |t| t.len() as u64)
    };
    Lens {
        a: len(0),
        b: len(1),
        c: len(2),
        y: info.outputs.first().map_or(0, |t| t.len() as u64),
    }
}

fn matmul_problem(a: &TensorDesc, b: &TensorDesc, t: Storage) -> Result<Problem, String> {
    if a.shape.is_empty() || b.shape.is_empty() {
        return Err("MatMul operands must have rank >= 1".into());
    }
    let a_shape = if a.shape.len() == 1 {
        vec![1, a.shape[0]]
    } else {
        a.shape.clone()
    };
    let b_shape = if b.shape.len() == 1 {
        vec![b.shape[0], 1]
    } else {
        b.shape.clone()
    };
    let (ar, br) = (a_shape.len(), b_shape.len());
    let (m, k, k2, n) = (
        a_shape[ar - 2],
        a_shape[ar - 1],
        b_shape[br - 2],
        b_shape[br - 1],
    );
    if k != k2 {
        return Err(format!(
            "MatMul: inner dimensions differ ({:?} x {:?})",
            a.shape, b.shape
        ));
    }
    let (ab, bb) = (&a_shape[..ar - 2], &b_shape[..br - 2]);
    let batch =
        crate::ops::broadcast::broadcast_shape(ab, bb).map_err(|e| format!("MatMul: {e}"))?;
    Ok(Problem {
        t,
        m,
        n,
        k,
        a_batch: batch_strides(&batch, ab, m * k),
        b_batch: batch_strides(&batch, bb, k * n),
        batch,
        a_sm: k,
        a_sk: 1,
        b_sk: n,
        b_sn: 1,
        alpha: 1.0,
        c: None,
    })
}

pub(super) fn lower_matmul(info: &NodeInfo) -> Result<NodeKernels, String> {
    let (a, b) = (input(info, 0)?, input(info, 1)?);
    let y = output(info, 0)?;
    let t = storage(y, "MatMul output")?;
    if t == Storage::U32 || storage(a, "A")? != t || storage(b, "B")? != t {
        return Err(format!("MatMul of {:?} and {:?}", a.dtype, b.dtype));
    }
    let p = matmul_problem(a, b, t)?;
    let expect = p.batch_count() * p.m * p.n;
    if y.len() != expect {
        return Err(format!(
            "MatMul: output {:?} does not hold {expect} elements",
            y.shape
        ));
    }
    kernels(
        &p,
        lens(info),
        MatmulKernel::Tiled(TileConfig::for_shape(p.m, p.n)),
        &info.limits,
    )
}

pub(super) fn lower_gemm(info: &NodeInfo) -> Result<NodeKernels, String> {
    let (a, b) = (input(info, 0)?, input(info, 1)?);
    let y = output(info, 0)?;
    if [a.dtype, b.dtype, y.dtype]
        .iter()
        .any(|&d| d != crate::ir::dtype::DType::F32)
    {
        return Err(format!(
            "Gemm of {:?} and {:?} (f32 only)",
            a.dtype, b.dtype
        ));
    }
    if a.shape.len() != 2 || b.shape.len() != 2 {
        return Err(format!(
            "Gemm: A {:?} and B {:?} must be 2-D",
            a.shape, b.shape
        ));
    }
    let ctx = super::op_ctx(info);
    let (alpha, beta) = (ctx.float("alpha", 1.0), ctx.float("beta", 1.0));
    let (ta, tb) = (ctx.int("transA", 0) != 0, ctx.int("transB", 0) != 0);
    let (m, k) = if ta {
        (a.shape[1], a.shape[0])
    } else {
        (a.shape[0], a.shape[1])
    };
    let (k2, n) = if tb {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != k2 {
        return Err(format!(
            "Gemm: inner dimensions differ ({m}x{k} and {k2}x{n})"
        ));
    }
    let c = match info.inputs.get(2).and_then(|c| c.as_ref()) {
        Some(c) if beta != 0.0 => {
            if c.dtype != crate::ir::dtype::DType::F32 || c.shape.len() > 2 {
                return Err(format!(
                    "Gemm: C {:?} {:?} is not an f32 of rank <= 2",
                    c.dtype, c.shape
                ));
            }
            let mut cs = vec![1; 2 - c.shape.len()];
            cs.extend(&c.shape);
            let fits = |d: usize, full: usize| d == 1 || d == full;
            if !fits(cs[0], m) || !fits(cs[1], n) {
                return Err(format!(
                    "Gemm: C {:?} does not broadcast to [{m}, {n}]",
                    c.shape
                ));
            }
            let sn = usize::from(cs[1] != 1);
            let sm = if cs[0] == 1 { 0 } else { cs[1] };
            Some((beta, sm, sn))
        }
        _ => None,
    };
    if y.shape != [m, n] {
        return Err(format!("Gemm: output {:?} is not [{m}, {n}]", y.shape));
    }
    let p = Problem {
        t: Storage::F32,
        m,
        n,
        k,
        batch: vec![],
        a_batch: vec![],
        b_batch: vec![],
        a_sm: if ta { 1 } else { k },
        a_sk: if ta { m } else { 1 },
        b_sk: if tb { 1 } else { n },
        b_sn: if tb { k } else { 1 },
        alpha,
        c,
    };
    kernels(
        &p,
        lens(info),
        MatmulKernel::Tiled(TileConfig::for_shape(m, n)),
        &info.limits,
    )
}

/// The kernels of an f32 `[m, k] x [k, n]` product with the chosen kernel, for
/// benchmarks and tests that compare the kernels on the same problem. Inputs are
/// A and B; output 0 is `[m, n]`.
pub fn matmul_kernels(
    kernel: MatmulKernel,
    m: usize,
    n: usize,
    k: usize,
    limits: &DeviceLimits,
) -> Result<NodeKernels, String> {
    let a = TensorDesc::new(crate::ir::dtype::DType::F32, &[m, k]);
    let b = TensorDesc::new(crate::ir::dtype::DType::F32, &[k, n]);
    let lens = Lens {
        a: a.len() as u64,
        b: b.len() as u64,
        c: 0,
        y: (m * n) as u64,
    };
    kernels(&matmul_problem(&a, &b, Storage::F32)?, lens, kernel, limits)
}
