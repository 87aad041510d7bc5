//! Element types of tensors, with their ONNX codes and their names in the text form.
//!
//! ```
//! use modc::DType;
//! assert_eq!(DType::F32.text_name(), "f32");
//! assert_eq!(DType::from_onnx(10), DType::F16);
//! assert_eq!(DType::I4.storage_bytes(5), Some(3));
//! ```

use std::fmt;

/// An ONNX tensor element type. Codes modc does not know are kept as `Other`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Undefined,
    F32,
    U8,
    I8,
    U16,
    I16,
    I32,
    I64,
    Str,
    Bool,
    F16,
    F64,
    U32,
    U64,
    C64,
    C128,
    BF16,
    F8E4M3FN,
    F8E4M3FNUZ,
    F8E5M2,
    F8E5M2FNUZ,
    U4,
    I4,
    F4E2M1,
    F8E8M0,
    U2,
    I2,
    /// A code this version of modc does not know; kept so the model survives a round trip.
    Other(i32),
}

const TABLE: &[(DType, i32, &str)] = &[
    (DType::Undefined, 0, "undef"),
    (DType::F32, 1, "f32"),
    (DType::U8, 2, "u8"),
    (DType::I8, 3, "i8"),
    (DType::U16, 4, "u16"),
    (DType::I16, 5, "i16"),
    (DType::I32, 6, "i32"),
    (DType::I64, 7, "i64"),
    (DType::Str, 8, "str"),
    (DType::Bool, 9, "bool"),
    (DType::F16, 10, "f16"),
    (DType::F64, 11, "f64"),
    (DType::U32, 12, "u32"),
    (DType::U64, 13, "u64"),
    (DType::C64, 14, "c64"),
    (DType::C128, 15, "c128"),
    (DType::BF16, 16, "bf16"),
    (DType::F8E4M3FN, 17, "f8e4m3fn"),
    (DType::F8E4M3FNUZ, 18, "f8e4m3fnuz"),
    (DType::F8E5M2, 19, "f8e5m2"),
    (DType::F8E5M2FNUZ, 20, "f8e5m2fnuz"),
    (DType::U4, 21, "u4"),
    (DType::I4, 22, "i4"),
    (DType::F4E2M1, 23, "f4e2m1"),
    (DType::F8E8M0, 24, "f8e8m0"),
    (DType::U2, 25, "u2"),
    (DType::I2, 26, "i2"),
];

impl DType {
    /// The type for an ONNX `TensorProto.DataType` code.
    pub fn from_onnx(code: i32) -> DType {
        TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map(|(d, _, _)| *d)
            .unwrap_or(DType::Other(code))
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::Other(c) => c,
            d => TABLE
                .iter()
                .find(|(t, _, _)| *t == d)
                .map(|(_, c, _)| *c)
                .unwrap_or(0),
        }
    }

    /// The short name used by the text form (`f32`, `i64`, `bf16` ...).
    pub fn text_name(self) -> String {
        match self {
            DType::Other(c) => format!("dtype{c}"),
            d => TABLE
                .iter()
                .find(|(t, _, _)| *t == d)
                .map(|(_, _, n)| n.to_string())
                .unwrap_or_default(),
        }
    }

    /// Parses a name of the text form.
    pub fn from_text_name(name: &str) -> Option<DType> {
        if let Some(code) = name.strip_prefix("dtype") {
            return code.parse().ok().map(DType::from_onnx);
        }
        TABLE
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(d, _, _)| *d)
    }

    /// Bits per element, or `None` for strings and unknown codes.
    pub fn bits(self) -> Option<u64> {
        use DType::*;
        Some(match self {
            U2 | I2 => 2,
            U4 | I4 | F4E2M1 => 4,
            Bool | U8 | I8 | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => 8,
            U16 | I16 | F16 | BF16 => 16,
            F32 | I32 | U32 => 32,
            F64 | I64 | U64 | C64 => 64,
            C128 => 128,
            Undefined | Str | Other(_) => return None,
        })
    }

    /// Bytes needed to store `count` elements in ONNX's raw layout (sub-byte types
    /// packed, rounded up), or `None` when the type has no fixed size or it overflows.
    pub fn storage_bytes(self, count: u64) -> Option<u64> {
        let bits = count.checked_mul(self.bits()?)?;
        Some(bits.div_ceil(8))
    }

    /// How many elements one `int32_data` entry holds for this type (ONNX's rule:
    /// one element for 8 bits or more, two for 4-bit types, four for 2-bit types).
    pub fn per_int32_entry(self) -> u64 {
        match self.bits() {
            Some(2) => 4,
            Some(4) => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text_name())
    }
}
