//! Generates the ONNX protobuf types with prost from `proto/onnx-ml.proto`.
//!
//! The schema is compiled by `protox` (a protobuf compiler written in Rust), so no
//! system `protoc` is needed. Every `bytes` field becomes `bytes::Bytes`, which lets
//! the loader decode a memory-mapped file without copying tensor payloads.

fn main() {
    let proto = "proto/onnx-ml.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors =
        protox::compile([proto], ["proto"]).expect("compile onnx-ml.proto with protox");
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config
        .compile_fds(descriptors)
        .expect("generate Rust code for onnx-ml.proto");
}
