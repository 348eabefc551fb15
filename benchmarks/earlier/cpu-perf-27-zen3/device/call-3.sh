#!/usr/bin/env bash
# Session 2026-12-07i call 3 (budget left for a short call only): this tree's C++ tests on the
# GPU machine's AVX-512 Xeon host (test_ops runs Winograd's case list with the AVX-512 and the
# AVX2 transforms), CPU-only meson build; then bnnet's and convnet's CPU step, ec064c4 against
# this tree, if time is left.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/res; mkdir -p $R
{ lscpu | grep -E "Model name|^CPU\(s\)"; grep -o -m1 "avx512f" /proc/cpuinfo; cat /proc/loadavg; } | tee $R/host.txt
( meson setup /tmp/mb-head . -Dcuda=disabled -Dopenmp=enabled && ninja -C /tmp/mb-head tests/test_ops tests/test_gemm tests/time_step ) > $R/meson-head.log 2>&1 &
( mkdir -p /tmp/src-old && tar -xf .gpu/old.tar -C /tmp/src-old && meson setup /tmp/mb-old /tmp/src-old -Dcuda=disabled -Dopenmp=enabled && ninja -C /tmp/mb-old tests/time_step ) > $R/meson-old.log 2>&1 &
wait
echo "built $(el) s"; tail -3 $R/meson-head.log
timeout 120 /tmp/mb-head/tests/test_ops > $R/test_ops.txt 2>&1; echo "test_ops rc $?: $(tail -1 $R/test_ops.txt)"
grep -i -B1 -A1 "winograd" $R/test_ops.txt | head -8
timeout 60 /tmp/mb-head/tests/test_gemm > $R/test_gemm.txt 2>&1; echo "test_gemm rc $?: $(tail -1 $R/test_gemm.txt)"
for r in 1 2; do
  for b in old head; do
    for spec in "convnet 64 10" "bnnet 64 6"; do
      OMP_NUM_THREADS=2 taskset -c 2,3 timeout 40 /tmp/mb-$b/tests/time_step $spec 3 >> $R/cpu-ab-$b.txt 2>&1
    done
    echo "r$r $b: $(tail -2 $R/cpu-ab-$b.txt | awk '{print $1, $5}' | tr '\n' ' ')"
  done
done
echo "end $(el) s"
