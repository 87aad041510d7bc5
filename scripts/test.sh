#!/usr/bin/env bash
# Runs every test of modc: installs the Python reference tools if missing, fetches
# the pinned test data on first use (cached in target/modc-testdata), runs the Rust
# tests (the ONNX backend conformance of the interpreter among them), checks that
# `modc run` gives onnxruntime's outputs on the real models, that `modc optimize
# -O2 --verify` keeps every real and light model equivalent, that -O3 (fusion)
# turns the backend's expanded LayerNormalization/Gelu/Softmax/... cases back into
# single ops and keeps the real models equivalent (scripts/fusion_check.py), then
# checks with onnx and onnxruntime that `modc convert` keeps the meaning of every
# test model.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c "import onnx, onnxruntime, numpy, PIL" 2>/dev/null; then
    python3 -m pip install --quiet -r scripts/requirements.txt
fi
python3 scripts/fetch_testdata.py
export MODC_REQUIRE_TESTDATA=1
cargo test --all-targets
cargo test --doc
cargo build --bin modc
python3 scripts/real_models.py --modc target/debug/modc
python3 scripts/optimize_check.py --modc target/debug/modc
python3 scripts/fusion_check.py --modc target/debug/modc
python3 scripts/gpu_check.py --modc target/debug/modc --repeat 3 --require-no-fallback
python3 scripts/plan_check.py --modc target/debug/modc
python3 scripts/roundtrip_check.py --modc target/debug/modc
