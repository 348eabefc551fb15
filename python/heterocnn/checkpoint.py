"""Checkpoints: a model, its optimizer and the training loop's state in one safetensors file.

File layout (safetensors: an 8-byte little-endian header length, a JSON header, the raw data):

- tensors ``"0.weight"``, ``"0.bias"``, ...: the model's ``state_dict``, float32, the layouts of
  ``torch.nn.Sequential`` (with BatchNorm's buffers ``"1.running_mean"``, ...; its
  ``num_batches_tracked`` int64, I64);
- tensors ``"buffers.<key>"``: the layer buffers state_dict leaves out (Dropout's
  ``rng_state``, int64: seed and step, so a resumed run draws the masks a straight run would;
  BatchNorm's ``batch_stats``), only in a training checkpoint (saved with an optimizer);
- tensors ``"optimizer.<buffer>.<key>"``: the optimizer's buffers of each parameter (only when
  saved with an optimizer): SGD's ``momentum``, Adam's and AdamW's ``exp_avg`` and
  ``exp_avg_sq``;
- metadata (strings): ``"format"`` = ``"heterocnn-checkpoint-1"``, ``"architecture"`` (JSON:
  layer kinds and arguments, loss, label smoothing, seed, and ``"input_shape"``, one sample's
  shape, when the writer knew it: hc.fit records it), ``"optimizer"`` (JSON: its ``"type"``,
  ``"SGD"``, ``"Adam"`` or ``"AdamW"``, its hyperparameters and ``"step"``, the steps it has
  taken, an exact integer; files from before Adam have SGD's three and no step) and
  ``"meta"`` (JSON: epoch, step, the training RNG state, the history, the caller's extras,
  and what the model was trained on: ``classes``, ``input_shape``, ``channels``,
  ``normalisation`` and, for image folders, ``image`` = {size, channels, resize}).

A file holding only model keys (``hc.save(model, path)``, or one written by
``safetensors.torch.save_file(torch_model.state_dict(), path)``) loads into torch with
``load_state_dict(strict=True)``; from a training checkpoint, drop the ``"optimizer."`` keys
and ``"buffers."`` keys first. Nothing is pickled; loading validates the header before reading the data.
"""

import json
import os
import struct

import numpy as np

from . import nn
from .atomic import check_writable, write_atomic
from .errors import DataFormatError, DTypeError, HeteroCNNError, InvalidValueError, NonFiniteError
from .registry import LAYERS

FORMAT = "heterocnn-checkpoint-1"
OPTIMIZER = "optimizer."  # the prefix of the optimizer's tensors
BUFFERS = "buffers."  # layer buffers outside state_dict (training checkpoints)
_DTYPES = {"F32": 4, "I64": 8}  # safetensors dtypes a checkpoint holds, and their bytes
MAX_HEADER_BYTES = 100 * 2**20  # the safetensors reference reader's cap


# -- writing --------------------------------------------------------------------------------

def architecture(model, input_shape=None):
    """The JSON-able description hc.load rebuilds ``model`` from (with one sample's shape,
    when given, so that hc.load can check that a step on it can be planned)."""
    arch = {"layers": [list(layer._spec()) for layer in model.layers], "loss": model.loss,
            "label_smoothing": model.label_smoothing, "seed": model.seed}
    if input_shape is not None:
        arch["input_shape"] = list(input_shape)
    return arch


def _sample_shape(model, input_shape, what):
    """``input_shape`` as a tuple of positive ints that ``model`` accepts (its step can be
    planned for a batch of one), else InvalidValueError/ShapeError naming it."""
    from .memory import estimate_memory

    if (not isinstance(input_shape, (tuple, list)) or not 1 <= len(input_shape) <= 3
            or not all(type(d) is int or isinstance(d, np.integer) for d in input_shape)):
        raise InvalidValueError(f"{what} must be one sample's shape, a tuple of 1 to 3 "
                                f"integers, got {input_shape!r:.200}")
    shape = tuple(int(d) for d in input_shape)
    estimate_memory(model, 1, shape)  # plans the step: ShapeError naming the layer
    return shape


def save(model, path, opt=None, data=None, input_shape=None, **meta):
    """Write ``model`` (and ``opt``'s kind, hyperparameters, buffers and step count) to ``path`` as
    safetensors, with ``meta`` (JSON-able values: e.g. epoch, step) in the metadata.
    ``data``, the training data (a Dataset or (X, y)), adds what the model was trained on
    as fit(checkpoint=...) records it: class names, input shape, channels, normalisation
    and image preprocessing (hc.preprocess.data_meta), for hc.load and heterocnn-predict.
    ``input_shape``: one sample's shape (e.g. (1, 28, 28); default the data's), stored with
    the architecture, so that hc.load checks that the model can run on it, and in the meta.

    Weights or optimizer buffers holding NaN or inf are refused (NonFiniteError naming the key): the
    file on disk stays the last good one.

    Atomic (see hc.atomic.write_atomic): the bytes go to a fresh temporary file in the same
    folder, which is flushed, fsynced and renamed over ``path`` (and the folder fsynced), so a
    reader sees the old file or the new one, never a mix, even if the writer is killed or
    several threads save the same path at once. Returns ``path``."""
    from safetensors.numpy import save as st_save

    if not isinstance(model, nn.Sequential):
        raise DTypeError(f"save needs a heterocnn Sequential, got {type(model).__name__}")
    check_writable(path, "checkpoint path")
    if data is not None:
        from .data_checks import as_arrays
        from .preprocess import data_meta

        meta = {**data_meta(data, as_arrays(data, "data")[0]), **meta}
    if input_shape is None:  # one input shape: the architecture's and the meta's
        input_shape = meta.pop("input_shape", None)
    if input_shape is not None:
        input_shape = _sample_shape(model, input_shape, "input_shape")
        meta["input_shape"] = list(input_shape)
    tensors = dict(model.state_dict())
    metadata = {"format": FORMAT, "architecture": json.dumps(architecture(model, input_shape))}
    if opt is not None:
        model._check_optimizer(opt)
        state = opt.state()
        step = state.pop("step")
        for key, value in state.items():  # "<buffer>.<key>"
            tensors[OPTIMIZER + key] = value
        metadata["optimizer"] = json.dumps({"type": type(opt).__name__, **opt.settings(),
                                            "step": step})
    for key, value in tensors.items():
        if not np.isfinite(value).all():
            param = key.split(".", 2)[2] if key.startswith(OPTIMIZER) else key
            layer = int(param.split(".")[0])
            raise NonFiniteError(f"{key} holds NaN/inf: not saved to {os.fspath(path)!r} "
                                 "(the file there, if any, is unchanged)", None, layer)
    if opt is not None:  # a training checkpoint: also the buffers outside state_dict
        for key, value in model.buffers(all_buffers=True).items():
            if key in tensors:
                continue
            if not np.isfinite(value).all():
                raise NonFiniteError(f"buffer {key} holds NaN/inf: not saved to "
                                     f"{os.fspath(path)!r} (the file there, if any, is "
                                     "unchanged)", None, int(key.split(".")[0]))
            tensors[BUFFERS + key] = value
    try:
        metadata["meta"] = json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise InvalidValueError(f"checkpoint meta must be JSON-serializable: {e}") from None
    write_atomic(path, st_save(tensors, metadata=metadata))
    return path


# -- reading --------------------------------------------------------------------------------

def read_safetensors(path):
    """({name: float32 or int64 array}, {metadata}) of a safetensors file, validated before
    anything the file does not justify is allocated: the header length is capped and checked
    against the file size, every tensor must be F32 (or I64: int64 buffers) with a shape whose bytes match its offsets, and
    the offsets must tile the data exactly. Raises DataFormatError naming the file."""
    from safetensors import SafetensorError
    from safetensors.numpy import load as st_load

    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < 8:
            raise DataFormatError(f"{path}: {size} bytes, too short for a safetensors header")
        (n,) = struct.unpack("<Q", f.read(8))
        if n > min(MAX_HEADER_BYTES, size - 8):
            raise DataFormatError(f"{path}: header length {n} exceeds the file ({size} bytes) "
                                  f"or the {MAX_HEADER_BYTES}-byte cap")
        header = _parse_header(path, f.read(n), size - 8 - n)
        f.seek(0)
        blob = f.read()
    if len(blob) != size:
        raise DataFormatError(f"{path}: changed while being read")
    metadata = header.pop("__metadata__", {})
    try:
        tensors = st_load(blob)
    except (SafetensorError, ValueError, TypeError) as e:
        raise DataFormatError(f"{path}: not a valid safetensors file: {e}") from None
    return tensors, metadata


def _parse_header(path, raw, data_bytes):
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataFormatError(f"{path}: header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise DataFormatError(f"{path}: header is {type(header).__name__}, not an object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise DataFormatError(f"{path}: __metadata__ must map strings to strings")
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or not isinstance(info.get("dtype"), str) \
                or info["dtype"] not in _DTYPES:
            raise DataFormatError(f"{path}: tensor {name!r} is not float32 (F32) or int64 "
                                  f"(I64): {info!r:.200}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if (not isinstance(shape, list) or len(shape) > 8
                or not all(type(d) is int and 0 <= d <= data_bytes for d in shape)):
            raise DataFormatError(f"{path}: tensor {name!r} has a bad shape {shape!r:.200}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(type(o) is int for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data_bytes):
            raise DataFormatError(f"{path}: tensor {name!r} has offsets {offsets!r:.200} outside "
                                  f"the {data_bytes} data bytes")
        if offsets[1] - offsets[0] != _DTYPES[info["dtype"]] * int(np.prod(shape, dtype=object)):
            raise DataFormatError(f"{path}: tensor {name!r} of shape {shape} does not fill its "
                                  f"{offsets[1] - offsets[0]} bytes")
        spans.append(offsets)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            raise DataFormatError(f"{path}: tensor data has a gap or overlap at byte {begin}")
        end = stop
    if end != data_bytes:
        raise DataFormatError(f"{path}: tensors cover {end} of the {data_bytes} data bytes")
    return header


def _json(path, metadata, key):
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError) as e:
        raise DataFormatError(f"{path}: metadata {key!r} is not JSON: {e}") from None


def _rebuild(path, arch, tensors):
    """The Sequential an architecture describes. Its parameter and buffer shapes (those in
    state_dict) are checked against the file's tensors first, so a tampered architecture cannot make the core allocate what the
    file does not hold."""
    bad = (KeyError, TypeError, ValueError, OverflowError, HeteroCNNError)
    try:
        layers = [LAYERS[kind].cls.from_spec(args) for kind, args in arch["layers"]]
    except bad as e:
        raise DataFormatError(f"{path}: bad architecture layers: {e!r:.300}") from None
    for i, layer in enumerate(layers):
        names_shapes = list(zip(layer.param_names(), layer.param_shapes()))
        names_shapes += list(getattr(layer, "buffer_shapes", dict)().items())
        for name, shape in names_shapes:
            key = f"{i}.{name}"
            if key not in tensors or tensors[key].shape != shape:
                got = tensors[key].shape if key in tensors else "nothing"
                raise DataFormatError(f"{path}: the architecture needs {key} of shape {shape}, "
                                      f"the file holds {got}")
    try:
        model = nn.Sequential(*layers, loss=arch["loss"], seed=arch["seed"],
                              label_smoothing=arch.get("label_smoothing", 0.0))
    except bad as e:
        raise DataFormatError(f"{path}: architecture is not a valid heterocnn model: "
                              f"{e!r:.300}") from None
    if "input_shape" in arch:  # the writer knew the input: a step on it must be plannable
        try:
            _sample_shape(model, arch["input_shape"], "input_shape")
        except HeteroCNNError as e:
            raise DataFormatError(f"{path}: the architecture cannot run on its input shape "
                                  f"{arch['input_shape']!r:.100}: {e}") from None
    return model


def load(path, model=None):
    """(model, optimizer or None, meta) from a checkpoint written by hc.save.

    Without ``model`` the architecture in the file rebuilds the model; with it (e.g. for a
    file written from a torch state_dict, which has no architecture) the weights go into
    ``model``. The optimizer, when the file has one, is of the saved kind (hc.SGD, hc.Adam,
    hc.AdamW) with the saved hyperparameters, buffers and step count. Any malformed,
    truncated or inconsistent file raises DataFormatError naming the file and the problem; a
    missing file FileNotFoundError."""
    path = os.fspath(path)
    tensors, metadata = read_safetensors(path)
    if model is None:
        if metadata.get("format") != FORMAT or "architecture" not in metadata:
            raise DataFormatError(f"{path}: no heterocnn architecture in the metadata (format "
                                  f"{metadata.get('format')!r}); pass model= to load weights "
                                  "into a model you build")
        arch = _json(path, metadata, "architecture")
        if not isinstance(arch, dict):
            raise DataFormatError(f"{path}: architecture is not an object")
        model = _rebuild(path, arch, tensors)
    weights = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER)}
    layer_buffers = {k[len(BUFFERS):]: weights.pop(k) for k in list(weights)
                     if k.startswith(BUFFERS)}
    persistent = {key for key, *_ in model._entries()}
    if any(k in weights or k in persistent for k in layer_buffers):
        raise DataFormatError(f"{path}: a buffers.* tensor repeats a state_dict key")
    weights.update(layer_buffers)
    buffers = {k[len(OPTIMIZER):]: v for k, v in tensors.items() if k.startswith(OPTIMIZER)}
    try:
        model.load_state_dict(weights)
    except HeteroCNNError as e:
        raise DataFormatError(f"{path}: weights do not fit the model: {e}") from None
    opt = None
    if "optimizer" in metadata:
        opt = _optimizer(path, model, _json(path, metadata, "optimizer"), buffers)
    elif buffers:
        raise DataFormatError(f"{path}: optimizer buffers without optimizer metadata")
    meta = _json(path, metadata, "meta") if "meta" in metadata else {}
    if not isinstance(meta, dict):
        raise DataFormatError(f"{path}: meta is {type(meta).__name__}, not an object")
    return model, opt, meta


def _optimizer(path, model, cfg, buffers):
    """The optimizer ``cfg`` (the "optimizer" metadata) describes, for ``model``, holding
    ``buffers`` ({"<buffer>.<key>": array}) and the saved step count."""
    from .optim import OPTIMIZERS

    kinds = {cls.__name__: cls for cls in OPTIMIZERS.values()}
    if not isinstance(cfg, dict) or cfg.get("type") not in kinds:
        raise DataFormatError(f"{path}: unknown optimizer {cfg!r:.200}")
    cls = kinds[cfg["type"]]
    settings = {k: v for k, v in cfg.items() if k not in ("type", "step")}
    if "betas" in settings and isinstance(settings["betas"], list):
        settings["betas"] = tuple(settings["betas"])
    try:
        opt = cls(model, **settings)
    except (TypeError, HeteroCNNError) as e:
        raise DataFormatError(f"{path}: bad optimizer settings {cfg!r:.200}: {e}") from None
    expected = [f"{name}.{key}" for name in opt.state_names() for key, _ in model.parameters()]
    if sorted(buffers) != sorted(expected):
        raise DataFormatError(f"{path}: optimizer buffers {sorted(buffers)} do not match the "
                              f"{cfg['type']} buffers of the parameters {sorted(expected)}")
    shapes = dict(model.parameters())
    for name, v in buffers.items():
        shape = tuple(shapes[name.split(".", 1)[1]])
        if np.asarray(v).shape != shape or not np.isfinite(v).all():
            raise DataFormatError(f"{path}: optimizer buffer {name} has shape "
                                  f"{np.asarray(v).shape} (expected {shape}) or holds NaN/inf")
    step = cfg.get("step", 0)  # files from before the step count: SGD, where it did not matter
    if type(step) is not int or step < 0:
        raise DataFormatError(f"{path}: optimizer step must be an integer >= 0, got {step!r:.100}")
    opt.load_state({**buffers, "step": step})
    return opt
