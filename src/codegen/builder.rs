//! A small typed WGSL builder for generated elementwise code.
//!
//! Every expression is a [`Val`]: WGSL text plus its scalar type ([`Ty`]), so a
//! mixed-type operation must go through [`Body::cast`] and cannot be written
//! ill-typed by accident. A [`Body`] is the list of `let` statements of one
//! invocation; [`literal`] writes an exact constant (floats as their bits, so NaN
//! and infinities survive).
//!
//! ```ignore
//! let mut b = Body::default();
//! let x = Val::new("x", Ty::F32);
//! let y = b.bind(Ty::F32, format!("max({}, {})", x, literal(Ty::F32, 0.0)));
//! assert_eq!(b.lines(), ["let v0: f32 = max(x, bitcast<f32>(0x00000000u));"]);
//! ```

use std::fmt;

/// A WGSL scalar type of generated code. Booleans are `bool` in registers and one
/// `u32` word in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Ty {
    F32,
    I32,
    U32,
    Bool,
}

impl Ty {
    pub fn wgsl(self) -> &'static str {
        match self {
            Ty::F32 => "f32",
            Ty::I32 => "i32",
            Ty::U32 => "u32",
            Ty::Bool => "bool",
        }
    }
}

/// A typed expression (usually the name of a `let`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Val {
    pub code: String,
    pub ty: Ty,
}

impl Val {
    pub fn new(code: impl Into<String>, ty: Ty) -> Val {
        Val {
            code: code.into(),
            ty,
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code)
    }
}

/// An exact literal of type `ty` with value `v` (floats as bit patterns).
pub(crate) fn literal(ty: Ty, v: f64) -> Val {
    let code = match ty {
        Ty::F32 => format!("bitcast<f32>({:#010x}u)", (v as f32).to_bits()),
        Ty::I32 => {
            let n = v as i64 as i32;
            if n == i32::MIN {
                "i32(-2147483648)".to_string()
            } else {
                format!("i32({n})")
            }
        }
        Ty::U32 => format!("{}u", v as u32),
        Ty::Bool => (if v != 0.0 { "true" } else { "false" }).to_string(),
    };
    Val::new(code, ty)
}

/// The statements of one invocation, binding each result to a fresh name.
#[derive(Debug, Default)]
pub(crate) struct Body {
    lines: Vec<String>,
    next: usize,
}

impl Body {
    /// `let vN: ty = code;` and the name as a value.
    pub fn bind(&mut self, ty: Ty, code: impl fmt::Display) -> Val {
        let name = format!("v{}", self.next);
        self.next += 1;
        self.lines
            .push(format!("let {name}: {} = {code};", ty.wgsl()));
        Val::new(name, ty)
    }

    /// A raw statement (stores, index arithmetic).
    pub fn stmt(&mut self, s: impl Into<String>) {
        self.lines.push(s.into());
    }

    /// Converts `v` to `to` the way ONNX Cast does for the device types: numbers
    /// to bool are `!= 0`, bool to numbers 0 or 1, float to int truncates.
    pub fn cast(&mut self, v: &Val, to: Ty) -> Val {
        if v.ty == to {
            return v.clone();
        }
        let code = match (v.ty, to) {
            (Ty::Bool, t) => format!("select({}, {}, {v})", literal(t, 0.0), literal(t, 1.0)),
            (f, Ty::Bool) => format!("({v} != {})", literal(f, 0.0)),
            (_, t) => format!("{}({v})", t.wgsl()),
        };
        self.bind(to, code)
    }

    pub fn lines(&self) -> &[String] {
        &self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_exact_and_typed() {
        assert_eq!(literal(Ty::F32, 1.0).code, "bitcast<f32>(0x3f800000u)");
        assert_eq!(literal(Ty::F32, f64::NAN).code, "bitcast<f32>(0x7fc00000u)");
        assert_eq!(literal(Ty::I32, -3.0).code, "i32(-3)");
        assert_eq!(literal(Ty::U32, 255.0).code, "255u");
    }

    #[test]
    fn casts_are_explicit() {
        let mut b = Body::default();
        let x = Val::new("x", Ty::F32);
        let c = b.cast(&x, Ty::Bool);
        let d = b.cast(&c, Ty::I32);
        assert_eq!(d.ty, Ty::I32);
        assert_eq!(
            b.lines(),
            [
                "let v0: bool = (x != bitcast<f32>(0x00000000u));",
                "let v1: i32 = select(i32(0), i32(1), v0);"
            ]
        );
    }
}
