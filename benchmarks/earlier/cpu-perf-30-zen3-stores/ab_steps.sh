#!/usr/bin/env bash
# time_step of the four nets and time_gemm on mlp's products, two builds alternated: BASE
# (626ae92) and HEAD, 2 threads. Usage: ab_steps.sh BASE_BUILD HEAD_BUILD [rounds=3]
# (meson builds with tests/time_step and tests/time_gemm)
set -u
shapes="NT,256,256,784 TN,256,784,256 NT,256,128,256 NN,256,256,128 TN,128,256,256 TN,64,56,64 TN,64,8,256 NN,256,10,128 NN,1024,1024,1024"
for r in $(seq ${3:-3}); do
  for b in "$1" "$2"; do
    echo "== round $r $b"
    for spec in "mlp 64 400 5" "mlp 256 200 5" "lenet5 64 200 3" "lenet5 256 60 3" "convnet 64 10 3" "bnnet 64 6 3"; do
      OMP_NUM_THREADS=2 "$b"/tests/time_step $spec
    done
    OMP_NUM_THREADS=2 "$b"/tests/time_gemm 0.3 $shapes 2>&1 | grep given
  done
done
