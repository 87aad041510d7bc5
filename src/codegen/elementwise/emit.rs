//! One elementwise op as WGSL: the expression for an op applied to values at
//! the iteration index ([`emit`]), the shared helper functions it may need, and
//! the input types each op's kernel supports ([`check_types`]).

use super::ty_of;
use crate::codegen::builder::{literal, Body, Ty, Val};
use crate::ir::dtype::DType;
use crate::ir::graph::Node;
use std::collections::BTreeSet;

pub(crate) fn helper_source(name: &str) -> &'static str {
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

pub(super) fn attr_f(node: &Node, name: &str, default: f32) -> f64 {
    node.attr(name)
        .and_then(|a| a.value.as_float())
        .unwrap_or(default) as f64
}

pub(super) fn attr_i(node: &Node, name: &str, default: i64) -> i64 {
    node.attr(name)
        .and_then(|a| a.value.as_int())
        .unwrap_or(default)
}

pub(super) fn attr_s(node: &Node, name: &str) -> Option<String> {
    node.attr(name)
        .and_then(|a| a.value.as_str())
        .map(|s| String::from_utf8_lossy(s).into_owned())
}

/// The op applied to values already at the iteration index.
pub(super) fn emit(
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
pub(super) fn check_types(op: &str, ins: &[Option<DType>], out: DType) -> Result<(), String> {
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
