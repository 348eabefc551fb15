"""The training loop: epochs, shuffled minibatches, progress, evaluation, checkpoints and
resume, the NaN/inf guard, and the memory check before training. Each step is one call into
the core (Sequential._start_step)."""

import os
import time
from collections import deque

import numpy as np
from tqdm import tqdm

from . import _core
from .data_checks import as_arrays, check_label_range
from .device_data import DeviceDataset
from .errors import DeviceOutOfMemoryError, HeteroCNNError, InvalidValueError
from .nn import Conv2d, Flatten, Linear, MaxPool2d, Sequential


def _batch(X, idx, out):
    """X[idx] as float32 in ``out`` (uint8 images scaled to [0, 1])."""
    if X.dtype == np.uint8:
        np.multiply(X[idx], np.float32(1 / 255), out=out[: len(idx)], casting="unsafe")
    else:
        np.take(X, idx, axis=0, out=out[: len(idx)])
    return out[: len(idx)]


class _EpochStats:
    """Sums over an epoch of the loss (weighted by batch size) and of the right answers, fed
    with the results of finished steps, which come back in the order the steps started."""

    def __init__(self, guard):
        self.loss, self.correct, self.seen = 0.0, 0, 0
        self._guard = guard
        self._started = deque()  # (batch index, size) of steps started and not reported yet

    def started(self, batch, batch_size):
        self._started.append((batch, batch_size))

    def finished(self, results):
        for loss, right in results:
            batch, n = self._started.popleft()
            if self._guard.accept(loss, batch):
                self.loss += loss * n
                self.correct += right
                self.seen += n


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _device_data(model, X, y, device_data):
    """A DeviceDataset of (X, y) on the model's GPU when asked for ("auto": when the whole
    model is on one GPU and the data takes at most half its free memory), else None."""
    on_one_gpu = len(set(model.placement)) == 1 and model.placement[0].startswith("cuda")
    if device_data is False or device_data is None:
        return None
    if device_data not in (True, "auto"):
        raise InvalidValueError(f"device_data must be True, False or 'auto', got {device_data!r}")
    if not on_one_gpu:
        if device_data is True:
            raise InvalidValueError("device_data=True needs the whole model on one GPU, but it "
                                    f"is placed on {sorted(set(model.placement))}")
        return None
    from . import cuda_device

    index = int(model.placement[0].split(":")[1])
    if device_data == "auto" and X.nbytes + y.nbytes > cuda_device(index)["free_bytes"] // 2:
        return None
    return DeviceDataset((X, y), model.placement[0])


# -- memory ---------------------------------------------------------------------------------

def _layer_shapes(model, sample_shape):
    """Per-sample output shape of every layer (the core checks the chain first)."""
    model.output_shape((1,) + tuple(sample_shape))
    s, shapes = tuple(sample_shape), []
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            k, st, p = layer.kernel_size, layer.stride, layer.padding
            s = (layer.out_channels,) + tuple((d + 2 * p - k) // st + 1 for d in s[1:])
        elif isinstance(layer, MaxPool2d):
            s = (s[0],) + tuple((d - layer.kernel_size) // layer.stride + 1 for d in s[1:])
        elif isinstance(layer, Flatten):
            s = (int(np.prod(s)),)
        elif isinstance(layer, Linear):
            s = (layer.out_features,)
        shapes.append(s)
    return shapes


def estimate_memory(model, batch_size, sample_shape):
    """Bytes a training step on ``batch_size`` samples of ``sample_shape`` (e.g. (1, 28, 28))
    needs on each device the model uses: {"cpu": {"parameters", "activations", "workspace"},
    "cuda:0": {...}}. In float32 (4 bytes), with N = batch_size and per-sample sizes:

    - parameters: 3 x (weights and biases): value, gradient, momentum;
    - activations: N x (every layer's output but Flatten's, which is a view) + two gradient
      buffers of N x the largest layer input or output; plus the input: fit's batch buffer on
      the host, or two upload slots on a GPU, and a copy where data crosses between devices;
    - workspace: on the CPU the largest Conv2d im2col buffer,
      threads x (C*K*K*Ho*Wo + M*C*K*K + M); on a GPU (implicit GEMM) not counted.

    This follows the core's Net::prepare; the GPU figure is a lower bound."""
    shapes = _layer_shapes(model, sample_shape)
    threads = _core.build_info()["threads"]
    n, size = int(batch_size), lambda s: int(np.prod(s))
    est, grad_max = {}, {}

    def at(place):
        return est.setdefault(place, {"parameters": 0, "activations": 0, "workspace": 0})

    first = model.placement[0]
    at(first)["activations"] += (1 if first == "cpu" else 2) * n * size(sample_shape)
    in_shape, prev = tuple(sample_shape), first
    for layer, out, place in zip(model.layers, shapes, model.placement):
        e = at(place)
        e["parameters"] += 3 * sum(size(s) for s in _param_shapes(layer))
        if not isinstance(layer, Flatten):
            e["activations"] += n * size(out) + (n * size(in_shape) if place != prev else 0)
            prev = place
        grad_max[place] = max(grad_max.get(place, 0), n * max(size(in_shape), size(out)))
        if isinstance(layer, Conv2d) and place == "cpu":
            ckk = layer.in_channels * layer.kernel_size ** 2
            e["workspace"] = max(e["workspace"], threads * (
                ckk * size(out[1:]) + layer.out_channels * (ckk + 1)))
        in_shape = out
    for place, e in est.items():
        e["activations"] += 2 * grad_max.get(place, 0)
        for k in e:
            e[k] *= 4
    return est


def _param_shapes(layer):
    if isinstance(layer, Linear):
        return [(layer.out_features, layer.in_features), (layer.out_features,)]
    if isinstance(layer, Conv2d):
        k = layer.kernel_size
        return [(layer.out_channels, layer.in_channels, k, k), (layer.out_channels,)]
    return []


def _host_available():
    """MemAvailable of /proc/meminfo in bytes, or None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_memory(model, batch_size, sample_shape):
    """Raise DeviceOutOfMemoryError, before anything is allocated, when estimate_memory says
    a step does not fit: on the host, what is not allocated yet (activations, workspace; the
    parameters exist already) against MemAvailable; on a GPU, the estimate less the model's
    arena there against the device's free memory."""
    from . import cuda_device

    gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
    for place, e in estimate_memory(model, batch_size, sample_shape).items():
        if place == "cpu":
            need, available = e["activations"] + e["workspace"], _host_available()
        else:
            index = int(place.split(":")[1])
            need = sum(e.values()) - model._net.arena_bytes(index)
            available = cuda_device(index)["free_bytes"]
        if available is not None and need > available:
            raise DeviceOutOfMemoryError(
                f"training with batch_size {batch_size} on {place} needs an estimated "
                f"{gib(sum(e.values()))} (parameters x3 {gib(e['parameters'])}, activations "
                f"and their gradients {gib(e['activations'])}, workspace "
                f"{gib(e['workspace'])}), {gib(need)} of it not allocated yet, but only "
                f"{gib(available)} is available there")


def fit(model, opt, train, epochs, batch_size, val=None, seed=0, progress=True,
        on_epoch_end=None, device_data="auto", checkpoint=None, resume=None, on_nan="raise"):
    """Train ``model`` with ``opt`` until epoch ``epochs`` in shuffled minibatches of
    ``batch_size`` (the last one may be smaller) from ``train``; the batch order comes from
    ``np.random.default_rng(seed)``.

    On a GPU the training set is copied to the device once (``device_data``: "auto" when it
    takes at most half the free memory, True to insist, False to send each batch from the
    host) and each step gathers its batch there. Before anything is allocated the memory the
    step needs is estimated (see estimate_memory) and a model that does not fit is rejected.

    ``checkpoint=PATH`` writes hc.save(model, PATH, opt, epoch, step, rng, history) after every
    epoch (after ``on_epoch_end``), atomically. ``resume=meta`` (the meta hc.load returns)
    continues such a run: from epoch ``meta["epoch"]`` with its RNG state and history, so that
    on the CPU with a fixed thread count the result is bit-identical to an uninterrupted run.

    ``on_nan``: "raise" stops at a NaN or inf in the loss, a gradient or the weights with a
    NonFiniteError naming the step and the first layer where it appeared, the model back as it
    was at the start of that epoch and the checkpoint on disk the last good one; "skip" undoes
    such a step and counts it (a copy of the weights and momenta each step, and no overlap of
    steps on a GPU: slower).

    Returns the history: {"loss", "accuracy", "images_per_s", "val_accuracy", "skipped_steps"}:
    one entry per epoch (training loss and accuracy are means over the epoch's samples).
    ``on_epoch_end(epoch, history)``, if given, runs after each epoch (e.g. a schedule).
    """
    X, y = as_arrays(train, "train")
    epochs = _positive("epochs", epochs)
    batch_size = _positive("batch_size", batch_size)
    if batch_size > len(X):
        raise InvalidValueError(f"batch_size {batch_size} is larger than the {len(X)} "
                                "training samples")
    check_label_range(model, X.shape[1:], int(y.min()), int(y.max()), "train")
    if val is not None:
        val = as_arrays(val, "val")
        check_label_range(model, val[0].shape[1:], int(val[1].min()), int(val[1].max()), "val")
    check_memory(model, batch_size, X.shape[1:])
    rng = np.random.default_rng(seed)
    history = {"loss": [], "accuracy": [], "images_per_s": [], "val_accuracy": [],
               "skipped_steps": []}
    first_epoch, step = 0, 0
    if resume is not None:
        first_epoch, step = _resume(resume, rng, history)
    guard = _NanGuard(model, opt, on_nan)
    on_device = _device_data(model, X, y, device_data)
    buf = None if on_device else np.empty((batch_size,) + X.shape[1:], dtype=np.float32)
    n_batches = -(-len(X) // batch_size)

    def batch_at(b):
        """(x, y) of batch b of the current epoch, in fresh arrays (for the NaN guard)."""
        idx = order[b * batch_size:(b + 1) * batch_size]
        return _batch(X, idx, np.empty((len(idx),) + X.shape[1:], np.float32)), y[idx]

    for epoch in range(first_epoch, epochs):
        order = rng.permutation(len(X))
        guard.start_epoch(step, batch_at)
        stats = _EpochStats(guard)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   unit="batch", leave=True)
        start = time.perf_counter()
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            stats.started(b, len(idx))
            # On a GPU this reports the previous step while this one runs.
            if on_device is not None:
                stats.finished(model._start_step_on(on_device, idx, opt))
            else:
                stats.finished(model._start_step(_batch(X, idx, buf), y[idx], opt))
            if b == n_batches - 1 or guard.synchronous:
                stats.finished(model._finish_steps())
            step += 1
            bar.update(1)
            if progress and stats.seen and (b % 20 == 0 or b == n_batches - 1):
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{stats.loss / stats.seen:.4f}",
                                acc=f"{stats.correct / stats.seen:.4f}",
                                img_s=f"{stats.seen / max(elapsed, 1e-9):,.0f}", refresh=False)
        elapsed = time.perf_counter() - start
        bar.close()
        guard.end_epoch(n_batches)
        history["loss"].append(stats.loss / stats.seen if stats.seen else None)
        history["accuracy"].append(stats.correct / stats.seen if stats.seen else None)
        history["images_per_s"].append(stats.seen / elapsed)
        history["val_accuracy"].append(None if val is None else evaluate(model, val))
        history["skipped_steps"].append(guard.take_skips())
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
        if checkpoint is not None:
            from .checkpoint import save

            save(model, checkpoint, opt, epoch=epoch + 1, step=step, seed=seed,
                 rng=rng.bit_generator.state, history=history)
    return history


def _resume(meta, rng, history):
    """(first epoch, step) from a checkpoint's meta; sets ``rng`` and fills ``history``."""
    try:
        first_epoch, step = int(meta["epoch"]), int(meta["step"])
        rng.bit_generator.state = meta["rng"]
        for key in history:
            history[key].extend(meta["history"][key])
    except (KeyError, TypeError, ValueError) as e:
        raise InvalidValueError(f"resume needs the meta of a checkpoint written by "
                                f"fit(checkpoint=...): {e!r}") from None
    return first_epoch, step


class NonFiniteError(HeteroCNNError, FloatingPointError):
    """Training met a NaN or inf. ``step`` (1-based, counted over the whole run) and ``layer``
    (index, or None when it was the loss or the step could not be replayed) say where."""

    def __init__(self, message, step, layer):
        super().__init__(message)
        self.step, self.layer = step, layer


def _state(model):
    """[(value, velocity)] host copies of every parameter, in state_dict order."""
    return [(model._net.get(i, j), model._net.get(i, j, "velocity")) for i, j in model._index()]


def _set_state(model, state):
    for (i, j), (value, velocity) in zip(model._index(), state):
        model._net.set(i, j, value)
        model._net.set(i, j, velocity, "velocity")


def _finite(state):
    return all(np.isfinite(v).all() and np.isfinite(m).all() for v, m in state)


def _layer(model, key):
    i = int(key.split(".")[0])
    return i, f"layer {i} ({model.layers[i]!r})"


def _bad_weights(model, state):
    """(layer, description) of the first parameter in ``state`` holding NaN/inf, or None."""
    for key, (value, velocity) in zip(model._keys, state):
        if not (np.isfinite(value).all() and np.isfinite(velocity).all()):
            i, name = _layer(model, key)
            return i, f"{key} of {name} holds NaN/inf"
    return None


def _locate(model, before, x, y):
    """(layer index or None, description) of where a step from state ``before`` on (x, y)
    first meets a NaN or inf: the weights in forward order, then each layer's output in
    forward order, the loss, the gradients in the order backward makes them (last layer
    first), else the update. ``model`` is a CPU copy whose state this changes."""
    _set_state(model, before)
    bad = _bad_weights(model, before)
    if bad:
        return bad[0], bad[1] + " before the step"
    for i in range(len(model.layers)):
        prefix = Sequential(*model.layers[:i + 1], loss=model.loss)
        _set_state(prefix, before[:len(prefix._keys)])
        if not np.isfinite(prefix(x)).all():
            return i, f"the output of layer {i} ({model.layers[i]!r}) is NaN/inf"
    loss, grads = model.loss_and_grads(x, y)
    if not np.isfinite(loss):
        return None, f"the loss is {loss}"
    for key in reversed(grads):
        if not np.isfinite(grads[key]).all():
            i, name = _layer(model, key)
            return i, f"the gradient of {key} ({name}) is NaN/inf"
    return None, "the SGD update overflowed"


class _NanGuard:
    """Watches the steps of fit for NaN and inf.

    "raise": each step's loss is checked (free) and the weights once per epoch (one copy);
    on a failure the model goes back to the state at the epoch's start (kept then), the epoch
    is replayed from it on a CPU copy to find the first bad step and where it went bad, and
    NonFiniteError is raised.
    "skip": steps run one at a time; after each one the weights and momenta are copied out
    and checked, and a step with a non-finite loss or state is undone from the last good
    copy and counted."""

    def __init__(self, model, opt, mode):
        if mode not in ("raise", "skip"):
            raise InvalidValueError(f"on_nan must be 'raise' or 'skip', got {mode!r}")
        self.model, self.opt, self.mode = model, opt, mode
        self.synchronous = mode == "skip"
        self._skips = 0
        self._good = _state(model)
        bad = _bad_weights(model, self._good)
        if bad:
            raise NonFiniteError(f"before training: {bad[1]}", 0, bad[0])

    def start_epoch(self, step, batch_at):
        """``step``: steps done before this epoch; ``batch_at(b)``: its batch b as (x, y)."""
        self._step0, self._batch_at = step, batch_at
        if self.mode == "raise":
            self._good = _state(self.model)

    def accept(self, loss, batch):
        """Whether the step on ``batch`` of this epoch counts (False: it was undone)."""
        if self.mode == "raise":
            if not np.isfinite(loss):
                self._fail(batch)
            return True
        state = _state(self.model) if np.isfinite(loss) else None
        if state is not None and _finite(state):
            self._good = state
            return True
        _set_state(self.model, self._good)
        self._skips += 1
        return False

    def end_epoch(self, n_batches):
        if self.mode == "raise" and not _finite(_state(self.model)):
            self._fail(n_batches - 1)

    def take_skips(self):
        n, self._skips = self._skips, 0
        return n

    def _cpu_copy(self):
        m = self.model
        return Sequential(*m.layers, loss=m.loss, seed=m.seed)

    def _fail(self, last):
        """Puts the model back to the epoch's first state, replays batches 0..last from it on
        a CPU copy and raises NonFiniteError."""
        from .optim import SGD

        self.model._finish_steps()
        _set_state(self.model, self._good)

        copy = self._cpu_copy()
        opt = SGD(copy, lr=self.opt.lr, momentum=self.opt.momentum,
                  weight_decay=self.opt.weight_decay)
        _set_state(copy, self._good)
        for b in range(last + 1):
            x, y = self._batch_at(b)
            before = _state(copy)
            loss = copy.train_step(x, y, opt)
            if not np.isfinite(loss) or not _finite(_state(copy)):
                layer, where = _locate(copy, before, x, y)
                step = self._step0 + b + 1
                raise NonFiniteError(f"NaN/inf at step {step} (batch {b + 1} of the epoch): "
                                     f"{where}", step, layer)
        step = self._step0 + last + 1
        raise NonFiniteError(f"NaN/inf at step {step} (batch {last + 1} of the epoch); the "
                             "step did not go wrong when replayed on the CPU", step, None)


def predict(model, X, batch_size=1000):
    """Logits for every sample of X (float32 or uint8, scaled), in batches."""
    out = []
    buf = np.empty((min(batch_size, len(X)),) + X.shape[1:], dtype=np.float32)
    for start in range(0, len(X), batch_size):
        idx = np.arange(start, min(start + batch_size, len(X)))
        out.append(model(_batch(X, idx, buf)))
    return np.concatenate(out)


def evaluate(model, data, batch_size=1000):
    """Accuracy of ``model`` on ``data`` ((X, y) or a Dataset): argmax of the logits for
    cross-entropy, logit > 0 for bce."""
    X, y = as_arrays(data, "data")
    check_label_range(model, X.shape[1:], int(y.min()), int(y.max()), "data")
    logits = predict(model, X, _positive("batch_size", batch_size))
    pred = (logits[:, 0] > 0).astype(np.int64) if model.loss == "bce" else logits.argmax(axis=1)
    return float((pred == y).mean())
