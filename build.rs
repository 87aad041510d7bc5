//! Generates the ONNX protobuf types with prost from `proto/onnx/onnx-ml.proto` and
//! `proto/onnx/onnx-data.proto` (sequences, maps and optionals of test data).
//!
//! The schema is compiled by `protox` (a protobuf compiler written in Rust), so no
//! system `protoc` is needed. Every `bytes` field becomes `bytes::Bytes`, which lets
//! the loader decode a memory-mapped file without copying tensor payloads.

fn main() {
    let protos = ["proto/onnx/onnx-ml.proto", "proto/onnx/onnx-data.proto"];
    for p in protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let descriptors =
        protox::compile(protos, ["proto"]).expect("compile the ONNX schema with protox");
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config
        .compile_fds(descriptors)
        .expect("generate Rust code for the ONNX schema");
}
