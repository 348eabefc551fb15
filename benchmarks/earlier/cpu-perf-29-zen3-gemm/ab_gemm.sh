#!/usr/bin/env bash
# sgemm's team on the products of mlp's step (batch 256 and 64) and two squares, two builds
# alternated, 2 threads: time_gemm's "rule" column (GFLOP/s, sgemm as the step calls it).
# Usage: ab_gemm.sh BASE_BUILD HEAD_BUILD [rounds=4]
set -u
shapes="NT,256,256,784 TN,256,784,256 NT,256,128,256 NN,256,256,128 TN,128,256,256 NT,64,256,784 TN,256,784,64 NN,64,256,128 NN,512,512,512 NN,1024,1024,1024"
for r in $(seq ${3:-4}); do
  for b in "$1" "$2"; do
    echo "== round $r $b"
    OMP_NUM_THREADS=2 "$b"/tests/time_gemm 0.3 $shapes 2>&1 | tail -10
  done
done
