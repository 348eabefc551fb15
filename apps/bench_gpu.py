#!/usr/bin/env python3
"""Training throughput on the GPU: heterocnn against PyTorch eager and torch.compile, plus the
GEMM lab and single conv layers against cuDNN, in one run.

    python apps/bench_gpu.py [--data DIR] [--nets mlp lenet5 convnet] [--batches 64 256]
                             [--repeats 5] [--json bench-out/bench_gpu.json] [--no-gemm]

Each net trains with SGD (lr 0.01, momentum 0.9) from the same weights on the full
Fashion-MNIST train set held on the GPU; every contender takes the same batches (a fixed
permutation, seed 0). After --warmup untimed steps (torch.compile's compilation among them),
--steps steps are timed between torch.cuda.synchronize() calls, --repeats times; the median
counts. PyTorch runs in fp32 with TF32 off and cudnn.benchmark on. Prints a table of images/s
with the ratios heterocnn / PyTorch, and writes every figure, the machine and the versions as
JSON (written again after each result, so a cut-off run keeps what it measured)."""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

import heterocnn as hc
from _bench_common import cpu_name, write_json
from heterocnn.interop import to_torch, torch_loss

NETS = ("mlp", "lenet5", "convnet")
CONTENDERS = ("heterocnn", "torch_eager", "torch_compile")
# cuDNN's yardstick layers of issue 3: 3x3 conv, padding 1, batch 256: (channels, height/width)
CONV_LAYERS = ((32, 28), (64, 14))
LAB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cuda", "dev",
                   "build_and_run.sh")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nets", nargs="+", choices=NETS, default=list(NETS))
    p.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per repeat (default 300 below batch 256, else 200)")
    p.add_argument("--convnet-steps", type=int, default=None,
                   help="timed steps per repeat for convnet (default: as --steps)")
    p.add_argument("--warmup", type=int, default=30, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--data", default=None,
                   help="folder with the Fashion-MNIST IDX files (default: the installed set)")
    p.add_argument("--json", default="bench-out/bench_gpu.json")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM lab")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--compile-scope", choices=("model", "step"), default="model",
                   help="torch.compile the model (forward and backward; default) or the whole "
                        "train step function (optimizer included)")
    p.add_argument("--no-conv", action="store_true", help="skip the conv layers vs cuDNN")
    p.add_argument("--conv-steps", type=int, default=100, help="timed calls per conv repeat")
    # Smoke test without a GPU: every contender runs on the CPU (heterocnn with host batches).
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help=argparse.SUPPRESS)
    return p.parse_args()


def steps_for(args, name, batch):
    """Timed steps per repeat for ``name`` at ``batch``."""
    if name == "convnet" and args.convnet_steps:
        return args.convnet_steps
    return args.steps or (300 if batch < 256 else 200)


def timed(step, steps, warmup, repeats, batch, sync):
    """Images/s of ``steps`` calls step(0), step(1), ... after ``warmup`` untimed calls, measured
    ``repeats`` times between sync() calls: {"median", "repeats", "warmup_s"}."""
    start = time.perf_counter()
    for i in range(warmup):
        step(i)
    sync()
    warmup_s = time.perf_counter() - start
    rates = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        sync()
        rates.append(steps * batch / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "repeats": rates, "warmup_s": warmup_s}


def index_batches(n, batch, count):
    """``count`` batches of ``batch`` sample indices (int64, (count, batch)): one fixed
    permutation of range(n) (seed 0), repeated as often as needed."""
    order = np.random.default_rng(0).permutation(n)
    return np.resize(order, (count, batch)).astype(np.int64)


def heterocnn_step(name, device, train, data_on_device, idx):
    """step(i) training heterocnn's ``name`` on batch idx[i]: from ``data_on_device`` (an
    hc.DeviceDataset) in one call, or, without one, from float32 host batches."""
    model = hc.models.MODELS[name](seed=0).to(device)
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    if data_on_device is not None:
        return lambda i: model.train_step_on(data_on_device, idx[i], opt)
    X, y = train
    host = [(X[b].astype(np.float32) / 255, y[b]) for b in idx]
    return lambda i: model.train_step(*host[i], opt)


def torch_step(name, X, Y, idx, compile_scope):
    """step(i) training the PyTorch twin of ``name`` on X[idx[i]], Y[idx[i]] (gathered on the
    device); compile_scope None runs eager, "model" or "step" what torch.compile wraps."""
    import torch

    model = to_torch(hc.models.MODELS[name](seed=0)).to(X.device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch_loss(hc.models.MODELS[name]())
    net = torch.compile(model, mode="reduce-overhead") if compile_scope == "model" else model

    def train(x, y):
        opt.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        opt.step()

    if compile_scope == "step":
        train = torch.compile(train, mode="reduce-overhead")

    def step(i):
        if compile_scope:
            torch.compiler.cudagraph_mark_step_begin()
        b = idx[i]
        train(X.index_select(0, b), Y.index_select(0, b))

    return step


def bench_training(args, train, data_on_device, sync, save, results):
    """Images/s of every net at every batch size for every contender, into
    results["training"]; prints a line per figure."""
    import torch

    X = torch.from_numpy(train[0]).to(args.device).float().div_(255)
    Y = torch.from_numpy(train[1]).to(args.device)
    for batch in args.batches:
        for name in args.nets:
            steps = steps_for(args, name, batch)
            idx = index_batches(len(train[1]), batch, max(steps, args.warmup))
            tidx = torch.from_numpy(idx).to(args.device)
            row = {"net": name, "batch": batch, "steps": steps}
            makers = {"heterocnn": lambda: heterocnn_step(name, args.device, train,
                                                          data_on_device, idx),
                      "torch_eager": lambda: torch_step(name, X, Y, tidx, None)}
            if args.no_compile:
                row["torch_compile"] = "n/a: --no-compile"
            else:
                makers["torch_compile"] = lambda: torch_step(name, X, Y, tidx,
                                                             args.compile_scope)
            for who, make in makers.items():
                if who == "torch_compile":
                    torch._dynamo.reset()  # a fresh cache, so earlier nets cost no recompile limit
                try:
                    row[who] = timed(make(), steps, args.warmup, args.repeats, batch, sync)
                except Exception as e:  # noqa: BLE001 (compile failures are reported, not fatal)
                    if who != "torch_compile":
                        raise
                    row[who] = f"n/a: {type(e).__name__}: {str(e).strip().splitlines()[0][:300]}"
                figure = row[who]
                print(f"{name:<8} batch {batch:<4} {who:<14} " + (
                    f"{figure['median']:>10,.0f} img/s  (warm-up {figure['warmup_s']:.1f} s)"
                    if isinstance(figure, dict) else figure), flush=True)
            theirs = {who: row[who]["median"] for who in CONTENDERS[1:]
                      if isinstance(row.get(who), dict)}
            ours = row["heterocnn"]["median"]
            row["ratio_vs_best"] = ours / max(theirs.values())
            row.update({f"ratio_vs_{who}": ours / v for who, v in theirs.items()})
            results["training"].append(row)
            save()


def bench_conv_layers(args, sync, results):
    """Forward + backward (dW, db; no dX, as a first layer) of a 3x3 conv at batch 256:
    heterocnn's per-layer profile against torch.nn.Conv2d (cuDNN), microseconds per call, into
    results["conv_layers"]."""
    import torch

    for channels, size in CONV_LAYERS:
        x = np.random.default_rng(0).standard_normal((256, channels, size, size), np.float32)
        y = np.zeros(256, np.int64)
        model = hc.Sequential(hc.Conv2d(channels, channels, 3, padding=1), hc.Flatten(),
                              hc.Linear(channels * size * size, 10)).to(args.device)
        opt = hc.SGD(model, lr=0.0)
        for _ in range(args.warmup):
            model.train_step(x, y, opt)
        ours = []
        for _ in range(args.repeats):
            model.profile(True)
            for _ in range(args.conv_steps):
                model.train_step(x, y, opt)
            t = model.layer_times()[0]
            ours.append(1e6 * (t["forward_s"] + t["backward_s"]))
        model.profile(False)

        conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(args.device)
        tx = torch.from_numpy(x).to(args.device)
        dy = torch.randn_like(conv(tx))

        def step(_):
            conv.zero_grad(set_to_none=True)
            conv(tx).backward(dy)

        theirs = timed(step, args.conv_steps, args.warmup, args.repeats, 1, sync)
        theirs_us = [1e6 / r for r in theirs["repeats"]]
        entry = {"layer": f"Conv2d({channels}, {channels}, 3, padding=1) on {size}x{size}, "
                          "batch 256", "heterocnn_us": statistics.median(ours),
                 "heterocnn_us_repeats": ours, "torch_us": statistics.median(theirs_us),
                 "torch_us_repeats": theirs_us}
        entry["ratio"] = entry["torch_us"] / entry["heterocnn_us"]
        results["conv_layers"].append(entry)
        print(f"{entry['layer']}: heterocnn {entry['heterocnn_us']:.0f} us, "
              f"torch {entry['torch_us']:.0f} us, speed-up {entry['ratio']:.2f}x", flush=True)


def bench_gemm(args, results):
    """Build and run cuda/dev's GEMM lab for this GPU's architecture; its table (versions,
    shapes, GFLOP/s, % of cuBLAS) goes into results["gemm"], its log next to the JSON."""
    major, minor = hc.build_info()["gpus"][0]["compute_capability"]
    base = os.path.splitext(os.path.abspath(args.json))[0]
    lab_json, lab_log = base + "_gemm_lab.json", base + "_gemm_lab.log"
    print(f"GEMM lab: building for sm_{major}{minor} and running (log: {lab_log})", flush=True)
    if os.path.exists(lab_json):
        os.remove(lab_json)
    start = time.perf_counter()
    run = subprocess.run(["bash", LAB, "lab", lab_json], env={**os.environ,
                         "ARCH": f"{major}{minor}"}, capture_output=True, text=True)
    with open(lab_log, "w") as f:
        f.write(run.stdout + run.stderr)
    gemm = {"command": f"ARCH={major}{minor} bash cuda/dev/build_and_run.sh lab {lab_json}",
            "returncode": run.returncode, "seconds": time.perf_counter() - start}
    if os.path.exists(lab_json):
        with open(lab_json) as f:
            gemm.update(json.load(f))
    else:
        gemm["error"] = (run.stdout + run.stderr)[-2000:]
    results["gemm"] = gemm


def versions():
    """Versions of the packages and libraries whose figures are compared."""
    import torch

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"heterocnn": hc.__version__, "torch": torch.__version__,
            "torch_cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "triton": triton_version, "numpy": np.__version__, "python": platform.python_version()}


def machine(device):
    """CPU, GPUs as heterocnn and PyTorch see them, and the NVIDIA driver."""
    import torch

    info = {"cpu": cpu_name(), "platform": platform.platform(), "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info["gpus"] = hc.build_info()["gpus"]
        info["torch_gpu"] = {"name": props.name, "total_bytes": props.total_memory,
                             "compute_capability": [props.major, props.minor]}
        try:
            info["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", "-i", "0"],
                capture_output=True, text=True).stdout.strip() or None
        except OSError:
            info["driver"] = None
    return info


def print_summary(results):
    """The final tables: training images/s with ratios, conv layers, GEMM."""
    print(f"\n{'net':<8} {'batch':>5} {'heterocnn':>11} {'torch eager':>12} "
          f"{'torch compile':>14} {'vs best':>8} {'vs eager':>9} {'vs compile':>11}   (img/s)")
    for row in results["training"]:
        figures = [row[who]["median"] if isinstance(row.get(who), dict) else None
                   for who in CONTENDERS]
        ratios = [row.get(key) for key in
                  ("ratio_vs_best", "ratio_vs_torch_eager", "ratio_vs_torch_compile")]
        print(f"{row['net']:<8} {row['batch']:>5} "
              + " ".join(f"{v:>{w},.0f}" if v else f"{'n/a':>{w}}"
                         for v, w in zip(figures, (11, 12, 14)))
              + " " + " ".join(f"{r:>{w - 1}.2f}x" if r else f"{'n/a':>{w}}"
                               for r, w in zip(ratios, (8, 9, 11))))
    for entry in results.get("conv_layers", []):
        print(f"{entry['layer']}: heterocnn {entry['heterocnn_us']:.0f} us, "
              f"cuDNN {entry['torch_us']:.0f} us ({entry['ratio']:.2f}x)")
    gemm = results.get("gemm")
    if isinstance(gemm, dict) and "rows" in gemm:
        print(f"\n{'GEMM version':<24} {'M':>6} {'N':>6} {'K':>6} {'GFLOP/s':>10} {'%cuBLAS':>8}")
        for r in gemm["rows"]:
            print(f"{r['version']:<24} {r['M']:>6} {r['N']:>6} {r['K']:>6} {r['gflops']:>10.1f} "
                  f"{r['pct_cublas']:>7.1f}%")
        print(f"validation failures: {gemm['validation_failures']}")
    elif gemm is not None:
        print(f"GEMM lab: {gemm if isinstance(gemm, str) else 'failed, see the JSON and log'}")


def main():
    args = parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("bench_gpu needs PyTorch (pip install '.[bench]')")
    if args.device == "cuda" and not (hc.cuda_available() and torch.cuda.is_available()):
        sys.exit(f"no usable GPU: heterocnn sees {hc.cuda_device_count()} (CUDA compiled in: "
                 f"{hc.build_info()['cuda_compiled']}), PyTorch sees "
                 f"{torch.cuda.device_count()}. Run this on the GPU machine.")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    dataset = hc.datasets.fashion_mnist("train", path=args.data)
    train = dataset.as_tuple()
    if args.device == "cuda" and hasattr(hc, "DeviceDataset"):
        data_on_device = hc.DeviceDataset(train, device="cuda")
    else:
        data_on_device = None
        print("heterocnn: " + ("no hc.DeviceDataset in this build" if args.device == "cuda"
                               else "on the CPU") + ": batches go from the host through "
              "model.train_step (host-to-device copies included in its figures)")
    results = {"machine": machine(args.device), "versions": versions(),
               "build": hc.build_info(), "data": dataset.source,
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "settings": {"warmup": args.warmup, "repeats": args.repeats,
                            "compile_scope": args.compile_scope, "lr": 0.01, "momentum": 0.9,
                            "heterocnn_data_on_device": data_on_device is not None,
                            "torch": "fp32, TF32 off, cudnn.benchmark"},
               "training": []}

    def save():
        write_json(args.json, results)

    gpu = results["machine"].get("torch_gpu", {}).get("name", "no GPU (smoke test)")
    print(f"{gpu}; {results['data']}; torch {torch.__version__}, cuDNN "
          f"{results['versions']['cudnn']}; median of {args.repeats}", flush=True)
    bench_training(args, train, data_on_device, sync, save, results)
    if not args.no_conv:
        results["conv_layers"] = []
        bench_conv_layers(args, sync, results)
        save()
    if args.no_gemm or args.device != "cuda":
        results["gemm"] = "skipped (--no-gemm)" if args.no_gemm else "skipped (no GPU)"
    else:
        bench_gemm(args, results)
    save()
    print_summary(results)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
