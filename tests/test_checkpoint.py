"""Checkpoints (hc.save / hc.load): round trips, atomic writes under SIGKILL, and a fuzzed
loader that only ever answers with a model or a DataFormatError."""

import json
import os
import re
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import heterocnn as hc
from conftest import new_layers_net

pytest.importorskip("safetensors")  # the `test` extra installs it; hc.save needs it


def small_model(seed=0):
    return hc.Sequential(hc.Conv2d(1, 2, 3, padding=1), hc.ReLU(), hc.MaxPool2d(2),
                         hc.Flatten(), hc.Linear(8, 3), hc.Sigmoid(), hc.Linear(3, 2), seed=seed)


def trained(seed=0):
    model = small_model(seed)
    opt = hc.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        model.train_step(rng.random((5, 1, 4, 4), dtype=np.float32), rng.integers(0, 2, 5), opt)
    return model, opt


def assert_same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


def test_round_trip_rebuilds_model_optimizer_and_meta(tmp_path):
    model, opt = trained()
    rng = np.random.default_rng(7)
    path = tmp_path / "ckpt.safetensors"
    hc.save(model, path, opt, epoch=3, step=42, rng=rng.bit_generator.state, note="hi")
    loaded, lopt, meta = hc.load(path)
    assert repr(loaded) == repr(model) and loaded.seed == model.seed
    assert_same_weights(loaded, model)
    assert (lopt.lr, lopt.momentum, lopt.weight_decay) == (opt.lr, opt.momentum, opt.weight_decay)
    assert meta["epoch"] == 3 and meta["step"] == 42 and meta["note"] == "hi"
    restored = np.random.default_rng()
    restored.bit_generator.state = meta["rng"]
    assert restored.integers(1 << 62) == rng.integers(1 << 62)
    # Momentum restored: the next step is bit-identical in both.
    x, y = np.ones((5, 1, 4, 4), np.float32), np.array([0, 1, 0, 1, 1])
    assert model.train_step(x, y, opt) == loaded.train_step(x, y, lopt)
    assert_same_weights(loaded, model)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.safetensors"]  # no temporary file left


def test_weights_only_file_holds_just_the_state_dict(tmp_path):
    from safetensors.numpy import load_file

    model, _ = trained()
    hc.save(model, tmp_path / "w.safetensors")
    assert list(load_file(tmp_path / "w.safetensors")) == sorted(model.state_dict())
    loaded, opt, meta = hc.load(tmp_path / "w.safetensors")
    assert opt is None and meta == {}
    assert_same_weights(loaded, model)


def test_load_into_a_given_model_and_plain_safetensors(tmp_path):
    from safetensors.numpy import save_file

    model, _ = trained()
    save_file(dict(model.state_dict()), tmp_path / "plain.safetensors")
    with pytest.raises(hc.DataFormatError, match="no heterocnn architecture"):
        hc.load(tmp_path / "plain.safetensors")
    target = small_model(seed=5)
    loaded, opt, _ = hc.load(tmp_path / "plain.safetensors", model=target)
    assert loaded is target and opt is None
    assert_same_weights(target, model)
    with pytest.raises(hc.DataFormatError, match="plain.safetensors.*do not fit"):
        hc.load(tmp_path / "plain.safetensors", model=hc.models.mlp())


def test_round_trip_of_a_model_with_the_new_layers(tmp_path):
    """AvgPool2d, AdaptiveAvgPool2d, GELU, LeakyReLU, Tanh and bias=False rebuilt from the
    architecture, with their arguments, weights and momenta."""
    model = new_layers_net(seed=5)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)
    rng = np.random.default_rng(1)
    for _ in range(2):
        model.train_step(rng.standard_normal((4, 3, 13, 11)).astype(np.float32),
                         rng.integers(0, 4, 4), opt)
    path = hc.save(model, tmp_path / "new.safetensors", opt)
    loaded, lopt, _ = hc.load(path)
    assert repr(loaded) == repr(model)
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert loaded.layers[7].negative_slope == 0.1 and loaded.layers[2].padding == 1
    assert not loaded.layers[0].bias and loaded.layers[3].bias
    assert_same_weights(loaded, model)
    x = rng.standard_normal((3, 3, 13, 11)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))
    y = rng.integers(0, 4, 3)
    assert lopt.model is loaded and loaded.train_step(x, y, lopt) == model.train_step(x, y, opt)


def test_round_trip_of_gelu_tanh(tmp_path):
    """GELU(approximate="tanh") keeps its form through the architecture (spec [1]); the exact
    form keeps the spec it had before the tanh form existed."""
    model = hc.Sequential(hc.Flatten(), hc.Linear(6, 5), hc.GELU("tanh"), hc.Linear(5, 4),
                          hc.GELU(), hc.Linear(4, 3), seed=2)
    path = hc.save(model, tmp_path / "gelu.safetensors")
    arch = json.loads(hc.checkpoint.read_safetensors(path)[1]["architecture"])
    assert arch["layers"][2] == ["GELU", [1]] and arch["layers"][4] == ["GELU", []]
    loaded, _, _ = hc.load(path)
    assert [getattr(layer, "approximate", None) for layer in loaded.layers] == [
        None, None, "tanh", None, "none", None]
    x = np.random.default_rng(0).standard_normal((3, 6)).astype(np.float32)
    np.testing.assert_array_equal(loaded(x), model(x))


def test_specs_of_layers_with_bias_are_unchanged():
    # Checkpoints written before bias=False existed hold 5- and 2-argument specs: still read.
    assert hc.Conv2d(1, 6, 5, padding=2)._spec() == ("Conv2d", [1, 6, 5, 1, 2])
    assert hc.Linear(4, 3)._spec() == ("Linear", [4, 3])
    assert hc.Conv2d(1, 6, 5, 1, 2, 0).param_names() == ["weight"]
    assert hc.Linear(*hc.Linear(4, 3, bias=False)._spec()[1]).param_shapes() == [(3, 4)]


def test_bad_inputs_to_save(tmp_path):
    model, _ = trained()
    with pytest.raises(hc.InvalidValueError, match="JSON"):
        hc.save(model, tmp_path / "x", note=object())
    with pytest.raises(hc.InvalidValueError, match="another model"):
        hc.save(model, tmp_path / "x", hc.SGD(small_model(), lr=0.1))
    with pytest.raises(FileNotFoundError):
        hc.load(tmp_path / "missing.safetensors")


def checkpoint_bytes():
    """A valid training checkpoint of small_model, as bytes."""
    model, opt = trained()
    with tempfile.TemporaryDirectory() as d:
        hc.save(model, os.path.join(d, "c"), opt, epoch=1, step=3,
                rng=np.random.default_rng(0).bit_generator.state)
        with open(os.path.join(d, "c"), "rb") as f:
            return f.read()


@pytest.fixture(scope="module")
def good_bytes():
    return checkpoint_bytes()


def split(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header, data, length=None):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def write(tmp_path, blob):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(blob)
    return path


@pytest.mark.parametrize("mutate, match", [
    (lambda b: b[:5], "too short"),
    (lambda b: b[:-1], "cover|outside"),
    (lambda b: struct.pack("<Q", 2**63) + b[8:], "header length"),
    (lambda b: struct.pack("<Q", len(b)) + b[8:], "header length"),
    (lambda b: b[:8] + b"[" + b[9:], "not JSON"),
    (lambda b: join({**split(b)[0], "0.weight": {**split(b)[0]["0.weight"], "dtype": "F64"}},
                    split(b)[1]), "not float32"),
    (lambda b: join({**split(b)[0], "0.weight": {**split(b)[0]["0.weight"],
                                                 "shape": [2, 1, 3, 4]}}, split(b)[1]),
     "does not fill"),
    (lambda b: join({**split(b)[0], "__metadata__": {**split(b)[0]["__metadata__"],
                                                     "architecture": "{"}}, split(b)[1]),
     "not JSON"),
    (lambda b: join({**split(b)[0], "__metadata__": {
        **split(b)[0]["__metadata__"],
        "architecture": json.dumps({"layers": [["Linear", [100000, 100000]]], "loss":
                                    "cross_entropy", "seed": 0})}}, split(b)[1]),
     r"needs 0.weight of shape \(100000, 100000\)"),
])
def test_malformed_files_raise_data_format_error_naming_the_file(tmp_path, good_bytes, mutate,
                                                                 match):
    path = write(tmp_path, mutate(good_bytes))
    with pytest.raises(hc.DataFormatError, match=match) as info:
        hc.load(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_nan_weights_are_rejected(tmp_path, good_bytes):
    header, data = split(good_bytes)
    begin = header["0.weight"]["data_offsets"][0]
    data = data[:begin] + np.float32(np.nan).tobytes() + data[begin + 4:]
    with pytest.raises(hc.DataFormatError, match="NaN"):
        hc.load(write(tmp_path, join(header, data)))


# -- fuzzing --------------------------------------------------------------------------------

def _tensor_field(draw, header):
    names = sorted(k for k in header if k != "__metadata__")
    name = draw(st.sampled_from(names))
    field = draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
    value = draw(st.one_of(
        st.sampled_from(["F16", "F64", "I64", "U8", "BOOL", "", None]),
        st.lists(st.integers(-2, 2**62), max_size=5),
        st.lists(st.integers(0, 64), min_size=1, max_size=4)))
    header[name] = {**header[name], field: value}


def _metadata_field(draw, header):
    meta = dict(header["__metadata__"])
    key = draw(st.sampled_from(["format", "architecture", "optimizer", "meta"]))
    arch = json.loads(meta["architecture"])
    choice = draw(st.integers(0, 4))
    if choice == 0:
        meta[key] = draw(st.text(max_size=30))
    elif choice == 1:
        meta.pop(key)
    elif choice == 2:  # one layer's kind or arguments
        i = draw(st.integers(0, len(arch["layers"]) - 1))
        arch["layers"][i] = [draw(st.sampled_from(["Linear", "Conv2d", "MaxPool2d", "ReLU",
                                                   "Flatten", "Sigmoid", "Evil", 3])),
                             draw(st.lists(st.integers(-1, 2**70), max_size=6))]
        meta["architecture"] = json.dumps(arch)
    elif choice == 3:
        arch[draw(st.sampled_from(["loss", "seed", "layers"]))] = draw(
            st.one_of(st.integers(-2**70, 2**70), st.text(max_size=5), st.none()))
        meta["architecture"] = json.dumps(arch)
    else:
        meta["optimizer"] = json.dumps({"type": "SGD", "lr": draw(st.floats()),
                                        "momentum": 0.9, "weight_decay": 0})
    header["__metadata__"] = meta


@st.composite
def mutated(draw, blob):
    """A checkpoint with its structure or its bytes changed."""
    header, data = split(blob)
    kind = draw(st.sampled_from(["tensor", "metadata", "length", "bytes", "truncate"]))
    if kind == "tensor":
        _tensor_field(draw, header)
        return join(header, data)
    if kind == "metadata":
        _metadata_field(draw, header)
        return join(header, data)
    if kind == "length":
        return join(header, data, draw(st.integers(0, 2**64 - 1)))
    if kind == "truncate":
        return blob[:draw(st.integers(0, len(blob) - 1))]
    out = bytearray(blob)
    for _ in range(draw(st.integers(1, 8))):
        out[draw(st.integers(0, len(out) - 1))] = draw(st.integers(0, 255))
    return bytes(out)


FUZZ_DIR = tempfile.mkdtemp(prefix="hc-fuzz-")


def check_one(blob):
    """hc.load on blob returns a model or raises DataFormatError, allocating (in Python and
    numpy, which tracemalloc sees) at most a small multiple of the file's size."""
    path = os.path.join(FUZZ_DIR, "f.safetensors")
    with open(path, "wb") as f:
        f.write(blob)
    tracemalloc.start()
    try:
        model, _, _ = hc.load(path)
        assert isinstance(model, hc.Sequential)
        outcome = "loaded"
    except hc.DataFormatError as e:
        assert path in str(e)
        outcome = "rejected"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 8 * len(blob) + (1 << 20), f"{peak} bytes allocated for {len(blob)}"
    return outcome


def test_fuzz_checkpoint_loader(good_bytes):
    outcomes = {"loaded": 0, "rejected": 0}

    @settings(max_examples=1000, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated(good_bytes))
    def run(blob):
        outcomes[check_one(blob)] += 1

    run()
    print(f"fuzzed checkpoints: {outcomes}")
    assert outcomes["rejected"] > 500


# -- atomic writes --------------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import sys, numpy as np, heterocnn as hc
    model = hc.Sequential(hc.Flatten(), hc.Linear(1500, 1500), hc.ReLU(), hc.Linear(1500, 10))
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    i = 0
    while True:
        hc.save(model, sys.argv[1], opt, step=i)
        print(i, flush=True)
        i += 1
""")


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13])
def test_killed_writer_leaves_the_previous_checkpoint(tmp_path, delay):
    path = tmp_path / "big.safetensors"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        proc.stdout.readline()  # one checkpoint written: about 18 MB with momentum
        for _ in range(3):  # a reader during the writes sees a whole checkpoint
            assert hc.load(path)[2]["step"] >= 0
        time.sleep(delay)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    model, opt, meta = hc.load(path)
    assert meta["step"] >= 0 and opt.momentum == 0.9
    assert model.state_dict()["1.weight"].shape == (1500, 1500)
    # Only the checkpoint and at most the killed writer's temporary file, never a mixed file.
    others = {p.name for p in tmp_path.iterdir()} - {"big.safetensors"}
    assert len(others) <= 1 and all(re.fullmatch(r"\.big\.safetensors\.\w+\.tmp", n)
                                    for n in others), others
