#!/usr/bin/env bash
# Session 2026-12-07h call 1 (GPU machine, tree at HEAD; measurements only): which vCPU shares
# a core with cpu 2 (smt_probe.py); issue 16's mlp at batch 256 on the Xeon host: heterocnn's
# and PyTorch's step, per layer / per op, and the products (mlp_probe.py, time_gemm) at 2
# threads pinned to cpus 2,3 and 4 pinned to 2-5; Winograd's passes against their GEMMs alone
# (time_winograd) at 1, 2 and 16 threads; issue 10's lenet5 GPU step against the stream count
# (CUDA_DEVICE_MAX_CONNECTIONS, lenet5 alone or after mlp's models).
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/gpu.txt
{ lscpu | grep -E "Model name|^CPU\(s\)|L2|Thread"; cat /proc/loadavg; } >> $R/gpu.txt
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 timeout 45 python3 benchmarks/earlier/cpu-perf-25-xeon/smt_probe.py 2 > $R/smt.txt 2>&1
sort -t'(' -k2 -n $R/smt.txt | head -3
echo "smt $(el) s"; pack
( meson setup /tmp/nb . -Dcuda=disabled && ninja -C /tmp/nb -j8 tests/time_gemm tests/time_winograd ) > $R/nb.log 2>&1 &
NB=$!
OUT=$R bash tools/gpu_run.sh || { echo "install failed"; pack; exit 1; }
wait $NB || { tail -20 $R/nb.log; }
echo "installed $(el) s"
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
SH="NT,256,256,784 TN,256,784,256 NT,256,128,256 TN,128,256,256 NN,256,256,128 NT,256,10,128 TN,10,128,256 NN,256,128,10"
for r in 1 2; do
  OMP_NUM_THREADS=2 taskset -c 2,3 timeout 40 python3 benchmarks/earlier/cpu-perf-26-xeon/mlp_probe.py 2 256 2 > $R/probe-2t-r$r.txt 2>&1
  OMP_NUM_THREADS=2 taskset -c 2,3 timeout 30 /tmp/nb/tests/time_gemm 0.2 $SH > $R/gemm-2t-r$r.txt 2>&1
  OMP_NUM_THREADS=4 taskset -c 2-5 timeout 40 python3 benchmarks/earlier/cpu-perf-26-xeon/mlp_probe.py 4 256 2 > $R/probe-4t-r$r.txt 2>&1
  OMP_NUM_THREADS=4 taskset -c 2-5 timeout 30 /tmp/nb/tests/time_gemm 0.2 $SH > $R/gemm-4t-r$r.txt 2>&1
  echo "mlp round $r $(el) s"; pack
done
grep -h "round\|rest" $R/probe-2t-r1.txt; cat $R/gemm-2t-r1.txt
for r in 1 2; do
  OMP_NUM_THREADS=1 taskset -c 2 timeout 30 /tmp/nb/tests/time_winograd 0.2 32 > $R/wino-1t-r$r.txt 2>&1
  OMP_NUM_THREADS=2 taskset -c 2,3 timeout 30 /tmp/nb/tests/time_winograd 0.2 32 > $R/wino-2t-r$r.txt 2>&1
  OMP_NUM_THREADS=16 timeout 40 /tmp/nb/tests/time_winograd 0.2 16 > $R/wino-16t-r$r.txt 2>&1
  echo "wino round $r $(el) s"; pack
done
cat $R/wino-1t-r1.txt $R/wino-2t-r1.txt
for r in 1 2; do
  for c in default 32 1; do
    if [ $c = default ]; then E=""; else E="CUDA_DEVICE_MAX_CONNECTIONS=$c"; fi
    env $E timeout 60 python3 tools/ab_rates.py --device cuda --nets lenet5 --batches 64,256 --images 25600 --repeats 3 --json $R/l5-$c-r$r.json > $R/l5-$c-r$r.txt 2>&1
    echo "lenet5 conn $c r$r: $(tail -2 $R/l5-$c-r$r.txt | tr '\n' ' ')"
  done
  timeout 60 python3 tools/ab_rates.py --device cuda --nets mlp,lenet5 --batches 64,256 --images 25600 --repeats 3 --json $R/l5-aftermlp-r$r.json > $R/l5-aftermlp-r$r.txt 2>&1
  echo "after mlp r$r: $(tail -2 $R/l5-aftermlp-r$r.txt | tr '\n' ' ')"
  pack
done
echo "end $(el) s"; pack
