"""The exceptions heterocnn raises.

Every error is a ``HeteroCNNError`` and also the builtin exception that fits it, so
``except ValueError`` works as it would with NumPy or PyTorch.
"""


class HeteroCNNError(Exception):
    """Base class of every error heterocnn raises on purpose."""


class ShapeError(HeteroCNNError, ValueError):
    """An array, parameter or layer chain has the wrong shape."""


class DTypeError(HeteroCNNError, TypeError):
    """An array has a dtype or layout the call does not accept."""


class InvalidValueError(HeteroCNNError, ValueError):
    """A value is out of range: a label, a learning rate, a batch size, a NaN in the input."""


class DataFormatError(HeteroCNNError, ValueError):
    """A data file (IDX) or checkpoint is malformed; the message names the file."""


class MissingExtraError(HeteroCNNError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra to install (``pip install 'heterocnn[images]'``)."""


class StateDictError(HeteroCNNError, KeyError):
    """A state_dict has missing or unexpected keys."""

    def __str__(self):  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class DeviceError(HeteroCNNError, RuntimeError):
    """A device is unknown, missing, or failed (CUDA errors carry their CUDA name)."""


class DeviceOutOfMemoryError(HeteroCNNError, MemoryError):
    """An allocation on the host or a device failed; the message states the bytes."""


class NonFiniteError(HeteroCNNError, FloatingPointError):
    """Training met a NaN or inf. ``step`` (1-based, counted over the whole run) and ``layer``
    (index, or None when it was the loss or the step could not be replayed) say where."""

    def __init__(self, message, step, layer):
        super().__init__(message)
        self.step, self.layer = step, layer


class RankMismatchError(InvalidValueError):
    """The ranks of a distributed run disagree (build, architecture, data, seed); the message
    names the first rank that differs. Raised on every rank alike."""
