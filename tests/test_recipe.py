"""The default training recipe: the warm-up + cosine schedule, the augmentation (shapes,
values, determinism) and fit/CLI with the recipe on the embedded sample."""

import math

import numpy as np
import pytest

import heterocnn as hc
from heterocnn.augment import random_crop, random_hflip
from heterocnn.cli import main, parse_args
from heterocnn.data_checks import as_arrays


def test_warmup_cosine_values():
    s = hc.WarmupCosine(0.1, total_steps=110, warmup_steps=10, start_factor=0.1)
    assert s(0) == pytest.approx(0.01)
    assert s(5) == pytest.approx(0.01 + 0.09 * 0.5)
    assert s(10) == pytest.approx(0.1)                  # peak at the end of the warm-up
    assert s(10 + 50) == pytest.approx(0.05, rel=0.02)  # half-way down the cosine
    assert s(109) == pytest.approx(0.0, abs=1e-12)      # zero at the last step
    assert s(500) == 0.0
    lrs = [s(i) for i in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))    # monotone after the warm-up
    assert hc.WarmupCosine(0.2, 1)(0) == pytest.approx(0.2)
    for bad in (dict(peak=0, total_steps=10), dict(peak=0.1, total_steps=0),
                dict(peak=0.1, total_steps=10, warmup_steps=11)):
        with pytest.raises(hc.InvalidValueError):
            hc.WarmupCosine(**bad)


def test_recipe_schedule_and_fields():
    r = hc.default_recipe("convnet")
    assert (r.momentum, r.batch_size, r.epochs, r.crop_padding, r.flip) == (0.9, 64, 15, 2, 0.5)
    s = r.schedule(15 * 100, steps_per_epoch=100)
    assert s.warmup_steps == 100 and s(100) == pytest.approx(r.lr)
    assert r.with_(lr=0.01, epochs=None).lr == 0.01 and r.with_(epochs=None).epochs == 15
    assert r.with_(crop_padding=0, flip=0.0).transform() is None
    opt = r.optimizer(hc.models.mlp())
    assert (opt.lr, opt.momentum, opt.weight_decay) == (r.lr, r.momentum, r.weight_decay)


def test_random_crop_is_a_shift(rng):
    x = rng.random((50, 2, 8, 9)).astype(np.float32)
    out = random_crop(x, np.random.default_rng(1), padding=2)
    assert out.shape == x.shape and out.dtype == np.float32 and out.flags.c_contiguous
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(len(x)):  # each image equals some window of its padded self
        assert any(np.array_equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 9])
                   for dy in range(5) for dx in range(5))
    assert np.array_equal(random_crop(x, np.random.default_rng(1), padding=0), x)


def test_random_hflip(rng):
    x = rng.random((40, 1, 5, 5)).astype(np.float32)
    assert np.array_equal(random_hflip(x, rng, p=1.0), x[..., ::-1])
    assert np.array_equal(random_hflip(x, rng, p=0.0), x)
    out = random_hflip(x, np.random.default_rng(3))
    flipped = [np.array_equal(out[i], x[i, ..., ::-1]) for i in range(len(x))]
    kept = [np.array_equal(out[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept)) and 0 < sum(flipped) < len(x)


def test_augment_deterministic_and_input_untouched(rng):
    x = rng.random((64, 1, 28, 28)).astype(np.float32)
    before = x.copy()
    a = hc.Augment()
    y1, y2 = a(x, np.random.default_rng((0, 1, 2))), a(x, np.random.default_rng((0, 1, 2)))
    assert np.array_equal(y1, y2) and y1.shape == x.shape and y1.dtype == np.float32
    assert not np.array_equal(y1, a(x, np.random.default_rng((0, 1, 3))))
    assert np.array_equal(x, before)
    with pytest.raises(hc.InvalidValueError):
        hc.Augment(crop_padding=-1)
    with pytest.raises(hc.InvalidValueError):
        hc.Augment(flip=1.5)
    with pytest.raises(hc.InvalidValueError):
        a(x[0], np.random.default_rng(0))


def test_fit_with_the_recipe_learns_the_sample(sample):
    train, test = sample
    X, y = as_arrays(train, "train")
    train = (X[:3000], y[:3000])
    r = hc.default_recipe().with_(epochs=2, warmup_epochs=0.5)
    model = hc.models.mlp(seed=0)  # lenet5 would do too, slower; fit is the same code
    opt = r.optimizer(model)
    h = r.fit(model, train, val=test, opt=opt, progress=False)
    assert len(h["loss"]) == 2 and h["loss"][-1] < h["loss"][0]
    assert h["val_accuracy"][-1] > 0.5          # 10 classes: chance is 0.1
    assert opt.lr < 0.01 * r.lr                 # the cosine ended near zero
    # the same seed gives the same run (augmentation included)
    r1 = r.with_(epochs=1)
    h1 = r1.fit(hc.models.mlp(seed=0), train, progress=False)
    h2 = r1.fit(hc.models.mlp(seed=0), train, progress=False)
    assert h1["loss"] == h2["loss"]


def test_fit_schedule_and_transform_hooks(sample):
    train, _ = sample
    n = len(train)
    lrs, shapes = [], []
    model = hc.models.mlp()
    opt = hc.SGD(model, lr=1.0)

    def schedule(step):
        lrs.append(step)
        return 0.01

    def transform(x, rng):
        shapes.append(x.shape)
        return x[..., ::-1].copy()

    hc.fit(model, opt, train, 2, 100, schedule=schedule, transform=transform, progress=False)
    steps = 2 * math.ceil(n / 100)
    assert lrs == list(range(steps)) and opt.lr == 0.01
    assert len(shapes) == steps and shapes[0] == (100, 1, 28, 28)
    with pytest.raises(hc.InvalidValueError, match="transform"):
        hc.fit(model, opt, train, 1, 100, transform=transform, device_data=True, progress=False)


def test_cli_recipe_defaults():
    a = parse_args(["--model", "convnet"])
    assert a.recipe == "default" and (a.epochs, a.lr, a.weight_decay) == (15, 0.05, 5e-4)
    a = parse_args(["--model", "convnet", "--lr", "0.02", "--epochs", "3"])
    assert (a.recipe_obj.lr, a.recipe_obj.epochs, a.lr, a.epochs) == (0.02, 3, 0.02, 3)
    a = parse_args([])  # lenet5: the plain defaults
    assert a.recipe == "none" and (a.epochs, a.lr, a.weight_decay) == (5, 0.02, 0.0)
    a = parse_args(["--recipe", "default"])
    assert a.model == "lenet5" and a.epochs == 15


def test_cli_trains_with_the_recipe(capsys):
    rc = main(["--model", "mlp", "--recipe", "default", "--epochs", "1", "--sample",
               "--threads", "2", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "recipe default: lr WarmupCosine" in text and "Augment(crop_padding=2" in text
    assert "test accuracy: 0." in text


def test_bnnet_and_its_recipe():
    model = hc.models.bnnet()
    assert model.output_shape((2, 1, 28, 28)) == (2, 10) and model.label_smoothing == 0.1
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds.count("BatchNorm2d") == 7 and kinds[-3:] == ["AdaptiveAvgPool2d", "Flatten",
                                                              "Linear"]
    assert all(not layer.bias for layer in model.layers if isinstance(layer, hc.Conv2d))
    assert hc.models.bnnet(input_shape=(3, 32, 32), classes=5).output_shape((1, 3, 32, 32)) \
        == (1, 5)
    with pytest.raises(hc.ShapeError, match="bnnet cannot take 1x4x4"):
        hc.models.bnnet(input_shape=(1, 4, 4))
    r = hc.default_recipe("bnnet")
    assert (r.epochs, r.batch_size, r.lr, r.nesterov, r.label_smoothing) == (20, 128, 0.1, True,
                                                                            0.1)
    assert hc.default_recipe("convnet") == hc.default_recipe() == hc.Recipe()
    opt = r.optimizer(model)
    assert type(opt).__name__ == "SGD" and opt.nesterov and opt.lr == 0.1


def test_a_recipe_refuses_a_model_with_another_label_smoothing(sample):
    train, _ = sample
    with pytest.raises(hc.InvalidValueError, match="label_smoothing is 0.1, the model's 0.0"):
        hc.default_recipe("bnnet").fit(hc.models.mlp(), train, epochs=1)


def test_cli_bnnet_takes_its_recipe():
    a = parse_args(["--model", "bnnet"])
    assert a.recipe == "default" and (a.epochs, a.lr, a.batch_size) == (20, 0.1, 128)
    assert a.nesterov and a.label_smoothing == 0.1 and a.optimizer == "sgd"
    a = parse_args(["--model", "bnnet", "--label-smoothing", "0", "--epochs", "2"])
    assert a.label_smoothing == 0 and a.epochs == 2
