"""The networks of the main job and the benchmarks. Each takes the input shape (C, H, W) and
the number of classes (default 1 x 28 x 28 and 10: Fashion-MNIST); the first layer takes C
channels and the last gives one output per class, the first Linear after the convolutions
takes what they produce for H x W. A size a network cannot take is a ShapeError naming it.
``label_smoothing`` is the cross-entropy's (torch.nn.CrossEntropyLoss's), 0 by default."""

import math

from .errors import HeteroCNNError, InvalidValueError, ShapeError
from .nn import (
    AdaptiveAvgPool2d,
    BatchNorm2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sequential,
)
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


def mlp(seed=0, input_shape=(1, 28, 28), classes=10, label_smoothing=0.0):
    c, h, w = _shape(input_shape, classes)
    return Sequential(Flatten(), Linear(c * h * w, 256), ReLU(), Linear(256, 128), ReLU(),
                      Linear(128, classes), seed=seed, input_shape=(c, h, w),
                      label_smoothing=label_smoothing)


def lenet5(seed=0, input_shape=(1, 28, 28), classes=10, label_smoothing=0.0):
    c, h, w = _shape(input_shape, classes)
    features = [Conv2d(c, 6, kernel_size=5, padding=2), ReLU(), MaxPool2d(2),
                Conv2d(6, 16, kernel_size=5), ReLU(), MaxPool2d(2)]
    n = features_out("lenet5", features, (c, h, w), "H and W of at least 12")
    return Sequential(*features, Flatten(), Linear(n, 120), ReLU(), Linear(120, 84), ReLU(),
                      Linear(84, classes), seed=seed, input_shape=(c, h, w),
                      label_smoothing=label_smoothing)


def convnet(seed=0, input_shape=(1, 28, 28), classes=10, label_smoothing=0.0):
    c, h, w = _shape(input_shape, classes)
    features = [Conv2d(c, 32, 3, padding=1), ReLU(), Conv2d(32, 32, 3, padding=1), ReLU(),
                MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU(), Conv2d(64, 64, 3, padding=1),
                ReLU(), MaxPool2d(2)]
    n = features_out("convnet", features, (c, h, w), "H and W of at least 4")
    return Sequential(*features, Flatten(), Linear(n, 256), ReLU(), Linear(256, classes),
                      seed=seed, input_shape=(c, h, w), label_smoothing=label_smoothing)


def bnnet(seed=0, input_shape=(1, 28, 28), classes=10, label_smoothing=0.1):
    """A small conv-BatchNorm-ReLU net in the spirit of the CIFAR-10 speed-runs, for 28 x 28
    images: a first 3x3 convolution of 32 channels, then three stages of two 3x3 convolutions
    (32, 64, 128 channels) each followed by MaxPool2d(2), every convolution without bias and
    followed by BatchNorm2d and ReLU; global average pooling and one Linear. Trained with its
    recipe (hc.default_recipe("bnnet"): SGD with Nesterov momentum, label smoothing 0.1, the
    default augmentation, 20 epochs) it reaches about 94.5% on Fashion-MNIST; found by
    tools/bnnet_torch_search.py (benchmarks/bnnet-search-h200.json). Label smoothing 0.1 by
    default, as its recipe trains it."""
    c, h, w = _shape(input_shape, classes)

    def block(cin, cout):
        return [Conv2d(cin, cout, 3, padding=1, bias=False), BatchNorm2d(cout), ReLU()]

    features = block(c, 32)
    for cin, cout in ((32, 32), (32, 64), (64, 128)):
        features += block(cin, cout) + block(cout, cout) + [MaxPool2d(2)]
    features_out("bnnet", features, (c, h, w), "H and W of at least 8")
    return Sequential(*features, AdaptiveAvgPool2d(1), Flatten(), Linear(128, classes),
                      seed=seed, input_shape=(c, h, w), label_smoothing=label_smoothing)


MODELS = {"mlp": mlp, "lenet5": lenet5, "convnet": convnet, "bnnet": bnnet}
