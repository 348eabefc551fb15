"""SGD with momentum and weight decay: the update rule of torch.optim.SGD
(v = momentum * v + g + weight_decay * p;  p -= lr * v). The momentum buffers live in the
core beside the parameters; making an optimizer for a model starts them at zero."""

import numbers

import numpy as np

from . import _core
from .errors import DTypeError, InvalidValueError


class SGD:
    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0):
        from .nn import Sequential

        if not isinstance(model, Sequential):
            raise DTypeError(f"SGD needs a heterocnn Sequential, got {type(model).__name__}")
        self.model = model
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        model._net.reset_momentum()

    def __setattr__(self, name, value):
        if name in ("lr", "momentum", "weight_decay"):
            # A real number (not a string, not a bool), that float32 (the core's type) holds:
            # finite there, and not a non-zero value that would round to 0 and silently stop
            # training.
            if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)):
                raise InvalidValueError(f"SGD {name} must be a real number, got {value!r}")
            try:
                value = float(value)
            except OverflowError:  # an int beyond any float
                raise InvalidValueError(f"SGD {name} {value!r} is beyond float32's range") from None
            with np.errstate(over="ignore", under="ignore"):
                as_f32 = np.float32(value)
            if np.isfinite(value) and not np.isfinite(as_f32):
                raise InvalidValueError(f"SGD {name} {value!r} is beyond float32's range")
            if value != 0 and as_f32 == 0:
                raise InvalidValueError(f"SGD {name} {value!r} rounds to 0 in float32 (the "
                                        "core's precision): use 0 or at least 1.4e-45")
            current = {k: getattr(self, k, 0.0) for k in ("lr", "momentum", "weight_decay")}
            current[name] = value
            _core.validate_sgd(current["lr"], current["momentum"], current["weight_decay"])
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"
