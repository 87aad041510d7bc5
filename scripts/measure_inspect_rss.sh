#!/usr/bin/env bash
# Measure the peak memory of `modc inspect` on two big models.
#
# Usage: scripts/measure_inspect_rss.sh MODC_BINARY DIR [GIB]
#
# Builds nothing. If DIR lacks big_inline.onnx or big_external.onnx(.data),
# runs scripts/make_big_model.py DIR --gib GIB (default 1.0) first. Then, for
# each model, runs `/usr/bin/time -v MODC_BINARY inspect MODEL` and prints the
# model size on disk (model + external data), the maximum resident set size,
# and RSS/size. Installs GNU time with apt-get if /usr/bin/time is missing.
# Exits non-zero if modc fails on either model.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 MODC_BINARY DIR [GIB]" >&2
    exit 2
fi
modc=$1
dir=$2
gib=${3:-1.0}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ ! -x $modc ]]; then
    echo "error: $modc is not an executable" >&2
    exit 2
fi
if [[ ! -x /usr/bin/time ]]; then
    echo "installing GNU time..." >&2
    if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get install -y time >/dev/null || { $sudo apt-get update >/dev/null && $sudo apt-get install -y time >/dev/null; }
fi
if [[ ! -f $dir/big_inline.onnx || ! -f $dir/big_external.onnx || ! -f $dir/big_external.onnx.data ]]; then
    python3 "$here/make_big_model.py" "$dir" --gib "$gib"
fi

status=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
printf '%-20s %12s %12s %10s %8s\n' model "size MiB" "RSS MiB" RSS/size "wall s"
for name in big_inline.onnx big_external.onnx; do
    model=$dir/$name
    size=$(stat -c %s "$model")
    if [[ -f $model.data ]]; then
        size=$((size + $(stat -c %s "$model.data")))
    fi
    if ! /usr/bin/time -v "$modc" inspect "$model" >/dev/null 2>"$log"; then
        echo "error: $modc inspect $model failed:" >&2
        grep -v -E '^\s' "$log" | grep -v 'Command exited' >&2 || true
        status=1
        continue
    fi
    rss_kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
    awk -v n="$name" -v s="$size" -v r="$rss_kib" -v w="$wall" 'BEGIN {
        rss = r * 1024;
        printf "%-20s %12.1f %12.1f %10.3f %8s\n", n, s / 1048576, rss / 1048576, rss / s, w
    }'
done
exit $status
