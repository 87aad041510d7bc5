#!/usr/bin/env python3
"""Benchmark `modc optimize` against onnxsim and onnxruntime's offline optimizer.

Usage:
    python3 -m pip install -r scripts/requirements-bench.txt   # onnxsim 0.8.1
    python3 scripts/compare_optimizers.py --modc target/release/modc
        [--runs 20] [--only SUBSTR]... [--level O2] [--json FILE]
        [--cache DIR] [--timeout S] [--keep DIR]

A benchmark, not a test: it never fails because one tool did worse, and a
tool that fails on a model is recorded as "fail" (with its reason under the
table) while the others go on. Exit code 0 unless the script itself breaks.

Models: every real model (rapidocr det/rec/cls, silero-vad's six, magika) and
every `light` backend model, as fetched by scripts/fetch_testdata.py. Inputs:
the realistic ones of scripts/real_models.py for real models, arange(n)/n for
light models (as the ONNX backend test does).

Variants of each model:
  orig      the model as shipped;
  modc      `modc optimize IN -o OUT -O2 --report R` (no --verify); time = the
            pass pipeline (the report's optimize_ms, as onnxsim's time is its
            simplify call); "modc CLI ms" = wall time of the whole process
            (load, optimize, fsync'd save);
  modc-nsg  light models only: the same with --no-size-guard (the size guard
            keeps modc from folding the ConstantOfShape weights of the light
            models into tens of MB; lifted, node counts compare with onnxsim's);
  onnxsim   `onnxsim.simplify(model)` with its defaults, in a subprocess (with
            --timeout); time = the simplify call alone (no import, load, save);
  ort-basic onnxruntime at ORT_ENABLE_BASIC with optimized_model_filepath, CPU
            provider, in a subprocess; time = the session creation.
Each optimize time is the median of MODC_BENCH_OPT_RUNS runs (default 5).

For each variant the table gives the node count (count_nodes of
scripts/optimize_check.py: nodes of all subgraphs counted, Constant nodes and
ConstantOfShape nodes of constant shape not), the size, the optimization time,
the largest absolute output difference from the original (onnxruntime, graph
optimizations off, one thread) and the onnxruntime latency (graph
optimizations off, intra-op one thread, median of --runs runs after one
warm-up run each; the variants' runs are interleaved round-robin, the start
rotating each round, so machine noise hits them all alike). Then per model
whether modc has no more nodes than onnxsim and than ort-basic, and the latency
ratio modc/onnxsim. --json FILE writes every figure.

Time it on an idle machine: a concurrent build spoils the latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing the sibling scripts

TOOLS = ("modc", "onnxsim", "ort-basic")
# Optimize-time runs per tool (median), passed to the workers by environment.
OPT_RUNS = int(os.environ.get("MODC_BENCH_OPT_RUNS", "5"))
EXC_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b")


# ---------------------------------------------------------------------------
# Worker: `compare_optimizers.py --worker {onnxsim,ort-basic} IN OUT` runs one
# tool in a fresh process and prints one JSON line {"time_ms": ...}.
# ---------------------------------------------------------------------------

def worker(tool: str, src: str, dst: str) -> int:
    import onnx

    if tool == "onnxsim":
        import onnxsim

        model = onnx.load(src)
        times = []
        for _ in range(OPT_RUNS):
            fresh = onnx.ModelProto()
            fresh.CopyFrom(model)
            t0 = time.perf_counter()
            out, check_ok = onnxsim.simplify(fresh)
            times.append((time.perf_counter() - t0) * 1e3)
        ms = statistics.median(times)
        if out.ByteSize() > 2_000_000_000:
            onnx.save(out, dst, save_as_external_data=True, location=Path(dst).name + ".data")
        else:
            onnx.save(out, dst)
        print(json.dumps({"time_ms": ms, "check_ok": bool(check_ok),
                          "version": getattr(onnxsim, "__version__", "?")}))
        return 0
    if tool == "ort-basic":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.optimized_model_filepath = dst
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        times = []
        for _ in range(OPT_RUNS):
            t0 = time.perf_counter()
            ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])
            times.append((time.perf_counter() - t0) * 1e3)
        ms = statistics.median(times)
        print(json.dumps({"time_ms": ms, "version": ort.__version__}))
        return 0
    raise SystemExit(f"unknown tool {tool}")


def run_worker(tool: str, src: Path, dst: Path, timeout: float) -> tuple[Optional[str], Optional[dict]]:
    from optimize_check import one_line

    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", tool, str(src), str(dst)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"timed out after {timeout:.0f} s", None
    if r.returncode != 0:
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        # A Python traceback: the exception ("RuntimeError: ...", possibly over
        # several lines) follows the last frame; keep it from there.
        start = max((i for i, l in enumerate(lines) if EXC_LINE.match(l)), default=None)
        msg = "\n".join(lines[start:]) if start is not None else r.stderr
        return f"exit {r.returncode}: {one_line(msg, 200)}", None
    try:
        return None, json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return f"no result from the worker: {one_line(r.stdout + r.stderr, 200)}", None


# ---------------------------------------------------------------------------
# The benchmark
# ---------------------------------------------------------------------------

def bench_model(args, label: str, path: Path, kind: str, tmp: Path) -> dict:
    import numpy as np
    import onnx

    import optimize_check as oc
    import real_models

    model = onnx.load(str(path))
    sess = real_models.ort_session(path)
    feeds = oc.inputs_for(path, kind, model, sess)
    expected = oc.run_outputs(sess, feeds)
    del sess
    row: dict = {"model": label, "kind": kind, "path": str(path),
                 "inputs": {k: {"shape": list(np.shape(v)), "dtype": str(np.asarray(v).dtype)}
                            for k, v in feeds.items()},
                 "variants": {"orig": {"ok": True, "nodes": oc.count_nodes(model),
                                       "size": oc.model_size(path, model), "file": str(path)}}}
    orig_inits = {t.name: t for t in model.graph.initializer}

    variants = ["modc", "modc-nsg"] if kind == "light" else ["modc"]
    variants += ["onnxsim", "ort-basic"]
    for v in variants:
        d = tmp / v
        d.mkdir()
        out = d / path.name
        res: dict = {"ok": False}
        if v.startswith("modc"):
            extra = ["--no-size-guard"] if v == "modc-nsg" else []
            work = tmp / f"{v}-work"
            work.mkdir()
            walls, opts = [], []
            for _ in range(OPT_RUNS):
                err, wall, report = oc.run_modc(args.modc, path, out, args.level, extra, {}, work,
                                                args.timeout)
                walls.append(wall)
                if report is not None and isinstance(report.get("optimize_ms"), (int, float)):
                    opts.append(report["optimize_ms"])
                if err is not None:
                    break
            # time_ms: the pass pipeline alone (as onnxsim's simplify call);
            # cli_ms: the whole CLI process (load, optimize, fsync'd save).
            res["cli_ms"] = statistics.median(walls) * 1e3
            res["time_ms"] = statistics.median(opts) if opts else res["cli_ms"]
            if report is not None:
                res["report"] = report
                if isinstance(report.get("time_ms"), (int, float)):
                    res["report_time_ms"] = report["time_ms"]
        else:
            err, info = run_worker(v, path, out, args.timeout)
            if info is not None:
                res["time_ms"] = info.get("time_ms")
                res.update({k: info[k] for k in ("check_ok", "version") if k in info})
        if err is None and not out.exists():
            err = "exited 0 but wrote no output"
        if err is not None:
            res["error"] = err
            row["variants"][v] = res
            continue
        try:
            m = onnx.load(str(out))
            res["nodes"] = oc.count_nodes(m)
            res["size"] = oc.model_size(out, m)
            del m
            vsess = real_models.ort_session(out)
            vfeeds = variant_feeds(vsess, feeds, orig_inits, res)
            got = oc.run_outputs(vsess, vfeeds)
            del vsess
            res["max_abs_diff"], why = oc.compare(expected, got)
            if why:
                res["mismatch"] = why
            res["ok"] = True
            res["file"] = str(out)
            res["feeds"] = vfeeds
        except Exception as e:
            res["error"] = f"{type(e).__name__}: {oc.one_line(str(e), 200)}"
        row["variants"][v] = res

    row["variants"]["orig"]["feeds"] = feeds
    latency(args.runs, row)
    if args.keep:
        dest = Path(args.keep) / label.replace("/", "__")
        dest.mkdir(parents=True, exist_ok=True)
        for v, res in row["variants"].items():
            if v != "orig" and res.get("ok"):
                shutil.copy(res["file"], dest / f"{v}.onnx")
    for res in row["variants"].values():
        res.pop("file", None)
        res.pop("feeds", None)

    m, s, o = (row["variants"].get(k, {}) for k in ("modc", "onnxsim", "ort-basic"))
    row["modc_le_onnxsim_nodes"] = m["nodes"] <= s["nodes"] if m.get("ok") and s.get("ok") else None
    row["modc_le_ort_basic_nodes"] = m["nodes"] <= o["nodes"] if m.get("ok") and o.get("ok") else None
    row["latency_ratio_modc_onnxsim"] = (m["latency_ms"] / s["latency_ms"]
                                         if m.get("latency_ms") and s.get("latency_ms") else None)
    return row


def variant_feeds(sess, feeds: dict, orig_inits: dict, res: dict) -> dict:
    """The feeds a variant's session wants. Inputs it requires that the original
    did not (onnxruntime's saved models of the IR-3 light models keep the
    `*__SHAPE` initializers as graph inputs after folding them away) are fed
    the original's initializer of that name, and listed in the result."""
    from onnx import numpy_helper

    wanted = {i.name for i in sess.get_inputs()}
    out = {k: v for k, v in feeds.items() if k in wanted}
    borrowed = sorted(wanted - set(out))
    for name in borrowed:
        if name not in orig_inits:
            raise ValueError(f"the optimized model requires input {name!r}, which the original lacks")
        out[name] = numpy_helper.to_array(orig_inits[name])
    if borrowed:
        res["inputs_borrowed_from_initializers"] = borrowed
    return out


def latency(runs: int, row: dict) -> None:
    """Median session.run time of every working variant, runs interleaved round-robin."""
    import optimize_check as oc
    import real_models

    if runs <= 0:
        return
    sessions = []
    for v, res in row["variants"].items():
        if not res.get("ok"):
            continue
        try:
            sess = real_models.ort_session(Path(res["file"]))
            f = res["feeds"]
            sess.run(None, f)  # warm-up
            sessions.append((v, sess, f, []))
        except Exception as e:
            res["latency_error"] = f"{type(e).__name__}: {oc.one_line(str(e), 200)}"
    for r in range(runs):
        k = r % max(1, len(sessions))
        for v, sess, f, times in sessions[k:] + sessions[:k]:
            t0 = time.perf_counter()
            sess.run(None, f)
            times.append((time.perf_counter() - t0) * 1e3)
    for v, _, _, times in sessions:
        row["variants"][v]["latency_ms"] = statistics.median(times)
        row["variants"][v]["latency_runs_ms"] = times


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------

COLS = ("orig", "modc", "onnxsim", "ort-basic")


def cell(res: Optional[dict], key: str, fmt) -> str:
    if res is None:
        return "-"
    if not res.get("ok"):
        return "fail"
    return "-" if res.get(key) is None else fmt(res[key])


def print_table(rows: list[dict]) -> None:
    def mb(n):
        return f"{n / 1e6:.2f}"

    def ms(x):
        return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.3f}"

    def diff(x):
        return "0" if x == 0 else f"{x:.1e}"

    groups = [
        ("nodes orig/modc/sim/ort", lambda r: [cell(r["variants"].get(c), "nodes", str) for c in COLS]),
        ("nsg", lambda r: [cell(r["variants"].get("modc-nsg"), "nodes", str)]),
        ("size MB orig/modc/sim/ort", lambda r: [cell(r["variants"].get(c), "size", mb) for c in COLS]),
        ("opt ms modc/sim/ort", lambda r: [cell(r["variants"].get(c), "time_ms", ms) for c in TOOLS]),
        ("modc CLI ms", lambda r: [cell(r["variants"].get("modc"), "cli_ms", ms)]),
        ("max|diff| modc/sim/ort", lambda r: [cell(r["variants"].get(c), "max_abs_diff", diff) for c in TOOLS]),
        ("latency ms orig/modc/sim/ort", lambda r: [cell(r["variants"].get(c), "latency_ms", ms) for c in COLS]),
        ("nsg lat", lambda r: [cell(r["variants"].get("modc-nsg"), "latency_ms", ms)]),
    ]
    yn = {True: "yes", False: "NO", None: "-"}
    table = []
    for r in rows:
        cells = [r["model"]] + ["/".join(g(r)) for _, g in groups]
        ratio = r["latency_ratio_modc_onnxsim"]
        cells += [yn[r["modc_le_onnxsim_nodes"]], yn[r["modc_le_ort_basic_nodes"]],
                  f"{ratio:.2f}" if ratio is not None else "-"]
        table.append(cells)
    head = ["model"] + [h for h, _ in groups] + ["m<=sim", "m<=ort", "lat m/sim"]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *table)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for cells in table:
        print("  ".join([cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]))
    notes = []
    for r in rows:
        for v, res in r["variants"].items():
            if res.get("error"):
                notes.append(f"  {v} failed on {r['model']}: {res['error']}")
            if res.get("mismatch"):
                notes.append(f"  {v} differs from the original on {r['model']} beyond rtol 1e-3/atol 1e-4: "
                             f"{res['mismatch']}")
            if res.get("inputs_borrowed_from_initializers"):
                names = res["inputs_borrowed_from_initializers"]
                notes.append(f"  {v} output of {r['model']} requires {len(names)} inputs the original has as "
                             f"initializers (fed from them), e.g. {names[0]!r}")
            if res.get("latency_error"):
                notes.append(f"  {v} could not be timed on {r['model']}: {res['latency_error']}")
    print("nsg = modc --no-size-guard (light models); sim = onnxsim; ort = onnxruntime ORT_ENABLE_BASIC")
    if notes:
        print("notes:")
        print("\n".join(notes))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        return worker(*sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modc", required=True, help="path of the modc binary")
    ap.add_argument("--runs", type=int, default=20, help="latency runs per variant (median)")
    ap.add_argument("--only", action="append", default=[],
                    help="only models whose path contains SUBSTR (repeatable)")
    ap.add_argument("--level", default="O2", help="modc optimization level (passed as -O2)")
    ap.add_argument("--json", default=None, help="write every figure to FILE")
    ap.add_argument("--cache", type=Path, default=None,
                    help="test data dir (default: $MODC_TESTDATA or <repo>/target/modc-testdata)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per tool and model")
    ap.add_argument("--keep", default=None, help="keep every optimized model under DIR")
    args = ap.parse_args()

    import onnx
    import onnxruntime as ort

    import optimize_check as oc

    try:
        import onnxsim
        sim_version = getattr(onnxsim, "__version__", "?")
    except ImportError:
        sim_version = None
        print("onnxsim is not installed (python3 -m pip install -r scripts/requirements-bench.txt); "
              "its column will read 'fail'", file=sys.stderr)

    cache = (args.cache or oc.default_cache()).resolve()
    models = oc.discover(cache, args.only)
    if not models:
        print(f"no models under {cache} (run python3 scripts/fetch_testdata.py first)"
              + (f" matching {args.only}" if args.only else ""), file=sys.stderr)
        return 1
    rows = []
    for label, path, kind in models:
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="modc-cmpopt-") as tmp:
            try:
                row = bench_model(args, label, path, kind, Path(tmp))
            except (Exception, SystemExit) as e:  # real_models exits on unknown models
                row = {"model": label, "kind": kind, "path": str(path),
                       "error": f"{type(e).__name__}: {oc.one_line(str(e))}", "variants": {},
                       "modc_le_onnxsim_nodes": None, "modc_le_ort_basic_nodes": None,
                       "latency_ratio_modc_onnxsim": None}
        rows.append(row)
        status = row.get("error") or ", ".join(
            f"{v} {'ok' if r.get('ok') else 'fail'}" for v, r in row["variants"].items() if v != "orig")
        print(f"[{len(rows)}/{len(models)}] {label}: {status} ({time.perf_counter() - t0:.1f} s)",
              file=sys.stderr, flush=True)

    print_table(rows)
    if args.json:
        meta = {"modc": args.modc, "level": args.level, "runs": args.runs, "onnx": onnx.__version__,
                "onnxruntime": ort.__version__, "onnxsim": sim_version,
                "python": platform.python_version(), "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        Path(args.json).write_text(json.dumps({"meta": meta, "models": rows}, indent=1))
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
