"""Suite memory: peak memory of training, heterocnn against PyTorch, each net, batch size and
device in a fresh process (python apps/bench.py --memory-child ...) so that peaks never mix.

The child imports its framework (on a GPU also makes the CUDA context, which takes host memory
too), notes its resident set (RSS) and, on a GPU, the device's free memory (cudaMemGetInfo),
trains a fixed number of SGD steps on host batches, then reports: the process's peak RSS
(VmHWM, the import included) and that peak above the RSS noted before the model; on a GPU
what the framework says it allocated (PyTorch: torch.cuda.max_memory_allocated /
max_memory_reserved; heterocnn: its arena, which holds every buffer of the step, and
hc.estimate_memory's plan) and the device memory the process took (free before the model minus
free after training, which leaves the CUDA context out), plus nvidia-smi's per-process figure
where it can see the process (context included)."""

import json
import os
import subprocess
import sys

from _bench_common import figure

BATCHES_HELD = 4  # distinct host batches the child cycles through
FIGURES = ("peak_rss", "peak_rss_above_import", "device_used_by_process", "framework_allocated",
           "framework_reserved")


def mib(row, key):
    return f"{row[key]['median'] / 2**20:7.1f}"


def status_kib(field):
    """A /proc/self/status field (VmRSS, VmHWM) in bytes, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def smi_process_bytes():
    """This process's used GPU memory per nvidia-smi (CUDA context included), or None where
    nvidia-smi is missing or cannot see the process (another PID namespace)."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, used = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(used) * 2**20
    return None


def child(spec):
    """Train per ``spec`` ("framework,net,batch,device,steps,threads") and print one JSON
    line of memory figures."""
    framework, net, batch, device, steps, threads = spec.split(",")
    batch, steps, threads = int(batch), int(steps), int(threads)
    import numpy as np

    rng = np.random.default_rng(0)
    xs = rng.random((BATCHES_HELD, batch, 1, 28, 28), dtype=np.float32)
    ys = rng.integers(0, 10, (BATCHES_HELD, batch)).astype(np.int64)
    out = {"framework": framework, "net": net, "batch": batch, "device": device,
           "steps": steps}
    if framework == "heterocnn":
        import heterocnn as hc

        hc.set_threads(threads)
        free = (lambda: hc.cuda_device(0)["free_bytes"]) if device == "cuda" else None
        free_before = free() if free else None  # the CUDA context exists from here on
        out["rss_after_import"] = status_kib("VmRSS")
        model = hc.models.MODELS[net](seed=0).to(device)
        opt = hc.SGD(model, lr=0.01, momentum=0.9)
        for i in range(steps):
            model.train_step(xs[i % BATCHES_HELD], ys[i % BATCHES_HELD], opt)
        estimate = hc.estimate_memory(model, batch, (1, 28, 28))
        out["framework_estimate"] = estimate
        if device == "cuda":
            out["framework_allocated"] = model._net.arena_bytes(0)
            out["framework_allocated_is"] = "CoreNet.arena_bytes(0): the model's device arena"
    else:
        import torch

        from heterocnn.interop import to_torch, torch_loss
        import heterocnn as hc

        torch.set_num_threads(threads)
        if device == "cuda":
            torch.zeros(1, device="cuda")  # the context first, so it is not counted below
        out["rss_after_import"] = status_kib("VmRSS")
        free = (lambda: torch.cuda.mem_get_info()[0]) if device == "cuda" else None
        free_before = free() if free else None
        model = to_torch(hc.models.MODELS[net](seed=0)).to(device)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        loss_fn = torch_loss(hc.models.MODELS[net]())
        tx = [torch.from_numpy(x) for x in xs]
        ty = [torch.from_numpy(y) for y in ys]
        for i in range(steps):
            opt.zero_grad(set_to_none=True)
            x, y = tx[i % BATCHES_HELD].to(device), ty[i % BATCHES_HELD].to(device)
            loss_fn(model(x), y).backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
            out["framework_allocated"] = torch.cuda.max_memory_allocated()
            out["framework_reserved"] = torch.cuda.max_memory_reserved()
            out["framework_allocated_is"] = "torch.cuda.max_memory_allocated()"
    out["peak_rss"] = status_kib("VmHWM")
    out["peak_rss_above_import"] = out["peak_rss"] - out["rss_after_import"]
    if device == "cuda":
        out["device_used_by_process"] = free_before - free()
        out["device_used_by_process_is"] = ("cudaMemGetInfo free before the model minus free "
                                            "after training (CUDA context not included)")
        out["nvidia_smi_process_bytes"] = smi_process_bytes()
    print(json.dumps(out))
    return 0


def measure_child(ctx, framework, net, batch, device):
    """The child's figures, or {"error": ...} naming what failed."""
    spec = f"{framework},{net},{batch},{device},{ctx.args.memory_steps},{ctx.args.threads}"
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench.py"),
           "--memory-child", spec]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        return {"framework": framework, "net": net, "batch": batch, "device": device,
                "error": (run.stdout + run.stderr)[-1500:]}
    return json.loads(run.stdout.strip().splitlines()[-1])


def run(ctx):
    args = ctx.args
    devices = ctx.devices
    frameworks = ["heterocnn"] + (["torch"] if ctx.torch else [])
    rows = []
    for device in devices:
        for net in args.nets:
            for batch in args.batches:
                for framework in frameworks:
                    if framework == "torch" and device == "cuda" and not ctx.torch_gpu:
                        continue
                    # a fresh child per repeat; the peaks barely move, the spread shows it
                    samples = [measure_child(ctx, framework, net, batch, device)
                               for _ in range(1 if args.quick else 2)]
                    row = dict(samples[0])
                    if not any("error" in s for s in samples):
                        for key in FIGURES:
                            if key in row:
                                row[key] = figure([s[key] for s in samples], "bytes")
                    rows.append(row)
                    ctx.log(f"memory {device} {net:<8} batch {batch:<4} {framework:<9} " + (
                        f"peak RSS {mib(row, 'peak_rss')} MiB "
                        f"({mib(row, 'peak_rss_above_import')} above import)"
                        + (f", device {mib(row, 'device_used_by_process')} MiB, "
                           f"allocated {mib(row, 'framework_allocated')} MiB"
                           if device == "cuda" else "")
                        if "error" not in row else "failed: " + row["error"][-300:]))
    return {"unit": "bytes", "steps": args.memory_steps, "rows": rows,
            "method": __doc__.split("\n\n", 1)[1].replace("\n", " ")}
