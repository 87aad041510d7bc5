#!/usr/bin/env python3
"""Measure `modc optimize -O3` (fusion, issue #5) against its "Done when" list.

Usage:
    python3 scripts/fusion_check.py --modc target/release/modc
        [--json OUT] [--only SUBSTR]... [--report-only] [--jobs N]
        [--repeat N] [--max-time-ratio R] [--cache DIR] [--timeout S]

Test data comes from scripts/fetch_testdata.py (<cache> is
target/modc-testdata or $MODC_TESTDATA). Four sections, one summary each:

1. Expanded cases. Every <cache>/onnx-backend/node/*_expanded* case (440
   in onnx 1.22: a single op's function body written out in basic ops) goes
   through `modc optimize model.onnx -o OUT -O3 --quiet`. A refusal (non-zero
   exit) is recorded with modc's error line. OUT runs in onnxruntime (CPU,
   graph optimizations off) on every test_data_set_*/input_*.pb and is
   compared with the case's output_*.pb at the backend tests' tolerance, rtol
   1e-3 and atol 1e-7 -- looser for narrow floats: float16 atol 1e-3,
   bfloat16 rtol and atol 1e-2 (one unit in the last place of a 7-bit
   mantissa is 0.4%). When onnxruntime cannot run OUT, or its outputs differ,
   the original is tried in onnxruntime too: if it cannot run (or does not
   match) the original either, the case counts as "ort cannot run/match
   original" and OUT is compared through `modc run` instead (skipped when
   `modc run` cannot run or match the original either: Bernoulli's random
   draws, the 2-, 4- and 8-bit float/int casts that neither runtime's Python
   side handles). Cases whose inputs or outputs are sequences or
   optionals are skipped. Nodes are counted as modc counts them
   (optimize_check.count_nodes: subgraphs included, Constant nodes and
   ConstantOfShape of constants not, a call of an `ai.modc` function -- a
   fused kernel -- is one node) and compared with the case's non-expanded
   twin (the name without `_expanded` / `_expanded_verNN`). Reported, not
   enforced.
2. Families. The expanded cases of LayerNormalization, Gelu, Softmax,
   LogSoftmax, HardSigmoid, HardSwish, Mish, Celu, Selu and RMSNormalization
   must each end as ONE counted node, either the op itself (default domain) or
   one fused node (domain `ai.modc`), and match the expected outputs.
   Enforced.
3. magika (its LayerNorm is split into ReduceSum/Mul/Sub/Sqrt/Reciprocal by
   its TensorFlow converter, opset 15): `-O3 --opset 17` must hold one
   LayerNormalization per LayerNorm_<k> name scope of the original and no
   Sqrt or ReduceMean left (only the LayerNorms use Sqrt; the model has no
   ReduceMean, so that part is vacuous here); `-O3` alone must hold at least
   one fused (`ai.modc`) node and fewer nodes than `-O2`. All three outputs
   must pass onnx's full check and match onnxruntime on the original (rtol
   1e-3, atol 1e-4) on the usual input (the bytes of a source file, as
   scripts/real_models.py builds it). Enforced.
4. Real models. Every real model gets optimize_check.py's checks at -O3
   (`--verify` with the realistic inputs, onnx full_check, onnxruntime
   equivalence at rtol 1e-3 / atol 1e-4, sha256 of the input unchanged, no
   node growth, at most 1% size growth). Then -O2 and -O3 are timed,
   interleaved, --repeat times each (default 5) without --verify: the time is
   the pass pipeline's (`optimize_ms` of `--report`, no load or save), the
   best of the runs -- the pipelines take milliseconds and the machine is
   shared, so the minimum is the stable statistic (all runs are in --json).
   Enforced: the checks, -O3 nodes <= -O2 nodes, and the -O3/-O2 time ratio
   <= --max-time-ratio (default 2; 0 turns the time check off).

--only SUBSTR (repeatable) keeps the expanded cases whose name contains it and
the models whose path contains it (so `--only test_gelu` runs no model,
`--only magika` no case). --report-only always exits 0; otherwise the exit
code is 1 when an enforced check failed. The last line is
`fusion check: passed` or `fusion check: FAILED (...)`. --json OUT writes
every result. Needs onnx, onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))
sys.dont_write_bytecode = True  # no scripts/__pycache__ from importing the sibling scripts
import fetch_testdata  # noqa: E402
import optimize_check as oc  # noqa: E402
import real_models  # noqa: E402

CASE_RTOL, CASE_ATOL = 1e-3, 1e-7          # the ONNX backend tests' default
NARROW_TOL = {"float16": (1e-3, 1e-3), "bfloat16": (1e-2, 1e-2)}  # (rtol, atol)
FUSED_DOMAIN = "ai.modc"
EXPANDED = re.compile(r"_expanded(_ver\d+)?$")

# family op -> case name prefix
FAMILIES = {
    "LayerNormalization": "test_layer_normalization",
    "Gelu": "test_gelu",
    "Softmax": "test_softmax",
    "LogSoftmax": "test_logsoftmax",
    "HardSigmoid": "test_hardsigmoid",
    "HardSwish": "test_hardswish",
    "Mish": "test_mish",
    "Celu": "test_celu",
    "Selu": "test_selu",
    "RMSNormalization": "test_rms_normalization",
}

ort.set_default_logger_severity(4)  # failures surface as exceptions, reported per case


def family_of(case: str) -> Optional[str]:
    for op, prefix in FAMILIES.items():
        if case == prefix or case.startswith(prefix + "_"):
            return op
    return None


def twin_name(case: str) -> str:
    """test_selu_expanded_ver18 -> test_selu."""
    return EXPANDED.sub("", case)


def ops_text(ops: list[tuple[str, str]], limit: int = 8) -> str:
    """'ReduceMean x2, Sub, ...' for a list of (domain, op_type)."""
    counts = Counter(f"{d}.{t}" if d else t for d, t in ops)
    parts = [f"{k} x{n}" if n > 1 else k for k, n in counts.most_common()]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f", +{more} more" if more > 0 else "")


# ---------------------------------------------------------------------------
# Section 1 and 2: the expanded cases
# ---------------------------------------------------------------------------

def as_comparable(a: np.ndarray) -> np.ndarray:
    """ml_dtypes arrays (bfloat16, float8, int4, ...) as float32; others unchanged."""
    a = np.asarray(a)
    if a.dtype.kind == "V" or a.dtype.name in ("bfloat16", "int4", "uint4", "int2", "uint2") \
            or a.dtype.name.startswith("float8") or a.dtype.name.startswith("float4"):
        return a.astype(np.float32)
    return a


def compare_expected(names: list[str], expected: list[np.ndarray],
                     got: dict[str, np.ndarray]) -> Optional[str]:
    """None when every output matches at the case tolerance, else why not."""
    for name, e in zip(names, expected):
        if name not in got:
            return f"output {name!r} missing"
        kind = np.asarray(e).dtype.name
        rtol, atol = NARROW_TOL.get(kind, (CASE_RTOL, CASE_ATOL))
        with np.errstate(invalid="ignore"):  # inf - inf in the difference
            _, why = oc.compare({name: as_comparable(e)}, {name: as_comparable(got[name])},
                                rtol=rtol, atol=atol)
        if why:
            return why
    return None


def data_sets(case_dir: Path) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    sets = []
    for d in sorted(case_dir.glob("test_data_set_*")):
        def load(prefix: str) -> list[np.ndarray]:
            files = sorted(d.glob(f"{prefix}_*.pb"), key=lambda p: int(p.stem.split("_")[-1]))
            return [numpy_helper.to_array(onnx.load_tensor(str(p))) for p in files]
        sets.append((load("input"), load("output")))
    return sets


# ml_dtypes names -> ONNX element types that onnxruntime's Python binding takes
# only as raw bits (float8 as uint8, bfloat16 as uint16); the 2- and 4-bit types
# it cannot take or return at all (those cases go to the `modc run` fallback).
RAW_BITS = {"bfloat16": onnx.TensorProto.BFLOAT16,
            "float8_e4m3fn": onnx.TensorProto.FLOAT8E4M3FN,
            "float8_e4m3fnuz": onnx.TensorProto.FLOAT8E4M3FNUZ,
            "float8_e5m2": onnx.TensorProto.FLOAT8E5M2,
            "float8_e5m2fnuz": onnx.TensorProto.FLOAT8E5M2FNUZ}


def ort_outputs(model: Path, in_names: list[str], inputs: list[np.ndarray],
                expected: list[np.ndarray]) -> dict[str, np.ndarray]:
    """onnxruntime's outputs by name; float8 outputs come back with `expected`'s dtype."""
    sess = real_models.ort_session(model)
    names = [o.name for o in sess.get_outputs()]
    if not any(a.dtype.name in RAW_BITS for a in inputs):
        got = sess.run(names, dict(zip(in_names, inputs)))
    else:
        feeds = {}
        for name, a in zip(in_names, inputs):
            a = np.ascontiguousarray(a)
            if a.dtype.name in RAW_BITS:
                bits = np.uint8 if a.dtype.itemsize == 1 else np.uint16
                feeds[name] = ort.OrtValue.ortvalue_from_numpy_with_onnx_type(
                    a.view(bits), RAW_BITS[a.dtype.name])
            else:
                feeds[name] = ort.OrtValue.ortvalue_from_numpy(a)
        got = [v.numpy() for v in sess.run_with_ort_values(names, feeds)]
    for k, e in enumerate(expected[: len(got)]):
        if e.dtype.name in RAW_BITS and got[k].dtype.itemsize == e.dtype.itemsize \
                and got[k].dtype.kind == "u":
            got[k] = got[k].view(e.dtype)
    return dict(zip(names, got))


def modc_run_outputs(modc: str, model: Path, case_dir: Path, set_index: int,
                     in_names: list[str], out_names: list[str], tmp: Path,
                     timeout: float) -> dict[str, np.ndarray]:
    sets = sorted(case_dir.glob("test_data_set_*"))
    outdir = Path(tempfile.mkdtemp(prefix="run-", dir=tmp))
    cmd = [modc, "run", str(model), "--output-dir", str(outdir)]
    for k, name in enumerate(in_names):
        cmd += ["--input", f"{name}={sets[set_index] / f'input_{k}.pb'}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(oc.one_line(r.stderr or r.stdout))
    return {name: np.load(outdir / f"output_{k}.npy") for k, name in enumerate(out_names)}


def first_mismatch(sets: list[tuple[list[np.ndarray], list[np.ndarray]]], out_names: list[str],
                   run, who: str) -> Optional[str]:
    """Runs `run(k, inputs, expected)` on every data set and compares its outputs.

    None when every output of every set matches, else why not (a failure to
    run is a reason too, prefixed with `who`).
    """
    try:
        for k, (inputs, expected) in enumerate(sets):
            why = compare_expected(out_names, expected, run(k, inputs, expected))
            if why:
                return why
        return None
    except Exception as e:  # noqa: BLE001 -- any runner failure is a reason
        return f"{who + ': ' if who else ''}{type(e).__name__}: {oc.one_line(str(e), 200)}"


def check_case(job: tuple[str, str, str, float]) -> dict:
    """Optimizes one expanded case and checks it; returns its result record."""
    modc, case_dir_s, node_dir_s, timeout = job
    case_dir = Path(case_dir_s)
    name = case_dir.name
    twin = twin_name(name)
    res: dict = {"case": name, "twin": twin, "family": family_of(name), "status": None,
                 "reason": None, "nodes_in": None, "nodes_twin": None, "nodes_out": None,
                 "ops_out": None, "compared_with": None}
    try:
        model = onnx.load(str(case_dir / "model.onnx"))
        res["nodes_in"] = oc.count_nodes(model)
        twin_path = Path(node_dir_s) / twin / "model.onnx"
        if twin_path.exists():
            twin_ops = oc.counted_ops(onnx.load(str(twin_path)))
            res["nodes_twin"] = len(twin_ops)
            if res["family"] and twin_ops != [("", res["family"])]:
                res["family"] = None  # a prefix clash (say test_softmax_cross_entropy_*)
        io = list(model.graph.input) + list(model.graph.output)
        if any(not x.type.HasField("tensor_type") for x in io):
            res.update(status="skipped", reason="sequence/optional io")
            return res
        inits = {t.name for t in model.graph.initializer}
        in_names = [x.name for x in model.graph.input if x.name not in inits]
        out_names = [x.name for x in model.graph.output]

        with tempfile.TemporaryDirectory(prefix="modc-fusecheck-") as tmp_s:
            tmp = Path(tmp_s)
            out = tmp / "model.onnx"
            cmd = [modc, "optimize", str(case_dir / "model.onnx"), "-o", str(out), "-O3", "--quiet"]
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                res.update(status="refused", reason=f"modc timed out after {timeout:.0f} s")
                return res
            if r.returncode != 0:
                res.update(status="refused",
                           reason=f"exit {r.returncode}: {oc.one_line(r.stderr or r.stdout, 200)}")
                return res
            opt = onnx.load(str(out))
            ops = oc.counted_ops(opt)
            res["nodes_out"] = len(ops)
            res["ops_out"] = [f"{d}.{t}" if d else t for d, t in ops]

            sets = data_sets(case_dir)
            orig = case_dir / "model.onnx"

            def ort_on(m: Path):
                return lambda k, inputs, expected: ort_outputs(m, in_names, inputs, expected)

            def modc_on(m: Path):
                return lambda k, inputs, expected: modc_run_outputs(
                    modc, m, case_dir, k, in_names, out_names, tmp, timeout)

            via = "onnxruntime"
            why = first_mismatch(sets, out_names, ort_on(out), "onnxruntime")
            if why is not None:
                # onnxruntime is no judge where it cannot run (or match) the original.
                orig_why = first_mismatch(sets, out_names, ort_on(orig), "onnxruntime")
                if orig_why is not None:
                    res["ort_original"] = orig_why
                    via = "modc run"
                    why = first_mismatch(sets, out_names, modc_on(out), "modc run")
                    if why is not None and first_mismatch(sets, out_names, modc_on(orig), "") is not None:
                        res.update(status="skipped", reason="neither onnxruntime nor modc run runs "
                                   f"(and matches) the original ({oc.one_line(orig_why, 90)})")
                        return res
            res["compared_with"] = via
            if why is None:
                res["status"] = "ok"
            else:
                if via == "onnxruntime":
                    # Tell onnxruntime's gaps (an op it lacks or gets wrong) from wrong rewrites.
                    modc_why = first_mismatch(sets, out_names, modc_on(out), "modc run")
                    why += "; modc run on it: " + ("matches" if modc_why is None else modc_why)
                res.update(status="mismatch", reason=why)
            return res
    except Exception as e:  # noqa: BLE001 -- a broken case is a result, not a crash
        res.update(status="error", reason=f"{type(e).__name__}: {oc.one_line(str(e), 200)}")
        return res


def family_verdict(r: dict) -> str:
    """'single op', 'one fused node' or 'other' for a family case's result."""
    ops = r.get("ops_out")
    if ops is not None and len(ops) == 1:
        if ops[0] == r["family"]:
            return "single op"
        if ops[0].startswith(FUSED_DOMAIN + "."):
            return "one fused node"
    return "other"


def report_expanded(results: list[dict]) -> tuple[list[str], dict]:
    """Prints sections 1 and 2; returns (enforced failures, family table)."""
    n = len(results)
    by = Counter(r["status"] for r in results)
    optimized = [r for r in results if r["nodes_out"] is not None]
    fewer = [r for r in optimized if r["nodes_twin"] is not None and r["nodes_out"] <= r["nodes_twin"]]
    compared = [r for r in results if r["status"] in ("ok", "mismatch")]
    via_modc = [r for r in compared if r["compared_with"] == "modc run"]
    ort_orig = [r for r in results if "ort_original" in r]
    print(f"== expanded cases: {n}")
    print(f"  optimized by modc -O3:          {len(optimized)}")
    print(f"  refused by modc:                {by['refused']}")
    print(f"  skipped (sequence/optional io): "
          f"{sum(1 for r in results if r['reason'] == 'sequence/optional io')}")
    print(f"  ort cannot run/match original:  {len(ort_orig)} "
          f"(compared with modc run: {len(via_modc)}, skipped: "
          f"{sum(1 for r in ort_orig if r['status'] == 'skipped')})")
    print(f"  outputs match expected:         {by['ok']} of {len(compared)} compared")
    print(f"  nodes <= non-expanded twin:     {len(fewer)} of {n}")
    print(f"  counted nodes, all optimized:   {sum(r['nodes_in'] for r in optimized)} expanded -> "
          f"{sum(r['nodes_out'] for r in optimized)} at -O3 (twins: "
          f"{sum(r['nodes_twin'] or 0 for r in optimized)})")
    if by["error"]:
        print(f"  script errors:                  {by['error']}")
    for r in results:
        if r["status"] in ("refused", "mismatch", "error"):
            print(f"  {r['status'].upper():8} {r['case']}: {r['reason']}")
    unrunnable = [r for r in results if r["status"] == "skipped" and "ort_original" in r]
    if unrunnable:
        print(f"  skipped, neither onnxruntime nor modc run runs (and matches) the original "
              f"({len(unrunnable)}; reasons in --json): " + ", ".join(r["case"] for r in unrunnable))

    failures = []
    table = {}
    print("\n== families (each expanded case must become the op or one fused node)")
    print(f"  {'family':20} {'cases':>5} {'single op':>9} {'fused':>5} {'other':>5} {'matched':>8}")
    others = []
    for op in FAMILIES:
        rs = [r for r in results if r["family"] == op]
        if not rs:
            continue
        verdicts = Counter(family_verdict(r) for r in rs)
        matched = sum(1 for r in rs if r["status"] == "ok")
        table[op] = {"cases": len(rs), "single_op": verdicts["single op"],
                     "fused": verdicts["one fused node"], "other": verdicts["other"],
                     "matched": matched}
        print(f"  {op:20} {len(rs):5} {verdicts['single op']:9} {verdicts['one fused node']:5} "
              f"{verdicts['other']:5} {matched:4}/{len(rs):<3}")
        for r in rs:
            bad = []
            if family_verdict(r) == "other":
                if r["ops_out"] is None:
                    bad.append(f"not optimized ({r['status']}: {r['reason']})")
                else:
                    ops = [tuple(o.rsplit(".", 1)) if "." in o else ("", o) for o in r["ops_out"]]
                    bad.append(f"{len(ops)} nodes: {ops_text(ops)}")
            if r["status"] != "ok" and r["ops_out"] is not None:
                bad.append(f"outputs: {r['status']}: {r['reason']}")
            if bad:
                others.append(f"  {r['case']}: {'; '.join(bad)}")
                failures.append(f"family case {r['case']}")
    fam_cases = sum(t["cases"] for t in table.values())
    print(f"  {fam_cases - len(others)} of {fam_cases} family cases pass")
    if others:
        print("  failing family cases:")
        print("\n".join("  " + o for o in others))
    return failures, table


# ---------------------------------------------------------------------------
# Section 3: magika
# ---------------------------------------------------------------------------

def graph_ops(model: onnx.ModelProto) -> Counter:
    return Counter(f"{d}.{t}" if d else t for d, t in oc.counted_ops(model))


def kernel_body_ops(model) -> Counter:
    """Op types inside the fused kernels (the ai.modc local functions)."""
    c = Counter()
    for f in model.functions:
        if f.domain == FUSED_DOMAIN:
            c.update(n.op_type for n in f.node)
    return c


def fused_count(ops: Counter) -> int:
    return sum(n for k, n in ops.items() if k.startswith(FUSED_DOMAIN + "."))


def check_magika(args, path: Path) -> tuple[list[str], dict]:
    print(f"\n== magika ({path.name})")
    model = onnx.load(str(path))
    sess = real_models.ort_session(path)
    feeds = real_models.inputs_for(path, sess)
    expected = oc.run_outputs(sess, feeds)
    del sess
    scopes = {m.group(0) for n in model.graph.node
              for m in [re.search(r"LayerNorm_\d+", n.name + " " + " ".join(n.output))] if m}
    info: dict = {"nodes_orig": oc.count_nodes(model), "layernorm_scopes": len(scopes)}
    print(f"  {'original':16} nodes {info['nodes_orig']:4}, LayerNorm_<k> name scopes {len(scopes)}")
    failures = []
    variants = [("-O2", "O2", []), ("-O3", "O3", []), ("-O3 --opset 17", "O3", ["--opset", "17"])]
    ops_of = {}
    deep_of = {}
    with tempfile.TemporaryDirectory(prefix="modc-fusecheck-magika-") as tmp_s:
        tmp = Path(tmp_s)
        for label, level, extra in variants:
            out = tmp / f"{level}{'-'.join(extra)}.onnx"
            err, _, _ = oc.run_modc(args.modc, path, out, level, extra, {}, tmp, args.timeout)
            if err is not None:
                print(f"  {label:16} FAILED: {err}")
                failures.append(f"magika {label}: modc failed")
                info[label] = {"error": err}
                continue
            opt = onnx.load(str(out))
            ops = graph_ops(opt)
            inner = kernel_body_ops(opt)
            ops_of[label] = ops
            # Ops of the model with the fused kernels' bodies included (a
            # LayerNormalization inside a fused kernel is still one).
            deep = ops + inner
            problems = []
            try:
                onnx.checker.check_model(str(out), full_check=True)
            except Exception as e:  # noqa: BLE001 -- ValidationError, InferenceError, ...
                problems.append(f"checker: {type(e).__name__}: {oc.one_line(str(e), 200)}")
            try:
                got = oc.run_outputs(real_models.ort_session(out), feeds)
                worst, why = oc.compare(expected, got)
                if why:
                    problems.append(f"vs onnxruntime on the original: {why}")
            except Exception as e:  # noqa: BLE001
                worst = float("nan")
                problems.append(f"onnxruntime: {type(e).__name__}: {oc.one_line(str(e), 200)}")
            deep_of[label] = deep
            info[label] = {"nodes": sum(ops.values()), "layernorm": deep["LayerNormalization"],
                           "layernorm_in_kernels": inner["LayerNormalization"],
                           "fused": fused_count(ops), "reducemean": deep["ReduceMean"],
                           "sqrt": deep["Sqrt"], "max_abs_diff": worst, "problems": problems}
            print(f"  {label:16} nodes {sum(ops.values()):4}, LayerNormalization "
                  f"{deep['LayerNormalization']} ({inner['LayerNormalization']} inside fused kernels), "
                  f"fused {fused_count(ops)}, "
                  f"ReduceMean {deep['ReduceMean']}, Sqrt {deep['Sqrt']} (kernel bodies included), "
                  f"max abs diff {worst:.3e}" + ("" if not problems else ": " + "; ".join(problems)))
            if problems:
                failures.append(f"magika {label}: checker or outputs")
    o17 = deep_of.get("-O3 --opset 17")
    if o17 is not None:
        if o17["LayerNormalization"] != len(scopes):
            failures.append(f"magika -O3 --opset 17: {o17['LayerNormalization']} LayerNormalization "
                            f"nodes, expected {len(scopes)}")
        if o17["ReduceMean"] or o17["Sqrt"]:
            failures.append(f"magika -O3 --opset 17: leftover ReduceMean {o17['ReduceMean']}, "
                            f"Sqrt {o17['Sqrt']}")
    o3, o2 = ops_of.get("-O3"), ops_of.get("-O2")
    if o3 is not None:
        if fused_count(o3) < 1:
            failures.append("magika -O3: no fused (ai.modc) node")
        if o2 is not None and sum(o3.values()) >= sum(o2.values()):
            failures.append(f"magika -O3: {sum(o3.values())} nodes, not fewer than -O2's "
                            f"{sum(o2.values())}")
    for f in failures:
        print(f"  FAILED {f}")
    return failures, info


# ---------------------------------------------------------------------------
# Section 4: real models at -O3
# ---------------------------------------------------------------------------

def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def pipeline_ms(args, path: Path, level: str, tmp: Path) -> Optional[float]:
    out = tmp / f"timed-{level}.onnx"
    err, _, rep = oc.run_modc(args.modc, path, out, level, ["--quiet"], {}, tmp, args.timeout)
    if err is not None or not isinstance(rep, dict):
        return None
    v = rep.get("optimize_ms")
    return float(v) if isinstance(v, (int, float)) else None


def check_real_models(args, models: list[tuple[str, Path, str]]) -> tuple[list[str], list[dict]]:
    print(f"\n== real models at -O3 (optimize_check's checks; time = pass pipeline, "
          f"best of {args.repeat}, -O2 and -O3 interleaved)")
    failures, rows = [], []
    ns = argparse.Namespace(modc=args.modc, level="O3", timeout=args.timeout, keep=None)
    for label, path, kind in models:
        row: dict = {"model": label}
        with tempfile.TemporaryDirectory(prefix="modc-fusecheck-real-") as tmp_s:
            tmp = Path(tmp_s)
            try:
                ok, text, stats = oc.check_one(ns, label, path, kind, tmp)
            except (Exception, SystemExit) as e:  # noqa: BLE001 -- real_models exits on unknown models
                ok, text, stats = False, f"{type(e).__name__}: {oc.one_line(str(e))}", {}
            row.update(ok=ok, text=text, nodes_o3=stats.get("nodes_after"))
            times = {"O2": [], "O3": []}
            n2 = None
            for _ in range(args.repeat):
                for level in ("O2", "O3"):
                    t = pipeline_ms(args, path, level, tmp)
                    if t is not None:
                        times[level].append(t)
            o2_out = tmp / "timed-O2.onnx"
            if o2_out.exists():
                n2 = oc.count_nodes(onnx.load(str(o2_out)))
        row["nodes_o2"] = n2
        t2 = min(times["O2"]) if times["O2"] else None
        t3 = min(times["O3"]) if times["O3"] else None
        ratio = t3 / t2 if t2 and t3 is not None else None
        row.update(ms_o2=t2, ms_o3=t3, ratio=ratio, ms_o2_runs=times["O2"], ms_o3_runs=times["O3"])
        problems = [] if ok else [text]
        if n2 is None:
            problems.append("-O2 run failed")
        elif row["nodes_o3"] is not None and row["nodes_o3"] > n2:
            problems.append(f"-O3 has more nodes than -O2 ({row['nodes_o3']} > {n2})")
        if ratio is None:
            problems.append("no pipeline time")
        elif args.max_time_ratio and ratio > args.max_time_ratio:
            problems.append(f"-O3 takes {ratio:.2f}x the time of -O2 (limit {args.max_time_ratio:g}x)")
        row["problems"] = problems
        rows.append(row)
        print(f"  {'ok    ' if not problems else 'FAILED'} {label:45} "
              f"nodes {fmt(stats.get('nodes_before'), 'd'):>4} -> O2 {fmt(n2, 'd'):>4}, "
              f"O3 {fmt(row['nodes_o3'], 'd'):>4}; ms O2 {fmt(t2, '.2f'):>7}, "
              f"O3 {fmt(t3, '.2f'):>7}, O3/O2 {fmt(ratio, '.2f'):>5}", flush=True)
        for p in problems:
            print(f"         {p}")
        if problems:
            failures.append(f"real model {label}")
    return failures, rows


# ---------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modc", required=True, help="path of the modc binary")
    ap.add_argument("--json", type=Path, default=None, help="write every result as JSON to OUT")
    ap.add_argument("--only", action="append", default=[],
                    help="only cases whose name / models whose path contains SUBSTR (repeatable)")
    ap.add_argument("--report-only", action="store_true", help="always exit 0")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes for the expanded cases (default: the CPU count)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per level and real model")
    ap.add_argument("--max-time-ratio", type=float, default=2.0,
                    help="fail when -O3's pipeline time exceeds this times -O2's (0: no check)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="test data dir (default: $MODC_TESTDATA or <repo>/target/modc-testdata)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per modc run")
    args = ap.parse_args()
    t_start = time.perf_counter()

    cache = (args.cache or fetch_testdata.default_cache()).resolve()
    node_dir = cache / "onnx-backend" / "node"
    cases = sorted(d for d in node_dir.glob("*_expanded*") if d.is_dir() and EXPANDED.search(d.name))
    if args.only:
        cases = [d for d in cases if any(o in d.name for o in args.only)]
    models = [m for m in oc.discover(cache, args.only) if m[2] == "real"]
    if not cases and not models:
        print(f"nothing to check under {cache} (run python3 scripts/fetch_testdata.py first)"
              + (f" matching {args.only}" if args.only else ""), file=sys.stderr)
        return 1

    failures: list[str] = []
    out: dict = {"modc": args.modc}
    if cases:
        jobs = [(args.modc, str(d), str(node_dir), args.timeout) for d in cases]
        if args.jobs > 1:
            with ProcessPoolExecutor(max_workers=args.jobs) as pool:
                results = list(pool.map(check_case, jobs, chunksize=4))
        else:
            results = [check_case(j) for j in jobs]
        f, table = report_expanded(results)
        failures += f
        out.update(expanded=results, families=table)
    magika = [m for m in models if "magika" in str(m[1])]
    if magika:
        f, info = check_magika(args, magika[0][1])
        failures += f
        out["magika"] = info
    if models:
        f, rows = check_real_models(args, models)
        failures += f
        out["real_models"] = rows

    out["failures"] = failures
    out["seconds"] = time.perf_counter() - t_start
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    print(f"\n({out['seconds']:.0f} s)")
    if failures:
        print(f"fusion check: FAILED ({len(failures)} enforced checks"
              + (", --report-only" if args.report_only else "") + ")")
        return 0 if args.report_only else 1
    print("fusion check: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
