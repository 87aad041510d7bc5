//! The load policy against the known shapes of ONNX external-data attacks
//! (CVE-2022-25882, CVE-2024-27318 and the symlink / hard-link escapes fixed in
//! onnx 1.21), plus the size, range and graph limits.
//!
//! Every model here is built with `modc::proto`, written into a temporary folder
//! with the data files, links and fifos around it, and loaded with
//! `modc::load`. Each rejection is checked for its exact `SecurityError` variant
//! and for a message that names the tensor and the location.

use modc::proto::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto, type_proto,
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, StringStringEntryProto,
    TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use modc::{Initializer, LoadPolicy, Model, OnnxError, SaveOptions, SecurityError};
use prost::bytes::Bytes;
use prost::Message;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const FLOAT: i32 = 1;

// ---------------------------------------------------------------------------
// Model builders
// ---------------------------------------------------------------------------

fn f32_value_info(name: &str, dims: &[i64]) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(FLOAT),
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|&d| tensor_shape_proto::Dimension {
                            value: Some(tensor_shape_proto::dimension::Value::DimValue(d)),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn identity(name: &str, input: &str, output: &str) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some("Identity".into()),
        input: vec![input.into()],
        output: vec![output.into()],
        ..Default::default()
    }
}

/// A model whose graph has `initializers` and one Identity node reading the first.
fn model_with(initializers: Vec<TensorProto>) -> ModelProto {
    let first = initializers[0].name.clone().unwrap_or_default();
    let dims = initializers[0].dims.clone();
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        producer_name: Some("modc-security-test".into()),
        graph: Some(GraphProto {
            name: Some("main".into()),
            node: vec![identity("id", &first, "y")],
            initializer: initializers,
            output: vec![f32_value_info("y", &dims)],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// An f32 initializer stored as external data with the given entries
/// (`location` first, then `offset` / `length` when given, verbatim).
fn ext_tensor(
    name: &str,
    location: &str,
    offset: Option<&str>,
    length: Option<&str>,
    dims: &[i64],
) -> TensorProto {
    let entry = |k: &str, v: &str| StringStringEntryProto {
        key: Some(k.into()),
        value: Some(v.into()),
    };
    let mut external_data = vec![entry("location", location)];
    if let Some(o) = offset {
        external_data.push(entry("offset", o));
    }
    if let Some(l) = length {
        external_data.push(entry("length", l));
    }
    TensorProto {
        name: Some(name.into()),
        data_type: Some(FLOAT),
        dims: dims.to_vec(),
        data_location: Some(DataLocation::External as i32),
        external_data,
        ..Default::default()
    }
}

/// The one-external-initializer model: `name` (f32, `dims`) at `location`,
/// feeding an Identity node.
fn ext_model(
    name: &str,
    location: &str,
    offset: Option<u64>,
    length: Option<u64>,
    dims: &[i64],
) -> ModelProto {
    let (o, l) = (offset.map(|o| o.to_string()), length.map(|l| l.to_string()));
    model_with(vec![ext_tensor(
        name,
        location,
        o.as_deref(),
        l.as_deref(),
        dims,
    )])
}

fn write_model(dir: &Path, file: &str, m: &ModelProto) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, m.encode_to_vec()).unwrap();
    path
}

/// `n` little-endian f32 values 0.5, 1.5, 2.5, ...
fn f32_bytes(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (i as f32 + 0.5).to_le_bytes())
        .collect()
}

fn tensor_bytes(m: &Model, name: &str) -> Bytes {
    let id = m
        .graph
        .find_value(name)
        .unwrap_or_else(|| panic!("no value {name}"));
    match &m.graph.value(id).init {
        Some(Initializer::Dense(t)) => t.raw_bytes().unwrap(),
        other => panic!("{name} is not a dense initializer: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Error helpers
// ---------------------------------------------------------------------------

fn load_default(path: &Path) -> Result<Model, OnnxError> {
    modc::load(path, &LoadPolicy::default())
}

/// Loads with `policy` and returns the security error and the full message.
fn security_err(path: &Path, policy: &LoadPolicy) -> (SecurityError, String) {
    match modc::load(path, policy) {
        Ok(_) => panic!("{} loaded, expected a security error", path.display()),
        Err(e) => {
            let msg = e.to_string();
            match e {
                OnnxError::Security { source, path: p } => {
                    assert_eq!(p, path, "the error names the model file");
                    (source, msg)
                }
                other => panic!("expected OnnxError::Security, got {other:?} ({msg})"),
            }
        }
    }
}

fn assert_names(msg: &str, tensor: &str, location: &str) {
    assert!(
        msg.contains(&format!("tensor '{tensor}'")),
        "message does not name tensor '{tensor}': {msg}"
    );
    assert!(
        msg.contains(&format!("'{location}'")),
        "message does not name location '{location}': {msg}"
    );
}

/// Runs `f` on another thread and fails (instead of hanging) if it takes too long.
fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("did not finish within {secs} s (hung?)"))
}

// ---------------------------------------------------------------------------
// CVE-2022-25882: `..` path traversal
// ---------------------------------------------------------------------------

/// Model folder `root/model`, secret at `root/secret.bin`.
fn traversal_setup() -> (TempDir, PathBuf) {
    let root = TempDir::new().unwrap();
    let dir = root.path().join("model");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(root.path().join("secret.bin"), f32_bytes(4)).unwrap();
    (root, dir)
}

#[test]
fn cve_2022_25882_dotdot_traversal() {
    let (_root, dir) = traversal_setup();
    let m = write_model(
        &dir,
        "m.onnx",
        &ext_model("w", "../secret.bin", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::Traversal {
            tensor: "w".into(),
            location: "../secret.bin".into()
        }
    );
    assert_names(&msg, "w", "../secret.bin");
}

#[test]
fn cve_2022_25882_traversal_through_subfolder() {
    let (_root, dir) = traversal_setup();
    let loc = "sub/../../secret.bin";
    let m = write_model(&dir, "m.onnx", &ext_model("w", loc, None, None, &[4]));
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::Traversal {
            tensor: "w".into(),
            location: loc.into()
        }
    );
    assert_names(&msg, "w", loc);
}

#[test]
fn dotdot_that_stays_inside_the_folder_loads() {
    let (_root, dir) = traversal_setup();
    std::fs::write(dir.join("ok.bin"), f32_bytes(4)).unwrap();
    let m = write_model(
        &dir,
        "m.onnx",
        &ext_model("w", "sub/../ok.bin", None, None, &[4]),
    );
    let model = load_default(&m).unwrap();
    assert_eq!(&tensor_bytes(&model, "w")[..], &f32_bytes(4)[..]);
}

// ---------------------------------------------------------------------------
// Absolute paths
// ---------------------------------------------------------------------------

#[test]
fn absolute_path_is_rejected() {
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "/etc/passwd", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::AbsolutePath {
            tensor: "w".into(),
            location: "/etc/passwd".into()
        }
    );
    assert_names(&msg, "w", "/etc/passwd");
}

#[test]
fn windows_absolute_paths_are_rejected() {
    for loc in [r"C:\x", "C:/x", r"\\server\share\x.bin", r"\x.bin"] {
        let dir = TempDir::new().unwrap();
        let m = write_model(dir.path(), "m.onnx", &ext_model("w", loc, None, None, &[4]));
        let (e, msg) = security_err(&m, &LoadPolicy::default());
        assert_eq!(
            e,
            SecurityError::AbsolutePath {
                tensor: "w".into(),
                location: loc.into()
            },
            "{loc}"
        );
        assert_names(&msg, "w", loc);
    }
}

// ---------------------------------------------------------------------------
// CVE-2024-27318 (bypass of the first fix): symlinks leaving the folder
// ---------------------------------------------------------------------------

#[test]
fn cve_2024_27318_symlinked_directory_outside() {
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.bin"), f32_bytes(4)).unwrap();
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link_dir")).unwrap();
    let loc = "link_dir/secret.bin";
    let m = write_model(dir.path(), "m.onnx", &ext_model("w", loc, None, None, &[4]));
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    let target = outside
        .path()
        .canonicalize()
        .unwrap()
        .join("secret.bin")
        .display()
        .to_string();
    assert_eq!(
        e,
        SecurityError::SymlinkOutside {
            tensor: "w".into(),
            location: loc.into(),
            target: target.clone()
        }
    );
    assert_names(&msg, "w", loc);
    assert!(msg.contains(&target), "{msg}");
}

#[test]
fn cve_2024_27318_symlinked_file_outside() {
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.bin"), f32_bytes(4)).unwrap();
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.bin"),
        dir.path().join("weights.bin"),
    )
    .unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert!(
        matches!(&e, SecurityError::SymlinkOutside { tensor, location, .. }
            if tensor == "w" && location == "weights.bin"),
        "{e:?}"
    );
    assert_names(&msg, "w", "weights.bin");
}

#[test]
fn symlink_to_a_file_inside_the_folder_loads() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/real.bin"), f32_bytes(4)).unwrap();
    std::os::unix::fs::symlink("data/real.bin", dir.path().join("weights.bin")).unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", Some(0), Some(16), &[4]),
    );
    let model = load_default(&m).unwrap();
    assert_eq!(&tensor_bytes(&model, "w")[..], &f32_bytes(4)[..]);
}

// ---------------------------------------------------------------------------
// Hard links
// ---------------------------------------------------------------------------

#[test]
fn hard_link_is_rejected_unless_allowed() {
    let dir = TempDir::new().unwrap();
    let other = TempDir::new().unwrap();
    let data = dir.path().join("weights.bin");
    std::fs::write(&data, f32_bytes(4)).unwrap();
    std::fs::hard_link(&data, other.path().join("elsewhere.bin")).unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::HardLink {
            tensor: "w".into(),
            location: "weights.bin".into(),
            links: 2
        }
    );
    assert_names(&msg, "w", "weights.bin");

    let model = modc::load(&m, &LoadPolicy::default().with_hard_links(true)).unwrap();
    assert_eq!(&tensor_bytes(&model, "w")[..], &f32_bytes(4)[..]);
}

// ---------------------------------------------------------------------------
// Non-regular files
// ---------------------------------------------------------------------------

#[test]
fn fifo_is_rejected_without_hanging() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("weights.bin");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", None, None, &[4]),
    );
    // Nobody ever opens the fifo for writing: a blocking open would hang forever.
    let (e, msg) = within(20, move || security_err(&m, &LoadPolicy::default()));
    assert_eq!(
        e,
        SecurityError::NotRegular {
            tensor: "w".into(),
            location: "weights.bin".into(),
            kind: "a fifo".into()
        }
    );
    assert_names(&msg, "w", "weights.bin");
}

#[test]
fn directory_as_location_is_rejected() {
    let dir = TempDir::new().unwrap();
    std::fs::create_dir(dir.path().join("weights")).unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::NotRegular {
            tensor: "w".into(),
            location: "weights".into(),
            kind: "a directory".into()
        }
    );
    assert_names(&msg, "w", "weights");

    // The model's own folder, spelled `.`, is a directory too.
    let m = write_model(
        dir.path(),
        "m2.onnx",
        &ext_model("w", ".", None, None, &[4]),
    );
    let (e, _) = security_err(&m, &LoadPolicy::default());
    assert!(matches!(e, SecurityError::NotRegular { .. }), "{e:?}");
}

#[test]
fn dev_zero_through_a_symlink_is_rejected() {
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.bin")).unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "zero.bin", Some(0), Some(16), &[4]),
    );
    let (e, msg) = within(20, move || security_err(&m, &LoadPolicy::default()));
    assert_eq!(
        e,
        SecurityError::SymlinkOutside {
            tensor: "w".into(),
            location: "zero.bin".into(),
            target: "/dev/zero".into()
        }
    );
    assert_names(&msg, "w", "zero.bin");
}

#[test]
fn missing_data_file_is_an_open_error_naming_the_tensor() {
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "nope.bin", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert!(
        matches!(&e, SecurityError::Open { tensor, location, .. }
            if tensor == "w" && location == "nope.bin"),
        "{e:?}"
    );
    assert_names(&msg, "w", "nope.bin");
}

// ---------------------------------------------------------------------------
// Offsets and lengths
// ---------------------------------------------------------------------------

/// A folder with `weights.bin` of `n` f32 values (4n bytes).
fn data_dir(n: usize) -> TempDir {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("weights.bin"), f32_bytes(n)).unwrap();
    dir
}

fn assert_bad_range(m: &Path, tensor: &str, location: &str, needle: &str) {
    let (e, msg) = security_err(m, &LoadPolicy::default());
    match &e {
        SecurityError::BadRange {
            tensor: t,
            location: l,
            message,
        } => {
            assert_eq!((t.as_str(), l.as_str()), (tensor, location));
            assert!(message.contains(needle), "'{needle}' not in: {message}");
        }
        other => panic!("expected BadRange, got {other:?}"),
    }
    assert_names(&msg, tensor, location);
}

#[test]
fn offset_past_end_of_file() {
    let dir = data_dir(4); // 16 bytes
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", Some(32), None, &[4]),
    );
    assert_bad_range(&m, "w", "weights.bin", "offset 32 is past the end");
}

#[test]
fn offset_plus_length_past_end_of_file() {
    let dir = data_dir(4); // 16 bytes
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", Some(8), Some(16), &[4]),
    );
    assert_bad_range(&m, "w", "weights.bin", "past the end");
}

#[test]
fn offset_plus_length_overflowing_u64() {
    let dir = data_dir(4);
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", Some(8), Some(u64::MAX), &[4]),
    );
    assert_bad_range(&m, "w", "weights.bin", "past the end");
}

#[test]
fn length_not_matching_dtype_and_shape() {
    let dir = data_dir(8); // 32 bytes; f32[4] needs 16
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", Some(0), Some(32), &[4]),
    );
    assert_bad_range(&m, "w", "weights.bin", "does not match");

    // Without a length the rest of the file is used, and must match too.
    let m = write_model(
        dir.path(),
        "m2.onnx",
        &ext_model("w", "weights.bin", Some(4), None, &[4]),
    );
    assert_bad_range(&m, "w", "weights.bin", "length 28 does not match");
}

#[test]
fn non_numeric_offset_and_length() {
    let dir = data_dir(4);
    for (o, l, key) in [
        (Some("abc"), None, "offset 'abc'"),
        (Some("-1"), None, "offset '-1'"),
        (Some("0"), Some("0x10"), "length '0x10'"),
    ] {
        let m = write_model(
            dir.path(),
            "m.onnx",
            &model_with(vec![ext_tensor("w", "weights.bin", o, l, &[4])]),
        );
        assert_bad_range(&m, "w", "weights.bin", key);
    }
}

#[test]
fn huge_dims_overflowing_element_count_rejected_before_allocation() {
    // The data file does not even exist: the size check comes before any file access.
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "absent.bin", None, None, &[1 << 40, 1 << 40]),
    );
    let start = Instant::now();
    let err = load_default(&m).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    let msg = err.to_string();
    assert!(
        matches!(&err, OnnxError::Invalid { .. }),
        "expected Invalid, got {err:?}"
    );
    assert!(
        msg.contains("tensor 'w'") && msg.contains("overflow"),
        "{msg}"
    );
}

#[test]
fn huge_dims_overflowing_byte_size_rejected_before_allocation() {
    // 2^60 f32 elements fit in u64, their 2^65 bits do not.
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "absent.bin", None, None, &[1 << 30, 1 << 30]),
    );
    let start = Instant::now();
    let err = load_default(&m).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_overflow_invalid(&err);

    // The same dims with a tiny inline raw_data must not load either.
    let mut t = TensorProto {
        name: Some("w".into()),
        data_type: Some(FLOAT),
        dims: vec![1 << 30, 1 << 30],
        raw_data: Some(Bytes::from(f32_bytes(1))),
        ..Default::default()
    };
    let m = write_model(dir.path(), "inline.onnx", &model_with(vec![t.clone()]));
    assert_overflow_invalid(&load_default(&m).unwrap_err());

    // ... nor with no data at all.
    t.raw_data = None;
    let m = write_model(dir.path(), "nodata.onnx", &model_with(vec![t]));
    assert_overflow_invalid(&load_default(&m).unwrap_err());
}

fn assert_overflow_invalid(err: &OnnxError) {
    let msg = err.to_string();
    assert!(
        matches!(err, OnnxError::Invalid { .. }),
        "expected Invalid, got {err:?}"
    );
    assert!(
        msg.contains("tensor 'w'") && msg.contains("overflows"),
        "{msg}"
    );
}

#[test]
fn tensor_over_max_tensor_bytes_rejected_before_file_access() {
    // 2^58 f32 = 2^60 bytes, over the 64 GiB default; the file does not exist.
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "absent.bin", None, None, &[1 << 29, 1 << 29]),
    );
    let start = Instant::now();
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        e,
        SecurityError::TensorTooLarge {
            tensor: "w".into(),
            bytes: 1 << 60,
            limit: 64 << 30
        }
    );
    assert!(msg.contains("tensor 'w'"), "{msg}");

    // A lowered limit applies to small tensors too.
    let dir = data_dir(4);
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", None, None, &[4]),
    );
    let (e, _) = security_err(&m, &LoadPolicy::default().with_max_tensor_bytes(8));
    assert_eq!(
        e,
        SecurityError::TensorTooLarge {
            tensor: "w".into(),
            bytes: 16,
            limit: 8
        }
    );
}

// ---------------------------------------------------------------------------
// Network
// ---------------------------------------------------------------------------

#[test]
fn url_location_is_rejected_naming_the_host() {
    let dir = TempDir::new().unwrap();
    let loc = "http://example.com/w.bin";
    let m = write_model(dir.path(), "m.onnx", &ext_model("w", loc, None, None, &[4]));
    let start = Instant::now();
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    // No connection, no DNS lookup: the answer is immediate.
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        e,
        SecurityError::Network {
            tensor: "w".into(),
            location: loc.into(),
            host: "example.com".into()
        }
    );
    assert_names(&msg, "w", loc);
    assert!(msg.contains("'example.com'"), "{msg}");

    let loc = "https://example.com:8443/w.bin?x=1";
    let m = write_model(
        dir.path(),
        "m2.onnx",
        &ext_model("w", loc, None, None, &[4]),
    );
    let (e, _) = security_err(&m, &LoadPolicy::default());
    assert!(
        matches!(&e, SecurityError::Network { host, .. } if host == "example.com"),
        "{e:?}"
    );

    // Even an allowed host is never fetched.
    let policy = LoadPolicy {
        allowed_hosts: vec!["example.com".into()],
        ..LoadPolicy::default()
    };
    let (e, _) = security_err(&m, &policy);
    assert!(
        matches!(&e, SecurityError::Open { message, .. } if message.contains("not supported")),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------
// Graph limits
// ---------------------------------------------------------------------------

#[test]
fn too_many_nodes() {
    let dir = TempDir::new().unwrap();
    let x = "x";
    let mut nodes = Vec::new();
    let mut prev = x.to_string();
    for i in 0..11 {
        let out = format!("v{i}");
        nodes.push(identity(&format!("n{i}"), &prev, &out));
        prev = out;
    }
    let m = ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("main".into()),
            node: nodes,
            input: vec![f32_value_info(x, &[4])],
            output: vec![f32_value_info(&prev, &[4])],
            ..Default::default()
        }),
        ..Default::default()
    };
    let m = write_model(dir.path(), "m.onnx", &m);
    let (e, msg) = security_err(&m, &LoadPolicy::default().with_max_nodes(10));
    assert_eq!(e, SecurityError::TooManyNodes { limit: 10 });
    assert!(msg.contains("more than 10 nodes"), "{msg}");
    // 11 nodes are fine under a limit of 11.
    load_default(&m).unwrap();
    modc::load(&m, &LoadPolicy::default().with_max_nodes(11)).unwrap();
}

/// An `If` node whose branches are `body` (then) and an Identity of `c` (else).
fn if_node(name: &str, body: GraphProto) -> NodeProto {
    let else_branch = GraphProto {
        name: Some(format!("{name}_else")),
        node: vec![identity(
            &format!("{name}_else_id"),
            "c",
            &format!("{name}_eo"),
        )],
        output: vec![ValueInfoProto {
            name: Some(format!("{name}_eo")),
            ..Default::default()
        }],
        ..Default::default()
    };
    let graph_attr = |n: &str, g: GraphProto| AttributeProto {
        name: Some(n.into()),
        r#type: Some(AttributeType::Graph as i32),
        g: Some(g),
        ..Default::default()
    };
    NodeProto {
        name: Some(name.into()),
        op_type: Some("If".into()),
        input: vec!["c".into()],
        output: vec![format!("{name}_out")],
        attribute: vec![
            graph_attr("then_branch", body),
            graph_attr("else_branch", else_branch),
        ],
        ..Default::default()
    }
}

/// A model with `levels` nested If subgraphs: depth 1 ... `levels`.
fn nested_if_model(levels: usize) -> ModelProto {
    // Innermost graph: just forwards the outer `c`.
    let mut body = GraphProto {
        name: Some(format!("level{levels}")),
        node: vec![identity("leaf", "c", "leaf_out")],
        output: vec![ValueInfoProto {
            name: Some("leaf_out".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    for level in (1..levels).rev() {
        let inner = if_node(&format!("if{}", level + 1), body);
        let out = inner.output[0].clone();
        body = GraphProto {
            name: Some(format!("level{level}")),
            node: vec![inner],
            output: vec![ValueInfoProto {
                name: Some(out),
                ..Default::default()
            }],
            ..Default::default()
        };
    }
    let top = if_node("if1", body);
    let out = top.output[0].clone();
    ModelProto {
        ir_version: Some(10),
        opset_import: vec![OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(17),
        }],
        graph: Some(GraphProto {
            name: Some("main".into()),
            node: vec![top],
            input: vec![ValueInfoProto {
                name: Some("c".into()),
                ..Default::default()
            }],
            output: vec![ValueInfoProto {
                name: Some(out),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn subgraphs_nested_too_deep() {
    let dir = TempDir::new().unwrap();
    let policy = LoadPolicy::default().with_max_subgraph_depth(2);
    // Two levels: allowed.
    let ok = write_model(dir.path(), "ok.onnx", &nested_if_model(2));
    modc::load(&ok, &policy).unwrap();
    // Three levels: over the limit.
    let m = write_model(dir.path(), "m.onnx", &nested_if_model(3));
    let (e, msg) = security_err(&m, &policy);
    assert_eq!(
        e,
        SecurityError::TooDeep {
            graph: "level3".into(),
            depth: 3,
            limit: 2
        }
    );
    assert!(msg.contains("graph 'level3'"), "{msg}");
    load_default(&m).unwrap();
}

// ---------------------------------------------------------------------------
// Inline data
// ---------------------------------------------------------------------------

#[test]
fn inline_raw_data_length_mismatch() {
    let dir = TempDir::new().unwrap();
    let t = TensorProto {
        name: Some("w".into()),
        data_type: Some(FLOAT),
        dims: vec![4],
        raw_data: Some(Bytes::from(f32_bytes(3))), // 12 bytes, f32[4] needs 16
        ..Default::default()
    };
    let m = write_model(dir.path(), "m.onnx", &model_with(vec![t]));
    let err = load_default(&m).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, OnnxError::Invalid { path, .. } if path == &m),
        "expected Invalid, got {err:?}"
    );
    assert!(msg.contains("tensor 'w'"), "{msg}");
    assert!(msg.contains("12 bytes") && msg.contains("16"), "{msg}");
}

// ---------------------------------------------------------------------------
// A valid model: load, save with and without external data, reload
// ---------------------------------------------------------------------------

#[test]
fn valid_external_data_round_trip() {
    let src = TempDir::new().unwrap();
    // Two tensors in one file: w0 = f32[4] at 0, w1 = f32[2,3] at 64.
    let mut data = f32_bytes(4);
    data.resize(64, 0);
    data.extend(f32_bytes(6));
    std::fs::write(src.path().join("weights.bin"), &data).unwrap();
    let m = model_with(vec![
        ext_tensor("w0", "weights.bin", Some("0"), Some("16"), &[4]),
        ext_tensor("w1", "./weights.bin", Some("64"), None, &[2, 3]),
    ]);
    let path = write_model(src.path(), "model.onnx", &m);
    let model = load_default(&path).unwrap();
    let w0 = tensor_bytes(&model, "w0");
    let w1 = tensor_bytes(&model, "w1");
    assert_eq!(&w0[..], &f32_bytes(4)[..]);
    assert_eq!(&w1[..], &f32_bytes(6)[..]);

    // Saved with every initializer external.
    let out = TempDir::new().unwrap();
    let saved = out.path().join("out.onnx");
    let opts = SaveOptions {
        external_data_threshold: Some(0),
        ..Default::default()
    };
    let report = modc::save(&model, &saved, &opts).unwrap();
    let data_path = out.path().join("out.onnx.data");
    assert!(data_path.is_file());
    assert_eq!(report.external_file.as_deref(), Some(data_path.as_path()));
    assert_eq!(report.external_tensors, 2);
    let proto = ModelProto::decode(&std::fs::read(&saved).unwrap()[..]).unwrap();
    for t in &proto.graph.as_ref().unwrap().initializer {
        assert_eq!(t.data_location, Some(DataLocation::External as i32));
        assert!(t.raw_data.is_none());
        assert!(t
            .external_data
            .iter()
            .any(|e| e.key.as_deref() == Some("location")
                && e.value.as_deref() == Some("out.onnx.data")));
    }
    let again = load_default(&saved).unwrap();
    assert_eq!(tensor_bytes(&again, "w0"), w0);
    assert_eq!(tensor_bytes(&again, "w1"), w1);

    // Saved with no threshold: everything inline, no data file.
    let out2 = TempDir::new().unwrap();
    let inline = out2.path().join("inline.onnx");
    let report = modc::save(&again, &inline, &SaveOptions::default()).unwrap();
    assert_eq!(report.external_file, None);
    let files: Vec<_> = std::fs::read_dir(out2.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec![std::ffi::OsString::from("inline.onnx")]);
    let proto = ModelProto::decode(&std::fs::read(&inline).unwrap()[..]).unwrap();
    for t in &proto.graph.as_ref().unwrap().initializer {
        assert_ne!(t.data_location, Some(DataLocation::External as i32));
        assert!(t.external_data.is_empty());
        assert!(t.raw_data.is_some());
    }
    let third = load_default(&inline).unwrap();
    assert_eq!(tensor_bytes(&third, "w0"), w0);
    assert_eq!(tensor_bytes(&third, "w1"), w1);
}

// ---------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------

fn modc_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_modc"));
    c.env_remove("MODC_LOG").env_remove("RUST_BACKTRACE");
    c
}

/// Runs `modc inspect` on a rejected model and checks the one-line error.
fn assert_cli_rejects(model: &Path, tensor: &str, location: &str) -> String {
    let out = modc_cmd().arg("inspect").arg(model).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.ends_with('\n'));
    assert!(stderr.starts_with("modc: error: "), "{stderr}");
    assert_names(&stderr, tensor, location);
    stderr
}

#[test]
fn cli_inspect_traversal_is_one_line_error() {
    let (_root, dir) = traversal_setup();
    let m = write_model(
        &dir,
        "m.onnx",
        &ext_model("w", "../secret.bin", None, None, &[4]),
    );
    let err = assert_cli_rejects(&m, "w", "../secret.bin");
    assert!(err.contains("leaves the model's folder"), "{err}");
}

#[test]
fn cli_inspect_fifo_is_one_line_error() {
    let dir = TempDir::new().unwrap();
    let fifo = dir.path().join("weights.bin");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "weights.bin", None, None, &[4]),
    );
    let err = within(30, move || assert_cli_rejects(&m, "w", "weights.bin"));
    assert!(err.contains("a fifo"), "{err}");
}

#[test]
fn cli_inspect_network_is_one_line_error() {
    let dir = TempDir::new().unwrap();
    let loc = "http://example.com/w.bin";
    let m = write_model(dir.path(), "m.onnx", &ext_model("w", loc, None, None, &[4]));
    let err = assert_cli_rejects(&m, "w", loc);
    assert!(err.contains("'example.com'"), "{err}");
}

#[test]
fn cli_convert_rejected_model_writes_nothing() {
    let outside = TempDir::new().unwrap();
    std::fs::write(outside.path().join("secret.bin"), f32_bytes(4)).unwrap();
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("link_dir")).unwrap();
    let bad = write_model(
        dir.path(),
        "bad.onnx",
        &ext_model("w", "link_dir/secret.bin", None, None, &[4]),
    );
    let out_dir = TempDir::new().unwrap();
    let out = out_dir.path().join("out.onnx");
    let res = modc_cmd()
        .arg("convert")
        .arg(&bad)
        .arg("-o")
        .arg(&out)
        .args(["--external-data-threshold", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert_eq!(res.status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("modc: error: "), "{stderr}");
    assert_names(&stderr, "w", "link_dir/secret.bin");
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "files left in the output folder: {left:?}");
    // The input folder is untouched too.
    let mut inputs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    inputs.sort();
    assert_eq!(inputs, vec!["bad.onnx", "link_dir"]);
}

#[test]
fn file_url_is_rejected_as_an_absolute_path() {
    let dir = TempDir::new().unwrap();
    let m = write_model(
        dir.path(),
        "m.onnx",
        &ext_model("w", "file:///etc/passwd", None, None, &[4]),
    );
    let (e, msg) = security_err(&m, &LoadPolicy::default());
    assert_eq!(
        e,
        SecurityError::AbsolutePath {
            tensor: "w".into(),
            location: "file:///etc/passwd".into()
        }
    );
    assert_names(&msg, "w", "file:///etc/passwd");
}
