#!/usr/bin/env bash
# Session 2026-12-03b call D: A/B of sgemm's team-shared packing (old = HEAD's gemm.cpp, new = the
# tree) on the Xeon host: whole steps at 16, 8 and 4 threads, the GEMM shapes of the nets.
set -u
T0=$(date +%s)
for v in old new; do rm -rf /tmp/src-$v /tmp/b-$v; mkdir /tmp/src-$v; cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-$v/; done
cp .gpu/old_gemm.cpp /tmp/src-old/core/src/gemm.cpp
for v in old new; do
  (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j16 tests/time_step tests/time_gemm tests/test_gemm) > /tmp/build-$v.log 2>&1 || { tail -20 /tmp/build-$v.log; exit 1; }
done
for t in 16 4; do echo "test_gemm ${t}t: $(OMP_NUM_THREADS=$t /tmp/b-new/tests/test_gemm | tail -1)"; done
echo "built $(( $(date +%s) - T0 )) s"
for r in 1 2 3 4; do for v in $([ $((r%2)) = 1 ] && echo "old new" || echo "new old"); do
  for spec in "16 mlp 256 200" "16 mlp 64 300" "16 lenet5 256 100" "16 convnet 256 40" "8 mlp 256 150" "4 mlp 256 100" "4 lenet5 256 60" "4 convnet 64 40"; do
    set -- $spec
    echo "$v r$r ${1}t $2 b$3 $(OMP_NUM_THREADS=$1 timeout 60 /tmp/b-$v/tests/time_step $2 $3 $4 3 | grep -o 'median *[0-9.]*')"
  done
  [ $(( $(date +%s) - T0 )) -lt 420 ] || break 2
done; done > $OUT/ab-shared-pack.txt
sort -s -k3,5 $OUT/ab-shared-pack.txt | awk '{print $3,$4,$5,$1,$7}' | paste - - - - - - - -
echo "ab $(( $(date +%s) - T0 )) s"
S="NT,256,256,784 TN,256,784,256 NN,256,784,256 NT,256,128,256 TN,128,256,256 NN,256,256,128 NT,256,256,3136 TN,256,3136,256"
for v in old new old new; do echo "== $v"; OMP_NUM_THREADS=16 /tmp/b-$v/tests/time_gemm 0.1 $S | tail -8 | awk '{print $2$3,$4,$5,$6,$8}' | paste -sd';'; done | tee $OUT/gemm-ab-16t.txt
echo "end $(( $(date +%s) - T0 )) s"
