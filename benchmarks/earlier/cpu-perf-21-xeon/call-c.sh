#!/usr/bin/env bash
# Session 2026-12-07d call C: where sgemm's driver loses on one Xeon core (the kernel alone runs
# at ~180 GFLOP/s there, call B): variants without the C prefetch, with it into L2, without
# repacking (timing only), other KC/NC/MC, at 1 thread (cpu 5) and 2 (cpus 5,6), numpy beside.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/c; mkdir -p $R
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_step) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
V="base nopfc pfc1 nopack kc384 kc512 nc1536 mc256"
bash .gpu/exp/variants.sh /tmp/b /tmp/var $V > /tmp/var.log 2>&1 || { tail -20 /tmp/var.log; exit 1; }
echo "built $(el) s"
S="NN,1024,1024,1024 NN,2048,2048,2048 NT,256,256,784 TN,256,784,256 NN,256,784,256 NN,64,784,256"
for r in 1 2 3; do
  for v in $V; do echo "$v $(OMP_NUM_THREADS=1 taskset -c 5 /tmp/var/$v/time_gemm 0.15 $S | tail -6 | awk '{printf "%s ", $7}')"; done
  echo "numpy $(OPENBLAS_NUM_THREADS=1 taskset -c 5 python3 .gpu/exp/np_gemm.py 0.15 $S | awk '{printf "%s ", $3}')"
done > $R/g1t.txt 2>&1
echo "1t $(el) s"
for r in 1 2; do
  for v in $V; do echo "$v $(OMP_NUM_THREADS=2 taskset -c 5,6 /tmp/var/$v/time_gemm 0.15 $S | tail -6 | awk '{printf "%s ", $8}') step mlp 256 $(OMP_NUM_THREADS=2 taskset -c 5,6 /tmp/var/$v/time_step mlp 256 200 3 | tail -1 | awk '{print $6}')"; done
  echo "numpy $(OPENBLAS_NUM_THREADS=2 taskset -c 5,6 python3 .gpu/exp/np_gemm.py 0.15 $S | awk '{printf "%s ", $3}')"
done > $R/g2t.txt 2>&1
echo "end $(el) s"
