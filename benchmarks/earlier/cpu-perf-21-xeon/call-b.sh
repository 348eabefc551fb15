#!/usr/bin/env bash
# Session 2026-12-07d call B: AVX-512 micro-kernel variants on one Xeon core, hot panels
# (.gpu/exp/kernels.cpp), against the FMA peak; then sgemm (time_gemm) and numpy at one thread.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/b; mkdir -p $R
g++ -O3 -std=c++17 -mavx512f -mavx512vl -mavx512dq -mfma .gpu/exp/kernels.cpp -o /tmp/kern || exit 1
objdump -d --no-show-raw-insn /tmp/kern > $R/kern.asm
which perf > $R/perf.txt 2>&1; perf stat -e cycles,instructions true >> $R/perf.txt 2>&1
grep -m1 MHz /proc/cpuinfo >> $R/perf.txt
for r in 1 2 3; do echo "## r$r cpu 3"; taskset -c 3 /tmp/kern 0.2; echo "## r$r cpu 9"; taskset -c 9 /tmp/kern 0.2; done > $R/kern.txt 2>&1
echo "kern $(el) s"
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_gemm) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
S="NN,1024,1024,1024 NN,2048,2048,2048 NT,256,256,784 TN,256,784,256 NN,256,784,256"
for r in 1 2 3; do
  echo "## r$r ours"; OMP_NUM_THREADS=1 taskset -c 5 /tmp/b/tests/time_gemm 0.2 $S | tail -5
  echo "## r$r numpy"; OPENBLAS_NUM_THREADS=1 taskset -c 5 python3 .gpu/exp/np_gemm.py 0.2 $S
done > $R/gemm1t.txt 2>&1
echo "end $(el) s"
