"""Helpers shared by the benchmark suites of apps/bench.py: the machine and the versions a run
is measured on, figures with their spread, the timing loop and its clocks, the nets' data."""

import json
import os
import platform
import re
import statistics
import subprocess
import time

NETS = ("mlp", "lenet5", "convnet", "bnnet")
SCHEMA = "heterocnn-bench/1"
INSTALL_HINT = "pip install '.[bench]' (torch and matplotlib)"


def cpu_name():
    """The CPU's model name from /proc/cpuinfo, or what platform knows where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f
                         if line.startswith("model name")), platform.processor())
    except OSError:
        return platform.processor()


def load_average():
    """The 1, 5 and 15 minute load averages, or None where the OS has none."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def host_memory_bytes():
    """MemTotal of /proc/meminfo, or None."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f
                        if line.startswith("MemTotal:"))
    except (OSError, StopIteration):
        return None


def nvidia_smi(query, index=0):
    """One nvidia-smi --query-gpu field of GPU ``index``, or None without nvidia-smi."""
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits",
                              "-i", str(index)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def try_import(name):
    """The module ``name``, or None where it is not installed."""
    try:
        return __import__(name)
    except ImportError:
        return None


def gpu_info(hc):
    """Name, memory, compute capability and driver of GPU 0 as heterocnn sees it, or None."""
    if not hc.cuda_available():
        return None
    gpu = dict(hc.build_info()["gpus"][0])
    gpu["driver"] = nvidia_smi("driver_version")
    return gpu


def machine_info(hc, threads):
    """What a run is measured on; load_average_end is filled in when the run ends."""
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads,
            "memory_bytes": host_memory_bytes(), "host": platform.node(),
            "platform": platform.platform(), "load_average_start": load_average(),
            "load_average_end": None, "gpu": gpu_info(hc)}


def numpy_blas(np):
    """Name and version of the BLAS numpy was built with."""
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # noqa: BLE001 (older numpy: no dicts mode)
        return None


def versions(hc, np):
    """heterocnn's build, numpy and its BLAS, torch with its CUDA and cuDNN, matplotlib."""
    torch = try_import("torch")
    mpl = try_import("matplotlib")
    info = {"heterocnn": {k: v for k, v in hc.build_info().items() if k != "gpus"},
            "numpy": np.__version__, "numpy_blas": numpy_blas(np),
            "python": platform.python_version(), "torch": None, "torch_cuda": None,
            "cudnn": None, "matplotlib": mpl.__version__ if mpl else None}
    if torch:
        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None)
    return info


def machine_tag(machine):
    """A short name for the machine in file names: the card (e.g. 'h200') where there is a GPU,
    else the CPU model and the threads (e.g. 'amd-epyc-2t')."""
    if machine["gpu"]:
        name = machine["gpu"]["name"].lower().replace("nvidia", "")
        words = re.findall(r"[a-z]*\d+[a-z]*", name) or re.findall(r"[a-z0-9]+", name)
        return words[0] if words else "gpu"
    words = re.findall(r"[a-z0-9]+", machine["cpu"].lower().replace("(r)", "").replace("(tm)", ""))
    skip = {"processor", "cpu", "core", "with", "radeon", "graphics"}
    words = [w for w in words if w not in skip][:3]
    return "-".join(words + [f"{machine['threads']}t"])


def figure(values, unit):
    """A measured figure: every repeat, median, min and max."""
    values = [float(v) for v in values]
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "repeats": values, "unit": unit}


class WallClock:
    """Wall time between start() and stop(), after ``sync()`` at both ends (a GPU's work done)."""

    def __init__(self, sync=None):
        self.sync = sync or (lambda: None)
        self.name = "wall time" + (" between device synchronisations" if sync else "")

    def start(self):
        self.sync()
        self._t = time.perf_counter()

    def stop(self):
        self.sync()
        return time.perf_counter() - self._t


class CudaEventClock:
    """Seconds between two torch.cuda.Event records on torch's current stream."""

    name = "CUDA events (torch.cuda.Event) on PyTorch's stream"

    def __init__(self, torch):
        self.torch = torch

    def start(self):
        self._a = self.torch.cuda.Event(enable_timing=True)
        self._b = self.torch.cuda.Event(enable_timing=True)
        self._a.record()

    def stop(self):
        self._b.record()
        self._b.synchronize()
        return self._a.elapsed_time(self._b) / 1e3


def measure(contenders, calls, warmup, repeats, per=1.0):
    """Rates of contenders {key: (step, clock)}: each runs step(i) ``warmup`` times untimed,
    then ``repeats`` timed loops of ``calls`` calls, the contenders taking turns repeat by repeat
    (so a change of load on a shared machine hits all of them): {key: figure of
    per * calls / seconds, with the warm-up's seconds}."""
    warmup_s = {}
    for key, (step, clock) in contenders.items():
        clock.start()
        for i in range(warmup):
            step(i)
        warmup_s[key] = clock.stop()
    values = {key: [] for key in contenders}
    for _ in range(repeats):
        for key, (step, clock) in contenders.items():
            clock.start()
            for i in range(calls):
                step(i)
            values[key].append(per * calls / clock.stop())
    return {key: dict(figure(v, ""), warmup_s=warmup_s[key]) for key, v in values.items()}


def train_batches(hc, np, batch, count, data=None, sample=False, seed=0):
    """``count`` float32 batches (x, y) of the Fashion-MNIST train set (the full set where
    installed), from one fixed permutation, and the data's source."""
    train = hc.datasets.fashion_mnist("train", path=data, sample=sample)
    X, y = train.as_tuple()
    idx = np.resize(np.random.default_rng(seed).permutation(len(X)), batch * count)
    xb = (X[idx].astype(np.float32) / 255).reshape(count, batch, *X.shape[1:])
    yb = y[idx].astype(np.int64).reshape(count, batch)
    return [(xb[i], yb[i]) for i in range(count)], train.source


def ratio(ours, theirs):
    """ours / theirs of two figures' medians, or None where one is missing."""
    if not (isinstance(ours, dict) and isinstance(theirs, dict)) or not theirs["median"]:
        return None
    return ours["median"] / theirs["median"]


def write_json(path, results):
    """Write ``results`` to ``path`` as indented JSON, creating its folder."""
    from heterocnn.atomic import write_atomic

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, json.dumps(results, indent=1).encode())
