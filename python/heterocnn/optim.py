"""Optimizers with the update rules of torch.optim:

- ``SGD``: momentum, dampening, Nesterov and weight decay
  (g += wd * p;  v = momentum * v + (1 - dampening) * g;  p -= lr * (g + momentum * v if
  nesterov else v));
- ``Adam``: bias-corrected moment estimates, weight decay as L2 added to the gradient;
- ``AdamW``: Adam with decoupled weight decay (p *= 1 - lr * weight_decay before the step).

An optimizer owns its state: its buffers (SGD: "momentum"; Adam: "exp_avg", "exp_avg_sq")
live in the core's optimizer object (laid out like the model's parameter store, moving with
it), not beside the parameters, so two optimizers of one model are independent; and the count
of steps it has taken (Adam's bias correction reads it; the core advances it once per training
step). ``state()`` / ``load_state()`` read and write both by key. Hyper-parameters are
attributes (``opt.lr = 0.01``), checked on every change: a bad value raises InvalidValueError
naming it and leaves the optimizer as it was."""

import numbers
from collections import OrderedDict

import numpy as np

from . import _core
from .errors import DTypeError, InvalidValueError, ShapeError, StateDictError


class Optimizer:
    """What every optimizer shares: the model it updates, its hyper-parameters (``_hyper``,
    validated together by ``_checked``, then given to the core), its state by key."""

    _hyper = ()  # the hyper-parameter names, in the constructor's order

    def __init__(self, model, **hyper):
        from .nn import Sequential

        if not isinstance(model, Sequential):
            raise DTypeError(f"{type(self).__name__} needs a heterocnn Sequential, got "
                             f"{type(model).__name__}")
        values = self._checked(hyper)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "_core", self._make_core(values))
        for name, v in values.items():
            object.__setattr__(self, name, v)

    # -- what each optimizer says ----------------------------------------------------------

    def _checked(self, values):
        """``values`` (every hyper-parameter) as the core takes them; InvalidValueError naming
        the first bad one."""
        raise NotImplementedError

    def _make_core(self, values):
        raise NotImplementedError

    def _configure(self, values):
        """Give the core new (checked) hyper-parameters."""
        raise NotImplementedError

    # -- hyper-parameters ------------------------------------------------------------------

    def __setattr__(self, name, value):
        if name in self._hyper:
            values = self.settings()
            values[name] = value
            values = self._checked(values)
            self._configure(values)
            for k, v in values.items():
                object.__setattr__(self, k, v)
            return
        object.__setattr__(self, name, value)

    def settings(self):
        """{name: value} of the hyper-parameters: ``type(opt)(model, **opt.settings())`` makes
        an optimizer like this one (with fresh state) for another model."""
        return {name: getattr(self, name) for name in self._hyper}

    def __repr__(self):
        return (f"{type(self).__name__}("
                + ", ".join(f"{k}={v}" for k, v in self.settings().items()) + ")")

    # -- state ------------------------------------------------------------------------------

    def state_names(self):
        """The names of the optimizer's buffers ("momentum"; "exp_avg", "exp_avg_sq")."""
        return self._core.state_names()

    def state(self):
        """{"<buffer>.<key>": host copy} of every buffer of every parameter of the model, in
        state_dict order, and "step": the number of steps taken (an int)."""
        out = OrderedDict()
        for k, name in enumerate(self.state_names()):
            for i, (key, shape) in enumerate(self.model.parameters()):
                out[f"{name}.{key}"] = self._core.get_state(self.model.store(), k, i, shape)
        out["step"] = int(self._core.steps())
        return out

    def load_state(self, state, allow_nonfinite=False):
        """Write what ``state()`` returns (the same keys: the buffers, float arrays of the
        parameters' shapes, finite unless ``allow_nonfinite``, and "step", an integer >= 0).
        Everything is checked first; on a mismatch nothing changes."""
        names = self.state_names()
        params = self.model.parameters()
        expected = [f"{name}.{key}" for name in names for key, _ in params] + ["step"]
        if set(state.keys()) != set(expected):
            raise StateDictError(f"optimizer state does not match: expected keys {expected}, "
                                 f"got {sorted(state.keys())}")
        step = state["step"]
        if isinstance(step, np.ndarray) and step.shape == ():
            step = step[()]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) \
                or not 0 <= step < 2**63:
            raise InvalidValueError(f"optimizer state step must be an integer >= 0, got "
                                    f"{step!r:.100}")
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
        self._core.set_steps(int(step))

    def zero_state(self):
        """All buffers and the step count back to zero, as a fresh optimizer has them."""
        self._core.reset()


class SGD(Optimizer):
    """torch.optim.SGD: ``nesterov`` needs ``momentum`` > 0 and ``dampening`` 0 (as torch)."""

    _hyper = ("lr", "momentum", "weight_decay", "dampening", "nesterov")

    def __init__(self, model, lr, momentum=0.0, weight_decay=0.0, dampening=0.0,
                 nesterov=False):
        super().__init__(model, lr=lr, momentum=momentum, weight_decay=weight_decay,
                         dampening=dampening, nesterov=nesterov)

    def _checked(self, values):
        out = {name: _number(name, values[name], "SGD", minimum=0)
               for name in ("lr", "momentum", "weight_decay", "dampening")}
        out["nesterov"] = _flag("nesterov", values["nesterov"], "SGD")
        if out["nesterov"] and (out["momentum"] <= 0 or out["dampening"] != 0):
            raise InvalidValueError(f"SGD nesterov=True needs momentum > 0 and dampening 0 (as "
                                    f"torch), got momentum={out['momentum']!r} and "
                                    f"dampening={out['dampening']!r}")
        _core.validate_sgd(*(out[name] for name in self._hyper))
        return out

    def _make_core(self, values):
        return _core.CoreSGD(*(values[name] for name in self._hyper))

    def _configure(self, values):
        self._core.set_config(*(values[name] for name in self._hyper))


class Adam(Optimizer):
    """torch.optim.Adam (amsgrad off): ``weight_decay`` is L2, added to the gradient."""

    _hyper = ("lr", "betas", "eps", "weight_decay")
    _decoupled = False

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _checked(self, values):
        who = type(self).__name__
        betas = values["betas"]
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) != 2:
            raise InvalidValueError(f"{who} betas must be a pair of numbers in [0, 1), got "
                                    f"{betas!r:.100}")
        out = {"lr": _number("lr", values["lr"], who, minimum=0),
               "betas": tuple(_number(f"betas[{i}]", b, who, minimum=0, below=1)
                              for i, b in enumerate(betas)),
               "eps": _number("eps", values["eps"], who, above=0),
               "weight_decay": _number("weight_decay", values["weight_decay"], who, minimum=0)}
        _core.validate_adam(*self._args(out))
        return out

    def _args(self, values):
        return (values["lr"], values["betas"][0], values["betas"][1], values["eps"],
                values["weight_decay"], self._decoupled)

    def _make_core(self, values):
        return _core.CoreAdam(*self._args(values))

    def _configure(self, values):
        self._core.set_config(*self._args(values))


class AdamW(Adam):
    """torch.optim.AdamW: decoupled weight decay, p *= 1 - lr * weight_decay before the Adam
    step (default 1e-2)."""

    _decoupled = True

    def __init__(self, model, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(model, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW}  # the CLI's and checkpoints' names


def make_optimizer(kind, model, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
    """The optimizer OPTIMIZERS names ``kind`` for ``model``: SGD with ``momentum`` and
    ``nesterov``, Adam or AdamW with their default betas and eps; each with ``weight_decay``."""
    cls = OPTIMIZERS[kind]
    if kind == "sgd":
        return cls(model, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return cls(model, lr=lr, weight_decay=weight_decay)


def _flag(name, value, who):
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(f"{who} {name} must be True or False, got {value!r:.100}")
    return bool(value)


def _number(name, value, who="SGD", minimum=None, above=None, below=None):
    """``value`` as a float that float32 (the core's type) holds: a real number (not a string,
    not a bool), finite there, not a non-zero value that would round to 0 and silently stop
    training, and >= ``minimum`` / > ``above`` / < ``below`` where given. InvalidValueError
    naming it (``who``'s ``name``) otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InvalidValueError(f"{who} {name} must be a real number, got {value!r:.100}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond any float
        raise InvalidValueError(f"{who} {name} {value!r} is beyond float32's range") from None
    with np.errstate(over="ignore", under="ignore"):
        as_f32 = np.float32(value)
    if np.isfinite(value) and not np.isfinite(as_f32):
        raise InvalidValueError(f"{who} {name} {value!r} is beyond float32's range")
    if value != 0 and as_f32 == 0:
        raise InvalidValueError(f"{who} {name} {value!r} rounds to 0 in float32 (the core's "
                                "precision): use 0 or at least 1.4e-45")
    if not np.isfinite(value):
        raise InvalidValueError(f"{who} {name} must be finite, got {value!r}")
    if minimum is not None and not value >= minimum:
        raise InvalidValueError(f"{who} {name} must be >= {minimum}, got {value!r}")
    if above is not None and not value > above:
        raise InvalidValueError(f"{who} {name} must be > {above}, got {value!r}")
    if below is not None and not (value < below and float(as_f32) < below):
        raise InvalidValueError(f"{who} {name} must be < {below}, got {value!r}")
    return value
