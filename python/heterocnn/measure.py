"""hc.measure: the costs of running a model on this machine, measured at one batch size, for
the placement planner (placement.py). What is measured, on each device ("cpu" with its
threads, each GPU):

- each layer's forward and backward (with the ReLU it fuses) at that batch size, from the
  core's per-layer profile (on a GPU from events around the layer's kernels, so small layers
  are not inflated by a host wait between layers);
- the optimizer's update of all the parameters (split over the layers by their size); what a
  profiled (op-by-op) step spends beyond its layers' kernels and the update (the host's
  launches and waits, the loss), spread evenly over its calls, since a mixed placement runs
  op by op;
- a whole step as fit runs it (on a GPU the captured graph with the batch gathered on the
  device), at the batch size and at a quarter of it, for data-parallel shares;
- copies between every ordered pair of devices at a few sizes, fitted as latency + bytes /
  bandwidth (least squares).

Tables are cached per machine, build, thread count, model, batch size, input shape, devices
and mode (cost_cache.py); a corrupt or stale cache is measured again with a one-line note.
"""

import functools
import hashlib
import platform
import sys
import time

import numpy as np

from . import _core, cost_cache
from .costs import CostTable, Transfer
from .errors import InvalidValueError
from .memory import host_available

COPY_SIZES = (4 << 10, 256 << 10, 4 << 20)  # bytes
TIMING_BUDGET_S = 0.25                      # per timed item, after its warm-up


def available_devices():
    """"cpu" and every usable GPU of this build."""
    return ["cpu"] + [f"cuda:{i}" for i in range(_core.cuda_device_count())]


def _devices(devices):
    from .data_parallel import canonical_device

    if devices is None:
        return available_devices()
    out = []
    for d in devices:
        d = canonical_device(d)
        if d not in out:
            out.append(d)
    if not out:
        raise InvalidValueError("measure needs at least one device")
    return out


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=None)
def core_fingerprint():
    """The first 16 hex digits of the SHA-256 of the compiled core (the extension module's
    file): builds of one version differ in their kernels, so each gets tables of its own."""
    digest = hashlib.sha256()
    with open(_core.__file__, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def cache_key(model, batch_size, input_shape, devices, mode):
    """What a measurement depends on: this machine, this build, the thread count, the model's
    architecture, and what is measured."""
    info = _core.build_info()
    gpus = [_core.cuda_device(int(d.split(":")[1]))["name"] for d in devices if d != "cpu"]
    return {"machine": {"cpu": _cpu_model(), "host": platform.node(), "gpus": gpus},
            "build": {"version": info["version"], "core": core_fingerprint(),
                      "gemm": info["gemm_kernel"],
                      "cuda": info["cuda_compiled"], "openmp": info["openmp"],
                      "relu_fusion": info["relu_fusion"]},
            "threads": info["threads"],
            "model": {"layers": [list(layer._spec()) for layer in model.layers],
                      "loss": model.loss},
            "batch_size": batch_size, "input_shape": list(input_shape), "devices": devices,
            "mode": mode}


def _timed(fn, budget_s=TIMING_BUDGET_S, at_most=50):
    """Seconds per call of fn (after one untimed call): calls repeated until budget_s."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed + elapsed / n >= budget_s or n >= at_most:  # stop before going over
            return elapsed / n


def _fit_transfer(sizes, seconds):
    """latency + bytes / bandwidth through the points, least squares, kept physical."""
    A = np.stack([np.ones(len(sizes)), np.asarray(sizes, np.float64)], axis=1)
    (latency, per_byte), *_ = np.linalg.lstsq(A, np.asarray(seconds, np.float64), rcond=None)
    if per_byte <= 0:  # noise at these sizes: the largest copy's rate
        per_byte = seconds[-1] / sizes[-1]
    return Transfer(latency_s=max(0.0, float(latency)), bytes_per_s=float(1.0 / per_byte))


def _copy_of(model, device):
    from .nn import Sequential

    copy = Sequential(*model.layers, loss=model.loss, seed=model.seed,
                      label_smoothing=model.label_smoothing)
    copy.load_state_dict(model.state_dict(), allow_nonfinite=True)
    return copy.to(device)


class _Steps:
    """Whole steps of a model copy on one device, as fit runs them."""

    def __init__(self, copy, device, x, y, mode):
        from .device_data import DeviceDataset
        from .optim import SGD

        self.copy, self.mode, self.x, self.y = copy, mode, x, y
        self.opt = SGD(copy, lr=1e-12, momentum=0.9)  # steps that barely move the weights
        self.data = DeviceDataset((x, y), device) if device != "cpu" and mode == "train" else None

    def step(self, n):
        if self.mode == "infer":
            return self.copy(self.x[:n])
        if self.data is not None:
            idx = np.arange(n, dtype=np.int64)
            return self.copy.train_step_on(self.data, idx, self.opt)
        return self.copy.train_step(self.x[:n], self.y[:n], self.opt)

    def seconds(self, n):
        if self.mode == "train" and self.data is not None:  # pipelined, as fit runs it
            idx = np.arange(n, dtype=np.int64)
            self.copy._start_step_on(self.data, idx, self.opt)
            self.copy._finish_steps()

            def run(k=8):
                for _ in range(k):
                    self.copy._start_step_on(self.data, idx, self.opt)
                self.copy._finish_steps()
            return _timed(run) / 8
        return _timed(lambda: self.step(n))


def _measure_device(model, device, x, y, mode, table):
    B = len(x)
    copy = _copy_of(model, device)
    steps = _Steps(copy, device, x, y, mode)
    smaller = max(1, B // 4)
    table.step_s[device] = {smaller: steps.seconds(smaller)}
    table.step_s[device][B] = steps.seconds(B)  # last: the buffers stay sized for B
    # Per layer, op by op with timing (a GPU runs its kernels without the graph here): as
    # many steps as fit the budget, at least one.
    copy.profile(True)
    start = time.perf_counter()
    profiled = int(min(3, max(1, TIMING_BUDGET_S // max(table.step_s[device][B], 1e-9))))
    for _ in range(profiled):
        steps.step(B)
    step_wall = (time.perf_counter() - start) / profiled
    times = copy.layer_times()
    copy.profile(False)
    table.forward_s[device] = [t["forward_s"] for t in times]
    table.backward_s[device] = [t["backward_s"] if mode == "train" else 0.0 for t in times]
    sizes = np.asarray([float(b) for b in table.param_bytes])
    if mode == "train":
        copy.compute_grads(x, y)
        update = _timed(lambda: copy.store().apply_update(steps.opt._core), budget_s=0.05)
        share = sizes / sizes.sum() if sizes.sum() else sizes
        table.update_s[device] = [float(update * s) for s in share]
    else:
        update = 0.0
        table.update_s[device] = [0.0] * len(times)
    # What an op-by-op step spends beyond its layers' kernels and the update (the host's
    # launches and waits, the loss) is spread evenly over its timed calls and the loss: a
    # mixed placement runs op by op, so a chain's price must carry it (a single device's is
    # its measured whole step, a captured graph on a GPU, and does not).
    forward, backward = table.forward_s[device], table.backward_s[device]
    calls = sum(1 for t in forward + backward if t > 0) + 1
    extra = max(0.0, step_wall - sum(forward) - sum(backward) - update) / calls
    table.forward_s[device] = [t + extra if t > 0 else 0.0 for t in forward]
    table.backward_s[device] = [t + extra if t > 0 else 0.0 for t in backward]
    table.loss_s[device] = float(extra)
    if device == "cpu":
        table.memory_limit[device] = host_available() or 0
    else:
        table.memory_limit[device] = _core.cuda_device(int(device.split(":")[1]))["free_bytes"]


def _measure(model, batch_size, input_shape, devices, mode):
    rng = np.random.default_rng(0)
    x = rng.random((batch_size,) + input_shape, dtype=np.float32)
    classes = model.output_shape((1,) + input_shape)[1]
    y = rng.integers(0, 2 if model.loss == "bce" else classes, batch_size).astype(np.int64)
    shapes = model.layer_shapes((batch_size,) + input_shape)
    param_bytes = [0] * len(model.layers)
    for key, shape in model.parameters():
        param_bytes[int(key.split(".")[0])] += 4 * int(np.prod(shape))
    act_bytes = [4 * int(np.prod(s)) for s in shapes]
    table = CostTable(
        mode=mode, batch_size=batch_size, input_shape=input_shape,
        layers=[f"{i}: {layer!r}" for i, layer in enumerate(model.layers)], devices=devices,
        forward_s={}, backward_s={}, loss_s={}, update_s={},
        input_bytes=4 * batch_size * int(np.prod(input_shape)), act_bytes=act_bytes,
        param_bytes=param_bytes, layer_memory={}, memory_limit={}, transfer={}, step_s={},
        notes=[f"measured {time.strftime('%Y-%m-%d %H:%M:%S')} with {_core.build_info()['threads']}"
               " CPU threads"])
    # Parameters, their gradients and momenta (one optimizer buffer: CostTable
    # .with_optimizer_states counts others), the layer's output and two gradient buffers.
    per_layer = [3 * p + 3 * a for p, a in zip(param_bytes, act_bytes)]
    for device in devices:
        _measure_device(model, device, x, y, mode, table)
        table.layer_memory[device] = list(per_layer)
    for src in devices:
        for dst in devices:
            if src != dst:
                seconds = [_core.time_copy(src, dst, n, 5) for n in COPY_SIZES]
                table.transfer[(src, dst)] = _fit_transfer(COPY_SIZES, seconds)
    if mode == "train" and len(devices) > 1 and batch_size >= len(devices):
        table.dp_overhead_s = _dp_overhead(model, x, y, table)
    return table


def _dp_overhead(model, x, y, table):
    """What a real data-parallel step over all the devices costs beyond the planner's price
    of it: the split the planner would pick for these devices, timed as fit runs it."""
    from .data_parallel import DataParallel
    from .placement import data_parallel_over
    from .stepper import make_stepper

    cost = data_parallel_over(table, list(table.devices))
    if cost.seconds == float("inf"):
        return 0.0
    copy = _copy_of(model, DataParallel({d: max(n, 1) for d, n in cost.sub_batches.items()},
                                        rebalance=False))
    from .optim import SGD

    opt = SGD(copy, lr=1e-12, momentum=0.9)
    stepper = make_stepper(copy, (x, y), "auto")
    idx = np.arange(len(x))
    seconds = _timed(lambda: stepper.start(idx, lambda rows: x[rows], opt))  # steps overlap
    stepper.finish()
    notes = f"a data-parallel step over {list(table.devices)} measured {seconds * 1e3:.3f} ms, " \
            f"priced {cost.seconds * 1e3:.3f} ms"
    table.notes.append(notes)
    return max(0.0, seconds - cost.seconds)


def measure(model, batch_size, input_shape, devices=None, mode="train", cache=True):
    """The CostTable of ``model`` at ``batch_size`` samples of ``input_shape`` (one sample,
    e.g. (1, 28, 28)) on ``devices`` (default: the CPU and every GPU), for a training step
    (mode "train") or a forward pass ("infer"). From the cache when it holds one for this
    setup (``cache=False`` measures anyway)."""
    from .nn import Sequential

    if not isinstance(model, Sequential):
        raise InvalidValueError(f"measure needs a heterocnn Sequential, got {type(model).__name__}")
    if mode not in ("train", "infer"):
        raise InvalidValueError(f"mode must be 'train' or 'infer', got {mode!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    input_shape = tuple(int(d) for d in input_shape)
    model.output_shape((batch_size,) + input_shape)  # validates the chain for this input
    devices = _devices(devices)
    key = cache_key(model, batch_size, input_shape, devices, mode)
    if cache:
        table, note = cost_cache.load(key)
        if table is not None:
            return table
        if note:
            print(f"heterocnn: {note}", file=sys.stderr)
    table = _measure(model, batch_size, input_shape, devices, mode)
    note = cost_cache.store(key, table) if cache else None
    if note:
        print(f"heterocnn: {note}", file=sys.stderr)
    return table
