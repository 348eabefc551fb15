#!/usr/bin/env bash
# Session 2026-12-07 call A (HEAD 9c7415b): where convnet loses on the Xeon at 2 and 4 threads.
# Per layer and pass with each conv path forced (time_layers), the HT-sibling check, 8 vs 16
# threads per layer for the small nets, then PyTorch's per-layer figures (--suite layers).
set -u
T0=$(date +%s)
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|Socket|L1d|L2|L3|NUMA node0"
lscpu -e=CPU,CORE,SOCKET,NODE | head -20
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_layers tests/time_step) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
echo "built $(( $(date +%s) - T0 )) s"
# HT siblings? one-thread mlp step alone on cpu 0, then beside a copy on cpu 1, then on cpu 8.
one() { OMP_NUM_THREADS=1 taskset -c $1 /tmp/b/tests/time_step mlp 256 200 3 | grep -o 'median *[0-9.]*'; }
echo "alone cpu0: $(one 0)"
( one 1 > /tmp/p1.txt & ); echo "cpu0 beside cpu1: $(one 0)"; sleep 1; echo "  cpu1: $(cat /tmp/p1.txt)"
( one 8 > /tmp/p8.txt & ); echo "cpu0 beside cpu8: $(one 0)"; sleep 1; echo "  cpu8: $(cat /tmp/p8.txt)"
echo "ht $(( $(date +%s) - T0 )) s"
for t in 2 4; do for b in 64 256; do for p in auto gemm direct winograd; do
  HC_TIME_DW=1 HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/time_layers $b 0.08 $p convnet > $OUT/tl-${t}t-b$b-$p.txt 2>&1
done; done; echo "paths ${t}t $(( $(date +%s) - T0 )) s"; done
for r in 1 2 3; do for t in 8 16; do
  HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/time_layers 64 0.05 auto lenet5,mlp > $OUT/tl-small-${t}t-r$r.txt 2>&1
done; done
echo "8v16 $(( $(date +%s) - T0 )) s"
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-cpu . > $OUT/install.log 2>&1 || tail -20 $OUT/install.log )
echo "installed $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
for t in 2 4; do
  [ $(( $(date +%s) - T0 )) -lt 420 ] || break
  timeout $(( 560 - ($(date +%s) - T0) )) python3 apps/bench.py --suite layers --devices cpu --nets convnet --threads $t --batches 64,256 --repeats 3 --data .gpu/data --json $OUT/l${t}t/ --no-report 2>&1 | grep -v "^wrote" | tail -40
  echo "layers ${t}t $(( $(date +%s) - T0 )) s"
done
echo "end $(( $(date +%s) - T0 )) s"
