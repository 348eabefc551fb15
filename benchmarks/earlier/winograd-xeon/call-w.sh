#!/usr/bin/env bash
# Winograd call: build old (7cb047a) and new CPU timing binaries, run new test_ops, interleaved
# time_step A/B of convnet, then --suite cpu for convnet,bnnet at 16, 4 and 2 threads.
set -u
T0=$(date +%s)
lscpu | grep -E "Model name|^CPU\(s\)|Thread|Core|L2" > $OUT/lscpu.txt
rm -rf /tmp/src-old /tmp/src-new /tmp/b-old /tmp/b-new; mkdir /tmp/src-old /tmp/src-new
tar -xf .gpu/old.tar -C /tmp/src-old
cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-new/
for v in old new; do
  ( (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j8 tests/time_step tests/time_layers tests/test_ops) > /tmp/build-$v.log 2>&1 || tail -20 /tmp/build-$v.log ) &
done
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build . > $OUT/install.log 2>&1 || tail -20 $OUT/install.log ) &
wait
echo "built $(( $(date +%s) - T0 )) s"
OMP_NUM_THREADS=16 /tmp/b-new/tests/test_ops | grep -i "winograd\|passed\|FAIL"
OMP_NUM_THREADS=3 /tmp/b-new/tests/test_ops | tail -1
for r in 1 2 3; do for v in $([ $((r%2)) = 1 ] && echo "old new" || echo "new old"); do
  for spec in "16 convnet 64 40" "16 convnet 256 12" "4 convnet 64 10" "4 convnet 256 4" "2 convnet 64 5"; do
    set -- $spec
    echo "$v r$r ${1}t $2 b$3 $(OMP_NUM_THREADS=$1 /tmp/b-$v/tests/time_step $2 $3 $4 3 | grep -o 'median.*')"
  done
done; done > /tmp/ab.txt
sort -s -k3,5 /tmp/ab.txt | sed 's/ per step//' > $OUT/ab-step-winograd.txt; cat $OUT/ab-step-winograd.txt | awk '{print $1,$2,$3,$4,$5,$7}' | paste - - - - - -
echo "ab $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
for spec in "16 9600 convnet,bnnet" "4 3200 convnet,bnnet" "2 3200 convnet"; do
  set -- $spec
  [ $(( $(date +%s) - T0 )) -lt 480 ] || break
  timeout $(( 590 - ($(date +%s) - T0) )) python3 apps/bench.py --suite cpu --devices cpu --nets $3 --threads $1 --images $2 --repeats 3 --data .gpu/data --json $OUT/ --no-report 2>&1 | grep -v "^wrote"
  echo "cpu ${1}t $(( $(date +%s) - T0 )) s"
done
echo "end $(( $(date +%s) - T0 )) s"
