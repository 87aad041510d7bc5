//! RNN, GRU and LSTM kernels (`codegen/nn/rnn.rs`) against the reference
//! interpreter.
//!
//! Each case is one node on small odd shapes (the silero-vad LSTM at its real
//! size once). Every shader is validated with naga (no GPU needed); where a
//! device is found (`modc::runtime::test_device`, lavapipe on CI) the kernels run
//! and every output is compared with the interpreter's within rtol 1e-4 /
//! atol 1e-5. `MODC_REQUIRE_GPU=1` turns a missing device into a failure.

#[path = "common/node_case.rs"]
mod node_case;
use modc::codegen::{lower, DeviceLimits, Lowering, NodeInfo, TensorDesc};
use modc::TensorValue;
use node_case::*;

/// Deterministic values in [-2k, 2k).
fn scaled(shape: &[usize], seed: u32, k: f32) -> TensorValue {
    match data(shape, seed) {
        TensorValue::F32(a) => TensorValue::F32(a.mapv(|v| v * k)),
        t => t,
    }
}

/// An int32 `sequence_lens`, as ONNX declares it.
fn lens(v: &[i32]) -> TensorValue {
    TensorValue::I32(
        ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[v.len()]), v.to_vec()).unwrap(),
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Rnn,
    Gru,
    Lstm,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Rnn => "RNN",
            Op::Gru => "GRU",
            Op::Lstm => "LSTM",
        }
    }
    fn gates(self) -> usize {
        match self {
            Op::Rnn => 1,
            Op::Gru => 3,
            Op::Lstm => 4,
        }
    }
}

/// What a case feeds the node.
#[derive(Clone)]
struct Spec {
    op: Op,
    direction: &'static str,
    seq: usize,
    batch: usize,
    input: usize,
    hidden: usize,
    layout: i64,
    bias: bool,
    seq_lens: Option<Vec<i32>>,
    initial: bool,
    peepholes: bool,
}

fn spec(op: Op, direction: &'static str, seq: usize) -> Spec {
    Spec {
        op,
        direction,
        seq,
        batch: 3,
        input: 5,
        hidden: 7,
        layout: 0,
        bias: false,
        seq_lens: None,
        initial: false,
        peepholes: false,
    }
}

impl Spec {
    fn dirs(&self) -> usize {
        if self.direction == "bidirectional" {
            2
        } else {
            1
        }
    }
    /// The case with every output used.
    fn case(&self) -> Case {
        let (s, b, i, h, d) = (self.seq, self.batch, self.input, self.hidden, self.dirs());
        let gh = self.op.gates() * h;
        let x = if self.layout == 0 {
            [s, b, i]
        } else {
            [b, s, i]
        };
        let state = if self.layout == 0 {
            [d, b, h]
        } else {
            [b, d, h]
        };
        // Weights scaled so the gates are neither all saturated nor all linear.
        let w = 0.6 / (i as f32).sqrt();
        let r = 0.6 / (h as f32).sqrt();
        let mut inputs = vec![
            Some(scaled(&x, 1, 0.5)),
            Some(scaled(&[d, gh, i], 2, w)),
            Some(scaled(&[d, gh, h], 3, r)),
            self.bias.then(|| scaled(&[d, 2 * gh], 4, 0.3)),
            self.seq_lens.as_ref().map(|l| lens(l)),
            self.initial.then(|| scaled(&state, 5, 0.5)),
        ];
        if self.op == Op::Lstm {
            inputs.push(self.initial.then(|| scaled(&state, 6, 0.5)));
            inputs.push(self.peepholes.then(|| scaled(&[d, 3 * h], 7, 0.4)));
        }
        while inputs.last().is_some_and(|t| t.is_none()) {
            inputs.pop();
        }
        let outputs = if self.op == Op::Lstm { 3 } else { 2 };
        let mut c = case(self.op.name(), 14, inputs)
            .outputs(outputs)
            .int("hidden_size", h as i64)
            .string("direction", self.direction);
        if self.layout != 0 {
            c = c.int("layout", self.layout);
        }
        c
    }
}

fn check(c: Case) -> Vec<String> {
    check_with(c, DeviceLimits::default()).expect("recurrent ops are kernels, not aliases")
}

const DIRECTIONS: [&str; 3] = ["forward", "reverse", "bidirectional"];

#[test]
fn lstm_directions_and_sequence_lengths_with_bias_and_initial_states() {
    for direction in DIRECTIONS {
        for seq in [1, 5] {
            let labels = check(
                Spec {
                    bias: true,
                    initial: true,
                    ..spec(Op::Lstm, direction, seq)
                }
                .case(),
            );
            assert_eq!(labels, ["rnn_project", "lstm_step"]);
        }
    }
}

#[test]
fn lstm_without_optional_inputs() {
    for direction in DIRECTIONS {
        check(spec(Op::Lstm, direction, 5).case());
    }
    // Only Y.
    check(spec(Op::Lstm, "forward", 4).case().outputs(1));
}

#[test]
fn lstm_sequence_lens_and_peepholes() {
    for direction in DIRECTIONS {
        check(
            Spec {
                bias: true,
                initial: true,
                peepholes: true,
                seq_lens: Some(vec![5, 2, 0]),
                ..spec(Op::Lstm, direction, 5)
            }
            .case(),
        );
    }
    // Peepholes alone.
    check(
        Spec {
            peepholes: true,
            ..spec(Op::Lstm, "forward", 3)
        }
        .case(),
    );
}

#[test]
fn lstm_layout_1() {
    for direction in DIRECTIONS {
        for seq_lens in [None, Some(vec![4, 1, 3])] {
            check(
                Spec {
                    layout: 1,
                    bias: true,
                    initial: true,
                    seq_lens,
                    ..spec(Op::Lstm, direction, 4)
                }
                .case(),
            );
        }
    }
}

#[test]
fn lstm_clip_input_forget_and_other_activations() {
    let base = Spec {
        bias: true,
        initial: true,
        peepholes: true,
        ..spec(Op::Lstm, "bidirectional", 4)
    };
    check(base.case().float("clip", 0.7).int("input_forget", 1));
    // One list per direction, with alphas and betas consumed in order.
    let acts = [
        "HardSigmoid",
        "Elu",
        "Softplus",
        "Sigmoid",
        "ScaledTanh",
        "LeakyRelu",
    ];
    let mut c = base.case();
    c.attrs.push(modc::Attr::new(
        "activations",
        modc::AttrValue::Strings(acts.iter().map(|a| a.as_bytes().to_vec().into()).collect()),
    ));
    check(
        c.floats_attr("activation_alpha", &[0.3, 0.8, 1.2, 0.05])
            .floats_attr("activation_beta", &[0.4, 0.9]),
    );
}

#[test]
fn gru_linear_before_reset_both_ways() {
    for lbr in [0, 1] {
        for direction in DIRECTIONS {
            for seq in [1, 5] {
                let labels = check(
                    Spec {
                        bias: true,
                        initial: true,
                        ..spec(Op::Gru, direction, seq)
                    }
                    .case()
                    .int("linear_before_reset", lbr),
                );
                assert_eq!(labels, ["rnn_project", "gru_step"]);
            }
        }
        check(
            spec(Op::Gru, "forward", 3)
                .case()
                .int("linear_before_reset", lbr),
        );
        check(
            Spec {
                layout: 1,
                bias: true,
                seq_lens: Some(vec![2, 4, 1]),
                ..spec(Op::Gru, "bidirectional", 4)
            }
            .case()
            .int("linear_before_reset", lbr)
            .float("clip", 0.5),
        );
    }
}

#[test]
fn rnn_directions_layouts_and_activations() {
    for direction in DIRECTIONS {
        for seq in [1, 5] {
            let labels = check(
                Spec {
                    bias: true,
                    initial: true,
                    ..spec(Op::Rnn, direction, seq)
                }
                .case(),
            );
            assert_eq!(labels, ["rnn_project", "rnn_step"]);
        }
    }
    check(spec(Op::Rnn, "forward", 3).case().outputs(1));
    let mut c = Spec {
        layout: 1,
        seq_lens: Some(vec![3, 0, 2]),
        initial: true,
        ..spec(Op::Rnn, "bidirectional", 3)
    }
    .case();
    c.attrs.push(modc::Attr::new(
        "activations",
        modc::AttrValue::Strings(vec![b"Relu".to_vec().into(), b"Softsign".to_vec().into()]),
    ));
    check(c);
}

#[test]
fn silero_vad_lstm() {
    // seq 1, batch 1, input and hidden 128, with B, initial_h and initial_c.
    let labels = check(
        Spec {
            batch: 1,
            input: 128,
            hidden: 128,
            bias: true,
            initial: true,
            ..spec(Op::Lstm, "forward", 1)
        }
        .case(),
    );
    assert_eq!(labels, ["rnn_project", "lstm_step"]);
}

/// Workgroup memory too small for the state: it lives in a scratch buffer.
#[test]
fn state_in_a_storage_buffer_when_workgroup_memory_is_short() {
    let limits = DeviceLimits {
        max_workgroup_storage: 32,
        ..DeviceLimits::default()
    };
    for (op, lbr) in [(Op::Lstm, 0), (Op::Gru, 0), (Op::Gru, 1), (Op::Rnn, 0)] {
        let c = Spec {
            bias: true,
            initial: true,
            seq_lens: Some(vec![4, 2, 3]),
            ..spec(op, "bidirectional", 4)
        }
        .case()
        .int("linear_before_reset", lbr);
        let c = if op == Op::Gru {
            c
        } else {
            without(c, "linear_before_reset")
        };
        let labels = check_with(c, limits).unwrap();
        assert_eq!(
            labels[1],
            format!("{}_step_storage", op.name().to_lowercase())
        );
    }
}

fn without(mut c: Case, attr: &str) -> Case {
    c.attrs.retain(|a| a.name != attr);
    c
}

/// A node whose Y output slot is empty writes only Y_h (and Y_c).
#[test]
fn absent_y_output() {
    for op in [Op::Lstm, Op::Gru] {
        let c = Spec {
            bias: true,
            initial: true,
            ..spec(op, "bidirectional", 3)
        }
        .case();
        let want = reference(&c);
        let (_, mut node) = model(&c);
        node.outputs[0] = None;
        let mut outs: Vec<TensorDesc> = want
            .iter()
            .map(|t| TensorDesc::new(t.dtype(), t.shape()))
            .collect();
        outs[0] = TensorDesc::new(modc::DType::F32, &[0]);
        let info = NodeInfo {
            node: &node,
            opset: c.opset,
            inputs: c
                .inputs
                .iter()
                .map(|t| t.as_ref().map(|t| TensorDesc::new(t.dtype(), t.shape())))
                .collect(),
            outputs: outs.clone(),
            consts: c.inputs.iter().map(|t| t.as_ref()).collect(),
            limits: DeviceLimits::default(),
        };
        let Lowering::Kernels(k) = lower(&info) else {
            panic!("{}: no kernel", op.name())
        };
        for d in &k.dispatches {
            validate(&d.label, &d.wgsl);
            assert!(
                !d.wgsl.contains("var<storage, read_write> y:"),
                "{}",
                d.wgsl
            );
        }
        let Some(gpu) = modc::runtime::test_device() else {
            continue;
        };
        let got = gpu.run_kernels(&k, &c.inputs, &outs).unwrap();
        for k in 1..want.len() {
            compare(&format!("{} output {k}", op.name()), &got[k], &want[k]);
        }
    }
}

#[test]
fn refuses_what_it_cannot_run() {
    // An activation the interpreter does not know.
    let mut c = spec(Op::Rnn, "forward", 2).case();
    c.attrs.push(modc::Attr::new(
        "activations",
        modc::AttrValue::Strings(vec![b"Swish".to_vec().into()]),
    ));
    let outs = [
        TensorDesc::new(modc::DType::F32, &[2, 1, 3, 7]),
        TensorDesc::new(modc::DType::F32, &[1, 3, 7]),
    ];
    match lowered(&c, &outs, DeviceLimits::default()) {
        Lowering::Unsupported(r) => assert!(r.contains("swish"), "{r}"),
        other => panic!("{other:?}"),
    }
    // A direction that does not match W and R.
    let c = spec(Op::Rnn, "forward", 2).case();
    let c = without(c, "direction").string("direction", "bidirectional");
    match lowered(&c, &outs, DeviceLimits::default()) {
        Lowering::Unsupported(r) => assert!(r.contains("direction"), "{r}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn empty_sequence_gives_the_initial_state() {
    for op in [Op::Lstm, Op::Gru, Op::Rnn] {
        check(
            Spec {
                bias: true,
                initial: true,
                ..spec(op, "bidirectional", 0)
            }
            .case(),
        );
    }
}
