"""CPU_PERF.md entry 24: hc.fit with the batch gather before the entry (numpy's indexing) and
after (the core's), alternating in one process, five rounds of one epoch of 16,384 random uint8
images; prints the range and median of ms a step for each.
    OMP_NUM_THREADS=2 python benchmarks/earlier/cpu-perf-24/fit_ab.py mlp 256"""
import sys
import time

import numpy as np

import heterocnn as hc
from heterocnn import training
from heterocnn.preprocess import UINT8_SCALE

new = training._batch


def old(X, idx, out):  # training._batch before entry 24
    if X.dtype == np.uint8:
        np.multiply(X[idx], UINT8_SCALE, out=out[: len(idx)], casting="unsafe")
    else:
        np.take(X, idx, axis=0, out=out[: len(idx)])
    return out[: len(idx)]


def main():
    net, b, n = sys.argv[1], int(sys.argv[2]), 16384
    rng = np.random.default_rng(0)
    X, y = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8), rng.integers(0, 10, n)
    model = hc.models.MODELS[net](seed=0)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    hc.fit(model, opt, (X[:2048], y[:2048]), epochs=1, batch_size=b, progress=False)
    ms = {"old": [], "new": []}
    for _ in range(5):
        for name, batch in (("old", old), ("new", new)):
            training._batch = batch
            t = time.perf_counter()
            hc.fit(model, opt, (X, y), epochs=1, batch_size=b, progress=False)
            ms[name].append((time.perf_counter() - t) / (n // b) * 1e3)
    training._batch = new
    print(net, b, "  ".join(f"{k} {min(v):.3f}-{max(v):.3f} (median {sorted(v)[2]:.3f})"
                            for k, v in ms.items()), "ms a step")


if __name__ == "__main__":
    main()
