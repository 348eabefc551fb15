"""Resume: a run checkpointed after every epoch and continued ends bit-identical (CPU, fixed
threads) to the run that was never interrupted."""

import numpy as np
import pytest

import heterocnn as hc
from heterocnn.cli import main

pytest.importorskip("safetensors")

ARGS = ["--model", "mlp", "--sample", "--threads", "2", "--no-progress", "--batch-size", "128"]


def checkpoint_state(path):
    model, opt, meta = hc.load(path)
    tensors = dict(model.state_dict())
    tensors.update(opt.state())
    return tensors, meta


def test_cli_resume_is_bit_identical(tmp_path, capsys):
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    assert main(ARGS + ["--epochs", "2", "--save", str(straight)]) == 0
    assert main(ARGS + ["--epochs", "1", "--save", str(resumed), "--resume", str(resumed)]) == 0
    assert main(ARGS + ["--epochs", "2", "--save", str(resumed), "--resume", str(resumed)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {resumed} after epoch 1" in out
    a, meta_a = checkpoint_state(straight)
    b, meta_b = checkpoint_state(resumed)
    assert list(a) == list(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert meta_a["epoch"] == meta_b["epoch"] == 2 and meta_a["step"] == meta_b["step"]
    assert meta_a["rng"] == meta_b["rng"]
    assert meta_a["history"]["loss"] == meta_b["history"]["loss"]


def test_fit_resume_from_meta(tmp_path):
    hc.set_threads(2)
    X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
    X, y = X[:640], y[:640]
    path = tmp_path / "c.safetensors"
    model = hc.models.lenet5(seed=4)
    opt = hc.SGD(model, lr=0.02, momentum=0.9)
    full = hc.fit(model, opt, (X, y), 3, 64, seed=9, progress=False)
    model2 = hc.models.lenet5(seed=4)
    hc.fit(model2, hc.SGD(model2, lr=0.02, momentum=0.9), (X, y), 2, 64, seed=9,
           progress=False, checkpoint=path)
    model3, opt3, meta = hc.load(path)
    part = hc.fit(model3, opt3, (X, y), 3, 64, progress=False, resume=meta)
    assert part["loss"] == full["loss"] and len(part["images_per_s"]) == 3
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, model3.state_dict()[k], err_msg=k)


def test_resume_needs_checkpoint_meta():
    X, y = np.zeros((8, 1, 28, 28), np.uint8), np.zeros(8, np.int64)
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match="resume needs the meta"):
        hc.fit(model, hc.SGD(model, lr=0.1), (X, y), 2, 4, progress=False, resume={"epoch": 1})
