#!/usr/bin/env bash
# Winograd call 3: --suite cpu for the tables (16, 4, 2 threads), CPU-only install.
set -u
T0=$(date +%s)
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build . > $OUT/install.log 2>&1 || tail -20 $OUT/install.log )
echo "installed $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
for spec in "16 6400 mlp,lenet5,convnet,bnnet" "4 3200 mlp,lenet5,convnet,bnnet" "2 3200 mlp,lenet5,convnet"; do
  set -- $spec
  [ $(( $(date +%s) - T0 )) -lt 400 ] || break
  timeout $(( 470 - ($(date +%s) - T0) )) python3 apps/bench.py --suite cpu --devices cpu --nets $3 --threads $1 --images $2 --repeats 3 --data .gpu/data --json $OUT/ --no-report 2>&1 | grep -v "^wrote"
  echo "cpu ${1}t $(( $(date +%s) - T0 )) s"
done
echo "end $(( $(date +%s) - T0 )) s"
