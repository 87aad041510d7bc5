#!/usr/bin/env python3
"""Check that `modc convert` keeps the meaning of every test model.

Usage:
    python3 scripts/roundtrip_check.py --modc target/release/modc \
        [--cache DIR] [--only SUBSTR]... [--jobs N] [--timeout S] [--keep DIR] [--json FILE]

Models (run scripts/fetch_testdata.py first):
  * every <cache>/onnx-backend/<folder>/<case>/model.onnx (node, simple,
    pytorch-converted, pytorch-operator), inputs from test_data_set_0/input_K.pb;
  * every <cache>/onnx-backend/light/*.onnx and <cache>/models/**/*.onnx,
    with seeded random inputs built from the declared input types.

For each model and each variant
    default:  modc convert IN -o OUT
    ext1k:    modc convert IN -o OUT --external-data-threshold 1024
(each variant writes into its own fresh temp dir) the script checks:
  1. modc exits 0 (otherwise its stderr is the failure reason);
  2. onnx.checker.check_model(OUT, full_check=True) passes -- or the original
     fails the same way ("checker fails on original too", not a modc failure);
  3. onnxruntime (CPU, graph optimizations off, 1 thread) gives bitwise
     identical outputs for the original and the converted model. When ORT
     cannot load or run the original, only the checker is used ("not run by
     ORT"). If the outputs differ but the original also disagrees with itself
     in a second session, the model is "nondeterministic in ORT" (not a failure).

A model passes when every variant passes all three steps. The summary is
printed per folder; the last line is exactly `N passed, M failed`, and the
exit code is 1 when anything failed.

Each model runs in a long-lived worker subprocess (one per job), so a crash in
ORT or the checker only costs that model. Dependencies: onnx, onnxruntime, numpy.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Optional

VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("default", ()),
    ("ext1k", ("--external-data-threshold", "1024")),
)

BACKEND_FOLDERS = ("node", "simple", "pytorch-converted", "pytorch-operator", "light")
REAL_FOLDER = "real models"


def default_cache() -> Path:
    env = os.environ.get("MODC_TESTDATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "target" / "modc-testdata"


# ---------------------------------------------------------------------------
# Model discovery
# ---------------------------------------------------------------------------

def discover(cache: Path) -> list[dict]:
    jobs = []
    backend = cache / "onnx-backend"
    for folder in BACKEND_FOLDERS:
        base = backend / folder
        if folder == "light":
            paths = sorted(base.glob("*.onnx"))
        else:
            paths = sorted(base.glob("*/model.onnx"))
        for p in paths:
            has_data = (p.parent / "test_data_set_0").is_dir() and folder != "light"
            jobs.append({"path": str(p), "rel": str(p.relative_to(cache)),
                         "folder": f"onnx-backend/{folder}",
                         "inputs": "testdata" if has_data else "random"})
    for p in sorted((cache / "models").rglob("*.onnx")):
        jobs.append({"path": str(p), "rel": str(p.relative_to(cache)),
                     "folder": REAL_FOLDER, "inputs": "random"})
    return jobs


# ---------------------------------------------------------------------------
# Worker side: everything below up to `worker_main` runs in the subprocess.
# ---------------------------------------------------------------------------

def one_line(text: str, limit: int = 300) -> str:
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    s = " | ".join(lines[:2]) if lines else "(no message)"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def modc_error(stderr: str) -> str:
    lines = [l.strip() for l in stderr.splitlines()
             if l.strip() and not l.strip().startswith("note: run with")]
    if not lines:
        return "(empty stderr)"
    # A Rust panic prints "thread 'main' panicked at FILE:" then the message.
    s = " ".join(lines[:2]) if "panicked at" in lines[0] else lines[0]
    return s if len(s) <= 300 else s[:297] + "..."


def checker_error(path: str) -> Optional[str]:
    """Runs the full checker by path; returns None or 'ExcType: first line'."""
    import onnx

    try:
        onnx.checker.check_model(path, full_check=True)
        return None
    except Exception as e:  # ValidationError, InferenceError, ...
        return f"{type(e).__name__}: {one_line(str(e), 400)}"


def normalise_paths(msg: str, *paths: str) -> str:
    for p in paths:
        for s in (str(Path(p).parent), os.path.basename(p)):
            if s and s not in (".", "/"):
                msg = msg.replace(s, "<path>")
    return msg


def ort_session(path: str):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 4
    ort.set_seed(0)  # ops without a seed attribute draw from this
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


# Element types that ORT's Python API cannot exchange as numpy arrays
# (bfloat16, float8*, 4-bit and 2-bit types): fed and read as raw bytes.
EXOTIC_TYPES = frozenset(range(16, 27))  # BFLOAT16=16 ... INT2=26 (TensorProto.DataType)


class RawTensor:
    """A tensor as ONNX/ORT store it in memory: element type, shape, packed bytes."""

    def __init__(self, data_type: int, shape: tuple, data: bytes):
        self.data_type, self.shape, self.data = data_type, tuple(shape), data

    def to_ortvalue(self):
        import numpy as np
        import onnxruntime as ort

        # ORT reinterprets the carrier's buffer as the ONNX type; sub-byte types
        # only read the first (packed) bytes of it.
        carrier = np.zeros(self.shape, dtype=np.uint16 if self.data_type == 16 else np.uint8)
        flat = carrier.reshape(-1).view(np.uint8)
        flat[: len(self.data)] = np.frombuffer(self.data, dtype=np.uint8)
        value = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(carrier, self.data_type)
        return value, carrier


def from_ortvalue(value) -> Any:
    import ctypes

    try:
        return value.numpy()
    except Exception:
        if not value.is_tensor():
            raise
    n = value.tensor_size_in_bytes()
    data = ctypes.string_at(value.data_ptr(), n) if n else b""
    return RawTensor(value.data_type(), tuple(value.shape()), data)


def run_session(sess, feeds: dict) -> tuple[list[str], list]:
    """Runs with numpy feeds when possible, else through OrtValues (exotic types)."""
    import numpy as np

    names = [o.name for o in sess.get_outputs()]
    if not any(isinstance(v, RawTensor) for v in feeds.values()):
        try:
            return names, sess.run(names, feeds)
        except Exception as e:
            if "Numpy" not in str(e) or not all(isinstance(v, np.ndarray) for v in feeds.values()):
                raise
    import onnxruntime as ort

    ort_feeds, keep_alive = {}, []
    for k, v in feeds.items():
        if isinstance(v, RawTensor):
            value, carrier = v.to_ortvalue()
            keep_alive.append(carrier)
        elif isinstance(v, np.ndarray):
            value = ort.OrtValue.ortvalue_from_numpy(v)
            keep_alive.append(v)
        else:
            raise ValueError(f"input {k!r}: cannot mix exotic tensors with non-tensor inputs")
        ort_feeds[k] = value
    outs = sess.run_with_ort_values(names, ort_feeds)
    return names, [from_ortvalue(o) for o in outs]


def graph_inputs(model) -> list:
    inits = {t.name for t in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in inits]


def load_testdata_inputs(model, case_dir: Path) -> dict:
    import onnx
    from onnx import numpy_helper

    files = sorted((case_dir / "test_data_set_0").glob("input_*.pb"),
                   key=lambda p: int(p.stem.split("_")[-1]))
    inputs = graph_inputs(model)
    if len(files) > len(inputs):
        raise ValueError(f"{len(files)} input files but {len(inputs)} graph inputs")
    feeds = {}
    for f, vi in zip(files, inputs):
        kind = vi.type.WhichOneof("value")
        data = f.read_bytes()
        if kind == "tensor_type":
            t = onnx.TensorProto()
            t.ParseFromString(data)
            if t.data_type in EXOTIC_TYPES:
                raw = t.raw_data or numpy_helper.from_array(numpy_helper.to_array(t)).raw_data
                feeds[vi.name] = RawTensor(t.data_type, tuple(t.dims), bytes(raw))
            else:
                feeds[vi.name] = numpy_helper.to_array(t)
        elif kind == "sequence_type":
            s = onnx.SequenceProto()
            s.ParseFromString(data)
            feeds[vi.name] = numpy_helper.to_list(s)
        elif kind == "optional_type":
            o = onnx.OptionalProto()
            o.ParseFromString(data)
            feeds[vi.name] = numpy_helper.to_optional(o)
        else:
            raise ValueError(f"input {vi.name!r} has unsupported type {kind}")
    return feeds


def random_inputs(model, rel: str) -> dict:
    """Seeded random inputs from the declared types, with per-model overrides."""
    import numpy as np
    from onnx import helper

    rng = np.random.default_rng(zlib.crc32(rel.encode()))
    name = os.path.basename(rel).lower()
    feeds = {}
    for vi in graph_inputs(model):
        if vi.type.WhichOneof("value") != "tensor_type":
            raise ValueError(f"input {vi.name!r} is not a tensor")
        tt = vi.type.tensor_type
        dtype = helper.tensor_dtype_to_np_dtype(tt.elem_type)
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                for d in tt.shape.dim]
        shape = [d if d is not None else 1 for d in dims]
        value = None
        if "rapidocr" in rel and len(shape) == 4:
            shape = ([1, 3, 48, 320] if "rec" in name else
                     [1, 3, 48, 192] if "cls" in name else
                     [1, 3, 96, 96] if "det" in name else shape)
        elif "silero" in rel:
            if vi.name == "sr":
                value = np.full(shape, 16000, dtype=dtype)
            elif vi.name in ("state", "h", "c"):
                value = np.zeros(shape, dtype=dtype)
            elif vi.name == "input" and len(dims) == 2 and dims[1] is None:
                shape = [shape[0], 576]  # 64 samples of context + 512 new samples (16 kHz)
        elif "magika" in rel and vi.name == "bytes":
            value = rng.integers(0, 257, size=shape).astype(dtype)  # 256 = padding
        if value is None:
            if np.issubdtype(dtype, np.floating):
                value = (rng.random(shape) * 2 - 1).astype(dtype)
            elif dtype == np.bool_:
                value = rng.random(shape) < 0.5
            elif np.issubdtype(dtype, np.integer):
                value = rng.integers(0, 4, size=shape).astype(dtype)
            elif dtype == np.object_:
                value = np.full(shape, "a", dtype=object)
            else:
                raise ValueError(f"input {vi.name!r}: cannot make random {dtype}")
        feeds[vi.name] = value
    return feeds


def compare(a: Any, b: Any, where: str) -> Optional[str]:
    """None when a and b are bitwise-identical ORT values, else a reason."""
    import numpy as np

    if a is None or b is None:
        return None if a is None and b is None else f"{where}: one side is None"
    if isinstance(a, RawTensor) or isinstance(b, RawTensor):
        if not (isinstance(a, RawTensor) and isinstance(b, RawTensor)):
            return f"{where}: {type(a).__name__} vs {type(b).__name__}"
        if a.data_type != b.data_type:
            return f"{where}: element type {a.data_type} vs {b.data_type}"
        if a.shape != b.shape:
            return f"{where}: shape {a.shape} vs {b.shape}"
        if a.data != b.data:
            n = sum(x != y for x, y in zip(a.data, b.data))
            return f"{where}: raw bytes differ ({n} of {len(a.data)} bytes)"
        return None
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return f"{where}: {type(a).__name__} vs {type(b).__name__}"
        if a.dtype != b.dtype:
            return f"{where}: dtype {a.dtype} vs {b.dtype}"
        if a.shape != b.shape:
            return f"{where}: shape {a.shape} vs {b.shape}"
        numeric = a.dtype.kind in "biufc"
        if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
            return None
        n = int(np.sum(a != b)) if numeric else -1
        extra = ""
        if a.dtype.kind in "fc":
            with np.errstate(all="ignore"):
                extra = f", max |diff| {np.nanmax(np.abs(a.astype(np.float64) - b.astype(np.float64))):.3g}"
        return f"{where}: values differ ({n if n >= 0 else '?'} of {a.size} elements{extra})"
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return f"{where}: sequence length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            r = compare(x, y, f"{where}[{i}]")
            if r:
                return r
        return None
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{where}: map keys differ"
        for k in a:
            r = compare(a[k], b[k], f"{where}[{k!r}]")
            if r:
                return r
        return None
    if type(a) is not type(b):
        return f"{where}: {type(a).__name__} vs {type(b).__name__}"
    return None if a == b else f"{where}: {a!r} vs {b!r}"


def check_job(job: dict, stage: Callable[[str], None]) -> dict:
    """Checks one model in all variants; returns a JSON-able result."""
    import onnx

    src = job["path"]
    res: dict = {"rel": job["rel"], "folder": job["folder"], "variants": {},
                 "orig_checker": None, "ort_orig": None, "nondeterministic": False}
    orig_checker: list = []  # lazily computed [error or None]
    orig_ort: dict = {}      # lazily computed {"status", "reason", "feeds", "names", "outs"}

    def get_orig_checker() -> Optional[str]:
        if not orig_checker:
            stage("checker-original")
            orig_checker.append(checker_error(src))
            res["orig_checker"] = orig_checker[0]
        return orig_checker[0]

    def get_orig_ort() -> dict:
        if orig_ort:
            return orig_ort
        stage("ort-load-original")
        try:
            sess = ort_session(src)
        except Exception as e:
            orig_ort.update(status="no-load", reason=one_line(str(e)))
            return orig_ort
        stage("ort-inputs")
        try:
            model = onnx.load(src, load_external_data=False)
            if job["inputs"] == "testdata":
                feeds = load_testdata_inputs(model, Path(src).parent)
            else:
                feeds = random_inputs(model, job["rel"])
        except Exception as e:
            orig_ort.update(status="no-inputs", reason=one_line(f"{type(e).__name__}: {e}"))
            return orig_ort
        stage("ort-run-original")
        try:
            names, outs = run_session(sess, feeds)
        except Exception as e:
            orig_ort.update(status="no-run", reason=one_line(str(e)))
            return orig_ort
        orig_ort.update(status="ok", feeds=feeds, names=names, outs=outs)
        return orig_ort

    with tempfile.TemporaryDirectory(prefix="modc-rt-") as tmp:
        for vname, vargs in VARIANTS:
            v: dict = {"converted": False, "checker": None, "ort": None, "reason": None}
            res["variants"][vname] = v
            out_dir = Path(tmp) / vname
            out_dir.mkdir()
            out = str(out_dir / "model.onnx")
            stage(f"modc-{vname}")
            cmd = [job["modc"], "convert", src, "-o", out, *vargs]
            try:
                p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=job["timeout"])
            except subprocess.TimeoutExpired:
                v["reason"] = f"modc timed out after {job['timeout']}s"
                continue
            if p.returncode != 0:
                stderr = p.stderr.decode("utf-8", "replace")
                how = (f"killed by signal {-p.returncode}" if p.returncode < 0
                       else f"exit {p.returncode}")
                v["reason"] = f"modc {how}: {modc_error(stderr)}"
                continue
            if not os.path.exists(out):
                v["reason"] = "modc exited 0 but wrote no output file"
                continue
            v["converted"] = True
            v["external_files"] = sum(1 for f in out_dir.iterdir() if f.name != "model.onnx")

            stage(f"checker-{vname}")
            err = checker_error(out)
            if err is None:
                v["checker"] = "ok"
            else:
                orig = get_orig_checker()
                if orig is not None and normalise_paths(orig, src) == normalise_paths(err, out):
                    v["checker"] = "orig-too"
                else:
                    v["checker"] = "fail"
                    v["reason"] = f"checker: {err}"
                    if orig is not None:
                        v["reason"] += f" (original fails differently: {orig})"
                    continue

            o = get_orig_ort()
            res["ort_orig"] = {"status": o["status"], "reason": o.get("reason")}
            if o["status"] != "ok":
                v["ort"] = "not-run"
                continue
            stage(f"ort-load-{vname}")
            try:
                sess = ort_session(out)
            except Exception as e:
                v["ort"] = "fail"
                v["reason"] = f"ORT does not load the converted model: {one_line(str(e))}"
                continue
            stage(f"ort-run-{vname}")
            try:
                names, outs = run_session(sess, o["feeds"])
            except Exception as e:
                v["ort"] = "fail"
                v["reason"] = f"ORT cannot run the converted model: {one_line(str(e))}"
                continue
            if names != o["names"]:
                v["ort"] = "fail"
                v["reason"] = f"output names differ: {o['names']} vs {names}"
                continue
            diff = None
            for n, a, b in zip(names, o["outs"], outs):
                diff = compare(a, b, f"output {n!r}")
                if diff:
                    break
            if diff is None:
                v["ort"] = "identical"
                continue
            # Is the original even deterministic?
            stage("ort-rerun-original")
            try:
                _, again = run_session(ort_session(src), o["feeds"])
                self_diff = any(compare(a, b, "") for a, b in zip(o["outs"], again))
            except Exception:
                self_diff = False
            if self_diff:
                v["ort"] = "nondeterministic"
                res["nondeterministic"] = True
            else:
                v["ort"] = "fail"
                v["reason"] = diff
        if job.get("keep") and not all(variant_passed(x) for x in res["variants"].values()):
            dest = Path(job["keep"]) / job["rel"].replace("/", "__")
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(tmp, dest)
    return res


def variant_passed(v: dict) -> bool:
    return (v["converted"] and v["checker"] in ("ok", "orig-too")
            and v["ort"] in ("identical", "not-run", "nondeterministic"))


def worker_main() -> int:
    # Keep the protocol channel private: anything written to fd 1 by native code
    # (ORT, onnx) goes to stderr instead.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(obj: dict) -> None:
        proto.write(json.dumps(obj) + "\n")
        proto.flush()

    for line in sys.stdin:
        job = json.loads(line)
        try:
            res = check_job(job, lambda s: send({"stage": s}))
        except Exception as e:  # a bug in this script, not in modc
            res = {"rel": job["rel"], "folder": job["folder"],
                   "internal_error": one_line(f"{type(e).__name__}: {e}")}
        send({"result": res})
    return 0


# ---------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------

class Runner:
    def __init__(self, jobs: list[dict], n_workers: int, timeout: float):
        self.queue: "queue.Queue[dict]" = queue.Queue()
        for j in jobs:
            self.queue.put(j)
        self.total = len(jobs)
        self.n_workers = n_workers
        self.timeout = timeout
        self.results: list[dict] = []
        self.lock = threading.Lock()
        self.last_report = time.monotonic()
        self.start = time.monotonic()

    def spawn(self) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, bufsize=1,
                                start_new_session=True)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()

    def thread_main(self) -> None:
        proc: Optional[subprocess.Popen] = None
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if proc is None:
                proc = self.spawn()
            timed_out = threading.Event()

            def on_timeout(p=proc) -> None:
                timed_out.set()
                self.kill(p)

            timer = threading.Timer(self.timeout, on_timeout)
            timer.start()
            stage, result = "start", None
            try:
                proc.stdin.write(json.dumps(job) + "\n")
                proc.stdin.flush()
                for line in proc.stdout:
                    msg = json.loads(line)
                    if "stage" in msg:
                        stage = msg["stage"]
                    else:
                        result = msg["result"]
                        break
            except (BrokenPipeError, ValueError, OSError):
                pass
            finally:
                timer.cancel()
            if result is None:
                if timed_out.is_set():
                    why = f"timed out after {self.timeout:.0f}s"
                else:
                    self.kill(proc)
                    rc = proc.returncode
                    why = f"killed by signal {-rc}" if rc and rc < 0 else f"exited {rc}"
                result = {"rel": job["rel"], "folder": job["folder"],
                          "crash": {"stage": stage, "why": why}}
                self.kill(proc)
                proc = None
            self.record(result)
        if proc is not None:
            proc.stdin.close()
            proc.wait()

    def record(self, result: dict) -> None:
        with self.lock:
            self.results.append(result)
            now = time.monotonic()
            done = len(self.results)
            if now - self.last_report > 10 or done == self.total:
                self.last_report = now
                print(f"[{done}/{self.total}] {now - self.start:.0f}s", file=sys.stderr, flush=True)

    def run(self) -> list[dict]:
        threads = [threading.Thread(target=self.thread_main, daemon=True)
                   for _ in range(min(self.n_workers, self.total))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return self.results


def classify(r: dict) -> tuple[bool, list[str]]:
    """(passed, failure reasons) for one model result."""
    if "internal_error" in r:
        return False, [f"script error: {r['internal_error']}"]
    if "crash" in r:
        c = r["crash"]
        return False, [f"worker {c['why']} during {c['stage']}"]
    reasons: dict[str, list[str]] = {}
    for vname, v in r["variants"].items():
        if not variant_passed(v):
            reasons.setdefault(v["reason"] or "unknown", []).append(vname)
    names = [n for n, _ in VARIANTS]
    out = []
    for reason, vs in reasons.items():
        tag = "all" if vs == names else ",".join(vs)
        out.append(f"[{tag}] {reason}")
    return not out, out


def crash_is_ort_on_original(r: dict) -> bool:
    c = r.get("crash")
    return bool(c) and c["stage"] in ("ort-load-original", "ort-run-original", "ort-rerun-original")


def summarise(results: list[dict], elapsed: float) -> tuple[int, int]:
    folders = [f"onnx-backend/{f}" for f in BACKEND_FOLDERS] + [REAL_FOLDER]
    by_folder: dict[str, list[dict]] = {}
    for r in results:
        by_folder.setdefault(r["folder"], []).append(r)
    passed = failed = 0
    no_load, no_run, checker_orig, nondet = [], [], [], []

    for folder in folders:
        rs = sorted(by_folder.get(folder, []), key=lambda r: r["rel"])
        if not rs:
            continue
        n = len(rs)
        conv = chk = chk_orig = ident = not_run = ext = 0
        fails = []
        for r in rs:
            ok, reasons = classify(r)
            if crash_is_ort_on_original(r):
                # ORT itself died on the original model: not modc's fault.
                ok, reasons = True, []
                no_run.append(f"{r['rel']}: ORT {r['crash']['why']} during {r['crash']['stage']}")
            if ok:
                passed += 1
            else:
                failed += 1
                fails.extend(f"{r['rel']} {x}" for x in reasons)
            vs = list(r.get("variants", {}).values())
            if vs and all(v["converted"] for v in vs):
                conv += 1
            if any(v.get("external_files") for v in vs):
                ext += 1
            if vs and all(v["checker"] in ("ok", "orig-too") for v in vs):
                chk += 1
                if any(v["checker"] == "orig-too" for v in vs):
                    chk_orig += 1
                    checker_orig.append(f"{r['rel']}: {r['orig_checker']}")
            if vs and all(v["ort"] in ("identical", "nondeterministic") for v in vs):
                ident += 1
            oo = r.get("ort_orig")
            if oo and oo["status"] != "ok":
                not_run += 1
                line = f"{r['rel']}: {oo['reason']}"
                (no_load if oo["status"] == "no-load" else no_run).append(line)
            if r.get("nondeterministic"):
                nondet.append(r["rel"])
        print(f"== {folder}: {n} models")
        print(f"   converted      {conv}/{n}" + (f"  ({ext} with external data files)" if ext else ""))
        print(f"   checker ok     {chk}/{n}" + (f"  ({chk_orig} of them: fails on original too)"
                                                 if chk_orig else ""))
        print(f"   ORT identical  {ident}/{n}" + (f"  ({not_run} not run by ORT)" if not_run else ""))
        print(f"   failed         {n - sum(1 for r in rs if classify(r)[0] or crash_is_ort_on_original(r))}")
        for line in fails:
            print(f"     FAILED {line}")
    for title, items in (("ORT does not load the original", no_load),
                         ("ORT cannot run the original (inputs or kernels)", no_run),
                         ("checker fails on the original too", checker_orig),
                         ("nondeterministic in ORT (outputs not compared)", nondet)):
        if items:
            print(f"== {title}: {len(items)}")
            for line in sorted(items):
                print(f"   {line}")
    print(f"elapsed {elapsed:.1f}s")
    print(f"{passed} passed, {failed} failed")
    return passed, failed


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker_main()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modc", required=True, type=Path, help="path to the modc binary")
    ap.add_argument("--cache", type=Path, default=None,
                    help="test data dir (default: $MODC_TESTDATA or <repo>/target/modc-testdata)")
    ap.add_argument("--only", action="append", default=[],
                    help="only models whose path contains this substring (repeatable: any)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--timeout", type=float, default=600, help="seconds per model (default 600)")
    ap.add_argument("--keep", type=Path, default=None,
                    help="copy the converted outputs of failing models into this dir")
    ap.add_argument("--json", type=Path, default=None, help="also write every result to this file")
    args = ap.parse_args()

    modc = args.modc.resolve()
    if not os.access(modc, os.X_OK):
        print(f"error: {modc} is not an executable", file=sys.stderr)
        return 2
    cache = (args.cache or default_cache()).resolve()
    jobs = discover(cache)
    if not jobs:
        print(f"error: no models under {cache}; run scripts/fetch_testdata.py", file=sys.stderr)
        return 2
    if args.only:
        jobs = [j for j in jobs if any(s in j["path"] for s in args.only)]
        if not jobs:
            print("error: --only matched no model", file=sys.stderr)
            return 2
    keep = str(args.keep.resolve()) if args.keep else None
    if keep:
        os.makedirs(keep, exist_ok=True)
    for j in jobs:
        j.update(modc=str(modc), timeout=args.timeout, keep=keep)
    # Largest models first, so the slow ones do not end up alone at the tail.
    jobs.sort(key=lambda j: -os.path.getsize(j["path"]))
    start = time.monotonic()
    results = Runner(jobs, max(1, args.jobs), args.timeout + 60).run()
    if args.json:
        args.json.write_text(json.dumps(sorted(results, key=lambda r: r["rel"]), indent=1))
    _, failed = summarise(results, time.monotonic() - start)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
