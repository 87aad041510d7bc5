#!/usr/bin/env python3
"""Run the real models through `modc run` and onnxruntime, and compare.

Usage:
    python3 scripts/real_models.py --modc target/release/modc [--cache DIR]
        [--only SUBSTR] [--bench N] [--keep DIR]

For every real model fetched by scripts/fetch_testdata.py (rapidocr's detector,
recogniser and classifier; silero-vad's six models; magika) the script builds
realistic inputs -- the OCR models get text rendered with Pillow's default font
("Hello ONNX 2024"), preprocessed as rapidocr does; silero gets a seeded
synthetic audio frame; magika gets the bytes of a small Python source file --
writes them as .npy, runs `modc run --input NAME=FILE --output-dir D`, runs
onnxruntime (CPU, graph optimizations off, one thread) on the same inputs and
compares every output with rtol 1e-3, atol 1e-4, printing the largest absolute
difference per model.

With --bench N it also prints, in the same run, the median latency of N runs of
modc's interpreter (`modc run --repeat N`, the time of the run alone, without
loading) and of onnxruntime's session.run, and their ratio.

The last line is `N passed, M failed`; the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

REPO = Path(__file__).resolve().parent.parent
RTOL, ATOL = 1e-3, 1e-4
TEXT = "Hello ONNX 2024"


def text_image(width: int, height: int) -> np.ndarray:
    """Black text on white, rendered with Pillow's default font, as HxWx3 uint8."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=max(10, int(height * 0.6)))
    except TypeError:  # older Pillow without sizes
        font = ImageFont.load_default()
    draw.text((4, height * 0.15), TEXT, fill="black", font=font)
    return np.asarray(img)


def ocr_det_input() -> np.ndarray:
    img = text_image(320, 96).astype(np.float32) / 255.0
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    x = (img - mean) / std
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def ocr_line_input(width: int) -> np.ndarray:
    img = text_image(width, 48).astype(np.float32) / 255.0
    x = (img - 0.5) / 0.5
    return x.transpose(2, 0, 1)[None].astype(np.float32)


def audio_frame(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(n) / 16000.0
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def inputs_for(path: Path, sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    name = path.name
    feeds = {}
    for i in sess.get_inputs():
        if "rapidocr" in str(path):
            if "det" in name:
                feeds[i.name] = ocr_det_input()
            elif "rec" in name:
                feeds[i.name] = ocr_line_input(320)
            else:
                feeds[i.name] = ocr_line_input(192)
        elif "magika" in str(path):
            src = Path(__file__).read_bytes()[:2048]
            arr = np.full(2048, 256, np.int32)
            arr[: len(src)] = np.frombuffer(src, np.uint8)
            feeds[i.name] = arr[None]
        elif "silero" in str(path):
            if i.name == "sr":
                feeds[i.name] = np.array(16000, np.int64)
            elif i.name == "input" and len(i.shape) == 2 and i.shape[1] == 576:
                rows = i.shape[0] if isinstance(i.shape[0], int) else 3
                feeds[i.name] = np.stack([audio_frame(576)] * rows)
            elif i.name == "input":
                x = audio_frame(512)[None]
                feeds[i.name] = x.astype(np.float16) if "float16" in i.type else x
            else:  # recurrent state
                shape = [d if isinstance(d, int) else 1 for d in i.shape]
                feeds[i.name] = np.zeros(shape, np.float16 if "float16" in i.type else np.float32)
        else:
            raise SystemExit(f"no inputs known for {path}")
    return feeds


def ort_session(path: Path) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--modc", required=True)
    ap.add_argument("--cache", default=os.environ.get("MODC_TESTDATA", str(REPO / "target/modc-testdata")))
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--bench", type=int, default=0)
    args = ap.parse_args()

    models = sorted(Path(args.cache, "models").rglob("*.onnx"))
    if args.only:
        models = [m for m in models if any(o in str(m) for o in args.only)]
    passed = failed = 0
    rows = []
    for m in models:
        label = f"{m.parent.name}/{m.name}"
        sess = ort_session(m)
        feeds = inputs_for(m, sess)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [args.modc, "run", str(m), "--output-dir", str(Path(tmp, "out"))]
            for k, v in feeds.items():
                p = Path(tmp, f"{k}.npy")
                np.save(p, v)
                cmd += ["--input", f"{k}={p}"]
            if args.bench:
                cmd += ["--repeat", str(args.bench)]
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                failed += 1
                print(f"FAILED {label}: modc: {r.stderr.strip()}")
                continue
            modc_ms = None
            for line in r.stdout.splitlines():
                if line.startswith("ran in "):
                    modc_ms = float(line.split()[2])
            expected = sess.run(None, feeds)
            worst = 0.0
            ok = True
            why = ""
            for k, e in enumerate(expected):
                a = np.load(Path(tmp, "out", f"output_{k}.npy"))
                e = np.asarray(e)
                if a.shape != e.shape:
                    ok, why = False, f"output {k}: shape {a.shape}, onnxruntime {e.shape}"
                    break
                if e.dtype.kind == "f":
                    d = float(np.max(np.abs(a.astype(np.float64) - e.astype(np.float64)))) if e.size else 0.0
                    worst = max(worst, d)
                    if not np.allclose(a, e, rtol=RTOL, atol=ATOL, equal_nan=True):
                        ok, why = False, f"output {k}: max abs diff {d:.3e}"
                        break
                elif not np.array_equal(a, e):
                    ok, why = False, f"output {k}: values differ"
                    break
        if ok:
            passed += 1
            print(f"ok     {label}: max abs diff {worst:.3e}")
        else:
            failed += 1
            print(f"FAILED {label}: {why}")
        if args.bench and ok:
            times = []
            for _ in range(args.bench):
                t0 = time.perf_counter()
                sess.run(None, feeds)
                times.append((time.perf_counter() - t0) * 1e3)
            ort_ms = statistics.median(times)
            rows.append((label, modc_ms, ort_ms))
    if rows:
        print(f"\n{'model':45} {'modc ms':>10} {'ORT ms':>10} {'modc/ORT':>9}")
        for label, a, b in rows:
            print(f"{label:45} {a:10.2f} {b:10.2f} {a / b:9.2f}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
