#!/usr/bin/env bash
# Session 2026-12-07c call 2 (tree = 351f77d's code): a CPU-only install on the Xeon host, then
# --suite cpu (all four nets) at 2 threads, --suite layers for bnnet at 2 threads, --suite cpu at
# 4 and 16 threads, time allowing.
set -u
T0=$(date +%s)
R=/tmp/res; rm -rf $R; mkdir -p $R
el() { echo $(( $(date +%s) - T0 )); }
rm -rf /tmp/site-cpu && mkdir /tmp/site-cpu && python3 -m pip install -q --no-index --no-deps --target /tmp/site-cpu .gpu/whl/*.whl && PYTHONPATH=/tmp/site-cpu python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/site-cpu -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-cpu . > $R/install-cpu.log 2>&1 || tail -20 $R/install-cpu.log
echo "installed $(el) s"
export PYTHONPATH=/tmp/site-cpu
python3 -c "import heterocnn as hc; print(hc.__file__, hc.build_info())"
b() { timeout $(( 585 - $(el) )) python3 apps/bench.py --devices cpu --data .gpu/data --no-report "$@" 2>&1 | grep -v "^wrote"; tar -czf $OUT/r2.tgz -C /tmp res; echo "at $(el) s"; }
b --suite cpu --nets mlp,lenet5,convnet,bnnet --threads 2 --images 1600 --repeats 3 --json $R/cpu-2t/
b --suite layers --nets bnnet --threads 2 --json $R/layers-2t/
[ $(el) -lt 430 ] && b --suite cpu --nets mlp,lenet5,convnet,bnnet --threads 4 --images 3200 --repeats 3 --json $R/cpu-4t/
[ $(el) -lt 500 ] && b --suite cpu --nets mlp,lenet5,convnet,bnnet --threads 16 --images 6400 --repeats 3 --json $R/cpu-16t/
echo "end $(el) s"
