//! Reading and writing values as files: NumPy `.npy` (through `ndarray-npy`; float16
//! is read through its bit pattern, and float16/bfloat16 outputs are written as
//! float32 since `.npy` has no bfloat16 and ndarray-npy no half type) and
//! ONNX protobuf `.pb` (`TensorProto`, or `SequenceProto`/`OptionalProto` as the
//! declared type says).
//!
//! ```no_run
//! let v = modc::read_value_file(std::path::Path::new("x.npy"), None).unwrap();
//! modc::write_npy(std::path::Path::new("y.npy"), v.as_tensor().unwrap()).unwrap();
//! ```

use super::value::{RtValue, TensorValue};
use crate::ir::types::Type;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::path::Path;

/// Reads an input file: `.npy`, or an ONNX `.pb` protobuf.
pub fn read_value_file(path: &Path, declared: Option<&Type>) -> Result<RtValue, String> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("npy") => read_npy(path).map(RtValue::Tensor),
        Some("pb") => crate::conformance::read_value(path, declared),
        _ => Err(format!(
            "{}: unknown file type (use .npy or .pb)",
            path.display()
        )),
    }
}

/// Reads a `.npy` file of any supported element type.
pub fn read_npy(path: &Path) -> Result<TensorValue, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    macro_rules! try_as {
        ($t:ty, $v:ident) => {
            if let Ok(a) = ArrayD::<$t>::read_npy(bytes.as_slice()) {
                return Ok(TensorValue::$v(a));
            }
        };
    }
    try_as!(f32, F32);
    try_as!(f64, F64);
    try_as!(i64, I64);
    try_as!(i32, I32);
    try_as!(i16, I16);
    try_as!(i8, I8);
    try_as!(u8, U8);
    try_as!(u16, U16);
    try_as!(u32, U32);
    try_as!(u64, U64);
    try_as!(bool, Bool);
    // float16: ndarray-npy has no half type; the same bytes read as u16 are the bits.
    if let Some(pos) = bytes.windows(5).take(256).position(|w| w == b"'<f2'") {
        let mut patched = bytes.clone();
        patched[pos..pos + 5].copy_from_slice(b"'<u2'");
        if let Ok(a) = ArrayD::<u16>::read_npy(patched.as_slice()) {
            return Ok(TensorValue::F16(a.mapv(half::f16::from_bits)));
        }
    }
    // Report the reason for the most common type.
    match ArrayD::<f32>::read_npy(bytes.as_slice()) {
        Ok(a) => Ok(TensorValue::F32(a)),
        Err(e) => Err(format!(
            "{}: cannot read as .npy of a supported type (f32, f64, i8..i64, u8..u64, bool): {e}",
            path.display()
        )),
    }
}

/// Writes a file through a temporary file in the same folder renamed into
/// place, so a failure never leaves a half-written file. `write` fills the file;
/// its error is prefixed with the path.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> Result<(), String>,
) -> Result<(), String> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    write(tmp.as_file_mut()).map_err(|e| format!("{}: {e}", path.display()))?;
    tmp.persist(path)
        .map_err(|e| format!("{}: {}", path.display(), e.error))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically (see [`write_atomic_with`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    write_atomic_with(path, |f| f.write_all(bytes).map_err(|e| e.to_string()))
}

/// Writes a tensor as `.npy` (through a temporary file renamed into place).
pub fn write_npy(path: &Path, t: &TensorValue) -> Result<(), String> {
    write_atomic_with(path, |f| {
        let w = std::io::BufWriter::new(f);
        let res = match t {
            TensorValue::F32(a) => a.write_npy(w),
            TensorValue::F64(a) => a.write_npy(w),
            TensorValue::I8(a) => a.write_npy(w),
            TensorValue::I16(a) => a.write_npy(w),
            TensorValue::I32(a) => a.write_npy(w),
            TensorValue::I64(a) => a.write_npy(w),
            TensorValue::U8(a) => a.write_npy(w),
            TensorValue::U16(a) => a.write_npy(w),
            TensorValue::U32(a) => a.write_npy(w),
            TensorValue::U64(a) => a.write_npy(w),
            TensorValue::Bool(a) => a.write_npy(w),
            TensorValue::F16(a) => a.mapv(|v| v.to_f32()).write_npy(w),
            TensorValue::BF16(a) => a.mapv(|v| v.to_f32()).write_npy(w),
            TensorValue::Str(_) => {
                return Err("string tensors cannot be written as .npy".to_string())
            }
        };
        res.map_err(|e| e.to_string())
    })
}

/// Seeded random data for an input of the declared type: floats uniform in
/// [-1, 1), integers uniform in [0, 10), booleans fair. Symbolic dimensions take
/// their size from `dims`; an unknown one is an error naming it.
pub fn random_input(
    name: &str,
    ty: Option<&Type>,
    dims: &std::collections::HashMap<String, usize>,
    seed: u64,
) -> Result<TensorValue, String> {
    use crate::ir::dtype::DType;
    use crate::ir::types::DimValue;
    use rand::{Rng, SeedableRng};
    let (elem, shape) = ty.and_then(|t| t.as_tensor()).ok_or_else(|| {
        format!("input '{name}' has no declared tensor type; give it with --input")
    })?;
    let shape =
        shape.ok_or_else(|| format!("input '{name}' has an unknown rank; give it with --input"))?;
    let mut sizes = Vec::new();
    for (i, d) in shape.dims.iter().enumerate() {
        sizes.push(match &d.value {
            DimValue::Fixed(n) if *n >= 0 => *n as usize,
            DimValue::Param(p) => *dims.get(p).ok_or_else(|| {
                format!("input '{name}': dimension {i} is '{p}'; set it with --dim {p}=N")
            })?,
            _ => {
                return Err(format!(
                    "input '{name}': dimension {i} is unknown; give the input with --input"
                ))
            }
        });
    }
    let n: usize = sizes.iter().product();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let s = ndarray::IxDyn(&sizes);
    macro_rules! ints {
        ($v:ident, $t:ty) => {
            TensorValue::$v(
                ArrayD::from_shape_vec(s, (0..n).map(|_| rng.random_range(0..10) as $t).collect())
                    .map_err(|e| e.to_string())?,
            )
        };
    }
    Ok(match elem {
        DType::F32 => TensorValue::F32(
            ArrayD::from_shape_vec(s, (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect())
                .map_err(|e| e.to_string())?,
        ),
        DType::F64 => TensorValue::F64(
            ArrayD::from_shape_vec(s, (0..n).map(|_| rng.random_range(-1.0f64..1.0)).collect())
                .map_err(|e| e.to_string())?,
        ),
        DType::F16 => TensorValue::F16(
            ArrayD::from_shape_vec(
                s,
                (0..n)
                    .map(|_| half::f16::from_f32(rng.random_range(-1.0f32..1.0)))
                    .collect(),
            )
            .map_err(|e| e.to_string())?,
        ),
        DType::I64 => ints!(I64, i64),
        DType::I32 => ints!(I32, i32),
        DType::I16 => ints!(I16, i16),
        DType::I8 => ints!(I8, i8),
        DType::U8 => ints!(U8, u8),
        DType::U16 => ints!(U16, u16),
        DType::U32 => ints!(U32, u32),
        DType::U64 => ints!(U64, u64),
        DType::Bool => TensorValue::Bool(
            ArrayD::from_shape_vec(s, (0..n).map(|_| rng.random_bool(0.5)).collect())
                .map_err(|e| e.to_string())?,
        ),
        d => {
            return Err(format!(
                "input '{name}': random data of type {d} is not supported"
            ))
        }
    })
}
