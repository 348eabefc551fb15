"""Models on a second GPU ("cuda:1") and models split across two GPUs, against the CPU path:
forward within 1e-5 relative, gradients and trained weights within 1e-4 (test_cuda.py's
tolerances). Skipped where fewer than two GPUs are present."""

import numpy as np
import pytest

import heterocnn as hc
from conftest import rel_err
from test_model import small_convnet

pytestmark = pytest.mark.skipif(hc.cuda_device_count() < 2, reason="needs two CUDA GPUs")

F32 = np.float32
SHAPE, CLASSES = (3, 11, 7), 5


def batch(rng, n):
    return rng.standard_normal((n,) + SHAPE).astype(F32), rng.integers(0, CLASSES, n)


def train_both(rng, cpu, other, steps=(8, 8, 3, 8)):
    """The same SGD steps on both models; the losses agree step by step."""
    opt_c = hc.SGD(cpu, lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt_o = hc.SGD(other, lr=0.05, momentum=0.9, weight_decay=1e-4)
    for n in steps:
        x, y = batch(rng, n)
        assert abs(other.train_step(x, y, opt_o) - cpu.train_step(x, y, opt_c)) < 1e-4
    for k, v in cpu.state_dict().items():
        assert rel_err(other.state_dict()[k], v) < 1e-4, k


def test_whole_model_on_the_second_gpu(rng):
    cpu, gpu = small_convnet(seed=3), small_convnet(seed=3).to("cuda:1")
    assert gpu.placement == ("cuda:1",) * len(gpu.layers)
    x, y = batch(rng, 5)
    assert rel_err(gpu(x), cpu(x)) < 1e-5
    _, grads_c = cpu.loss_and_grads(x, y)
    _, grads_g = gpu.loss_and_grads(x, y)
    for k in grads_c:
        assert rel_err(grads_g[k], grads_c[k]) < 1e-4, k
    train_both(rng, cpu, gpu)
    # its memory is on device 1 only
    assert gpu._net.arena_bytes(1) > 0 and gpu._net.arena_bytes(0) == 0


def test_model_split_across_two_gpus(rng):
    """Convolutions on cuda:0, the rest on cuda:1: activations cross between the devices in
    forward and their gradients in backward; each device's SGD updates its own parameters."""
    cpu, split = small_convnet(seed=4), small_convnet(seed=4)
    n = len(split.layers)
    split.to(["cuda:0"] * 6 + ["cuda:1"] * (n - 6))
    assert split._net.arena_bytes(0) > 0 and split._net.arena_bytes(1) > 0
    train_both(rng, cpu, split)
    # and three places at once: CPU, then GPU 1, then GPU 0
    split.to(["cpu"] * 2 + ["cuda:1"] * 3 + ["cuda:0"] * (n - 5))
    train_both(rng, cpu, split, steps=(4, 1))
    x, _ = batch(rng, 2)
    assert rel_err(split(x), cpu(x)) < 1e-5


def test_device_dataset_on_the_second_gpu(rng):
    X = rng.integers(0, 256, (200, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 200)
    host = hc.models.lenet5(seed=6).to("cuda:1")
    dev = hc.models.lenet5(seed=6).to("cuda:1")
    data = hc.DeviceDataset((X, y), "cuda:1")
    opt_h, opt_d = hc.SGD(host, lr=0.05, momentum=0.9), hc.SGD(dev, lr=0.05, momentum=0.9)
    for n in (64, 64, 13):
        idx = rng.permutation(200)[:n]
        x = X[idx].astype(F32) * np.float32(1 / 255)
        assert dev.train_step_on(data, idx, opt_d) == host.train_step(x, y[idx], opt_h)
    for k, v in host.state_dict().items():
        np.testing.assert_array_equal(dev.state_dict()[k], v)
    # data on one GPU and a model on the other is refused, naming the data's device
    other = hc.models.lenet5(seed=6).to("cuda:0")
    before = other.state_dict()
    with pytest.raises(hc.InvalidValueError, match="held on cuda:1 needs the whole model on cuda:1"):
        other.train_step_on(data, np.array([1, 2]), hc.SGD(other, lr=0.1))
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_fit_on_the_second_gpu_keeps_the_first_untouched():
    train = hc.datasets.fashion_mnist("train", sample=True)
    test = hc.datasets.fashion_mnist("test", sample=True)
    free0 = hc.cuda_device(0)["free_bytes"]
    model = hc.models.lenet5(seed=0).to("cuda:1")
    history = hc.fit(model, hc.SGD(model, lr=0.02, momentum=0.9), train, epochs=2,
                     batch_size=64, val=test, progress=False)
    assert history["val_accuracy"][-1] >= 0.70
    assert model._net.arena_bytes(0) == 0
    # device 0 gave nothing to this model (a CUDA context there, if any, predates it)
    assert hc.cuda_device(0)["free_bytes"] >= free0 - (64 << 20)


def test_two_models_on_two_gpus_train_independently(rng):
    a0, a1 = small_convnet(seed=7).to("cuda:0"), small_convnet(seed=7).to("cuda:1")
    opt0, opt1 = hc.SGD(a0, lr=0.05, momentum=0.9), hc.SGD(a1, lr=0.05, momentum=0.9)
    for n in (8, 8, 5):
        x, y = batch(rng, n)
        assert abs(a0.train_step(x, y, opt0) - a1.train_step(x, y, opt1)) < 1e-5
    for k, v in a0.state_dict().items():
        assert rel_err(a1.state_dict()[k], v) < 1e-5, k
