//! Type conversion (Cast, CastLike) and Clip.
//!
//! [`cast_tensor`] converts between every element type the interpreter represents
//! (f32, f64, f16, bf16, signed and unsigned 8..64-bit integers, bool, string).
//! Decisions where the spec is loose:
//! - float → integer truncates toward zero and then keeps the low bits of the
//!   integer (so 200.0 → int8 gives -56 and 3e9 → int8 gives 0, as numpy does on
//!   x86); NaN gives 0. The spec leaves out-of-range values undefined.
//! - integer → integer keeps the low bits (two's complement), as the spec says.
//! - number → string uses the shortest representation that reads back to the
//!   same value, in plain notation when 1e-4 <= |x| < 1e16 and scientific
//!   (`1e+20`, `1.5e-07`) otherwise; integral floats keep a `.0`; NaN and
//!   infinities are `nan`, `inf`, `-inf`; bools are `True` / `False` (numpy's
//!   spelling, which the ONNX reference uses).
//!   f16/bf16 values are written with the shortest digits of their f32 value.
//! - string → number accepts surrounding whitespace, plain and scientific
//!   notation, and `INF`/`+INF`/`-INF`/`NaN` in any case; a string that is not
//!   a number is an `Invalid` error. To an integer type, integer text is parsed
//!   exactly and other numbers are truncated. To bool, `true`/`false` (any case)
//!   or any number (nonzero is true).
//! - float8, 4-bit, 2-bit and complex targets are `Unsupported` (the interpreter
//!   has no representation for them); the `saturate` and `round_mode` attributes
//!   only matter for float8 and are ignored.
//! - Clip: before opset 11, `min`/`max` are float attributes (floats only); from
//!   opset 11 they are optional scalar inputs of X's type. Bounds default to the
//!   type's range. When min > max every element becomes max (the spec's rule).
//!   NaN elements stay NaN.

use super::{one, OpCtx, OpError, OpRegistry, OpResult};
use crate::interp::value::{RtValue, TensorValue};
use crate::DType;
use half::{bf16, f16};
use ndarray::ArrayD;

pub(super) fn register(r: &mut OpRegistry) {
    r.add("Cast", cast);
    r.add("CastLike", cast_like);
    r.add("Clip", clip);
}

/// An element read out of its source type.
#[derive(Clone, Copy)]
enum Val {
    F32(f32),
    F64(f64),
    Int(i128),
    Bool(bool),
}

trait Src: Copy {
    fn val(self) -> Val;
}

trait Dst: Sized {
    fn from_val(v: Val) -> Self;
    /// Parses a string element.
    fn parse(s: &str) -> Result<Self, OpError>;
}

macro_rules! int_types {
    ($($t:ty),*) => {$(
        impl Src for $t {
            fn val(self) -> Val {
                Val::Int(self as i128)
            }
        }
        impl Dst for $t {
            fn from_val(v: Val) -> $t {
                match v {
                    // `as i128` truncates and saturates (NaN → 0); the second
                    // `as` keeps the low bits.
                    Val::F32(f) => (f as i128) as $t,
                    Val::F64(f) => (f as i128) as $t,
                    Val::Int(i) => i as $t,
                    Val::Bool(b) => b as $t,
                }
            }
            fn parse(s: &str) -> Result<$t, OpError> {
                let s = s.trim();
                if let Ok(i) = s.parse::<i128>() {
                    return Ok(i as $t);
                }
                Ok(<$t>::from_val(Val::F64(parse_float(s)?)))
            }
        }
    )*};
}
int_types!(i8, i16, i32, i64, u8, u16, u32, u64);

impl Src for f32 {
    fn val(self) -> Val {
        Val::F32(self)
    }
}
impl Src for f64 {
    fn val(self) -> Val {
        Val::F64(self)
    }
}
impl Src for f16 {
    fn val(self) -> Val {
        Val::F32(self.to_f32())
    }
}
impl Src for bf16 {
    fn val(self) -> Val {
        Val::F32(self.to_f32())
    }
}
impl Src for bool {
    fn val(self) -> Val {
        Val::Bool(self)
    }
}

macro_rules! float_dst {
    ($t:ty, |$f:ident| $from_f64:expr, |$g:ident| $from_f32:expr) => {
        impl Dst for $t {
            fn from_val(v: Val) -> $t {
                match v {
                    Val::F32($g) => $from_f32,
                    Val::F64($f) => $from_f64,
                    Val::Int(i) => {
                        let $f = i as f64;
                        $from_f64
                    }
                    Val::Bool(b) => {
                        let $f = b as u8 as f64;
                        $from_f64
                    }
                }
            }
            fn parse(s: &str) -> Result<$t, OpError> {
                let $f = parse_float(s)?;
                Ok($from_f64)
            }
        }
    };
}
float_dst!(f32, |f| f as f32, |g| g);
float_dst!(f64, |f| f, |g| g as f64);
float_dst!(f16, |f| f16::from_f64(f), |g| f16::from_f32(g));
float_dst!(bf16, |f| bf16::from_f64(f), |g| bf16::from_f32(g));

impl Dst for bool {
    fn from_val(v: Val) -> bool {
        match v {
            Val::F32(f) => f != 0.0,
            Val::F64(f) => f != 0.0,
            Val::Int(i) => i != 0,
            Val::Bool(b) => b,
        }
    }
    fn parse(s: &str) -> Result<bool, OpError> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if t.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Ok(parse_float(t)? != 0.0)
        }
    }
}

/// Parses a float as the Cast spec describes.
fn parse_float(s: &str) -> Result<f64, OpError> {
    let t = s.trim();
    // Rust's parser accepts inf/infinity/nan in any case, with an optional sign.
    t.parse::<f64>()
        .map_err(|_| OpError::Invalid(format!("Cast: '{s}' is not a number")))
}

/// Formats a float: shortest round-trip digits, numpy's choice of notation.
fn format_float<F: std::fmt::Display + std::fmt::LowerExp>(v: F, as_f64: f64) -> String {
    if as_f64.is_nan() {
        return "nan".into();
    }
    if as_f64.is_infinite() {
        return if as_f64 > 0.0 { "inf" } else { "-inf" }.into();
    }
    let a = as_f64.abs();
    if a == 0.0 || (1e-4..1e16).contains(&a) {
        let s = v.to_string();
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        // Rust writes `1.5e-7`; numpy writes `1.5e-07`.
        let s = format!("{v:e}");
        match s.split_once('e') {
            Some((m, e)) => {
                let (sign, digits) = match e.strip_prefix('-') {
                    Some(d) => ('-', d),
                    None => ('+', e),
                };
                format!("{m}e{sign}{digits:0>2}")
            }
            None => s,
        }
    }
}

fn to_string_val(v: Val) -> String {
    match v {
        Val::F32(f) => format_float(f, f as f64),
        Val::F64(f) => format_float(f, f),
        Val::Int(i) => i.to_string(),
        Val::Bool(b) => if b { "True" } else { "False" }.into(),
    }
}

fn from_src<S: Src>(a: &ArrayD<S>, to: DType) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    fn conv<S: Src, D: Dst>(a: &ArrayD<S>) -> ArrayD<D> {
        a.mapv(|v| D::from_val(v.val()))
    }
    Ok(match to {
        DType::F32 => T::F32(conv(a)),
        DType::F64 => T::F64(conv(a)),
        DType::F16 => T::F16(conv(a)),
        DType::BF16 => T::BF16(conv(a)),
        DType::I8 => T::I8(conv(a)),
        DType::I16 => T::I16(conv(a)),
        DType::I32 => T::I32(conv(a)),
        DType::I64 => T::I64(conv(a)),
        DType::U8 => T::U8(conv(a)),
        DType::U16 => T::U16(conv(a)),
        DType::U32 => T::U32(conv(a)),
        DType::U64 => T::U64(conv(a)),
        DType::Bool => T::Bool(conv(a)),
        DType::Str => T::Str(a.mapv(|v| to_string_val(v.val()))),
        d => return Err(unsupported(d)),
    })
}

fn from_str_array(a: &ArrayD<String>, to: DType) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    fn conv<D: Dst>(a: &ArrayD<String>) -> Result<ArrayD<D>, OpError> {
        let v: Vec<D> = a.iter().map(|s| D::parse(s)).collect::<Result<_, _>>()?;
        ArrayD::from_shape_vec(a.raw_dim(), v).map_err(|e| OpError::Invalid(e.to_string()))
    }
    Ok(match to {
        DType::F32 => T::F32(conv(a)?),
        DType::F64 => T::F64(conv(a)?),
        DType::F16 => T::F16(conv(a)?),
        DType::BF16 => T::BF16(conv(a)?),
        DType::I8 => T::I8(conv(a)?),
        DType::I16 => T::I16(conv(a)?),
        DType::I32 => T::I32(conv(a)?),
        DType::I64 => T::I64(conv(a)?),
        DType::U8 => T::U8(conv(a)?),
        DType::U16 => T::U16(conv(a)?),
        DType::U32 => T::U32(conv(a)?),
        DType::U64 => T::U64(conv(a)?),
        DType::Bool => T::Bool(conv(a)?),
        DType::Str => T::Str(a.clone()),
        d => return Err(unsupported(d)),
    })
}

fn unsupported(d: DType) -> OpError {
    OpError::Unsupported(format!("cast to {d}: the interpreter has no {d} tensors"))
}

/// Converts a tensor to element type `to` with ONNX Cast semantics (see the
/// module doc). Casting to the same type returns a copy.
pub(crate) fn cast_tensor(x: &TensorValue, to: DType) -> Result<TensorValue, OpError> {
    use TensorValue as T;
    if x.dtype() == to {
        return Ok(x.clone());
    }
    match x {
        T::F32(a) => from_src(a, to),
        T::F64(a) => from_src(a, to),
        T::F16(a) => from_src(a, to),
        T::BF16(a) => from_src(a, to),
        T::I8(a) => from_src(a, to),
        T::I16(a) => from_src(a, to),
        T::I32(a) => from_src(a, to),
        T::I64(a) => from_src(a, to),
        T::U8(a) => from_src(a, to),
        T::U16(a) => from_src(a, to),
        T::U32(a) => from_src(a, to),
        T::U64(a) => from_src(a, to),
        T::Bool(a) => from_src(a, to),
        T::Str(a) => from_str_array(a, to),
    }
}

/// The `to` attribute: a type code, or (Cast-1) a type name such as "FLOAT".
fn target_type(ctx: &OpCtx) -> Result<DType, OpError> {
    if let Some(code) = ctx.int_opt("to") {
        let code = i32::try_from(code)
            .map_err(|_| OpError::Invalid(format!("Cast: bad type code {code}")))?;
        return Ok(DType::from_onnx(code));
    }
    let name = ctx
        .string("to")
        .ok_or_else(|| OpError::Invalid("Cast: the 'to' attribute is missing".into()))?;
    let d = match name.to_ascii_uppercase().as_str() {
        "FLOAT" => DType::F32,
        "DOUBLE" => DType::F64,
        "FLOAT16" => DType::F16,
        "BFLOAT16" => DType::BF16,
        "INT8" => DType::I8,
        "INT16" => DType::I16,
        "INT32" => DType::I32,
        "INT64" => DType::I64,
        "UINT8" => DType::U8,
        "UINT16" => DType::U16,
        "UINT32" => DType::U32,
        "UINT64" => DType::U64,
        "BOOL" => DType::Bool,
        "STRING" => DType::Str,
        _ => return Err(OpError::Invalid(format!("Cast: unknown type '{name}'"))),
    };
    Ok(d)
}

fn cast(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    one(cast_tensor(x, target_type(ctx)?)?)
}

fn cast_like(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    let x = ctx.input(inputs, 0)?;
    let like = ctx.input(inputs, 1)?;
    one(cast_tensor(x, like.dtype())?)
}

// ---------------------------------------------------------------------------
// Clip

fn clip_array<T: PartialOrd + Copy>(a: &ArrayD<T>, lo: Option<T>, hi: Option<T>) -> ArrayD<T> {
    match (lo, hi) {
        (Some(lo), Some(hi)) => a.mapv(|v| {
            let v = if v < lo { lo } else { v };
            if v > hi {
                hi
            } else {
                v
            }
        }),
        (Some(lo), None) => a.mapv(|v| if v < lo { lo } else { v }),
        (None, Some(hi)) => a.mapv(|v| if v > hi { hi } else { v }),
        (None, None) => a.clone(),
    }
}

/// The single element of a scalar (or one-element) bound.
fn scalar<T: Copy>(a: &ArrayD<T>, what: &str) -> Result<T, OpError> {
    if a.len() != 1 {
        return Err(OpError::Invalid(format!(
            "Clip: {what} must be a scalar, got shape {:?}",
            a.shape()
        )));
    }
    a.iter()
        .next()
        .copied()
        .ok_or_else(|| OpError::Invalid(format!("Clip: {what} is empty")))
}

fn clip(ctx: &OpCtx, inputs: &[Option<RtValue>]) -> OpResult {
    use TensorValue as T;
    let x = ctx.input(inputs, 0)?;
    if ctx.opset < 11 {
        let lo = ctx.has_attr("min").then(|| ctx.float("min", f32::MIN));
        let hi = ctx.has_attr("max").then(|| ctx.float("max", f32::MAX));
        return one(match x {
            T::F32(a) => T::F32(clip_array(a, lo, hi)),
            T::F64(a) => T::F64(clip_array(a, lo.map(f64::from), hi.map(f64::from))),
            T::F16(a) => T::F16(clip_array(a, lo.map(f16::from_f32), hi.map(f16::from_f32))),
            T::BF16(a) => T::BF16(clip_array(
                a,
                lo.map(bf16::from_f32),
                hi.map(bf16::from_f32),
            )),
            t => {
                return Err(OpError::Invalid(format!(
                    "Clip (opset {}) of {} is not defined",
                    ctx.opset,
                    t.dtype()
                )))
            }
        });
    }
    let lo = ctx.opt_input(inputs, 1)?;
    let hi = ctx.opt_input(inputs, 2)?;
    macro_rules! bound {
        ($v:ident, $b:expr, $what:literal) => {
            match $b {
                None => None,
                Some(T::$v(b)) => Some(scalar(b, $what)?),
                Some(b) => {
                    return Err(OpError::Invalid(format!(
                        "Clip: {} has type {}, X has {}",
                        $what,
                        b.dtype(),
                        x.dtype()
                    )))
                }
            }
        };
    }
    macro_rules! go {
        ($($v:ident),*) => {
            match x {
                $(T::$v(a) => T::$v(clip_array(a, bound!($v, lo, "min"), bound!($v, hi, "max"))),)*
                t => {
                    return Err(OpError::Invalid(format!(
                        "Clip of {} is not defined",
                        t.dtype()
                    )))
                }
            }
        };
    }
    one(go!(
        F32, F64, F16, BF16, I8, I16, I32, I64, U8, U16, U32, U64
    ))
}

#[cfg(test)]
mod tests {
    use super::super::unary::tests::run_op;
    use super::*;
    use crate::ir::attr::{Attr, AttrValue};
    use ndarray::arr1;

    fn strs(v: &[&str]) -> TensorValue {
        TensorValue::Str(arr1(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).into_dyn())
    }

    #[test]
    fn numeric_casts() {
        let x = TensorValue::F64(arr1(&[200.0, -1.5, 3e9, f64::NAN]).into_dyn());
        assert_eq!(
            cast_tensor(&x, DType::I8).unwrap(),
            TensorValue::I8(arr1(&[-56i8, -1, 0, 0]).into_dyn())
        );
        let x = TensorValue::I16(arr1(&[200i16, -1]).into_dyn());
        assert_eq!(
            cast_tensor(&x, DType::U8).unwrap(),
            TensorValue::U8(arr1(&[200u8, 255]).into_dyn())
        );
        assert_eq!(
            cast_tensor(&x, DType::Bool).unwrap(),
            TensorValue::Bool(arr1(&[true, true]).into_dyn())
        );
        let x = TensorValue::from_f32(&[2], vec![1.0 / 3.0, 65536.0]);
        let h = cast_tensor(&x, DType::F16).unwrap();
        let v = h.to_f64_vec().unwrap();
        assert_eq!(v[0], f16::from_f32(1.0 / 3.0).to_f64());
        assert!(v[1].is_infinite());
    }

    #[test]
    fn string_casts() {
        let x = TensorValue::from_f32(&[6], vec![1e20, 1.5e-7, 0.1, 1.0, f32::NAN, -f32::INFINITY]);
        assert_eq!(
            cast_tensor(&x, DType::Str).unwrap(),
            strs(&["1e+20", "1.5e-07", "0.1", "1.0", "nan", "-inf"])
        );
        let s = strs(&["1e3", " 2.5", "INF", "-inf", "+INF"]);
        assert_eq!(
            cast_tensor(&s, DType::F32).unwrap(),
            TensorValue::from_f32(
                &[5],
                vec![1000.0, 2.5, f32::INFINITY, f32::NEG_INFINITY, f32::INFINITY]
            )
        );
        let s = strs(&["12", "-7", "2.9"]);
        assert_eq!(
            cast_tensor(&s, DType::I64).unwrap(),
            TensorValue::from_i64(&[3], vec![12, -7, 2])
        );
        assert!(matches!(
            cast_tensor(&strs(&["hello"]), DType::F32),
            Err(OpError::Invalid(_))
        ));
        assert!(matches!(
            cast_tensor(&x, DType::F8E4M3FN),
            Err(OpError::Unsupported(_))
        ));
    }

    #[test]
    fn clip_forms() {
        let x = TensorValue::from_f32(&[4], vec![-2.0, 0.0, 3.0, f32::NAN]);
        let attrs = vec![
            Attr::new("min", AttrValue::Float(-1.0)),
            Attr::new("max", AttrValue::Float(1.0)),
        ];
        let r = run_op("Clip", 6, attrs, vec![Some(x.clone())]).unwrap();
        let v = r.to_f64_vec().unwrap();
        assert_eq!(&v[..3], &[-1.0, 0.0, 1.0]);
        assert!(v[3].is_nan());
        let lo = TensorValue::from_f32(&[], vec![0.5]);
        let r = run_op("Clip", 13, vec![], vec![Some(x.clone()), Some(lo), None]).unwrap();
        assert_eq!(&r.to_f64_vec().unwrap()[..3], &[0.5, 0.5, 3.0]);
        // min > max: everything becomes max.
        let lo = TensorValue::from_f32(&[], vec![2.0]);
        let hi = TensorValue::from_f32(&[], vec![1.0]);
        let r = run_op("Clip", 13, vec![], vec![Some(x), Some(lo), Some(hi)]).unwrap();
        assert_eq!(&r.to_f64_vec().unwrap()[..3], &[1.0, 1.0, 1.0]);
    }
}
