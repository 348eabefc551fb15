"""model.summary(input_shape): per layer the output shape, parameters, forward FLOPs, the
memory of its output in a training step and its device; then the step's memory per device as
the core plans it (hc.estimate_memory)."""

import math

from ._core import CoreLayer
from .memory import estimate_memory
from .registry import forward_flops


def layer_shapes(layers, input_shape):
    """Output shape of each layer for one sample of ``input_shape`` (C, H, W) or (features,),
    by the core's shape rules (each layer's output_shape); ShapeError where one does not fit."""
    shape, out = (1,) + tuple(int(d) for d in input_shape), []
    for layer in layers:
        kind, args = layer._spec()
        shape = CoreLayer(kind, args).output_shape(shape)
        out.append(tuple(shape[1:]))
    return out


def _bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _count(n):
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return str(n)


class Summary:
    """rows: [{"layer", "output_shape", "params", "flops", "output_bytes", "device"}]
    (flops per sample, output_bytes for the batch); params, flops: totals; memory: the
    step's bytes per device, {"cpu": {"parameters", "buffers", "missing"}, ...}.
    str() is the table."""

    def __init__(self, model, input_shape, batch_size):
        model.output_shape((batch_size,) + tuple(input_shape))  # the core's error if not
        shapes = [s[1:] for s in model.layer_shapes((1,) + tuple(input_shape))]
        self.input_shape, self.batch_size = tuple(input_shape), batch_size
        self.rows = []
        devices = (model.placement if isinstance(model.placement, tuple)
                   else [f"replicas {list(model.placement.devices)}"] * len(model.layers))
        for i, (layer, s_out, device) in enumerate(zip(model.layers, shapes, devices)):
            self.rows.append({
                "layer": f"{i}: {layer!r}", "output_shape": s_out,
                "params": sum(math.prod(p) for p in layer.param_shapes()),
                "flops": forward_flops(layer, s_out),
                "output_bytes": 4 * batch_size * math.prod(s_out), "device": device})
        self.params = sum(r["params"] for r in self.rows)
        self.flops = sum(r["flops"] for r in self.rows)
        self.memory = estimate_memory(model, batch_size, input_shape)
        self.loss = model.loss

    def __str__(self):
        head = ("layer", "output shape", "params", "FLOPs", f"output (batch {self.batch_size})",
                "device")
        body = [(r["layer"], "x".join(map(str, r["output_shape"])), f"{r['params']:,}",
                 _count(r["flops"]), _bytes(r["output_bytes"]), r["device"]) for r in self.rows]
        widths = [max(len(row[k]) for row in [head] + body) for k in range(len(head))]
        line = lambda row: "  ".join(c.ljust(w) if k in (0, 1, 5) else c.rjust(w)  # noqa: E731
                                     for k, (c, w) in enumerate(zip(row, widths))).rstrip()
        rule = "-" * len(line(head))
        out = [f"input {'x'.join(map(str, self.input_shape))}, loss {self.loss}", line(head), rule]
        out += [line(row) for row in body] + [rule]
        out.append(f"total: {self.params:,} parameters, {_count(self.flops)} FLOPs forward per "
                   "sample (a multiply-add counts 2)")
        for place, m in self.memory.items():
            out.append(f"training step on {place}, batch {self.batch_size}: "
                       f"{_bytes(m['parameters'] + m['buffers'])} (parameters with gradients "
                       f"and momenta {_bytes(m['parameters'])}, activations, gradients and "
                       f"workspaces {_bytes(m['buffers'])})")
        return "\n".join(out)

    __repr__ = __str__


def summary(model, input_shape, batch_size=64):
    """The Summary of ``model`` for samples of ``input_shape`` and training batches of
    ``batch_size``."""
    return Summary(model, input_shape, int(batch_size))
