#!/usr/bin/env bash
# Session 2026-12-07d call D (HEAD 6653412 + variants): old (47845ba's packing) / base (AVX-512
# transposing pack) / tm (grid ties split M) / fpt1, fpt2 (a team of one thread per 1 or 2 MFLOP)
# alternating: time_gemm and time_step at 2 threads (cpus 5,6) and 16, numpy beside; time_layers
# 8 against 16 threads; then a CPU-only install of the tree and --suite cpu for mlp at 2 threads.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/d; mkdir -p $R
rm -rf /tmp/b && (meson setup /tmp/b -Dcuda=disabled && ninja -C /tmp/b -j16 tests/time_step) > /tmp/build.log 2>&1 || { tail -20 /tmp/build.log; exit 1; }
V="old base tm fpt1 fpt2"
bash .gpu/exp/variants.sh /tmp/b /tmp/var $V > /tmp/var.log 2>&1 || { tail -20 /tmp/var.log; exit 1; }
echo "built $(el) s"
S="NN,1024,1024,1024 NN,2048,2048,2048 NT,256,256,784 TN,256,784,256 NN,256,784,256 NN,64,784,256 NT,64,256,784"
st() { echo "$(OMP_NUM_THREADS=$1 taskset -c $2 /tmp/var/$v/time_step $3 $4 $5 3 | tail -1 | awk '{print $6}')"; }
for r in 1 2 3; do
  for v in $V; do
    echo "$v 2t $(OMP_NUM_THREADS=2 taskset -c 5,6 /tmp/var/$v/time_gemm 0.15 $S | tail -7 | awk '{printf "%s ", $8}') | steps 2t mlp256 $(st 2 5,6 mlp 256 200) mlp64 $(st 2 5,6 mlp 64 400) lenet256 $(st 2 5,6 lenet5 256 60) | 16t mlp256 $(st 16 0-15 mlp 256 300) mlp64 $(st 16 0-15 mlp 64 600) lenet64 $(st 16 0-15 lenet5 64 300) lenet256 $(st 16 0-15 lenet5 256 200)"
  done
  echo "numpy 2t $(OPENBLAS_NUM_THREADS=2 taskset -c 5,6 python3 .gpu/exp/np_gemm.py 0.15 $S | awk '{printf "%s ", $3}')"
done > $R/ab.txt 2>&1
echo "ab $(el) s"
for r in 1 2; do for v in old fpt1 fpt2; do for t in 8 16; do
  HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 /tmp/var/$v/time_layers 64 0.05 auto mlp,lenet5,convnet > $R/tl-$v-${t}t-r$r.txt 2>&1
done; done; done
echo "tl $(el) s"
rm -rf /tmp/site-cpu && mkdir /tmp/site-cpu && python3 -m pip install -q --no-index --no-deps --target /tmp/site-cpu .gpu/whl/*.whl && PYTHONPATH=/tmp/site-cpu python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/site-cpu -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-cpu . > $R/install-cpu.log 2>&1 || tail -20 $R/install-cpu.log
echo "installed $(el) s"
[ $(el) -lt 450 ] && PYTHONPATH=/tmp/site-cpu timeout $(( 580 - $(el) )) python3 apps/bench.py --suite cpu --devices cpu --nets mlp --threads 2 --images 3200 --repeats 3 --data .gpu/data --json $R/cpu-2t/ --no-report 2>&1 | grep -v "^wrote" | tail -12
echo "end $(el) s"
