#!/usr/bin/env bash
# Session 2026-12-07 call B: the direct dw in L1 chunks on the Xeon host. Three builds,
# alternating: old = 9c7415b (.gpu/head.tar), new = the tree (e9b98aa), rule = the tree with
# Winograd's dw from 32 input channels (conv2d.cpp winograd_wins). Then PyTorch against new.
set -u
T0=$(date +%s)
R=/tmp/res; rm -rf $R; mkdir -p $R
for v in old new rule; do rm -rf /tmp/src-$v /tmp/b-$v; mkdir /tmp/src-$v; done
tar -xf .gpu/head.tar -C /tmp/src-old
for v in new rule; do cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-$v/; done
sed -i 's/if (pass == Pass::WeightGrad) return g.C >= 64 \&\& M >= 64;/if (pass == Pass::WeightGrad) return g.C >= 32 \&\& M >= 64;/' /tmp/src-rule/core/src/conv2d.cpp
grep -c "g.C >= 32 && M >= 64" /tmp/src-rule/core/src/conv2d.cpp
for v in old new rule; do
  (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j16 tests/time_step tests/time_layers tests/test_ops) > /tmp/build-$v.log 2>&1 || { tail -20 /tmp/build-$v.log; exit 1; } &
done; wait
for v in new rule; do for t in 16 4 1; do echo "test_ops $v ${t}t: $(OMP_NUM_THREADS=$t /tmp/b-$v/tests/test_ops | tail -1)"; done; done
echo "built $(( $(date +%s) - T0 )) s"
for r in 1 2 3; do
  case $r in 1) order="old new rule";; 2) order="rule old new";; 3) order="new rule old";; esac
  for v in $order; do
    for spec in "2 64" "2 256" "4 64" "4 256"; do set -- $spec
      HC_TIME_WALL=1 HC_TIME_DW=1 OMP_NUM_THREADS=$1 timeout 60 /tmp/b-$v/tests/time_layers $2 0.08 auto convnet > $R/tl-$v-${1}t-b$2-r$r.txt 2>&1
    done
    for spec in "2 64 8" "2 256 3" "4 64 12" "4 256 4" "16 64 30" "16 256 10"; do set -- $spec
      echo "$v r$r ${1}t b$2 $(OMP_NUM_THREADS=$1 timeout 60 /tmp/b-$v/tests/time_step convnet $2 $3 3 | grep -o 'median *[0-9.]*')"
    done
  done
  echo "round $r $(( $(date +%s) - T0 )) s" >&2
done > $R/ab-step.txt
tar -czf $OUT/b.tgz -C /tmp res
sort -s -k3,4 $R/ab-step.txt | awk '{print $3,$4,$1,$6}' | paste - - - - - - - - -
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build-b . > $R/install.log 2>&1 || tail -20 $R/install.log )
echo "installed $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
for t in 2 4; do
  [ $(( $(date +%s) - T0 )) -lt 430 ] || break
  timeout $(( 555 - ($(date +%s) - T0) )) python3 apps/bench.py --suite cpu --devices cpu --nets convnet,bnnet --threads $t --images 1600 --repeats 3 --data .gpu/data --json $R/ --no-report 2>&1 | grep -v "^wrote"
  echo "cpu ${t}t $(( $(date +%s) - T0 )) s"
done
tar -czf $OUT/b.tgz -C /tmp res
echo "end $(( $(date +%s) - T0 )) s"
