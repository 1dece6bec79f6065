#!/usr/bin/env bash
# Performance gate: run the gate profile (every gated figure at P=16) on a
# throwaway local Valkey (or FF_BENCH_ADDR with FLUSHALL allowed), then
# compare ratios and counters with ci/baseline.json. A failing metric is
# measured again (twice) before the gate fails; each regression is printed
# with its size. Exit 1 on a regression or lost/duplicated work.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
out=${FF_BENCH_OUT:-$(mktemp -d -t ffbench-gate-XXXXXX)}
target=()
if [ -n "${FF_BENCH_ADDR:-}" ]; then
  target=(--addr "$FF_BENCH_ADDR" --flush)
fi

bin="$out/ffbench"
$GO build -o "$bin" ./cmd/ffbench
status=0
"$bin" run --profile gate --out "$out" "${target[@]}" "$@" || status=$?
if [ ! -f "$out/report.json" ]; then
  echo "perf-gate: the run wrote no report" >&2
  exit 2
fi
"$bin" gate --baseline ci/baseline.json --report "$out/report.json" --remeasure 2 "${target[@]}" || status=$?
echo "perf-gate: reports in $out"
exit $status
