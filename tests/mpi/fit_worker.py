"""Run by tests/test_distributed.py under mpirun: trains lenet5 on the embedded sample with
hc.fit(comm=COMM_WORLD) and writes, on rank 0, the weights and momenta to OUT (npz).

    mpirun -n P python fit_worker.py OUT [--samples N] [--batch B] [--epochs E] [--seed S]
        [--checkpoint PATH] [--resume PATH] [--rank-seed R:S] [--die-rank R] [--shares W,W]
        [--bn | --avgpool] [--every-rank] [--overlap auto|on|off] [--bucket FLOATS] [--dp DEVICES]

--overlap and --bucket set hc.distributed.Group's; --dp places every rank's model as
hc.DataParallel over DEVICES (comma-separated, e.g. cpu,cpu: two CPU replicas with 1 and 2
threads; cuda,cpu) with equal shares.

--bn trains a small net with BatchNorm and Dropout instead, --avgpool lenet5 with average
pooling in place of max pooling; --every-rank also writes
OUT.<rank>.npz on every rank. The layer buffers are saved with the weights.
"""
import argparse
import os
import sys

import numpy as np

import heterocnn as hc

p = argparse.ArgumentParser()
p.add_argument("out")
p.add_argument("--samples", type=int, default=600)
p.add_argument("--batch", type=int, default=64)
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--seed", type=int, default=3)
p.add_argument("--checkpoint", default=None)
p.add_argument("--resume", default=None)
p.add_argument("--rank-seed", default=None, help="R:S gives rank R the seed S (a mismatch)")
p.add_argument("--die-rank", type=int, default=None, help="this rank exits mid-run")
p.add_argument("--shares", default=None, help="comma-separated weights, one per rank")
p.add_argument("--bn", action="store_true")
p.add_argument("--avgpool", action="store_true", help="lenet5 with average pooling")
p.add_argument("--every-rank", action="store_true")
p.add_argument("--overlap", choices=["auto", "on", "off"], default=None)
p.add_argument("--bucket", type=int, default=None)
p.add_argument("--dp", default=None)
a = p.parse_args()

comm = hc.distributed.world() if "HC_NO_MPI" not in os.environ else None
rank = comm.Get_rank() if comm is not None else 0
hc.set_threads(1)
train = hc.datasets.fashion_mnist("train", sample=True)
X, y = train.images[:a.samples], train.labels[:a.samples]
seed = a.seed
if a.rank_seed:
    r, s = map(int, a.rank_seed.split(":"))
    if r == rank:
        seed = s
if a.avgpool:
    model = hc.Sequential(
        hc.Conv2d(1, 6, 5, padding=2), hc.ReLU(), hc.AvgPool2d(2), hc.Conv2d(6, 16, 5), hc.ReLU(),
        hc.AvgPool2d(2), hc.Flatten(), hc.Linear(400, 120), hc.ReLU(), hc.Linear(120, 84),
        hc.ReLU(), hc.Linear(84, 10), seed=0)
elif not a.bn:
    model = hc.models.lenet5(seed=0)
else:
    model = hc.Sequential(
    hc.Conv2d(1, 4, 3, stride=2, bias=False), hc.BatchNorm2d(4), hc.ReLU(), hc.Dropout2d(0.2),
    hc.Flatten(), hc.Linear(4 * 13 * 13, 16, bias=False), hc.BatchNorm1d(16), hc.ReLU(),
    hc.Dropout(0.3), hc.Linear(16, 10), seed=0)
opt = hc.SGD(model, lr=0.02, momentum=0.9)  # 0.05 amplifies rounding 100-fold here
meta = None
if a.resume:
    model, opt, meta = hc.load(a.resume)


def maybe_die(epoch, history):
    if a.die_rank is not None and a.die_rank == rank:
        os._exit(3)  # killed: no goodbye to the others


if a.dp:
    devices = a.dp.split(",")
    threads = [devices[:k + 1].count("cpu") if d == "cpu" else 0 for k, d in enumerate(devices)]
    model.to(hc.DataParallel(devices, shares=[1] * len(devices), threads=threads))
if comm is not None and (a.shares or a.overlap or a.bucket):
    comm = hc.distributed.Group(
        comm, shares=[float(w) for w in a.shares.split(",")] if a.shares else None,
        overlap={"on": True, "off": False}.get(a.overlap, "auto"), bucket=a.bucket)
hist = hc.fit(model, opt, (X, y), a.epochs, a.batch, val=(X[:200], y[:200]), seed=seed,
              progress=False, checkpoint=a.checkpoint, resume=meta, comm=comm,
              on_epoch_end=maybe_die if a.die_rank is not None else None)
state = {**model.state_dict(), **model.buffers(all_buffers=True), **opt.state(),
         "loss": np.array(hist["loss"]), "val_loss": np.array(hist["val_loss"])}
if rank == 0:
    np.savez(a.out, **state)
if a.every_rank:
    np.savez(f"{a.out}.{rank}.npz", **state)
sys.exit(0)
