#!/usr/bin/env bash
# On a lent GPU machine: the CUDA path under compute-sanitizer, each tool over the GPU tests.
#   tools/gpu_sanitize.sh [memcheck] [racecheck] [initcheck] [-- PYTEST_ARGS...]
# (default: all three tools over tests/test_cuda.py; e.g. `-- -k reproducible` for a subset).
# Installs heterocnn as tools/gpu_run.sh does, then runs, per tool,
#   compute-sanitizer --tool TOOL --error-exitcode 3 python3 -m pytest -q tests/test_cuda.py
# Any hazard the sanitizer reports makes that run exit 3; the script exits non-zero if any tool
# found something or a test failed. CUDA API errors are not reported by the sanitizer: heterocnn
# checks every call itself and the tests provoke some on purpose (out of device memory).
# Logs go to $OUT/sanitize-TOOL.log (default OUT=/tmp/hc-out); TIMEOUT (s, default 3000) bounds
# each tool.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/hc-out}
TIMEOUT=${TIMEOUT:-3000}
mkdir -p "$OUT"
tools=()
while (($#)) && [[ $1 != -- ]]; do tools+=("$1"); shift; done
[[ ${1:-} == -- ]] && shift
((${#tools[@]})) || tools=(memcheck racecheck initcheck)
pytest_args=("$@")

bash tools/gpu_run.sh || exit 1         # no arguments: installs heterocnn only
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
command -v compute-sanitizer > /dev/null || PATH=/usr/local/cuda/bin:$PATH
compute-sanitizer --version | tail -1

status=0
for tool in "${tools[@]}"; do
  case $tool in
    memcheck|racecheck|initcheck) ;;
    *) echo "unknown tool $tool (memcheck, racecheck, initcheck)"; exit 2 ;;
  esac
  start=$SECONDS
  timeout "$TIMEOUT" compute-sanitizer --tool "$tool" --error-exitcode 3 \
    --report-api-errors no --target-processes all --print-limit 100 \
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py "${pytest_args[@]}" \
    > "$OUT/sanitize-$tool.log" 2>&1
  rc=$?
  summary=$(grep -E "ERROR SUMMARY|RACECHECK SUMMARY|passed|failed" "$OUT/sanitize-$tool.log" | tail -3 | tr '\n' ' ')
  echo "$tool: exit $rc in $((SECONDS - start)) s: $summary"
  ((rc == 0)) || { status=1; grep -m 20 -E "^========= " "$OUT/sanitize-$tool.log"; }
done
exit $status
