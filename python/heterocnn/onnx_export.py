"""ONNX export: the model's inference graph (logits, no loss) built with onnx.helper from
Conv, Relu, Sigmoid, MaxPool, Flatten and Gemm (and AveragePool, GlobalAveragePool, Tanh,
LeakyRelu, and GELU as Erf, Div, Add and Mul, or Tanh, Add and Mul for its tanh form: each
layer's nodes are in registry.py), weights as initializers, batch dim dynamic."""

import numpy as np

from .atomic import check_writable, write_atomic
from .errors import DTypeError, InvalidValueError
from .nn import Sequential
from .registry import kind_of

OPSET = 17
IR_VERSION = 8  # ONNX 1.10 and later: every runtime of the last years reads it


def export_onnx(model, path, input_shape=(1, 28, 28)):
    """Write ``model`` as an ONNX file at ``path``: input "input" (batch, *input_shape) float32,
    output "logits" (batch, outputs). ``input_shape`` is one sample's shape (C, H, W) or
    (features,). Checked with onnx.checker; returns ``path``. Written atomically (see
    hc.atomic.write_atomic): a failed export leaves the previous file at ``path`` intact."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(model, Sequential):
        raise DTypeError(f"export_onnx needs a heterocnn Sequential, got {type(model).__name__}")
    if (not isinstance(input_shape, (tuple, list)) or not 1 <= len(input_shape) <= 3
            or not all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
                       for d in input_shape)):
        raise InvalidValueError(f"input_shape must be one sample's shape, 1 to 3 positive "
                                f"integers, got {input_shape!r:.200}")
    check_writable(path, "ONNX path")
    # One sample's shape at each layer's input (ShapeError naming a layer that does not fit).
    shapes = [tuple(input_shape)] + [tuple(s[1:]) for s in
                                     model.layer_shapes((1,) + tuple(input_shape))]
    out_dim = shapes[-1][0]
    weights = model.state_dict()
    nodes, x = [], "input"
    for i, layer in enumerate(model.layers):
        new, x = kind_of(layer).to_onnx(layer, i, x, shapes[i], helper)
        nodes += new
    nodes.append(helper.make_node("Identity", [x], ["logits"]))
    graph = helper.make_graph(
        nodes, "heterocnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                       ["batch", *map(int, input_shape)])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", out_dim])],
        [numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in weights.items()])
    # A fixed IR version rather than the onnx package's newest, so that older runtimes load
    # the file too (onnxruntime 1.30 stops at IR 13 while onnx 1.23 writes 14 by default).
    proto = helper.make_model(graph, producer_name="heterocnn", ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(proto)
    write_atomic(path, proto.SerializeToString())
    return path
