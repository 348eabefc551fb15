#!/usr/bin/env bash
# Session 2026-12-07d call F (HEAD 2a0f38f): the packing change on the Xeon host, old (47845ba's
# gemm_avx512.cpp) against new, alternating, three rounds: time_step at 2 threads (cpus 2,3) and
# 16, time_gemm at 1 and 2 threads.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/f; mkdir -p $R
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_step) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
bash .gpu/exp/variants.sh /tmp/b /tmp/var old base > /tmp/var.log 2>&1 || { tail -20 /tmp/var.log; exit 1; }
echo "built $(el) s"
S="NN,1024,1024,1024 NT,256,256,784 TN,256,784,256 NN,256,784,256 NN,64,784,256 NT,64,256,784"
st() { OMP_NUM_THREADS=$1 taskset -c $2 /tmp/var/$v/time_step $3 $4 $5 3 | tail -1 | awk '{printf "%s ", $6}'; }
for r in 1 2 3; do for v in old base; do
  echo "$v r$r 2t: $(for n in 'mlp 64 400' 'mlp 256 150' 'lenet5 256 40' 'convnet 64 8' 'convnet 256 3' 'bnnet 64 4' 'bnnet 256 2'; do st 2 2,3 $n; done)| 16t: $(for n in 'mlp 256 300' 'convnet 64 20' 'convnet 256 8' 'bnnet 64 10' 'bnnet 256 4'; do st 16 0-15 $n; done)| gemm 1t/2t $(OMP_NUM_THREADS=2 taskset -c 2,3 /tmp/var/$v/time_gemm 0.1 $S | tail -6 | awk '{printf "%s/%s ", $7, $8}')"
  [ $(el) -lt 500 ] || break 2
done; done > $R/ab.txt 2>&1
echo "end $(el) s"
