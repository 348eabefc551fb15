#!/usr/bin/env bash
# Session 2026-12-07d call E (HEAD 2a0f38f): the whole pytest suite on the CUDA build (351f77d's
# fix and the packing change included), the C++ tests on the host at 1 and 16 threads, then
# --suite cpu (mlp, convnet, bnnet) at 2 threads pinned to two cores (the 2-core stand-in).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/e.tgz -C /tmp res; }
lscpu | grep -E "Model name|L2|L1d" > $R/lscpu.txt
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j4 tests/test_ops tests/test_gemm) > /tmp/build.log 2>&1 &
BP=$!
OUT=$R timeout 420 bash tools/gpu_run.sh tests
echo "gpu tests $(el) s"; pack
wait $BP || tail -20 /tmp/build.log
for t in 1 16; do echo "${t}t: test_ops $(OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/test_ops | tail -1), test_gemm $(OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/test_gemm | tail -1)"; done | tee $R/cpp-tests.txt
OMP_NUM_THREADS=1 /tmp/b/tests/test_gemm > $R/test_gemm-1t.txt 2>&1
echo "c++ tests $(el) s"; pack
export PYTHONPATH=/tmp/site
[ $(el) -lt 470 ] && taskset -c 2,3 timeout $(( 585 - $(el) )) python3 apps/bench.py --suite cpu --devices cpu --nets mlp,convnet,bnnet --threads 2 --images 1600 --repeats 3 --data .gpu/data --json $R/cpu-2t/ --no-report 2>&1 | grep -v "^wrote"
echo "end $(el) s"; pack
