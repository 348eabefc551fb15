#!/usr/bin/env bash
# Session 2026-12-08 call 1 (the working tree is HEAD; .gpu/ holds base.tar = `git archive
# 2ac8adc`, pool-files.tar = 8944892's four files as cherry-picked (no file they touch has
# changed since), and ../shared/gpu/prepare's wheels and data):
# 1. builds: head and pool (head + the stream pool) with CUDA (pip), CPU-only meson builds of
#    head's C++ tests and of base's time_step;
# 2. the C++ tests on the Xeon host: test_ops runs the direct kernels', Winograd's and the 2x2
#    pooling's case lists with the AVX-512 and the AVX2 kernels; test_gemm;
# 3. the whole pytest suite on the GPU with head;
# 4. issue 10: lenet5's GPU step, head against pool, interleaved rounds of tools/ab_rates.py;
# 5. issue 16: base against head CPU steps on the Xeon at 2 threads (cpus 2,3), as time allows.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=$OUT/res; mkdir -p $R
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; lscpu | grep -E "Model name|^CPU\(s\)"; grep -o -m1 avx512f /proc/cpuinfo; cat /proc/loadavg; } | tee $R/host.txt
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
here=$PWD
rm -rf /tmp/src-pool /tmp/src-base && mkdir -p /tmp/src-base && tar -xf .gpu/base.tar -C /tmp/src-base
cp -r "$here" /tmp/src-pool && rm -rf /tmp/src-pool/.gpu && tar -xf .gpu/pool-files.tar -C /tmp/src-pool
pipb() {  # name source
  ( cd $2 && python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/$1 \
      -C setup-args=-Dgpu_archs="$arch" -C build-dir=/tmp/bd-$1 . > $R/install-$1.log 2>&1 \
      || { echo "install $1 failed"; tail -30 $R/install-$1.log; } )
}
mesonb() {  # name source targets...
  local n=$1 s=$2; shift 2
  ( meson setup /tmp/mb-$n $s -Dcuda=disabled -Dopenmp=enabled -Dbuildtype=release > $R/meson-$n.log 2>&1 &&
    ninja -C /tmp/mb-$n "$@" >> $R/meson-$n.log 2>&1 ) || { echo "meson $n failed"; tail -20 $R/meson-$n.log; }
}
pipb head "$here" & pipb pool /tmp/src-pool &
mesonb head "$here" tests/test_ops tests/test_gemm tests/time_step & mesonb base /tmp/src-base tests/time_step &
wait
echo "built $(el) s"
timeout 150 /tmp/mb-head/tests/test_ops > $R/test_ops.txt 2>&1; echo "test_ops rc $?: $(tail -1 $R/test_ops.txt)"
grep -B3 -E "PASS conv2d_(direct|winograd)_path|PASS maxpool_2x2" $R/test_ops.txt | grep -v "^--"
timeout 60 /tmp/mb-head/tests/test_gemm > $R/test_gemm.txt 2>&1; echo "test_gemm rc $?: $(tail -1 $R/test_gemm.txt)"
echo "pytest at $(el) s"
PYTHONPATH=/tmp/head:/tmp/site timeout 330 python3 -m pytest -q -p no:cacheprovider tests > $R/pytest.log 2>&1
echo "pytest rc $? $(el) s: $(tail -1 $R/pytest.log)"
grep -E "FAILED|ERROR" $R/pytest.log | head -10
for r in 1 2; do
  [ $(el) -gt 470 ] && break
  for b in head pool; do
    PYTHONPATH=/tmp/$b:/tmp/site timeout 45 python3 tools/ab_rates.py --device cuda --nets mlp,lenet5 \
      --batches 64,256 --images 25600 --repeats 3 --json $R/ml-$b-r$r.json > $R/ml-$b-r$r.txt 2>&1
    echo "r$r $b (lenet5 after mlp): $(grep lenet5 $R/ml-$b-r$r.txt | tr -s ' ' | tr '\n' '|')"
  done
done
echo "gpu a/b done $(el) s"
for r in 1 2; do
  [ $(el) -gt 540 ] && break
  for b in base head; do
    for spec in "lenet5 64 100 3" "convnet 64 10 3" "bnnet 64 6 3"; do
      OMP_NUM_THREADS=2 taskset -c 2,3 timeout 25 /tmp/mb-$b/tests/time_step $spec >> $R/cpu-ab-$b.txt 2>&1
    done
    echo "r$r $b: $(tail -3 $R/cpu-ab-$b.txt | awk '{print $1, $5}' | tr '\n' ' ')"
  done
done
echo "end $(el) s"
