"""Bad input: every rejected call raises a HeteroCNNError that is also the fitting builtin,
names what was wrong, and leaves the model exactly as it was."""

import numpy as np
import pytest

import heterocnn as hc

F32 = np.float32


@pytest.fixture
def model():
    return hc.models.lenet5(seed=1)


@pytest.fixture
def batch(rng):
    return rng.random((4, 1, 28, 28), dtype=F32), rng.integers(0, 10, 4)


def assert_unchanged(model, before):
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def rejected(model, exc, match, fn, *args):
    before = model.state_dict()
    with pytest.raises(exc, match=match) as info:
        fn(*args)
    assert isinstance(info.value, hc.HeteroCNNError)
    assert_unchanged(model, before)


def test_error_classes_subclass_builtins():
    assert issubclass(hc.ShapeError, ValueError)
    assert issubclass(hc.InvalidValueError, ValueError)
    assert issubclass(hc.DTypeError, TypeError)
    assert issubclass(hc.DataFormatError, ValueError)
    assert issubclass(hc.StateDictError, KeyError)
    assert issubclass(hc.DeviceError, RuntimeError)
    assert issubclass(hc.DeviceOutOfMemoryError, MemoryError)


def test_wrong_input_shape(model, batch):
    x, y = batch
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    rejected(model, hc.ShapeError, r"Conv2d.*expects input \(N, 1, H, W\), got \(4, 3, 28, 28\)",
             model.train_step, np.zeros((4, 3, 28, 28), F32) + 1, y, opt)
    rejected(model, ValueError, r"layer 7 \(Linear\).*expects input \(N, 400\), got \(4, 576\)",
             model, np.ones((4, 1, 32, 32), F32))
    rejected(model, hc.ShapeError, r"2 to 4 dims.*\(28,\)", model, np.ones(28, F32))
    rejected(model, hc.ShapeError, r"2 to 4 dims", model, np.ones((1, 1, 1, 28, 28), F32))
    rejected(model, hc.ShapeError, r"no samples", model, np.ones((0, 1, 28, 28), F32))
    rejected(model, hc.ShapeError, r"does not fit input", model, np.ones((2, 1, 3, 3), F32))


def test_wrong_dtype(model, batch):
    x, y = batch
    rejected(model, TypeError, "float32, got float64", model, x.astype(np.float64))
    rejected(model, TypeError, "float32, got uint8", model, (x * 255).astype(np.uint8))
    rejected(model, TypeError, "numpy array, got list", model, x.tolist())
    opt = hc.SGD(model, lr=0.1)
    rejected(model, TypeError, "labels must be integers, got float64", model.train_step, x,
             y.astype(np.float64), opt)


def test_labels(model, batch):
    x, y = batch
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    bad = y.copy()
    bad[2] = 10
    rejected(model, ValueError, "label 10 at index 2 is out of range for 10 classes",
             model.train_step, x, bad, opt)
    bad[2] = -1
    rejected(model, ValueError, "label -1 at index 2", model.loss_and_grads, x, bad)
    rejected(model, hc.ShapeError, r"labels must have shape \(4,\).*\(3,\)", model.train_step,
             x, y[:3], opt)
    bce = hc.Sequential(hc.Flatten(), hc.Linear(784, 1), loss="bce")
    rejected(bce, ValueError, "label 2 at index 0 is not 0 or 1", bce.loss_and_grads, x,
             np.array([2, 0, 1, 1]))


def test_nan_and_inf_inputs(model, batch):
    x, y = batch
    opt = hc.SGD(model, lr=0.1, momentum=0.9)
    for bad_value in (np.nan, np.inf, -np.inf):
        bad = x.copy()
        bad[1, 0, 3, 4] = bad_value
        rejected(model, ValueError, r"non-finite value .* at index \(1, 0, 3, 4\)", model.train_step,
                 bad, y, opt)
    with pytest.raises(hc.InvalidValueError, match="NaN or inf"):
        bad = x.copy()
        bad[0, 0, 0, 0] = np.nan
        hc.fit(model, opt, (bad, y), epochs=1, batch_size=2, progress=False)


@pytest.mark.parametrize("name,value", [("lr", float("nan")), ("lr", float("inf")), ("lr", -1),
                                        ("momentum", -0.5), ("weight_decay", float("nan")),
                                        ("lr", "fast")])
def test_bad_optimizer_values(model, batch, name, value):
    kwargs = {"lr": 0.1, name: value}
    with pytest.raises(hc.InvalidValueError, match=name):
        hc.SGD(model, **kwargs)
    opt = hc.SGD(model, lr=0.1)
    before = model.state_dict()
    with pytest.raises(hc.InvalidValueError, match=name):
        setattr(opt, name, value)
    model.train_step(*batch, opt)  # the old, valid value still applies
    assert not np.array_equal(before["0.weight"], model.state_dict()["0.weight"])


def test_fit_arguments(model, batch):
    x, y = batch
    opt = hc.SGD(model, lr=0.1)
    for kwargs, match in (({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
                          ({"batch_size": 5}, "batch_size 5 is larger than the 4 training"),
                          ({"epochs": 0}, "epochs must be a positive integer"),
                          ({"batch_size": 2.5}, "batch_size must be a positive integer")):
        args = {"epochs": 1, "batch_size": 2, **kwargs}
        rejected(model, hc.InvalidValueError, match, hc.fit, model, opt, (x, y), args["epochs"],
                 args["batch_size"])
    bad = y.copy()
    bad[0] = 12
    rejected(model, hc.InvalidValueError, r"labels must lie in \[0, 9\].*found 12", hc.fit,
             model, opt, (x, bad), 1, 2)
    rejected(model, hc.ShapeError, r"images \(4, 1, 28, 28\) and labels \(3,\)", hc.fit, model,
             opt, (x, y[:3]), 1, 2)
    rejected(model, TypeError, "float32 or uint8", hc.fit, model, opt, (x.astype(np.float64), y),
             1, 2)
    rejected(model, TypeError, r"\(X, y\) tuple", hc.fit, model, opt, x, 1, 2)
    other = hc.models.lenet5()
    rejected(model, hc.InvalidValueError, "another model", model.train_step, x, y,
             hc.SGD(other, lr=0.1))


def test_state_dict_mismatches(model):
    good = model.state_dict()
    missing = dict(good)
    del missing["3.bias"]
    rejected(model, KeyError, r"missing keys \['3.bias'\]", model.load_state_dict, missing)
    extra = dict(good, **{"12.weight": np.zeros(3, F32)})
    rejected(model, hc.StateDictError, r"unexpected keys \['12.weight'\]", model.load_state_dict,
             extra)
    wrong = {k: v + 1 for k, v in good.items()}
    wrong["7.weight"] = np.zeros((120, 399), F32)
    rejected(model, ValueError, r"state_dict\['7.weight'\] has shape \(120, 399\).*\(120, 400\)",
             model.load_state_dict, wrong)
    wrong["7.weight"] = np.full((120, 400), np.nan, F32)
    rejected(model, ValueError, "NaN or inf", model.load_state_dict, wrong)
    rejected(model, TypeError, "mapping", model.load_state_dict, [1, 2])


def test_layer_arguments():
    for make, match in ((lambda: hc.Linear(0, 3), "in_features must be an integer >= 1, got 0"),
                        (lambda: hc.Conv2d(1, 2, 3, padding=-1), "padding must be an integer >= 0"),
                        (lambda: hc.Conv2d(1, 2, 3, stride=0), "stride"),
                        (lambda: hc.MaxPool2d(2.5), "kernel_size"),
                        (lambda: hc.Sequential(), "at least one layer"),
                        (lambda: hc.Sequential(hc.Linear(2, 2), loss="mse"), "unknown loss 'mse'")):
        with pytest.raises(hc.InvalidValueError, match=match):
            make()
    with pytest.raises(hc.DTypeError, match="layer 1 is str"):
        hc.Sequential(hc.Linear(2, 2), "relu")
    with pytest.raises(hc.ShapeError, match="bce.*single output"):
        hc.Sequential(hc.Linear(2, 3), loss="bce")(np.ones((1, 2), F32))


def test_new_layer_arguments():
    """The layers of issue 13's item 4: each bad argument named, as torch would refuse it."""
    for make, match in ((lambda: hc.AvgPool2d(3, padding=2),
                         "padding must be at most kernel_size // 2 = 1, got 2"),
                        (lambda: hc.AvgPool2d(0), "kernel_size must be an integer >= 1"),
                        (lambda: hc.AvgPool2d(2, stride=0), "stride"),
                        (lambda: hc.AvgPool2d(2, padding=-1), "padding must be an integer >= 0"),
                        (lambda: hc.AdaptiveAvgPool2d(0), "output_size"),
                        (lambda: hc.AdaptiveAvgPool2d((2, 2)), "output_size"),
                        (lambda: hc.LeakyReLU("0.1"), "negative_slope"),
                        (lambda: hc.LeakyReLU(float("nan")), "negative_slope"),
                        (lambda: hc.LeakyReLU(True), "negative_slope"),
                        (lambda: hc.LeakyReLU(10**400), "negative_slope"),
                        (lambda: hc.LeakyReLU(1e39), "negative_slope"),
                        (lambda: hc.GELU(approximate="erf"), "approximate.*'tanh', got 'erf'"),
                        (lambda: hc.GELU(approximate="Tanh"), "got 'Tanh'"),
                        (lambda: hc.GELU(approximate=None), "approximate"),
                        (lambda: hc.Conv2d(1, 2, 3, bias="no"), "bias must be True or False"),
                        (lambda: hc.Linear(1, 2, bias=2), "bias must be True or False")):
        with pytest.raises(hc.InvalidValueError, match=match):
            make()
    model = hc.Sequential(hc.AvgPool2d(5), hc.Flatten())
    with pytest.raises(hc.ShapeError, match="AvgPool2d window 5.*larger than input"):
        model(np.ones((1, 1, 4, 4), F32))
    with pytest.raises(hc.ShapeError, match=r"AdaptiveAvgPool2d expects input \(N, C, H, W\)"):
        hc.Sequential(hc.Flatten(), hc.AdaptiveAvgPool2d(1))(np.ones((1, 3, 2, 2), F32))


def test_unknown_devices(model):
    for name in ("gpu", "cuda:x", "cpu:1", "", 3):
        rejected(model, hc.InvalidValueError, "unknown device", model.to, name)
    rejected(model, hc.InvalidValueError, "names 2 devices for 12 layers", model.to, ["cpu"] * 2)
    assert model.placement == ("cpu",) * 12


@pytest.mark.skipif(hc.build_info()["cuda_compiled"] and hc.cuda_available(),
                    reason="a GPU is present: see the CUDA tests")
def test_cuda_without_a_gpu_is_a_clear_error(model, batch):
    # "device cuda:0 does not exist" with CUDA built in, "built without CUDA" otherwise
    rejected(model, hc.DeviceError, "(?i)cuda", model.to, "cuda")
    assert model.placement == ("cpu",) * 12
    model(batch[0])  # still usable on the CPU
    with pytest.raises(hc.DeviceError, match="(?i)cuda"):
        hc.DeviceDataset(batch, "cuda")
