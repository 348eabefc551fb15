#!/usr/bin/env bash
# Session 2026-12-03b call F: A/B of the serial parts made parallel, final version (bias copy, db,
# the loss, the input check; old = HEAD 8151aee, new = the tree) on the Xeon host; then the cpu
# suite for mlp at 16 and 4 threads on the new build.
set -u
T0=$(date +%s)
for v in old new; do rm -rf /tmp/src-$v /tmp/b-$v; mkdir /tmp/src-$v; done
tar -xf .gpu/head.tar -C /tmp/src-old
cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-new/
for v in old new; do
  (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j16 tests/time_step tests/test_ops) > /tmp/build-$v.log 2>&1 || { tail -20 /tmp/build-$v.log; exit 1; }
done
for t in 16 4; do echo "test_ops ${t}t: $(OMP_NUM_THREADS=$t /tmp/b-new/tests/test_ops | tail -1)"; done
echo "built $(( $(date +%s) - T0 )) s"
for r in 1 2 3; do for v in $([ $((r%2)) = 1 ] && echo "old new" || echo "new old"); do
  for spec in "16 mlp 256 300" "16 lenet5 256 150" "8 mlp 256 200" "4 mlp 256 150" "2 mlp 256 80" "2 lenet5 256 40"; do
    set -- $spec
    echo "$v r$r ${1}t $2 b$3 $(OMP_NUM_THREADS=$1 timeout 60 /tmp/b-$v/tests/time_step $2 $3 $4 3 | grep -o 'median *[0-9.]*')"
  done
done; done > $OUT/ab-serial-parts-final.txt
sort -s -k3,5 $OUT/ab-serial-parts-final.txt | awk '{print $3,$4,$5,$1,$7}' | paste - - - - - -
echo "ab $(( $(date +%s) - T0 )) s"
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-e . > $OUT/install.log 2>&1 || tail -20 $OUT/install.log )
echo "installed $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
for t in 16 4; do
  [ $(( $(date +%s) - T0 )) -lt 300 ] || break
  timeout $(( 480 - ($(date +%s) - T0) )) python3 apps/bench.py --suite cpu --devices cpu --nets mlp --threads $t --images 6400 --repeats 3 --data .gpu/data --json $OUT/ --no-report 2>&1 | grep -v "^wrote"
  echo "cpu ${t}t $(( $(date +%s) - T0 )) s"
done
echo "end $(( $(date +%s) - T0 )) s"
