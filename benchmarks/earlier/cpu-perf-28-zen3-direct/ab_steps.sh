#!/usr/bin/env bash
# time_step and time_layers of two builds, alternated: BASE (2ac8adc) and HEAD, 2 threads.
# Usage: ab_steps.sh BASE_BUILD HEAD_BUILD   (meson builds with tests/time_step, tests/time_layers)
set -u
for r in 1 2 3; do
  for b in "$1" "$2"; do
    echo "== round $r $b"
    for spec in "lenet5 64 200 3" "lenet5 256 60 3" "convnet 64 10 3" "bnnet 64 6 3"; do
      OMP_NUM_THREADS=2 "$b"/tests/time_step $spec
    done
    OMP_NUM_THREADS=2 "$b"/tests/time_layers 64 0.2 auto lenet5,convnet | grep -E "conv1|conv2 6|pool"
  done
done
