"""Which conv-BN net and recipe reaches 94.5% on Fashion-MNIST within 20 epochs, and what it
costs: the search behind hc.models.bnnet, run in PyTorch (cuDNN, TF32 off) on a GPU so that
the candidates train in minutes. Each candidate trains in its own process (all at once on one
GPU); each prints its test accuracy per epoch and the epoch it first reached the target, and
one process times PyTorch eager training steps of every candidate at batch 64 and 256.

    python tools/bnnet_torch_search.py --data .gpu/data --out results.json

Candidates: widths of three stages (each stage: `convs` x [Conv3x3 (bias off) - BatchNorm -
ReLU], then MaxPool2d(2)), a first Conv3x3 of the first width before them, global average
pooling and one Linear. Recipe: SGD with Nesterov momentum 0.9, weight decay 5e-4, peak
learning rate `lr` with a linear warm-up over the first epoch and a cosine to 0, label
smoothing, random 2-pixel shifts and horizontal flips; batch 128.
"""

import argparse
import gzip
import json
import math
import multiprocessing as mp
import os
import time

import numpy as np

CANDIDATES = {
    "s1": dict(widths=(32, 64, 128), convs=1),
    "s2": dict(widths=(32, 64, 128), convs=2),
    "m1": dict(widths=(64, 128, 256), convs=1),
    "m2": dict(widths=(64, 128, 256), convs=2),
    "m1-nols": dict(widths=(64, 128, 256), convs=1, smoothing=0.0),
    "s2-e30": dict(widths=(32, 64, 128), convs=2, epochs=30),
}


def idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(folder):
    def part(name):
        x = idx(os.path.join(folder, f"{name}-images-idx3-ubyte.gz"))
        y = idx(os.path.join(folder, f"{name}-labels-idx1-ubyte.gz"))
        return x, y
    return part("train"), part("t10k")


def make_net(torch, widths, convs, **_):
    nn = torch.nn

    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    layers = block(1, widths[0])
    cin = widths[0]
    for w in widths:
        for _ in range(convs):
            layers += block(cin, w)
            cin = w
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers)


def augment(torch, x, gen):
    """Random shifts of up to 2 pixels (zero border) and horizontal flips, on the GPU."""
    n = x.shape[0]
    p = torch.nn.functional.pad(x, (2, 2, 2, 2))[:, 0]
    oy = torch.randint(0, 5, (n,), device=x.device, generator=gen)
    ox = torch.randint(0, 5, (n,), device=x.device, generator=gen)
    ar = torch.arange(28, device=x.device)
    rows = (oy[:, None] + ar)[:, :, None]
    cols = (ox[:, None] + ar)[:, None, :]
    out = p[torch.arange(n, device=x.device)[:, None, None], rows, cols][:, None]
    flip = torch.rand(n, device=x.device, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def train(name, folder, queue, device="cuda", limit=None, epochs=None):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    cfg = {"lr": 0.1, "smoothing": 0.1, "epochs": 20, "batch": 128, **CANDIDATES[name]}
    if epochs:
        cfg["epochs"] = epochs
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = load(folder)
    xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:limit], yte[:limit]
    dev = device
    mean, std = 0.2860, 0.3530
    xtr = (torch.tensor(xtr, device=dev).float()[:, None] / 255 - mean) / std
    xte = (torch.tensor(xte, device=dev).float()[:, None] / 255 - mean) / std
    ytr, yte = torch.tensor(ytr, device=dev).long(), torch.tensor(yte, device=dev).long()
    net = make_net(torch, **cfg).to(dev)
    opt = torch.optim.SGD(net.parameters(), lr=cfg["lr"], momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    steps_per_epoch = math.ceil(len(xtr) / cfg["batch"])
    total = cfg["epochs"] * steps_per_epoch

    def lr_at(s):
        if s < steps_per_epoch:
            return cfg["lr"] * (0.1 + 0.9 * s / steps_per_epoch)
        t = (s - steps_per_epoch) / max(1, total - steps_per_epoch - 1)
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg["smoothing"])
    gen = torch.Generator(device=dev).manual_seed(0)
    accs, step, t0, first = [], 0, time.time(), None
    for epoch in range(cfg["epochs"]):
        net.train()
        perm = torch.randperm(len(xtr), device=dev, generator=gen)
        for i in range(0, len(xtr), cfg["batch"]):
            b = perm[i:i + cfg["batch"]]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = loss_fn(net(augment(torch, xtr[b], gen)), ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        net.eval()
        with torch.no_grad():
            right = sum((net(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                        for i in range(0, len(xte), 1000))
        accs.append(right / len(xte))
        if first is None and accs[-1] >= 0.945:
            first = epoch + 1
        print(f"{name} epoch {epoch + 1} acc {accs[-1]:.4f} {time.time() - t0:.0f}s", flush=True)
    params = sum(p.numel() for p in net.parameters())
    queue.put({"name": name, "config": cfg, "accuracy": accs, "first_epoch_at_target": first,
               "seconds": time.time() - t0, "parameters": params})


def time_eager(queue, device="cuda"):
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    out = {}
    for name, cfg in CANDIDATES.items():
        if name.endswith(("-nols", "-e30")):
            continue
        for batch in (64, 256):
            net = make_net(torch, **cfg).to(device)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
            x = torch.randn(batch, 1, 28, 28, device=device)
            y = torch.randint(0, 10, (batch,), device=device)
            loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

            def step():
                loss = loss_fn(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            for _ in range(30):
                step()
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            sync()
            t = time.perf_counter()
            n = 200 if device == "cuda" else 2
            for _ in range(n):
                step()
            sync()
            out[f"{name}/{batch}"] = n * batch / (time.perf_counter() - t)
            print(f"eager {name} batch {batch}: {out[f'{name}/{batch}']:.0f} img/s", flush=True)
    queue.put({"name": "eager_img_per_s", "rates": out})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--limit", type=int, help="train and test on this many images (smoke run)")
    ap.add_argument("--epochs", type=int, help="instead of each candidate's")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=train, args=(n, args.data, queue, args.device, args.limit,
                                             args.epochs)) for n in args.only]
    for p in procs:
        p.start()
    results = []
    for _ in procs:  # written as they come, so a run cut short keeps what finished
        results.append(queue.get())
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    for p in procs:
        p.join()
    timer = ctx.Process(target=time_eager, args=(queue, args.device))  # alone on the GPU
    timer.start()
    results.append(queue.get())
    timer.join()
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    for r in results:
        if "accuracy" in r:
            print(f"{r['name']}: best {max(r['accuracy']):.4f} last {r['accuracy'][-1]:.4f} "
                  f"first>=94.5% at epoch {r['first_epoch_at_target']} ({r['seconds']:.0f}s, "
                  f"{r['parameters']} parameters)")


if __name__ == "__main__":
    main()
