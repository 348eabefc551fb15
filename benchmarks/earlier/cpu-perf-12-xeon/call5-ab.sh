#!/usr/bin/env bash
# A/B of the conv dispatch change (old conv2d.cpp in .gpu/conv2d.old.cpp) on the host CPU
rm -rf /tmp/oldsrc /tmp/oldbuild; mkdir /tmp/oldsrc; cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/oldsrc/
cp .gpu/conv2d.old.cpp /tmp/oldsrc/core/src/conv2d.cpp
(meson setup /tmp/oldbuild /tmp/oldsrc -Dcuda=disabled && ninja -C /tmp/oldbuild tests/time_step tests/time_layers) > $OUT/oldbuild.log 2>&1 || tail -20 $OUT/oldbuild.log
O=/tmp/oldbuild/tests N=/tmp/hc-build/tests
for r in 1 2 3; do for b in old new; do D=$O; [ $b = new ] && D=$N
  echo "$b r$r 16t b64  $(OMP_NUM_THREADS=16 $D/time_step convnet 64 40 3 | grep -o 'median.*')"
  echo "$b r$r 16t b256 $(OMP_NUM_THREADS=16 $D/time_step convnet 256 15 3 | grep -o 'median.*')"
  echo "$b r$r 4t b256  $(OMP_NUM_THREADS=4 $D/time_step convnet 256 5 3 | grep -o 'median.*')"
  echo "$b r$r 16t dw   $(HC_TIME_WALL=1 HC_TIME_DW=1 OMP_NUM_THREADS=16 $D/time_layers 64 0.05 auto convnet | grep -A1 'conv[234] ' | grep dw | awk '{print $2}' | tr '\n' ' ')"
done; done
