"""What every rank of the mpi suite's workers (apps/_bench_mpi_heterocnn.py and
apps/_bench_mpi_ddp.py, run under mpirun by apps/_bench_mpi.py) does alike: its arguments,
its CPU cores and threads, the timed loop whose step count rank 0 decides, and rank 0's JSON.

Import this module before heterocnn or torch: join() binds the rank to its cores before any
OpenMP thread exists, so that the threads it starts later stay on them."""

import argparse
import json
import os
import time

LR, MOMENTUM = 1e-3, 0.9  # SGD of both frameworks (random labels: a small step)
BATCHES_HELD = 4          # each worker cycles through this many batches of random images
CALIBRATION_STEPS = 2  # timed on rank 0 after the warm-up, to size the timed repeats
MIN_STEPS = 3          # the fewest steps of one timed repeat
AFFINITY_VARS = ("OMP_PROC_BIND", "OMP_PLACES", "GOMP_CPU_AFFINITY", "KMP_AFFINITY")


def parse_args(description, extra=()):
    """The arguments every worker takes, and ``extra`` ((flags, kwargs) pairs) of its own."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="rank 0 writes its JSON here")
    p.add_argument("--net", required=True)
    p.add_argument("--batch", type=int, required=True, help="the global batch size")
    p.add_argument("--threads", type=int, required=True, help="CPU threads of every rank")
    p.add_argument("--seconds", type=float, required=True, help="timed seconds per repeat")
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True, help="untimed steps first")
    p.add_argument("--bind", choices=("cores", "none"), default="cores",
                   help="cores: rank r on the r-th slice of --threads CPUs of the allowed set")
    for flags, kwargs in extra:
        p.add_argument(*flags, **kwargs)
    return p.parse_args()


def join(args):
    """(COMM_WORLD, rank, size) after binding this rank to its cores and setting the thread
    variables to ``args.threads``; the CPUs it is bound to go in ``args.cpus`` (None: unbound,
    with the reason in ``args.bind``)."""
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    local = comm.Split_type(MPI.COMM_TYPE_SHARED)
    rank, size = local.Get_rank(), local.Get_size()
    local.Free()
    for var in AFFINITY_VARS:  # a binding of OpenMP's own would put every rank on cores 0..T-1
        os.environ.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    args.cpus = None
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.bind == "cores":
        if len(allowed) >= size * args.threads:
            args.cpus = allowed[rank * args.threads:(rank + 1) * args.threads]
            os.sched_setaffinity(0, args.cpus)
        else:
            args.bind = (f"none: {size} ranks x {args.threads} threads need "
                         f"{size * args.threads} CPUs, {len(allowed)} allowed")
    return comm, comm.Get_rank(), comm.Get_size()


def agreed_steps(comm, step, first, seconds):
    """Steps per timed repeat, the same on every rank: rank 0 times CALIBRATION_STEPS calls of
    step(i) from i = ``first`` and sizes a repeat to ``seconds`` (at least MIN_STEPS)."""
    comm.Barrier()
    start = time.perf_counter()
    for i in range(first, first + CALIBRATION_STEPS):
        step(i)
    per_step = (time.perf_counter() - start) / CALIBRATION_STEPS
    return comm.bcast(max(MIN_STEPS, round(seconds / per_step)), root=0)


def timed_repeats(comm, step, first, steps, repeats, counters=None):
    """``repeats`` timed loops of ``steps`` calls of step(i), i counting on from ``first``,
    each between barriers: ([seconds per loop], {name: [its growth per loop]} of the running
    totals counters() reports as {name: total}, or None without counters)."""
    seconds, grown = [], {}
    i = first
    for _ in range(repeats):
        comm.Barrier()
        before = counters() if counters else {}
        start = time.perf_counter()
        for _ in range(steps):
            step(i)
            i += 1
        comm.Barrier()
        seconds.append(time.perf_counter() - start)
        for name, total in (counters() if counters else {}).items():
            grown.setdefault(name, []).append(total - before[name])
    return seconds, (grown if counters else None)


def report(comm, args, device, result, own=None):
    """Rank 0 writes ``result`` with what every rank ran on (its CPUs, threads, ``device``)
    and ``own`` (what the rank measured itself) to args.out as JSON; every rank takes part in
    the gather."""
    mine = {"cpus": args.cpus, "threads": args.threads, "device": device, **(own or {})}
    every = comm.gather(mine, root=0)
    if comm.Get_rank() == 0:
        result.update(net=args.net, batch=args.batch, ranks=comm.Get_size(),
                      threads_per_rank=args.threads, binding=args.bind, per_rank=every)
        with open(args.out, "w") as f:
            json.dump(result, f)
