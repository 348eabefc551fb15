#!/usr/bin/env bash
# Session 2026-12-07f call 1 (HEAD 5e23db6): on the Xeon host, c11acbe's build (ob), HEAD (nb:
# sgemm's tile grid, Winograd's dw at 32 -> 32) and HEAD with sgemm's team from 0.2 MFLOP (vb,
# was 2 MFLOP), alternating: time_gemm on the nets' small GEMMs, time_step at 2 (pinned), 8 and 16
# threads, time_layers 8 against 16 threads, a one-thread GEMM beside an idle team (wait policies).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/g; mkdir -p $R
{ lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|L1d|L2|L3"; lscpu -e=CPU,CORE,SOCKET,NODE,L1d:L1i:L2:L3; cat /proc/loadavg; } > $R/lscpu.txt 2>&1
mkdir -p /tmp/old && tar -xf .gpu/old.tar -C /tmp/old
mkdir -p /tmp/var && tar --exclude=./.gpu --exclude=./.git -cf - . | tar -xf - -C /tmp/var && sed -i 's/kParallelFlops = 2e6/kParallelFlops = 2e5/' /tmp/var/core/src/gemm.cpp
T="tests/time_layers tests/time_step tests/time_gemm"
( meson setup /tmp/nb . -Dcuda=disabled && ninja -C /tmp/nb -j16 $T tests/test_gemm tests/test_ops \
  && meson setup /tmp/ob /tmp/old -Dcuda=disabled && ninja -C /tmp/ob -j16 $T \
  && meson setup /tmp/vb /tmp/var -Dcuda=disabled && ninja -C /tmp/vb -j16 $T tests/test_gemm ) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
echo "built $(el) s"
for t in 1 16; do echo "${t}t nb: $(OMP_NUM_THREADS=$t /tmp/nb/tests/test_gemm | tail -1) | $(OMP_NUM_THREADS=$t /tmp/nb/tests/test_ops | tail -1) | vb: $(OMP_NUM_THREADS=$t /tmp/vb/tests/test_gemm | tail -1)"; done > $R/tests.txt 2>&1
S="NT,64,256,784 NT,64,128,256 TN,128,256,64 NN,64,256,128 NT,64,120,400 TN,120,400,64 NT,64,84,120 TN,84,120,64 NN,64,120,84 NT,64,10,128 NT,256,256,784 NT,256,128,256 NT,256,84,120 TN,84,120,256"
for r in 1 2; do for v in ob nb vb; do for t in 2 8 16; do
  c=0-15; [ $t = 2 ] && c=2,3
  echo "## r$r $v ${t}t"; OMP_NUM_THREADS=$t taskset -c $c /tmp/$v/tests/time_gemm 0.05 $S | tail -14
done; done; done > $R/gemm.txt 2>&1
echo "gemm $(el) s"
for r in 1 2 3; do for v in ob nb vb; do for t in 2 8 16; do
  c=0-15; [ $t = 2 ] && c=2,3
  echo "$v r$r ${t}t: $(for n in 'mlp 64 800' 'mlp 256 300' 'lenet5 64 300' 'lenet5 256 100' 'convnet 64 20' 'bnnet 64 10'; do OMP_NUM_THREADS=$t taskset -c $c /tmp/$v/tests/time_step $n 3 | tail -1 | awk '{printf "%s ", $6}'; done)"
done; done; done > $R/step.txt 2>&1
echo "step $(el) s"
for p in "" passive spin0; do for t in 1 8 16; do
  sc=""; [ "$p" = spin0 ] && sc=0
  echo "wait=${p:-default} ${t}t: $(env ${sc:+GOMP_SPINCOUNT=$sc} $([ "$p" = passive ] && echo OMP_WAIT_POLICY=passive) OMP_NUM_THREADS=$t /tmp/nb/tests/time_gemm 0.1 NT,64,84,120 TN,84,120,64 NN,64,120,84 | tail -3 | awk '{printf "%s/%s ", $6, $7}')"
done; done > $R/one-thread.txt 2>&1
for r in 1 2; do for v in ob nb vb; do for t in 8 16; do for b in 64 256; do
  [ $(el) -lt 500 ] && HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/$v/tests/time_layers $b 0.05 auto mlp,lenet5,convnet,bnnet > $R/tl-$v-${t}t-b$b-r$r.txt 2>&1
done; done; done; done
for v in nb vb; do [ $(el) -lt 520 ] && HC_TIME_WALL=1 OMP_NUM_THREADS=16 timeout 60 /tmp/$v/tests/time_layers 1024 0.05 auto mlp,lenet5 > $R/tl-$v-16t-b1024.txt 2>&1; done
[ $(el) -lt 540 ] && HC_TIME_WALL=1 OMP_WAIT_POLICY=passive OMP_NUM_THREADS=16 timeout 40 /tmp/nb/tests/time_layers 64 0.05 auto mlp,lenet5 > $R/tl-nb-16t-passive.txt 2>&1
cat /proc/loadavg >> $R/lscpu.txt
echo "end $(el) s"
cd $OUT && tar -czf g.tgz g && rm -rf g
