"""The NaN/inf guard of the training loop: finds, and either reports or undoes, a step that
produced a NaN or inf in the loss, a gradient or the weights. Where it went wrong is found by
running the step again on the host layer by layer (each layer alone, as the op tests run it),
so it works for every architecture on every placement."""

import numpy as np

from . import _core
from .errors import InvalidValueError, NonFiniteError
from .nn import Flatten, Sequential


def _state(model, opt):
    """(weights, optimizer state): host copies of the model's state_dict with every layer
    buffer (Dropout's step counter too, so an undone step draws again what it drew) and of
    opt.state() (its buffers and step count)."""
    return {**model.state_dict(), **model.buffers(all_buffers=True)}, opt.state()


def _set_state(model, opt, state):
    weights, buffers = state
    model.load_state_dict(weights, allow_nonfinite=True)
    opt.load_state(buffers, allow_nonfinite=True)


def _arrays_of(state, key):
    """The weight ``key`` and every optimizer buffer of it in ``state``."""
    weights, buffers = state
    return [weights[key]] + [v for k, v in buffers.items()
                             if k != "step" and k.split(".", 1)[1] == key]


def _finite(state):
    return all(np.isfinite(a).all() for key in state[0] for a in _arrays_of(state, key))


def _layer(model, key):
    i = int(key.split(".")[0])
    return i, f"layer {i} ({model.layers[i]!r})"


def _bad_weights(model, state):
    """(layer, description) of the first parameter in ``state`` holding NaN/inf, or None."""
    for key, _ in model.parameters():
        if not all(np.isfinite(a).all() for a in _arrays_of(state, key)):
            i, name = _layer(model, key)
            return i, f"{key} of {name} holds NaN/inf"
    return None


def layer_outputs(model, weights, x):
    """Yields (i, output of layer i) of ``model`` on the float32 batch ``x``, each layer run on
    its own on the host (hc._core.CoreLayer) from ``weights`` (a state_dict), fed the output
    of the one before: no net is built, so any prefix of any architecture can be looked at."""
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Flatten):  # a view: the core moves no data for it
            x = x.reshape(len(x), -1)
        else:
            kind, args = layer._spec()
            core = _core.CoreLayer(kind, list(args))
            core.set_training(model.training)
            for name in layer.param_names():
                core.set_param(name, np.ascontiguousarray(weights[f"{i}.{name}"]))
            for name in core.buffers():  # BatchNorm's statistics, Dropout's step
                if f"{i}.{name}" in weights:
                    core.set_buffer(name, np.ascontiguousarray(weights[f"{i}.{name}"]))
            x = core.forward(np.ascontiguousarray(x, dtype=np.float32))
        yield i, x


def _locate(model, opt, before, x, y):
    """(layer index or None, description) of where a step with ``opt`` from state ``before``
    on (x, y) first meets a NaN or inf: the weights in forward order, then
    each layer's output in forward order, the loss, the gradients in the order backward makes
    them (last layer first), else the first parameter the update made non-finite. ``model`` is
    a CPU copy whose state this changes."""
    _set_state(model, opt, before)
    bad = _bad_weights(model, before)
    if bad:
        return bad[0], bad[1] + " before the step"
    for i, out in layer_outputs(model, before[0], x):
        if not np.isfinite(out).all():
            return i, f"the output of layer {i} ({model.layers[i]!r}) is NaN/inf"
    loss, grads = model.loss_and_grads(x, y)
    if not np.isfinite(loss):
        return None, f"the loss is {loss}"
    for key in reversed(grads):
        if not np.isfinite(grads[key]).all():
            i, name = _layer(model, key)
            return i, f"the gradient of {key} ({name}) is NaN/inf"
    # Forward, loss and gradients were finite: the update overflowed. Which parameter?
    _set_state(model, opt, before)
    model.train_step(x, y, opt)
    bad = _bad_weights(model, _state(model, opt))
    if bad:
        return bad[0], f"the {type(opt).__name__} update overflowed: {bad[1]}"
    return None, f"the {type(opt).__name__} update overflowed"


def checked_step(model, x, y, opt):
    """Sequential.train_step(..., check_finite=True): one step that, when its loss or the
    weights it leaves are not finite, puts the model back as it was before the step and raises
    NonFiniteError naming the first layer where the NaN/inf appeared (``step`` is None)."""
    before = _state(model, opt)
    bad = _bad_weights(model, before)
    if bad:
        raise NonFiniteError(f"before the step: {bad[1]}", None, bad[0])
    loss = model.train_step(x, y, opt)
    if np.isfinite(loss) and _finite(_state(model, opt)):
        return loss
    _set_state(model, opt, before)
    copy = Sequential(*model.layers, loss=model.loss, seed=model.seed,
                      label_smoothing=model.label_smoothing).train(model.training)
    layer, where = _locate(copy, type(opt)(copy, **opt.settings()), before,
                           np.asarray(x, dtype=np.float32), y)
    raise NonFiniteError(f"NaN/inf in train_step (loss {loss}): {where}; the model is as it "
                         "was before the step", None, layer)


class NanGuard:
    """Watches the steps of fit for NaN and inf.

    "raise": each step's loss is checked (free) and the weights once per epoch (one copy);
    on a failure the model goes back to the state at the epoch's start (kept then), the epoch
    is replayed from it on a CPU copy to find the first bad step and where it went bad, and
    NonFiniteError is raised.
    "skip": steps run one at a time; after each one the weights and the optimizer's state are
    copied out and checked, and a step with a non-finite loss or state is undone from the
    last good copy (its step count too) and counted."""

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
        return Sequential(*m.layers, loss=m.loss, seed=m.seed,
                          label_smoothing=m.label_smoothing).train(m.training)

    def _fail(self, last):
        """Puts the model back to the epoch's first state, replays batches 0..last from it on
        a CPU copy and raises NonFiniteError."""
        self.model._finish_steps()
        _set_state(self.model, self.opt, self._good)

        copy = self._cpu_copy()
        opt = type(self.opt)(copy, **self.opt.settings())
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
