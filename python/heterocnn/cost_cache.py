"""The cache of measured cost tables: one JSON file per key under $XDG_CACHE_HOME/heterocnn
(else ~/.cache/heterocnn), so a model is measured once per machine, build, thread count,
architecture, batch size, input shape, devices and mode (measure() builds the key from those).

    table, note = cost_cache.load(key)   # (CostTable, None), or (None, a one-line note)
    note = cost_cache.store(key, table)  # None, or a one-line note when it could not write

A missing, corrupt (bad JSON, wrong schema, wrong types) or stale (another version, another
key) file is never an error: load returns None and says why in one line; the caller
measures again and stores over it. Files are written atomically (hc.atomic.write_atomic), so
a reader never sees half a file.
"""

import hashlib
import json
import math
import os

from .atomic import write_atomic
from .costs import CostTable, Transfer

VERSION = 2     # bump when CostTable's fields or their meaning change


def cache_dir():
    """$XDG_CACHE_HOME/heterocnn when XDG_CACHE_HOME is an absolute path, else
    ~/.cache/heterocnn (the folder may not exist yet)."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "heterocnn")


def _canonical(key):
    return json.dumps(key, sort_keys=True, separators=(",", ":"), allow_nan=False)


def cache_path(key):
    """The file that holds the table of key (any JSON-serialisable value)."""
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:24]
    return os.path.join(cache_dir(), f"costs-{digest}.json")


def _number(v):
    """A JSON value for a number: ints stay ints, inf and nan become "inf", "-inf", "nan"."""
    if v is None:
        return None
    if float(v).is_integer() and not isinstance(v, float):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else repr(v)


def _to_json(table):
    def per_device(d):
        return {dev: [_number(v) for v in values] for dev, values in d.items()}

    return {
        "mode": table.mode, "batch_size": int(table.batch_size),
        "input_shape": [int(x) for x in table.input_shape], "layers": list(table.layers),
        "devices": list(table.devices),
        "forward_s": per_device(table.forward_s), "backward_s": per_device(table.backward_s),
        "loss_s": {d: _number(v) for d, v in table.loss_s.items()},
        "update_s": per_device(table.update_s),
        "input_bytes": int(table.input_bytes), "act_bytes": [int(b) for b in table.act_bytes],
        "param_bytes": [int(b) for b in table.param_bytes],
        "layer_memory": per_device(table.layer_memory),
        "memory_limit": {d: _number(v) for d, v in table.memory_limit.items()},
        "transfer": [[s, d, _number(t.latency_s), _number(t.bytes_per_s)]
                     for (s, d), t in table.transfer.items()],
        "step_s": {d: {str(int(b)): _number(s) for b, s in m.items()}
                   for d, m in table.step_s.items()},
        "dp_overhead_s": _number(table.dp_overhead_s),
        "notes": list(table.notes),
    }


class _Bad(Exception):
    """The file's contents do not match the schema; the message says where."""


def _need(ok, what):
    if not ok:
        raise _Bad(what)


def _num(v, what):
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    _need(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)),
          f"{what} is not a number")
    return v


def _int(v, what):
    _need(isinstance(v, int) and not isinstance(v, bool) and v >= 0,
          f"{what} is not an integer >= 0")
    return v


def _str_list(v, what):
    _need(isinstance(v, list) and all(isinstance(x, str) for x in v), f"{what} is not a list "
          "of strings")
    return list(v)


def _from_json(obj):
    _need(isinstance(obj, dict), "the table is not an object")
    mode = obj.get("mode")
    _need(mode in ("train", "infer"), "mode is not 'train' or 'infer'")
    batch_size = _int(obj.get("batch_size"), "batch_size")
    shape = obj.get("input_shape")
    _need(isinstance(shape, list), "input_shape is not a list")
    shape = tuple(_int(x, "input_shape") for x in shape)
    layers = _str_list(obj.get("layers"), "layers")
    devices = _str_list(obj.get("devices"), "devices")
    n = len(layers)

    def per_device(name, conv):
        d = obj.get(name)
        _need(isinstance(d, dict), f"{name} is not an object")
        out = {}
        for dev, values in d.items():
            _need(isinstance(values, list) and len(values) == n,
                  f"{name}[{dev}] is not a list of {n}")
            out[dev] = [conv(v, f"{name}[{dev}]") for v in values]
        return out

    def scalars(name):
        d = obj.get(name)
        _need(isinstance(d, dict), f"{name} is not an object")
        return {dev: _num(v, f"{name}[{dev}]") for dev, v in d.items()}

    def ints(name):
        v = obj.get(name)
        _need(isinstance(v, list) and len(v) == n, f"{name} is not a list of {n}")
        return [_int(x, name) for x in v]

    transfer = {}
    pairs = obj.get("transfer")
    _need(isinstance(pairs, list), "transfer is not a list")
    for t in pairs:
        _need(isinstance(t, list) and len(t) == 4 and isinstance(t[0], str)
              and isinstance(t[1], str), "a transfer is not [src, dst, latency, bandwidth]")
        latency, bandwidth = _num(t[2], "transfer latency"), _num(t[3], "transfer bandwidth")
        _need(latency is not None and bandwidth is not None and bandwidth > 0,
              "a transfer has no latency or bandwidth")
        transfer[(t[0], t[1])] = Transfer(latency, bandwidth)
    step = obj.get("step_s")
    _need(isinstance(step, dict), "step_s is not an object")
    step_s = {}
    for dev, m in step.items():
        _need(isinstance(m, dict) and all(b.isdigit() for b in m), f"step_s[{dev}] is not "
              "an object from batch sizes")
        step_s[dev] = {int(b): _num(s, f"step_s[{dev}]") for b, s in m.items()}
    return CostTable(
        mode=mode, batch_size=batch_size, input_shape=shape, layers=layers, devices=devices,
        forward_s=per_device("forward_s", _num), backward_s=per_device("backward_s", _num),
        loss_s=scalars("loss_s"), update_s=per_device("update_s", _num),
        input_bytes=_int(obj.get("input_bytes"), "input_bytes"), act_bytes=ints("act_bytes"),
        param_bytes=ints("param_bytes"), layer_memory=per_device("layer_memory", _num),
        memory_limit=scalars("memory_limit"), transfer=transfer, step_s=step_s,
        dp_overhead_s=_overhead(obj.get("dp_overhead_s")),
        notes=_str_list(obj.get("notes", []), "notes"))


def _overhead(v):
    v = _num(v, "dp_overhead_s")
    _need(v is not None and v >= 0, "dp_overhead_s is not a number >= 0")
    return v


def load(key):
    """(CostTable, None) when the cache holds a good table for key; (None, None) when it has
    none; (None, a one-line note) when the file is corrupt or stale. Never raises for what the
    file holds."""
    path = cache_path(key)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return None, None
    except (OSError, UnicodeDecodeError) as e:
        return None, f"cost cache {path} unreadable ({e}): measuring again"
    try:
        obj = json.loads(text)
    except ValueError as e:
        return None, f"cost cache {path} is not valid JSON ({e}): measuring again"
    if not isinstance(obj, dict):
        return None, f"cost cache {path} is not a cache file: measuring again"
    if obj.get("version") != VERSION:
        return None, (f"cost cache {path} is version {obj.get('version')!r}, this build "
                      f"writes {VERSION}: measuring again")
    try:
        same_key = _canonical(obj.get("key")) == _canonical(key)
    except (TypeError, ValueError):
        same_key = False
    if not same_key:
        return None, f"cost cache {path} was measured for another setup: measuring again"
    try:
        table = _from_json(obj.get("table"))
    except _Bad as e:
        return None, f"cost cache {path} is corrupt ({e}): measuring again"
    table.notes.append(f"costs from the cache {path}")
    return table, None


def store(key, table):
    """Write table for key, atomically. Returns None, or a one-line note when the cache
    cannot be written (the table is still good; it is only not kept)."""
    folder = cache_dir()
    path = cache_path(key)
    text = json.dumps({"version": VERSION, "key": key, "table": _to_json(table)}, indent=1)
    try:
        os.makedirs(folder, exist_ok=True)
        write_atomic(path, text.encode("utf-8"))
    except OSError as e:
        return f"cost cache {path} not written ({e})"
    return None
