#!/usr/bin/env bash
# measurement matrix for issue 16 on the GPU machine's host CPU
B=/tmp/hc-build/tests
export HC_TIME_WALL=1 HC_TIME_DW=1
for t in 1 4 16; do
  for p in auto gemm direct; do
    echo "== threads $t path $p" >> $OUT/tl.txt
    OMP_NUM_THREADS=$t timeout 40 $B/time_layers 64 0.08 $p convnet,bnnet >> $OUT/tl.txt 2>&1
  done
done
for s in 1 2 4 8; do
  echo "== group $s" >> $OUT/tl.txt
  OMP_NUM_THREADS=1 HC_CONV_GROUP=$s timeout 30 $B/time_layers 64 0.08 gemm convnet >> $OUT/tl.txt 2>&1
done
for t in 4 16; do for b in 64 256; do
  echo "== time_step threads $t batch $b" >> $OUT/ts.txt
  OMP_NUM_THREADS=$t timeout 40 $B/time_step convnet $b 30 3 >> $OUT/ts.txt 2>&1
done; done
