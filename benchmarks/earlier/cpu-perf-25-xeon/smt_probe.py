#!/usr/bin/env python3
"""Which vCPUs share a physical core with cpu P (default 2), where the VM does not say
(CPU_PERF.md entry 25): one-thread SGEMM (numpy, 384^3 float32) pinned to cpu P, alone and then
with the same loop running on each other cpu in turn; a sibling slows it far more than another
core does. Usage: OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 python3 smt_probe.py [P]; prints
GFLOP/s and the ratio to alone."""
import os
import subprocess
import sys
import time

import numpy as np

N = 384


def gflops(seconds):
    a = np.random.default_rng(0).random((N, N), dtype=np.float32)
    b = a.copy()
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * N ** 3 * n / (time.perf_counter() - t0) / 1e9


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--hog":
        os.sched_setaffinity(0, {int(sys.argv[2])})
        while True:
            gflops(3600)
    probe = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {probe})
    alone = max(gflops(0.5) for _ in range(3))
    print(f"cpu {probe} alone: {alone:.1f} GFLOP/s", flush=True)
    for c in cpus:
        if c == probe:
            continue
        hog = subprocess.Popen([sys.executable, __file__, "--hog", str(c)], env=os.environ)
        time.sleep(0.3)
        r = max(gflops(0.5) for _ in range(2))
        hog.kill()
        hog.wait()
        print(f"with cpu {c:2d} busy: {r:6.1f} GFLOP/s ({r / alone:.2f} of alone)", flush=True)


if __name__ == "__main__":
    main()
