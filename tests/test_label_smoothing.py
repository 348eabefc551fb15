"""Label smoothing: hc.Sequential(..., label_smoothing=eps) trains against the target
(1 - eps) * onehot + eps / K, as torch.nn.CrossEntropyLoss(label_smoothing=eps): the core's
loss and gradient against torch and the NumPy reference, 0 equal to the plain loss, bad values,
and every place a model is rebuilt (checkpoints, copies, replicas, interop, CLI). The GPU's
loss against the CPU's is at the end (skipped without a GPU)."""

import numpy as np
import pytest

import heterocnn as hc
import reference as ref
from conftest import rel_err
from heterocnn import _core as core

F32 = np.float32
cuda = pytest.mark.skipif(not hc.cuda_available(), reason="no CUDA GPU available")


def logits(rng, N, K):
    return (3 * rng.standard_normal((N, K))).astype(F32), rng.integers(0, K, N)


@pytest.mark.parametrize("N, K", [(1, 7), (13, 7), (5, 2), (9, 41)])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.37, 1.0])
def test_loss_and_gradient_match_torch_and_reference(rng, N, K, eps):
    torch = pytest.importorskip("torch")
    z, y = logits(rng, N, K)
    loss, correct, dz = core.loss_cpu("cross_entropy", z, y, eps)
    tz = torch.from_numpy(z.copy()).requires_grad_()
    tloss = torch.nn.CrossEntropyLoss(label_smoothing=eps)(tz, torch.from_numpy(y))
    tloss.backward()
    assert abs(loss - tloss.item()) <= 1e-6 * max(1.0, abs(tloss.item()))
    assert rel_err(dz, tz.grad.numpy()) < 1e-6
    want_loss, want_dz = ref.softmax_cross_entropy(z.astype(np.float64), y, eps)
    assert abs(loss - want_loss) <= 1e-6 * max(1.0, abs(want_loss))
    assert rel_err(dz, want_dz) < 1e-6
    assert correct == int((z.argmax(axis=1) == y).sum())  # accuracy is counted as before


def test_zero_is_the_plain_loss_bit_for_bit(rng):
    z, y = logits(rng, 11, 7)
    plain = core.loss_cpu("cross_entropy", z, y)
    zero = core.loss_cpu("cross_entropy", z, y, 0.0)
    assert plain[:2] == zero[:2]
    np.testing.assert_array_equal(plain[2], zero[2])
    x = rng.standard_normal((6, 1, 28, 28)).astype(F32)
    labels = rng.integers(0, 10, 6)
    a = hc.models.lenet5(seed=2)
    b = hc.Sequential(*a.layers, seed=2, label_smoothing=0.0)
    la, ga = a.loss_and_grads(x, labels)
    lb, gb = b.loss_and_grads(x, labels)
    assert la == lb
    for k in ga:
        np.testing.assert_array_equal(ga[k], gb[k])


def test_model_loss_and_gradients_match_torch(rng):
    torch = pytest.importorskip("torch")
    from heterocnn.interop import to_torch, torch_loss

    base = hc.models.lenet5(seed=3)
    model = hc.Sequential(*base.layers, seed=3, label_smoothing=0.1)
    assert "label_smoothing=0.1" in repr(model)
    x = rng.standard_normal((9, 1, 28, 28)).astype(F32)
    y = rng.integers(0, 10, 9)
    loss, grads = model.loss_and_grads(x, y)
    tmodel, tloss_fn = to_torch(model), torch_loss(model)
    assert isinstance(tloss_fn, torch.nn.CrossEntropyLoss) and tloss_fn.label_smoothing == 0.1
    tloss = tloss_fn(tmodel(torch.from_numpy(x)), torch.from_numpy(y))
    tloss.backward()
    assert abs(loss - tloss.item()) <= 1e-5 * abs(tloss.item())
    tparams = dict(tmodel.named_parameters())
    for k, g in grads.items():
        assert rel_err(g, tparams[k].grad.numpy()) < 1e-4, k
    _, correct = model.compute_grads(x, y, with_correct=True)
    assert correct == base.compute_grads(x, y, with_correct=True)[1]


@pytest.mark.parametrize("value", [-0.1, 1.01, float("nan"), float("inf"), "0.1", True, None])
def test_bad_values_are_refused(value):
    with pytest.raises(hc.InvalidValueError, match="label_smoothing"):
        hc.Sequential(hc.Linear(3, 4), label_smoothing=value)


def test_bce_takes_no_smoothing():
    with pytest.raises(hc.InvalidValueError, match="label_smoothing is for loss 'cross_entropy'"):
        hc.Sequential(hc.Linear(3, 1), loss="bce", label_smoothing=0.1)
    assert hc.Sequential(hc.Linear(3, 1), loss="bce", label_smoothing=0).label_smoothing == 0.0


def test_every_rebuild_keeps_the_smoothing(rng, tmp_path):
    pytest.importorskip("safetensors")
    model = hc.Sequential(hc.Flatten(), hc.Linear(12, 9), hc.ReLU(), hc.Linear(9, 5), seed=1,
                          label_smoothing=0.2)
    x = rng.standard_normal((10, 1, 3, 4)).astype(F32)
    y = rng.integers(0, 5, 10)
    loss = model.compute_grads(x, y)
    # hc.save / hc.load rebuild the architecture with it
    loaded, _, _ = hc.load(hc.save(model, tmp_path / "m.safetensors"))
    assert loaded.label_smoothing == 0.2 and loaded.compute_grads(x, y) == loss
    # placed_copy
    assert model.placed_copy("cpu").compute_grads(x, y) == loss
    # data-parallel replicas: each replica's loss is smoothed
    dp = hc.Sequential(*model.layers, seed=1, label_smoothing=0.2).to(
        hc.DataParallel(["cpu", "cpu"], shares=[3, 2], threads=[1, 2]))
    one = hc.Sequential(*model.layers, seed=1, label_smoothing=0.2)
    o1, o2 = hc.SGD(one, lr=0.1), hc.SGD(dp, lr=0.1)
    for _ in range(3):
        a, b = one.train_step(x, y, o1), dp.train_step(x, y, o2)
        assert abs(a - b) < 1e-6 * max(1.0, abs(a))
    for k, v in one.state_dict().items():
        assert rel_err(dp.state_dict()[k], v) < 1e-5, k


def test_smoothing_changes_training_as_torch_does():
    # the target mass on the other classes: a smoothed model's loss cannot reach 0
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 6)).astype(F32)
    y = rng.integers(0, 3, 16)
    model = hc.Sequential(hc.Linear(6, 3), seed=0, label_smoothing=0.3)
    opt = hc.Adam(model, lr=0.05)
    losses = [model.train_step(x, y, opt) for _ in range(200)]
    floor = -(0.8 * np.log(0.8) + 2 * 0.1 * np.log(0.1))  # the entropy of the target
    assert losses[-1] < losses[0] and losses[-1] > floor - 1e-6


def test_recipe_and_cli(tmp_path, capsys):
    pytest.importorskip("safetensors")
    from heterocnn.cli import main

    assert hc.Recipe().label_smoothing == 0.0
    assert hc.Recipe(label_smoothing=0.1).label_smoothing == 0.1
    for bad in (-0.1, 1.5, "0.1"):
        with pytest.raises(hc.InvalidValueError, match="label_smoothing"):
            hc.Recipe(label_smoothing=bad)
    args = ["--model", "mlp", "--sample", "--threads", "2", "--no-progress", "--device", "cpu",
            "--batch-size", "512", "--epochs", "1"]
    path = tmp_path / "c.safetensors"
    assert main(args + ["--label-smoothing", "0.1", "--save", str(path)]) == 0
    model, _, _ = hc.load(path)
    assert model.label_smoothing == 0.1
    assert main(args + ["--label-smoothing", "1.5"]) == 2
    assert "--label-smoothing must be from 0 to 1" in capsys.readouterr().err
    assert main(args + ["--recipe", "default", "--epochs", "1", "--label-smoothing", "0.05",
                        "--save", str(path)]) == 0
    assert hc.load(path)[0].label_smoothing == 0.05


@cuda
@pytest.mark.parametrize("N, K", [(1, 7), (13, 7), (33, 10), (9, 41)])  # both CUDA kernels
@pytest.mark.parametrize("eps", [0.0, 0.1, 1.0])
def test_gpu_smoothed_loss_matches_cpu(rng, N, K, eps):
    make = lambda: hc.Sequential(hc.Linear(5, K), seed=4, label_smoothing=eps)  # noqa: E731
    cpu, gpu = make(), make().to("cuda")
    x = rng.standard_normal((N, 5)).astype(F32)
    y = rng.integers(0, K, N)
    loss_c, grads_c = cpu.loss_and_grads(x, y)
    loss_g, grads_g = gpu.loss_and_grads(x, y)
    assert abs(loss_g - loss_c) < 1e-5 * max(1.0, abs(loss_c))
    for k in grads_c:
        assert rel_err(grads_g[k], grads_c[k]) < 1e-5, k
    opt_c, opt_g = hc.Adam(cpu, lr=1e-2), hc.Adam(gpu, lr=1e-2)
    for _ in range(3):  # the captured step, replayed
        assert abs(gpu.train_step(x, y, opt_g) - cpu.train_step(x, y, opt_c)) < 1e-4
