#!/usr/bin/env python3
"""Training throughput on the CPU: heterocnn against PyTorch, same nets, same batches, same
threads, in one run.

    python apps/bench_cpu.py [--threads 2] [--batch-size 64] [--steps 300] [--json PATH]

Each net trains for --steps SGD steps (momentum 0.9) on Fashion-MNIST batches held in memory,
after --warmup steps that are not timed; this repeats --repeats times and the median counts.
PyTorch (the optional ``bench`` extra) starts from the same weights. Prints a table of
images/s and the ratio heterocnn / PyTorch, and writes the figures as JSON."""

import argparse
import platform
import statistics
import time

import numpy as np

import heterocnn as hc
from _bench_common import cpu_name, write_json
from heterocnn.interop import to_torch, torch_loss

NETS = ("mlp", "lenet5", "convnet")


def batches(batch_size, count, seed=0):
    """``count`` float32 batches of Fashion-MNIST (the full set when installed)."""
    train = hc.datasets.fashion_mnist("train")
    X, y = train.as_tuple()
    idx = np.random.default_rng(seed).permutation(len(X))[: batch_size * count]
    xb = (X[idx].astype(np.float32) / 255).reshape(count, batch_size, *X.shape[1:])
    return [(xb[i], y[idx].reshape(count, batch_size)[i]) for i in range(count)]


def timed(step, data, steps, warmup, repeats):
    """Median images/s of ``steps`` calls of step(x, y) cycling through ``data``."""
    for i in range(warmup):
        step(*data[i % len(data)])
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(steps):
            step(*data[i % len(data)])
        rates.append(steps * len(data[0][1]) / (time.perf_counter() - start))
    return statistics.median(rates), rates


def bench_heterocnn(name, data, args):
    model = hc.models.MODELS[name](seed=0)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    return timed(lambda x, y: model.train_step(x, y, opt), data, args.steps, args.warmup,
                 args.repeats)


def bench_torch(name, data, args):
    import torch

    model = to_torch(hc.models.MODELS[name](seed=0))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch_loss(hc.models.MODELS[name]())
    tdata = [(torch.from_numpy(x), torch.from_numpy(y)) for x, y in data]

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    return timed(step, tdata, args.steps, args.warmup, args.repeats)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    p.add_argument("--json", default="bench-out/bench_cpu.json")
    args = p.parse_args()

    hc.set_threads(args.threads)
    try:
        import torch

        torch.set_num_threads(args.threads)
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
        print("PyTorch is not installed (pip install '.[bench]'): heterocnn figures only")
    data = batches(args.batch_size, 50)
    cpu = cpu_name()
    results = {"machine": {"cpu": cpu, "threads": args.threads, "platform": platform.platform()},
               "versions": {"heterocnn": hc.__version__, "torch": torch_version,
                            "numpy": np.__version__},
               "build": hc.build_info(), "batch_size": args.batch_size, "steps": args.steps,
               "repeats": args.repeats, "data": hc.datasets.fashion_mnist_source(), "nets": {}}
    print(f"{cpu}, {args.threads} threads, batch {args.batch_size}, {args.steps} steps, "
          f"median of {args.repeats}")
    print(f"{'net':<8} {'heterocnn img/s':>16} {'PyTorch img/s':>14} {'ratio':>7}")
    for name in args.nets:
        ours, ours_all = bench_heterocnn(name, data, args)
        entry = {"heterocnn": ours, "heterocnn_repeats": ours_all}
        line = f"{name:<8} {ours:>16,.0f}"
        if torch_version:
            theirs, theirs_all = bench_torch(name, data, args)
            entry.update(torch=theirs, torch_repeats=theirs_all, ratio=ours / theirs)
            line += f" {theirs:>14,.0f} {ours / theirs:>6.2f}x"
        results["nets"][name] = entry
        print(line, flush=True)
    write_json(args.json, results)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
