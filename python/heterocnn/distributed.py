"""Data-parallel training over MPI processes (the thesis's Algorithm 2 with T workers as
ranks), through mpi4py (the ``mpi`` extra: ``pip install 'heterocnn[mpi]'`` brings mpi4py
and MPICH's ``mpirun``; a system MPI works too). Nothing here is imported unless asked for.

    comm = hc.distributed.world()                  # MPI.COMM_WORLD
    hc.fit(model, opt, train, epochs, batch_size=1024, comm=comm)   # global batch size

Every rank holds a replica (its own placement) and the same data set. Per global batch, whose
order rank 0's seed decides, rank r takes its share of the rows and computes their gradients
weighted by rows / batch size; the gradients are summed over the ranks in a fixed order
(FixedOrderSum: a reduce-scatter and an allgather whose local sums go in rank order, so a run
repeats bit for bit for a fixed number of ranks); every rank applies the same update.
"""

import json
import os
import time

import numpy as np

from .errors import InvalidValueError, MissingExtraError, RankMismatchError

_SMALL = 1 << 20  # below this many floats a bucket is one message (see FixedOrderSum)


class Group:
    """A communicator with how the ranks share each batch: ``shares`` (one positive weight
    per rank; default equal) and ``rebalance`` (move the shares toward equal finish times from
    the ranks' measured step times, every few dozen steps: for ranks of unequal speed; the
    run then depends on timing, so it is off by default and reruns repeat bit for bit).
    hc.fit(..., comm=) takes a Group or a plain communicator."""

    def __init__(self, comm, shares=None, rebalance=False):
        P = comm.Get_size()
        if shares is not None and (len(shares) != P or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
                for w in shares)):
            raise InvalidValueError(f"shares must be {P} positive numbers (one per rank), "
                                    f"got {shares!r:.200}")
        self.comm, self.shares, self.rebalance = comm, shares, bool(rebalance)


def as_group(comm):
    """A Group for ``comm`` (a Group or an mpi4py communicator)."""
    return comm if isinstance(comm, Group) else Group(comm)


def world():
    """mpi4py's COMM_WORLD; MissingExtraError naming the extra where mpi4py is missing."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise MissingExtraError("distributed training needs mpi4py and an MPI: "
                                "pip install 'heterocnn[mpi]'") from None
    return MPI.COMM_WORLD


def local_rank(comm):
    """(rank among the processes of this host, their number)."""
    from mpi4py import MPI

    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    try:
        return local.Get_rank(), local.Get_size()
    finally:
        local.Free()


def default_device(comm):
    """(device, CPU threads) for this rank: one GPU per rank where the host has GPUs (by local
    rank), else the CPU with the host's cores split evenly between its ranks."""
    from ._core import cuda_device_count

    rank, size = local_rank(comm)
    gpus = cuda_device_count()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if gpus:
        return f"cuda:{rank % gpus}", max(1, cores // size)
    return "cpu", max(1, cores // size)


def agree(comm, **facts):
    """Checks that every rank has the same ``facts`` (JSON-able: build, architecture, shapes,
    dataset size, seed); RankMismatchError on every rank naming the first rank and fact that
    differ from rank 0's."""
    mine = json.dumps(facts, sort_keys=True, default=str)
    every = comm.allgather(mine)
    for r, text in enumerate(every):
        if text != every[0]:
            theirs, first = json.loads(text), json.loads(every[0])
            keys = [k for k in first if first.get(k) != theirs.get(k)]
            raise RankMismatchError(f"rank {r} differs from rank 0 in {', '.join(keys)}: "
                                    f"{ {k: theirs.get(k) for k in keys}!r:.300} against "
                                    f"{ {k: first.get(k) for k in keys}!r:.300}")


def fingerprint(model):
    """What must agree between ranks about a model: the build, the architecture and the
    parameter shapes (the weights themselves come from rank 0: see share_state)."""
    from ._core import build_info

    info = build_info()
    return {"build": [info["version"], info["cuda_compiled"]],
            "architecture": [list(layer._spec()) for layer in model.layers],
            "loss": model.loss, "label_smoothing": model.label_smoothing,
            "parameters": [[k, list(s)] for k, s in model.parameters()]}


def share_state(comm, model, opt, resume):
    """Rank 0's weights, optimizer state and resume meta on every rank (so that a resumed run
    reads its checkpoint on rank 0 alone); returns the resume meta."""
    state = ({**model.state_dict(), **model.buffers(all_buffers=True)}, opt.state(), resume) \
        if comm.Get_rank() == 0 else None
    weights, buffers, resume = comm.bcast(state, root=0)  # buffers: the step count too
    if comm.Get_rank() != 0:
        model.load_state_dict(weights)
        opt.load_state(buffers)
    return resume


def collective(comm, fn, *args):
    """fn(*args) on every rank of ``comm``. The errors every rank raises alike (a rank that
    differs, a NaN/inf the ranks decided on together) go up as they are; any other error on
    one rank is printed and stops every rank with MPI_Abort, so that none waits forever in
    a collective the failed rank will never join."""
    import sys
    import traceback

    from .errors import NonFiniteError

    try:
        return fn(*args)
    except (RankMismatchError, NonFiniteError):
        raise
    except BaseException:
        if comm.Get_size() == 1:
            raise
        sys.stderr.write(f"heterocnn: rank {comm.Get_rank()} failed; stopping every rank\n")
        traceback.print_exc()
        sys.stderr.flush()
        comm.Abort(1)


class FixedOrderSum:
    """The sum over the ranks of a float32 vector, the same on every rank and the same every
    run: the vector is cut into one chunk per rank; each rank receives every rank's copy of
    its chunk (Alltoallv), adds them in rank order, and the summed chunks are gathered back
    (Allgatherv). MPI's own Allreduce does not fix its order. Vectors longer than a bucket
    go in buckets of ``bucket`` floats (default: measured, see measure_bucket)."""

    def __init__(self, comm, bucket=None):
        self.comm = comm
        self.size = comm.Get_size()
        self.bucket = bucket or measure_bucket(comm)
        self.seconds = 0.0  # time spent summing, over the calls so far

    def __call__(self, vector):
        start = time.perf_counter()
        v = np.ascontiguousarray(vector, dtype=np.float32)
        out = np.empty_like(v)
        for lo in range(0, max(len(v), 1), self.bucket):
            hi = min(len(v), lo + self.bucket)
            self._sum(v[lo:hi], out[lo:hi])
        self.seconds += time.perf_counter() - start
        return out

    def _sum(self, v, out):
        from mpi4py import MPI

        P, n = self.size, len(v)
        if P == 1:
            out[:] = v
            return
        bounds = [n * k // P for k in range(P + 1)]
        counts = [bounds[k + 1] - bounds[k] for k in range(P)]
        rank = self.comm.Get_rank()
        mine = counts[rank]
        pieces = np.empty(P * mine, np.float32)  # every rank's copy of my chunk, in rank order
        self.comm.Alltoallv([v, (counts, bounds[:-1]), MPI.FLOAT],
                            [pieces, ([mine] * P, [mine * k for k in range(P)]), MPI.FLOAT])
        total = pieces[:mine].copy()
        for k in range(1, P):  # the fixed order: rank 0's, then rank 1's, ...
            total += pieces[k * mine:(k + 1) * mine]
        self.comm.Allgatherv([total, MPI.FLOAT], [out, (counts, bounds[:-1]), MPI.FLOAT])


def measure_bucket(comm, sizes=(1 << 12, 1 << 16, 1 << 20)):
    """A bucket size (floats) from a latency + bytes / bandwidth fit of a fixed-order sum
    measured on this communicator: the size at which a sum's fixed cost is a tenth of its
    transfer time (clamped to 64 Ki .. 16 Mi floats), the same on every rank (rank 0's)."""
    probe = FixedOrderSum(comm, bucket=1 << 30)  # one bucket: the sizes are measured whole
    seconds = []
    for n in sizes:
        v = np.zeros(n, np.float32)
        probe(v)  # warm-up
        comm.Barrier()
        start = time.perf_counter()
        for _ in range(3):
            probe(v)
        seconds.append((time.perf_counter() - start) / 3)
    A = np.stack([np.ones(len(sizes)), np.asarray(sizes, np.float64)], axis=1)
    (latency, per_float), *_ = np.linalg.lstsq(A, np.asarray(seconds), rcond=None)
    bucket = int(10 * max(latency, 0.0) / per_float) if per_float > 0 else _SMALL
    bucket = int(min(max(bucket, 1 << 16), 1 << 24))
    return comm.bcast(bucket, root=0)


class DistributedSteps:
    """fit's stepper over MPI ranks (a Group): each rank takes its share of every global
    batch, computes its weighted gradients on its own placement, the gradients are summed in
    a fixed order over the ranks, and every rank applies the same update. Results are the
    global batch's (loss, right answers), the same on every rank."""

    def __init__(self, model, train, group, batch_size):
        from .rebalance import Rebalancer

        self.model, self.comm = model, group.comm
        self.y = train[1]
        P = self.comm.Get_size()
        self.shares = list(group.shares) if group.shares is not None else [1.0] * P
        self.rebalance = Rebalancer(dict(enumerate(self.shares)), batch_size) \
            if group.rebalance and P > 1 else None
        self.sum = FixedOrderSum(self.comm)
        # Each rank normalises its own rows (as torch DDP without SyncBatchNorm) and draws its
        # own Dropout stream; the layer buffers are made equal after every step.
        model.set_random_stream(self.comm.Get_rank())
        self.has_buffers = bool(model.buffers(all_buffers=True))

    def start(self, idx, host_batch, opt):
        from .rebalance import split_batch

        comm, model = self.comm, self.model
        rank, P = comm.Get_rank(), comm.Get_size()
        split = split_batch(dict(enumerate(self.shares)), len(idx))
        lo = sum(split[k] for k in range(rank))
        rows = idx[lo:lo + split[rank]]
        start = time.perf_counter()
        if len(rows):
            loss, right = model.compute_grads(host_batch(rows), self.y[rows],
                                              weight=len(rows) / len(idx), with_correct=True)
            spans = model.gradient_spans()
        else:  # a rank without rows this step adds nothing
            loss, right = 0.0, 0
            spans = [(d, np.zeros_like(a)) for d, a in model.gradient_spans()]
        flat = np.concatenate([a for _, a in spans] +
                              [np.array([loss * len(rows) / len(idx), right], np.float32)])
        total = self.sum(flat)
        at = 0
        summed = []
        for d, a in spans:
            summed.append((d, total[at:at + len(a)]))
            at += len(a)
        model.set_gradient_spans(summed)
        model.apply_update(opt)
        if self.has_buffers:  # BatchNorm's statistics of the first rank with rows (DDP: rank 0)
            src = next(r for r in range(P) if split[r])
            mine = model.buffers(all_buffers=True) if rank == src else None
            theirs = comm.bcast(mine, root=src)
            if rank != src:
                model.load_buffers(theirs)
        if self.rebalance is not None:  # every rank sees every rank's time: one decision
            seconds = comm.allgather(time.perf_counter() - start)
            moved = self.rebalance.observe(dict(enumerate(seconds)), split)
            if moved is not None:
                self.shares = [self.rebalance.shares[r] for r in range(P)]
        return [(float(total[at]), int(round(float(total[at + 1]))))]

    def finish(self):
        return []

    def evaluate(self, val):
        """(mean loss, accuracy) over ``val`` ((X, y)), each rank evaluating its shard, the
        sums reduced in the fixed order: the same on every rank."""
        from .metrics import loss_and_accuracy
        from .rebalance import split_batch

        X, y = val
        P, rank = self.comm.Get_size(), self.comm.Get_rank()
        split = split_batch({r: 1.0 for r in range(P)}, len(X))
        lo = sum(split[r] for r in range(rank))
        n = split[rank]
        loss, acc = loss_and_accuracy(self.model, (X[lo:lo + n], y[lo:lo + n])) if n else (0, 0)
        total = self.sum(np.array([loss * n, acc * n], np.float64).astype(np.float32))
        return float(total[0]) / len(X), float(total[1]) / len(X)
