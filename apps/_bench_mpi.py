"""Suite mpi: data-parallel training over MPI ranks on one machine, heterocnn against PyTorch
DistributedDataParallel (gloo) on the same ranks, threads and cores, in the same run.

The machine's cores (--mpi-threads, default: the CPUs this process may use) are split into
P ranks of cores // P threads (--ranks, default 1, 2, 4, 8 up to the cores; P = 1 always runs,
it is the baseline). For each net (default lenet5, convnet) and global batch (default 256,
1024), each framework runs under its own ``mpirun -n P`` (apps/_bench_mpi_heterocnn.py, then
apps/_bench_mpi_ddp.py; a DDP launch that fails runs once more, its first failure kept in the
row as ddp_failed_attempt): untimed warm-up steps, a step count rank 0 sizes from two calibration
steps to --mpi-seconds and broadcasts, then --repeats timed loops of that many steps between
barriers, on every rank alike. Reported: images/s, the scaling efficiency (images/s at P over
images/s of one process with every thread, each framework against its own), heterocnn's
seconds per step on rank 0 spent waiting for the gradient sums (exposed: the wait for slower
ranks included) and spent in them (busy: more than exposed where the sums ran during the
backward pass, as Group(overlap="auto") chose), the exposed seconds' share of the step, and how
far the weights after the warm-up (a
fixed number of steps on fixed data) are from P = 1's and from a rerun's (a second launch
that stops after the warm-up).

Binding: each rank binds itself (sched_setaffinity, before its OpenMP threads start) to its
own slice of cores // P CPUs of the allowed set and runs that many threads; mpirun binds
nothing (Open MPI: --bind-to none; MPICH's Hydra binds nothing by default). Where a GPU is
present, 1 GPU rank + CPU ranks: rank 0 trains on cuda:0, the others on the CPU, each batch
split by shares from every rank's own measured rate, against the GPU rank alone (P = 1 with
every thread)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from _bench_common import NETS, figure
from _bench_mpi_rank import LR, MOMENTUM

APPS = os.path.dirname(os.path.abspath(__file__))
WORKERS = {"heterocnn": os.path.join(APPS, "_bench_mpi_heterocnn.py"),
           "ddp": os.path.join(APPS, "_bench_mpi_ddp.py")}
RANKS = (1, 2, 4, 8)
BATCHES = (256, 1024)
MPI_NETS = ("lenet5", "convnet")


def find_mpirun():
    """mpirun beside this Python (the mpich wheel's), else on PATH, or None."""
    return shutil.which("mpirun", path=os.path.dirname(sys.executable) + os.pathsep
                        + os.environ.get("PATH", ""))


def mpi_launcher(mpirun):
    """(which MPI: "openmpi", "mpich" or "other", its version line, the flags mpirun needs):
    Open MPI binds ranks to cores by default and refuses to start as root or on more ranks
    than it counts cores; MPICH's Hydra binds nothing and needs no flag."""
    out = subprocess.run([mpirun, "--version"], check=False, capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if "Open MPI" in text or "OpenRTE" in text:
        root = ["--allow-run-as-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []
        return "openmpi", first, ["--oversubscribe", "--bind-to", "none"] + root
    if "HYDRA" in text or "MPICH" in text:
        version = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                        if line.strip().startswith("Version:")), "")
        return "mpich", f"MPICH Hydra {version}".strip(), []
    return "other", first, []


def usable_cpus():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class Launcher:
    """Runs a worker under ``mpirun -n P`` and reads rank 0's JSON."""

    def __init__(self, ctx, mpirun, tmp):
        self.ctx, self.mpirun, self.tmp = ctx, mpirun, tmp
        self.mpi, self.version, self.flags = mpi_launcher(mpirun)
        self.runs = 0

    def __call__(self, worker, ranks, threads, net, batch, *options):
        """Rank 0's JSON, or {"error": what failed, with the output's tail}."""
        args = self.ctx.args
        self.runs += 1
        out = os.path.join(self.tmp, f"run{self.runs}.json")
        cmd = [self.mpirun, *self.flags, "-n", str(ranks), sys.executable, WORKERS[worker],
               "--out", out, "--net", net, "--batch", str(batch), "--threads", str(threads),
               "--seconds", str(args.mpi_seconds), "--repeats", str(args.repeats),
               "--warmup", str(args.mpi_warmup), "--bind", args.mpi_bind, *map(str, options)]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), OMPI_ALLOW_RUN_AS_ROOT="1",
                   OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        timeout = 180 + 4 * args.repeats * args.mpi_seconds
        # a session of its own, so that a run past its time goes with all its ranks
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, start_new_session=True)
        try:
            log, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            log, _ = proc.communicate()
            return {"error": f"timed out after {timeout:.0f} s: {log[-1500:]}"}
        if proc.returncode != 0 or not os.path.exists(out):
            return {"error": f"exit {proc.returncode}: {log[-1500:]}"}
        with open(out) as f:
            return json.load(f)


def rates(run):
    """A worker's images/s as a figure, or why there is none."""
    return figure(run["images_per_s"], "images/s") if "error" not in run else \
        f"failed: {run['error']}"


def median(fig):
    return fig["median"] if isinstance(fig, dict) else None


def over(a, b):
    """a / b of two medians, None where one is missing."""
    a, b = median(a), median(b)
    return a / b if a is not None and b else None


def max_rel_diff(np, path, reference):
    """Max over the parameters of max|w - w_ref| / max|w_ref| between two weight files."""
    with np.load(path) as a, np.load(reference) as b:
        return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30))
                   for k in b.files)


def comm_figures(run):
    """{exposed and busy seconds of gradient summing per step, and the exposed seconds' share
    of the step, on rank 0; from every rank's own exposed seconds, the seconds per step of the
    fastest and the slowest rank's work outside the sums (the step less its exposed wait) and
    the exchange (the least any rank waited: the slowest rank waits for the sum alone)}:
    figures over the repeats, from a worker's JSON (all None after a failure)."""
    names = ("comm_s_per_step", "comm_busy_s_per_step", "comm_share",
             "compute_s_per_step_fastest_rank", "compute_s_per_step_slowest_rank",
             "exchange_s_per_step")
    if "error" in run:
        return dict.fromkeys(names)
    talk, steps, seconds = run["comm_seconds"], run["steps"], run["seconds"]
    waits = list(zip(*(rank["comm_exposed_seconds"] for rank in run["per_rank"])))
    work = [[(s - w) / steps for w in repeat] for s, repeat in zip(seconds, waits)]
    return dict(zip(names, (
        figure([t / steps for t in talk["exposed"]], "seconds"),
        figure([t / steps for t in talk["busy"]], "seconds"),
        figure([t / s for t, s in zip(talk["exposed"], seconds)], "share of the step"),
        figure([min(w) for w in work], "seconds"), figure([max(w) for w in work], "seconds"),
        figure([min(repeat) / steps for repeat in waits], "seconds"))))


def cpu_rows(ctx, launch, torch_status, nets, batches, ranks, cores):
    """The CPU rows: every P, heterocnn then DDP."""
    np = ctx.np
    rows = []
    for name in nets:
        for batch in batches:
            base = {}
            for P in ranks:
                T = max(1, cores // P)
                weights = os.path.join(launch.tmp, f"{name}-{batch}-{P}.npz")
                hc_run = launch("heterocnn", P, T, name, batch, "--weights", weights)
                row = {"net": name, "batch": batch, "ranks": P, "threads_per_rank": T,
                       "heterocnn": rates(hc_run), "heterocnn_run": hc_run}
                if torch_status is None:
                    ddp_run = launch("ddp", P, T, name, batch)
                    if "error" in ddp_run:  # the peer once more; its first failure is kept
                        row["ddp_failed_attempt"] = ddp_run["error"]
                        ddp_run = launch("ddp", P, T, name, batch)
                    row.update(ddp=rates(ddp_run), ddp_run=ddp_run)
                else:
                    row["ddp"] = torch_status
                if P == 1:
                    base = {"heterocnn": row["heterocnn"], "ddp": row["ddp"], "weights": weights}
                row["ratio"] = over(row["heterocnn"], row["ddp"])
                row["scaling_efficiency"] = over(row["heterocnn"], base["heterocnn"])
                row["ddp_scaling_efficiency"] = over(row["ddp"], base["ddp"])
                row.update(comm_figures(hc_run), sum_during_backward=hc_run.get(
                    "sum_during_backward"))
                digest = hc_run.get("weights_sha256_after_warmup")
                rerun = launch("heterocnn", P, T, name, batch, "--warmup-only")
                row["weights_sha256_after_warmup"] = digest
                row["rerun_bit_identical"] = (digest == rerun["weights_sha256_after_warmup"]
                                              if digest and "error" not in rerun else None)
                row["weights_max_rel_diff_vs_p1"] = (
                    max_rel_diff(np, weights, base["weights"])
                    if os.path.exists(weights) and os.path.exists(base["weights"]) else None)
                rows.append(row)
                ctx.log(f"mpi {name:<8} batch {batch:<5} P {P} x {T:<2} heterocnn "
                        + (f"{row['heterocnn']['median']:>9,.0f}" if median(row["heterocnn"])
                           else row["heterocnn"][:200])
                        + (f"  ddp {row['ddp']['median']:>9,.0f}  {row['ratio']:.2f}x"
                           if row["ratio"] else f"  ddp {str(row['ddp'])[:200]}")
                        + (f"  efficiency {row['scaling_efficiency']:.2f}"
                           if row["scaling_efficiency"] else "")
                        + (f"  comm {row['comm_share']['median']:.0%} of the step"
                           if row["comm_share"] else "") + "  img/s")
    return rows


def gpu_rows(ctx, launch, nets, batches, ranks, cores):
    """1 GPU rank + P - 1 CPU ranks against the GPU rank alone with every thread."""
    rows = []
    for name in nets:
        for batch in batches:
            alone = rates(launch("heterocnn", 1, cores, name, batch, "--gpu-rank"))
            for P in [p for p in ranks if p > 1]:
                T = max(1, cores // P)
                run = launch("heterocnn", P, T, name, batch, "--gpu-rank")
                row = {"net": name, "batch": batch, "ranks": P, "threads_per_rank": T,
                       "heterocnn": rates(run), "gpu_alone": alone,
                       "ratio_vs_gpu_alone": None, "shares": run.get("shares"), "run": run}
                row["ratio_vs_gpu_alone"] = over(row["heterocnn"], alone)
                row.update(comm_figures(run))
                rows.append(row)
                ctx.log(f"mpi {name:<8} batch {batch:<5} 1 GPU + {P - 1} CPU x {T:<2} "
                        + (f"{row['heterocnn']['median']:>10,.0f} img/s, GPU alone "
                           f"{alone['median']:,.0f} ({row['ratio_vs_gpu_alone']:.2f}x)"
                           if row["ratio_vs_gpu_alone"] else
                           f"{str(row['heterocnn'])[:200]} / {str(alone)[:200]}"))
    return rows


def torch_ddp_status(ctx):
    """None where DDP with gloo can run, else why it cannot."""
    torch = ctx.torch
    if not torch:
        return "not run: PyTorch is not installed"
    if not (torch.distributed.is_available() and torch.distributed.is_gloo_available()):
        return "not run: this PyTorch has no torch.distributed with gloo"
    return None


def run(ctx):
    args = ctx.args
    mpirun = find_mpirun()
    if mpirun is None:
        return {"status": "skipped: no mpirun (pip install 'heterocnn[mpi]' brings MPICH's)"}
    try:
        import mpi4py  # noqa: F401 (the workers need it)
    except ImportError:
        return {"status": "skipped: no mpi4py (pip install 'heterocnn[mpi]')"}
    cores = args.mpi_threads or usable_cpus()
    ranks = sorted({1, *(args.ranks or [p for p in RANKS if p <= cores])})
    nets = args.nets if args.nets != list(NETS) else list(MPI_NETS)
    batches = args.batches if args.batches != [64, 256] else list(BATCHES)
    torch_status = torch_ddp_status(ctx)
    with tempfile.TemporaryDirectory() as tmp:
        launch = Launcher(ctx, mpirun, tmp)
        ctx.log(f"mpi: {launch.version} ({mpirun} {' '.join(launch.flags)}), {cores} threads "
                f"over P = {', '.join(map(str, ranks))} ranks")
        rows = cpu_rows(ctx, launch, torch_status, nets, batches, ranks, cores)
        gpu = gpu_rows(ctx, launch, nets, batches, ranks, cores) if ctx.gpu else \
            "skipped: no GPU"
    return {"unit": "images/s", "mpi": launch.mpi, "mpi_version": launch.version,
            "mpirun": [mpirun, *launch.flags], "cores": cores, "ranks": ranks,
            "nets": nets, "batches": batches, "seconds_per_repeat": args.mpi_seconds,
            "warmup_steps": args.mpi_warmup, "ddp": torch_status or "ok",
            "binding": ("each rank bound by sched_setaffinity to its own slice of cores // P "
                        "CPUs" if args.mpi_bind == "cores" else "none (--mpi-bind none)")
            + "; threads = cores // P (OMP_NUM_THREADS, hc.set_threads, "
              "torch.set_num_threads); mpirun binds nothing",
            "timing": "wall time of --repeats loops of a step count rank 0 sizes to "
                      "seconds_per_repeat, between MPI barriers, every rank alike; the "
                      "frameworks run one after the other, each under its own mpirun",
            "comm": "heterocnn: DistributedSteps.comm_seconds() on rank 0, exposed (the step "
                    "waiting for its gradient sums, the wait for slower ranks included) and "
                    "busy (the sums themselves, partly hidden where they ran during the "
                    "backward pass); DDP: not measured (its allreduce overlaps the backward "
                    "pass)",
            "note": "heterocnn as fit runs it (DistributedSteps; uint8 images scaled on the "
                    "host each step); DDP on float32 batches held in memory; both SGD lr "
                    f"{LR:g}, momentum {MOMENTUM:g}, random images and labels",
            "rows": rows, "gpu_rows": gpu}
