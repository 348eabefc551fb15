#!/usr/bin/env bash
# Session 2026-12-07f call 2 (HEAD: sgemm's team by measured costs): the pytest suite on the
# CUDA build, the C++ tests at 1 and 16 threads, then on the Xeon host 5e23db6 (pb) against the
# tree (nb), alternating: time_gemm's rule column at 2 (pinned), 8 and 16 threads, time_layers
# 8 against 16 threads, time_step; bnnet's convolutions on each forced path at 2 pinned threads.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|L1d|L2|L3"; cat /proc/loadavg; } > $R/lscpu.txt 2>&1
mkdir -p /tmp/prev && tar -xf .gpu/prev.tar -C /tmp/prev
T="tests/time_layers tests/time_step tests/time_gemm"
( meson setup /tmp/nb . -Dcuda=disabled && ninja -C /tmp/nb -j4 $T tests/test_gemm tests/test_ops \
  && meson setup /tmp/pb /tmp/prev -Dcuda=disabled && ninja -C /tmp/pb -j4 $T ) > /tmp/build.log 2>&1 &
BP=$!
OUT=$R timeout 400 bash tools/gpu_run.sh tests
echo "gpu tests $(el) s"; pack
wait $BP || { tail -20 /tmp/build.log; exit 1; }
for t in 1 16; do echo "${t}t: test_ops $(OMP_NUM_THREADS=$t timeout 60 /tmp/nb/tests/test_ops | tail -1), test_gemm $(OMP_NUM_THREADS=$t timeout 60 /tmp/nb/tests/test_gemm | tail -1)"; done | tee $R/cpp-tests.txt
echo "c++ tests $(el) s"; pack
S="NT,64,84,120 TN,84,120,64 NN,64,120,84 NT,64,10,256 TN,10,256,64 NN,64,256,10 NT,64,10,128 NT,256,10,128 NT,64,120,400 NT,64,128,256 NT,256,84,120"
for r in 1 2; do for t in 2 8 16; do c=0-15; [ $t = 2 ] && c=2,3
  echo "## r$r ${t}t"; OMP_NUM_THREADS=$t taskset -c $c /tmp/nb/tests/time_gemm 0.05 $S | tail -13
done; done > $R/gemm.txt 2>&1
echo "gemm $(el) s"; pack
for r in 1 2; do for v in pb nb; do for t in 8 16; do
  HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 40 /tmp/$v/tests/time_layers 64 0.05 auto mlp,lenet5,convnet > $R/tl-$v-${t}t-r$r.txt 2>&1
done; done; done
echo "tl $(el) s"; pack
for r in 1 2 3; do for v in pb nb; do for t in 2 16; do c=0-15; [ $t = 2 ] && c=2,3
  [ $(el) -lt 480 ] && echo "$v r$r ${t}t: $(for n in 'lenet5 64 300' 'lenet5 256 100' 'convnet 64 20' 'mlp 64 800'; do OMP_NUM_THREADS=$t taskset -c $c /tmp/$v/tests/time_step $n 3 | tail -1 | awk '{printf "%s ", $6}'; done)"
done; done; done > $R/step.txt 2>&1
echo "step $(el) s"; pack
for p in auto direct gemm winograd; do
  [ $(el) -lt 540 ] && HC_TIME_WALL=1 HC_TIME_DW=1 OMP_NUM_THREADS=2 taskset -c 2,3 timeout 30 /tmp/nb/tests/time_layers 256 0.05 $p bnnet > $R/bn-$p.txt 2>&1
done
cat /proc/loadavg >> $R/lscpu.txt
echo "end $(el) s"; pack
