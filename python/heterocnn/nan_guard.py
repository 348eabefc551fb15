"""The NaN/inf guard of the training loop: finds, and either reports or undoes, a step that
produced a NaN or inf in the loss, a gradient or the weights."""

import numpy as np

from .errors import InvalidValueError, NonFiniteError
from .nn import Sequential


def _state(model, opt):
    """[(value, momentum)] host copies of every parameter, in state_dict order."""
    values, momenta = model.state_dict(), opt.state()
    return [(values[key], momenta["momentum." + key]) for key in values]


def _set_state(model, opt, state):
    keys = [key for key, _ in model.parameters()]
    model.load_state_dict(dict(zip(keys, (v for v, _ in state))), allow_nonfinite=True)
    opt.load_state({"momentum." + key: m for key, (_, m) in zip(keys, state)},
                   allow_nonfinite=True)


def _finite(state):
    return all(np.isfinite(v).all() and np.isfinite(m).all() for v, m in state)


def _layer(model, key):
    i = int(key.split(".")[0])
    return i, f"layer {i} ({model.layers[i]!r})"


def _bad_weights(model, state):
    """(layer, description) of the first parameter in ``state`` holding NaN/inf, or None."""
    for (key, _), (value, velocity) in zip(model.parameters(), state):
        if not (np.isfinite(value).all() and np.isfinite(velocity).all()):
            i, name = _layer(model, key)
            return i, f"{key} of {name} holds NaN/inf"
    return None


def _locate(model, opt, before, x, y):
    """(layer index or None, description) of where a step from state ``before`` on (x, y)
    first meets a NaN or inf: the weights in forward order, then each layer's output in
    forward order, the loss, the gradients in the order backward makes them (last layer
    first), else the update. ``model`` is a CPU copy whose state this changes."""
    _set_state(model, opt, before)
    bad = _bad_weights(model, before)
    if bad:
        return bad[0], bad[1] + " before the step"
    for i in range(len(model.layers)):
        prefix = Sequential(*model.layers[:i + 1], loss=model.loss)
        keys = [key for key, _ in prefix.parameters()]
        prefix.load_state_dict({key: value for key, (value, _) in zip(keys, before)},
                               allow_nonfinite=True)
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


class NanGuard:
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
        self._good = _state(model, opt)
        bad = _bad_weights(model, self._good)
        if bad:
            raise NonFiniteError(f"before training: {bad[1]}", 0, bad[0])

    def start_epoch(self, step, batch_at):
        """``step``: steps done before this epoch; ``batch_at(b)``: its batch b as (x, y)."""
        self._step0, self._batch_at = step, batch_at
        if self.mode == "raise":
            self._good = _state(self.model, self.opt)

    def accept(self, loss, batch):
        """Whether the step on ``batch`` of this epoch counts (False: it was undone)."""
        if self.mode == "raise":
            if not np.isfinite(loss):
                self._fail(batch)
            return True
        state = _state(self.model, self.opt) if np.isfinite(loss) else None
        if state is not None and _finite(state):
            self._good = state
            return True
        _set_state(self.model, self.opt, self._good)
        self._skips += 1
        return False

    def end_epoch(self, n_batches):
        if self.mode == "raise" and not _finite(_state(self.model, self.opt)):
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
        _set_state(self.model, self.opt, self._good)

        copy = self._cpu_copy()
        opt = SGD(copy, lr=self.opt.lr, momentum=self.opt.momentum,
                  weight_decay=self.opt.weight_decay)
        _set_state(copy, opt, self._good)
        for b in range(last + 1):
            x, y = self._batch_at(b)
            before = _state(copy, opt)
            loss = copy.train_step(x, y, opt)
            if not np.isfinite(loss) or not _finite(_state(copy, opt)):
                layer, where = _locate(copy, opt, before, x, y)
                step = self._step0 + b + 1
                raise NonFiniteError(f"NaN/inf at step {step} (batch {b + 1} of the epoch): "
                                     f"{where}", step, layer)
        step = self._step0 + last + 1
        raise NonFiniteError(f"NaN/inf at step {step} (batch {last + 1} of the epoch); the "
                             "step did not go wrong when replayed on the CPU", step, None)
