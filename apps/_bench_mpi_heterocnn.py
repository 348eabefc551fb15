"""A worker of the mpi suite (apps/_bench_mpi.py), run under mpirun: heterocnn's data-parallel
training step as fit runs it (hc.distributed.DistributedSteps on a global batch of uint8
images scaled on the host, the gradients summed by FixedOrderSum), timed on every rank alike.

    mpirun -n P python apps/_bench_mpi_heterocnn.py --out R.json --net convnet --batch 1024 \\
        --threads 4 --seconds 1 --repeats 5 --warmup 3 [--gpu-rank] [--weights W.npz]
        [--warmup-only]

Rank 0 writes images/s and, per repeat, the seconds its steps waited for their gradient sums
(exposed: the exchange and the wait for the slowest rank) and the seconds the sums took (busy:
more where they ran during the backward pass), DistributedSteps.comm_seconds(), and every
rank's own exposed seconds (the slowest rank's are the exchange alone); and the SHA-256
of the weights after the warm-up (a fixed number of steps on fixed data, so reruns and rank
counts can be compared); --weights also saves those weights, --warmup-only stops there. Then
the steps Group(overlap="auto") takes to choose whether to sum during the backward pass are
run, untimed, before the timed ones. --gpu-rank puts rank 0's model on cuda:0 and splits each
batch by shares from every rank's own rate, measured first on every rank at once."""

import hashlib
import sys
import time

import _bench_mpi_rank as rank_env  # the script's folder is on sys.path; before heterocnn
from _bench_mpi_rank import BATCHES_HELD, LR, MOMENTUM

SHARE_SECONDS = 0.5     # each rank's own rate, for --gpu-rank's shares


def own_rate(hc, np, net, device, x, y, seconds):
    """Images/s of model.train_step on this rank alone (every rank at once, each on its own
    cores), on ``device``, at batch len(x)."""
    model = hc.models.MODELS[net](seed=0).to(device)
    opt = hc.SGD(model, lr=LR, momentum=MOMENTUM)
    model.train_step(x, y, opt)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.train_step(x, y, opt)
        steps += 1
    return steps * len(x) / (time.perf_counter() - start)


def weights_digest(model):
    """SHA-256 over the model's weights in state_dict order."""
    h = hashlib.sha256()
    for key, value in model.state_dict().items():
        h.update(key.encode())
        h.update(value.tobytes())
    return h.hexdigest()


def main():
    args = rank_env.parse_args(__doc__.splitlines()[0], [
        (("--gpu-rank",), {"action": "store_true", "help": "rank 0 trains on cuda:0"}),
        (("--weights",), {"default": None, "help": "rank 0 saves the warmed-up weights"}),
        (("--warmup-only",), {"action": "store_true", "help": "stop after the warm-up's "
                                                              "digest (a rerun check)"})])
    comm, rank, size = rank_env.join(args)
    import numpy as np

    import heterocnn as hc

    hc.set_threads(args.threads)
    device = "cuda:0" if args.gpu_rank and rank == 0 else "cpu"
    rng = np.random.default_rng(0)  # the same data set on every rank, as fit expects
    X = rng.integers(0, 256, (BATCHES_HELD * args.batch, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, len(X)).astype(np.int64)
    order = np.random.default_rng(1).permutation(len(X))
    shares = None
    if args.gpu_rank and size > 1:  # each rank's rate at an even share of the batch
        rows = max(1, args.batch // size)
        x0 = (X[:rows] / np.float32(255)).astype(np.float32)
        shares = comm.allgather(own_rate(hc, np, args.net, device, x0, y[:rows], SHARE_SECONDS))
    model = hc.models.MODELS[args.net](seed=0).to(device)
    opt = hc.SGD(model, lr=LR, momentum=MOMENTUM)
    stepper = hc.distributed.DistributedSteps(model, (X, y),
                                              hc.distributed.Group(comm, shares=shares),
                                              args.batch)
    buf = np.empty((args.batch, 1, 28, 28), np.float32)

    def host(rows):
        out = buf[: len(rows)]
        np.multiply(X[rows], np.float32(1 / 255), out=out, casting="unsafe")
        return out

    def step(i):
        b = i % BATCHES_HELD
        stepper.start(order[b * args.batch:(b + 1) * args.batch], host, opt)

    for i in range(args.warmup):
        step(i)
    digest = weights_digest(model)
    if args.weights and rank == 0:
        np.savez(args.weights, **model.state_dict())
    if args.warmup_only:
        rank_env.report(comm, args, device, {"framework": "heterocnn", "warmup_steps":
                                             args.warmup, "weights_sha256_after_warmup": digest})
        return 0
    first = args.warmup
    while stepper.choose is not None and stepper.choose.trying:  # overlap="auto" deciding
        step(first)
        first += 1
    overlap = stepper.overlap if stepper.choose is None else stepper.choose.mode
    steps = rank_env.agreed_steps(comm, step, first, args.seconds)
    seconds, talk = rank_env.timed_repeats(
        comm, step, first + rank_env.CALIBRATION_STEPS, steps, args.repeats,
        lambda: dict(zip(("exposed", "busy"), stepper.comm_seconds())))
    rank_env.report(comm, args, device, {
        "framework": "heterocnn", "steps": steps, "warmup_steps": first,
        "sum_during_backward": overlap, "seconds": seconds, "comm_seconds": talk,
        "images_per_s": [steps * args.batch / s for s in seconds],
        "weights_sha256_after_warmup": digest, "bucket_floats": stepper.sum.bucket,
        "shares": shares, "lr": LR, "momentum": MOMENTUM},
        own={"comm_exposed_seconds": talk["exposed"]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
