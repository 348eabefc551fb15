"""SGD with momentum and weight decay: the update rule of torch.optim.SGD
(v = momentum * v + g + weight_decay * p;  p -= lr * v).

An optimizer owns its state: the momentum buffers live in the core's optimizer object
(laid out like the model's parameter store, moving with it), not beside the parameters, so
two optimizers of one model are independent. ``state()`` / ``load_state()`` read and write
it by state_dict key."""

import numbers
from collections import OrderedDict

import numpy as np

from . import _core
from .errors import DTypeError, InvalidValueError, ShapeError, StateDictError

_HYPER = ("lr", "momentum", "weight_decay")


class SGD:
    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0):
        from .nn import Sequential

        if not isinstance(model, Sequential):
            raise DTypeError(f"SGD needs a heterocnn Sequential, got {type(model).__name__}")
        object.__setattr__(self, "model", model)
        values = {name: _number(name, v) for name, v in
                  (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay))}
        _core.validate_sgd(values["lr"], values["momentum"], values["weight_decay"])
        object.__setattr__(self, "_core", _core.CoreSGD(values["lr"], values["momentum"],
                                                        values["weight_decay"]))
        for name, v in values.items():
            object.__setattr__(self, name, v)

    def __setattr__(self, name, value):
        if name in _HYPER:
            value = _number(name, value)
            current = {k: getattr(self, k) for k in _HYPER}
            current[name] = value
            self._core.set_config(current["lr"], current["momentum"], current["weight_decay"])
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"

    # -- state ------------------------------------------------------------------------------

    def state(self):
        """{"momentum.<key>": host copy} for every parameter of the model, in state_dict order."""
        names = self._core.state_names()
        out = OrderedDict()
        for k, name in enumerate(names):
            for i, (key, shape) in enumerate(self.model.parameters()):
                out[f"{name}.{key}"] = self._core.get_state(self.model.store(), k, i, shape)
        return out

    def load_state(self, state, allow_nonfinite=False):
        """Write the buffers ``state()`` returns (same keys and shapes, finite float arrays
        unless ``allow_nonfinite``). Everything is checked first; on a mismatch nothing
        changes."""
        names = self._core.state_names()
        params = self.model.parameters()
        expected = [f"{name}.{key}" for name in names for key, _ in params]
        if set(state.keys()) != set(expected):
            raise StateDictError(f"optimizer state does not match: expected keys {expected}, "
                                 f"got {sorted(state.keys())}")
        arrays = []
        for k, name in enumerate(names):
            for i, (key, shape) in enumerate(params):
                a = np.ascontiguousarray(state[f"{name}.{key}"], dtype=np.float32)
                if a.shape != tuple(shape):
                    raise ShapeError(f"optimizer state {name}.{key} has shape {a.shape}, the "
                                     f"model expects {tuple(shape)}")
                if not allow_nonfinite and not np.isfinite(a).all():
                    raise InvalidValueError(f"optimizer state {name}.{key} holds NaN or inf")
                arrays.append((k, i, a))
        for k, i, a in arrays:
            self._core.set_state(self.model.store(), k, i, a)

    def zero_state(self):
        """All state back to zero, as a fresh optimizer has it."""
        self._core.reset()


def _number(name, value):
    """``value`` as a float that float32 (the core's type) holds: a real number (not a string,
    not a bool), finite there, and not a non-zero value that would round to 0 and silently
    stop training. InvalidValueError naming it otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
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
        raise InvalidValueError(f"SGD {name} {value!r} rounds to 0 in float32 (the core's "
                                "precision): use 0 or at least 1.4e-45")
    return value
