#!/usr/bin/env python3
"""Training images/s of heterocnn's nets as fit runs them, for A/B runs of two builds on one
machine (e.g. before and after a change):

    PYTHONPATH=/tmp/before python3 tools/ab_rates.py --device cuda --json before.json
    PYTHONPATH=/tmp/after  python3 tools/ab_rates.py --device cuda --json after.json

On a GPU the training set is held on the device and steps overlap (as fit runs them); on
the CPU batches come from host arrays. Random data (the rate does not depend on it); the
median of --repeats timed runs of --images images each, after untimed warm-up steps. Uses
only calls that older builds have too (SGD, DeviceDataset, _start_step(_on), _finish_steps)."""

import argparse
import json
import statistics
import time

import numpy as np

import heterocnn as hc


def rate(name, batch, device, images, repeats):
    model = hc.models.MODELS[name](seed=0).to(device)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    X = rng.random((8192, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 8192).astype(np.int64)
    steps = max(1, images // batch)
    idx = rng.integers(0, len(X), (steps, batch)).astype(np.int64)
    data = hc.DeviceDataset((X, y), device) if device != "cpu" else None

    def run(k):
        for i in range(k):
            if data is not None:
                model._start_step_on(data, idx[i % steps], opt)
            else:
                model._start_step(X[idx[i % steps]], y[idx[i % steps]], opt)
        model._finish_steps()

    run(max(3, steps // 4))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(steps)
        rates.append(steps * batch / (time.perf_counter() - t))
    return rates


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--nets", default="mlp,lenet5,convnet")
    p.add_argument("--batches", default="64,256")
    p.add_argument("--images", type=int, default=51200)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        hc.set_threads(a.threads)
    out = {"device": a.device, "threads": hc.build_info()["threads"], "rows": []}
    for name in a.nets.split(","):
        for batch in map(int, a.batches.split(",")):
            images = a.images if a.device != "cpu" or name != "convnet" else a.images // 16
            r = rate(name, batch, a.device, images, a.repeats)
            out["rows"].append({"net": name, "batch": batch, "rates": r,
                                "median": statistics.median(r)})
            print(f"{name:<8} batch {batch:<4} {statistics.median(r):>12,.0f} img/s  "
                  f"(min {min(r):,.0f}, max {max(r):,.0f})", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
