"""Layers and the Sequential model, with the semantics and state_dict layout of torch.nn.

Layer objects here are specifications; ``Sequential`` builds the C++ net from them and owns
it. Every call validates its arrays in Python (dtype, rank, batch size) and the core checks
the rest (shapes through the chain, labels, NaN/inf), before anything in the model changes.
"""

import re
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np

from . import _core
from .errors import DeviceError, DTypeError, InvalidValueError, ShapeError, StateDictError


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_int(layer, name, value, minimum=1):
    """``value`` as an int in [minimum, 2^40] (the core's bound on any size), else
    InvalidValueError naming it."""
    if not _is_int(value) or value < minimum:
        raise InvalidValueError(f"{layer}: {name} must be an integer >= {minimum}, got {value!r}")
    if value > _core.MAX_NUMEL:
        raise InvalidValueError(f"{layer}: {name} must be at most 2^40, got {value!r}")
    return int(value)


def _flag(layer, name, value):
    """``value`` as a bool: True/False, or 1/0 as a spec holds it; else InvalidValueError."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if _is_int(value) and value in (0, 1):
        return bool(value)
    raise InvalidValueError(f"{layer}: {name} must be True or False, got {value!r}")


def _seed(value, what="seed"):
    """A seed: an int in [0, 2^64 - 1] (the core's RNG takes 64 bits)."""
    if not _is_int(value) or not 0 <= value < 2**64:
        raise InvalidValueError(f"{what} must be an integer from 0 to 2^64 - 1, got {value!r}")
    return int(value)


class Module:
    """Base of the layer specifications."""

    def _spec(self):
        """(kind, arguments) for the core's make_layer: the arguments of the constructor, in
        order, as numbers (flags as 0/1), so that ``from_spec(args)`` (for most layers
        ``cls(*args)``) rebuilds the layer."""
        return type(self).__name__, []

    @classmethod
    def from_spec(cls, args):
        """The layer whose _spec() has these arguments (what hc.load rebuilds from). A layer
        whose spec encodes an argument that is not a number (GELU's approximate, BatchNorm's
        momentum=None) overrides this."""
        return cls(*args)

    def param_shapes(self):
        """Shapes of the layer's parameters, in state_dict order (weight, bias)."""
        return []

    def param_names(self):
        """Names of the layer's parameters, in state_dict order, one per param_shapes() entry
        (a layer without bias has "weight" alone)."""
        return ["weight", "bias"][:len(self.param_shapes())]

    def _check_sizes(self):
        """Refuse parameters the core cannot hold (more than 2^40 elements), at construction."""
        for shape in self.param_shapes():
            if int(np.prod(shape, dtype=object)) > _core.MAX_NUMEL:
                raise InvalidValueError(f"{self!r}: a parameter of shape {shape} would hold more "
                                        "than 2^40 elements")

    def __repr__(self):
        kind, args = self._spec()
        return f"{kind}({', '.join(map(str, args))})"


class Linear(Module):
    """y = x @ W.T + b; x (N, in_features) -> (N, out_features). ``bias=False``: y = x @ W.T,
    no bias parameter (state_dict has "i.weight" alone, as torch)."""

    def __init__(self, in_features, out_features, bias=True):
        self.in_features = _positive_int("Linear", "in_features", in_features)
        self.out_features = _positive_int("Linear", "out_features", out_features)
        self.bias = _flag("Linear", "bias", bias)
        self._check_sizes()

    def _spec(self):  # the bias flag only when off: specs of layers with bias stay as they were
        return "Linear", [self.in_features, self.out_features] + ([] if self.bias else [0])

    def param_shapes(self):
        return [(self.out_features, self.in_features)] + ([(self.out_features,)] if self.bias
                                                          else [])

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        return f"Linear({self.in_features}, {self.out_features}{extra})"


class Conv2d(Module):
    """Cross-correlation, NCHW, square kernel; x (N, in, H, W) -> (N, out, Ho, Wo)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        self.in_channels = _positive_int("Conv2d", "in_channels", in_channels)
        self.out_channels = _positive_int("Conv2d", "out_channels", out_channels)
        self.kernel_size = _positive_int("Conv2d", "kernel_size", kernel_size)
        self.stride = _positive_int("Conv2d", "stride", stride)
        self.padding = _positive_int("Conv2d", "padding", padding, minimum=0)
        self.bias = _flag("Conv2d", "bias", bias)
        self._check_sizes()

    def _spec(self):  # the bias flag only when off: specs of layers with bias stay as they were
        return "Conv2d", [self.in_channels, self.out_channels, self.kernel_size, self.stride,
                          self.padding] + ([] if self.bias else [0])

    def param_shapes(self):
        k = self.kernel_size
        return [(self.out_channels, self.in_channels, k, k)] + ([(self.out_channels,)]
                                                                if self.bias else [])

    def __repr__(self):
        extra = "" if self.bias else ", bias=False"
        return (f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"{self.stride}, {self.padding}{extra})")


class MaxPool2d(Module):
    """Max over kernel_size windows moved by stride (default kernel_size), no padding."""

    def __init__(self, kernel_size, stride=None):
        self.kernel_size = _positive_int("MaxPool2d", "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive_int(
            "MaxPool2d", "stride", stride)

    def _spec(self):
        return "MaxPool2d", [self.kernel_size, self.stride]


class AvgPool2d(Module):
    """Mean over kernel_size windows moved by stride (default kernel_size) over the input
    padded by ``padding`` zeros, which count in the divisor (torch's count_include_pad=True);
    floor mode. padding is at most kernel_size // 2, as torch requires."""

    def __init__(self, kernel_size, stride=None, padding=0):
        self.kernel_size = _positive_int("AvgPool2d", "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _positive_int(
            "AvgPool2d", "stride", stride)
        self.padding = _positive_int("AvgPool2d", "padding", padding, minimum=0)
        if self.padding > self.kernel_size // 2:
            raise InvalidValueError(f"AvgPool2d: padding must be at most kernel_size // 2 = "
                                    f"{self.kernel_size // 2}, got {self.padding}")

    def _spec(self):
        return "AvgPool2d", [self.kernel_size, self.stride, self.padding]


class AdaptiveAvgPool2d(Module):
    """Mean over the windows that cut (H, W) into output_size x output_size cells, as
    torch.nn.AdaptiveAvgPool2d (window i: [floor(i*H/out), ceil((i+1)*H/out))). output_size=1
    is global average pooling: (N, C, H, W) -> (N, C, 1, 1)."""

    def __init__(self, output_size):
        self.output_size = _positive_int("AdaptiveAvgPool2d", "output_size", output_size)

    def _spec(self):
        return "AdaptiveAvgPool2d", [self.output_size]


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1*d2*...), C order."""


class ReLU(Module):
    """max(x, 0), element-wise."""


class Sigmoid(Module):
    """1 / (1 + exp(-x)), element-wise."""


# -- normalisation and dropout ---------------------------------------------------------------

def _real(layer, name, value, low, high, low_open=False):
    """``value`` as a float in [low, high] ((low, high] with ``low_open``), else
    InvalidValueError naming it."""
    ok = (isinstance(value, (int, float, np.integer, np.floating))
          and not isinstance(value, (bool, np.bool_)))
    v = float(value) if ok else None
    if not ok or not np.isfinite(v) or v > high or v < low or (low_open and v == low):
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise InvalidValueError(f"{layer}: {name} must be a number in {interval}, got {value!r}")
    return v


class _BatchNorm(Module):
    """Per-channel normalisation, as torch.nn.BatchNorm2d/1d: in training mode by the batch's
    mean and biased variance (num_batches_tracked += 1, and running_mean/running_var moved
    towards the batch's mean and unbiased variance by ``momentum``, or with ``momentum=None``
    by 1 / num_batches_tracked: the cumulative average of all batches so far), in evaluation
    mode by the running estimates. ``affine``: a learned weight (init 1) and bias (init 0) per
    channel. Its buffers running_mean, running_var and num_batches_tracked are in state_dict,
    after weight and bias. In data-parallel replicas each replica normalises over its own rows
    (as torch DDP without SyncBatchNorm), and the running estimates of the first replica with
    rows are kept. Spec: [num_features, eps, momentum, affine], with ``momentum=None``
    [num_features, eps, 0.0, affine, 1] (the trailing cumulative flag)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True):
        kind = type(self).__name__
        self.num_features = _positive_int(kind, "num_features", num_features)
        self.eps = _real(kind, "eps", eps, 0.0, float("inf"), low_open=True)
        self.momentum = None if momentum is None else _real(kind, "momentum", momentum, 0.0,
                                                            1.0)
        self.affine = _flag(kind, "affine", affine)

    def _spec(self):
        if self.momentum is None:
            return type(self).__name__, [self.num_features, self.eps, 0.0, int(self.affine), 1]
        return type(self).__name__, [self.num_features, self.eps, self.momentum,
                                     int(self.affine)]

    @classmethod
    def from_spec(cls, args):
        if len(args) not in (4, 5):
            raise InvalidValueError(f"{cls.__name__} takes 4 or 5 spec arguments, got "
                                    f"{args!r:.100}")
        num_features, eps, momentum, affine = args[:4]
        cumulative = len(args) == 5 and _flag(cls.__name__, "the cumulative flag", args[4])
        return cls(num_features, eps, None if cumulative else momentum, affine)

    def param_shapes(self):
        return [(self.num_features,)] * 2 if self.affine else []

    def buffer_shapes(self):
        """{name: shape} of the buffers in state_dict, in its order (num_batches_tracked is an
        int64 scalar, as torch's)."""
        c = self.num_features
        return OrderedDict([("running_mean", (c,)), ("running_var", (c,)),
                            ("num_batches_tracked", ())])

    def __repr__(self):
        return (f"{type(self).__name__}({self.num_features}, eps={self.eps}, "
                f"momentum={self.momentum}, affine={self.affine})")


class BatchNorm2d(_BatchNorm):
    """x (N, C, H, W) -> (N, C, H, W), statistics over N, H and W per channel."""


class BatchNorm1d(_BatchNorm):
    """x (N, C) or (N, C, L) -> the same shape, statistics over N (and L) per channel."""


class _Dropout(Module):
    """Zeroes with probability ``p`` in training mode and scales the kept values by
    1/(1 - p) (p = 1: zeros), as torch.nn.Dropout; the identity in evaluation mode. The masks
    come from a Philox-4x32-10 stream keyed by a per-layer seed (drawn from the model's seed)
    and a per-layer step counter that advances with each training forward, on the device the
    layer runs on: the same on the CPU and a GPU for the same step, and continued by a
    resumed checkpoint (the counter is saved with it, not in state_dict)."""

    def __init__(self, p=0.5):
        self.p = _real(type(self).__name__, "p", p, 0.0, 1.0)

    def _spec(self):
        return type(self).__name__, [self.p]

    def __repr__(self):
        return f"{type(self).__name__}(p={self.p})"


class Dropout(_Dropout):
    """Each element dropped on its own; any input shape."""


class Dropout2d(_Dropout):
    """Whole channels dropped: one draw per (n, c) plane of an (N, C, H, W) input."""
class Tanh(Module):
    """tanh(x), element-wise."""


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x, element-wise."""

    def __init__(self, negative_slope=0.01):
        slope = None
        if (isinstance(negative_slope, (int, float, np.integer, np.floating))
                and not isinstance(negative_slope, (bool, np.bool_))):
            try:
                slope = float(negative_slope)
            except OverflowError:  # an int beyond any float
                pass
        if slope is None or not abs(slope) <= float(np.finfo(np.float32).max):
            raise InvalidValueError(f"LeakyReLU: negative_slope must be a finite float32 "
                                    f"number, got {negative_slope!r:.100}")
        self.negative_slope = slope

    def _spec(self):
        return "LeakyReLU", [self.negative_slope]


class GELU(Module):
    """x * Phi(x) = x/2 * (1 + erf(x / sqrt(2))), element-wise: torch's exact default
    (approximate='none'); approximate='tanh' is torch's tanh form,
    x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). Its spec holds the form as a flag:
    [] for 'none' (as before the tanh form existed), [1] for 'tanh'."""

    APPROXIMATIONS = ("none", "tanh")

    def __init__(self, approximate="none"):
        if not isinstance(approximate, str) or approximate not in self.APPROXIMATIONS:
            raise InvalidValueError(f"GELU: approximate must be 'none' (the exact erf form) or "
                                    f"'tanh', got {approximate!r:.100}")
        self.approximate = approximate

    def _spec(self):
        return "GELU", [1] if self.approximate == "tanh" else []

    @classmethod
    def from_spec(cls, args):
        if len(args) > 1:
            raise InvalidValueError(f"GELU takes 0 or 1 spec arguments, got {args!r:.100}")
        tanh = bool(args) and _flag("GELU", "the tanh flag", args[0])
        return cls("tanh" if tanh else "none")

    def __repr__(self):
        return "GELU()" if self.approximate == "none" else f"GELU(approximate={self.approximate!r})"


LOSSES = ("cross_entropy", "bce")


def _label_smoothing(value, loss):
    """The cross-entropy's label smoothing: a real number in [0, 1], 0 for 'bce'."""
    import numbers

    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) \
            or not 0 <= float(value) <= 1:
        raise InvalidValueError(f"label_smoothing must be a number in [0, 1], got {value!r:.100}")
    if value and loss != "cross_entropy":
        raise InvalidValueError(f"label_smoothing is for loss 'cross_entropy', not {loss!r} "
                                f"(got label_smoothing={value!r})")
    return float(value)


_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def parse_device(device):
    """'cpu', 'cuda' or 'cuda:N' -> (0 for CPU / 1 for CUDA, index)."""
    m = _DEVICE_RE.match(device) if isinstance(device, str) else None
    if not m or (m.group(1) == "cpu" and m.group(2) not in (None, "0")):
        raise InvalidValueError(f"unknown device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if m.group(1) == "cpu":
        return (0, 0)
    if not _core.build_info()["cuda_compiled"]:
        raise DeviceError(f"device {device!r} asked for, but heterocnn was built without CUDA")
    return (1, int(m.group(2) or 0))


class Sequential:
    """A chain of layers with a loss: 'cross_entropy' (softmax, integer labels) or 'bce'
    (sigmoid binary cross-entropy on one output, labels 0/1). ``label_smoothing`` (in [0, 1],
    cross_entropy only) smooths the target as torch.nn.CrossEntropyLoss(label_smoothing=)
    does: (1 - eps) * onehot + eps / classes. Weights are He-normal from ``seed``, biases
    zero."""

    def __init__(self, *layers, loss="cross_entropy", seed=0, input_shape=None,
                 label_smoothing=0.0):
        if not layers:
            raise InvalidValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise DTypeError(f"layer {i} is {type(layer).__name__}, not a heterocnn layer")
        if loss not in LOSSES:
            raise InvalidValueError(f"unknown loss {loss!r}: use one of {LOSSES}")
        self.layers = tuple(layers)
        self.loss = loss
        self.label_smoothing = _label_smoothing(label_smoothing, loss)
        self.seed = _seed(seed)
        self._net = _core.CoreNet([layer._spec() for layer in layers], loss, self.seed,
                                  self.label_smoothing)
        self._params = self._net.param_list()  # [(layer, name, shape)]
        self._keys = [f"{i}.{name}" for i, name, _ in self._params]
        # [(layer, name, shape, dtype, persistent)]: BatchNorm's running statistics, ...
        self._buffers = self._net.buffer_list()
        self.training = True
        self.placement = ("cpu",) * len(layers)
        self._replicas = None  # a CoreReplicas when placed with DataParallel
        self._replica_nets = None  # its nets, the master first
        self.plan_used = None      # the hc.Plan the model was last placed by, if any
        self._copies = {}          # placed_copy's copies, by placement
        # One sample's shape (e.g. (1, 28, 28)), where the model knows it: to("auto") and
        # the planner use it when none is given.
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        if self.input_shape is None and isinstance(layers[0], Linear):
            self.input_shape = (layers[0].in_features,)

    def __repr__(self):
        body = "".join(f"\n  ({i}): {layer!r}" for i, layer in enumerate(self.layers))
        smoothing = f", label_smoothing={self.label_smoothing}" if self.label_smoothing else ""
        return f"Sequential({body}\n)  loss={self.loss}{smoothing}"

    # -- mode ------------------------------------------------------------------------------

    def train(self, mode=True):
        """Training mode (or evaluation mode with ``mode=False``), as torch.nn.Module.train:
        BatchNorm normalises by the batch and updates its running estimates, Dropout drops.
        fit trains in training mode. Returns the model."""
        if not isinstance(mode, (bool, np.bool_)):
            raise InvalidValueError(f"train(mode) takes True or False, got {mode!r}")
        self.training = bool(mode)
        for net in self._replica_nets or [self._net]:
            net.set_training(self.training)
        return self

    def eval(self):
        """Evaluation mode, as torch.nn.Module.eval: BatchNorm uses its running estimates,
        Dropout passes its input through. evaluate and predict run in it. Returns the model."""
        return self.train(False)

    @contextmanager
    def evaluating(self):
        """``with model.evaluating():`` runs the block in evaluation mode and puts back the
        mode it found (what predict and evaluate do)."""
        was = self.training
        self.eval()
        try:
            yield self
        finally:
            self.train(was)

    # -- placement -------------------------------------------------------------------------

    def to(self, device, batch_size=None, input_shape=None):
        """Put every layer on ``device`` ('cpu', 'cuda', 'cuda:N'), or each layer on its own
        device when given a sequence with one device per layer, or one replica per device with
        an hc.DataParallel, or where an hc.Plan says. ``"auto"`` plans (hc.plan, from measured
        costs) for training steps of ``batch_size`` samples of ``input_shape`` (default: the
        model's input_shape) and applies the plan, kept in ``model.plan_used``. Returns the
        model. All or nothing: when it fails, the model stays where it was."""
        from .data_parallel import DataParallel
        from .placement import Plan, plan

        if isinstance(device, str) and device == "auto":
            if batch_size is None:
                raise InvalidValueError("to('auto') needs batch_size: the plan depends on it")
            shape = input_shape if input_shape is not None else self.input_shape
            if shape is None:
                raise InvalidValueError("to('auto') needs input_shape (one sample, e.g. "
                                        "(1, 28, 28)): this model does not know its own")
            device = plan(self, batch_size, tuple(shape))
        if isinstance(device, Plan):
            chosen = device
            placement = chosen.placement
            if isinstance(placement, DataParallel):  # measured shares: fit keeps them balanced
                placement = DataParallel(list(placement.devices), shares=list(placement.shares),
                                         threads=list(placement.threads), rebalance=True)
            self.to(placement)
            self.plan_used = chosen
            return self
        self.plan_used = None
        if self._replicas is not None:  # an overlapped step still running ends first
            self._replicas.finish_steps()
        if isinstance(device, DataParallel):
            return self._to_replicas(device)
        devices = (list(device) if isinstance(device, (list, tuple))
                   else [device] * len(self.layers))
        if len(devices) != len(self.layers):
            raise InvalidValueError(f"placement names {len(devices)} devices for "
                                    f"{len(self.layers)} layers")
        places = [parse_device(d) for d in devices]
        self._net.to(places)
        self._replicas = self._replica_nets = None
        self.placement = tuple("cpu" if p[0] == 0 else f"cuda:{p[1]}" for p in places)
        return self

    def _to_replicas(self, dp):
        """One replica per device of ``dp``: the model's own net (the master) on the first,
        a copy of the chain on each of the others, with the master's weights."""
        specs = [layer._spec() for layer in self.layers]
        places = [[parse_device(d)] * len(self.layers) for d in dp.devices]
        others = []
        for p in places[1:]:  # built first: a failure leaves the model as it was
            net = _core.CoreNet(specs, self.loss, self.seed, self.label_smoothing)
            net.to(p)
            net.set_training(self.training)
            others.append(net)
        self._net.to(places[0])
        self._replicas = _core.CoreReplicas([self._net] + others, list(dp.threads))
        self._replica_nets = [self._net] + others
        self._replicas.broadcast()
        self.placement = dp
        return self

    def placed_copy(self, placement):
        """A copy of the model placed as ``placement`` (what to() accepts) holding the model's
        current weights: made once per placement and kept, its weights refreshed at every
        call. For running the model elsewhere (inference) without moving it."""
        key = tuple(placement) if isinstance(placement, (list, tuple)) else placement
        copy = self._copies.get(key)
        if copy is None:
            copy = Sequential(*self.layers, loss=self.loss, seed=self.seed,
                              input_shape=self.input_shape,
                              label_smoothing=self.label_smoothing).to(placement)
            self._copies[key] = copy
        copy.load_state_dict(self.state_dict(), allow_nonfinite=True)
        copy.train(self.training)
        return copy

    def stepper(self, train=None, device_data="auto", host_batches=False, batch_size=None):
        """The object fit drives to run training steps on this model as it is placed (one
        device, layers over devices, or replicas) on the (X, y) arrays ``train`` in batches of
        ``batch_size``: see heterocnn.stepper."""
        from .stepper import make_stepper

        return make_stepper(self, train, device_data, host_batches, batch_size)

    # -- input checks ----------------------------------------------------------------------

    def _input(self, x):
        if not isinstance(x, np.ndarray):
            raise DTypeError(f"input must be a numpy array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise DTypeError(f"input must be float32, got {x.dtype} with shape {x.shape} "
                             "(uint8 images are scaled by fit/evaluate, or use x / 255)")
        if not 2 <= x.ndim <= 4:
            raise ShapeError(f"input must be (N, ...) with 2 to 4 dims, got shape {x.shape}")
        if x.shape[0] == 0:
            raise ShapeError(f"input holds no samples: shape {x.shape}")
        return np.ascontiguousarray(x)

    def _labels(self, y, n):
        y = np.asarray(y)
        if y.dtype == np.bool_:
            y = y.astype(np.int64)
        if not np.issubdtype(y.dtype, np.integer):
            raise DTypeError(f"labels must be integers, got {y.dtype}")
        if y.shape != (n,):
            raise ShapeError(f"labels must have shape ({n},) to match the input, got {y.shape}")
        return np.ascontiguousarray(y, dtype=np.int64)

    def output_shape(self, input_shape):
        """Shape of the logits for an input of ``input_shape``; raises ShapeError naming the
        first layer that does not accept what it is given."""
        if (not isinstance(input_shape, (tuple, list)) or not 2 <= len(input_shape) <= 4
                or not all(_is_int(d) for d in input_shape)):
            raise ShapeError(f"input_shape must be (N, ...): 2 to 4 integers, got "
                             f"{input_shape!r:.200}")
        return self._net.output_shape(tuple(int(d) for d in input_shape))

    def layer_shapes(self, input_shape):
        """The output shape of every layer for an input of ``input_shape`` (batch first)."""
        return self._net.layer_shapes(tuple(int(d) for d in input_shape))

    # -- compute ---------------------------------------------------------------------------

    def __call__(self, x):
        """Logits (N, outputs) for float32 input x (N, C, H, W) or (N, features)."""
        return self._net.forward(self._input(x))

    forward = __call__

    def loss_and_grads(self, x, y):
        """(mean loss, {key: gradient}) for one batch; the model's weights do not change."""
        loss = self.compute_grads(x, y)
        return loss, self.gradients()

    def compute_grads(self, x, y, weight=1.0, accumulate=False, with_correct=False,
                      on_grads_ready=None):
        """Mean loss of one batch; leaves ``weight`` times its gradients in the model (added
        to what is there when ``accumulate``), to be read with gradients() or
        gradient_spans(). With ``with_correct``, (mean loss, how many samples the model
        classifies right). A data-parallel model splits the batch over its replicas and leaves
        the sum in the first replica's store (apply_update then updates every replica).

        ``on_grads_ready(offset)``, where the whole model is on the CPU and nothing
        accumulates, is called during the backward pass each time the gradients from float
        ``offset`` of the CPU gradient span (gradient_spans()) to its end are final, offset
        decreasing: read them with gradient_span("cpu", offset, end) and start summing them
        over processes while the pass goes on. It is not called on other placements (the
        gradients are final when compute_grads returns); what it raises comes up after the
        pass."""
        x = self._input(x)
        weight = float(weight)
        if not np.isfinite(weight) or weight < 0:
            raise InvalidValueError(f"weight must be finite and >= 0, got {weight}")
        y = self._labels(y, x.shape[0])
        if self._replicas is not None:
            if accumulate:
                raise InvalidValueError("accumulate=True needs a model on one placement, not "
                                        f"data parallel over {list(self.placement.devices)}")
            counts = self.placement.sub_batches(x.shape[0])
            loss, right = self._replicas.compute_grads(x, x.shape, y, counts, weight)
        else:
            loss, right = self._net.compute_grads(x, y, weight, bool(accumulate), on_grads_ready)
        return (loss, right) if with_correct else loss

    def gradients(self):
        """{key: host copy of the gradient} of the last compute_grads / loss_and_grads /
        training step, keyed and laid out like state_dict()."""
        return OrderedDict((key, self._net.get(i, j, "grad"))
                           for key, (i, j) in zip(self._keys, self._index()))

    def train_step(self, x, y, opt, check_finite=False):
        """One SGD step on (x, y) in a single call into the core; returns the mean loss.

        ``check_finite=True``: a step whose loss or resulting weights hold NaN or inf is
        undone (the model as it was before it) and raises NonFiniteError naming the first
        layer where the NaN/inf appeared, as fit(on_nan="raise") does (``step`` is None). It
        copies the weights and momenta every call: slower; the default checks nothing."""
        if check_finite:
            from .nan_guard import checked_step

            return checked_step(self, x, y, opt)
        return (self._start_step(x, y, opt) + self._finish_steps())[-1][0]

    def train_step_on(self, data, idx, opt):
        """One SGD step on the samples ``idx`` (integer array) of ``data``, a DeviceDataset on
        the GPU the whole model is on: the batch is gathered there. Returns the mean loss."""
        return (self._start_step_on(data, idx, opt) + self._finish_steps())[-1][0]

    def _start_step(self, x, y, opt):
        """Starts a step on (x, y) and returns [(loss, correct)] of the steps finished since
        the last report: this one on the CPU, the one before on a GPU (so the caller prepares
        the next batch while this one runs). _finish_steps() reports the last one."""
        self._check_optimizer(opt)
        x = self._input(x)
        y = self._labels(y, x.shape[0])
        if self._replicas is not None:
            counts = self.placement.sub_batches(x.shape[0])
            return self._replica_start(x, y, counts, opt)
        return self._net.start_step(x, y, opt._core)

    def _replica_start(self, x, y, counts, opt, on=None):
        """One data-parallel step, replica r taking counts[r] rows. x and y hold them in
        replica order; with ``on`` = (DeviceDataset, indices, r), replica r gathers its rows
        from the data set on its GPU and x, y hold the others' alone. Started without waiting
        where the replicas overlap their steps (a GPU master, CPU replicas): returns
        [(loss, correct)] of the steps finished since the last report; _finish_steps()
        reports the last one."""
        self._check_optimizer(opt)
        y = np.ascontiguousarray(y, dtype=np.int64)
        if on is None:
            return self._replicas.start_step(x, x.shape, y, counts, opt._core)
        data, idx, r = on
        return self._replicas.start_step(x, (sum(counts),) + tuple(data.sample_shape), y, counts,
                                         opt._core, data._core,
                                         np.ascontiguousarray(idx, dtype=np.int64), r)

    def _replica_seconds(self):
        """Seconds of each replica's gradient pass in the last data-parallel step."""
        return self._replicas.last_seconds()

    def _start_step_on(self, data, idx, opt):
        """_start_step on the samples ``idx`` of a DeviceDataset."""
        from .data_checks import check_label_range
        from .device_data import DeviceDataset

        self._check_optimizer(opt)
        if not isinstance(data, DeviceDataset):
            raise DTypeError(f"train_step_on needs a DeviceDataset, got {type(data).__name__}")
        idx = np.asarray(idx)
        if not np.issubdtype(idx.dtype, np.integer) or idx.ndim != 1:
            raise DTypeError(f"indices must be a 1-D integer array, got {idx.dtype} {idx.shape}")
        check_label_range(self, data.sample_shape, *data.label_range, "data")
        if self._replicas is not None:
            raise InvalidValueError("train_step_on runs one device; a data-parallel model "
                                    "trains on a DeviceDataset through fit")
        return self._net.start_step_on(data._core, np.ascontiguousarray(idx, dtype=np.int64),
                                       opt._core)

    def _finish_steps(self):
        """[(loss, correct)] of the step still running, if any, after waiting for it."""
        if self._replicas is not None:
            return self._replicas.finish_steps()
        return self._net.finish_steps()

    def _check_optimizer(self, opt):
        if getattr(opt, "model", None) is not self:
            raise InvalidValueError("the optimizer was made for another model")

    # -- profiling -------------------------------------------------------------------------

    def profile(self, enable=True):
        """Start (and zero) or stop per-layer timing of forward and backward."""
        self._net.set_profiling(bool(enable))

    def layer_times(self):
        """Mean seconds per call of each layer's forward and backward since profile():
        [{"layer": "0: Conv2d(...)", "forward_s": ..., "backward_s": ...}, ...]."""
        out = []
        for i, (f, nf, b, nb) in enumerate(self._net.layer_times()):
            out.append({"layer": f"{i}: {self.layers[i]!r}", "forward_s": f / max(nf, 1),
                        "backward_s": b / max(nb, 1)})
        return out

    # -- parameters ------------------------------------------------------------------------

    def _index(self):
        """(layer, index within layer) of every parameter, in state_dict order."""
        counts = {}
        for layer, _, _ in self._params:
            counts[layer] = counts.get(layer, -1) + 1
            yield layer, counts[layer]

    def _entries(self, persistent_only=True):
        """[(key, layer, index, shape, dtype, is_buffer)] in state_dict order: per layer its
        parameters, then its buffers (torch.nn's order); with ``persistent_only`` the buffers
        state_dict holds, else all of them (checkpoints keep the rest)."""
        out = []
        params = list(zip(self._params, self._index()))
        buffers, seen = [], {}
        for layer, name, shape, dtype, persistent in self._buffers:
            seen[layer] = seen.get(layer, -1) + 1
            if persistent or not persistent_only:
                buffers.append((layer, name, shape, dtype, seen[layer]))
        for i in range(len(self.layers)):
            out += [(f"{i}.{name}", i, j, tuple(shape), np.float32, False)
                    for (layer, name, shape), (_, j) in params if layer == i]
            out += [(f"{i}.{name}", i, k, tuple(shape), dtype, True)
                    for layer, name, shape, dtype, k in buffers if layer == i]
        return out

    def _read(self, entry):
        _, layer, index, _, _, is_buffer = entry
        return (self._net.get_buffer(layer, index) if is_buffer
                else self._net.get(layer, index))

    def state_dict(self):
        """{'0.weight': (out, in, k, k), '0.bias': (out,), ...}: copies, laid out as in
        torch.nn.Sequential, so weights move between the two both ways. Layers with buffers
        (BatchNorm) add them after their parameters ('1.running_mean', ...; int64
        num_batches_tracked), as torch does."""
        return OrderedDict((e[0], self._read(e)) for e in self._entries())

    def buffers(self, all_buffers=False):
        """{key: host copy} of the layer buffers state_dict holds (with ``all_buffers``, also
        those it does not, such as Dropout's step counter, which checkpoints keep)."""
        return OrderedDict((e[0], self._read(e)) for e in self._entries(not all_buffers)
                           if e[5])

    def load_state_dict(self, state, allow_nonfinite=False):
        """Copy weights (and buffers) in. Every key, shape and value is checked first; on any
        mismatch an error names it and the model keeps its old weights. NaN and inf are
        refused unless ``allow_nonfinite`` (for putting back a snapshot exactly as it was).
        Non-persistent buffers (Dropout's step counter) may be given too (as
        buffers(all_buffers=True) returns them) and are then loaded."""
        entries = self._entries()
        keys = [e[0] for e in entries]
        self._load(state, entries, {e[0]: e for e in self._entries(False) if e[0] not in keys},
                   allow_nonfinite)

    def load_buffers(self, buffers):
        """Copy layer buffers in (keys and arrays as buffers(all_buffers=True) gives them; the
        persistent ones are required, the others optional); checked first, as
        load_state_dict. What keeps data-parallel ranks' BatchNorm statistics equal."""
        entries = [e for e in self._entries() if e[5]]
        keys = [e[0] for e in entries]
        self._load(buffers, entries, {e[0]: e for e in self._entries(False)
                                      if e[5] and e[0] not in keys}, False)

    def set_random_stream(self, stream):
        """The random stream Dropout layers draw from: 0 (the default) for a model on its own;
        rank r of an MPI group takes r, so that copies of one model with the same seed and
        step draw independent masks. hc.DataParallel's replica k draws stream
        ``stream * 2**32 + k`` (stream below 2^31 then)."""
        limit = 2**31 if self._replicas is not None else 2**63
        if not _is_int(stream) or not 0 <= stream < limit:
            raise InvalidValueError(f"stream must be an integer from 0 to {limit} - 1, got "
                                    f"{stream!r}")
        if self._replicas is not None:
            self._replicas.set_random_stream(int(stream) << 32)
        else:
            self._net.set_random_stream(int(stream))

    def _load(self, state, entries, optional, allow_nonfinite):
        """load_state_dict's checks and copy: every key of ``entries`` required, those of
        ``optional`` ({key: entry}) allowed."""
        if not hasattr(state, "keys"):
            raise DTypeError(f"state_dict must be a mapping, got {type(state).__name__}")
        keys = [e[0] for e in entries]
        missing = [k for k in keys if k not in state]
        unexpected = [k for k in state.keys() if k not in keys and k not in optional]
        if missing or unexpected:
            raise StateDictError(f"state_dict does not match the model: missing keys {missing}, "
                                 f"unexpected keys {unexpected}")
        entries += [optional[k] for k in state.keys() if k in optional]
        arrays = []
        for entry in entries:
            key, shape, dtype = entry[0], entry[3], entry[4]
            try:
                a = np.asarray(state[key])
            except Exception as e:  # an object numpy cannot make an array of
                raise DTypeError(f"state_dict[{key!r}] is not an array: {e!r:.200}") from None
            # Real numbers only: no strings, bools, complex numbers or objects, which a cast
            # to float32 would parse, truncate or drop the imaginary part of.
            if a.dtype.kind not in "fiu":
                raise DTypeError(f"state_dict[{key!r}] has dtype {a.dtype}, not a real number "
                                 "type (float or integer)")
            if a.shape != shape:  # before any cast: a 0-d array stays 0-d
                raise ShapeError(f"state_dict[{key!r}] has shape {a.shape}, the model expects "
                                 f"{shape}")
            if dtype == np.int64:
                if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
                    raise InvalidValueError(f"state_dict[{key!r}] must hold integers")
                if a.size and (a.min() < 0 or a.max() >= 2**62):
                    raise InvalidValueError(f"state_dict[{key!r}] must be in [0, 2^62)")
                a = np.ascontiguousarray(a, dtype=np.int64)
            else:
                with np.errstate(over="ignore"):  # beyond float32's range: inf, refused below
                    a = np.ascontiguousarray(a, dtype=np.float32)
                if not allow_nonfinite and not np.isfinite(a).all():
                    raise InvalidValueError(f"state_dict[{key!r}] holds NaN or inf")
            arrays.append((entry, a))
        for (_, layer, index, _, _, is_buffer), a in arrays:
            if is_buffer:
                self._net.set_buffer(layer, index, a)
            else:
                self._net.set(layer, index, a)
        if self._replicas is not None:
            self._replicas.broadcast()

    def parameters(self):
        """Names and shapes of the parameters, in state_dict order."""
        return [(key, tuple(shape)) for key, (_, _, shape) in zip(self._keys, self._params)]

    def gradient_spans(self):
        """[(device, float32 array)]: host copies of the parameter store's gradient spans, one
        per device that holds parameters (the layout an optimizer and a reducer work on: every
        parameter there, each padded to 64 floats with zeros)."""
        return [(d, self._net.grads_span(d)) for d in self._net.store_devices()]

    def gradient_span(self, device, lo, hi):
        """A host copy of floats [lo, hi) of the gradient span on ``device`` (as in
        gradient_spans()); safe to call from compute_grads' on_grads_ready."""
        return self._net.grads_span(device, int(lo), int(hi))

    def set_gradient_spans(self, spans):
        """Write spans as gradient_spans() returns them (e.g. after summing them over ranks)."""
        for device, array in spans:
            self._net.set_grads_span(device, np.ascontiguousarray(array, dtype=np.float32))

    def apply_update(self, opt):
        """``opt``'s update of every parameter from the gradients the model holds (as a
        training step ends, after compute_grads or a reduction of gradients)."""
        self._check_optimizer(opt)
        if self._replicas is not None:  # the master's update, then its weights to the others
            self._replicas.apply_update(opt._core)
        else:
            self._net.apply_update(opt._core)

    def store(self):
        """The core handle of the model's parameter store, which an optimizer updates and
        lays its state out by (hc.SGD uses it; nothing else needs it)."""
        return self._net

    def step_bytes(self, input_shape, mode="train", optimizer_states=1):
        """{device: (parameter bytes, step buffer bytes, bytes not allocated yet)} of one
        step on ``input_shape`` (batch first) as the model is placed, read from the step plan
        the core allocates by; nothing is allocated. Parameters count their value, gradient and
        ``optimizer_states`` optimizer buffers; mode "infer" plans a forward pass alone."""
        if mode not in ("train", "infer"):
            raise InvalidValueError(f"mode must be 'train' or 'infer', got {mode!r}")
        shape = tuple(int(d) for d in input_shape)
        if self._replicas is None or mode == "infer":  # inference runs on the master alone
            return self._net.step_bytes(shape, mode, int(optimizer_states))
        out = {}  # replicas on one device add up
        for net, rows in zip(self._replica_nets, self.placement.sub_batches(shape[0])):
            if rows == 0:
                continue
            for device, sizes in net.step_bytes((rows,) + shape[1:], mode,
                                                int(optimizer_states)).items():
                out[device] = tuple(a + b for a, b in zip(out.get(device, (0, 0, 0)), sizes))
        return out

    def summary(self, input_shape, batch_size=64):
        """Per layer: output shape, parameters, forward FLOPs, output memory in a training step
        of ``batch_size``, device; and the step's memory per device (hc.Summary; print it)."""
        from .summary import summary

        return summary(self, input_shape, batch_size)
