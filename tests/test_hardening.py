"""Hardening (issue 11), one section per class of defect: sizes that cannot overflow, the
NaN/inf guard on every architecture, atomic writes, and validation at every entry point.
Each test checks the class, not only the example the issue found."""

import errno
import json
import os
import re
import subprocess
import sys
import threading

import numpy as np
import pytest

import heterocnn as hc
from heterocnn.registry import LAYERS
from heterocnn import atomic
from heterocnn.cli import main

F32 = np.float32


@pytest.fixture(scope="module")
def data():
    X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
    return X[:256], y[:256]


def unchanged(model, before):
    after = model.state_dict()
    return all(np.array_equal(before[k], after[k]) for k in before)


# -- 1. size arithmetic ----------------------------------------------------------------------

def issue_architecture():
    return hc.Sequential(hc.Conv2d(1, 1, 1, padding=2**30 - 1), hc.MaxPool2d(2**31),
                         hc.Flatten(), hc.Linear(1, 2))


def test_outputs_too_large_are_shape_errors_naming_the_layer_and_sizes():
    model = issue_architecture()  # each layer's arguments are fine on their own
    x = np.zeros((1, 1, 2, 2), F32)
    for call in (lambda: model(x), lambda: model.loss_and_grads(x, np.zeros(1, int)),
                 lambda: model.train_step(x, np.zeros(1, int), hc.SGD(model, lr=0.1)),
                 lambda: hc.estimate_memory(model, 1, (1, 2, 2)),
                 lambda: model.output_shape((1, 1, 2, 2))):
        with pytest.raises(hc.ShapeError, match=r"layer 0 \(Conv2d\).*2147483648.*2\^40"):
            call()


@pytest.mark.parametrize("batch,sample", [(2**62, (1, 28, 28)), (2**40, (1, 28, 28)),
                                          (1, (1, 2**40, 28)), (2**31, (1, 2**31, 1)),
                                          (2**63 - 1, (1, 1, 1))])
def test_memory_estimates_never_wrap(batch, sample):
    with pytest.raises(hc.ShapeError, match="2\\^40"):
        hc.estimate_memory(hc.models.lenet5(), batch, sample)
    big = hc.estimate_memory(hc.models.lenet5(), 2**20, (1, 28, 28))["cpu"]  # fits: no wrap
    small = hc.estimate_memory(hc.models.lenet5(), 2**10, (1, 28, 28))["cpu"]
    assert big["buffers"] > 2**9 * small["buffers"] > 0


@pytest.mark.parametrize("args", [(1, 1), (0, (1, 28, 28)), (-1, (1, 28, 28)),
                                  (2.5, (1, 28, 28)), (True, (1, 28, 28)), (4, "abc"),
                                  (4, (1, 0, 28)), (4, (1, 28, 28.0)), (4, (1, 2, 3, 4))])
def test_memory_estimate_arguments(args):
    with pytest.raises(hc.InvalidValueError):
        hc.estimate_memory(hc.models.lenet5(), *args)


@pytest.mark.parametrize("make", [
    lambda: hc.Linear(1, 2**62), lambda: hc.Linear(2**21, 2**20), lambda: hc.Linear(2**41, 1),
    lambda: hc.Conv2d(2**20, 2**20, 3), lambda: hc.Conv2d(1, 1, 2**21),
    lambda: hc.Conv2d(1, 1, 1, padding=2**41), lambda: hc.Conv2d(1, 1, 1, stride=2**63),
    lambda: hc.MaxPool2d(2**41), lambda: hc.MaxPool2d(2, stride=2**70)])
def test_arguments_the_core_cannot_hold_fail_at_construction(make):
    with pytest.raises(hc.InvalidValueError, match="2\\^40"):
        make()


def test_huge_kernels_and_input_dims_are_shape_errors():
    conv = hc.Sequential(hc.Conv2d(64, 1, 64, padding=32), hc.Flatten(), hc.Linear(65 * 65, 2))
    with pytest.raises(hc.ShapeError, match=r"layer 0 \(Conv2d\).*unrolled windows"):
        conv.output_shape((2**16, 64, 64, 64))
    with pytest.raises(hc.ShapeError):
        hc.models.mlp().output_shape((1, 2**70))
    with pytest.raises(hc.ShapeError):
        hc.models.mlp().output_shape((1, 1.5))


def write_checkpoint(path, arch):
    from safetensors.numpy import save_file

    model = hc.Sequential(*[LAYERS[k].cls(*a) for k, a in arch["layers"]])
    save_file(model.state_dict(), str(path), metadata={
        "format": hc.checkpoint.FORMAT, "architecture": json.dumps(arch)})


def test_load_rejects_an_architecture_that_cannot_run_on_its_input(tmp_path, data):
    layers = [list(layer._spec()) for layer in issue_architecture().layers]
    path = tmp_path / "bad.safetensors"
    write_checkpoint(path, {"layers": layers, "loss": "cross_entropy", "seed": 0,
                            "input_shape": [1, 2, 2]})
    with pytest.raises(hc.DataFormatError, match=r"bad.safetensors.*cannot run on its input "
                                                 r"shape.*layer 0 \(Conv2d\)"):
        hc.load(path)
    # Without a recorded input the file loads, and running it is a clean error, not a crash.
    write_checkpoint(path, {"layers": layers, "loss": "cross_entropy", "seed": 0})
    model, _, _ = hc.load(path)
    with pytest.raises(hc.ShapeError, match=r"layer 0 \(Conv2d\)"):
        hc.evaluate(model, (np.zeros((2, 1, 2, 2), F32), np.zeros(2, int)))
    # fit records the input shape, so that hc.load checks it.
    model = hc.models.mlp()
    hc.fit(model, hc.SGD(model, lr=0.01), data, 1, 128, progress=False,
           checkpoint=tmp_path / "c.safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "c.safetensors"), "np") as f:
        assert json.loads(f.metadata()["architecture"])["input_shape"] == [1, 28, 28]
    with pytest.raises(hc.ShapeError, match="layer 1"):
        hc.save(model, tmp_path / "d.safetensors", input_shape=(3, 28, 28))


# -- 2. the NaN/inf guard ----------------------------------------------------------------------

def guarded_models():
    yield from ((name, make) for name, make in hc.models.MODELS.items())
    yield "conv-sigmoid-bce", lambda seed=0: hc.Sequential(
        hc.Conv2d(1, 3, 3, stride=2), hc.Sigmoid(), hc.MaxPool2d(3, stride=2), hc.Flatten(),
        hc.Linear(3 * 6 * 6, 16), hc.ReLU(), hc.Linear(16, 1), loss="bce", seed=seed)


PLACEMENTS = ["cpu"] + (["cuda", "split"] if hc.cuda_available() else [])


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("name,make", list(guarded_models()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_divergence_is_named_on_every_architecture(name, make, placement, data):
    X, y = data
    n = 32 if name == "convnet" else 128
    X, y = X[:n], (y[:n] % 2 if name.endswith("bce") else y[:n])
    model = make(seed=3)
    if placement == "split":  # the first half of the layers on the GPU, the rest on the CPU
        half = len(model.layers) // 2
        model.to(["cuda"] * half + ["cpu"] * (len(model.layers) - half))
    else:
        model.to(placement)
    opt = hc.SGD(model, lr=1e30)
    before = model.state_dict()
    with pytest.raises(hc.NonFiniteError, match=r"NaN/inf at step \d+ .*layer \d+ \(") as info:
        hc.fit(model, opt, (X, y), 2, 8, progress=False)
    err = info.value
    print(err)
    assert err.step >= 1 and err.layer is not None and 0 <= err.layer < len(model.layers)
    assert f"layer {err.layer} (" in str(err)
    assert unchanged(model, before)  # back at the start of the epoch: the first one here
    hc.predict(model, X[:4])  # and still usable


def test_guard_in_a_later_epoch_restores_that_epoch(data):
    model = hc.models.lenet5(seed=1)
    opt = hc.SGD(model, lr=0.01)
    kept = {}

    def explode(epoch, history):
        kept.update(model.state_dict())
        opt.lr = 1e30

    with pytest.raises(hc.NonFiniteError) as info:
        hc.fit(model, opt, (data[0][:64], data[1][:64]), 3, 16, progress=False,
               on_epoch_end=explode)
    assert info.value.step > 4 and info.value.layer is not None
    assert unchanged(model, kept)


def test_train_step_check_finite(data):
    x, y = data[0][:16].astype(F32) / 255, data[1][:16]
    model = hc.models.lenet5(seed=2)
    opt = hc.SGD(model, lr=1e30)
    for _ in range(10):
        before = model.state_dict()
        try:
            loss = model.train_step(x, y, opt, check_finite=True)
        except hc.NonFiniteError as e:
            assert e.step is None and e.layer is not None
            assert re.search(r"train_step .*layer \d+ \(", str(e))
            assert unchanged(model, before)
            break
        assert np.isfinite(loss)
    else:
        pytest.fail("lr=1e30 never diverged")
    # Without the check nothing is copied and a NaN loss comes back as it is.
    for _ in range(10):
        loss = model.train_step(x, y, opt)
        if not np.isfinite(loss):
            break
    assert not np.isfinite(loss)


def test_save_refuses_non_finite_weights(tmp_path, data):
    x, y = data[0][:16].astype(F32) / 255, data[1][:16]
    model = hc.models.mlp(seed=4)
    opt = hc.SGD(model, lr=1e30, momentum=0.9)
    path = tmp_path / "m.safetensors"
    hc.save(model, path, opt)
    good = path.read_bytes()
    for _ in range(20):  # no check: the weights go non-finite
        model.train_step(x, y, opt)
        if not all(np.isfinite(v).all() for v in model.state_dict().values()):
            break
    with pytest.raises(hc.NonFiniteError, match=r"\d\.(weight|bias) holds NaN/inf: not saved"):
        hc.save(model, path, opt)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


# -- 3. atomic writes --------------------------------------------------------------------------

def test_concurrent_saves_of_one_path(tmp_path):
    path = tmp_path / "shared.safetensors"
    models = [hc.Sequential(hc.Flatten(), hc.Linear(200, 300), hc.ReLU(), hc.Linear(300, 10),
                            seed=i) for i in range(6)]
    errors, loads = [], [0]
    done = threading.Event()

    def writer(m):
        try:
            for step in range(6):
                hc.save(m, path, step=step)
        except Exception as e:  # noqa: BLE001 - any error fails the test
            errors.append(e)

    def reader():
        while not done.is_set():
            if path.exists():
                try:
                    model, _, meta = hc.load(path)  # always a whole file
                    assert model.state_dict()["1.weight"].shape == (300, 200)
                    loads[0] += 1
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

    threads = [threading.Thread(target=writer, args=(m,)) for m in models]
    r = threading.Thread(target=reader)
    r.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    r.join()
    assert not errors, errors[:3]
    assert loads[0] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["shared.safetensors"]
    weights = hc.load(path)[0].state_dict()["1.weight"]
    assert any(np.array_equal(weights, m.state_dict()["1.weight"]) for m in models)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "m.safetensors"
    model = hc.models.mlp()
    hc.save(model, path)
    good = path.read_bytes()

    def full_disk(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(atomic.os, "fsync", full_disk)
        with pytest.raises(OSError, match="No space"):
            hc.save(hc.models.mlp(seed=1), path)
    assert path.read_bytes() == good

    def half_then_fail(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic.write_atomic(path, half_then_fail)
    assert path.read_bytes() == good
    with pytest.raises(IsADirectoryError):
        atomic.write_atomic(tmp_path, b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]
    atomic.write_atomic(tmp_path / "new.bin", b"abc")
    mode = os.stat(tmp_path / "new.bin").st_mode & 0o777
    assert mode == 0o666 & ~atomic._umask()


def test_export_onnx_is_atomic(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    hc.export_onnx(hc.models.lenet5(), path)
    good = path.read_bytes()
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "replace", lambda *a: (_ for _ in ()).throw(OSError("boom")))
        with pytest.raises(OSError, match="boom"):
            hc.export_onnx(hc.models.lenet5(seed=1), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]
    for bad in ((0, 28, 28), "28", (1, 2, 3, 4)):
        with pytest.raises(hc.InvalidValueError, match="input_shape"):
            hc.export_onnx(hc.models.lenet5(), path, input_shape=bad)
    with pytest.raises(hc.InvalidValueError, match="does not exist"):
        hc.export_onnx(hc.models.lenet5(), tmp_path / "nowhere" / "m.onnx")


def test_idx_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "a.idx"
    hc.datasets.save_idx(path, np.arange(6, dtype=np.uint8).reshape(2, 3))
    with monkeypatch.context() as m:
        m.setattr(atomic.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("boom")))
        with pytest.raises(OSError):
            hc.datasets.save_idx(path, np.zeros((5, 5), np.uint8))
    np.testing.assert_array_equal(hc.datasets.load_idx(path), np.arange(6).reshape(2, 3))
    assert [p.name for p in tmp_path.iterdir()] == ["a.idx"]


def test_checkpoint_paths_are_checked_before_the_first_epoch(tmp_path, data, capsys):
    model = hc.models.mlp()
    opt = hc.SGD(model, lr=0.01)
    epochs = []
    for bad, match in ((tmp_path / "nowhere" / "c.safetensors", "does not exist"),
                       (tmp_path, "is a folder"), (3.5, "must be a path")):
        with pytest.raises(hc.HeteroCNNError, match=match):
            hc.fit(model, opt, data, 1, 64, progress=False, checkpoint=bad,
                   on_epoch_end=lambda e, h: epochs.append(e))
    assert epochs == []
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(hc.InvalidValueError, match="cannot be written"):
            hc.fit(model, opt, data, 1, 64, progress=False, checkpoint=ro / "c.safetensors")
    rc = main(["--model", "mlp", "--sample", "--epochs", "1", "--no-progress",
               "--save", str(tmp_path / "nowhere" / "c.safetensors")])
    out = capsys.readouterr()
    assert rc == 2 and "does not exist" in out.err and "epoch 1" not in out.out


# -- 4. every entry point validates ----------------------------------------------------------

@pytest.mark.parametrize("X,kwargs,error", [
    ([[0.0] * 784], {}, hc.DTypeError), (np.zeros((2, 784)), {}, hc.DTypeError),
    (np.zeros((2, 784), np.int32), {}, hc.DTypeError), (np.zeros((0, 1, 28, 28), F32), {},
                                                        hc.ShapeError),
    (np.zeros(784, F32), {}, hc.ShapeError), (np.zeros((2, 1, 28, 28), F32),
                                              {"batch_size": 0}, hc.InvalidValueError),
    (np.zeros((2, 1, 28, 28), F32), {"batch_size": -3}, hc.InvalidValueError),
    (np.zeros((2, 1, 28, 28), F32), {"batch_size": 2.5}, hc.InvalidValueError),
    (np.full((2, 1, 28, 28), np.nan, F32), {}, hc.InvalidValueError),
    (np.zeros((2, 1, 27, 28), F32), {}, hc.ShapeError)])
def test_predict_validates(X, kwargs, error):
    with pytest.raises(error):
        hc.predict(hc.models.mlp(), X, **kwargs)


def test_predict_works_on_odd_batches(rng):
    model = hc.models.lenet5()
    X = rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    np.testing.assert_allclose(hc.predict(model, X, batch_size=3), model(X.astype(F32) / 255),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [0, -1, 10**11, 2**31, 1025, 2.5, True, "2", None])
def test_set_threads_validates(n):
    with pytest.raises(hc.InvalidValueError, match="threads must be an integer from 1 to 1024"):
        hc.set_threads(n)


def test_set_threads_applies():
    threads = hc.build_info()["threads"]
    try:
        hc.set_threads(1)
        assert hc.build_info()["threads"] == 1 or not hc.build_info()["openmp"]
    finally:
        hc.set_threads(threads)


@pytest.mark.parametrize("name", ["lr", "momentum", "weight_decay"])
@pytest.mark.parametrize("value", ["0.1", True, 1e-50, 1e39, 10**400, complex(1, 0), None,
                                   [0.1], float("nan"), -1.0])
def test_optimizer_values(name, value):
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match=name):
        hc.SGD(model, **{"lr": 0.1, name: value})
    opt = hc.SGD(model, lr=0.1)
    with pytest.raises(hc.InvalidValueError, match=name):
        setattr(opt, name, value)
    assert opt.lr == 0.1


@pytest.mark.parametrize("seed", [-1, 2**64, 1.5, "1", True, None, np.float64(2)])
def test_seeds_validate(seed, data):
    with pytest.raises(hc.InvalidValueError, match="seed"):
        hc.Sequential(hc.Linear(2, 2), seed=seed)
    if seed is not None:
        model = hc.models.mlp()
        with pytest.raises(hc.InvalidValueError, match="seed"):
            hc.fit(model, hc.SGD(model, lr=0.1), data, 1, 64, progress=False, seed=seed)
    hc.Sequential(hc.Linear(2, 2), seed=2**64 - 1)
    hc.Sequential(hc.Linear(2, 2), seed=np.uint64(2**64 - 1))


@pytest.fixture(scope="module")
def resume_meta(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "c.safetensors"
    model = hc.models.mlp()
    hc.fit(model, hc.SGD(model, lr=0.01), data, 1, 128, progress=False, checkpoint=path)
    return hc.load(path)[2]


def corrupt(meta, **changes):
    out = json.loads(json.dumps(meta))
    for key, value in changes.items():
        if key.startswith("history_"):
            out["history"][key[len("history_"):]] = value
        elif value is ...:
            del out[key]
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("changes,match", [
    ({"epoch": 5}, "beyond epochs=2"), ({"epoch": -1}, "epoch must be an integer >= 0"),
    ({"epoch": "1"}, "epoch must be"), ({"epoch": 1.5}, "epoch must be"),
    ({"step": -2}, "step must be"), ({"rng": ...}, "no 'rng'"), ({"rng": {"a": 1}}, "rng"),
    ({"history": [1]}, "history is list"), ({"history_loss": [1, 2]}, "history\\['loss'\\]"),
    ({"history_loss": ["x"]}, "history\\['loss'\\]"), ({"history_accuracy": ...}, "accuracy"),
])
def test_resume_metadata_is_validated(resume_meta, data, changes, match):
    meta = corrupt(resume_meta, **changes)
    if "history_accuracy" in changes:
        del meta["history"]["accuracy"]
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match=match):
        hc.fit(model, hc.SGD(model, lr=0.01), data, 2, 128, progress=False, resume=meta)
    with pytest.raises(hc.InvalidValueError, match="resume"):
        hc.fit(model, hc.SGD(model, lr=0.01), data, 2, 128, progress=False, resume=[1])


@pytest.mark.parametrize("args", [
    ["--seed", "-1"], ["--seed", str(2**64)], ["--seed", "x"], ["--threads", "100000000000"],
    ["--threads", "0"], ["--epochs", "0"], ["--epochs", "-3"], ["--batch-size", "0"],
    ["--lr", "nan"], ["--lr", "-1"], ["--lr", "inf"], ["--lr", "0"], ["--lr", "1e-60"],
    ["--momentum", "-0.5"], ["--weight-decay", "x"], ["--device", "gpu"], ["--device", "cpu:3"],
    ["--resume", "."], ["--save", "."], ["--save", "/nonexistent-dir/c.safetensors"],
    ["--data", "/nonexistent-dir"], ["--model", "resnet"], ["--on-nan", "ignore"],
    ["--recipe", "fast"], ["--batch-size", "100000"], ["--bogus"]])
def test_cli_bad_arguments_exit_2_with_a_message(args, capsys):
    rc = main(["--model", "mlp", "--sample", "--epochs", "1", "--no-progress"] + args)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "error:" in err and "Traceback" not in err


def test_cli_resume_of_a_folder_in_a_fresh_process(tmp_path):
    r = subprocess.run([sys.executable, "-m", "heterocnn", "--resume", str(tmp_path),
                        "--sample", "--no-progress"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a checkpoint file" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("value,error", [
    ("1.5", hc.DTypeError), (np.array("1.5"), hc.DTypeError), (np.array([1 + 2j]), hc.DTypeError),
    (np.array(0.5, F32), hc.ShapeError), (np.array([None], object), hc.DTypeError),
    (np.array([True]), hc.DTypeError), (object(), hc.DTypeError), (np.array([1e39]),
                                                                    hc.InvalidValueError),
    ([[0.5]], hc.ShapeError)])
def test_load_state_dict_refuses_what_is_not_a_real_array(value, error):
    model = hc.Sequential(hc.Linear(3, 1))
    before = model.state_dict()
    state = dict(before, **{"0.bias": value})
    with pytest.raises(error, match=r"0\.bias"):
        model.load_state_dict(state)
    assert unchanged(model, before)
    model.load_state_dict(dict(before, **{"0.bias": np.array([2], np.int64)}))  # integers: fine
    assert model.state_dict()["0.bias"][0] == 2.0
