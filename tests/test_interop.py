"""Interop: heterocnn checkpoints in torch and back through safetensors files (logits within
1e-5), and ONNX export run by onnxruntime (logits within 1e-4). The `test` extra installs
safetensors, torch, onnx and onnxruntime."""

import numpy as np
import pytest

import heterocnn as hc
from conftest import new_layers_net, rel_err
from heterocnn.interop import to_torch, torch_state_dict

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
    (lambda: new_layers_net(seed=3, adaptive=1), (3, 13, 11)),
    (lambda: new_layers_net(seed=3), (3, 13, 11)),  # AdaptiveAvgPool2d(2) of 3x3: MatMuls
    (lambda: hc.Sequential(hc.Flatten(), hc.Linear(6, 5, bias=False), hc.GELU(), hc.Tanh(),
                           hc.LeakyReLU(0.3), hc.Linear(5, 4), hc.GELU("tanh"), hc.Linear(4, 3)),
     (6,)),
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


# -- the layers of issue 13's item 4 against torch ------------------------------------------

def test_new_layers_match_torch_forward_and_gradients(rng):
    model = new_layers_net(seed=1)
    tm = to_torch(model)
    assert list(tm.state_dict()) == list(model.state_dict())
    assert "0.bias" not in model.state_dict() and "14.bias" not in model.state_dict()
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), model.state_dict()[k])
    x = (2 * rng.standard_normal((5, 3, 13, 11))).astype(np.float32)
    y = rng.integers(0, 4, 5)
    xt = torch.from_numpy(x)
    logits = tm(xt)
    assert rel_err(model(x), logits.detach().numpy()) < 1e-5
    loss_t = torch.nn.CrossEntropyLoss()(logits, torch.from_numpy(y))
    loss_t.backward()
    loss, grads = model.loss_and_grads(x, y)
    assert abs(loss - loss_t.item()) < 1e-5 * max(1.0, abs(loss))
    assert list(grads) == [k for k, _ in tm.named_parameters()]
    for k, p in tm.named_parameters():
        assert rel_err(grads[k], p.grad.numpy()) < 1e-4, k


def test_new_layers_train_like_torch(rng):
    model = new_layers_net(seed=2)
    tm = to_torch(model)
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal((6, 3, 13, 11)).astype(np.float32)
        y = rng.integers(0, 4, 6)
        topt.zero_grad()
        loss_t = torch.nn.CrossEntropyLoss()(tm(torch.from_numpy(x)), torch.from_numpy(y))
        loss_t.backward()
        topt.step()
        assert abs(model.train_step(x, y, opt) - loss_t.item()) < 1e-4
    for k, v in tm.state_dict().items():
        assert rel_err(model.state_dict()[k], v.numpy()) < 1e-4, k


def test_torch_state_dict_with_new_layers_loads_into_heterocnn(tmp_path, rng):
    torch.manual_seed(4)
    tm = to_torch(new_layers_net(seed=0))
    for p in tm.parameters():  # torch's own initialisation, not heterocnn's
        torch.nn.init.normal_(p, std=0.3)
    safetensors_torch.save_file(tm.state_dict(), tmp_path / "torch.safetensors")
    model, _, _ = hc.load(tmp_path / "torch.safetensors", model=new_layers_net(seed=9))
    x = rng.standard_normal((4, 3, 13, 11)).astype(np.float32)
    with torch.no_grad():
        assert rel_err(model(x), tm(torch.from_numpy(x)).numpy()) < 1e-5


@pytest.mark.parametrize("layer, torch_layer", [
    (hc.AvgPool2d(3, stride=2, padding=1), lambda: torch.nn.AvgPool2d(3, 2, 1)),
    (hc.AvgPool2d(4, padding=2), lambda: torch.nn.AvgPool2d(4, padding=2)),
    (hc.AdaptiveAvgPool2d(3), lambda: torch.nn.AdaptiveAvgPool2d(3)),
    (hc.AdaptiveAvgPool2d(4), lambda: torch.nn.AdaptiveAvgPool2d(4)),
    (hc.AdaptiveAvgPool2d(9), lambda: torch.nn.AdaptiveAvgPool2d(9)),
    (hc.GELU(), lambda: torch.nn.GELU()),
    (hc.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh")),
    (hc.LeakyReLU(-0.2), lambda: torch.nn.LeakyReLU(-0.2)),
    (hc.Tanh(), lambda: torch.nn.Tanh()),
])
def test_new_layer_alone_matches_torch(rng, layer, torch_layer):
    # Through a net (input gradients through a Conv2d before it): forward and dx.
    model = hc.Sequential(hc.Conv2d(2, 3, 1), layer, hc.Flatten(), seed=1)
    tm = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1), torch_layer(), torch.nn.Flatten())
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    x = (3 * rng.standard_normal((3, 2, 7, 9))).astype(np.float32)
    out = tm(torch.from_numpy(x))
    assert rel_err(model(x), out.detach().numpy()) < 1e-5
    y = rng.integers(0, out.shape[1], 3)
    torch.nn.CrossEntropyLoss()(out, torch.from_numpy(y)).backward()
    _, grads = model.loss_and_grads(x, y)
    for k, p in tm.named_parameters():
        assert rel_err(grads[k], p.grad.numpy()) < 1e-4, k


@pytest.mark.parametrize("sample, out, ops", [
    ((2, 7, 5), 1, ["GlobalAveragePool"]),
    ((2, 8, 8), 4, ["AveragePool"]),                  # windows that tile the input
    ((2, 6, 9), 3, ["AveragePool"]),                  # non-square windows (2, 3)
    ((3, 13, 11), 2, ["Constant", "Constant", "MatMul", "MatMul"]),  # overlapping windows
    ((3, 13, 11), 5, ["Constant", "Constant", "MatMul", "MatMul"]),
    ((2, 8, 6), 4, ["Constant", "Constant", "MatMul", "MatMul"]),    # W not divisible
    ((2, 3, 4), 5, ["Constant", "Constant", "MatMul", "MatMul"]),    # larger than the input
])
def test_onnx_export_of_adaptive_pooling_of_every_size(tmp_path, rng, sample, out, ops):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = hc.Sequential(hc.Conv2d(sample[0], 4, 1), hc.AdaptiveAvgPool2d(out), hc.Flatten(),
                          hc.Linear(4 * out * out, 3), seed=1)
    path = hc.export_onnx(model, str(tmp_path / "m.onnx"), input_shape=sample)
    assert [n.op_type for n in onnx.load(path).graph.node][1:-3] == ops
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    for n in (1, 6):
        x = (3 * rng.standard_normal((n,) + sample)).astype(np.float32)
        assert max_err(session.run(["logits"], {"input": x})[0], model(x)) < 1e-5
