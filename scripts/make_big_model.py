#!/usr/bin/env python3
"""Write two large ONNX models for memory measurements.

Usage:
    python3 scripts/make_big_model.py OUT_DIR [--gib 1.0] [--no-check]

Writes, each with about GIB GiB of float32 weights in 16 equal initializers:
  OUT_DIR/big_inline.onnx                      weights inline (raw_data); must stay < 2 GiB
  OUT_DIR/big_external.onnx (+ .onnx.data)     the same weights as external data,
                                               location relative to the model, 4 KiB aligned

Graph: Y = ((X + W0) + W1) + ... + W15, X/Y/Wi float32 of shape [rows, 1024].
The external model is written one tensor at a time, so only one tensor is
held in memory; the inline one needs the whole model proto (fine below 2 GiB).
Both are checked with onnx.checker.check_model(path) unless --no-check.
Dependencies: onnx, numpy.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper

N_WEIGHTS = 16
COLS = 1024
ALIGN = 4096
PROTOBUF_LIMIT = 2**31 - 1
OPSET = 17
IR_VERSION = 8


def weight(i: int, rows: int) -> np.ndarray:
    """Cheap, non-constant values (so nothing can be special-cased as zeros)."""
    a = (np.arange(rows * COLS, dtype=np.uint32) % 251).astype(np.float32)
    a *= np.float32(1.0 / 1024)
    a += np.float32(i)
    return a.reshape(rows, COLS)


def make_graph(rows: int, initializers: list[TensorProto]) -> onnx.GraphProto:
    nodes = []
    prev = "X"
    for i in range(N_WEIGHTS):
        out = "Y" if i == N_WEIGHTS - 1 else f"h{i}"
        nodes.append(helper.make_node("Add", [prev, f"W{i}"], [out], name=f"add{i}"))
        prev = out
    return helper.make_graph(
        nodes, "big",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [rows, COLS])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [rows, COLS])],
        initializer=initializers,
    )


def finish_model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="modc make_big_model.py")
    model.ir_version = IR_VERSION
    return model


def write_inline(path: str, rows: int) -> None:
    model = finish_model(make_graph(rows, []))
    for i in range(N_WEIGHTS):
        t = model.graph.initializer.add()
        t.name = f"W{i}"
        t.data_type = TensorProto.FLOAT
        t.dims.extend([rows, COLS])
        t.raw_data = weight(i, rows).tobytes()
    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise SystemExit(f"error: inline model would be {size} bytes, over the 2 GiB protobuf limit")
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString())
    os.replace(tmp, path)


def write_external(path: str, rows: int) -> None:
    data_name = os.path.basename(path) + ".data"
    data_path = os.path.join(os.path.dirname(path), data_name)
    inits = []
    offset = 0
    with open(data_path + ".tmp", "wb") as f:
        for i in range(N_WEIGHTS):
            pad = (-offset) % ALIGN
            if pad:
                f.write(b"\0" * pad)
                offset += pad
            raw = weight(i, rows).tobytes()
            f.write(raw)
            t = TensorProto(name=f"W{i}", data_type=TensorProto.FLOAT, dims=[rows, COLS],
                            data_location=TensorProto.EXTERNAL)
            for k, v in (("location", data_name), ("offset", str(offset)), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            inits.append(t)
            offset += len(raw)
            del raw
    model = finish_model(make_graph(rows, inits))
    with open(path + ".tmp", "wb") as f:
        f.write(model.SerializeToString())
    os.replace(data_path + ".tmp", data_path)
    os.replace(path + ".tmp", path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--gib", type=float, default=1.0, help="GiB of weights per model (default 1.0)")
    ap.add_argument("--no-check", action="store_true", help="skip onnx.checker.check_model")
    args = ap.parse_args()

    per_tensor = args.gib * 2**30 / N_WEIGHTS
    rows = max(1, int(round(per_tensor / (4 * COLS))))
    os.makedirs(args.out_dir, exist_ok=True)
    total = N_WEIGHTS * rows * COLS * 4
    for name, writer in (("big_external.onnx", write_external), ("big_inline.onnx", write_inline)):
        path = os.path.join(args.out_dir, name)
        t0 = time.monotonic()
        writer(path, rows)
        if not args.no_check:
            onnx.checker.check_model(path)
        size = os.path.getsize(path)
        if os.path.exists(path + ".data"):
            size += os.path.getsize(path + ".data")
        print(f"{path}: {N_WEIGHTS} x [{rows}, {COLS}] float32 = {total / 2**30:.3f} GiB of weights, "
              f"{size / 2**20:.1f} MiB on disk, {time.monotonic() - t0:.1f}s"
              + ("" if args.no_check else ", checker ok"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
