#!/usr/bin/env bash
# On a lent GPU machine (see ../shared/gpu/prepare): install heterocnn from this checkout with
# CUDA for the card's architecture, then run what is asked:
#   tools/gpu_run.sh [tests] [bench] [lab]
# bench runs apps/bench.py --suite ${BENCH_SUITES:-all} ${BENCH_ARGS} (its JSON lands in $OUT
# under its default name: copy it into benchmarks/ and run python apps/bench.py --report).
# All suites take longer than one 10-minute device call: split them, e.g.
# BENCH_SUITES=gpu,layers,gemm,tta in one call, memory in a second, cpu in a third.
# Logs and JSON go to $OUT (default /tmp/hc-out).
set -uo pipefail
OUT=${OUT:-/tmp/hc-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m pip install -q --no-build-isolation --no-deps --no-index \
  -C setup-args=-Dgpu_archs="$arch" -C build-dir=/tmp/hc-build . > "$OUT/install.log" 2>&1 \
  || { tail -40 "$OUT/install.log"; exit 1; }
for what in "$@"; do
  case $what in
    tests) python3 -m pytest -q -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest.log" | tail -25 ;;
    bench) python3 apps/bench.py --suite "${BENCH_SUITES:-all}" --data .gpu/data --json "$OUT/" \
             --no-report ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log" ;;
    lab) ARCH=$arch bash cuda/dev/build_and_run.sh all "$OUT" 2>&1 | tail -30 ;;
  esac
done
