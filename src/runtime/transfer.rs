//! Conversions between host tensors and device words (see
//! [`Storage`](crate::codegen::Storage)): `f32` as its bits, `int32` as is, `int64`
//! narrowed to `i32` with a range check, `bool` and `uint8` widened to one `u32`
//! word per element. Reading back converts to the output's element type.

use super::RuntimeError;
use crate::codegen::spec::TensorDesc;
use crate::interp::value::TensorValue;
use crate::ir::dtype::DType;
use ndarray::{ArrayD, IxDyn};

/// The device words of a tensor; errors name `name`.
pub(crate) fn to_words(name: &str, t: &TensorValue) -> Result<Vec<u32>, RuntimeError> {
    Ok(match t {
        TensorValue::F32(a) => a.iter().map(|v| v.to_bits()).collect(),
        TensorValue::I32(a) => a.iter().map(|&v| v as u32).collect(),
        TensorValue::I64(a) => {
            let mut out = Vec::with_capacity(a.len());
            for &v in a.iter() {
                let n = i32::try_from(v).map_err(|_| RuntimeError::Tensor {
                    name: name.to_string(),
                    message: format!("int64 value {v} does not fit the device's 32-bit integers"),
                })?;
                out.push(n as u32);
            }
            out
        }
        TensorValue::Bool(a) => a.iter().map(|&v| v as u32).collect(),
        TensorValue::U8(a) => a.iter().map(|&v| v as u32).collect(),
        other => {
            return Err(RuntimeError::Tensor {
                name: name.to_string(),
                message: format!("element type {} has no device storage", other.dtype()),
            })
        }
    })
}

/// A host tensor of `desc` from device words (`words.len() >= desc.len()`).
pub(crate) fn from_words(
    name: &str,
    desc: &TensorDesc,
    words: &[u32],
) -> Result<TensorValue, RuntimeError> {
    let n = desc.len();
    let bad = |message: String| RuntimeError::Tensor {
        name: name.to_string(),
        message,
    };
    if words.len() < n {
        return Err(bad(format!(
            "{} words read back for {n} elements",
            words.len()
        )));
    }
    let w = &words[..n];
    let s = IxDyn(&desc.shape);
    let shaped = |e: ndarray::ShapeError| bad(e.to_string());
    Ok(match desc.dtype {
        DType::F32 => TensorValue::F32(
            ArrayD::from_shape_vec(s, w.iter().map(|&v| f32::from_bits(v)).collect())
                .map_err(shaped)?,
        ),
        DType::I32 => TensorValue::I32(
            ArrayD::from_shape_vec(s, w.iter().map(|&v| v as i32).collect()).map_err(shaped)?,
        ),
        DType::I64 => TensorValue::I64(
            ArrayD::from_shape_vec(s, w.iter().map(|&v| v as i32 as i64).collect())
                .map_err(shaped)?,
        ),
        DType::Bool => TensorValue::Bool(
            ArrayD::from_shape_vec(s, w.iter().map(|&v| v != 0).collect()).map_err(shaped)?,
        ),
        DType::U8 => TensorValue::U8(
            ArrayD::from_shape_vec(s, w.iter().map(|&v| v as u8).collect()).map_err(shaped)?,
        ),
        d => return Err(bad(format!("element type {d} has no device storage"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_storage_type() {
        let cases = vec![
            TensorValue::from_f32(&[2], vec![1.5, -0.0]),
            TensorValue::from_i64(&[3], vec![-5, 0, i32::MAX as i64]),
            TensorValue::I32(ArrayD::from_shape_vec(IxDyn(&[1]), vec![-7]).unwrap()),
            TensorValue::Bool(ArrayD::from_shape_vec(IxDyn(&[2]), vec![true, false]).unwrap()),
            TensorValue::U8(ArrayD::from_shape_vec(IxDyn(&[2]), vec![0, 255]).unwrap()),
        ];
        for t in cases {
            let w = to_words("t", &t).unwrap();
            let d = TensorDesc::new(t.dtype(), t.shape());
            assert_eq!(from_words("t", &d, &w).unwrap(), t);
        }
    }

    #[test]
    fn int64_out_of_range_names_the_tensor() {
        let t = TensorValue::from_i64(&[1], vec![1 << 40]);
        let e = to_words("idx", &t).unwrap_err().to_string();
        assert!(e.contains("idx") && e.contains("1099511627776"), "{e}");
    }
}
