"""Checks of training data shared by the training loop and DeviceDataset."""

import numpy as np

from .datasets import Dataset
from .errors import DTypeError, InvalidValueError, ShapeError


def as_arrays(data, what):
    """(X, y) from a tuple or a Dataset, checked: X float32 or uint8 (N, ...), y integers (N,);
    float32 images must be finite. y comes back as int64."""
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


def check_label_range(model, sample_shape, lo, hi, what):
    """Labels in [lo, hi] must be valid for the model's loss and number of outputs."""
    outputs = model.output_shape((1,) + tuple(sample_shape))[1]
    top = 1 if model.loss == "bce" else outputs - 1
    if lo < 0 or hi > top:
        bad = lo if lo < 0 else hi
        raise InvalidValueError(f"{what} labels must lie in [0, {top}] for this model "
                                f"({outputs} outputs, loss {model.loss!r}); found {bad}")
