"""CPU_PERF.md entry 22: seconds per layer (forward, backward) of a training step, from the
model's own profiler, and the step's wall time, on random data with 2 threads.

    python3 profile_step.py bnnet 256 4
"""
import sys
import time

import numpy as np

import heterocnn as hc


def main():
    name, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    hc.set_threads(2)
    model = hc.models.MODELS[name](seed=0)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)
    for _ in range(2):  # warm-up
        model.train_step(x, y, opt)
    model.profile(True)
    t0 = time.perf_counter()
    for _ in range(steps):
        model.train_step(x, y, opt)
    step = (time.perf_counter() - t0) / steps
    total = 0.0
    for r in model.layer_times():
        total += r["forward_s"] + r["backward_s"]
        print(f'{r["layer"][:60]:<60} {1e3 * r["forward_s"]:8.2f} {1e3 * r["backward_s"]:8.2f}')
    print(f"step {1e3 * step:.2f} ms, layers {1e3 * total:.2f} ms")


if __name__ == "__main__":
    main()
