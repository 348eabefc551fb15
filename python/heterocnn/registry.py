"""The one list of layer kinds in Python. For each kind: its specification class (nn.py),
the torch.nn module it is (interop.to_torch), the ONNX nodes it becomes (onnx_export) and
its forward FLOPs (summary). hc.load rebuilds layers from it by kind (``cls.from_spec``): a
new layer is its class (and its core op, core/src/layer.cpp's make_layer) plus one entry
here."""

import math
from dataclasses import dataclass
from typing import Callable

from . import nn


@dataclass(frozen=True)
class LayerKind:
    cls: type
    # (layer, torch.nn) -> the equivalent torch module
    to_torch: Callable
    # (layer, i, x, shape, onnx.helper) -> ([nodes], output name): layer i applied to tensor x,
    # one sample of which has ``shape`` (e.g. (C, H, W); the batch dimension is dynamic), its
    # parameters the initializers "i.weight" and "i.bias" (layer.param_names())
    to_onnx: Callable
    # (layer, number of outputs of one sample) -> floating-point operations of its forward
    # for that sample (a multiply-add is 2)
    flops: Callable = lambda layer, n_out: 0


def _params(layer, i):
    """The initializer names of layer i's parameters (no bias input for bias=False)."""
    return [f"{i}.{name}" for name in layer.param_names()]


def _onnx_conv(layer, i, x, shape, helper):
    k, p, y = layer.kernel_size, layer.padding, f"layer{i}"
    return [helper.make_node("Conv", [x, *_params(layer, i)], [y], kernel_shape=[k, k],
                             strides=[layer.stride] * 2, pads=[p, p, p, p])], y


def _onnx_linear(layer, i, x, shape, helper):  # x @ W.T + b
    y = f"layer{i}"
    return [helper.make_node("Gemm", [x, *_params(layer, i)], [y], transB=1)], y


def _onnx_maxpool(layer, i, x, shape, helper):
    k, y = layer.kernel_size, f"layer{i}"
    return [helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k],
                             strides=[layer.stride] * 2)], y


def _onnx_avgpool(layer, i, x, shape, helper):  # zero padding counted, as torch's default
    k, p, y = layer.kernel_size, layer.padding, f"layer{i}"
    return [helper.make_node("AveragePool", [x], [y], kernel_shape=[k, k],
                             strides=[layer.stride] * 2, pads=[p, p, p, p],
                             count_include_pad=1)], y


def _averaging_matrix(n, out):
    """(out, n) float32: row i averages torch's adaptive window i over n positions,
    [floor(i*n/out), ceil((i+1)*n/out))."""
    import numpy as np

    a = np.zeros((out, n), np.float32)
    for i in range(out):
        lo, hi = i * n // out, -(-(i + 1) * n // out)
        a[i, lo:hi] = 1.0 / (hi - lo)
    return a


def _onnx_adaptive_avgpool(layer, i, x, shape, helper):
    """ONNX has no adaptive pooling, so by the input's (H, W): GlobalAveragePool for output 1;
    AveragePool with kernel = stride = (H/out, W/out) where out divides both (torch's windows
    are then that tiling); else exactly, as the windows' means are separable: y = A_H x A_W^T
    by two MatMuls with constant averaging matrices (A_H (out, H), A_W^T (W, out))."""
    from onnx import numpy_helper

    o, y = layer.output_size, f"layer{i}"
    _, h, w = shape
    if o == 1:
        return [helper.make_node("GlobalAveragePool", [x], [y])], y
    if h % o == 0 and w % o == 0:
        k = [h // o, w // o]
        return [helper.make_node("AveragePool", [x], [y], kernel_shape=k, strides=k)], y
    p = f"layer{i}_"
    mats = ((p + "avg_h", _averaging_matrix(h, o)),
            (p + "avg_wt", _averaging_matrix(w, o).T.copy()))
    return [*(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(a, name))
              for name, a in mats),
            helper.make_node("MatMul", [x, p + "avg_wt"], [p + "rows"]),  # (N, C, H, out)
            helper.make_node("MatMul", [p + "avg_h", p + "rows"], [y])], y   # (N, C, out, out)


def _onnx_gelu(layer, i, x, shape, helper):
    """GELU from opset-13 nodes (Gelu itself, with its approximate attribute, needs opset 20):
    the exact form x/2 * (1 + erf(x / sqrt 2)) from Erf, Div, Add and Mul; the tanh form
    x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))) from Mul, Add and Tanh; both are
    x/2 * (1 + g), g the erf or the tanh term."""
    from onnx import TensorProto

    def const(name, value):
        return helper.make_node("Constant", [], [name], value=helper.make_tensor(
            name, TensorProto.FLOAT, [], [value]))

    p, y = f"layer{i}_", f"layer{i}"
    if layer.approximate == "tanh":
        inner = [const(p + "beta", math.sqrt(2.0 / math.pi)), const(p + "kappa", 0.044715),
                 helper.make_node("Mul", [x, x], [p + "x2"]),
                 helper.make_node("Mul", [p + "x2", x], [p + "x3"]),
                 helper.make_node("Mul", [p + "x3", p + "kappa"], [p + "kx3"]),
                 helper.make_node("Add", [x, p + "kx3"], [p + "poly"]),
                 helper.make_node("Mul", [p + "poly", p + "beta"], [p + "u"]),
                 helper.make_node("Tanh", [p + "u"], [p + "g"])]
    else:
        inner = [const(p + "sqrt2", math.sqrt(2.0)),
                 helper.make_node("Div", [x, p + "sqrt2"], [p + "scaled"]),
                 helper.make_node("Erf", [p + "scaled"], [p + "g"])]
    return inner + [const(p + "one", 1.0), const(p + "half", 0.5),
                    helper.make_node("Add", [p + "g", p + "one"], [p + "cdf2"]),
                    helper.make_node("Mul", [x, p + "cdf2"], [p + "x_cdf2"]),
                    helper.make_node("Mul", [p + "x_cdf2", p + "half"], [y])], y


def _onnx_op(op, **attrs):
    def nodes(layer, i, x, shape, helper):
        y = f"layer{i}"
        return [helper.make_node(op, [x], [y], **attrs)], y
    return nodes


# -- normalisation and dropout (exported in inference form) ---------------------------------

def _onnx_batchnorm(layer, i, x, shape, helper):
    """BatchNormalization with the running estimates (inference): initializers "i.weight",
    "i.bias", "i.running_mean", "i.running_var"; without affine, constant 1 and 0."""
    import numpy as np
    from onnx import numpy_helper

    y, nodes = f"layer{i}", []
    scale, bias = f"{i}.weight", f"{i}.bias"
    if not layer.affine:
        scale, bias = f"layer{i}.scale", f"layer{i}.bias"
        c = layer.num_features
        for name, value in ((scale, np.ones(c, np.float32)), (bias, np.zeros(c, np.float32))):
            nodes.append(helper.make_node("Constant", [], [name],
                                          value=numpy_helper.from_array(value, name)))
    nodes.append(helper.make_node(
        "BatchNormalization", [x, scale, bias, f"{i}.running_mean", f"{i}.running_var"], [y],
        epsilon=layer.eps))
    return nodes, y


def _torch_batchnorm(layer, tnn):
    cls = tnn.BatchNorm2d if isinstance(layer, nn.BatchNorm2d) else tnn.BatchNorm1d
    return cls(layer.num_features, eps=layer.eps, momentum=layer.momentum, affine=layer.affine)


_NORM_AND_DROPOUT = (
    LayerKind(nn.BatchNorm2d, _torch_batchnorm, _onnx_batchnorm, lambda l, n: 2 * n),
    LayerKind(nn.BatchNorm1d, _torch_batchnorm, _onnx_batchnorm, lambda l, n: 2 * n),
    LayerKind(nn.Dropout, lambda l, tnn: tnn.Dropout(l.p), _onnx_op("Identity"), lambda l, n: n),
    LayerKind(nn.Dropout2d, lambda l, tnn: tnn.Dropout2d(l.p), _onnx_op("Identity"),
              lambda l, n: n),
)

LAYERS = {kind.cls.__name__: kind for kind in (
    LayerKind(nn.Linear, lambda l, tnn: tnn.Linear(l.in_features, l.out_features, bias=l.bias),
              _onnx_linear, lambda l, n: n * (2 * l.in_features + int(l.bias))),
    LayerKind(nn.Conv2d, lambda l, tnn: tnn.Conv2d(l.in_channels, l.out_channels, l.kernel_size,
                                                   stride=l.stride, padding=l.padding,
                                                   bias=l.bias),
              _onnx_conv, lambda l, n: n * (2 * l.in_channels * l.kernel_size ** 2 + int(l.bias))),
    LayerKind(nn.MaxPool2d, lambda l, tnn: tnn.MaxPool2d(l.kernel_size, stride=l.stride),
              _onnx_maxpool, lambda l, n: n * l.kernel_size ** 2),  # comparisons
    LayerKind(nn.Flatten, lambda l, tnn: tnn.Flatten(), _onnx_op("Flatten", axis=1)),
    LayerKind(nn.ReLU, lambda l, tnn: tnn.ReLU(), _onnx_op("Relu"), lambda l, n: n),
    LayerKind(nn.Sigmoid, lambda l, tnn: tnn.Sigmoid(), _onnx_op("Sigmoid"), lambda l, n: n),
    # average pooling and the activations of issue 13 (FLOPs: adds and a division per output;
    # one per element for the activations, as for Sigmoid)
    LayerKind(nn.AvgPool2d,
              lambda l, tnn: tnn.AvgPool2d(l.kernel_size, stride=l.stride, padding=l.padding),
              _onnx_avgpool, lambda l, n: n * l.kernel_size ** 2),
    LayerKind(nn.AdaptiveAvgPool2d, lambda l, tnn: tnn.AdaptiveAvgPool2d(l.output_size),
              _onnx_adaptive_avgpool),  # the window sizes depend on the input: not counted
    LayerKind(nn.Tanh, lambda l, tnn: tnn.Tanh(), _onnx_op("Tanh"), lambda l, n: n),
    LayerKind(nn.LeakyReLU, lambda l, tnn: tnn.LeakyReLU(l.negative_slope),
              lambda l, i, x, shape, helper: _onnx_op("LeakyRelu", alpha=l.negative_slope)(
                  l, i, x, shape, helper),
              lambda l, n: n),
    LayerKind(nn.GELU, lambda l, tnn: tnn.GELU(approximate=l.approximate), _onnx_gelu,
              lambda l, n: n),
) + _NORM_AND_DROPOUT}


def forward_flops(layer, out_shape):
    """Floating-point operations of ``layer``'s forward for one sample of output ``out_shape``."""
    return kind_of(layer).flops(layer, math.prod(out_shape))


def kind_of(layer):
    """The registry entry of a layer object; TypeError for anything that is not one."""
    kind = LAYERS.get(type(layer).__name__)
    if kind is None or type(layer) is not kind.cls:
        raise TypeError(f"{layer!r} is not a heterocnn layer kind")
    return kind
