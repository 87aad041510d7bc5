#!/usr/bin/env python3
"""Writes src/transform/opset_versions.rs: the version history of ONNX's
default-domain operators, as data for `modc optimize --opset N`.

For every op it lists the opset versions at which the schema changed and what
kind of change each was:

- Added:       the op first appears;
- Compatible:  nothing a model has to change (types added, a constraint relaxed,
               an attribute or optional input added whose default keeps the old
               meaning);
- Convert:     the form or the meaning changed and src/transform/opset_upgrade.rs
               converts the node (attributes that became inputs, changed defaults,
               deprecated ops replaced);
- Unsupported: changed in a way modc does not convert.

A step whose schema differs only in type constraints is classified Compatible
automatically; every other step must be listed in CHANGES below (the script
stops on a step it has no entry for, so a new onnx release is reviewed rather
than guessed). CHANGES also lists steps whose signature did not change but whose
meaning did (ConvTranspose 11, Resize 13, GroupNormalization 21 ...).

The facts come from the ONNX operator schemas (`onnx.defs`), part of ONNX,
which is licensed under the Apache License 2.0.

Usage: python3 scripts/gen_opset_versions.py [--check]
  --check  exits 1 if the generated file differs from the one in the tree.
"""

import collections
import pathlib
import sys

import onnx
import onnx.defs
from onnx import helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "src/transform/opset_versions.rs"

C, V, U = "Compatible", "Convert", "Unsupported"

CONSUMED = "consumed_inputs removed"
BROADCAST = "legacy broadcast/axis attributes removed: NumPy-style broadcasting"

# (op, version) -> (kind, note). The note is shown in errors and in the table.
CHANGES = {}
for op in ["Abs", "Add", "BatchNormalization", "Ceil", "Clip", "Div", "Dropout", "Elu",
           "Exp", "Floor", "HardSigmoid", "InstanceNormalization", "LeakyRelu", "Log",
           "Max", "Mean", "Min", "Mul", "Neg", "PRelu", "Reciprocal", "Relu", "Sigmoid",
           "Sqrt", "Sub", "Sum", "Tanh"]:
    CHANGES[(op, 6)] = (V, CONSUMED)
for op in ["Add", "Sub", "Mul", "Div"]:
    CHANGES[(op, 7)] = (V, BROADCAST)
for op in ["And", "Or", "Xor", "Equal", "Greater", "Less", "Pow"]:
    CHANGES[(op, 7)] = (V, BROADCAST)
for op in ["ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
           "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare"]:
    CHANGES[(op, 18)] = (V, "axes attribute -> input")
for op in ["Softmax", "LogSoftmax", "Hardmax"]:
    CHANGES[(op, 13)] = (V, "no longer coerces the input to 2-D at axis; axis default 1 -> -1")
for op in ["GRU", "LSTM", "RNN"]:
    CHANGES[(op, 7)] = (V, "output_sequence removed")
    CHANGES[(op, 14)] = (C, "layout attribute added (default 0: the old layout)")
CHANGES.update({
    ("ArgMax", 12): (C, "select_last_index added (default 0: the old behaviour)"),
    ("ArgMin", 12): (C, "select_last_index added (default 0: the old behaviour)"),
    ("Attention", 24): (C, "optional nonpad_kv_seqlen input added"),
    ("AveragePool", 7): (C, "count_include_pad added (default 0: the old behaviour)"),
    ("AveragePool", 10): (C, "ceil_mode added (default 0: the old behaviour)"),
    ("AveragePool", 19): (C, "dilations added (default 1)"),
    ("BatchNormalization", 7): (V, "is_test removed"),
    ("BatchNormalization", 9): (V, "spatial removed (spatial=0 is not converted)"),
    ("BatchNormalization", 14): (V, "training outputs replaced by running_mean/var (inference form unchanged)"),
    ("Cast", 6): (V, "'to' is a type code instead of a type name"),
    ("Cast", 19): (C, "saturate added (float8 only)"),
    ("Cast", 24): (C, "round_mode added (float8e8m0 only)"),
    ("CastLike", 19): (C, "saturate added (float8 only)"),
    ("CastLike", 24): (C, "round_mode added (float8e8m0 only)"),
    ("Clip", 6): (V, CONSUMED),
    ("Clip", 11): (V, "min/max attributes -> inputs"),
    ("Concat", 4): (V, "axis required (was 1 by default)"),
    ("Constant", 11): (C, "sparse_value added"),
    ("Constant", 12): (C, "value_* attributes added"),
    ("ConvTranspose", 11): (V, "auto_pad SAME_UPPER/SAME_LOWER split the padding the other way"),
    ("DFT", 20): (V, "axis attribute -> input"),
    ("DepthToSpace", 11): (C, "mode added (default DCR: the old behaviour)"),
    ("DequantizeLinear", 13): (C, "axis added (per-axis scales)"),
    ("DequantizeLinear", 21): (C, "block_size added (default 0)"),
    ("DequantizeLinear", 23): (C, "output_dtype added (default: the scale's type)"),
    ("Dropout", 7): (V, "is_test removed"),
    ("Dropout", 10): (V, "mask output becomes bool"),
    ("Dropout", 12): (V, "ratio attribute -> input; training_mode input added"),
    ("GRU", 3): (C, "linear_before_reset added (default 0); Y_h optional"),
    ("GatherND", 12): (C, "batch_dims added (default 0)"),
    ("Gemm", 7): (V, "broadcast removed: C broadcasts unidirectionally"),
    ("Gemm", 11): (C, "C optional"),
    ("GlobalLpPool", 2): (V, "p is an int instead of a float"),
    ("GridSample", 20): (V, "mode values renamed (bilinear -> linear, bicubic -> cubic)"),
    ("GroupNormalization", 21): (V, "scale and bias per channel instead of per group"),
    ("Loop", 11): (C, "trip count and condition optional"),
    ("LpPool", 2): (V, "p is an int instead of a float"),
    ("LpPool", 18): (C, "ceil_mode and dilations added (defaults: the old behaviour)"),
    ("MaxPool", 8): (C, "storage_order and the Indices output added"),
    ("MaxPool", 22): (C, "types added; ceil_mode windows starting in the right padding are dropped (a clarification)"),
    ("AveragePool", 22): (C, "types added; ceil_mode windows starting in the right padding are dropped (a clarification)"),
    ("MaxPool", 10): (C, "ceil_mode and dilations added (defaults: the old behaviour)"),
    ("OneHot", 11): (C, "negative indices (invalid before) count from the back"),
    ("OptionalHasElement", 18): (C, "input optional"),
    ("PRelu", 7): (V, "slope broadcasts unidirectionally (NumPy-style)"),
    ("Pad", 2): (V, "paddings renamed pads"),
    ("Pad", 11): (V, "pads/value attributes -> inputs"),
    ("Pad", 18): (C, "optional axes input added"),
    ("QuantizeLinear", 13): (C, "axis added (per-axis scales)"),
    ("QuantizeLinear", 19): (C, "saturate added (float8 only)"),
    ("QuantizeLinear", 21): (C, "block_size and output_dtype added (defaults: the old behaviour)"),
    ("QuantizeLinear", 23): (C, "precision added (default: the scale's type)"),
    ("Range", 27): (V, "stash_type added: float16/bfloat16 ranges accumulate in float"),
    ("ReduceSum", 13): (V, "axes attribute -> input"),
    ("Reshape", 5): (V, "shape attribute -> input"),
    ("Reshape", 14): (C, "allowzero added (default 0: the old behaviour)"),
    ("Resize", 11): (V, "roi input and coordinate_transformation_mode added (opset 10 is 'asymmetric')"),
    ("Resize", 13): (V, "roi and scales optional; tf_half_pixel_for_nn removed"),
    ("Resize", 18): (C, "antialias, axes and keep_aspect_ratio_policy added (defaults: the old behaviour)"),
    ("RoiAlign", 16): (V, "coordinate_transformation_mode added (default half_pixel; opset 10 is output_half_pixel)"),
    ("Scan", 9): (U, "the batch axis and sequence_lens input were removed"),
    ("Scatter", 11): (V, "deprecated: replaced by ScatterElements"),
    ("ScatterElements", 16): (C, "reduction added (default none)"),
    ("ScatterND", 16): (C, "reduction added (default none)"),
    ("Selu", 6): (V, "consumed_inputs removed; alpha/gamma defaults changed"),
    ("Shape", 15): (C, "start/end added (defaults: the whole shape)"),
    ("Slice", 10): (V, "starts/ends/axes attributes -> inputs"),
    ("Split", 2): (V, "split input -> attribute"),
    ("Split", 13): (V, "split attribute -> input"),
    ("Split", 18): (V, "num_outputs added; required when split is not given"),
    ("Squeeze", 13): (V, "axes attribute -> input"),
    ("Tile", 6): (U, "tiles/axis inputs replaced by repeats"),
    ("TopK", 10): (V, "k attribute -> input"),
    ("TopK", 11): (C, "largest and sorted added (defaults: the old behaviour)"),
    ("Unsqueeze", 13): (V, "axes attribute -> input"),
    ("Upsample", 7): (V, "height_scale/width_scale -> scales"),
    ("Upsample", 9): (V, "scales attribute -> input"),
    ("Upsample", 10): (V, "deprecated: replaced by Resize"),
})


def schemas():
    ops = collections.defaultdict(dict)
    for s in onnx.defs.get_all_schemas_with_history():
        if s.domain in ("", "ai.onnx"):
            ops[s.name][s.since_version] = s
    return ops


def signature(s):
    attrs = {}
    for n, a in s.attributes.items():
        dv = None
        if a.default_value is not None and a.default_value.name:
            dv = repr(helper.get_attribute_value(a.default_value))
        attrs[n] = (str(a.type), a.required, dv)
    ins = [(i.name, str(i.option)) for i in s.inputs]
    outs = [(o.name, str(o.option)) for o in s.outputs]
    return attrs, ins, outs, (s.min_input, s.max_input, s.min_output, s.max_output)


def allowed_types(s):
    out = set()
    for tc in s.type_constraints:
        out.update(tc.allowed_type_strs)
    for f in list(s.inputs) + list(s.outputs):
        if f.type_str.startswith(("tensor(", "seq(", "optional(")):
            out.add(f.type_str)
    return out


def type_note(a, b):
    added = sorted(allowed_types(b) - allowed_types(a))
    removed = sorted(allowed_types(a) - allowed_types(b))
    short = lambda ts: ", ".join(t.replace("tensor(", "").rstrip(")") for t in ts)
    if added and not removed:
        return "types added: " + short(added)
    if removed:
        return "type constraints changed"
    return "documentation or constraints relaxed"


def min_ir_versions():
    out = {}
    for _, ir, opset, *_ in helper.VERSION_TABLE:
        out.setdefault(opset, ir)
    return out


def generate():
    ops = schemas()
    max_opset = onnx.defs.onnx_opset_version()
    used = set()
    rows = []
    for op in sorted(ops):
        vs = sorted(ops[op])
        steps = [(vs[0], "Added", "")]
        for a, b in zip(vs, vs[1:]):
            key = (op, b)
            if key in CHANGES:
                kind, note = CHANGES[key]
                used.add(key)
            elif signature(ops[op][a]) == signature(ops[op][b]):
                kind, note = C, type_note(ops[op][a], ops[op][b])
            else:
                sys.exit(f"{op} {a} -> {b}: the signature changed; add an entry to CHANGES")
            steps.append((b, kind, note))
        rows.append((op, steps))
    unused = sorted(set(CHANGES) - used)
    if unused:
        sys.exit(f"CHANGES entries for steps that do not exist: {unused}")
    irs = min_ir_versions()
    ir_rows = []
    last = None
    for opset in range(1, max_opset + 1):
        ir = irs.get(opset)
        if ir is None:
            # Opsets the version table skips share the IR version of the next
            # listed opset below; opsets newer than the table take the current IR.
            ir = last if opset <= max(irs) else onnx.IR_VERSION
        last = ir
        ir_rows.append((opset, ir))

    lines = [
        "//! The version history of ONNX's default-domain operators: for each op, the",
        "//! opset versions at which its schema changed and what kind of change it was.",
        "//! [`super::opset_upgrade`] reads it to move a model to a newer opset.",
        "//!",
        f"//! Generated by `scripts/gen_opset_versions.py` from the operator schemas of",
        f"//! onnx {onnx.__version__} (`onnx.defs.get_all_schemas_with_history()`); do not edit",
        "//! by hand. The facts come from the ONNX operator schemas; ONNX is licensed under",
        "//! the Apache License 2.0.",
        "//!",
        "//! ```text",
        '//! ("ReduceSum", &[step(1, Added, ""), step(11, Compatible, "..."), step(13, Convert, "axes attribute -> input")])',
        "//! ```",
        "",
        "/// What changed in an op's schema at one opset version.",
        "#[derive(Clone, Copy, Debug, PartialEq, Eq)]",
        "pub enum Change {",
        "    /// The op first appears.",
        "    Added,",
        "    /// Nothing a model must change: types were added, a constraint relaxed, or an",
        "    /// attribute or optional input added whose default keeps the old meaning.",
        "    Compatible,",
        "    /// The form or the meaning changed; `opset_upgrade` converts the node (or",
        "    /// refuses, naming it, where the node uses what cannot be converted).",
        "    Convert,",
        "    /// Changed in a way modc does not convert.",
        "    Unsupported,",
        "}",
        "",
        "/// One version of an op's schema.",
        "#[derive(Clone, Copy, Debug, PartialEq, Eq)]",
        "pub struct Step {",
        "    pub version: i64,",
        "    pub change: Change,",
        "    /// What changed, in a few words.",
        "    pub note: &'static str,",
        "}",
        "",
        "const fn step(version: i64, change: Change, note: &'static str) -> Step {",
        "    Step {",
        "        version,",
        "        change,",
        "        note,",
        "    }",
        "}",
        "",
        "/// The newest default-domain opset the table knows.",
        f"pub const MAX_OPSET: i64 = {max_opset};",
        "",
        "/// The lowest IR version each opset needs, indexed by opset - 1.",
        "pub const MIN_IR_VERSION: [i64; MAX_OPSET as usize] = [",
    ]
    width = max(len(f"{ir},") for _, ir in ir_rows)
    for opset, ir in ir_rows:
        lines.append(f"    {f'{ir},':<{width}} // opset {opset}")
    lines += [
        "];",
        "",
        "use Change::*;",
        "",
        "/// Every default-domain op, sorted by name, with its schema versions in order.",
        "#[rustfmt::skip]",
        "pub static OPS: &[(&str, &[Step])] = &[",
    ]
    for op, steps in rows:
        parts = ", ".join(f'step({v}, {k}, "{n}")' for v, k, n in steps)
        lines.append(f'    ("{op}", &[{parts}]),')
    lines += ["];", ""]
    return "\n".join(lines)


def main():
    text = generate()
    if "--check" in sys.argv[1:]:
        if OUT.read_text() != text:
            print(f"{OUT} is out of date; run {sys.argv[0]}", file=sys.stderr)
            sys.exit(1)
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
