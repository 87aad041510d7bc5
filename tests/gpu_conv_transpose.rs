//! The GPU kernel for ConvTranspose (`kernels/conv_transpose.wgsl`), checked
//! against the reference interpreter on small shapes: 1-D to 3-D, strides,
//! dilations, pads, output_padding, groups, bias, auto_pad and output_shape.
//!
//! Every case first lowers its node and validates the generated shader with naga
//! (no GPU needed); then, when a device is found (`modc::runtime::test_device`,
//! which fails instead of skipping under `MODC_REQUIRE_GPU=1`), runs the kernel
//! and compares with the interpreter's outputs.

#[path = "common/linalg_case.rs"]
mod linalg_case;
use linalg_case::*;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::TensorValue;

/// `check` over x, w and optionally a bias, expecting the one gather dispatch.
fn ct(attrs: &str, x: &[usize], w: &[usize], bias: bool, seed: u64) {
    let mut inputs = vec![Some(f32s(x, seed)), Some(f32s(w, seed + 1))];
    if bias {
        inputs.push(Some(f32s(&[w[1] * group_of(attrs)], seed + 2)));
    }
    let labels = check("ConvTranspose", attrs, &inputs, 1);
    assert_eq!(labels, ["conv_transpose"], "{attrs}");
}

fn group_of(attrs: &str) -> usize {
    attrs
        .split("group=")
        .nth(1)
        .map(|s| {
            s.chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap()
        })
        .unwrap_or(1)
}

#[test]
fn conv_transpose_2d() {
    for a in [
        "",
        "strides=[2, 2]",
        "strides=[2, 2], pads=[1, 1, 1, 1]",
        "strides=[3, 2], pads=[1, 0, 2, 1], output_padding=[1, 1]",
        "dilations=[2, 1], pads=[1, 1, 0, 2]",
        "strides=[2, 2], dilations=[2, 2], output_padding=[1, 0]",
        "auto_pad=\"SAME_UPPER\", strides=[2, 2]",
        "auto_pad=\"SAME_LOWER\", strides=[2, 3]",
        "auto_pad=\"VALID\", strides=[2, 1]",
        "strides=[2, 2], output_shape=[10, 8]",
        "strides=[3, 2], output_shape=[1, 4, 15, 11]",
        "strides=[2, 2], pads=[1, 1, 0, 0], output_shape=[12, 7]",
        "auto_pad=\"SAME_UPPER\", strides=[2, 2], output_shape=[9, 9]",
        "auto_pad=\"SAME_LOWER\", strides=[2, 2], output_shape=[9, 9]",
        "auto_pad=\"VALID\", strides=[2, 2], output_shape=[10, 10]",
        "kernel_shape=[3, 3], strides=[2, 2]",
    ] {
        ct(a, &[2, 3, 5, 4], &[3, 4, 3, 3], true, 1);
        ct(a, &[2, 3, 5, 4], &[3, 4, 3, 3], false, 4);
    }
}

#[test]
fn conv_transpose_groups() {
    ct(
        "group=2, strides=[2, 2], pads=[1, 1, 1, 1]",
        &[1, 4, 6, 5],
        &[4, 3, 3, 3],
        true,
        7,
    );
    ct(
        "group=3, strides=[2, 1]",
        &[2, 6, 4, 4],
        &[6, 1, 2, 3],
        true,
        8,
    );
    // Depthwise (as in a learned upsampling).
    ct(
        "group=4, strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1]",
        &[1, 4, 5, 5],
        &[4, 1, 4, 4],
        false,
        9,
    );
}

#[test]
fn conv_transpose_1d_3d() {
    for a in [
        "",
        "strides=[3], pads=[1, 2]",
        "strides=[2], dilations=[3], output_padding=[1]",
        "auto_pad=\"SAME_UPPER\", strides=[2]",
        "group=2, strides=[2]",
    ] {
        ct(a, &[2, 4, 7], &[4, 3, 4], true, 10);
    }
    for a in [
        "",
        "strides=[2, 1, 2], pads=[1, 0, 1, 0, 1, 1]",
        "strides=[1, 2, 2], dilations=[2, 1, 1], output_padding=[0, 1, 1]",
        "group=2, strides=[2, 2, 2]",
    ] {
        ct(a, &[1, 2, 3, 4, 3], &[2, 3, 2, 3, 2], true, 11);
    }
}

#[test]
fn conv_transpose_large_channels() {
    // Many channels and a grid of several workgroups, as in a detection head.
    ct(
        "strides=[2, 2]",
        &[1, 24, 12, 40],
        &[24, 24, 2, 2],
        true,
        12,
    );
    ct(
        "strides=[2, 2], pads=[1, 1, 1, 1]",
        &[1, 16, 24, 80],
        &[16, 8, 4, 4],
        true,
        13,
    );
}

#[test]
fn conv_transpose_unsupported() {
    // f64 is not lowered.
    let x = TensorValue::F64(ndarray::ArrayD::zeros(vec![1, 1, 3, 3]));
    let w = TensorValue::F64(ndarray::ArrayD::zeros(vec![1, 1, 2, 2]));
    let model = modc::parse_model(
        "opset _=19\ngraph @g(%x: f64[1,1,3,3], %w: f64[1,1,2,2]) -> (%y) {\n  %y = ConvTranspose(%x, %w)\n  return %y\n}\n",
    )
    .unwrap();
    let (_, node) = model.graph.nodes().next().unwrap();
    let info = NodeInfo {
        node,
        opset: 19,
        inputs: vec![
            Some(TensorDesc::new(x.dtype(), x.shape())),
            Some(TensorDesc::new(w.dtype(), w.shape())),
        ],
        outputs: vec![TensorDesc::new(x.dtype(), &[1, 1, 4, 4])],
        consts: vec![None, None],
        limits: DeviceLimits::default(),
    };
    assert!(matches!(lower(&info), Lowering::Unsupported(_)));
}
