"""SGD with momentum and weight decay: the update rule of torch.optim.SGD
(v = momentum * v + g + weight_decay * p;  p -= lr * v). The momentum buffers live in the
core beside the parameters; making an optimizer for a model starts them at zero."""

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
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise InvalidValueError(f"SGD {name} must be a number, got {value!r}") from None
            current = {k: getattr(self, k, 0.0) for k in ("lr", "momentum", "weight_decay")}
            current[name] = value
            _core.validate_sgd(current["lr"], current["momentum"], current["weight_decay"])
        object.__setattr__(self, name, value)

    def __repr__(self):
        return f"SGD(lr={self.lr}, momentum={self.momentum}, weight_decay={self.weight_decay})"
