"""Data-parallel training over MPI processes (the thesis's Algorithm 2 with T workers as
ranks), through mpi4py (the ``mpi`` extra: ``pip install 'heterocnn[mpi]'`` brings mpi4py
and MPICH's ``mpirun``; a system MPI works too). Nothing here is imported unless asked for.

    comm = hc.distributed.world()                  # MPI.COMM_WORLD
    hc.fit(model, opt, train, epochs, batch_size=1024, comm=comm)   # global batch size

Every rank holds a replica (its own placement) and the same data set. Per global batch, whose
order rank 0's seed decides, rank r takes its share of the rows and computes their gradients
weighted by rows / batch size; the gradients are summed over the ranks in a fixed order
(FixedOrderSum: a reduce-scatter and an allgather whose local sums go in rank order, so a run
repeats bit for bit for a fixed number of ranks); every rank applies the same update. The
sum goes bucket by bucket, from the last layers' gradients on, and where a rank's model is on
the CPU it may start while the backward pass still runs (GradientSum; Group's ``overlap``).
A rank's model may itself be hc.DataParallel (a GPU and the CPU): its replicas' gradients are
summed first, in replica order.
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
    run then depends on timing, so it is off by default and reruns repeat bit for bit), and
    ``overlap``: whether the gradients are summed bucket by bucket while the backward pass is
    still running (True), after it (False), or as the first steps measure faster ("auto", the
    default). Either way the sums are the same, bit for bit (see GradientSum). ``bucket``:
    floats per message of the sums (default measured: measure_bucket).
    hc.fit(..., comm=) takes a Group or a plain communicator."""

    def __init__(self, comm, shares=None, rebalance=False, overlap="auto", bucket=None):
        P = comm.Get_size()
        if shares is not None and (len(shares) != P or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and w > 0
                for w in shares)):
            raise InvalidValueError(f"shares must be {P} positive numbers (one per rank), "
                                    f"got {shares!r:.200}")
        if overlap not in (True, False, "auto"):
            raise InvalidValueError(f"overlap must be True, False or 'auto', got {overlap!r}")
        if bucket is not None and (not isinstance(bucket, int) or isinstance(bucket, bool)
                                   or bucket < 1):
            raise InvalidValueError(f"bucket must be a positive number of floats, got "
                                    f"{bucket!r}")
        self.comm, self.shares, self.rebalance = comm, shares, bool(rebalance)
        self.overlap, self.bucket = overlap, bucket


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


class GradientSum:
    """One step's fixed-order sum of [loss, right answers | the gradient span] over the ranks,
    bucket by bucket from the end of the vector (where the last layers' gradients are, final
    first in the backward pass) to its start. With ``overlap``, a thread of its own sums each
    bucket as soon as the backward pass has finished it (model.compute_grads' on_grads_ready)
    while the pass goes on; without, every bucket after the pass. The buckets, their order
    and each element's order of addition are the same either way, on every rank: the result
    does not depend on the mode or on timing. Only this object's thread calls MPI while a
    step's sum runs (MPI_THREAD_SERIALIZED is enough).

        total = GradientSum(fixed_order_sum, span, overlap)
        total.begin(); model.compute_grads(..., on_grads_ready=total.ready(model)); ...
        out = total.end(loss, right)      # the summed vector, laid out as above
    """

    HEAD = 2  # loss and right answers come first

    def __init__(self, fixed_order_sum, span, overlap):
        self.sum, self.span, self.overlap = fixed_order_sum, span, bool(overlap)
        n, b = self.HEAD + span, fixed_order_sum.bucket
        self.buckets = [(max(0, hi - b), hi) for hi in range(n, 0, -b)]  # from the end
        self.flat = np.zeros(n, np.float32)
        self.out = np.empty(n, np.float32)
        self.exposed_seconds = 0.0  # the step waiting for its sum, over the steps
        self.busy_seconds = 0.0     # the sums themselves (partly hidden when overlapped)
        self._thread = self._queue = None
        self._error = None
        self._next = 0  # the first bucket not yet handed to the sums

    def begin(self):
        self._next = 0
        if self.overlap and self._thread is None:
            import queue
            import threading

            self._queue = queue.Queue()
            self._thread = threading.Thread(target=self._serve, name="heterocnn-gradient-sum",
                                            daemon=True)
            self._thread.start()

    def ready(self, model):
        """The on_grads_ready callback for ``model``'s backward pass (None without overlap)."""
        if not self.overlap:
            return None

        def told(offset):  # gradients [offset, span) are final
            while self._next < len(self.buckets):
                lo, hi = self.buckets[self._next]
                if lo < self.HEAD + offset:
                    return
                self.flat[lo:hi] = model.gradient_span("cpu", lo - self.HEAD, hi - self.HEAD)
                self._hand(self._next)
        return told

    def end(self, model, loss, right):
        """The summed vector, after the rest of ``model``'s gradients (None: a rank without
        rows, adding zeros) and (loss, right) are in."""
        start = time.perf_counter()
        if self._next < len(self.buckets):  # the floats below the buckets handed so far
            upto = max(0, self.buckets[self._next][1] - self.HEAD)
            if model is None:
                self.flat[self.HEAD:self.HEAD + upto] = 0
            elif self._next:  # overlapped: the CPU span alone
                self.flat[self.HEAD:self.HEAD + upto] = model.gradient_span("cpu", 0, upto)
            else:  # every place's span, in the store's order
                self.flat[self.HEAD:] = np.concatenate([a for _, a in model.gradient_spans()])
        self.flat[:self.HEAD] = (loss, right)
        while self._next < len(self.buckets):
            self._hand(self._next)
        if self.overlap:
            self._queue.join()
            if self._error is not None:
                error, self._error = self._error, None
                raise error
        self.exposed_seconds += time.perf_counter() - start
        return self.out

    def _hand(self, k):
        self._next = k + 1
        if self.overlap:
            self._queue.put(k)
        else:
            self._run(k)

    def _run(self, k):
        lo, hi = self.buckets[k]
        start = time.perf_counter()
        self.sum._sum(self.flat[lo:hi], self.out[lo:hi])
        self.busy_seconds += time.perf_counter() - start

    def _serve(self):
        while True:
            k = self._queue.get()
            try:
                if self._error is None:
                    self._run(k)
            except BaseException as e:  # raised by end() on the step's thread
                self._error = e
            finally:
                self._queue.task_done()


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


class _OverlapChoice:
    """Group(overlap="auto"): after a warm-up step, steps alternate between summing after
    the backward pass and during it, TRIALS of each; the mode of the lower median step time
    (the slowest rank's, the same list on every rank: one decision) is kept."""

    TRIALS = 3

    def __init__(self):
        self.times = {False: [], True: []}
        self.steps = 0
        self.mode = False
        self.trying = True

    def observe(self, seconds):
        self.steps += 1
        if self.steps > 1:  # the first step warms up
            self.times[self.mode].append(seconds)
        if min(len(t) for t in self.times.values()) >= self.TRIALS:
            import statistics

            self.mode = statistics.median(self.times[True]) < statistics.median(self.times[False])
            self.trying = False
        elif self.steps > 1:
            self.mode = not self.mode


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
        self.sum = FixedOrderSum(self.comm, group.bucket)
        # Each rank normalises its own rows (as torch DDP without SyncBatchNorm) and draws its
        # own Dropout stream; the layer buffers are made equal after every step.
        model.set_random_stream(self.comm.Get_rank())
        self.has_buffers = bool(model.buffers(all_buffers=True))
        self.layout = [(d, len(a)) for d, a in model.gradient_spans()]
        # Summing during the backward pass needs the gradients in one CPU span (the pass
        # tells when they are final only there) on every rank, and MPI calls from a thread.
        from mpi4py import MPI

        from .data_parallel import DataParallel

        can = self.comm.allreduce(int([d for d, _ in self.layout] == ["cpu"] and
                                        not isinstance(model.placement, DataParallel) and
                                        MPI.Query_thread() >= MPI.THREAD_SERIALIZED), op=MPI.MIN)
        mode = group.overlap if can else False
        span = sum(n for _, n in self.layout)
        self.sums = {o: GradientSum(self.sum, span, o) for o in {False, mode is not False}}
        self.choose = _OverlapChoice() if mode == "auto" and P > 1 else None
        self.overlap = mode is True

    def start(self, idx, host_batch, opt):
        from .rebalance import split_batch

        comm, model = self.comm, self.model
        rank, P = comm.Get_rank(), comm.Get_size()
        split = split_batch(dict(enumerate(self.shares)), len(idx))
        lo = sum(split[k] for k in range(rank))
        rows = idx[lo:lo + split[rank]]
        start = time.perf_counter()
        overlap = self.overlap if self.choose is None else self.choose.mode
        gsum = self.sums[overlap]
        gsum.begin()
        if len(rows):
            loss, right = model.compute_grads(host_batch(rows), self.y[rows],
                                              weight=len(rows) / len(idx), with_correct=True,
                                              on_grads_ready=gsum.ready(model))
        else:  # a rank without rows this step adds nothing
            loss, right = 0.0, 0
        total = gsum.end(model if len(rows) else None, loss * len(rows) / len(idx), right)
        at = GradientSum.HEAD
        summed = []
        for d, n in self.layout:
            summed.append((d, total[at:at + n]))
            at += n
        model.set_gradient_spans(summed)
        model.apply_update(opt)
        if self.has_buffers:  # BatchNorm's statistics of the first rank with rows (DDP: rank 0)
            src = next(r for r in range(P) if split[r])
            mine = model.buffers(all_buffers=True) if rank == src else None
            theirs = comm.bcast(mine, root=src)
            if rank != src:
                model.load_buffers(theirs)
        if self.rebalance is not None or (self.choose is not None and self.choose.trying):
            seconds = comm.allgather(time.perf_counter() - start)  # the same on every rank
            if self.rebalance is not None:
                moved = self.rebalance.observe(dict(enumerate(seconds)), split)
                if moved is not None:
                    self.shares = [self.rebalance.shares[r] for r in range(P)]
            if self.choose is not None:
                self.choose.observe(max(seconds))
        return [(float(total[0]), int(round(float(total[1]))))]

    def comm_seconds(self):
        """(seconds the steps waited for their gradient sums, seconds the sums took), over
        the steps so far: the second is larger where the sums ran during the backward pass."""
        return (sum(g.exposed_seconds for g in self.sums.values()),
                sum(g.busy_seconds for g in self.sums.values()))

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
