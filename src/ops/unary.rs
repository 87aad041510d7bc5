//! Elementwise unary operators: arithmetic (Abs, Neg, Sign, Reciprocal, Floor,
//! Ceil, Round), transcendental (Exp, Log, Sqrt, trigonometric and hyperbolic
//! functions, Erf) and activations (Sigmoid, Tanh, Elu, Gelu, Mish, ...), plus the
//! predicates IsNaN / IsInf and the bitwise / logical negations.
//!
//! Decisions where the spec is loose:
//! - Float kernels compute in f32 for f32, f16 and bf16 (converting per element)
//!   and in f64 for f64. Activation attributes (`alpha`, ...) are f32 in the model
//!   and are widened for f64 inputs.
//! - Abs, Neg and Sign also accept integer tensors (Neg and Abs wrap on the minimum
//!   value, as numpy does); Shrink accepts integers and computes in f64, converting
//!   the result back (saturating).
//! - Sign of NaN is NaN and of ±0 is the zero itself (numpy's rule).
//! - Sigmoid and Softplus use the numerically stable forms that avoid overflow of
//!   `exp` for large |x|.
//! - Erf is a port of fdlibm's `s_erf.c` (double precision; f32 inputs go through
//!   f64), as Rust's standard library has no erf.

use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use half::{bf16, f16};

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Abs", abs);
    r.add("Neg", neg);
    r.add("Sign", sign);
    r.add("Exp", exp);
    r.add("Log", log);
    r.add("Sqrt", sqrt);
    r.add("Reciprocal", reciprocal);
    r.add("Floor", floor);
    r.add("Ceil", ceil);
    r.add("Round", round);
    r.add("Sin", sin);
    r.add("Cos", cos);
    r.add("Tan", tan);
    r.add("Asin", asin);
    r.add("Acos", acos);
    r.add("Atan", atan);
    r.add("Sinh", sinh);
    r.add("Cosh", cosh);
    r.add("Asinh", asinh);
    r.add("Acosh", acosh);
    r.add("Atanh", atanh);
    r.add("Erf", erf_op);
    r.add("Sigmoid", sigmoid);
    r.add("HardSigmoid", hard_sigmoid);
    r.add("HardSwish", hard_swish);
    r.add("Tanh", tanh);
    r.add("Softplus", softplus);
    r.add("Softsign", softsign);
    r.add("Elu", elu);
    r.add("Selu", selu);
    r.add("Celu", celu);
    r.add("LeakyRelu", leaky_relu);
    r.add("ThresholdedRelu", thresholded_relu);
    r.add("Gelu", gelu);
    // onnxruntime's contrib forms (what `--target onnxruntime` may produce).
    r.add_in("com.microsoft", "Gelu", gelu);
    r.add_in("com.microsoft", "FastGelu", fast_gelu);
    r.add("Mish", mish);
    r.add("IsNaN", is_nan);
    r.add("IsInf", is_inf);
    r.add("Not", not);
    r.add("BitwiseNot", bitwise_not);
    r.add("Shrink", shrink);
}

/// Converts an f64 constant to the element type a float kernel computes in.
pub(crate) trait FromF64: Copy {
    fn of(x: f64) -> Self;
    fn to64(self) -> f64;
}
impl FromF64 for f32 {
    fn of(x: f64) -> f32 {
        x as f32
    }
    fn to64(self) -> f64 {
        self as f64
    }
}
impl FromF64 for f64 {
    fn of(x: f64) -> f64 {
        x
    }
    fn to64(self) -> f64 {
        self
    }
}

/// erf in the compute type of a float kernel.
fn erf_t<T: FromF64>(v: T) -> T {
    T::of(erf(v.to64()))
}

/// `f` applied to every element, over the contiguous slice when there is one
/// (so the loop can be vectorised).
pub(crate) fn map_f32(a: &ndarray::ArrayD<f32>, f: impl Fn(f32) -> f32) -> ndarray::ArrayD<f32> {
    match a.as_slice() {
        Some(s) => ndarray::ArrayD::from_shape_vec(a.raw_dim(), s.iter().map(|&v| f(v)).collect())
            .expect("same element count"),
        None => a.mapv(f),
    }
}

/// tanh for f32 as a rational approximation (the one onnxruntime's MLAS and
/// Eigen use): relative error below 5e-7 (about 4 ulp), branch-free so it
/// vectorises; about ten times faster than the libm call.
#[inline]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    // clamp (unlike min/max) keeps NaN.
    let x = x.clamp(-9.0, 9.0);
    let x2 = x * x;
    let p = ((((((-2.760_768_5e-16f32 * x2 + 2.000_188e-13) * x2 - 8.604_672e-11) * x2
        + 5.122_297e-8)
        * x2
        + 1.485_722_4e-5)
        * x2
        + 6.372_619_3e-4)
        * x2
        + 4.893_524_6e-3)
        * x;
    let q = ((1.198_258_4e-6f32 * x2 + 1.185_347_1e-4) * x2 + 2.268_434_6e-3) * x2 + 4.893_525e-3;
    let r = if x.abs() < 4e-4 { x } else { p / q };
    r.clamp(-1.0, 1.0)
}

/// Applies `|v| body` to every element of a float tensor (f32, f64, f16, bf16),
/// keeping the type. Half types compute in f32. The listed constants (f64
/// variables in scope) are converted to the compute type first, so the body can
/// mix them with `v`.
macro_rules! float_map {
    ($x:expr, $op:expr, [$($c:ident),*], |$v:ident| $body:expr) => {{
        use $crate::interp::value::TensorValue as T;
        match $x {
            T::F32(a) => {
                $(let $c: f32 = FromF64::of($c);)*
                T::F32(map_f32(a, |$v: f32| $body))
            }
            T::F64(a) => {
                $(let $c: f64 = FromF64::of($c);)*
                T::F64(a.mapv(|$v: f64| $body))
            }
            T::F16(a) => {
                $(let $c: f32 = FromF64::of($c);)*
                T::F16(a.mapv(|h| {
                    let $v: f32 = h.to_f32();
                    f16::from_f32($body)
                }))
            }
            T::BF16(a) => {
                $(let $c: f32 = FromF64::of($c);)*
                T::BF16(a.mapv(|h| {
                    let $v: f32 = h.to_f32();
                    bf16::from_f32($body)
                }))
            }
            t => {
                return Err(OpError::Invalid(format!(
                    "{} of {} is not defined",
                    $op,
                    t.dtype()
                )))
            }
        }
    }};
}

/// Defines a kernel for a float-only unary function without attributes.
macro_rules! float_kernel {
    ($fn_name:ident, $op:literal, |$v:ident| $body:expr) => {
        fn $fn_name(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
            let x = ctx.input(inputs, 0)?;
            one(float_map!(x, $op, [], |$v| $body))
        }
    };
}

float_kernel!(exp, "Exp", |v| v.exp());
float_kernel!(log, "Log", |v| v.ln());
float_kernel!(sqrt, "Sqrt", |v| v.sqrt());
float_kernel!(reciprocal, "Reciprocal", |v| 1.0 / v);
float_kernel!(floor, "Floor", |v| v.floor());
float_kernel!(ceil, "Ceil", |v| v.ceil());
float_kernel!(round, "Round", |v| v.round_ties_even());
float_kernel!(sin, "Sin", |v| v.sin());
float_kernel!(cos, "Cos", |v| v.cos());
float_kernel!(tan, "Tan", |v| v.tan());
float_kernel!(asin, "Asin", |v| v.asin());
float_kernel!(acos, "Acos", |v| v.acos());
float_kernel!(atan, "Atan", |v| v.atan());
float_kernel!(sinh, "Sinh", |v| v.sinh());
float_kernel!(cosh, "Cosh", |v| v.cosh());
float_kernel!(asinh, "Asinh", |v| v.asinh());
float_kernel!(acosh, "Acosh", |v| v.acosh());
float_kernel!(atanh, "Atanh", |v| v.atanh());
fn tanh(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    match x {
        TensorValue::F32(a) => one(TensorValue::F32(map_f32(a, tanh_f32))),
        x => one(float_map!(x, "Tanh", [], |v| v.tanh())),
    }
}
float_kernel!(erf_op, "Erf", |v| erf_t(v));
float_kernel!(sigmoid, "Sigmoid", |v| if v >= 0.0 {
    1.0 / (1.0 + (-v).exp())
} else {
    let e = v.exp();
    e / (1.0 + e)
});
float_kernel!(softplus, "Softplus", |v| if v > 0.0 {
    v + (-v).exp().ln_1p()
} else {
    v.exp().ln_1p()
});
float_kernel!(softsign, "Softsign", |v| v / (1.0 + v.abs()));
float_kernel!(hard_swish, "HardSwish", |v| v
    * (v * (1.0 / 6.0) + 0.5).clamp(0.0, 1.0));
float_kernel!(mish, "Mish", |v| {
    let sp = if v > 0.0 {
        v + (-v).exp().ln_1p()
    } else {
        v.exp().ln_1p()
    };
    v * sp.tanh()
});

fn attr(ctx: &OpCtx, name: &str, default: f32) -> f64 {
    ctx.float(name, default) as f64
}

fn hard_sigmoid(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let (alpha, beta) = (attr(ctx, "alpha", 0.2), attr(ctx, "beta", 0.5));
    one(float_map!(x, "HardSigmoid", [alpha, beta], |v| (alpha * v
        + beta)
        .clamp(0.0, 1.0)))
}

fn elu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let alpha = attr(ctx, "alpha", 1.0);
    one(float_map!(x, "Elu", [alpha], |v| if v > 0.0 {
        v
    } else {
        alpha * v.exp_m1()
    }))
}

fn selu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let alpha = attr(ctx, "alpha", 1.673_263_2);
    let gamma = attr(ctx, "gamma", 1.050_701);
    one(float_map!(x, "Selu", [alpha, gamma], |v| if v > 0.0 {
        gamma * v
    } else {
        gamma * (alpha * v.exp() - alpha)
    }))
}

fn celu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let alpha = attr(ctx, "alpha", 1.0);
    if alpha == 0.0 {
        return Err(OpError::Invalid("Celu: alpha must not be 0".into()));
    }
    one(float_map!(x, "Celu", [alpha], |v| if v > 0.0 {
        v
    } else {
        alpha * (v / alpha).exp_m1()
    }))
}

fn leaky_relu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let alpha = attr(ctx, "alpha", 0.01);
    one(float_map!(x, "LeakyRelu", [alpha], |v| if v >= 0.0 {
        v
    } else {
        alpha * v
    }))
}

fn thresholded_relu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let alpha = attr(ctx, "alpha", 1.0);
    one(float_map!(
        x,
        "ThresholdedRelu",
        [alpha],
        |v| if v > alpha { v } else { 0.0 }
    ))
}

/// com.microsoft FastGelu: the tanh approximation (an optional bias is added to
/// the input first; modc only produces it without one).
fn fast_gelu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    if inputs.get(1).is_some_and(|b| b.is_some()) {
        return Err(OpError::Unsupported("FastGelu with a bias input".into()));
    }
    let x = ctx.input(inputs, 0)?;
    let k = (2.0 / std::f64::consts::PI).sqrt();
    one(float_map!(x, "FastGelu", [k], |v| 0.5
        * v
        * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())))
}

fn gelu(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    match ctx.string("approximate").as_deref().unwrap_or("none") {
        "none" => {
            let rsqrt2 = std::f64::consts::FRAC_1_SQRT_2;
            one(float_map!(x, "Gelu", [rsqrt2], |v| 0.5
                * v
                * (1.0 + erf_t(v * rsqrt2))))
        }
        "tanh" => {
            let k = (2.0 / std::f64::consts::PI).sqrt();
            one(float_map!(x, "Gelu", [k], |v| 0.5
                * v
                * (1.0 + (k * (v + 0.044715 * v * v * v)).tanh())))
        }
        a => Err(OpError::Invalid(format!(
            "Gelu: approximate must be 'none' or 'tanh', not '{a}'"
        ))),
    }
}

fn shrink(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    let lambd = attr(ctx, "lambd", 0.5);
    let bias = attr(ctx, "bias", 0.0);
    macro_rules! int {
        ($v:ident, $a:expr, $t:ty) => {
            T::$v($a.mapv(|i| {
                let v = i as f64;
                let r = if v < -lambd {
                    v + bias
                } else if v > lambd {
                    v - bias
                } else {
                    0.0
                };
                r as $t
            }))
        };
    }
    one(match x {
        T::I8(a) => int!(I8, a, i8),
        T::I16(a) => int!(I16, a, i16),
        T::I32(a) => int!(I32, a, i32),
        T::I64(a) => int!(I64, a, i64),
        T::U8(a) => int!(U8, a, u8),
        T::U16(a) => int!(U16, a, u16),
        T::U32(a) => int!(U32, a, u32),
        T::U64(a) => int!(U64, a, u64),
        x => float_map!(x, "Shrink", [lambd, bias], |v| if v < -lambd {
            v + bias
        } else if v > lambd {
            v - bias
        } else {
            0.0
        }),
    })
}

fn abs(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    one(match x {
        T::I8(a) => T::I8(a.mapv(|v| v.wrapping_abs())),
        T::I16(a) => T::I16(a.mapv(|v| v.wrapping_abs())),
        T::I32(a) => T::I32(a.mapv(|v| v.wrapping_abs())),
        T::I64(a) => T::I64(a.mapv(|v| v.wrapping_abs())),
        T::U8(_) | T::U16(_) | T::U32(_) | T::U64(_) => x.clone(),
        x => float_map!(x, "Abs", [], |v| v.abs()),
    })
}

fn neg(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    one(match x {
        T::I8(a) => T::I8(a.mapv(|v| v.wrapping_neg())),
        T::I16(a) => T::I16(a.mapv(|v| v.wrapping_neg())),
        T::I32(a) => T::I32(a.mapv(|v| v.wrapping_neg())),
        T::I64(a) => T::I64(a.mapv(|v| v.wrapping_neg())),
        x => float_map!(x, "Neg", [], |v| -v),
    })
}

fn sign(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    one(match x {
        T::I8(a) => T::I8(a.mapv(|v| v.signum())),
        T::I16(a) => T::I16(a.mapv(|v| v.signum())),
        T::I32(a) => T::I32(a.mapv(|v| v.signum())),
        T::I64(a) => T::I64(a.mapv(|v| v.signum())),
        T::U8(a) => T::U8(a.mapv(|v| (v > 0) as u8)),
        T::U16(a) => T::U16(a.mapv(|v| (v > 0) as u16)),
        T::U32(a) => T::U32(a.mapv(|v| (v > 0) as u32)),
        T::U64(a) => T::U64(a.mapv(|v| (v > 0) as u64)),
        x => float_map!(x, "Sign", [], |v| if v > 0.0 {
            1.0
        } else if v < 0.0 {
            -1.0
        } else {
            v
        }),
    })
}

/// Maps a float tensor to a bool tensor with `f` applied to the f64 value.
fn float_pred(x: &TensorValue, op: &str, f: impl Fn(f64) -> bool) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    Ok(T::Bool(match x {
        T::F32(a) => a.mapv(|v| f(v as f64)),
        T::F64(a) => a.mapv(&f),
        T::F16(a) => a.mapv(|v| f(v.to_f64())),
        T::BF16(a) => a.mapv(|v| f(v.to_f64())),
        t => {
            return Err(OpError::Invalid(format!(
                "{op} of {} is not defined",
                t.dtype()
            )))
        }
    }))
}

fn is_nan(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    one(float_pred(ctx.input(inputs, 0)?, "IsNaN", |v| v.is_nan())?)
}

fn is_inf(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let pos = ctx.int("detect_positive", 1) != 0;
    let neg = ctx.int("detect_negative", 1) != 0;
    one(float_pred(ctx.input(inputs, 0)?, "IsInf", |v| {
        (pos && v == f64::INFINITY) || (neg && v == f64::NEG_INFINITY)
    })?)
}

fn not(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    match ctx.input(inputs, 0)? {
        TensorValue::Bool(a) => one(TensorValue::Bool(a.mapv(|v| !v))),
        t => Err(OpError::Invalid(format!(
            "Not of {} is not defined",
            t.dtype()
        ))),
    }
}

fn bitwise_not(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    one(match ctx.input(inputs, 0)? {
        T::I8(a) => T::I8(a.mapv(|v| !v)),
        T::I16(a) => T::I16(a.mapv(|v| !v)),
        T::I32(a) => T::I32(a.mapv(|v| !v)),
        T::I64(a) => T::I64(a.mapv(|v| !v)),
        T::U8(a) => T::U8(a.mapv(|v| !v)),
        T::U16(a) => T::U16(a.mapv(|v| !v)),
        T::U32(a) => T::U32(a.mapv(|v| !v)),
        T::U64(a) => T::U64(a.mapv(|v| !v)),
        t => {
            return Err(OpError::Invalid(format!(
                "BitwiseNot of {} is not defined",
                t.dtype()
            )))
        }
    })
}

// ---------------------------------------------------------------------------
// erf: a port of FreeBSD's msun s_erf.c.
//
// Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
// Developed at SunPro, a Sun Microsystems, Inc. business.
// Permission to use, copy, modify, and distribute this software is freely
// granted, provided that this notice is preserved.
// ---------------------------------------------------------------------------

#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const ERX: f64 = 8.450_629_115_104_675_292_97e-1;
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const EFX8: f64 = 1.027_033_336_764_100_690_53;
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const PP: [f64; 5] = [
    1.283_791_670_955_125_585_61e-1,
    -3.250_421_072_470_014_993_70e-1,
    -2.848_174_957_559_851_047_66e-2,
    -5.770_270_296_489_441_591_57e-3,
    -2.376_301_665_665_016_260_84e-5,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const QQ: [f64; 5] = [
    3.979_172_239_591_553_528_19e-1,
    6.502_224_998_876_729_444_85e-2,
    5.081_306_281_875_765_627_76e-3,
    1.324_947_380_043_216_445_26e-4,
    -3.960_228_278_775_368_123_20e-6,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const PA: [f64; 7] = [
    -2.362_118_560_752_659_440_77e-3,
    4.148_561_186_837_483_316_66e-1,
    -3.722_078_760_357_013_238_47e-1,
    3.183_466_199_011_617_536_74e-1,
    -1.108_946_942_823_966_774_76e-1,
    3.547_830_432_561_823_593_71e-2,
    -2.166_375_594_868_790_843_00e-3,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const QA: [f64; 6] = [
    1.064_208_804_008_442_282_86e-1,
    5.403_979_177_021_710_489_37e-1,
    7.182_865_441_419_626_628_68e-2,
    1.261_712_198_087_616_421_12e-1,
    1.363_708_391_202_905_073_62e-2,
    1.198_449_984_679_910_741_70e-2,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const RA: [f64; 8] = [
    -9.864_944_034_847_148_227_05e-3,
    -6.938_585_727_071_817_643_72e-1,
    -1.055_862_622_532_329_098_14e1,
    -6.237_533_245_032_600_603_96e1,
    -1.623_966_694_625_734_703_55e2,
    -1.846_050_929_067_110_359_94e2,
    -8.128_743_550_630_659_342_46e1,
    -9.814_329_344_169_145_485_92,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const SA: [f64; 8] = [
    1.965_127_166_743_925_712_92e1,
    1.376_577_541_435_190_426_00e2,
    4.345_658_774_752_292_288_21e2,
    6.453_872_717_332_678_803_36e2,
    4.290_081_400_275_678_333_86e2,
    1.086_350_055_417_794_351_34e2,
    6.570_249_770_319_281_701_35,
    -6.042_441_521_485_809_874_38e-2,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const RB: [f64; 7] = [
    -9.864_942_924_700_099_285_97e-3,
    -7.992_832_376_805_230_065_74e-1,
    -1.775_795_491_775_475_198_89e1,
    -1.606_363_848_558_219_160_62e2,
    -6.375_664_433_683_896_277_22e2,
    -1.025_095_131_611_077_249_54e3,
    -4.835_191_916_086_513_970_19e2,
];
#[allow(clippy::excessive_precision)] // fdlibm's exact decimal coefficients
const SB: [f64; 7] = [
    3.033_806_074_348_245_829_24e1,
    3.257_925_129_965_739_188_26e2,
    1.536_729_586_084_436_959_94e3,
    3.199_858_219_508_595_539_08e3,
    2.553_050_406_433_164_425_83e3,
    4.745_285_412_069_553_672_15e2,
    -2.244_095_244_658_581_833_62e1,
];

/// Evaluates `c[0] + z*c[1] + z^2*c[2] + ...`.
fn poly(z: f64, c: &[f64]) -> f64 {
    c.iter().rev().fold(0.0, |acc, &k| acc * z + k)
}

/// The error function, accurate to about one ulp in double precision.
pub(crate) fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let y = if ax < 0.84375 {
        if ax < 2f64.powi(-28) {
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        let z = x * x;
        let r = poly(z, &PP);
        let s = 1.0 + z * poly(z, &QQ);
        return x + x * (r / s);
    } else if ax < 1.25 {
        let s = ax - 1.0;
        let p = poly(s, &PA);
        let q = 1.0 + s * poly(s, &QA);
        ERX + p / q
    } else if ax < 6.0 {
        let s = 1.0 / (ax * ax);
        let (r, big_s) = if ax < 1.0 / 0.35 {
            (poly(s, &RA), 1.0 + s * poly(s, &SA))
        } else {
            (poly(s, &RB), 1.0 + s * poly(s, &SB))
        };
        // z: ax with the low 32 bits of its representation cleared, so that
        // z*z is exact and exp(-x*x) keeps its precision.
        let z = f64::from_bits(ax.to_bits() & 0xffff_ffff_0000_0000);
        let erfc = (-z * z - 0.5625).exp() * ((z - ax) * (z + ax) + r / big_s).exp() / ax;
        1.0 - erfc
    } else {
        1.0
    };
    if x < 0.0 {
        -y
    } else {
        y
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ir::attr::{Attr, AttrValue};
    use crate::ir::graph::Node;

    /// Runs the registered kernel `op` on tensor inputs (`None`: empty slot).
    pub(crate) fn run_op(
        op: &str,
        opset: i64,
        attrs: Vec<Attr>,
        inputs: Vec<Option<TensorValue>>,
    ) -> Result<TensorValue, OpError> {
        let node = Node::new(op, "", attrs);
        let ctx = OpCtx { node: &node, opset };
        let reg = OpRegistry::standard();
        let k = reg.get("", op).expect("op is registered");
        let ins: Vec<Option<RtValue>> =
            inputs.into_iter().map(|t| t.map(RtValue::Tensor)).collect();
        Ok(k(&ctx, &ins)?.remove(0).into_tensor().expect("a tensor"))
    }

    fn run(op: &str, attrs: Vec<Attr>, x: TensorValue) -> TensorValue {
        run_op(op, 21, attrs, vec![Some(x)]).unwrap()
    }

    fn f32s(t: &TensorValue) -> Vec<f32> {
        match t {
            TensorValue::F32(a) => a.iter().copied().collect(),
            _ => panic!("not f32"),
        }
    }

    #[test]
    fn erf_values() {
        let cases = [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (3.5, 0.999_999_256_901_627_7),
            (-1.0, -0.842_700_792_949_714_9),
            (10.0, 1.0),
        ];
        for (x, want) in cases {
            assert!((erf(x) - want).abs() < 1e-15, "erf({x}) = {}", erf(x));
        }
    }

    #[test]
    fn round_half_even_and_sign() {
        let x = TensorValue::from_f32(&[6], vec![0.5, 1.5, 2.5, -4.5, 2.3, -0.0]);
        assert_eq!(
            f32s(&run("Round", vec![], x)),
            vec![0.0, 2.0, 2.0, -4.0, 2.0, -0.0]
        );
        let x = TensorValue::from_f32(&[3], vec![-3.0, 0.0, 2.0]);
        assert_eq!(f32s(&run("Sign", vec![], x)), vec![-1.0, 0.0, 1.0]);
    }

    #[test]
    fn activations() {
        let x = TensorValue::from_f32(&[3], vec![-1.0, 0.0, 2.0]);
        let y = f32s(&run(
            "LeakyRelu",
            vec![Attr::new("alpha", AttrValue::Float(0.1))],
            x.clone(),
        ));
        assert_eq!(y, vec![-0.1, 0.0, 2.0]);
        let y = f32s(&run("Sigmoid", vec![], x.clone()));
        assert!((y[0] - 0.268_941_43).abs() < 1e-6 && y[1] == 0.5);
        let y = f32s(&run("HardSwish", vec![], x));
        assert!((y[0] + 1.0 / 3.0).abs() < 1e-6 && (y[2] - 2.0 * (2.0 / 6.0 + 0.5)).abs() < 1e-6);
    }

    #[test]
    fn integer_abs_neg_wrap() {
        let x = TensorValue::I8(ndarray::arr1(&[-128i8, -3, 4]).into_dyn());
        assert_eq!(
            run("Abs", vec![], x.clone()),
            TensorValue::I8(ndarray::arr1(&[-128i8, 3, 4]).into_dyn())
        );
        assert_eq!(
            run("Neg", vec![], x),
            TensorValue::I8(ndarray::arr1(&[-128i8, 3, -4]).into_dyn())
        );
    }

    #[test]
    fn fast_tanh_accuracy() {
        let mut x = -12.0f32;
        while x < 12.0 {
            let e = (x as f64).tanh();
            let d = (tanh_f32(x) as f64 - e).abs();
            assert!(d <= 1e-6 * e.abs(), "tanh({x}): {} vs {e}", tanh_f32(x));
            x += 3.7e-4;
        }
        assert!(tanh_f32(f32::NAN).is_nan());
        assert_eq!(tanh_f32(f32::INFINITY), 1.0);
        assert_eq!(tanh_f32(-f32::INFINITY), -1.0);
        assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    }
}
