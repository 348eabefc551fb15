#!/usr/bin/env bash
# Session 2026-12-07 call C (tree = 2d HEAD after entry 18's code): the C++ tests at 1, 4 and 16
# threads on the Xeon (the 1-thread dw precision), the convnet step against 9c7415b
# (alternating), then --suite cpu (all nets) at 2, 4 and 16 threads and --suite layers at 16 and 4.
set -u
T0=$(date +%s)
R=/tmp/res; rm -rf $R; mkdir -p $R
for v in old new; do rm -rf /tmp/src-$v /tmp/b-$v; mkdir /tmp/src-$v; done
tar -xf .gpu/head.tar -C /tmp/src-old
cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-new/
for v in old new; do
  (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j16 tests/time_step tests/test_ops tests/test_gemm) > /tmp/build-$v.log 2>&1 || { tail -20 /tmp/build-$v.log; exit 1; } &
done; wait
for t in 1 4 16; do echo "new ${t}t: test_ops $(OMP_NUM_THREADS=$t /tmp/b-new/tests/test_ops | tail -1), test_gemm $(OMP_NUM_THREADS=$t /tmp/b-new/tests/test_gemm | tail -1)"; done
echo "old 1t: test_ops $(OMP_NUM_THREADS=1 /tmp/b-old/tests/test_ops | grep -c FAIL) FAIL lines"
echo "built $(( $(date +%s) - T0 )) s"
ts() { OMP_NUM_THREADS=$2 timeout 60 /tmp/b-$1/tests/time_step convnet $3 $4 3 | sed -n 's/.*median *\([0-9.]*\) ms.*/\1/p'; }
for r in 1 2 3; do for v in $([ $((r%2)) = 1 ] && echo "old new" || echo "new old"); do
  echo "$v r$r 2t/64 $(ts $v 2 64 8) 2t/256 $(ts $v 2 256 3) 4t/64 $(ts $v 4 64 12) 4t/256 $(ts $v 4 256 4) 16t/64 $(ts $v 16 64 30) 16t/256 $(ts $v 16 256 10)"
done; done | tee $R/ab-step.txt
echo "ab $(( $(date +%s) - T0 )) s"
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-c . > $R/install.log 2>&1 || tail -20 $R/install.log )
echo "installed $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
tar -czf $OUT/c.tgz -C /tmp res
for spec in "cpu 2 1600" "cpu 4 3200" "cpu 16 6400" "layers 16 0" "layers 4 0"; do set -- $spec
  [ $(( $(date +%s) - T0 )) -lt 470 ] || break
  imgs=$([ $3 = 0 ] && echo "" || echo "--images $3")
  timeout $(( 565 - ($(date +%s) - T0) )) python3 apps/bench.py --suite $1 --devices cpu --nets mlp,lenet5,convnet,bnnet --threads $2 $imgs --repeats 3 --data .gpu/data --json $R/$1-$2t/ --no-report 2>&1 | grep -v "^wrote"
  echo "$1 ${2}t $(( $(date +%s) - T0 )) s"
  tar -czf $OUT/c.tgz -C /tmp res
done
echo "end $(( $(date +%s) - T0 )) s"
