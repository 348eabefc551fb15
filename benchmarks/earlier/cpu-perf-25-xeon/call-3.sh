#!/usr/bin/env bash
# Session 2026-12-07g call 3 (Xeon host, CPU only; the tree at HEAD, no core change since
# d7811aa): a CPU-only install, then --suite cpu for the four nets on 2 threads pinned to cpus
# 2,3 (the 2-core stand-in), then on 4 threads pinned to 2-5, with PyTorch on the same cpus.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/res; mkdir -p $R
export PYTHONUNBUFFERED=1
{ lscpu | grep -E "Model name|^CPU\(s\)|L2"; cat /proc/loadavg; } > $R/lscpu.txt
rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/site -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-cpu . > $R/install.log 2>&1 || { tail -30 $R/install.log; exit 1; }
echo "installed $(el) s"
taskset -c 2,3 timeout 260 python3 apps/bench.py --suite cpu --devices cpu --nets mlp,lenet5,convnet,bnnet --threads 2 --images 1600 --repeats 3 --data .gpu/data --json $R/cpu-2t/ --no-report 2>&1 | grep -v "^wrote" | tail -14
echo "2t $(el) s"
taskset -c 2-5 timeout $(( 570 - $(el) )) python3 apps/bench.py --suite cpu --devices cpu --nets mlp,lenet5,convnet,bnnet --threads 4 --images 3200 --repeats 3 --data .gpu/data --json $R/cpu-4t/ --no-report 2>&1 | grep -v "^wrote" | tail -14
cat /proc/loadavg >> $R/lscpu.txt
echo "end $(el) s"
