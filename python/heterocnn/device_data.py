"""A data set held on a GPU, so that each training step gathers its batch there: only the
batch's indices cross from the host."""

import numpy as np

from . import _core
from .data_checks import as_arrays
from .errors import InvalidValueError
from .nn import parse_device


class DeviceDataset:
    """``data`` ((X, y) or a Dataset; X uint8 or float32 (N, C, H, W), y integer labels)
    copied once to ``device`` ('cuda' or 'cuda:N'). uint8 images stay uint8 there (a quarter
    of the memory) and are scaled to [0, 1] as batches are gathered, exactly as fit scales
    them on the host. Use with ``model.train_step_on(data, idx, opt)`` or ``hc.fit``."""

    def __init__(self, data, device="cuda"):
        X, y = as_arrays(data, "data")
        kind, index = parse_device(device)
        if kind != 1:
            raise InvalidValueError(f"a DeviceDataset lives on a CUDA device, not {device!r}")
        X = np.ascontiguousarray(X)
        y = np.ascontiguousarray(y, dtype=np.int64)
        self._core = _core.CoreDeviceDataset(X, y, index)
        self.device = f"cuda:{index}"
        self.sample_shape = X.shape[1:]
        self.label_range = (int(y.min()), int(y.max()))
        self.dtype = X.dtype
        self._len = len(X)

    def __len__(self):
        return self._len

    def __repr__(self):
        return (f"DeviceDataset({self._len} samples of {self.sample_shape} {self.dtype} "
                f"on {self.device})")
