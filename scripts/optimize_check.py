#!/usr/bin/env python3
"""Check that `modc optimize` keeps the meaning of the real and `light` models.

Usage:
    python3 scripts/optimize_check.py --modc target/release/modc
        [--level O2] [--only SUBSTR]... [--cache DIR] [--timeout S] [--keep DIR]

Models (run scripts/fetch_testdata.py first; it caches them in
target/modc-testdata, or $MODC_TESTDATA):
  * every real model, <cache>/models/**/*.onnx (rapidocr det/rec/cls,
    silero-vad's six models, magika), with the realistic inputs that
    scripts/real_models.py builds (rendered text, a synthetic audio frame, the
    bytes of a source file), written as .npy;
  * every <cache>/onnx-backend/light/light_*.onnx, with the input the ONNX
    backend test uses for them: arange(n)/n reshaped to the input shape
    (symbolic dimensions as 1), next to which the expected output ships.

For each model the script runs

    modc optimize MODEL -o OUT -O2 --verify --report REPORT.json
        [--input NAME=FILE.npy ...]          (real models only)

and checks:
  1. modc exits 0 (else its stderr is the failure reason, and OUT must not exist);
  2. the input file is unchanged (sha256 before and after);
  3. REPORT.json holds nodes_before, nodes_after, size_before, size_after,
     time_ms and passes;
  4. onnx.checker.check_model(OUT, full_check=True) passes;
  5. the node count (count_nodes below) did not grow, and the size of OUT
     (with any external data files it references) is at most 1% above the
     original's;
  6. OUT keeps the original's input and output names, and onnxruntime (CPU,
     graph optimizations off, one thread) gives the same outputs for OUT as for
     the original on the same inputs, within rtol 1e-3, atol 1e-4; for `light`
     models OUT's output is also compared with the shipped expected output.

--level O3 runs the same checks at -O3 (scripts/fusion_check.py does, on
the real models, and compares nodes and time with -O2).

One line per model: nodes before -> after, size before -> after, the largest
absolute output difference. The last line is exactly `N passed, M failed`;
the exit code is 1 when any failed. Needs onnx, onnxruntime, numpy and Pillow.

The node-counting rule (`count_nodes`) is shared with
scripts/compare_optimizers.py, which imports it from here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing the sibling scripts
import fetch_testdata  # noqa: E402
import real_models  # noqa: E402

RTOL, ATOL = 1e-3, 1e-4
SIZE_SLACK = 0.01  # the optimized file may be at most 1% larger
REPORT_KEYS = {"nodes_before": int, "nodes_after": int, "size_before": int,
               "size_after": int, "time_ms": (int, float), "passes": list}

ort.set_default_logger_severity(3)  # no "Removing initializer ..." warnings


# ---------------------------------------------------------------------------
# Node counting (shared with compare_optimizers.py)
# ---------------------------------------------------------------------------

def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The graphs held by a node's GRAPH / GRAPHS attributes (If, Loop, Scan, ...)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def counted_ops(model: onnx.ModelProto | onnx.GraphProto) -> list[tuple[str, str]]:
    """(domain, op_type) of every node `count_nodes` counts, main graph first.

    Subgraph nodes follow the node that holds them. The domain is "" for the
    default domain (also when spelled "ai.onnx"); a call of a model-local
    function (a fused kernel of modc's `ai.modc` domain) is one entry.
    """
    graph = model.graph if isinstance(model, onnx.ModelProto) else model
    constants = {t.name for t in graph.initializer}
    constants.update(t.values.name for t in graph.sparse_initializer)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            constants.update(node.output)
    ops = []
    for node in graph.node:
        plain = node.domain in ("", "ai.onnx")
        if plain and node.op_type == "Constant":
            pass
        elif plain and node.op_type == "ConstantOfShape" and node.input and node.input[0] in constants:
            pass
        else:
            ops.append(("" if plain else node.domain, node.op_type))
        for g in subgraphs(node):
            ops.extend(counted_ops(g))
    return ops


def count_nodes(model: onnx.ModelProto | onnx.GraphProto) -> int:
    """Counts the nodes of the main graph and, recursively, of every subgraph.

    Not counted: `Constant` nodes, and `ConstantOfShape` nodes whose shape
    input is an initializer or the output of a `Constant` node of the same
    graph (the weights of the `light` models are made that way). Nodes inside
    model-local functions are not expanded: a call counts as one node. This is
    modc's own rule (`counted nodes` in its report, `edit::counted_nodes`).
    """
    return len(counted_ops(model))


# ---------------------------------------------------------------------------
# Models, inputs, sizes, onnxruntime
# ---------------------------------------------------------------------------

def default_cache() -> Path:
    return fetch_testdata.default_cache()


def discover(cache: Path, only: list[str]) -> list[tuple[str, Path, str]]:
    """(label, path, kind) for every real model (kind "real") and light model ("light")."""
    found = [(f"{p.parent.name}/{p.name}", p, "real")
             for p in sorted((cache / "models").rglob("*.onnx"))]
    found += [(f"light/{p.name}", p, "light")
              for p in sorted((cache / "onnx-backend" / "light").glob("light_*.onnx"))]
    if only:
        found = [f for f in found if any(o in str(f[1]) for o in only)]
    return found


def light_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The backend test's input for light models: arange(n)/n in the input's shape."""
    inits = {t.name for t in model.graph.initializer}
    feeds = {}
    for x in model.graph.input:
        if x.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1
                      for d in x.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds[x.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


def light_expected(path: Path) -> list[np.ndarray]:
    """The expected outputs shipped next to a light model (light_X_output_K.pb)."""
    out = []
    k = 0
    while True:
        p = path.with_name(f"{path.stem}_output_{k}.pb")
        if not p.exists():
            return out
        out.append(numpy_helper.to_array(onnx.load_tensor(str(p))))
        k += 1


def inputs_for(path: Path, kind: str, model: onnx.ModelProto,
               sess: ort.InferenceSession) -> dict[str, np.ndarray]:
    if kind == "light":
        return light_inputs(model)
    return real_models.inputs_for(path, sess)


def run_outputs(sess: ort.InferenceSession, feeds: dict) -> dict[str, object]:
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feeds.items() if k in wanted})
    return dict(zip(names, values))


def compare(ref: dict[str, object], got: dict[str, object],
            rtol: float = RTOL, atol: float = ATOL) -> tuple[float, Optional[str]]:
    """(largest absolute difference over float outputs, first mismatch or None).

    Outputs are matched by name; non-float outputs must be equal; sequences
    (lists) are compared element by element.
    """
    worst = 0.0
    for name, e in ref.items():
        if name not in got:
            return worst, f"output {name!r} missing"
        pairs = list(zip(e, got[name])) if isinstance(e, list) else [(e, got[name])]
        if isinstance(e, list) and len(e) != len(got[name]):
            return worst, f"output {name!r}: sequence length {len(got[name])}, expected {len(e)}"
        for e1, a1 in pairs:
            e1, a1 = np.asarray(e1), np.asarray(a1)
            if e1.shape != a1.shape:
                return worst, f"output {name!r}: shape {a1.shape}, expected {e1.shape}"
            if e1.dtype.kind in "fc":
                if e1.size:
                    d = np.abs(a1.astype(np.float64) - e1.astype(np.float64))
                    d = d[~(np.isnan(a1) & np.isnan(e1))]
                    dmax = float(np.max(d)) if d.size else 0.0
                    worst = max(worst, dmax if not np.isnan(dmax) else float("inf"))
                if not np.allclose(a1, e1, rtol=rtol, atol=atol, equal_nan=True):
                    return worst, f"output {name!r}: max abs diff {worst:.3e}"
            elif not np.array_equal(a1, e1):
                return worst, f"output {name!r}: values differ"
    return worst, None


def tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto of a graph and its subgraphs (initializers, attribute tensors)."""
    yield from graph.initializer
    for s in graph.sparse_initializer:
        yield s.values
        yield s.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
        for g in subgraphs(node):
            yield from tensors(g)


def model_size(path: Path, model: Optional[onnx.ModelProto] = None) -> int:
    """Bytes of the .onnx file plus those of every external data file it references."""
    if model is None:
        model = onnx.load(str(path), load_external_data=False)
    files = set()
    for t in tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    files.add(e.value)
    return path.stat().st_size + sum((path.parent / f).stat().st_size for f in files
                                     if (path.parent / f).exists())


def human_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}" if abs(n) >= 100 else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"


def one_line(text: str, limit: int = 300) -> str:
    lines = [l.strip() for l in str(text).splitlines() if l.strip()]
    lines = [l for l in lines if not l.startswith("note: run with")]
    s = " | ".join(lines[:2]) if lines else "(no message)"
    return s if len(s) <= limit else s[: limit - 3] + "..."


def modc_level(level: str) -> str:
    """'O2', 'o2' or '2' -> '-O2'."""
    lv = level[1:] if level[:1] in ("O", "o") else level
    return f"-O{lv}"


def run_modc(modc: str, model: Path, out: Path, level: str, extra: list[str],
             feeds: dict[str, np.ndarray], workdir: Path,
             timeout: float) -> tuple[Optional[str], float, Optional[dict]]:
    """Runs `modc optimize`; returns (error or None, wall seconds, report or None)."""
    report = workdir / "report.json"
    cmd = [modc, "optimize", str(model), "-o", str(out), modc_level(level), *extra,
           "--report", str(report)]
    for name, value in feeds.items():
        safe = "".join(c if c.isalnum() else "_" for c in name)
        p = workdir / f"input_{safe}.npy"
        np.save(p, value)
        cmd += ["--input", f"{name}={p}"]
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"modc timed out after {timeout:.0f} s", time.perf_counter() - t0, None
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        return f"modc exited {r.returncode}: {one_line(r.stderr or r.stdout)}", wall, None
    try:
        rep = json.loads(report.read_text())
    except (OSError, ValueError) as e:
        return f"modc exited 0 but wrote no readable report: {one_line(str(e))}", wall, None
    return None, wall, rep


# ---------------------------------------------------------------------------
# The check
# ---------------------------------------------------------------------------

def check_one(args, label: str, path: Path, kind: str, tmp: Path) -> tuple[bool, str, dict]:
    """Optimizes one model at `args.level` with --verify and runs the checks above.

    `args` needs modc, level, timeout and keep (as main's parser gives them).
    Returns (passed, the summary line's text, stats): stats holds
    nodes_before, and once modc succeeded nodes_after, optimize_ms (the pass
    pipeline's time from the report), time_ms and wall_s.
    """
    model = onnx.load(str(path))
    sess = real_models.ort_session(path)
    feeds = inputs_for(path, kind, model, sess)
    expected = run_outputs(sess, feeds)
    del sess
    nodes_before = count_nodes(model)
    size_before = model_size(path, model)
    sha_before = fetch_testdata.sha256_of(path)
    stats: dict = {"nodes_before": nodes_before}

    outdir = tmp / "out"
    outdir.mkdir()
    out = outdir / path.name
    err, wall, report = run_modc(args.modc, path, out, args.level, ["--verify"],
                                 feeds if kind == "real" else {}, tmp, args.timeout)
    problems = []
    if fetch_testdata.sha256_of(path) != sha_before:
        problems.append("the input file changed")
    if err is not None:
        if out.exists():
            problems.append("modc failed but wrote the output")
        return False, "; ".join([err] + problems), stats
    if not out.exists():
        return False, "; ".join(["modc exited 0 but wrote no output"] + problems), stats
    stats["wall_s"] = wall
    for key in ("optimize_ms", "time_ms"):
        if isinstance(report, dict) and isinstance(report.get(key), (int, float)):
            stats[key] = float(report[key])

    missing = [k for k, t in REPORT_KEYS.items()
               if not isinstance(report, dict) or not isinstance(report.get(k), t)
               or isinstance(report.get(k), bool)]
    if missing:
        problems.append(f"report lacks or mistypes {', '.join(missing)}")

    try:
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:  # ValidationError, InferenceError, ...
        problems.append(f"checker: {type(e).__name__}: {one_line(str(e), 200)}")

    opt = onnx.load(str(out))
    nodes_after = count_nodes(opt)
    stats["nodes_after"] = nodes_after
    size_after = model_size(out, onnx.load(str(out), load_external_data=False))
    del opt
    if nodes_after > nodes_before:
        problems.append(f"node count grew ({nodes_before} -> {nodes_after})")
    if size_after > size_before * (1 + SIZE_SLACK):
        problems.append(f"size grew by {100 * (size_after / size_before - 1):.1f}%")

    worst = float("nan")
    try:
        osess = real_models.ort_session(out)
        ins_a = sorted(i.name for i in osess.get_inputs())
        ins_e = sorted(i.name for i in model.graph.input
                       if i.name not in {t.name for t in model.graph.initializer})
        outs_a = [o.name for o in osess.get_outputs()]
        outs_e = [o.name for o in model.graph.output]
        if ins_a != ins_e or outs_a != outs_e:
            problems.append(f"interface changed: inputs {ins_a} outputs {outs_a}, "
                            f"expected {ins_e} {outs_e}")
        got = run_outputs(osess, feeds)
        del osess
        worst, why = compare(expected, got)
        if why:
            problems.append(f"vs onnxruntime on the original: {why}")
        if kind == "light":
            shipped = light_expected(path)
            names = [o.name for o in model.graph.output][: len(shipped)]
            _, why = compare(dict(zip(names, shipped)), got)
            if why:
                problems.append(f"vs the shipped expected output: {why}")
    except Exception as e:
        problems.append(f"onnxruntime on the optimized model: {type(e).__name__}: "
                        f"{one_line(str(e), 200)}")

    if args.keep:
        dest = Path(args.keep) / label.replace("/", "__")
        shutil.copytree(outdir, dest, dirs_exist_ok=True)
    summary = (f"nodes {nodes_before} -> {nodes_after}, size {human_size(size_before)} -> "
               f"{human_size(size_after)}, max abs diff {worst:.3e}, modc {wall:.2f} s")
    if problems:
        return False, f"{summary}: " + "; ".join(problems), stats
    return True, summary, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modc", required=True, help="path of the modc binary")
    ap.add_argument("--level", default="O2",
                    help="optimization level: O2 (passed as -O2), O3, ...")
    ap.add_argument("--only", action="append", default=[],
                    help="only models whose path contains SUBSTR (repeatable)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="test data dir (default: $MODC_TESTDATA or <repo>/target/modc-testdata)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per modc run")
    ap.add_argument("--keep", default=None, help="copy every optimized model into DIR")
    args = ap.parse_args()

    cache = (args.cache or default_cache()).resolve()
    models = discover(cache, args.only)
    if not models:
        print(f"no models under {cache} (run python3 scripts/fetch_testdata.py first)"
              + (f" matching {args.only}" if args.only else ""), file=sys.stderr)
        return 1
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)

    passed = failed = 0
    for label, path, kind in models:
        with tempfile.TemporaryDirectory(prefix="modc-optcheck-") as tmp:
            try:
                ok, text, _ = check_one(args, label, path, kind, Path(tmp))
            except (Exception, SystemExit) as e:  # real_models exits on unknown models
                ok, text = False, f"{type(e).__name__}: {one_line(str(e))}"
        if ok:
            passed += 1
            print(f"ok     {label}: {text}", flush=True)
        else:
            failed += 1
            print(f"FAILED {label}: {text}", flush=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
