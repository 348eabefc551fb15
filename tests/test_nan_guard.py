"""Guards of the training loop: NaN/inf stops training (naming the step and the layer) or
skips the step, and a model that cannot fit in memory is rejected before training starts."""

import time

import numpy as np
import pytest

import heterocnn as hc
from heterocnn.cli import main


@pytest.fixture(scope="module")
def data():
    X, y = hc.datasets.fashion_mnist("train", sample=True).as_tuple()
    return X[:512], y[:512]


def test_error_class():
    assert issubclass(hc.NonFiniteError, hc.HeteroCNNError)
    assert issubclass(hc.NonFiniteError, ArithmeticError)


def test_divergence_raises_and_keeps_the_last_good_checkpoint(data, tmp_path):
    pytest.importorskip("safetensors")
    path = tmp_path / "c.safetensors"
    model = hc.models.mlp(seed=0)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)

    def explode(epoch, history):
        opt.lr = 1e12  # from epoch 2 on

    with pytest.raises(hc.NonFiniteError, match=r"step \d+ \(batch \d+ of the epoch\)") as info:
        hc.fit(model, opt, data, 3, 64, progress=False, on_epoch_end=explode, checkpoint=path)
    assert 8 < info.value.step <= 16  # in epoch 2 (8 batches an epoch)
    print(info.value)
    saved, _, meta = hc.load(path)
    assert meta["epoch"] == 1
    assert all(np.isfinite(v).all() for v in saved.state_dict().values())


def test_injected_nan_weight_is_named(data):
    model = hc.models.mlp(seed=0)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)

    def inject(epoch, history):
        w = model.state_dict()["3.weight"]
        w[5, 7] = np.nan
        model.load_state_dict({**model.state_dict(), "3.weight": w}, allow_nonfinite=True)

    with pytest.raises(hc.NonFiniteError, match=r"step 9 .*3.weight of layer 3 \(Linear") as info:
        hc.fit(model, opt, data, 2, 64, progress=False, on_epoch_end=inject)
    assert (info.value.step, info.value.layer) == (9, 3)
    with pytest.raises(hc.NonFiniteError, match="before training: 3.weight") as info:
        hc.fit(model, opt, data, 1, 64, progress=False)
    assert info.value.layer == 3


def test_overflow_in_a_layer_output_is_named(data):
    model = hc.models.mlp(seed=0)
    w = np.full((256, 784), 1e37, np.float32)  # finite, but x @ W.T overflows
    model.load_state_dict({**model.state_dict(), "1.weight": w})
    with pytest.raises(hc.NonFiniteError, match=r"step 1 .*output of layer 1 \(Linear") as info:
        hc.fit(model, hc.SGD(model, lr=0.01), data, 1, 64, progress=False)
    assert info.value.layer == 1


def test_skip_undoes_and_counts_bad_steps(data):
    model = hc.models.mlp(seed=0)
    opt = hc.SGD(model, lr=0.05, momentum=0.9)
    good = hc.fit(model, opt, data, 1, 64, progress=False, on_nan="skip")
    assert good["skipped_steps"] == [0]
    opt.lr = 1e12
    before = model.state_dict()
    history = hc.fit(model, opt, data, 1, 64, progress=False, on_nan="skip")
    assert history["skipped_steps"][0] > 0
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
    if history["skipped_steps"][0] == 8:  # every step undone: the model is as it was
        for k, v in before.items():
            np.testing.assert_array_equal(v, model.state_dict()[k])


def test_bad_on_nan_value(data):
    model = hc.models.mlp()
    with pytest.raises(hc.InvalidValueError, match="on_nan"):
        hc.fit(model, hc.SGD(model, lr=0.1), data, 1, 64, progress=False, on_nan="ignore")


def test_cli_on_nan(capsys):
    args = ["--model", "mlp", "--epochs", "1", "--sample", "--lr", "1e12", "--no-progress",
            "--threads", "2"]
    assert main(args) == 2
    assert "NaN/inf at step" in capsys.readouterr().err
    assert main(args + ["--on-nan", "skip"]) == 0
    assert "skipped steps (NaN/inf): [" in capsys.readouterr().out


# -- resource limits up front -----------------------------------------------------------------

def test_memory_estimate_is_what_the_step_allocates():
    model = hc.Sequential(hc.Conv2d(1, 4, 3, padding=1), hc.ReLU(), hc.Flatten(),
                          hc.Linear(4 * 8 * 8, 10))
    est = hc.estimate_memory(model, 16, (1, 8, 8))["cpu"]
    # value, gradient and momentum of each parameter, each padded to 64 floats in the store
    pad = lambda n: -(-n // 64) * 64  # noqa: E731
    assert est["parameters"] == 4 * 3 * (pad(4 * 9) + pad(4) + pad(256 * 10) + pad(10))
    # the conv output (the ReLU after it is fused: it writes no buffer of its own), the linear
    # output, two gradient buffers of the largest activation, and at least the conv's unrolled
    # sample (the workspace depends on the thread count)
    assert est["buffers"] >= 4 * (16 * (256 + 10 + 2 * 256) + 9 * 64)
    assert est["missing"] == est["buffers"]  # nothing allocated yet
    model.train_step(np.ones((16, 1, 8, 8), np.float32), np.zeros(16, np.int64),
                     hc.SGD(model, lr=0.1))
    again = hc.estimate_memory(model, 16, (1, 8, 8))["cpu"]
    assert again["buffers"] == est["buffers"] and again["missing"] == 0
    assert hc.estimate_memory(model, 32, (1, 8, 8))["cpu"]["missing"] > 0


def test_a_step_that_cannot_fit_is_rejected_before_training():
    model = hc.Sequential(hc.Conv2d(1, 1024, 3, padding=1), hc.ReLU(), hc.MaxPool2d(28),
                          hc.Flatten(), hc.Linear(1024, 10))
    n = 1 << 16  # 6.4 MB of activations per sample: about 420 GB for the batch
    X, y = np.zeros((n, 1, 28, 28), np.uint8), np.zeros(n, np.int64)
    start = time.perf_counter()
    with pytest.raises(hc.DeviceOutOfMemoryError,
                       match=r"batch_size 65536 on cpu needs an estimated \d+\.\d+ GiB .* "
                             r"only \d+\.\d+ GiB is available") as info:
        hc.fit(model, hc.SGD(model, lr=0.1), (X, y), 1, n, progress=False)
    assert time.perf_counter() - start < 5
    assert isinstance(info.value, MemoryError)


def test_an_undone_step_puts_back_every_buffer_and_names_the_layer():
    """BatchNorm's running statistics and Dropout's step come back with the weights: the step
    after an undone one draws the mask the undone one drew."""
    rng = np.random.default_rng(0)
    model = hc.Sequential(hc.Conv2d(1, 4, 3, padding=1, bias=False), hc.BatchNorm2d(4),
                          hc.ReLU(), hc.Dropout(0.2), hc.Flatten(), hc.Linear(4 * 8 * 8, 10))
    x = rng.random((16, 1, 8, 8), dtype=np.float32)
    y = np.arange(16) % 10
    opt = hc.SGD(model, lr=0.01)
    model.train_step(x, y, opt, check_finite=True)
    opt.lr = 1e30
    for _ in range(5):  # the first steps at this rate may still end finite
        before = {**model.state_dict(), **model.buffers(all_buffers=True)}
        try:
            model.train_step(x, y, opt, check_finite=True)
        except hc.NonFiniteError as e:
            assert "layer" in str(e)
            break
    else:
        pytest.fail("no step went non-finite")
    after = {**model.state_dict(), **model.buffers(all_buffers=True)}
    assert after.keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
