#!/usr/bin/env bash
# Session 2026-12-07g call 2 (Xeon host, CPU only): why Winograd's 7 x 7 and 14 x 14 passes are
# slow on two pinned Xeon threads. The tree (nb) and a variant whose Winograd blocks take a
# quarter of the L2 instead of half (vq); bnnet's layers at batch 256 (and 64) on Winograd's and
# the direct path, 1 thread, 2 threads on cpus 2,3 and on 2,10, alternating rounds; the topology.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
{ lscpu; lscpu -e; for c in 2 3 10; do echo "cpu$c siblings $(cat /sys/devices/system/cpu/cpu$c/topology/thread_siblings_list) core $(cat /sys/devices/system/cpu/cpu$c/topology/core_id) L2 shared $(cat /sys/devices/system/cpu/cpu$c/cache/index2/shared_cpu_list) L2 $(cat /sys/devices/system/cpu/cpu$c/cache/index2/size)"; done; cat /proc/loadavg; } > $R/topo.txt 2>&1
grep -E "Model name|siblings|L2" $R/topo.txt | head -8
mkdir -p /tmp/vq && tar -c --exclude=./.gpu . | tar -x -C /tmp/vq
sed -i 's|cpu_l2_bytes() / 2 / per_row|cpu_l2_bytes() / 4 / per_row|' /tmp/vq/core/src/conv_winograd.cpp
grep -c "cpu_l2_bytes() / 4 / per_row" /tmp/vq/core/src/conv_winograd.cpp
T="tests/time_layers tests/time_step"
( meson setup /tmp/nb . -Dcuda=disabled && ninja -C /tmp/nb -j8 $T ) > /tmp/build-nb.log 2>&1 &
( meson setup /tmp/vqb /tmp/vq -Dcuda=disabled && ninja -C /tmp/vqb -j8 $T ) > /tmp/build-vq.log 2>&1 &
wait; ls /tmp/nb/tests/time_layers /tmp/vqb/tests/time_layers || { tail -20 /tmp/build-*.log; pack; exit 1; }
echo "built $(el) s"
tl() {  # build path cpus batch tag
  local t=$(echo $3 | tr ',' '\n' | wc -l)
  HC_TIME_WALL=1 HC_TIME_DW=1 OMP_NUM_THREADS=$t taskset -c $3 timeout 60 $1/tests/time_layers $4 0.05 $2 bnnet > $R/tl-$5.txt 2>&1
}
for r in 1 2 3; do for c in 2,3 2,10 2; do
  [ $(el) -gt 420 ] && break 2
  tl /tmp/nb winograd $c 256 nb-wino-c${c/,/-}-b256-r$r
  tl /tmp/nb direct $c 256 nb-direct-c${c/,/-}-b256-r$r
  tl /tmp/vqb winograd $c 256 vq-wino-c${c/,/-}-b256-r$r
done; echo "round $r $(el) s"; pack; done
for r in 1 2; do
  [ $(el) -gt 470 ] && break
  tl /tmp/nb winograd 2,3 64 nb-wino-c2-3-b64-r$r
  tl /tmp/nb direct 2,3 64 nb-direct-c2-3-b64-r$r
  tl /tmp/vqb winograd 2,3 64 vq-wino-c2-3-b64-r$r
done
echo "b64 $(el) s"; pack
for r in 1 2; do for v in nb vqb; do
  [ $(el) -gt 540 ] && break 2
  echo "$v r$r: $(OMP_NUM_THREADS=2 taskset -c 2,3 timeout 40 /tmp/$v/tests/time_step bnnet 256 4 3 | tail -1)"
done; done > $R/step.txt 2>&1
cat $R/step.txt
cat /proc/loadavg >> $R/topo.txt
echo "end $(el) s"; pack
