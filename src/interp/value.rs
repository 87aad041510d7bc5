//! Runtime values of the reference interpreter: tensors as `ndarray` arrays of
//! each supported element type, sequences and optionals.
//!
//! ```
//! use modc::{RtValue, TensorValue};
//! let t = TensorValue::from_f32(&[2], vec![1.0, 2.0]);
//! assert_eq!(t.shape(), &[2]);
//! assert_eq!(RtValue::Tensor(t).as_tensor().unwrap().dtype(), modc::DType::F32);
//! ```

use crate::ir::dtype::DType;
use crate::ir::tensor::{Tensor, TensorData};
use bytes::Bytes;
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn};

/// A tensor value. Each variant holds an n-dimensional array of its element type.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorValue {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    F16(ArrayD<f16>),
    BF16(ArrayD<bf16>),
    I8(ArrayD<i8>),
    I16(ArrayD<i16>),
    I32(ArrayD<i32>),
    I64(ArrayD<i64>),
    U8(ArrayD<u8>),
    U16(ArrayD<u16>),
    U32(ArrayD<u32>),
    U64(ArrayD<u64>),
    Bool(ArrayD<bool>),
    Str(ArrayD<String>),
}

/// A value flowing through the interpreter.
#[derive(Clone, Debug, PartialEq)]
pub enum RtValue {
    Tensor(TensorValue),
    Sequence(Vec<RtValue>),
    /// An optional: `None` is an empty optional.
    Optional(Option<Box<RtValue>>),
}

impl RtValue {
    pub fn as_tensor(&self) -> Option<&TensorValue> {
        match self {
            RtValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
    pub fn into_tensor(self) -> Option<TensorValue> {
        match self {
            RtValue::Tensor(t) => Some(t),
            _ => None,
        }
    }
}

impl From<TensorValue> for RtValue {
    fn from(t: TensorValue) -> Self {
        RtValue::Tensor(t)
    }
}

/// Applies `$body` to the array inside any variant, binding it as `$a`.
#[macro_export]
#[doc(hidden)]
macro_rules! map_tensor {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            $crate::TensorValue::F32($a) => $body,
            $crate::TensorValue::F64($a) => $body,
            $crate::TensorValue::F16($a) => $body,
            $crate::TensorValue::BF16($a) => $body,
            $crate::TensorValue::I8($a) => $body,
            $crate::TensorValue::I16($a) => $body,
            $crate::TensorValue::I32($a) => $body,
            $crate::TensorValue::I64($a) => $body,
            $crate::TensorValue::U8($a) => $body,
            $crate::TensorValue::U16($a) => $body,
            $crate::TensorValue::U32($a) => $body,
            $crate::TensorValue::U64($a) => $body,
            $crate::TensorValue::Bool($a) => $body,
            $crate::TensorValue::Str($a) => $body,
        }
    };
}

/// Like [`map_tensor!`] but re-wraps the result in the same variant.
#[macro_export]
#[doc(hidden)]
macro_rules! map_tensor_same {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            $crate::TensorValue::F32($a) => $crate::TensorValue::F32($body),
            $crate::TensorValue::F64($a) => $crate::TensorValue::F64($body),
            $crate::TensorValue::F16($a) => $crate::TensorValue::F16($body),
            $crate::TensorValue::BF16($a) => $crate::TensorValue::BF16($body),
            $crate::TensorValue::I8($a) => $crate::TensorValue::I8($body),
            $crate::TensorValue::I16($a) => $crate::TensorValue::I16($body),
            $crate::TensorValue::I32($a) => $crate::TensorValue::I32($body),
            $crate::TensorValue::I64($a) => $crate::TensorValue::I64($body),
            $crate::TensorValue::U8($a) => $crate::TensorValue::U8($body),
            $crate::TensorValue::U16($a) => $crate::TensorValue::U16($body),
            $crate::TensorValue::U32($a) => $crate::TensorValue::U32($body),
            $crate::TensorValue::U64($a) => $crate::TensorValue::U64($body),
            $crate::TensorValue::Bool($a) => $crate::TensorValue::Bool($body),
            $crate::TensorValue::Str($a) => $crate::TensorValue::Str($body),
        }
    };
}

/// A problem converting between stored tensors and runtime values.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ValueError {
    #[error("tensor '{name}': element type {dtype} is not supported by the interpreter")]
    UnsupportedType { name: String, dtype: DType },
    #[error("tensor '{name}': {message}")]
    Invalid { name: String, message: String },
}

fn le_vec<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| f(c.try_into().expect("chunk of N bytes")))
        .collect()
}

impl TensorValue {
    pub fn from_f32(shape: &[usize], v: Vec<f32>) -> TensorValue {
        TensorValue::F32(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape matches data"))
    }
    pub fn from_i64(shape: &[usize], v: Vec<i64>) -> TensorValue {
        TensorValue::I64(ArrayD::from_shape_vec(IxDyn(shape), v).expect("shape matches data"))
    }

    pub fn dtype(&self) -> DType {
        match self {
            TensorValue::F32(_) => DType::F32,
            TensorValue::F64(_) => DType::F64,
            TensorValue::F16(_) => DType::F16,
            TensorValue::BF16(_) => DType::BF16,
            TensorValue::I8(_) => DType::I8,
            TensorValue::I16(_) => DType::I16,
            TensorValue::I32(_) => DType::I32,
            TensorValue::I64(_) => DType::I64,
            TensorValue::U8(_) => DType::U8,
            TensorValue::U16(_) => DType::U16,
            TensorValue::U32(_) => DType::U32,
            TensorValue::U64(_) => DType::U64,
            TensorValue::Bool(_) => DType::Bool,
            TensorValue::Str(_) => DType::Str,
        }
    }

    pub fn shape(&self) -> &[usize] {
        map_tensor!(self, a => a.shape())
    }

    pub fn len(&self) -> usize {
        map_tensor!(self, a => a.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the elements take (strings: their UTF-8 lengths).
    pub fn byte_size(&self) -> usize {
        match self {
            TensorValue::Str(a) => a.iter().map(|s| s.len()).sum(),
            t => t.len() * t.dtype().bits().map(|b| b as usize / 8).unwrap_or(1),
        }
    }

    /// A zero-filled tensor of the given type and shape.
    pub fn zeros(dtype: DType, shape: &[usize]) -> Result<TensorValue, ValueError> {
        let s = IxDyn(shape);
        Ok(match dtype {
            DType::F32 => TensorValue::F32(ArrayD::zeros(s)),
            DType::F64 => TensorValue::F64(ArrayD::zeros(s)),
            DType::F16 => TensorValue::F16(ArrayD::from_elem(s, f16::ZERO)),
            DType::BF16 => TensorValue::BF16(ArrayD::from_elem(s, bf16::ZERO)),
            DType::I8 => TensorValue::I8(ArrayD::zeros(s)),
            DType::I16 => TensorValue::I16(ArrayD::zeros(s)),
            DType::I32 => TensorValue::I32(ArrayD::zeros(s)),
            DType::I64 => TensorValue::I64(ArrayD::zeros(s)),
            DType::U8 => TensorValue::U8(ArrayD::zeros(s)),
            DType::U16 => TensorValue::U16(ArrayD::zeros(s)),
            DType::U32 => TensorValue::U32(ArrayD::zeros(s)),
            DType::U64 => TensorValue::U64(ArrayD::zeros(s)),
            DType::Bool => TensorValue::Bool(ArrayD::from_elem(s, false)),
            DType::Str => TensorValue::Str(ArrayD::from_elem(s, String::new())),
            d => {
                return Err(ValueError::UnsupportedType {
                    name: String::new(),
                    dtype: d,
                })
            }
        })
    }

    /// Reads a stored tensor (inline, typed fields or external data).
    pub fn from_tensor(t: &Tensor) -> Result<TensorValue, ValueError> {
        let bad = |m: String| ValueError::Invalid {
            name: t.name.clone(),
            message: m,
        };
        let shape: Vec<usize> = t
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative dimension {d}"))))
            .collect::<Result<_, _>>()?;
        let count: usize = shape.iter().product();
        if t.dtype == DType::Str {
            let strings: Vec<String> = match &t.data {
                TensorData::Fields(f) => f
                    .string_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
                TensorData::Absent if count == 0 => vec![],
                _ => return Err(bad("string data must be in string_data".into())),
            };
            if strings.len() != count {
                return Err(bad(format!(
                    "{} strings for {count} elements",
                    strings.len()
                )));
            }
            return Ok(TensorValue::Str(
                ArrayD::from_shape_vec(IxDyn(&shape), strings).map_err(|e| bad(e.to_string()))?,
            ));
        }
        let raw: Bytes = t.raw_bytes().map_err(|e| bad(e.to_string()))?;
        let want =
            t.dtype
                .storage_bytes(count as u64)
                .ok_or_else(|| ValueError::UnsupportedType {
                    name: t.name.clone(),
                    dtype: t.dtype,
                })?;
        if raw.len() as u64 != want {
            return Err(bad(format!(
                "{} bytes of data, {}{:?} needs {want}",
                raw.len(),
                t.dtype,
                t.dims
            )));
        }
        let s = IxDyn(&shape);
        macro_rules! arr {
            ($v:ident, $n:literal, $f:expr) => {
                TensorValue::$v(
                    ArrayD::from_shape_vec(s, le_vec::<_, $n>(&raw, $f))
                        .map_err(|e| bad(e.to_string()))?,
                )
            };
        }
        Ok(match t.dtype {
            DType::F32 => arr!(F32, 4, f32::from_le_bytes),
            DType::F64 => arr!(F64, 8, f64::from_le_bytes),
            DType::F16 => arr!(F16, 2, f16::from_le_bytes),
            DType::BF16 => arr!(BF16, 2, bf16::from_le_bytes),
            DType::I8 => arr!(I8, 1, i8::from_le_bytes),
            DType::I16 => arr!(I16, 2, i16::from_le_bytes),
            DType::I32 => arr!(I32, 4, i32::from_le_bytes),
            DType::I64 => arr!(I64, 8, i64::from_le_bytes),
            DType::U8 => arr!(U8, 1, u8::from_le_bytes),
            DType::U16 => arr!(U16, 2, u16::from_le_bytes),
            DType::U32 => arr!(U32, 4, u32::from_le_bytes),
            DType::U64 => arr!(U64, 8, u64::from_le_bytes),
            DType::Bool => arr!(Bool, 1, |b: [u8; 1]| b[0] != 0),
            d => {
                return Err(ValueError::UnsupportedType {
                    name: t.name.clone(),
                    dtype: d,
                })
            }
        })
    }

    /// Stores the value as an IR tensor (raw layout; strings in typed fields).
    pub fn to_tensor(&self, name: &str) -> Tensor {
        let dims: Vec<i64> = self.shape().iter().map(|&d| d as i64).collect();
        if let TensorValue::Str(a) = self {
            let f = crate::ir::tensor::FieldData {
                string_data: a
                    .iter()
                    .map(|s| Bytes::from(s.clone().into_bytes()))
                    .collect(),
                ..Default::default()
            };
            let mut t = Tensor::from_raw(name, DType::Str, &dims, Bytes::new());
            t.data = TensorData::Fields(std::sync::Arc::new(f));
            return t;
        }
        let mut raw = Vec::with_capacity(self.byte_size());
        match self {
            TensorValue::F32(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::F64(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::F16(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::BF16(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::I8(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::I16(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::I32(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::I64(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::U8(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::U16(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::U32(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::U64(a) => a.iter().for_each(|v| raw.extend(v.to_le_bytes())),
            TensorValue::Bool(a) => a.iter().for_each(|v| raw.push(*v as u8)),
            TensorValue::Str(_) => unreachable!("handled above"),
        }
        Tensor::from_raw(name, self.dtype(), &dims, Bytes::from(raw))
    }

    /// The elements as i64 (integer tensors only): shape and index inputs.
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            TensorValue::I64(a) => a.iter().copied().collect(),
            TensorValue::I32(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::I16(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::I8(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::U8(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::U16(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::U32(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::U64(a) => a.iter().map(|&v| v as i64).collect(),
            TensorValue::Bool(a) => a.iter().map(|&v| v as i64).collect(),
            _ => return None,
        })
    }

    /// The elements as f64 (numeric tensors), for comparisons and reports.
    pub fn to_f64_vec(&self) -> Option<Vec<f64>> {
        Some(match self {
            TensorValue::F32(a) => a.iter().map(|&v| v as f64).collect(),
            TensorValue::F64(a) => a.iter().copied().collect(),
            TensorValue::F16(a) => a.iter().map(|v| v.to_f64()).collect(),
            TensorValue::BF16(a) => a.iter().map(|v| v.to_f64()).collect(),
            TensorValue::Str(_) => return None,
            t => t.to_i64_vec()?.into_iter().map(|v| v as f64).collect(),
        })
    }
}
