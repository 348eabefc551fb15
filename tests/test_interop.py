"""Interop: heterocnn checkpoints in torch and back through safetensors files (logits within
1e-5), and ONNX export run by onnxruntime (logits within 1e-4). The `test` extra installs
safetensors, torch, onnx and onnxruntime."""

import numpy as np
import pytest

import heterocnn as hc
from heterocnn.interop import torch_state_dict

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")


def torch_lenet5():
    """LeNet-5 written in torch by hand, as hc.models.lenet5 is in heterocnn."""
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


@pytest.fixture
def trained_lenet5(rng):
    model = hc.models.lenet5(seed=3)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)
    for _ in range(3):
        model.train_step(rng.random((16, 1, 28, 28), dtype=np.float32),
                         rng.integers(0, 10, 16), opt)
    return model, opt


def max_err(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_checkpoint_loads_into_torch(trained_lenet5, tmp_path, rng):
    model, opt = trained_lenet5
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    hc.save(model, tmp_path / "w.safetensors")
    hc.save(model, tmp_path / "ckpt.safetensors", opt, epoch=1)
    tm = torch_lenet5()
    tm.load_state_dict(safetensors_torch.load_file(tmp_path / "w.safetensors"), strict=True)
    with torch.no_grad():
        err = max_err(tm(torch.from_numpy(x)).numpy(), model(x))
    print(f"heterocnn -> torch logits max abs error {err:.2e}")
    assert err < 1e-5
    with pytest.raises(RuntimeError, match="optimizer.momentum"):
        tm.load_state_dict(safetensors_torch.load_file(tmp_path / "ckpt.safetensors"))
    tm2 = torch_lenet5()
    tm2.load_state_dict(torch_state_dict(tmp_path / "ckpt.safetensors"), strict=True)
    with torch.no_grad():
        assert max_err(tm2(torch.from_numpy(x)).numpy(), model(x)) < 1e-5


def test_torch_weights_load_into_heterocnn(tmp_path, rng):
    torch.manual_seed(0)
    tm = torch_lenet5()
    safetensors_torch.save_file(tm.state_dict(), tmp_path / "torch.safetensors")
    model, opt, meta = hc.load(tmp_path / "torch.safetensors", model=hc.models.lenet5(seed=9))
    assert opt is None and meta == {}
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        err = max_err(model(x), tm(torch.from_numpy(x)).numpy())
    print(f"torch -> heterocnn logits max abs error {err:.2e}")
    assert err < 1e-5


@pytest.mark.parametrize("make, shape", [
    (lambda: hc.models.lenet5(seed=1), (1, 28, 28)),
    (lambda: hc.models.mlp(seed=1), (1, 28, 28)),
    (lambda: hc.Sequential(hc.Conv2d(3, 5, 3, stride=2, padding=1), hc.Sigmoid(),
                           hc.MaxPool2d(3, stride=2), hc.Flatten(), hc.Linear(5 * 3 * 3, 1),
                           loss="bce", seed=2), (3, 13, 13)),
    (lambda: hc.Sequential(hc.Linear(6, 4), hc.ReLU(), hc.Linear(4, 3)), (6,)),
])
def test_onnx_export_runs_in_onnxruntime(make, shape, tmp_path, rng):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = make()
    path = hc.export_onnx(model, str(tmp_path / "m.onnx"), input_shape=shape)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 7):  # the batch dimension is dynamic
        x = rng.random((n,) + shape, dtype=np.float32)
        (logits,) = session.run(["logits"], {"input": x})
        err = max_err(logits, model(x))
        print(f"ONNX {shape} batch {n}: logits max abs error {err:.2e}")
        assert logits.shape == (n, model.output_shape((n,) + shape)[1]) and err < 1e-4
