"""The training loop: epochs, shuffled minibatches, progress, evaluation, checkpoints and
resume, the NaN/inf guard, and the memory check before training. Each step is one call into
the core (Sequential._start_step)."""

import time
from collections import deque

import numpy as np
from tqdm import tqdm

from . import _core
from .atomic import check_writable
from .data_checks import as_arrays, check_label_range
from .errors import DTypeError, InvalidValueError, ShapeError
from .memory import check_memory
from .nan_guard import NanGuard
from .outputs import predicted_labels, probabilities
from .preprocess import UINT8_SCALE, data_meta


def _batch(X, idx, out):
    """X[idx] as float32 in ``out`` (uint8 images scaled to [0, 1] by UINT8_SCALE), gathered by
    the core on the OpenMP team; by numpy where X is not C-contiguous (the same values)."""
    x = out[: len(idx)]
    if X.flags.c_contiguous and len(X):
        return _core.gather_batch(X, np.ascontiguousarray(idx, dtype=np.int64), x,
                                  UINT8_SCALE)
    if X.dtype == np.uint8:
        np.multiply(X[idx], UINT8_SCALE, out=x, casting="unsafe")
    else:
        np.take(X, idx, axis=0, out=x)
    return x


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


def fit(model, opt, train, epochs, batch_size, val=None, seed=0, progress=True,
        on_epoch_end=None, device_data="auto", checkpoint=None, resume=None, on_nan="raise",
        schedule=None, transform=None, early_stopping=None, comm=None):
    """Train ``model`` with ``opt`` until epoch ``epochs`` in shuffled minibatches of
    ``batch_size`` (the last one may be smaller) from ``train``; the batch order comes from
    ``np.random.default_rng(seed)``. Each epoch trains in training mode (model.train()) and
    evaluates ``val`` in evaluation mode; the model is left in training mode.

    On a GPU the training set is copied to the device once (``device_data``: "auto" when it
    takes at most half the free memory, True to insist, False to send each batch from the
    host) and each step gathers its batch there. Before anything is allocated the memory the
    step needs is estimated (see hc.estimate_memory) and a model that does not fit is rejected.

    ``checkpoint=PATH`` writes hc.save(model, PATH, opt, epoch, step, rng, history) after every
    epoch (after ``on_epoch_end``), atomically. ``resume=meta`` (the meta hc.load returns)
    continues such a run: from epoch ``meta["epoch"]`` with its RNG state and history, so that
    on the CPU with a fixed thread count the result is bit-identical to an uninterrupted run.

    ``on_nan``: "raise" stops at a NaN or inf in the loss, a gradient or the weights with a
    NonFiniteError naming the step and the first layer where it appeared, the model back as it
    was at the start of that epoch and the checkpoint on disk the last good one; "skip" undoes
    such a step and counts it (a copy of the weights and momenta each step, and no overlap of
    steps on a GPU: slower).

    ``comm`` (an mpi4py communicator, hc.distributed.world(), or an hc.distributed.Group
    with the ranks' shares): a data-parallel run over its ranks, every rank calling fit alike; ``batch_size`` is then the global batch, split over
    the ranks, and the trained weights do not depend on the number of ranks beyond rounding
    (see heterocnn.distributed). Rank 0's weights, optimizer state and ``resume`` are used,
    the ranks must agree on the rest (RankMismatchError names one that does not), rank 0
    alone shows progress and writes checkpoints. An error on one rank stops every rank
    (MPI_Abort) rather than leaving the others waiting.

    Returns the history: {"loss", "accuracy", "images_per_s", "val_loss", "val_accuracy",
    "skipped_steps"}: one entry per epoch (training loss and accuracy are means over the
    epoch's samples; val_loss and val_accuracy over ``val`` after the epoch, None without it).
    ``on_epoch_end(epoch, history)``, if given, runs after each epoch (e.g. a schedule); when
    it returns True training stops after that epoch. ``early_stopping=hc.EarlyStopping(...)``
    stops when its figure stops improving and, with restore_best, leaves the model with the
    weights of its best epoch (the checkpoint, if any, is then written again with them).
    The checkpoint's meta also records the data: the class names, input shape, channels,
    normalisation and image preprocessing (hc.preprocess.data_meta), for hc.load and
    heterocnn-predict.

    ``schedule(step) -> lr``, if given, sets ``opt.lr`` before every step (``step`` counts
    steps from the start of training, resumed runs included; see hc.WarmupCosine).
    ``transform(x, rng) -> x``, if given, changes each float32 host batch (N, C, H, W) before
    the step (augmentation, see hc.Augment); ``rng`` is ``np.random.default_rng((seed, epoch,
    batch))``, so a batch's transform is reproducible (resume, NaN guard). A transform needs
    host batches: on a GPU the training set then stays on the host (device_data "auto" means
    False; True is an error) and every batch is gathered, transformed and copied to the device.
    """
    args = (model, opt, train, epochs, batch_size, val, seed, progress, on_epoch_end,
            device_data, checkpoint, resume, on_nan, schedule, transform, early_stopping, comm)
    if comm is None:
        return _fit(*args)
    from .distributed import as_group, collective

    return collective(as_group(comm).comm, _fit, *args)


def _fit(model, opt, train, epochs, batch_size, val, seed, progress, on_epoch_end,
         device_data, checkpoint, resume, on_nan, schedule, transform, early_stopping, comm):
    X, y = as_arrays(train, "train")
    epochs = _positive("epochs", epochs)
    batch_size = _positive("batch_size", batch_size)
    if seed is not None:
        seed = _seed(seed)
    if checkpoint is not None:  # a path that cannot be written fails now, not after an epoch
        check_writable(checkpoint, "checkpoint")
    if batch_size > len(X):
        raise InvalidValueError(f"batch_size {batch_size} is larger than the {len(X)} "
                                "training samples")
    check_label_range(model, X.shape[1:], int(y.min()), int(y.max()), "train")
    if val is not None:
        val = as_arrays(val, "val")
        check_label_range(model, val[0].shape[1:], int(val[1].min()), int(val[1].max()), "val")
    model._check_optimizer(opt)
    check_memory(model, batch_size, X.shape[1:], len(opt.state_names()))
    if early_stopping is not None:
        early_stopping.check(val is not None)
        early_stopping.reset()
    card = data_meta(train, X)
    lead = True  # this process prints and writes checkpoints (rank 0 of a distributed run)
    if comm is not None:
        from .distributed import agree, as_group, fingerprint, share_state

        group = as_group(comm)
        comm = group.comm

        if seed is None:
            raise InvalidValueError("a distributed fit needs a seed: every rank must draw the "
                                    "same batch order")
        agree(comm, **fingerprint(model), samples=len(X), sample_shape=list(X.shape[1:]),
              seed=seed, batch_size=batch_size, epochs=epochs)
        resume = share_state(comm, model, opt, resume)
        lead = comm.Get_rank() == 0
        progress = progress and lead
    rng = np.random.default_rng(seed)
    history = {"loss": [], "accuracy": [], "images_per_s": [], "val_loss": [],
               "val_accuracy": [], "skipped_steps": []}
    first_epoch, step = 0, 0
    if resume is not None:
        first_epoch, step = _resume(resume, rng, history, epochs)
    guard = NanGuard(model, opt, on_nan)
    if comm is not None:
        from .distributed import DistributedSteps

        stepper = DistributedSteps(model, (X, y), group, batch_size)
    else:
        stepper = model.stepper((X, y), device_data, host_batches=transform is not None,
                                batch_size=batch_size)
    buf = np.empty((batch_size,) + X.shape[1:], dtype=np.float32)
    n_batches = -(-len(X) // batch_size)

    def host_batch(b, idx, out):
        x = _batch(X, idx, out)
        if transform is None:
            return x
        return transform(x, np.random.default_rng(None if seed is None else (seed, epoch, b)))

    def batch_at(b):
        """(x, y) of batch b of the current epoch, in fresh arrays (for the NaN guard)."""
        idx = order[b * batch_size:(b + 1) * batch_size]
        return host_batch(b, idx, np.empty((len(idx),) + X.shape[1:], np.float32)), y[idx]

    for epoch in range(first_epoch, epochs):
        model.train()  # evaluation (val, early stopping) puts back the mode it found
        order = rng.permutation(len(X))
        guard.start_epoch(step, batch_at)
        stats = _EpochStats(guard)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   unit="batch", leave=True)
        start = time.perf_counter()
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            stats.started(b, len(idx))
            if schedule is not None:
                opt.lr = schedule(step)
            # On a GPU this reports the previous step while this one runs.
            stats.finished(stepper.start(idx, lambda rows: host_batch(b, rows, buf), opt))
            if b == n_batches - 1 or guard.synchronous:
                stats.finished(stepper.finish())
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
        if val is None:
            history["val_loss"].append(None)
            history["val_accuracy"].append(None)
        else:
            from .metrics import loss_and_accuracy

            scores = stepper.evaluate(val) if comm is not None else loss_and_accuracy(model, val)
            for key, value in zip(("val_loss", "val_accuracy"), scores):
                history[key].append(value)
        history["skipped_steps"].append(guard.take_skips())
        stop = bool(on_epoch_end(epoch, history)) if on_epoch_end is not None else False
        if early_stopping is not None:
            stop = early_stopping.update(epoch, history, model) or stop
        if checkpoint is not None:
            from .checkpoint import save

            if lead:
                save(model, checkpoint, opt, epoch=epoch + 1, step=step, seed=seed,
                     rng=rng.bit_generator.state, history=history, **card)
            if comm is not None:
                comm.Barrier()  # the checkpoint is whole before any rank goes on
        if stop:
            break
    last = len(history["loss"]) - 1
    if early_stopping is not None and early_stopping.finish(model, last) and checkpoint \
            and lead:
        from .checkpoint import save

        save(model, checkpoint, opt, epoch=last + 1, step=step, seed=seed,
             rng=rng.bit_generator.state, history=history, best_epoch=early_stopping.best_epoch,
             **card)
    return history


def _seed(seed):
    """fit's seed: None or an int in [0, 2^64 - 1]."""
    if (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer))
            or not 0 <= seed < 2**64):
        raise InvalidValueError(f"seed must be None or an integer from 0 to 2^64 - 1, "
                                f"got {seed!r}")
    return int(seed)


def _resume(meta, rng, history, epochs):
    """(first epoch, step) from a checkpoint's meta, checked against ``epochs``; sets ``rng``
    and fills ``history`` (one entry per epoch done, each list of numbers or None)."""
    def bad(why):
        return InvalidValueError(f"resume needs the meta of a checkpoint written by "
                                 f"fit(checkpoint=...): {why}")

    if not isinstance(meta, dict):
        raise bad(f"got {type(meta).__name__}")
    for key in ("epoch", "step", "rng", "history"):
        if key not in meta:
            raise bad(f"no {key!r}")
    first_epoch, step = meta["epoch"], meta["step"]
    for name, v in (("epoch", first_epoch), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise bad(f"{name} must be an integer >= 0, got {v!r:.100}")
    if first_epoch > epochs:
        raise bad(f"its epoch {first_epoch} is beyond epochs={epochs} (epochs counts the "
                  "whole run, resumed epochs included)")
    saved = meta["history"]
    if not isinstance(saved, dict):
        raise bad(f"history is {type(saved).__name__}, not an object")
    for key in history:  # val_loss: not in checkpoints older than it
        values = saved.get(key, [None] * first_epoch if key == "val_loss" else None)
        if (not isinstance(values, list) or len(values) != first_epoch
                or not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))
                           for v in values)):
            raise bad(f"history[{key!r}] must be a list of {first_epoch} numbers, got "
                      f"{values!r:.100}")
    try:
        rng.bit_generator.state = meta["rng"]
    except (KeyError, TypeError, ValueError, OverflowError) as e:
        raise bad(f"bad rng state: {e!r:.200}") from None
    for key in history:
        history[key].extend(saved.get(key, [None] * first_epoch))
    return int(first_epoch), int(step)


def predict(model, X, batch_size=1000, probs=False, device="auto"):
    """Logits for every sample of X (float32, or uint8 scaled by 1/255 as in fit), in
    batches; with ``probs=True`` probabilities instead: softmax over the classes for
    cross-entropy (N, K), the sigmoid P(label 1) for bce (N, 1).

    ``device``: "auto" runs the batches where the planner says a forward pass of this batch
    size is fastest (hc.plan(..., mode="infer"), measured once per machine and cached; on a
    machine with one device, the model as it is); None runs the model as it is placed; a
    device or per-layer placement runs a copy of the model there. A copy gets the model's
    current weights each call; the model itself is never moved."""
    from .inference import inference_model

    if not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.uint8):
        raise DTypeError(f"predict needs a float32 or uint8 numpy array, got "
                         f"{getattr(X, 'dtype', type(X).__name__)}")
    if X.ndim < 2 or X.shape[0] == 0:
        raise ShapeError(f"predict needs samples (N, ...) with N >= 1, got shape {X.shape}")
    batch_size = _positive("batch_size", batch_size)

    out = []
    n = min(batch_size, len(X))
    buf = np.empty((n,) + X.shape[1:], dtype=np.float32)
    with model.evaluating():  # BatchNorm by its running estimates, no Dropout
        runner = inference_model(model, n, X.shape[1:], device)
        for start in range(0, len(X), batch_size):
            idx = np.arange(start, min(start + batch_size, len(X)))
            out.append(runner(_batch(X, idx, buf)))
    logits = np.concatenate(out)
    return probabilities(logits, model.loss) if probs else logits


def evaluate(model, data, batch_size=1000, device="auto"):
    """Accuracy of ``model`` on ``data`` ((X, y) or a Dataset): argmax of the logits for
    cross-entropy, logit > 0 for bce. ``device`` as for predict."""
    X, y = as_arrays(data, "data")
    check_label_range(model, X.shape[1:], int(y.min()), int(y.max()), "data")
    logits = predict(model, X, _positive("batch_size", batch_size), device=device)
    return float((predicted_labels(logits, model.loss) == y).mean())
