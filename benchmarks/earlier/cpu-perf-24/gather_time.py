"""CPU_PERF.md entry 24: fit's batch gather, numpy's indexing (the code before the entry)
against the core's gather_batch, least of 300 random batches of 64, 256 and 1024 from 60,000
uint8 images of 28 x 28; asserts both give the same bits.
    OMP_NUM_THREADS=2 python benchmarks/earlier/cpu-perf-24/gather_time.py"""
import time

import numpy as np

from heterocnn import _core
from heterocnn.preprocess import UINT8_SCALE

X = np.random.default_rng(1).integers(0, 256, (60000, 1, 28, 28), dtype=np.uint8)
rng = np.random.default_rng(0)
for b in (64, 256, 1024):
    out, ref = np.empty((b, 1, 28, 28), np.float32), np.empty((b, 1, 28, 28), np.float32)
    best_np = best_core = 1e9
    for _ in range(300):
        idx = rng.permutation(len(X))[:b]
        t = time.perf_counter()
        np.multiply(X[idx], UINT8_SCALE, out=ref, casting="unsafe")
        best_np = min(best_np, time.perf_counter() - t)
        t = time.perf_counter()
        _core.gather_batch(X, idx, out, UINT8_SCALE)
        best_core = min(best_core, time.perf_counter() - t)
        assert np.array_equal(out.view(np.uint32), ref.view(np.uint32))
    print(f"batch {b}: numpy {best_np * 1e6:.1f} us, core {best_core * 1e6:.1f} us")
