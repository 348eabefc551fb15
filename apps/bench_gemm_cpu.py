#!/usr/bin/env python3
"""Our CPU SGEMM against numpy's (OpenBLAS), same thread count, in one run.

    python apps/bench_gemm_cpu.py [--threads 2] [--repeats 7] [--json PATH]

Square sizes 128..2048 and the shapes the nets' layers produce (with their transposes), each
timed as the median of --repeats timed loops after a warm-up; prints GFLOP/s and the ratio.
The thread count is set through OMP_NUM_THREADS / OPENBLAS_NUM_THREADS before numpy loads.
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which slow a current OpenBLAS where they are set
for old ones, are removed for this run (see BENCHMARKS.md)."""

import argparse
import os
import sys

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument("--threads", type=int, default=2)
p.add_argument("--repeats", type=int, default=7)
p.add_argument("--json", default="bench-out/bench_gemm_cpu.json")
args = p.parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(args.threads)
for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(var, None)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import heterocnn as hc  # noqa: E402
from heterocnn import _core  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _bench_common import cpu_name, write_json  # noqa: E402

# (label, M, N, K, trans_a, trans_b): C (M,N) = op(A) op(B)
SHAPES = [(f"square {n}", n, n, n, False, False) for n in (128, 256, 512, 1024, 2048)] + [
    ("lenet5 conv1 fwd", 6, 784, 25, False, False),
    ("lenet5 conv2 fwd", 16, 100, 150, False, False),
    ("lenet5 conv2 dx", 150, 100, 16, True, False),
    ("convnet conv2 fwd", 32, 784, 288, False, False),
    ("convnet conv4 dw", 64, 576, 196, False, True),
    ("mlp fc1 fwd (x W^T)", 64, 256, 784, False, True),
    ("mlp fc1 dW (dy^T x)", 256, 784, 64, True, False),
]


def median_seconds(fn, min_time=0.02):
    """Median seconds per call of fn over --repeats timings of a loop long enough (min_time)
    for the clock, after a warm-up."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        if time.perf_counter() - start >= min_time:
            break
        calls *= 2
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main():
    rng = np.random.default_rng(0)
    hc.set_threads(args.threads)
    rows = []
    print(f"{cpu_name()}, {args.threads} threads, kernel {hc.build_info()['gemm_kernel']}, "
          f"numpy {np.__version__}, median of {args.repeats}")
    print(f"{'shape':<22} {'M':>5} {'N':>5} {'K':>5} {'ours GFLOP/s':>13} {'numpy':>8} {'ratio':>6}")
    for label, M, N, K, ta, tb in SHAPES:
        A = rng.standard_normal((K, M) if ta else (M, K), dtype=np.float32)
        B = rng.standard_normal((N, K) if tb else (K, N), dtype=np.float32)
        opa, opb = (A.T if ta else A), (B.T if tb else B)
        ours = median_seconds(lambda: _core.sgemm(A, B, ta, tb))
        theirs = median_seconds(lambda: opa @ opb)
        err = np.abs(_core.sgemm(A, B, ta, tb) - opa @ opb).max() / np.abs(opa @ opb).max()
        assert err < 1e-4, f"{label}: relative error {err}"
        flops = 2 * M * N * K
        rows.append({"shape": label, "M": M, "N": N, "K": K, "trans_a": ta, "trans_b": tb,
                     "ours_gflops": flops / ours / 1e9, "numpy_gflops": flops / theirs / 1e9})
        r = rows[-1]
        print(f"{label:<22} {M:>5} {N:>5} {K:>5} {r['ours_gflops']:>13.1f} "
              f"{r['numpy_gflops']:>8.1f} {r['ours_gflops'] / r['numpy_gflops']:>5.2f}x")
    write_json(args.json, {"machine": {"cpu": cpu_name(), "threads": args.threads},
                           "versions": {"heterocnn": hc.__version__, "numpy": np.__version__},
                           "kernel": hc.build_info()["gemm_kernel"], "rows": rows})
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
