"""The networks of the main job and the benchmarks. Each takes the input shape (C, H, W) and
the number of classes (default 1 x 28 x 28 and 10: Fashion-MNIST); the first layer takes C
channels and the last gives one output per class, the first Linear after the convolutions
takes what they produce for H x W. A size a network cannot take is a ShapeError naming it."""

import math

from .errors import HeteroCNNError, InvalidValueError, ShapeError
from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from .summary import layer_shapes


def _shape(input_shape, classes):
    try:
        c, h, w = (int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise InvalidValueError(f"input_shape must be (C, H, W), got {input_shape!r}") from None
    if min(c, h, w) < 1 or isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise InvalidValueError(f"input_shape must be positive and classes an integer >= 2; "
                                f"got {input_shape!r} and {classes!r}")
    return c, h, w


def features_out(name, layers, input_shape, needs):
    """The number of values ``layers`` (convolutions and pooling) give for one sample of
    ``input_shape``, by the core's shape rules; ShapeError saying that network ``name``
    cannot take that size and what it ``needs``."""
    try:
        shape = layer_shapes(layers, input_shape)[-1]
    except HeteroCNNError:
        shape = (0,)
    if math.prod(shape) == 0:
        raise ShapeError(f"{name} cannot take {'x'.join(map(str, input_shape))} images: it "
                         f"needs {needs}; use a larger --size or another model (mlp takes any)")
    return math.prod(shape)


def mlp(seed=0, input_shape=(1, 28, 28), classes=10):
    c, h, w = _shape(input_shape, classes)
    return Sequential(Flatten(), Linear(c * h * w, 256), ReLU(), Linear(256, 128), ReLU(),
                      Linear(128, classes), seed=seed, input_shape=(c, h, w))


def lenet5(seed=0, input_shape=(1, 28, 28), classes=10):
    c, h, w = _shape(input_shape, classes)
    features = [Conv2d(c, 6, kernel_size=5, padding=2), ReLU(), MaxPool2d(2),
                Conv2d(6, 16, kernel_size=5), ReLU(), MaxPool2d(2)]
    n = features_out("lenet5", features, (c, h, w), "H and W of at least 12")
    return Sequential(*features, Flatten(), Linear(n, 120), ReLU(), Linear(120, 84), ReLU(),
                      Linear(84, classes), seed=seed, input_shape=(c, h, w))


def convnet(seed=0, input_shape=(1, 28, 28), classes=10):
    c, h, w = _shape(input_shape, classes)
    features = [Conv2d(c, 32, 3, padding=1), ReLU(), Conv2d(32, 32, 3, padding=1), ReLU(),
                MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU(), Conv2d(64, 64, 3, padding=1),
                ReLU(), MaxPool2d(2)]
    n = features_out("convnet", features, (c, h, w), "H and W of at least 4")
    return Sequential(*features, Flatten(), Linear(n, 256), ReLU(), Linear(256, classes),
                      seed=seed, input_shape=(c, h, w))


MODELS = {"mlp": mlp, "lenet5": lenet5, "convnet": convnet}
