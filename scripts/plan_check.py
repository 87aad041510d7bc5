#!/usr/bin/env python3
"""Compare modc's memory plan with onnxruntime's arena on the real models.

Usage:
    python3 scripts/plan_check.py --modc target/release/modc [--cache DIR] [--only SUBSTR]...

For every real model fetched by scripts/fetch_testdata.py, with the inputs that
scripts/real_models.py builds (their shapes are passed to `modc plan
--input-shape`):

1. `modc plan MODEL --json`: the arena's peak, the lower bound (the largest sum
   of tensors alive at one step) and their ratio, and the weight bytes (kept
   outside the arena).
2. onnxruntime (CPU, basic graph optimizations, one thread, memory arena and
   memory patterns on, as by default) in a child process with its default
   logger at verbose level, two runs. onnxruntime's BFC arena logs each
   extension ("Extend] Total allocated bytes: N") and each reservation made
   outside the arena's chunks ("Reserve] Reserving memory in BFCArena for Cpu
   size: N", used for initializers). The figures reported are the arena's
   total after two runs and the reserved bytes; the arena total minus the
   reserved bytes is what onnxruntime set aside for everything else
   (activations, and its chunk rounding: the arena grows in chunks of at least
   1 MiB, doubling).

The onnxruntime figure is an allocator's footprint, not a plan's peak: it is
printed next to modc's to put the plan in context, not to be compared to it
as equals. The exit code is 1 when `modc plan` fails or its peak is more than
10% over its lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402  (the inputs and their shapes)

REPO = Path(__file__).resolve().parent.parent

CHILD = r"""
import sys, numpy as np, onnxruntime as ort
ort.set_default_logger_severity(0)
ort.set_default_logger_verbosity(1)
so = ort.SessionOptions()
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
feeds = dict(np.load(sys.argv[2]))
for _ in range(2):
    s.run(None, feeds)
"""


def ort_arena(model: Path, feeds: dict, tmp: Path) -> tuple[int, int]:
    """(arena total bytes, reserved bytes) from onnxruntime's log."""
    npz = tmp / "feeds.npz"
    np.savez(npz, **feeds)
    r = subprocess.run([sys.executable, "-c", CHILD, str(model), str(npz)],
                       capture_output=True, text=True, timeout=600)
    log = r.stdout + r.stderr
    if r.returncode != 0:
        raise RuntimeError(f"onnxruntime failed: {log.strip().splitlines()[-1:]}")
    totals = [int(x) for x in re.findall(r"Total allocated bytes: (\d+)", log)]
    reserved = sum(int(x) for x in re.findall(r"Reserving memory in BFCArena for Cpu size: (\d+)", log))
    return (max(totals) if totals else reserved), reserved


def modc_plan(modc: str, model: Path, feeds: dict) -> dict:
    cmd = [modc, "plan", str(model), "--json"]
    for k, v in feeds.items():
        cmd += ["--input-shape", f"{k}={','.join(str(d) for d in v.shape) or ''}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, MODC_LOG="off"))
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "modc plan failed")
    return json.loads(r.stdout)["memory"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modc", required=True)
    ap.add_argument("--cache", default=os.environ.get("MODC_TESTDATA", str(REPO / "target/modc-testdata")))
    ap.add_argument("--only", action="append", default=[])
    args = ap.parse_args()

    import tempfile
    models = sorted(Path(args.cache, "models").rglob("*.onnx"))
    if args.only:
        models = [m for m in models if any(o in str(m) for o in args.only)]
    if not models:
        print("no models found; run scripts/fetch_testdata.py first")
        return 1
    print(f"{'model':42} {'modc peak':>11} {'lower bound':>11} {'ratio':>6} {'weights':>10}"
          f" {'ort arena':>11} {'ort reserved':>12} {'ort other':>10}")
    bad = 0
    for m in models:
        label = f"{m.parent.name}/{m.name}"
        sess = real_models.ort_session(m)
        feeds = real_models.inputs_for(m, sess)
        try:
            plan = modc_plan(args.modc, m, feeds)
            peak, lb, w = plan["peak"], plan["lower_bound"], plan["weight_bytes"]
            ratio = peak / lb if lb else 1.0
            if ratio > 1.10:
                bad += 1
        except Exception as e:  # noqa: BLE001
            print(f"{label:42} modc plan failed: {e}")
            bad += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            try:
                total, reserved = ort_arena(m, feeds, Path(tmp))
                ort = f"{total:>11,} {reserved:>12,} {total - reserved:>10,}"
            except Exception as e:  # noqa: BLE001
                ort = f"onnxruntime: {e}"
        print(f"{label:42} {peak:>11,} {lb:>11,} {ratio:>6.3f} {w:>10,} {ort}")
    print(f"{len(models) - bad} within 10% of the lower bound, {bad} not")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
