#!/usr/bin/env bash
# Session 2026-12-07g call 4 (Xeon host, CPU only; the tree at HEAD): issue 16's must-have 2 for
# every net at batch 64 and 256: time_layers at 8 and 16 threads (wall time), alternating, three
# rounds.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
{ lscpu | grep -E "Model name|^CPU\(s\)|L2"; cat /proc/loadavg; } > $R/lscpu.txt
( meson setup /tmp/nb . -Dcuda=disabled && ninja -C /tmp/nb -j16 tests/time_layers ) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
echo "built $(el) s"
for r in 1 2 3; do for b in 64 256; do for t in 8 16; do
  [ $(el) -gt 520 ] && break 3
  HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/nb/tests/time_layers $b 0.05 auto mlp,lenet5,convnet,bnnet > $R/tl-b$b-${t}t-r$r.txt 2>&1
done; done; echo "round $r $(el) s"; pack; done
cat /proc/loadavg >> $R/lscpu.txt
echo "end $(el) s"; pack
