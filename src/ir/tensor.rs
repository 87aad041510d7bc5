//! Tensors: element type, dimensions and shared, lazily loaded data.
//!
//! Data is never copied on load: inline payloads are slices of the memory-mapped
//! model file (`bytes::Bytes`), external payloads are a validated reference to an
//! open file that is memory-mapped the first time the data is read. Cloning a tensor
//! shares its data.
//!
//! ```
//! use modc::{DType, Tensor};
//! let t = Tensor::from_f32("w", &[2], &[1.0, 2.5]);
//! assert_eq!(t.num_elements(), Some(2));
//! assert_eq!(t.raw_bytes().unwrap().len(), 8);
//! ```

use crate::ir::dtype::DType;
use bytes::Bytes;
use memmap2::Mmap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// A tensor constant: an initializer, an attribute value, or a part of a sparse tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub dtype: DType,
    pub dims: Vec<i64>,
    pub data: TensorData,
    pub doc_string: Option<String>,
    pub metadata_props: Vec<(String, String)>,
    /// ONNX's deprecated `segment` field, kept for round trips.
    pub segment: Option<(Option<i64>, Option<i64>)>,
}

/// Where a tensor's elements are.
#[derive(Clone, Debug, PartialEq)]
pub enum TensorData {
    /// ONNX raw layout (little endian, sub-byte types packed), shared.
    Raw(Bytes),
    /// The typed repeated fields of `TensorProto`, as they were in the file.
    Fields(Arc<FieldData>),
    /// Bytes in a file beside the model, checked by the security policy at load.
    External(ExternalData),
    /// No data at all: a `TensorProto` with neither payload (e.g. an empty tensor
    /// written without `raw_data`), or a constant parsed from the text form.
    Absent,
}

/// The typed payload fields of a `TensorProto`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldData {
    pub float_data: Vec<f32>,
    pub int32_data: Vec<i32>,
    pub string_data: Vec<Bytes>,
    pub int64_data: Vec<i64>,
    pub double_data: Vec<f64>,
    pub uint64_data: Vec<u64>,
}

/// A slice of an external data file.
#[derive(Clone, Debug)]
pub struct ExternalData {
    /// The `location` as written in the model (relative to the model's folder).
    pub location: String,
    pub offset: u64,
    pub length: u64,
    /// Every external_data entry of the `TensorProto` (location, offset, length,
    /// checksum and any other key), in their original order.
    pub entries: Vec<(String, String)>,
    pub file: Arc<ExternalFile>,
}

impl PartialEq for ExternalData {
    fn eq(&self, other: &Self) -> bool {
        self.file.path == other.file.path
            && self.offset == other.offset
            && self.length == other.length
    }
}

/// An external data file opened (and checked) at load; mapped on first use.
#[derive(Debug)]
pub struct ExternalFile {
    pub path: PathBuf,
    pub size: u64,
    file: File,
    map: OnceLock<Result<Bytes, String>>,
}

impl ExternalFile {
    pub(crate) fn new(path: PathBuf, file: File, size: u64) -> ExternalFile {
        ExternalFile {
            path,
            size,
            file,
            map: OnceLock::new(),
        }
    }

    /// The whole file as shared bytes, memory-mapped on the first call.
    pub fn bytes(&self) -> Result<Bytes, TensorError> {
        let mapped = self.map.get_or_init(|| {
            if self.size == 0 {
                return Ok(Bytes::new());
            }
            // SAFETY: the map is read-only; modc never writes to files it maps, and
            // saving always writes new files and renames them into place.
            match unsafe { Mmap::map(&self.file) } {
                Ok(m) => Ok(Bytes::from_owner(m)),
                Err(e) => Err(e.to_string()),
            }
        });
        mapped.clone().map_err(|e| TensorError::Io {
            path: self.path.clone(),
            message: e,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("tensor '{name}': {message}")]
    Invalid { name: String, message: String },
    #[error("cannot read external data '{}': {message}", path.display())]
    Io { path: PathBuf, message: String },
}

impl Tensor {
    /// A tensor holding raw little-endian bytes.
    pub fn from_raw(name: &str, dtype: DType, dims: &[i64], raw: Bytes) -> Tensor {
        Tensor {
            name: name.to_string(),
            dtype,
            dims: dims.to_vec(),
            data: TensorData::Raw(raw),
            doc_string: None,
            metadata_props: Vec::new(),
            segment: None,
        }
    }

    pub fn from_f32(name: &str, dims: &[i64], values: &[f32]) -> Tensor {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(name, DType::F32, dims, Bytes::from(raw))
    }

    pub fn from_i64(name: &str, dims: &[i64], values: &[i64]) -> Tensor {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor::from_raw(name, DType::I64, dims, Bytes::from(raw))
    }

    /// The element count, or `None` if a dimension is negative or it overflows.
    pub fn num_elements(&self) -> Option<u64> {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(u64::try_from(d).ok()?))
    }

    /// Bytes the data takes in ONNX's raw layout (`None` for strings).
    pub fn expected_raw_len(&self) -> Option<u64> {
        self.dtype.storage_bytes(self.num_elements()?)
    }

    /// Where the data lives, for reports: `inline`, `fields`, `external:<location>`.
    pub fn is_external(&self) -> bool {
        matches!(self.data, TensorData::External(_))
    }

    /// The data in ONNX's raw layout. Inline and external data are returned without
    /// copying; typed fields are converted.
    pub fn raw_bytes(&self) -> Result<Bytes, TensorError> {
        match &self.data {
            TensorData::Raw(b) => Ok(b.clone()),
            TensorData::External(ext) => {
                let all = ext.file.bytes()?;
                let start = ext.offset as usize;
                let end = start + ext.length as usize;
                if end > all.len() {
                    return Err(TensorError::Io {
                        path: ext.file.path.clone(),
                        message: format!(
                            "tensor '{}' needs bytes {start}..{end}, the file has {}",
                            self.name,
                            all.len()
                        ),
                    });
                }
                Ok(all.slice(start..end))
            }
            TensorData::Fields(f) => {
                fields_to_raw(&self.name, self.dtype, self.num_elements(), f).map(Bytes::from)
            }
            TensorData::Absent => {
                if self.num_elements() == Some(0) || self.expected_raw_len() == Some(0) {
                    Ok(Bytes::new())
                } else {
                    Err(TensorError::Invalid {
                        name: self.name.clone(),
                        message: "has no data".into(),
                    })
                }
            }
        }
    }

    /// The size of the data in bytes as stored (raw layout size for typed fields).
    pub fn byte_size(&self) -> u64 {
        match &self.data {
            TensorData::Raw(b) => b.len() as u64,
            TensorData::External(e) => e.length,
            TensorData::Fields(f) => self
                .expected_raw_len()
                .unwrap_or_else(|| f.string_data.iter().map(|s| s.len() as u64).sum()),
            TensorData::Absent => 0,
        }
    }
}

/// Converts ONNX's typed fields to the raw layout, following the rules written in
/// `onnx.proto` for each field.
fn fields_to_raw(
    name: &str,
    dtype: DType,
    count: Option<u64>,
    f: &FieldData,
) -> Result<Vec<u8>, TensorError> {
    let bad = |m: String| TensorError::Invalid {
        name: name.to_string(),
        message: m,
    };
    let count = count.ok_or_else(|| bad("has an invalid shape".into()))?;
    use DType::*;
    let check = |n: usize| {
        if n as u64 == count {
            Ok(())
        } else {
            Err(bad(format!("has {n} values for {count} elements")))
        }
    };
    let out: Vec<u8> = match dtype {
        F32 => {
            check(f.float_data.len())?;
            f.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        C64 => {
            check(f.float_data.len().div_ceil(2))?;
            check(f.float_data.len() / 2)?;
            f.float_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        F64 => {
            check(f.double_data.len())?;
            f.double_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        C128 => {
            check(f.double_data.len().div_ceil(2))?;
            check(f.double_data.len() / 2)?;
            f.double_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        I64 => {
            check(f.int64_data.len())?;
            f.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        U64 | U32 => {
            check(f.uint64_data.len())?;
            if dtype == U64 {
                f.uint64_data.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                f.uint64_data
                    .iter()
                    .flat_map(|v| (*v as u32).to_le_bytes())
                    .collect()
            }
        }
        I32 => {
            check(f.int32_data.len())?;
            f.int32_data.iter().flat_map(|v| v.to_le_bytes()).collect()
        }
        I16 | U16 | F16 | BF16 => {
            check(f.int32_data.len())?;
            f.int32_data
                .iter()
                .flat_map(|v| (*v as u16).to_le_bytes())
                .collect()
        }
        I8 | U8 | Bool | F8E4M3FN | F8E4M3FNUZ | F8E5M2 | F8E5M2FNUZ | F8E8M0 => {
            check(f.int32_data.len())?;
            f.int32_data.iter().map(|v| *v as u8).collect()
        }
        U4 | I4 | F4E2M1 | U2 | I2 => {
            // Each int32 entry holds one packed byte of 2 or 4 elements.
            let per = dtype.per_int32_entry();
            if f.int32_data.len() as u64 != count.div_ceil(per) {
                return Err(bad(format!(
                    "has {} packed values for {count} elements",
                    f.int32_data.len()
                )));
            }
            f.int32_data.iter().map(|v| *v as u8).collect()
        }
        Str | Undefined | Other(_) => return Err(bad(format!("{dtype} data has no raw layout"))),
    };
    Ok(out)
}

/// A sparse tensor in ONNX's COO form.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseTensor {
    pub values: Tensor,
    pub indices: Tensor,
    pub dims: Vec<i64>,
}
