#!/usr/bin/env bash
# Winograd call 2: old (7cb047a), new, and new with Winograd blocks in a quarter of the L2 (q):
# interleaved time_step A/B of convnet; time_layers of convnet at 16 threads; --suite cpu again.
set -u
T0=$(date +%s)
rm -rf /tmp/src-* /tmp/b-*; mkdir /tmp/src-old /tmp/src-new /tmp/src-q
tar -xf .gpu/old.tar -C /tmp/src-old
cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-new/
cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/src-q/
sed -i 's|cpu_l2_bytes() / 2 / per_row|cpu_l2_bytes() / 4 / per_row|' /tmp/src-q/core/src/conv_winograd.cpp
grep -c "/ 4 / per_row" /tmp/src-q/core/src/conv_winograd.cpp
for v in old new q; do
  ( (meson setup /tmp/b-$v /tmp/src-$v -Dcuda=disabled && ninja -C /tmp/b-$v -j5 tests/time_step tests/time_layers) > /tmp/build-$v.log 2>&1 || tail -20 /tmp/build-$v.log ) &
done
( rm -rf /tmp/site && python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && PYTHONPATH=/tmp/site python3 -m pip install -q --no-build-isolation --no-deps --no-index -C setup-args=-Dcuda=disabled -C build-dir=/tmp/hc-build . > $OUT/install.log 2>&1 || tail -20 $OUT/install.log ) &
wait
echo "built $(( $(date +%s) - T0 )) s"; ls /tmp/b-*/tests/time_step
for r in 1 2 3; do for v in $([ $((r%2)) = 1 ] && echo "old new q" || echo "q new old"); do
  for spec in "16 convnet 64 40" "16 convnet 256 12" "4 convnet 256 4" "2 convnet 64 5"; do
    set -- $spec
    echo "$v r$r ${1}t $2 b$3 $(OMP_NUM_THREADS=$1 /tmp/b-$v/tests/time_step $2 $3 $4 3 | grep -o 'median.*')"
  done
done; done > /tmp/ab.txt
sort -s -k3,5 /tmp/ab.txt | sed 's/ per step//' > $OUT/ab2-step-winograd.txt; awk '{print $1,$2,$3,$4,$5,$7}' $OUT/ab2-step-winograd.txt | paste - - - - - - - - -
echo "ab $(( $(date +%s) - T0 )) s"
for v in old new q; do HC_TIME_WALL=1 HC_TIME_DW=1 OMP_NUM_THREADS=16 timeout 40 /tmp/b-$v/tests/time_layers 256 0.1 auto convnet > $OUT/time_layers-16t-b256-$v.txt 2>&1; done
grep -h "conv[234]" $OUT/time_layers-16t-b256-*.txt | head -12
echo "layers $(( $(date +%s) - T0 )) s"
export PYTHONPATH=/tmp/site
[ $(( $(date +%s) - T0 )) -lt 420 ] && timeout $(( 590 - ($(date +%s) - T0) )) python3 apps/bench.py --suite cpu --devices cpu --nets convnet --threads 16 --images 9600 --repeats 3 --data .gpu/data --json $OUT/cpu2-16t.json --no-report 2>&1 | grep -v "^wrote"
echo "end $(( $(date +%s) - T0 )) s"
