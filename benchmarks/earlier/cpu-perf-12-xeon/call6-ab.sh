#!/usr/bin/env bash
# second A/B of the conv dispatch change, with 8 vs 16 threads per layer
rm -rf /tmp/oldsrc /tmp/oldbuild; mkdir /tmp/oldsrc; cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/oldsrc/
cp .gpu/conv2d.old.cpp /tmp/oldsrc/core/src/conv2d.cpp
(meson setup /tmp/oldbuild /tmp/oldsrc -Dcuda=disabled && ninja -C /tmp/oldbuild tests/time_step tests/time_layers) > $OUT/oldbuild.log 2>&1 || tail -20 $OUT/oldbuild.log
O=/tmp/oldbuild/tests N=/tmp/hc-build/tests
for r in 1 2 3 4 5; do for b in old new; do D=$O; [ $b = new ] && D=$N
  [ $((r % 2)) = 0 ] && { [ $b = old ] && D=$N || D=$O; b2=$([ $b = old ] && echo new || echo old); } || b2=$b
  echo "$b2 r$r 16t b64 convnet $(OMP_NUM_THREADS=16 $D/time_step convnet 64 40 3 | grep -o 'median.*')"
  echo "$b2 r$r 16t b256 convnet $(OMP_NUM_THREADS=16 $D/time_step convnet 256 15 3 | grep -o 'median.*')"
  echo "$b2 r$r 16t b64 lenet5 $(OMP_NUM_THREADS=16 $D/time_step lenet5 64 100 3 | grep -o 'median.*')"
done; done > $OUT/ab2.txt
for t in 8 16; do HC_TIME_WALL=1 OMP_NUM_THREADS=$t timeout 60 $N/time_layers 64 0.05 auto > $OUT/tl-$t.txt 2>&1; done
