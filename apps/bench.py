#!/usr/bin/env python3
"""heterocnn's benchmark suite: every figure against its peer in the same run, as JSON.

    python apps/bench.py --suite cpu|gpu|layers|gemm|memory|tta|hetero|mpi|fusion|all[,...]
                         [--quick]
                         [--threads 2] [--repeats 5] [--json PATH] [--no-report]
    python apps/bench.py --report      # BENCHMARKS.md's tables and benchmarks/*.png from JSON

Suites (BENCHMARKS.md says what each measures and how):
  cpu     training images/s of mlp, lenet5, convnet, bnnet at batch 64 and 256, heterocnn against
          PyTorch on the CPU with the same threads
  gpu     the same on the GPU against PyTorch eager and torch.compile(mode="reduce-overhead"),
          and the CUDA GEMM lab (cuda/dev) against cuBLAS
  layers  forward and backward time of each conv, linear, BatchNorm and pooling layer of lenet5,
          convnet and bnnet, heterocnn (CPU, CUDA) against PyTorch (CPU, cuDNN with benchmark on
          and off)
  gemm    our CPU SGEMM against numpy's BLAS with the same threads; the CUDA GEMM lab on a GPU
  memory  peak host RSS and device memory of training, each net and batch in a fresh process
  tta     time to accuracy with each net's recipe (lenet5 90.0%, convnet 93.0%, bnnet 94.5%)
  hetero  CPU+GPU training: all-CPU, all-GPU, the planner's choice and the exhaustive best
          over two-device splits and data-parallel shares (batch 64, 256, 1024); predict
          latency of the planner's inference choice (needs a GPU)
  mpi     data-parallel training over P MPI ranks of cores/P threads (--ranks, default 1, 2,
          4, 8) of lenet5 and convnet at global batch 256 and 1024, heterocnn against PyTorch
          DDP (gloo) on the same ranks: images/s, scaling efficiency, time in communication;
          1 GPU rank + CPU ranks where there is a GPU (needs mpirun and mpi4py)
  fusion  training images/s of the nets with ReLU fusion and without (HC_RELU_FUSION=0), each
          in fresh processes taking turns, on every device of --devices, and the time of the
          BatchNorm+ReLU (and Conv2d/Linear+ReLU) pairs in a step
  all     every suite this machine can run (GPU parts skip, saying so, without a GPU)

One JSON file per run (default benchmarks/<suites>-<machine>.json, e.g. cpu_gemm-amd-epyc-2t) holds the machine, the load
average at start and end, the versions, and every figure with all its repeats, median, min
and max; warm-up is never timed. The report is regenerated at the end of each run.
PyTorch and matplotlib come with the ``bench`` extra: pip install '.[bench]'."""

import argparse
import datetime
import importlib
import os
import sys
import traceback

APPS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(APPS)
SUITES = ("cpu", "gpu", "layers", "gemm", "memory", "tta", "hetero", "mpi", "fusion")
NETS = ("mlp", "lenet5", "convnet", "bnnet")  # names of hc.models.MODELS
GPU_ONLY = ("gpu", "hetero")
RUNNERS = {"cpu": ("_bench_train", "run_cpu"), "gpu": ("_bench_train", "run_gpu"),
           "layers": ("_bench_layers", "run"), "gemm": ("_bench_gemm", "run"),
           "memory": ("_bench_memory", "run"), "tta": ("_bench_tta", "run"),
           "hetero": ("_bench_hetero", "run"), "mpi": ("_bench_mpi", "run"),
           "fusion": ("_bench_fusion", "run")}


def suite_list(text):
    """'cpu,layers' or 'all' -> ['cpu', 'layers'] in SUITES order; ArgumentTypeError naming
    what is unknown."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SUITES + ("all",)]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown suite {', '.join(map(repr, unknown)) or repr(text)}: choose from "
            f"{', '.join(SUITES)} or all, several separated by commas")
    return list(SUITES) if "all" in names else [s for s in SUITES if s in names]


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number")
    return value


def int_list(text):
    return [positive_int(v) for v in text.split(",")]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="\n".join(__doc__.splitlines()[2:]))
    p.add_argument("--suite", type=suite_list, help="suites to run, comma-separated, or all")
    p.add_argument("--report", action="store_true",
                   help="regenerate BENCHMARKS.md's tables and the plots from the JSON files")
    p.add_argument("--no-report", action="store_true", help="do not regenerate after a run")
    p.add_argument("--json", help="where the run's JSON goes: a file, or a folder for the "
                                  "default name <suites>-<machine>.json (default: --bench-dir)")
    p.add_argument("--bench-dir", default=os.path.join(ROOT, "benchmarks"),
                   help="folder of JSON files and plots for the report (default benchmarks/)")
    p.add_argument("--markdown", default=os.path.join(ROOT, "BENCHMARKS.md"),
                   help="the Markdown file whose marked tables the report regenerates")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: few steps and repeats, embedded sample data")
    p.add_argument("--threads", type=positive_int, default=2,
                   help="CPU threads for heterocnn, PyTorch and numpy alike (default 2)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="timed repeats per figure (default 5, --quick 2)")
    p.add_argument("--nets", default="mlp,lenet5,convnet,bnnet", help="nets, comma-separated")
    p.add_argument("--batches", type=int_list, default=[64, 256],
                   help="batch sizes, comma-separated (default 64,256)")
    p.add_argument("--images", type=positive_int, default=None,
                   help="images per timed repeat of the cpu, gpu and fusion suites' training "
                        "figures (default 19200; the steps are this over the batch size); the "
                        "layers and fusion suites profile 2560 images' worth of steps, at "
                        "least 5")
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX folder (default: the "
                                                "installed set, else the embedded sample)")
    p.add_argument("--sample", action="store_true", help="use the embedded sample data")
    p.add_argument("--devices", default="cpu,cuda",
                   help="devices of the layers, memory and fusion suites, comma-separated "
                        "(default cpu,cuda; cuda only where there is a GPU)")
    p.add_argument("--tta-devices", default=None,
                   help="devices of the tta suite, comma-separated (default: cuda where "
                        "there is a GPU, else cpu)")
    p.add_argument("--tta-nets", default="mlp,lenet5,convnet,bnnet",
                   help="nets of the tta suite")
    p.add_argument("--tta-batches", type=int_list, default=None,
                   help="batch sizes of the tta suite (default: each net's recipe's)")
    p.add_argument("--memory-steps", type=positive_int, default=None,
                   help="training steps of each memory measurement (default 20, --quick 3)")
    p.add_argument("--ranks", type=int_list, default=None,
                   help="MPI ranks of the mpi suite, comma-separated (default 1,2,4,8 up to "
                        "--mpi-threads; 1 always runs: the baseline)")
    p.add_argument("--mpi-threads", type=positive_int, default=None,
                   help="CPU threads of the mpi suite, split evenly between the ranks "
                        "(default: the CPUs this process may use)")
    p.add_argument("--mpi-seconds", type=positive_float, default=None,
                   help="timed seconds per repeat of each mpi suite figure (default 1, "
                        "--quick 0.05)")
    p.add_argument("--mpi-warmup", type=positive_int, default=None,
                   help="untimed steps before each mpi suite figure (default 3, --quick 1)")
    p.add_argument("--mpi-bind", choices=("cores", "none"), default="cores",
                   help="cores (default): each rank of the mpi suite binds itself to its own "
                        "cores; none: the OS places the threads")
    p.add_argument("--no-lab", action="store_true",
                   help="skip the CUDA GEMM lab of the gpu and gemm suites (it needs nvcc and "
                        "about a minute to build)")
    p.add_argument("--memory-child", help=argparse.SUPPRESS)
    p.add_argument("--fusion-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_child or args.fusion_child:
        return args
    if not args.suite and not args.report:
        p.error("nothing to do: give --suite SUITES (e.g. --suite cpu,layers) and/or --report")
    if args.suite and args.report:
        p.error("--report regenerates from existing JSON; a --suite run regenerates it anyway")
    nets = [n.strip() for n in args.nets.split(",")]
    bad = [n for n in nets + args.tta_nets.split(",") if n not in NETS]
    if bad:
        p.error(f"unknown net {bad[0]!r}: choose from {', '.join(NETS)}")
    args.nets = nets
    args.tta_nets = args.tta_nets.split(",")
    args.devices = args.devices.split(",")
    if not args.devices or any(d not in ("cpu", "cuda") for d in args.devices):
        p.error(f"--devices takes cpu and/or cuda, got {','.join(args.devices)!r}")
    if args.tta_devices is not None:
        args.tta_devices = args.tta_devices.split(",")
        if any(d not in ("cpu", "cuda") for d in args.tta_devices):
            p.error(f"--tta-devices takes cpu and/or cuda, got {','.join(args.tta_devices)!r}")
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.images = args.images or (512 if args.quick else 19200)
    args.memory_steps = args.memory_steps or (3 if args.quick else 20)
    args.mpi_seconds = args.mpi_seconds or (0.05 if args.quick else 1.0)
    args.mpi_warmup = args.mpi_warmup or (1 if args.quick else 3)
    args.sample = args.sample or args.quick
    return args


def set_thread_env(threads):
    """Pin every library's thread pool to ``threads`` before numpy or torch loads; drop the
    OpenBLAS core-type overrides that slow a current OpenBLAS on this CPU (BENCHMARKS.md)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)


class Context:
    """What the suites share: the arguments, heterocnn, numpy, torch (or None), the GPU."""

    def __init__(self, args, hc, np, torch):
        self.args, self.hc, self.np, self.torch = args, hc, np, torch
        self.gpu = hc.cuda_available()
        self.torch_gpu = bool(torch) and torch.cuda.is_available()
        self.gemm_lab = None  # the CUDA GEMM lab's result, run once for gpu and gemm
        # the layers, memory and fusion suites' devices: those asked for that this machine has
        self.devices = [d for d in args.devices if d == "cpu" or self.gpu]

    def log(self, text):
        print(text, flush=True)


def run_suite(name, ctx):
    """The suite's result dict; a suite that cannot run or fails says so in "status"."""
    module, function = RUNNERS[name]
    runner = getattr(importlib.import_module(module), function)
    if name in GPU_ONLY and not ctx.gpu:
        return {"status": f"skipped: no usable GPU (heterocnn sees "
                          f"{ctx.hc.cuda_device_count()}, CUDA compiled in: "
                          f"{ctx.hc.build_info()['cuda_compiled']})"}
    try:
        result = runner(ctx)
    except Exception as e:  # noqa: BLE001 (a failed suite is reported; the others still run)
        traceback.print_exc()
        return {"status": f"failed: {type(e).__name__}: {e}"}
    result.setdefault("status", "ok")
    return result


def json_path(args, tag):
    """--json as given, or <suites>-<tag>.json in the folder --json names (ending in /) or in
    --bench-dir."""
    name = f"{'all' if args.suite == list(SUITES) else '_'.join(args.suite)}-{tag}.json"
    if args.json and not (args.json.endswith(os.sep) or os.path.isdir(args.json)):
        return args.json
    return os.path.join(args.json or args.bench_dir, name)


def main(argv=None):
    args = parse_args(argv)
    set_thread_env(args.threads)
    sys.path.insert(0, APPS)
    if args.memory_child:
        import _bench_memory

        return _bench_memory.child(args.memory_child)
    if args.fusion_child:
        import _bench_fusion

        return _bench_fusion.child(args.fusion_child)
    if args.report:
        import _bench_report

        return _bench_report.regenerate(args.bench_dir, args.markdown)

    import numpy as np

    import heterocnn as hc
    from _bench_common import INSTALL_HINT, SCHEMA, load_average, machine_info, machine_tag
    from _bench_common import try_import, versions, write_json

    hc.set_threads(args.threads)
    torch = try_import("torch")
    if torch:
        torch.set_num_threads(args.threads)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        print(f"PyTorch is not installed: heterocnn's figures only ({INSTALL_HINT})")
    ctx = Context(args, hc, np, torch)
    machine = machine_info(hc, args.threads)
    tag = machine_tag(machine)
    path = json_path(args, tag)
    out = {"schema": SCHEMA, "suites": args.suite, "tag": tag,
           "command": " ".join(["python", "apps/bench.py"] + (argv or sys.argv[1:])),
           "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "finished": None, "machine": machine, "versions": versions(hc, np),
           "settings": {"quick": args.quick, "threads": args.threads, "repeats": args.repeats,
                        "images_per_repeat": args.images, "nets": args.nets,
                        "batches": args.batches},
           "results": {}}
    gpu = machine["gpu"]["name"] if machine["gpu"] else "no GPU"
    ctx.log(f"{machine['cpu']} ({machine['cores']} cores, {args.threads} thread{'s' if args.threads > 1 else ''}), {gpu}; "
            f"load average {machine['load_average_start']}; suites {', '.join(args.suite)}")
    for name in args.suite:
        ctx.log(f"== suite {name}")
        out["results"][name] = run_suite(name, ctx)
        if out["results"][name]["status"] != "ok":
            ctx.log(f"suite {name}: {out['results'][name]['status']}")
        write_json(path, out)  # after every suite, so a cut-off run keeps what it measured
    out["machine"]["load_average_end"] = load_average()
    out["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    write_json(path, out)
    ctx.log(f"wrote {path} (load average at the end {out['machine']['load_average_end']})")
    if not args.no_report:
        import _bench_report

        _bench_report.regenerate(args.bench_dir, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
