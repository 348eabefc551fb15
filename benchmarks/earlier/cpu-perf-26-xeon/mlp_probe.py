#!/usr/bin/env python3
"""Issue 16, mlp at batch 256 on the Xeon: where heterocnn's step and PyTorch's differ.

    taskset -c 2,3 python3 mlp_probe.py [threads] [batch] [rounds]

Prints, per round (alternating the two contenders):
- each framework's whole SGD step (median ms of repeated steps on one random batch);
- heterocnn's per-layer forward/backward from model.profile(), and the rest of its step;
- PyTorch's per-op self CPU time from torch.profiler (the top ops);
- the step's matrix products alone in PyTorch (torch.mm with the same transposes), ms each,
  so that time_gemm's figures for heterocnn's sgemm on the same shapes compare with them.
"""
import statistics
import sys
import time

import numpy as np
import torch

import heterocnn as hc
from heterocnn.interop import to_torch


def median_ms(fn, seconds=1.0):
    for _ in range(5):
        fn()
    times, t_end = [], time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times), len(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    hc.set_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int64)

    model = hc.models.mlp(seed=0)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    tmodel = to_torch(hc.models.mlp(seed=0))
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)

    def hc_step():
        model.train_step(x, y, opt)

    def torch_step():
        topt.zero_grad(set_to_none=True)
        loss_fn(tmodel(tx), ty).backward()
        topt.step()

    print(f"threads {threads}, batch {batch}, torch {torch.__version__}, "
          f"{torch.__config__.parallel_info().splitlines()[0]}")
    for r in range(rounds):
        h = median_ms(hc_step)
        t = median_ms(torch_step)
        print(f"round {r}: step median (min, n) heterocnn {h[0]:.3f} ({h[1]:.3f}, {h[2]}) ms, "
              f"torch {t[0]:.3f} ({t[1]:.3f}, {t[2]}) ms, ratio {t[0] / h[0]:.2f}x")

    model.profile(True)
    n = 200
    t0 = time.perf_counter()
    for _ in range(n):
        hc_step()
    step = 1e3 * (time.perf_counter() - t0) / n
    times = model.layer_times()
    model.profile(False)
    total = 0.0
    print("heterocnn per layer (ms forward, backward):")
    for row in times:
        total += row["forward_s"] + row["backward_s"]
        print(f"  {row['layer'][:40]:<40} {1e3 * row['forward_s']:7.3f} "
              f"{1e3 * row['backward_s']:7.3f}")
    print(f"  profiled step {step:.3f} ms, layers {1e3 * total:.3f}, rest {step - 1e3 * total:.3f}")

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(n):
            torch_step()
    print("torch ops, self CPU time per step (us):")
    rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    for e in rows[:14]:
        print(f"  {e.key[:40]:<40} {e.self_cpu_time_total / n:9.1f}  calls/step "
              f"{e.count / n:.0f}")

    # The step's products, as heterocnn's Linear runs them (C = op(A) op(B), row-major).
    shapes = []
    dims = [784, 256, 128, 10]
    for i in range(3):
        k, m = dims[i], dims[i + 1]
        shapes.append((f"fc{i + 1} fwd", "NT", batch, m, k))
        shapes.append((f"fc{i + 1} dw", "TN", m, k, batch))
        if i > 0:
            shapes.append((f"fc{i + 1} dx", "NN", batch, k, m))
    g = torch.Generator().manual_seed(0)
    print("torch.mm alone (us, GFLOP/s); time_gemm shape:")
    for what, tr, M, N, K in shapes:
        a = torch.rand((K, M) if tr[0] == "T" else (M, K), generator=g)
        b = torch.rand((N, K) if tr[1] == "T" else (K, N), generator=g)
        aa = a.t() if tr[0] == "T" else a
        bb = b.t() if tr[1] == "T" else b
        med = median_ms(lambda: torch.mm(aa, bb), 0.3)[0]
        print(f"  {what:<8} {1e3 * med:8.1f} {2 * M * N * K / med / 1e6:7.1f}   "
              f"{tr},{M},{N},{K}")


if __name__ == "__main__":
    main()
