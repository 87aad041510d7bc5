//! Elementwise kernels: one generated shader per node, or per fused node whose
//! body is all elementwise ops and views (one kernel for the whole chain).
//!
//! The kernel walks the output's elements with a grid-stride loop over a 2-D
//! dispatch (so any size fits the 65,535-workgroups-per-dimension limit). Inputs
//! are read with numpy broadcasting: an input with as many elements as the output
//! is read at the output's index, a one-element input at 0, any other through
//! per-dimension strides (0 where broadcast). Shapes and strides travel as uniform
//! parameters, so one pipeline serves every shape of the same rank and input
//! layout. Views (Identity, Reshape, Flatten, Squeeze, Unsqueeze) lower to
//! [`Lowering::Alias`]; inside a fused body a view of an input only changes the
//! shape the input is read with.
//!
//! Semantics follow the interpreter (`src/ops/unary.rs`, `binary.rs`, ...):
//! Round is half-to-even, integer Div truncates, Mod follows `fmod`, Pow of
//! integers wraps, Max/Min propagate NaN, uint8 arithmetic wraps at 8 bits, and
//! int64 computes in the device's 32 bits.

use super::builder::{literal, Body, Ty, Val};
use super::spec::{Dispatch, Lowering, NodeInfo, NodeKernels, Slot, Storage, TensorDesc};
use crate::interp::value::TensorValue;
use crate::ir::dtype::DType;
use crate::ir::graph::{Graph, Initializer, Node, ValueId};
use std::collections::{BTreeSet, HashMap};

/// Ops lowered to an alias of input 0.
const VIEWS: &[&str] = &["Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"];

/// Ops with a generated elementwise kernel.
pub(crate) const OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Reciprocal",
    "Neg",
    "Abs",
    "Exp",
    "Log",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Softsign",
    "Erf",
    "Gelu",
    "Mish",
    "Min",
    "Max",
    "Sum",
    "Mean",
    "Where",
    "Less",
    "Greater",
    "Equal",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "Clip",
    "Cast",
    "Sin",
    "Cos",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "PRelu",
    "ThresholdedRelu",
    "Shrink",
    "IsNaN",
    "IsInf",
    "Mod",
    "BitShift",
    "Tan",
    "Atan",
    "Asin",
    "Acos",
    "Sinh",
    "Cosh",
];

const WORKGROUP: u32 = 256;

fn is_default_domain(d: &str) -> bool {
    d.is_empty() || d == "ai.onnx"
}

pub(crate) fn lower(info: &NodeInfo) -> Option<Lowering> {
    let node = info.node;
    if crate::fused::is_fused(node) {
        return fused(info);
    }
    if !is_default_domain(&node.domain) {
        return None;
    }
    let op = node.op_type.as_str();
    if VIEWS.contains(&op) {
        return Some(view(info));
    }
    if !OPS.contains(&op) {
        return None;
    }
    Some(single(info).unwrap_or_else(Lowering::Unsupported))
}

fn view(info: &NodeInfo) -> Lowering {
    match (
        info.inputs.first().and_then(|i| i.as_ref()),
        info.outputs.first(),
    ) {
        (Some(i), Some(o)) if i.dtype == o.dtype && i.len() == o.len() => Lowering::Alias,
        _ => Lowering::Unsupported(format!(
            "{}: the output is not a view of input 0",
            info.node.op_type
        )),
    }
}

fn ty_of(d: DType) -> Result<Ty, String> {
    Ok(match d {
        DType::F32 => Ty::F32,
        DType::I32 | DType::I64 => Ty::I32,
        DType::U8 => Ty::U32,
        DType::Bool => Ty::Bool,
        d => return Err(format!("element type {d} has no elementwise kernel")),
    })
}

/// numpy broadcasting of shapes.
fn broadcast(shapes: &[&[usize]]) -> Result<Vec<usize>, String> {
    let r = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out = vec![1usize; r];
    for s in shapes {
        for (k, &d) in s.iter().enumerate() {
            let o = &mut out[r - s.len() + k];
            if *o == 1 {
                *o = d;
            } else if d != 1 && d != *o {
                return Err(format!("shapes {shapes:?} do not broadcast"));
            }
        }
    }
    Ok(out)
}

/// A value of the kernel's dataflow.
#[derive(Clone)]
enum Sym {
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
    fn shape(&self) -> &[usize] {
        match self {
            Sym::Input { shape, .. } | Sym::Const { shape, .. } | Sym::Comp { shape, .. } => shape,
        }
    }
    fn dtype(&self) -> DType {
        match self {
            Sym::Input { dtype, .. } | Sym::Comp { dtype, .. } => *dtype,
            Sym::Const { t, .. } => t.dtype(),
        }
    }
}

/// Generates one kernel over the iteration shape.
struct Gen {
    shape: Vec<usize>,
    body: Body,
    /// Uniform words after the header (n, width, stride) and dims/strides of the
    /// iteration shape.
    params: Vec<u32>,
    /// Node inputs read: input index → binding.
    bound: Vec<usize>,
    loads: HashMap<(usize, Vec<usize>), Val>,
    consts: Vec<String>,
    helpers: BTreeSet<&'static str>,
    uses_coords: bool,
}

impl Gen {
    fn new(shape: &[usize]) -> Gen {
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

    fn n(&self) -> usize {
        self.shape.iter().product()
    }

    /// The index expression of a tensor of `shape` at the iteration index.
    fn index(&mut self, shape: &[usize]) -> Result<String, String> {
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
    fn get(&mut self, s: &Sym) -> Result<Val, String> {
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
    fn finish(
        mut self,
        label: &str,
        outs: &[(Val, DType)],
        limits: &super::DeviceLimits,
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
            src += helper_source(h);
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

fn helper_source(name: &str) -> &'static str {
    match name {
        "erf" => "fn erf_f(x: f32) -> f32 {\n  let a = abs(x);\n  let t = 1.0 / (1.0 + 0.3275911 * a);\n  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-a * a);\n  let r = select(y, a * (1.1283791671 - 0.3761263890 * a * a), a < 0.01);\n  return select(r, -r, x < 0.0);\n}\n",
        "pow" => "fn pow_f(a: f32, b: f32) -> f32 {\n  if (b == 0.0) { return 1.0; }\n  if (is_nan(a) || is_nan(b)) { return a + b; }\n  let r = pow(abs(a), b);\n  if (a == 0.0) { return select(bitcast<f32>(0x7f800000u), 0.0, b > 0.0); }\n  if (a < 0.0) {\n    if (floor(b) != b) { return bitcast<f32>(0x7fc00000u); }\n    if (floor(b * 0.5) != b * 0.5) { return -r; }\n  }\n  return r;\n}\n",
        "ipow" => "fn pow_i(a: i32, e: i32) -> i32 {\n  if (e < 0) {\n    if (a == 1) { return 1; }\n    if (a == -1) { return select(1, -1, (e & 1) == 1); }\n    return 0;\n  }\n  var acc: i32 = 1; var b = a; var k = e;\n  loop {\n    if (k == 0) { break; }\n    if ((k & 1) == 1) { acc = acc * b; }\n    k = k >> 1u;\n    b = b * b;\n  }\n  return acc;\n}\n",
        "upow" => "fn pow_u(a: u32, e: u32) -> u32 {\n  var acc: u32 = 1u; var b = a; var k = e;\n  loop {\n    if (k == 0u) { break; }\n    if ((k & 1u) == 1u) { acc = (acc * b) & 255u; }\n    k = k >> 1u;\n    b = (b * b) & 255u;\n  }\n  return acc;\n}\n",
        // The interpreter's rational approximation (MLAS/Eigen): accurate for
        // small |x|, where the device's exp-based tanh cancels.
        "tanh" => "fn tanh_f(x0: f32) -> f32 {\n  let x = clamp(x0, -9.0, 9.0);\n  let x2 = x * x;\n  let p = ((((((-2.7607685e-16 * x2 + 2.000188e-13) * x2 - 8.604672e-11) * x2 + 5.122297e-8) * x2 + 1.4857224e-5) * x2 + 6.3726193e-4) * x2 + 4.8935246e-3) * x;\n  let q = ((1.1982584e-6 * x2 + 1.1853471e-4) * x2 + 2.2684346e-3) * x2 + 4.893525e-3;\n  return clamp(select(p / q, x, abs(x) < 4e-4), -1.0, 1.0);\n}\n",
        "softplus" => "fn log1p_pos(e: f32) -> f32 {\n  if (e < 0.01) { return e * (1.0 - e * (0.5 - e * (0.33333334 - e * 0.25))); }\n  return log(1.0 + e);\n}\nfn softplus_f(x: f32) -> f32 { return select(log1p_pos(exp(x)), x + log1p_pos(exp(-x)), x > 0.0); }\n",
        "isnan" => "fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }\n",
        _ => "",
    }
}

fn attr_f(node: &Node, name: &str, default: f32) -> f64 {
    node.attr(name)
        .and_then(|a| a.value.as_float())
        .unwrap_or(default) as f64
}

fn attr_i(node: &Node, name: &str, default: i64) -> i64 {
    node.attr(name)
        .and_then(|a| a.value.as_int())
        .unwrap_or(default)
}

fn attr_s(node: &Node, name: &str) -> Option<String> {
    node.attr(name)
        .and_then(|a| a.value.as_str())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// The op applied to values already at the iteration index.
fn emit(
    b: &mut Body,
    h: &mut BTreeSet<&'static str>,
    node: &Node,
    args: &[Option<Val>],
    in_types: &[Option<DType>],
    out: DType,
) -> Result<Val, String> {
    let op = node.op_type.as_str();
    let oty = ty_of(out)?;
    let arg = |k: usize| -> Result<Val, String> {
        args.get(k)
            .cloned()
            .flatten()
            .ok_or_else(|| format!("{op}: input {k} is missing"))
    };
    let x = arg(0)?;
    let xd = in_types.first().copied().flatten().unwrap_or(out);
    let is_f = x.ty == Ty::F32;
    let lf = |v: f64| literal(Ty::F32, v);
    let zero = literal(x.ty, 0.0);
    let u8_wrap = |b: &mut Body, v: Val| -> Val {
        if out == DType::U8 {
            b.bind(Ty::U32, format!("({v} & 255u)"))
        } else {
            v
        }
    };
    let v = match op {
        "Add" | "Sub" | "Mul" => {
            let y = arg(1)?;
            let o = match op {
                "Add" => "+",
                "Sub" => "-",
                _ => "*",
            };
            let r = b.bind(oty, format!("{x} {o} {y}"));
            u8_wrap(b, r)
        }
        "Div" => {
            let y = arg(1)?;
            if is_f {
                b.bind(oty, format!("{x} / {y}"))
            } else {
                b.bind(oty, format!("select({x} / {y}, {}, {y} == {zero})", zero))
            }
        }
        "Mod" => {
            let y = arg(1)?;
            if is_f {
                // C fmod: the dividend's sign.
                b.bind(
                    oty,
                    format!("select({x} - {y} * trunc({x} / {y}), {x}, abs({x}) < abs({y}))"),
                )
            } else {
                let r = b.bind(oty, format!("select({x} % {y}, {zero}, {y} == {zero})"));
                if attr_i(node, "fmod", 0) == 0 && x.ty == Ty::I32 {
                    b.bind(
                        oty,
                        format!("select({r}, {r} + {y}, {r} != 0 && (({r} < 0) != ({y} < 0)))"),
                    )
                } else {
                    r
                }
            }
        }
        "Pow" => {
            let y = arg(1)?;
            match (x.ty, y.ty) {
                (Ty::F32, _) => {
                    let yf = b.cast(&y, Ty::F32);
                    h.insert("pow");
                    h.insert("isnan");
                    b.bind(oty, format!("pow_f({x}, {yf})"))
                }
                (Ty::I32, Ty::I32) => {
                    h.insert("ipow");
                    b.bind(oty, format!("pow_i({x}, {y})"))
                }
                (Ty::I32, Ty::F32) => {
                    h.insert("pow");
                    h.insert("isnan");
                    let xf = b.cast(&x, Ty::F32);
                    let p = b.bind(Ty::F32, format!("pow_f({xf}, {y})"));
                    b.cast(&p, Ty::I32)
                }
                (Ty::U32, Ty::U32) => {
                    h.insert("upow");
                    b.bind(oty, format!("pow_u({x}, {y})"))
                }
                _ => return Err(format!("Pow of {:?} and {:?}", x.ty, y.ty)),
            }
        }
        "Sqrt" | "Exp" | "Log" | "Sin" | "Cos" | "Tan" | "Atan" | "Asin" | "Acos" | "Sinh"
        | "Cosh" | "Floor" | "Ceil" | "Round" => {
            let f = match op {
                "Round" => "round".to_string(),
                o => o.to_lowercase(),
            };
            b.bind(oty, format!("{f}({x})"))
        }
        "Reciprocal" => b.bind(oty, format!("{} / {x}", lf(1.0))),
        "Neg" => {
            let r = b.bind(oty, format!("{zero} - {x}"));
            u8_wrap(b, r)
        }
        "Abs" => match x.ty {
            Ty::U32 => x.clone(),
            _ => b.bind(oty, format!("abs({x})")),
        },
        "Sign" => match x.ty {
            Ty::U32 => b.bind(oty, format!("select(0u, 1u, {x} > 0u)")),
            _ => b.bind(oty, format!("sign({x})")),
        },
        "Tanh" => {
            h.insert("tanh");
            b.bind(oty, format!("tanh_f({x})"))
        }
        "Sigmoid" => b.bind(
            oty,
            format!("select(exp({x}) / (1.0 + exp({x})), 1.0 / (1.0 + exp(-{x})), {x} >= 0.0)"),
        ),
        "Relu" => b.bind(oty, format!("select({zero}, {x}, {x} > {zero})")),
        "LeakyRelu" => {
            let a = lf(attr_f(node, "alpha", 0.01));
            b.bind(oty, format!("select({a} * {x}, {x}, {x} >= 0.0)"))
        }
        "Elu" => {
            let a = lf(attr_f(node, "alpha", 1.0));
            b.bind(
                oty,
                format!("select({a} * (exp({x}) - 1.0), {x}, {x} > 0.0)"),
            )
        }
        "Selu" => {
            let a = lf(attr_f(node, "alpha", 1.673_263_2));
            let gm = lf(attr_f(node, "gamma", 1.050_701));
            b.bind(
                oty,
                format!("select({gm} * ({a} * exp({x}) - {a}), {gm} * {x}, {x} > 0.0)"),
            )
        }
        "Celu" => {
            let a = lf(attr_f(node, "alpha", 1.0));
            b.bind(
                oty,
                format!("select({a} * (exp({x} / {a}) - 1.0), {x}, {x} > 0.0)"),
            )
        }
        "HardSigmoid" => {
            let a = lf(attr_f(node, "alpha", 0.2));
            let be = lf(attr_f(node, "beta", 0.5));
            b.bind(oty, format!("clamp({a} * {x} + {be}, 0.0, 1.0)"))
        }
        "HardSwish" => b.bind(
            oty,
            format!("{x} * clamp({x} * {} + 0.5, 0.0, 1.0)", lf(1.0 / 6.0)),
        ),
        "Softplus" => {
            h.insert("softplus");
            b.bind(oty, format!("softplus_f({x})"))
        }
        "Softsign" => b.bind(oty, format!("{x} / (1.0 + abs({x}))")),
        "Erf" => {
            h.insert("erf");
            b.bind(oty, format!("erf_f({x})"))
        }
        "Gelu" => match attr_s(node, "approximate").as_deref().unwrap_or("none") {
            "none" => {
                h.insert("erf");
                b.bind(
                    oty,
                    format!(
                        "0.5 * {x} * (1.0 + erf_f({x} * {}))",
                        lf(std::f64::consts::FRAC_1_SQRT_2)
                    ),
                )
            }
            "tanh" => {
                h.insert("tanh");
                let k = lf((2.0 / std::f64::consts::PI).sqrt());
                b.bind(
                    oty,
                    format!(
                        "0.5 * {x} * (1.0 + tanh_f({k} * ({x} + {} * {x} * {x} * {x})))",
                        lf(0.044715)
                    ),
                )
            }
            a => return Err(format!("Gelu: approximate '{a}'")),
        },
        "Mish" => {
            h.insert("softplus");
            h.insert("tanh");
            b.bind(oty, format!("{x} * tanh_f(softplus_f({x}))"))
        }
        "ThresholdedRelu" => {
            let a = lf(attr_f(node, "alpha", 1.0));
            b.bind(oty, format!("select(0.0, {x}, {x} > {a})"))
        }
        "Shrink" => {
            let l = attr_f(node, "lambd", 0.5);
            let bi = attr_f(node, "bias", 0.0);
            let xf = b.cast(&x, Ty::F32);
            let r = b.bind(
                Ty::F32,
                format!(
                    "select(select(0.0, {xf} - {}, {xf} > {}), {xf} + {}, {xf} < {})",
                    lf(bi),
                    lf(l),
                    lf(bi),
                    lf(-l)
                ),
            );
            b.cast(&r, oty)
        }
        "IsNaN" => {
            h.insert("isnan");
            b.bind(Ty::Bool, format!("is_nan({x})"))
        }
        "IsInf" => {
            let inf = lf(f64::INFINITY);
            let pos = attr_i(node, "detect_positive", 1) != 0;
            let neg = attr_i(node, "detect_negative", 1) != 0;
            let _ = inf;
            b.bind(
                Ty::Bool,
                format!("({pos} && bitcast<u32>({x}) == 0x7f800000u) || ({neg} && bitcast<u32>({x}) == 0xff800000u)"),
            )
        }
        "Max" | "Min" | "Sum" | "Mean" => {
            let all: Vec<Val> = args.iter().flatten().cloned().collect();
            let mut acc = all[0].clone();
            for y in &all[1..] {
                acc = match op {
                    "Sum" | "Mean" => b.bind(oty, format!("{acc} + {y}")),
                    f => {
                        let m = b.bind(oty, format!("{}({acc}, {y})", f.to_lowercase()));
                        if is_f {
                            h.insert("isnan");
                            b.bind(
                                oty,
                                format!(
                                    "select(select({m}, {y}, is_nan({y})), {acc}, is_nan({acc}))"
                                ),
                            )
                        } else {
                            m
                        }
                    }
                };
            }
            if op == "Mean" {
                acc = b.bind(oty, format!("{acc} / {}", lf(all.len() as f64)));
            }
            if op == "Sum" {
                acc = u8_wrap(b, acc);
            }
            acc
        }
        "Where" => {
            let c = b.cast(&x, Ty::Bool);
            let (t, f) = (arg(1)?, arg(2)?);
            b.bind(oty, format!("select({f}, {t}, {c})"))
        }
        "Less" | "Greater" | "Equal" | "LessOrEqual" | "GreaterOrEqual" => {
            let y = arg(1)?;
            let o = match op {
                "Less" => "<",
                "Greater" => ">",
                "Equal" => "==",
                "LessOrEqual" => "<=",
                _ => ">=",
            };
            b.bind(Ty::Bool, format!("{x} {o} {y}"))
        }
        "Not" => b.bind(Ty::Bool, format!("!{x}")),
        "And" => b.bind(Ty::Bool, format!("{x} && {}", arg(1)?)),
        "Or" => b.bind(Ty::Bool, format!("{x} || {}", arg(1)?)),
        "Xor" => b.bind(Ty::Bool, format!("{x} != {}", arg(1)?)),
        "Clip" => {
            let (lo, hi) = if node.attr("min").is_some() || node.attr("max").is_some() {
                (
                    node.attr("min").map(|_| lf(attr_f(node, "min", 0.0))),
                    node.attr("max").map(|_| lf(attr_f(node, "max", 0.0))),
                )
            } else {
                (
                    args.get(1).cloned().flatten(),
                    args.get(2).cloned().flatten(),
                )
            };
            let mut v = x.clone();
            if let Some(lo) = lo {
                v = b.bind(oty, format!("select({v}, {lo}, {v} < {lo})"));
            }
            if let Some(hi) = hi {
                v = b.bind(oty, format!("select({v}, {hi}, {v} > {hi})"));
            }
            v
        }
        "Cast" => {
            if xd == out {
                x.clone()
            } else if x.ty == Ty::F32 && out == DType::U8 {
                b.bind(Ty::U32, format!("u32(clamp({x}, 0.0, 255.0))"))
            } else if x.ty == Ty::I32 && out == DType::U8 {
                b.bind(Ty::U32, format!("u32({x}) & 255u"))
            } else {
                b.cast(&x, oty)
            }
        }
        "PRelu" => {
            let s = arg(1)?;
            b.bind(oty, format!("select({x} * {s}, {x}, {x} >= {zero})"))
        }
        "BitShift" => {
            let y = arg(1)?;
            let bits = if out == DType::U8 { 8 } else { 32 };
            match attr_s(node, "direction").as_deref() {
                Some("LEFT") => {
                    let r = b.bind(
                        oty,
                        format!("select({zero}, {x} << u32({y}), u32({y}) < {bits}u)"),
                    );
                    u8_wrap(b, r)
                }
                Some("RIGHT") => b.bind(
                    oty,
                    format!("select({zero}, {x} >> u32({y}), u32({y}) < {bits}u)"),
                ),
                d => return Err(format!("BitShift: direction {d:?}")),
            }
        }
        _ => return Err(format!("{op} is not elementwise")),
    };
    if v.ty != oty {
        return Err(format!("{op}: generated {:?} for an output of {out}", v.ty));
    }
    Ok(v)
}

/// Checks input types an op's kernel supports (the interpreter's domain).
fn check_types(op: &str, ins: &[Option<DType>], out: DType) -> Result<(), String> {
    let fl = |d: &DType| *d == DType::F32;
    let first = ins.first().copied().flatten();
    let float_only = [
        "Sqrt",
        "Exp",
        "Log",
        "Tanh",
        "Sigmoid",
        "LeakyRelu",
        "Elu",
        "Selu",
        "Celu",
        "HardSigmoid",
        "HardSwish",
        "Softplus",
        "Softsign",
        "Erf",
        "Gelu",
        "Mish",
        "Sin",
        "Cos",
        "Floor",
        "Ceil",
        "Round",
        "ThresholdedRelu",
        "IsNaN",
        "IsInf",
        "Reciprocal",
        "Mean",
        "Tan",
        "Atan",
        "Asin",
        "Acos",
        "Sinh",
        "Cosh",
    ];
    if float_only.contains(&op) && !first.as_ref().is_some_and(fl) {
        return Err(format!("{op} of {first:?} has no kernel"));
    }
    if ["And", "Or", "Xor", "Not"].contains(&op) && first != Some(DType::Bool) {
        return Err(format!("{op} of {first:?}"));
    }
    if op == "BitShift" && first != Some(DType::U8) {
        return Err("BitShift on the device: uint8 only".into());
    }
    if [
        "Add", "Sub", "Mul", "Div", "Mod", "Min", "Max", "Sum", "Neg", "Abs", "Relu", "PRelu",
        "Sign", "Clip",
    ]
    .contains(&op)
        && first == Some(DType::Bool)
    {
        return Err(format!("{op} of bool"));
    }
    if op == "Mod" && first == Some(DType::U8) && out == DType::U8 {
        return Ok(());
    }
    Ok(())
}

/// One op as a kernel.
fn single(info: &NodeInfo) -> Result<Lowering, String> {
    let node = info.node;
    if node.attr("broadcast").is_some() || node.attr("axis").is_some() && node.op_type != "Clip" {
        return Err("the legacy broadcast/axis form".into());
    }
    let out = info.outputs.first().ok_or("no output")?.clone();
    if info.outputs.len() != 1 {
        return Err("more than one output".into());
    }
    let ins: Vec<Option<DType>> = info
        .inputs
        .iter()
        .map(|i| i.as_ref().map(|d| d.dtype))
        .collect();
    check_types(&node.op_type, &ins, out.dtype)?;
    let mut syms: Vec<Option<Sym>> = vec![];
    for (k, d) in info.inputs.iter().enumerate() {
        syms.push(d.as_ref().map(|d| {
            let mut shape = d.shape.clone();
            // PRelu's per-channel slope (the opset-6 form).
            if node.op_type == "PRelu"
                && k == 1
                && shape.len() == 1
                && out.shape.len() > 2
                && broadcast(&[&shape, &out.shape]).is_err()
                && out.shape[1] == shape[0]
            {
                shape = vec![shape[0]];
                shape.extend(std::iter::repeat_n(1, out.shape.len() - 2));
            }
            Sym::Input {
                k,
                shape,
                dtype: d.dtype,
            }
        }));
    }
    let kernels = generate(info, &out, |g| {
        let args = syms
            .iter()
            .map(|s| s.as_ref().map(|s| g.get(s)).transpose())
            .collect::<Result<Vec<_>, _>>()?;
        let v = emit(&mut g.body, &mut g.helpers, node, &args, &ins, out.dtype)?;
        Ok(vec![(v, out.dtype)])
    })?;
    Ok(Lowering::Kernels(kernels))
}

fn generate(
    info: &NodeInfo,
    out: &TensorDesc,
    f: impl FnOnce(&mut Gen) -> Result<Vec<(Val, DType)>, String>,
) -> Result<NodeKernels, String> {
    let mut g = Gen::new(&out.shape);
    let outs = f(&mut g)?;
    let label = format!("ew_{}", info.node.op_type.to_lowercase());
    let d = g.finish(&label, &outs, &info.limits);
    Ok(NodeKernels {
        dispatches: vec![d],
        temps: vec![],
    })
}

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
fn fused(info: &NodeInfo) -> Option<Lowering> {
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
