#!/usr/bin/env python3
"""Run the real models on modc's GPU backend and compare with onnxruntime.

Usage:
    python3 scripts/gpu_check.py --modc target/debug/modc [--cache DIR]
        [--only SUBSTR]... [--repeat N] [--adapter NAME] [--require-no-fallback]

For every real model fetched by scripts/fetch_testdata.py, with the inputs that
scripts/real_models.py builds (rendered text for the OCR models, a synthetic
audio frame for silero, source bytes for magika; its functions are imported,
not copied):

1. `modc run MODEL --backend gpu --input ... --output-dir D`, compared with
   onnxruntime (CPU, graph optimizations off, one thread) at rtol 1e-3,
   atol 1e-4 on every output;
2. `modc bench MODEL --backend gpu --json` and `--backend cpu --json`
   (--repeat N timed runs after one warm-up) for the median latencies and the
   number of nodes on the GPU and on the CPU (fallback);
3. onnxruntime's session.run, the median of N runs.

It prints one table: model, GPU nodes / CPU-fallback nodes, max abs diff, and
the three median latencies in ms. The exit code is 1 when an output differs or
a command fails; CPU fallbacks are reported, and are failures only with
--require-no-fallback; with --allow-run-errors a model modc cannot run on the
GPU yet is reported as NOT RUN instead. The last line is `N passed, M failed,
K not run`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_models  # noqa: E402  (the inputs, onnxruntime session and tolerances)


def run_modc(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, MODC_LOG=os.environ.get("MODC_LOG", "off"))
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def last_error(stderr: str) -> str:
    lines = [l for l in stderr.strip().splitlines() if l.strip()]
    errs = [l for l in lines if l.startswith("modc: error:")]
    return (errs or lines or ["(no message)"])[-1]


def compare(expected: list, out_dir: Path) -> tuple[bool, float, str]:
    """(ok, max abs diff over float outputs, why not ok)."""
    worst = 0.0
    for k, e in enumerate(expected):
        e = np.asarray(e)
        p = out_dir / f"output_{k}.npy"
        if not p.exists():
            return False, worst, f"output {k}: not written"
        a = np.load(p)
        if a.shape != e.shape:
            return False, worst, f"output {k}: shape {a.shape}, onnxruntime {e.shape}"
        if e.dtype.kind == "f":
            d = float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))) if e.size else 0.0
            worst = max(worst, d)
            if not np.allclose(a, e, rtol=real_models.RTOL, atol=real_models.ATOL, equal_nan=True):
                return False, worst, f"output {k}: max abs diff {d:.3e}"
        elif not np.array_equal(a, e):
            return False, worst, f"output {k}: values differ"
    return True, worst, ""


def bench(modc: str, model: Path, inputs: list[str], backend: str, repeat: int,
          adapter: str | None, timeout: float) -> dict:
    cmd = [modc, "bench", str(model), "--backend", backend, "--json",
           "--repeat", str(repeat), "--warmup", "1", *inputs]
    if adapter and backend == "gpu":
        cmd += ["--adapter", adapter]
    r = run_modc(cmd, timeout)
    if r.returncode != 0:
        raise RuntimeError(f"modc bench --backend {backend}: {last_error(r.stderr)}")
    return json.loads(r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modc", required=True)
    ap.add_argument("--cache", default=os.environ.get(
        "MODC_TESTDATA", str(real_models.REPO / "target/modc-testdata")))
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per latency (median)")
    ap.add_argument("--adapter", default=None)
    ap.add_argument("--require-no-fallback", action="store_true")
    ap.add_argument("--allow-run-errors", action="store_true",
                    help="a model modc cannot run on the GPU yet is reported as NOT RUN, "
                         "not a failure (outputs that differ still fail)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per modc command")
    args = ap.parse_args()

    models = sorted(Path(args.cache, "models").rglob("*.onnx"))
    if args.only:
        models = [m for m in models if any(o in str(m) for o in args.only)]
    if not models:
        print(f"no real models under {args.cache}/models (run scripts/fetch_testdata.py)")
        return 1
    passed = failed = not_run = 0
    rows = []
    adapter = None
    for m in models:
        label = f"{m.parent.name}/{m.name}"
        sess = real_models.ort_session(m)
        feeds = real_models.inputs_for(m, sess)
        with tempfile.TemporaryDirectory() as tmp:
            inputs = []
            for k, v in feeds.items():
                p = Path(tmp, f"{k}.npy")
                np.save(p, v)
                inputs += ["--input", f"{k}={p}"]
            try:
                cmd = [args.modc, "run", str(m), "--backend", "gpu",
                       "--output-dir", str(Path(tmp, "out")), *inputs]
                if args.adapter:
                    cmd += ["--adapter", args.adapter]
                r = run_modc(cmd, args.timeout)
                if r.returncode != 0 and args.allow_run_errors:
                    not_run += 1
                    print(f"NOT RUN {label}: {last_error(r.stderr)}")
                    continue
                if r.returncode != 0:
                    raise RuntimeError(f"modc run --backend gpu: {last_error(r.stderr)}")
                expected = sess.run(None, feeds)
                ok, worst, why = compare(expected, Path(tmp, "out"))
                g = bench(args.modc, m, inputs, "gpu", args.repeat, args.adapter, args.timeout)
                c = bench(args.modc, m, inputs, "cpu", args.repeat, None, args.timeout)
            except (RuntimeError, subprocess.TimeoutExpired) as e:
                failed += 1
                print(f"FAILED {label}: {e}")
                continue
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            sess.run(None, feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        ort_ms = statistics.median(times)
        if ok and args.require_no_fallback and g["cpu_nodes"]:
            ok, why = False, f"{g['cpu_nodes']} nodes fell back to the CPU"
        if ok:
            passed += 1
            print(f"ok     {label}: max abs diff {worst:.3e}")
        else:
            failed += 1
            print(f"FAILED {label}: {why}")
        adapter = g.get("adapter")
        rows.append((label, g["gpu_nodes"], g["cpu_nodes"], worst,
                     g["median_ms"], c["median_ms"], ort_ms))
    if rows:
        print(f"\nlatency: median of {args.repeat} runs (ms); GPU adapter: {adapter}")
        print(f"{'model':42} {'gpu/cpu nodes':>13} {'max abs diff':>12} "
              f"{'modc gpu':>9} {'modc cpu':>9} {'ORT':>9}")
        for label, gn, cn, d, gm, cm, om in rows:
            print(f"{label:42} {f'{gn}/{cn}':>13} {d:12.3e} {gm:9.2f} {cm:9.2f} {om:9.2f}")
    print(f"{passed} passed, {failed} failed, {not_run} not run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
