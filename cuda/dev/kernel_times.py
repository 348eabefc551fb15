"""Per-kernel GPU times of convnet training steps, to see where a step's time goes kernel by
kernel (after tools/gpu_run.sh has installed heterocnn, on the GPU machine):
    ncu --clock-control none --cache-control none --metrics gpu__time_duration.sum --csv \
        python3 cuda/dev/kernel_times.py [batch ...] > ncu.csv
    python3 cuda/dev/kernel_times.py --table ncu.csv
Each batch size (default 64 and 256) runs 3 steps op by op (model.profile, so no graph hides
the launches from ncu); the table lists every kernel in launch order, so the last third of
each batch's rows is one warm step. Kernel durations from ncu are serialised, so their sum is
the step's GPU time without overlap (it matched the graph-replayed step within 1% on an H200)."""
import csv
import sys

import numpy as np


def run(batches):
    import heterocnn as hc
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, (4096, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 4096).astype(np.int64)
    data = hc.DeviceDataset((X, y), "cuda")
    for batch in batches:
        model = hc.models.convnet(seed=0).to("cuda")
        opt = hc.SGD(model, lr=0.01, momentum=0.9)
        model.profile(True)
        for _ in range(3):
            model.train_step_on(data, rng.integers(0, 4096, batch).astype(np.int64), opt)
        print(f"batch {batch} done", file=sys.stderr)


def table(path):
    rows = []
    with open(path) as f:
        lines = [l for l in f if l.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") == "gpu__time_duration.sum":
            rows.append((r["Kernel Name"][:60], r["Grid Size"], r["Block Size"],
                         float(r["Metric Value"].replace(",", "")), r["Metric Unit"]))
    for name, grid, block, v, unit in rows:
        us = v * {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3,
                  "msecond": 1e3}[unit]
        print(f"{us:9.1f} us  {grid:>16} {block:>12}  {name}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--table"]:
        table(sys.argv[2])
    else:
        run([int(b) for b in sys.argv[1:]] or [64, 256])
