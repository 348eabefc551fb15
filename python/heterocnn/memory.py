"""How much memory a training step needs, checked before training starts."""

import numpy as np

from . import _core
from .errors import DeviceOutOfMemoryError, DTypeError, InvalidValueError


def estimate_memory(model, batch_size, sample_shape, optimizer_states=1):
    """Bytes a training step on ``batch_size`` samples of ``sample_shape`` (e.g. (1, 28, 28))
    needs on each place the model uses:
    {"cpu": {"parameters", "buffers", "missing"}, "cuda:0": {...}}.

    parameters: value, gradient and the optimizer's ``optimizer_states`` buffers of every
    weight and bias (4 bytes each: SGD has 1 buffer, momentum; Adam and AdamW 2; an optimizer
    says how many in ``len(opt.state_names())``);
    buffers: every activation, the two gradient buffers, the input's staging (two upload slots
    on a GPU) and the workspaces, exactly as the core's step plans them; missing: the part of
    those not allocated yet. Nothing is allocated to find out.

    The sizes are the core's own (checked arithmetic, every array at most 2^40 elements): a
    step whose sizes do not fit raises ShapeError naming the layer and the sizes."""
    from .nn import Sequential

    if not isinstance(model, Sequential):
        raise DTypeError(f"estimate_memory needs a heterocnn Sequential, got "
                         f"{type(model).__name__}")
    if _not_int(batch_size) or batch_size < 1:
        raise InvalidValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if (not isinstance(sample_shape, (tuple, list)) or not 1 <= len(sample_shape) <= 3
            or any(_not_int(d) or d < 1 for d in sample_shape)):
        raise InvalidValueError(f"sample_shape must be 1 to 3 positive integers (e.g. (1, 28, "
                                f"28)), got {sample_shape!r:.200}")
    if _not_int(optimizer_states) or not 0 <= optimizer_states <= 8:
        raise InvalidValueError(f"optimizer_states must be an integer from 0 to 8, got "
                                f"{optimizer_states!r:.100}")
    shape = (int(batch_size),) + tuple(int(d) for d in sample_shape)
    return {place: dict(zip(("parameters", "buffers", "missing"), sizes))
            for place, sizes in model.step_bytes(shape, optimizer_states=int(optimizer_states))
            .items()}


def _not_int(v):
    return isinstance(v, bool) or not isinstance(v, (int, np.integer))


def host_available():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(model, batch_size, sample_shape, optimizer_states=1):
    """Raise DeviceOutOfMemoryError, before anything is allocated, when a step on
    ``batch_size`` samples (with an optimizer of ``optimizer_states`` buffers per parameter)
    does not fit: on the host, the buffers not allocated yet against
    MemAvailable; on a GPU, where anything is missing, the whole arena (parameters and
    buffers, which move together) against the device's free memory."""
    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    for place, e in estimate_memory(model, batch_size, sample_shape, optimizer_states).items():
        if place == "cpu":
            need, available = e["missing"], host_available()
        else:
            need = e["parameters"] + e["buffers"] if e["missing"] else 0
            available = _core.cuda_device(int(place.split(":")[1]))["free_bytes"]
        if available is not None and need > available:
            raise DeviceOutOfMemoryError(
                f"training with batch_size {batch_size} on {place} needs an estimated "
                f"{gib(e['parameters'] + e['buffers'])} (parameters x{2 + optimizer_states} "
                f"{gib(e['parameters'])}, activations, gradients and workspaces "
                f"{gib(e['buffers'])}), {gib(need)} of it not allocated yet, but only "
                f"{gib(available)} is available there")
