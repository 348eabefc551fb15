#!/usr/bin/env bash
# Session 2026-12-07g call 1 (the tiled GEMM's 3xTF32 tensor-core path): install with CUDA and
# build the CUDA op tests in parallel; test_ops_cuda (both maths, accuracy against fp64);
# test_ops_cuda --time (each conv pass, ffma and tf32x3); training rates of the four nets with
# HC_CUDA_GEMM=ffma and the default, alternating; then the pytest suite on the CUDA build.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader > $R/gpu.txt
{ lscpu | grep -E "Model name|^CPU\(s\)"; cat /proc/loadavg; } >> $R/gpu.txt
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
( ARCH=$arch BUILD=/tmp/hc-cuda-dev bash cuda/dev/build_and_run.sh build > $R/devbuild.log 2>&1 ) &
BP=$!
OUT=$R bash tools/gpu_run.sh || { echo "install failed"; pack; exit 1; }
echo "installed $(el) s"
wait $BP || { tail -30 $R/devbuild.log; pack; exit 1; }
echo "dev build $(el) s"
timeout 120 /tmp/hc-cuda-dev/test_ops_cuda > $R/test_ops_cuda.txt 2>&1; echo "test_ops_cuda rc $?"
grep -E "FAIL|accuracy|fp64|passed" $R/test_ops_cuda.txt | head -30
echo "tests $(el) s"; pack
timeout 90 /tmp/hc-cuda-dev/test_ops_cuda --time > $R/time_convs.txt 2>&1; cat $R/time_convs.txt
echo "time $(el) s"; pack
export PYTHONPATH=/tmp/site
for r in 1 2; do for m in ffma tf32x3; do
  HC_CUDA_GEMM=$m timeout 60 python3 tools/ab_rates.py --device cuda --nets mlp,lenet5,convnet,bnnet --batches 64,256 --images 25600 --repeats 3 --json $R/ab-$m-r$r.json > $R/ab-$m-r$r.txt 2>&1
  echo "$m r$r: $(tail -9 $R/ab-$m-r$r.txt | tr '\n' ' ')"
done; done
echo "ab $(el) s"; pack
timeout $(( 585 - $(el) )) python3 -m pytest -q -p no:cacheprovider tests > $R/pytest.log 2>&1; echo "pytest rc $?"
tail -15 $R/pytest.log
echo "end $(el) s"; pack
