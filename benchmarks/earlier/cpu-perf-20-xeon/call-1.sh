#!/usr/bin/env bash
# Session 2026-12-07c call 1 (tree = 1c29ecd): the whole pytest suite on the GPU build, the C++ tests
# at 1, 4 and 16 threads on the Xeon host, then --suite cpu (mlp, convnet, bnnet) and --suite gemm
# at 2 threads on the host.
set -u
T0=$(date +%s)
R=/tmp/res; rm -rf $R; mkdir -p $R
el() { echo $(( $(date +%s) - T0 )); }
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j8 tests/test_ops tests/test_gemm tests/time_step) > /tmp/build.log 2>&1 &
BP=$!
OUT=$R timeout 400 bash tools/gpu_run.sh tests
echo "gpu tests $(el) s"
tar -czf $OUT/r1.tgz -C /tmp res
wait $BP || tail -20 /tmp/build.log
for t in 1 4 16; do echo "${t}t: test_ops $(OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/test_ops | tail -1), test_gemm $(OMP_NUM_THREADS=$t timeout 60 /tmp/b/tests/test_gemm | tail -1)"; done | tee $R/cpp-tests.txt
echo "c++ tests $(el) s"
tar -czf $OUT/r1.tgz -C /tmp res
export PYTHONPATH=/tmp/site
[ $(el) -lt 480 ] && timeout $(( 560 - $(el) )) python3 apps/bench.py --suite cpu --devices cpu --nets convnet,bnnet,mlp --threads 2 --images 1600 --repeats 3 --data .gpu/data --json $R/cpu-2t/ --no-report 2>&1 | grep -v "^wrote"
echo "cpu 2t $(el) s"
tar -czf $OUT/r1.tgz -C /tmp res
[ $(el) -lt 540 ] && timeout $(( 585 - $(el) )) python3 apps/bench.py --suite gemm --devices cpu --threads 2 --no-lab --json $R/gemm-2t/ --no-report 2>&1 | grep -v "^wrote"
tar -czf $OUT/r1.tgz -C /tmp res
echo "end $(el) s"
