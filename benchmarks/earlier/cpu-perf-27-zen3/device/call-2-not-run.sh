#!/usr/bin/env bash
# Session 2026-12-07i call 2 (the working tree is HEAD):
# 1. builds: head = this tree (pip), pool = this tree + 8944892's
#    stream pool (pip), and CPU-only meson builds of this tree's and ec064c4's C++ tools;
# 2. the C++ tests of this tree on the Xeon host (test_ops runs Winograd's case list with the
#    AVX-512 and the AVX2 transforms, test_gemm);
# 3. issue 16 / entry 27: bnnet and convnet CPU steps, ec064c4 against this tree (AVX-512 path:
#    the transforms moved, nothing else), 2 threads on cpus 2,3, two alternating rounds;
# 4. issue 10: lenet5's GPU step, before / head / pool, interleaved rounds of tools/ab_rates.py;
# 5. GPU-facing pytest files (and the CPU kernel tests) on the pool build, with the time left.
set -u
T0=$(date +%s); el() { echo $(( $(date +%s) - T0 )); }
R=/tmp/res; rm -rf $R; mkdir -p $R
pack() { tar -czf $OUT/r.tgz -C /tmp res; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $R/gpu.txt
{ lscpu | grep -E "Model name|^CPU\(s\)|Flags" | cut -c1-200; cat /proc/loadavg; } >> $R/gpu.txt
head -2 $R/gpu.txt
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl || exit 1
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d .)
here=$PWD
rm -rf /tmp/src-before /tmp/src-pool /tmp/src-old && mkdir -p /tmp/src-before /tmp/src-old
tar -xf .gpu/old.tar -C /tmp/src-old
cp -r "$here" /tmp/src-pool && rm -rf /tmp/src-pool/.gpu && tar -xf .gpu/pool-files.tar -C /tmp/src-pool
pipb() {  # name source
  ( cd $2 && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps \
      --no-index --target /tmp/$1 -C setup-args=-Dgpu_archs="$arch" -C build-dir=/tmp/bd-$1 . \
      > $R/install-$1.log 2>&1 || { echo "install $1 failed"; tail -30 $R/install-$1.log; } )
}
mesonb() {  # name source
  ( meson setup /tmp/mb-$1 $2 -Dcuda=disabled -Dopenmp=enabled > $R/meson-$1.log 2>&1 &&
    ninja -C /tmp/mb-$1 tests/test_ops tests/test_gemm tests/time_step >> $R/meson-$1.log 2>&1 ) \
    || { echo "meson $1 failed"; tail -20 $R/meson-$1.log; }
}
pipb head "$here" & pipb pool /tmp/src-pool &
mesonb head "$here" & mesonb old /tmp/src-old &
wait
echo "built $(el) s"; pack
timeout 120 /tmp/mb-head/tests/test_ops > $R/test_ops.txt 2>&1; echo "test_ops rc $?: $(tail -1 $R/test_ops.txt)"
grep -i -A1 "winograd" $R/test_ops.txt | head -6
timeout 120 /tmp/mb-head/tests/test_gemm > $R/test_gemm.txt 2>&1; echo "test_gemm rc $?: $(tail -1 $R/test_gemm.txt)"
export PYTHONUNBUFFERED=1
for r in 1 2; do
  for b in head pool; do
    PYTHONPATH=/tmp/$b timeout 60 python3 tools/ab_rates.py --device cuda --nets mlp,lenet5 \
      --batches 64,256 --images 25600 --repeats 3 --json $R/ml-$b-r$r.json > $R/ml-$b-r$r.txt 2>&1
    PYTHONPATH=/tmp/$b timeout 60 python3 tools/ab_rates.py --device cuda --nets lenet5 \
      --batches 64,256 --images 25600 --repeats 3 --json $R/l5-$b-r$r.json > $R/l5-$b-r$r.txt 2>&1
    echo "r$r $b: after mlp $(grep lenet5 $R/ml-$b-r$r.txt | awk '{print $4}' | tr '\n' ' ')| alone $(awk '{print $4}' $R/l5-$b-r$r.txt | tr '\n' ' ')"
  done
  echo "round $r $(el) s"; pack
  [ $(el) -gt 260 ] && break
done
left=$(( 560 - $(el) ))
echo "pytest with $left s"
cd /tmp/src-pool && PYTHONPATH=/tmp/pool timeout $left python3 -m pytest -q -p no:cacheprovider \
  tests/test_cuda.py tests/test_replicas.py tests/test_placement.py tests/test_optimizers.py \
  tests/test_label_smoothing.py tests/test_grads_ready.py tests/test_relu_fusion.py \
  tests/test_predict.py tests/test_training.py tests/test_determinism.py tests/test_errors.py \
  tests/test_hardening.py tests/test_multi_gpu.py tests/test_ops.py tests/test_gradcheck.py \
  tests/test_distributed.py tests/test_bench.py > $R/pytest.log 2>&1
echo "pytest rc $? $(el) s"; tail -12 $R/pytest.log
pack
cd /tmp
for r in 1 2; do
  for b in old head; do
    for spec in "convnet 64 10" "bnnet 64 6"; do
      OMP_NUM_THREADS=2 taskset -c 2,3 timeout 60 /tmp/mb-$b/tests/time_step $spec 3 >> $R/cpu-ab-$b.txt 2>&1
    done
    echo "r$r $b: $(tail -2 $R/cpu-ab-$b.txt | awk '{print $1, $5}' | tr '\n' ' ')"
  done
done
echo "cpu a/b $(el) s"; pack
pack
