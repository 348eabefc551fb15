"""The training loop: epochs, shuffled minibatches, progress, evaluation. Each step is one
call into the core (Sequential._step)."""

import time

import numpy as np
from tqdm import tqdm

from .datasets import Dataset
from .errors import DTypeError, InvalidValueError, ShapeError


def _as_arrays(data, what):
    """(X, y) from a tuple or a Dataset, checked: X float32 or uint8 (N, ...), y integers (N,)."""
    if isinstance(data, Dataset):
        X, y = data.as_tuple()
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        X, y = data
    else:
        raise DTypeError(f"{what} must be an (X, y) tuple or a heterocnn Dataset, "
                         f"got {type(data).__name__}")
    if not isinstance(X, np.ndarray) or X.dtype not in (np.float32, np.uint8):
        raise DTypeError(f"{what} images must be a float32 or uint8 numpy array, got "
                         f"{getattr(X, 'dtype', type(X).__name__)}")
    y = np.asarray(y)
    if not np.issubdtype(y.dtype, np.integer):
        raise DTypeError(f"{what} labels must be integers, got {y.dtype}")
    if X.ndim < 2 or y.shape != (X.shape[0],):
        raise ShapeError(f"{what}: images {X.shape} and labels {y.shape} do not match "
                         "(need X (N, ...) and y (N,))")
    if X.shape[0] == 0:
        raise InvalidValueError(f"{what} holds no samples")
    if X.dtype == np.float32 and not np.isfinite(X).all():
        raise InvalidValueError(f"{what} images hold NaN or inf")
    return X, y.astype(np.int64, copy=False)


def _check_labels(model, X, y, what):
    """Every label valid for the model's loss and number of outputs, before training starts."""
    outputs = model.output_shape((1,) + X.shape[1:])[1]
    lo, hi = int(y.min()), int(y.max())
    top = 1 if model.loss == "bce" else outputs - 1
    if lo < 0 or hi > top:
        bad = lo if lo < 0 else hi
        raise InvalidValueError(f"{what} labels must lie in [0, {top}] for this model "
                                f"({outputs} outputs, loss {model.loss!r}); found {bad}")


def _batch(X, idx, out):
    """X[idx] as float32 in ``out`` (uint8 images scaled to [0, 1])."""
    if X.dtype == np.uint8:
        np.multiply(X[idx], np.float32(1 / 255), out=out[: len(idx)], casting="unsafe")
    else:
        np.take(X, idx, axis=0, out=out[: len(idx)])
    return out[: len(idx)]


def _positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InvalidValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def fit(model, opt, train, epochs, batch_size, val=None, seed=0, progress=True,
        on_epoch_end=None):
    """Train ``model`` with ``opt`` for ``epochs`` passes over ``train`` in shuffled
    minibatches of ``batch_size`` (the last one may be smaller).

    Returns the history: {"loss", "accuracy", "images_per_s", "val_accuracy"}: one entry per
    epoch (training loss and accuracy are means over the epoch's samples).
    ``on_epoch_end(epoch, history)``, if given, runs after each epoch (e.g. a schedule).
    """
    X, y = _as_arrays(train, "train")
    epochs = _positive("epochs", epochs)
    batch_size = _positive("batch_size", batch_size)
    if batch_size > len(X):
        raise InvalidValueError(f"batch_size {batch_size} is larger than the {len(X)} "
                                "training samples")
    _check_labels(model, X, y, "train")
    if val is not None:
        val = _as_arrays(val, "val")
        _check_labels(model, *val, "val")
    rng = np.random.default_rng(seed)
    buf = np.empty((batch_size,) + X.shape[1:], dtype=np.float32)
    history = {"loss": [], "accuracy": [], "images_per_s": [], "val_accuracy": []}
    n_batches = -(-len(X) // batch_size)
    for epoch in range(epochs):
        order = rng.permutation(len(X))
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", disable=not progress,
                   unit="batch", leave=True)
        start = time.perf_counter()
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            loss, right = model._step(_batch(X, idx, buf), y[idx], opt)
            total_loss += loss * len(idx)
            correct += right
            seen += len(idx)
            bar.update(1)
            if progress and (b % 20 == 0 or b == n_batches - 1):
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}",
                                img_s=f"{seen / max(elapsed, 1e-9):,.0f}", refresh=False)
        elapsed = time.perf_counter() - start
        bar.close()
        history["loss"].append(total_loss / seen)
        history["accuracy"].append(correct / seen)
        history["images_per_s"].append(seen / elapsed)
        history["val_accuracy"].append(None if val is None else evaluate(model, val))
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history


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
    X, y = _as_arrays(data, "data")
    _check_labels(model, X, y, "data")
    logits = predict(model, X, _positive("batch_size", batch_size))
    pred = (logits[:, 0] > 0).astype(np.int64) if model.loss == "bce" else logits.argmax(axis=1)
    return float((pred == y).mean())
