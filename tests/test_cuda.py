"""The CUDA path against the CPU path: same weights, random odd shapes; forward within 1e-5
relative, gradients within 1e-4 (float32 on both; the GPU sums in other orders). Skipped where
no GPU is present (the CUDA kernels are compiled, not run, on such machines)."""

import numpy as np
import pytest

import heterocnn as hc
from conftest import new_layers_net, rel_err
from test_model import small_convnet

pytestmark = pytest.mark.skipif(not hc.cuda_available(), reason="no CUDA GPU available")

F32 = np.float32


def pair(make):
    """The same model twice, one on the CPU and one on the GPU."""
    cpu, gpu = make(), make()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.to("cuda")


NETS = {
    "small_convnet": (small_convnet, (3, 11, 7), 5),
    "lenet5": (hc.models.lenet5, (1, 28, 28), 10),
    "mlp": (hc.models.mlp, (1, 28, 28), 10),
    "convnet": (hc.models.convnet, (1, 28, 28), 10),
    # Every layer after a ReLU applies that ReLU's backward in its own dx on the GPU: a strided
    # conv (dx through col2im), overlapping and tiled pools (with pixels past the last window),
    # a 1x1 conv and a Linear.
    "relu_before": (lambda: hc.Sequential(
        hc.Conv2d(2, 6, 3, padding=1), hc.ReLU(), hc.Conv2d(6, 5, 3, stride=2, padding=1),
        hc.ReLU(), hc.MaxPool2d(3, stride=2), hc.Conv2d(5, 7, 1), hc.ReLU(), hc.MaxPool2d(2),
        hc.Flatten(), hc.Linear(7, 6), hc.ReLU(), hc.Linear(6, 4), seed=3), (2, 13, 11), 4),
    "bce": (lambda: hc.Sequential(hc.Conv2d(2, 5, 3, stride=2, padding=2), hc.Sigmoid(),
                                  hc.MaxPool2d(3, 2), hc.Flatten(), hc.Linear(5 * 2 * 2, 1),
                                  loss="bce", seed=4), (2, 9, 8), 2),
    # BatchNorm (fused with the ReLU after it, and not) and Dropout: the same seeds give the
    # same masks on both devices, so the results must match. The layers before a BatchNorm have
    # no bias (its gradient there is 0 up to rounding: no relative error to compare).
    "bn_dropout": (lambda: hc.Sequential(
        hc.Conv2d(3, 6, 3, padding=1, bias=False), hc.BatchNorm2d(6), hc.ReLU(),
        hc.Dropout2d(0.3), hc.MaxPool2d(2), hc.BatchNorm2d(6, affine=False), hc.Flatten(),
        hc.Linear(6 * 5 * 3, 9, bias=False), hc.BatchNorm1d(9), hc.Dropout(0.4), hc.ReLU(),
        hc.Linear(9, 5), seed=6), (3, 11, 7), 5),
    # BatchNorm with momentum=None (torch's cumulative average: the factor 1 / count read from
    # the device-side num_batches_tracked), fused with the ReLU after it and not.
    "bn_cumulative": (lambda: hc.Sequential(
        hc.Conv2d(3, 6, 3, padding=1, bias=False), hc.BatchNorm2d(6, momentum=None), hc.ReLU(),
        hc.MaxPool2d(2), hc.Flatten(), hc.Linear(6 * 5 * 3, 9, bias=False),
        hc.BatchNorm1d(9, momentum=None, affine=False), hc.Linear(9, 5), seed=7), (3, 11, 7), 5),
    # The layers of issue 13's item 4: GELU, LeakyReLU, Tanh, AvgPool2d (padded, and masking a
    # ReLU before it), adaptive pooling with overlapping windows, global pooling after a ReLU,
    # convolutions and linear layers without bias.
    "new_layers": (new_layers_net, (3, 13, 11), 4),
    # Overlapping padded windows that do not tile the input, global pooling over planes wider
    # than a warp (8x7), a negative LeakyReLU slope, a bias-free strided convolution, GELU's
    # tanh form.
    "pool_and_activations": (lambda: hc.Sequential(
        hc.Conv2d(2, 6, 3, padding=1, bias=False), hc.Tanh(), hc.AvgPool2d(4, stride=3, padding=2),
        hc.GELU(approximate="tanh"), hc.Conv2d(6, 5, 3, padding=1, bias=False), hc.ReLU(), hc.AdaptiveAvgPool2d(1),
        hc.Flatten(), hc.Linear(5, 4, bias=False), hc.LeakyReLU(-0.1), hc.Linear(4, 3),
        seed=5), (2, 21, 19), 3),
    "adaptive_pool": (lambda: hc.Sequential(
        hc.Conv2d(3, 4, 3, stride=2, bias=False), hc.LeakyReLU(), hc.AdaptiveAvgPool2d(3),
        hc.Flatten(), hc.Linear(36, 5), seed=6), (3, 15, 17), 5),
}


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("N", [1, 5])
def test_forward_and_gradients_match_cpu(rng, name, N):
    make, shape, classes = NETS[name]
    cpu, gpu = pair(make)
    x = rng.standard_normal((N,) + shape).astype(F32)
    y = rng.integers(0, classes, N)
    if N == 1 and any(isinstance(layer, hc.BatchNorm1d) for layer in cpu.layers):
        for model in (cpu, gpu):  # one value per channel: refused in training, as torch does
            with pytest.raises(hc.InvalidValueError, match="more than 1 value per channel"):
                model(x)
        cpu.eval(), gpu.eval()  # the running estimates: defined for one sample
    assert rel_err(gpu(x), cpu(x)) < 1e-5
    loss_c, grads_c = cpu.loss_and_grads(x, y)
    loss_g, grads_g = gpu.loss_and_grads(x, y)
    assert abs(loss_g - loss_c) < 1e-5 * max(1, abs(loss_c))
    # Relative to the gradient, or to 1% of the largest one where a gradient is a cancelled sum
    # (a BatchNorm's weight behind another BatchNorm: 1e-6 out of terms of 1e-3, where the
    # GPU's float partial sums and the CPU's double sums differ in the last digits of the terms).
    largest = max(np.linalg.norm(g) for g in grads_c.values())
    for k in grads_c:
        scale = max(np.linalg.norm(grads_c[k]), 1e-2 * largest)
        assert np.linalg.norm(grads_g[k] - grads_c[k]) < 1e-4 * scale, k


@pytest.mark.parametrize("name", ["small_convnet", "lenet5", "bce", "relu_before", "new_layers",
                                  "pool_and_activations", "bn_dropout", "bn_cumulative"])
def test_train_steps_match_cpu_across_batch_sizes_and_lr_changes(rng, name):
    make, shape, classes = NETS[name]
    cpu, gpu = pair(make)
    opt_c = hc.SGD(cpu, lr=0.05, momentum=0.9, weight_decay=1e-4)
    opt_g = hc.SGD(gpu, lr=0.05, momentum=0.9, weight_decay=1e-4)
    for step, n in enumerate((8, 8, 3, 8, 8)):  # graph per batch shape, replayed
        if step == 3:
            opt_c.lr = opt_g.lr = 0.01  # a replayed graph must see the new rate
        x = rng.standard_normal((n,) + shape).astype(F32)
        y = rng.integers(0, classes, n)
        assert abs(gpu.train_step(x, y, opt_g) - cpu.train_step(x, y, opt_c)) < 1e-4
    for k, v in cpu.state_dict().items():
        assert rel_err(gpu.state_dict()[k], v) < 1e-4, k


def test_mixed_placement_matches_cpu(rng):
    cpu, mixed = small_convnet(seed=2), small_convnet(seed=2)
    n = len(mixed.layers)
    mixed.to(["cuda"] * 6 + ["cpu"] * (n - 6))  # convolutions on the GPU, the rest on the CPU
    opt_c, opt_m = hc.SGD(cpu, lr=0.1, momentum=0.9), hc.SGD(mixed, lr=0.1, momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 11, 7)).astype(F32)
        y = rng.integers(0, 5, 4)
        assert abs(mixed.train_step(x, y, opt_m) - cpu.train_step(x, y, opt_c)) < 1e-4
    for k, v in cpu.state_dict().items():
        assert rel_err(mixed.state_dict()[k], v) < 1e-4, k
    mixed.to(["cpu"] * 3 + ["cuda"] * (n - 3))
    x = rng.standard_normal((2, 3, 11, 7)).astype(F32)
    assert rel_err(mixed(x), cpu(x)) < 1e-5


def test_gpu_training_is_reproducible(rng):
    x = rng.standard_normal((64, 3, 11, 7)).astype(F32)
    y = rng.integers(0, 5, 64)
    states = []
    for _ in range(2):
        model = small_convnet(seed=9).to("cuda")
        hc.fit(model, hc.SGD(model, lr=0.05, momentum=0.9), (x, y), epochs=2, batch_size=16,
               seed=1, progress=False)
        states.append(model.state_dict())
    for k in states[0]:
        np.testing.assert_array_equal(states[0][k], states[1][k])


def test_fit_on_the_gpu_learns_the_sample():
    train = hc.datasets.fashion_mnist("train", sample=True)
    test = hc.datasets.fashion_mnist("test", sample=True)
    model = hc.models.lenet5(seed=0).to("cuda")
    history = hc.fit(model, hc.SGD(model, lr=0.02, momentum=0.9), train, epochs=4,
                     batch_size=64, val=test, progress=False)
    assert history["val_accuracy"][-1] >= 0.78  # as on the CPU (test_training.py)


def test_moving_back_and_forth_keeps_weights(rng):
    model = small_convnet(seed=1)
    before = model.state_dict()
    model.to("cuda").to("cpu")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_profiling_on_the_gpu(rng):
    model = hc.models.lenet5().to("cuda")
    model.profile()
    opt = hc.SGD(model, lr=0.01)
    model.train_step(rng.random((8, 1, 28, 28), dtype=F32), rng.integers(0, 10, 8), opt)
    times = model.layer_times()
    assert times[0]["forward_s"] > 0 and times[0]["backward_s"] > 0


def test_out_of_device_memory_leaves_the_model_usable(rng):
    model = hc.Sequential(hc.Conv2d(1, 1024, 1), hc.ReLU(), hc.MaxPool2d(8), hc.Flatten(),
                          hc.Linear(1024, 2), seed=0)
    cpu = hc.Sequential(*model.layers, seed=0)
    model.to("cuda")
    huge = np.ones((1 << 20, 1, 8, 8), dtype=F32)  # 256 MiB here, 256 GiB after the conv
    with pytest.raises(hc.DeviceOutOfMemoryError, match=r"out of device memory: asked for \d+"):
        model(huge)
    x = rng.standard_normal((3, 1, 8, 8)).astype(F32)
    assert rel_err(model(x), cpu(x)) < 1e-5  # the device and the model still work
    model.to("cpu")
    np.testing.assert_array_equal(model(x), cpu(x))


def test_missing_device_index():
    model = small_convnet()
    with pytest.raises(hc.DeviceError, match=r"cuda:99 does not exist"):
        model.to("cuda:99")
    assert model.placement == ("cpu",) * len(model.layers)


def test_build_info_names_the_gpu():
    info = hc.build_info()
    assert info["cuda_compiled"] and info["cuda_available"]
    gpu = info["gpus"][0]
    assert gpu["name"] and gpu["compute_capability"][0] >= 7 and gpu["total_bytes"] > 0


def test_device_dataset_steps_equal_host_steps(rng):
    X = rng.integers(0, 256, (300, 1, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 300)
    a, b = pair(lambda: hc.models.lenet5(seed=3))
    b2 = hc.models.lenet5(seed=3).to("cuda")
    data = hc.DeviceDataset((X, y), "cuda")
    assert len(data) == 300 and "uint8" in repr(data)
    opt_b, opt_b2 = hc.SGD(b, lr=0.05, momentum=0.9), hc.SGD(b2, lr=0.05, momentum=0.9)
    for step in range(4):
        idx = rng.permutation(300)[: 64 if step != 2 else 17]
        x = X[idx].astype(F32) * np.float32(1 / 255)
        assert b2.train_step_on(data, idx, opt_b2) == b.train_step(x, y[idx], opt_b)
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(b2.state_dict()[k], v)


def test_fit_with_and_without_device_data_agree():
    train = hc.datasets.fashion_mnist("train", sample=True)
    X, y = train.as_tuple()
    histories = []
    for device_data in (True, False):
        model = hc.models.mlp(seed=1).to("cuda")
        histories.append(hc.fit(model, hc.SGD(model, lr=0.05, momentum=0.9), (X[:1000], y[:1000]),
                                epochs=2, batch_size=64, progress=False,
                                device_data=device_data)["loss"])
    assert histories[0] == histories[1]


def test_device_dataset_errors(rng):
    X = rng.random((10, 1, 28, 28), dtype=F32)
    y = rng.integers(0, 10, 10)
    data = hc.DeviceDataset((X, y))
    model = hc.models.lenet5().to("cuda")
    opt = hc.SGD(model, lr=0.1)
    before = model.state_dict()
    with pytest.raises(hc.InvalidValueError, match="index 10 at position 1 is outside the data set of 10"):
        model.train_step_on(data, np.array([3, 10]), opt)
    with pytest.raises(hc.InvalidValueError, match="at least one index"):
        model.train_step_on(data, np.array([], dtype=np.int64), opt)
    cpu_model = hc.models.lenet5()
    with pytest.raises(hc.InvalidValueError, match="whole model on cuda:0"):
        cpu_model.train_step_on(data, np.array([1]), hc.SGD(cpu_model, lr=0.1))
    with pytest.raises(hc.InvalidValueError, match="labels must lie in"):
        small = hc.Sequential(hc.Flatten(), hc.Linear(784, 3)).to("cuda")
        small.train_step_on(data, np.array([1]), hc.SGD(small, lr=0.1))
    with pytest.raises(hc.InvalidValueError, match="CUDA device"):
        hc.DeviceDataset((X, y), "cpu")
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_one_store_and_one_arena_per_device_sized_once(rng):
    model = hc.models.lenet5(seed=0)
    param_bytes = sum(4 * int(np.prod(s)) for _, s in model.parameters())
    assert model._net.arena_bytes(0) == 0 and model._net.store_bytes("cuda:0") == 0
    model.to("cuda")
    # values and gradients, each parameter padded to 64 floats; no step buffers yet
    assert 2 * param_bytes <= model._net.store_bytes("cuda:0") < 2 * param_bytes + 256 * 2 * 10
    assert model._net.store_bytes("cpu") == 0 and model._net.arena_bytes(0) == 0
    opt = hc.SGD(model, lr=0.01, momentum=0.9)
    x = rng.random((64, 1, 28, 28), dtype=F32)
    y = rng.integers(0, 10, 64)
    model.train_step(x, y, opt)
    grown = model._net.arena_bytes(0)
    assert grown > 0  # activations, gradient buffers and workspaces
    for n in (17, 64, 1):  # smaller batches reuse the layout (each gets its graph once)
        model.train_step(x[:n], y[:n], opt)
    assert model._net.arena_bytes(0) == grown
    free = hc.cuda_device(0)["free_bytes"]
    for n in (64, 17, 64, 1):  # the steady state allocates nothing on the device
        model.train_step(x[:n], y[:n], opt)
    assert hc.cuda_device(0)["free_bytes"] == free
    model.to("cpu")
    assert model._net.arena_bytes(0) == 0


def test_pipelined_steps_report_in_order(rng):
    """A started step reports on the next start (it runs while the next batch is prepared);
    the results equal those of steps run one at a time."""
    a = hc.models.lenet5(seed=5).to("cuda")
    b = hc.models.lenet5(seed=5).to("cuda")
    opt_a, opt_b = hc.SGD(a, lr=0.05, momentum=0.9), hc.SGD(b, lr=0.05, momentum=0.9)
    batches = [(rng.random((n, 1, 28, 28), dtype=F32), rng.integers(0, 10, n))
               for n in (32, 32, 7, 32)]
    expected = [b.train_step(x, y, opt_b) for x, y in batches]
    reported = []
    for i, (x, y) in enumerate(batches):
        results = a._start_step(x, y, opt_a)
        assert len(results) == (0 if i == 0 else 1)
        reported += [loss for loss, _ in results]
    reported += [loss for loss, _ in a._finish_steps()]
    assert a._finish_steps() == []
    assert reported == expected
    for k, v in b.state_dict().items():
        np.testing.assert_array_equal(a.state_dict()[k], v)


def test_nan_guard_on_the_gpu():
    X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
    data = (X[:512], y[:512])
    model = hc.models.mlp(seed=0).to("cuda")
    opt = hc.SGD(model, lr=0.05, momentum=0.9)

    def explode(epoch, history):
        opt.lr = 1e12  # from epoch 2 on

    with pytest.raises(hc.NonFiniteError, match=r"step \d+ \(batch \d+ of the epoch\)") as info:
        hc.fit(model, opt, data, 3, 64, progress=False, on_epoch_end=explode)
    assert 8 < info.value.step <= 16  # in epoch 2 (8 batches an epoch)
    assert all(np.isfinite(v).all() for v in model.state_dict().values())  # epoch 2's start
    model = hc.models.mlp(seed=0).to("cuda")
    opt = hc.SGD(model, lr=1e12, momentum=0.9)
    history = hc.fit(model, opt, data, 1, 64, progress=False, on_nan="skip")
    assert history["skipped_steps"][0] > 0
    assert all(np.isfinite(v).all() for v in model.state_dict().values())


def test_a_step_that_cannot_fit_on_the_gpu_is_rejected_before_training():
    model = hc.Sequential(hc.Conv2d(1, 1024, 1), hc.ReLU(), hc.MaxPool2d(8), hc.Flatten(),
                          hc.Linear(1024, 10)).to("cuda")
    n = 1 << 20  # 256 MiB of uint8 here, about 512 GiB of activations on the device
    X, y = np.zeros((n, 1, 8, 8), np.uint8), np.zeros(n, np.int64)
    arena = model._net.arena_bytes(0)
    with pytest.raises(hc.DeviceOutOfMemoryError, match=r"on cuda:0 needs an estimated .* only"):
        hc.fit(model, hc.SGD(model, lr=0.1), (X, y), 1, n, progress=False)
    assert model._net.arena_bytes(0) == arena  # nothing was allocated for it


def assert_buffers_and_eval_match(cpu, gpu, shape, rng):
    """The layer buffers of the two (step counters and num_batches_tracked exactly, the
    running statistics within 1e-4), then their outputs in evaluation mode."""
    bc, bg = cpu.buffers(all_buffers=True), gpu.buffers(all_buffers=True)
    for k, v in bc.items():
        if v.dtype == np.int64:
            np.testing.assert_array_equal(bg[k], v, err_msg=k)
        else:
            assert rel_err(bg[k], v) < 1e-4, k
    cpu.eval()
    gpu.eval()
    x = rng.standard_normal((4,) + shape).astype(F32)
    assert rel_err(gpu(x), cpu(x)) < 1e-5


def test_batchnorm_and_dropout_buffers_and_eval_match_cpu(rng):
    make, shape, classes = NETS["bn_dropout"]
    cpu, gpu = pair(make)
    opt_c, opt_g = hc.SGD(cpu, lr=0.05, momentum=0.9), hc.SGD(gpu, lr=0.05, momentum=0.9)
    for n in (8, 8, 8, 5):  # replayed graphs: a new dropout step each time
        x = rng.standard_normal((n,) + shape).astype(F32)
        y = rng.integers(0, classes, n)
        assert abs(gpu.train_step(x, y, opt_g) - cpu.train_step(x, y, opt_c)) < 1e-4
    assert_buffers_and_eval_match(cpu, gpu, shape, rng)


def test_cumulative_batchnorm_factor_comes_from_the_device_count(rng):
    """BatchNorm(momentum=None) in a captured step replayed at one batch shape: each replay
    counts its batch on the device and moves the running estimates by 1 / that count, as the
    CPU does; a count loaded mid-run (a resume from step 10) is what the next replay uses."""
    make, shape, classes = NETS["bn_cumulative"]
    cpu, gpu = pair(make)
    opt_c, opt_g = hc.SGD(cpu, lr=0.05, momentum=0.9), hc.SGD(gpu, lr=0.05, momentum=0.9)
    for step in range(7):
        if step == 4:  # as a checkpoint resume does: new buffers into the same device memory
            state = cpu.state_dict()
            for key in ("1.num_batches_tracked", "6.num_batches_tracked"):
                state[key] = np.array(10, np.int64)
            cpu.load_state_dict(state)
            gpu.load_state_dict(state)
        x = (2 * rng.standard_normal((8,) + shape) + 1).astype(F32)
        y = rng.integers(0, classes, 8)
        assert abs(gpu.train_step(x, y, opt_g) - cpu.train_step(x, y, opt_c)) < 1e-4
    assert cpu.buffers()["1.num_batches_tracked"] == gpu.buffers()["1.num_batches_tracked"] == 13
    assert_buffers_and_eval_match(cpu, gpu, shape, rng)


def test_dropout_masks_are_bit_identical_on_cpu_and_gpu(rng):
    def make():
        return hc.Sequential(hc.Dropout(0.3), hc.Flatten(), seed=11)
    cpu, gpu = make(), make().to("cuda")
    x = rng.standard_normal((64, 3, 17, 19)).astype(F32)
    for _ in range(3):
        np.testing.assert_array_equal(gpu(x), cpu(x))
    d2 = [hc.Sequential(hc.Dropout2d(0.5), hc.Flatten(), seed=12) for _ in range(2)]
    d2[1].to("cuda")
    np.testing.assert_array_equal(d2[1](x), d2[0](x))


def test_batchnorm_and_dropout_on_split_placements_and_gpu_cpu_replicas(rng):
    """Every placement: the BatchNorm/Dropout net split between the GPU and the CPU equals it
    on the CPU; data-parallel replicas on the GPU and the CPU equal two CPU replicas with the
    same shares (each replica normalises its own rows and draws its own stream, wherever it
    runs), buffers included."""
    make, shape, classes = NETS["bn_dropout"]
    cpu, mixed = make(), make()
    mixed.to(["cuda"] * 5 + ["cpu"] * (len(mixed.layers) - 5))
    on_gpu = hc.DataParallel(["cuda", "cpu"], shares=[1, 1])
    on_cpu = hc.DataParallel(["cpu", "cpu"], shares=[1, 1], threads=[1, 2])
    dp_g, dp_c = make().to(on_gpu), make().to(on_cpu)
    models = (cpu, mixed, dp_g, dp_c)
    opts = [hc.SGD(m, lr=0.05, momentum=0.9) for m in models]
    for _ in range(3):
        x = rng.standard_normal((8,) + shape).astype(F32)
        y = rng.integers(0, classes, 8)
        losses = [m.train_step(x, y, o) for m, o in zip(models, opts)]
        assert abs(losses[1] - losses[0]) < 1e-4 and abs(losses[2] - losses[3]) < 1e-4
    for a, b in ((mixed, cpu), (dp_g, dp_c)):
        want = {**b.state_dict(), **b.buffers(all_buffers=True)}
        got = {**a.state_dict(), **a.buffers(all_buffers=True)}
        for k, v in want.items():
            assert rel_err(got[k], v) < 1e-4, k
    x = rng.standard_normal((5,) + shape).astype(F32)
    for m in models:
        m.eval()
    assert rel_err(mixed(x), cpu(x)) < 1e-5 and rel_err(dp_g(x), dp_c(x)) < 1e-5
