#!/usr/bin/env bash
# A/B of sgemm's NC from the L2 (old gemm.cpp in .gpu/gemm.old.cpp)
rm -rf /tmp/oldsrc /tmp/oldbuild; mkdir /tmp/oldsrc; cp -r core cuda python tests apps meson.build meson.options pyproject.toml /tmp/oldsrc/
cp .gpu/gemm.old.cpp /tmp/oldsrc/core/src/gemm.cpp
(meson setup /tmp/oldbuild /tmp/oldsrc -Dcuda=disabled && ninja -C /tmp/oldbuild tests/time_gemm) > $OUT/oldbuild.log 2>&1 || tail -20 $OUT/oldbuild.log
O=/tmp/oldbuild/tests N=/tmp/hc-build/tests
$N/test_gemm | tail -1
S="NN,1024,1024,1024 NN,2048,2048,2048 NT,1536,1536,1536 NN,256,3136,4096 NN,64,1568,288"
for r in 1 2 3; do for b in old new; do D=$O; [ $b = new ] && D=$N
  for t in 1 16; do echo "== $b r$r t$t"; OMP_NUM_THREADS=$t $D/time_gemm 0.15 $S | tail -5; done
done; done > $OUT/ab3.txt
