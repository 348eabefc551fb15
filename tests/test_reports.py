"""Seeing training: validation loss, probabilities, early stopping, on_epoch_end stopping,
the confusion matrix, the history as CSV and curves, model.summary, models adapted to the
input, and the digits data set."""

import math
import sys

import numpy as np
import pytest

import heterocnn as hc
from heterocnn import nn


def _small(rng, n=96, classes=3, shape=(1, 6, 5)):
    X = rng.random((n,) + shape, dtype=np.float32)
    y = rng.integers(0, classes, n)
    return X, y


@pytest.mark.parametrize("loss", ["cross_entropy", "bce"])
def test_val_loss_is_the_training_loss_and_probs(rng, loss):
    classes = 2 if loss == "bce" else 4
    X, y = _small(rng, n=int(rng.integers(30, 60)), classes=classes)
    out = 1 if loss == "bce" else classes
    model = hc.Sequential(hc.Flatten(), hc.Linear(30, 7), hc.ReLU(), hc.Linear(7, out),
                          loss=loss, seed=int(rng.integers(1 << 30)))
    val_loss, val_acc = hc.loss_and_accuracy(model, (X, y), batch_size=7)
    assert val_loss == pytest.approx(model.loss_and_grads(X, y)[0], rel=1e-5)
    assert val_acc == hc.evaluate(model, (X, y))
    p = hc.predict(model, X, probs=True)
    z = model(X).astype(np.float64)
    if loss == "bce":
        assert p.shape == (len(X), 1) and np.allclose(p, 1 / (1 + np.exp(-z)), atol=1e-6)
    else:
        e = np.exp(z - z.max(1, keepdims=True))
        assert np.allclose(p, e / e.sum(1, keepdims=True), atol=1e-6)
        assert np.allclose(p.sum(1), 1, atol=1e-6)


def test_fit_history_has_val_loss(rng):
    X, y = _small(rng)
    model = hc.models.mlp(input_shape=(1, 6, 5), classes=3)
    h = hc.fit(model, hc.SGD(model, lr=0.05), (X, y), 2, 16, val=(X[:40], y[:40]),
               progress=False)
    assert len(h["val_loss"]) == 2
    assert h["val_loss"][-1] == pytest.approx(hc.loss_and_accuracy(model, (X[:40], y[:40]))[0])
    h = hc.fit(model, hc.SGD(model, lr=0.05), (X, y), 1, 16, progress=False)
    assert h["val_loss"] == [None] and h["val_accuracy"] == [None]


def test_early_stopping_restores_the_best_epoch(rng, tmp_path):
    X, y = _small(rng)
    model = hc.models.mlp(input_shape=(1, 6, 5), classes=3, seed=4)
    states = []
    stopper = hc.EarlyStopping(patience=2, min_delta=1e9, monitor="val_loss")  # never improves
    ckpt = tmp_path / "c.safetensors"
    h = hc.fit(model, hc.SGD(model, lr=0.1), (X, y), 10, 16, val=(X, y), progress=False,
               early_stopping=stopper, checkpoint=ckpt,
               on_epoch_end=lambda e, hist: states.append(model.state_dict()))
    assert len(h["loss"]) == 3 and stopper.best_epoch == 0 and stopper.stopped_epoch == 2
    for key, value in model.state_dict().items():
        assert np.array_equal(value, states[0][key])
        assert not np.array_equal(value, states[-1][key]) or key.endswith("bias")
    saved, _, meta = hc.load(ckpt)
    assert meta["best_epoch"] == 0 and meta["epoch"] == 3
    for key, value in saved.state_dict().items():
        assert np.array_equal(value, states[0][key])


def test_early_stopping_rules(rng):
    stopper = hc.EarlyStopping(patience=2, min_delta=0.1, monitor="val_accuracy",
                               restore_best=False)
    model = hc.models.mlp(input_shape=(1, 2, 2), classes=2)
    history = {"val_accuracy": []}
    stops = []
    for e, acc in enumerate([0.5, 0.65, 0.7, 0.74]):
        history["val_accuracy"].append(acc)
        stops.append(stopper.update(e, history, model))
    # 0.65 > 0.5 + 0.1 improves; 0.7, 0.74 do not (within min_delta of 0.65): stop at epoch 3
    assert stops == [False, False, False, True] and stopper.best == 0.65
    assert stopper.best_epoch == 1 and stopper.stopped_epoch == 3
    X, y = _small(rng)
    model = hc.models.mlp(input_shape=(1, 6, 5), classes=3)
    with pytest.raises(hc.InvalidValueError, match="val="):
        hc.fit(model, hc.SGD(model, lr=0.1), (X, y), 1, 16, early_stopping=hc.EarlyStopping())
    with pytest.raises(hc.InvalidValueError, match="monitor"):
        hc.EarlyStopping(monitor="val_acc")
    with pytest.raises(hc.InvalidValueError, match="patience"):
        hc.EarlyStopping(patience=0)


def test_on_epoch_end_true_stops(rng):
    X, y = _small(rng)
    model = hc.models.mlp(input_shape=(1, 6, 5), classes=3)
    h = hc.fit(model, hc.SGD(model, lr=0.05), (X, y), 9, 32, progress=False,
               on_epoch_end=lambda e, hist: e == 1)
    assert len(h["loss"]) == 2


def test_confusion_matrix_and_per_class_accuracy(sample):
    train, test = sample
    model = hc.models.mlp()
    hc.fit(model, hc.SGD(model, lr=0.05, momentum=0.9), train, 1, 64, progress=False)
    cm = hc.confusion_matrix(model, test)
    pred = hc.predict(model, test.images).argmax(1)
    expected = np.zeros((10, 10), np.int64)
    np.add.at(expected, (test.labels, pred), 1)
    assert np.array_equal(cm, expected)
    acc = hc.per_class_accuracy(cm, test.classes)
    assert list(acc) == list(test.classes)
    for i, name in enumerate(test.classes):
        assert acc[name] == pytest.approx(np.mean(pred[test.labels == i] == i))
    text = hc.format_confusion(cm, test.classes)
    assert all(name in text for name in test.classes)
    assert f"{cm.trace() / cm.sum():.4f}" in text


def test_history_csv_and_plot(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    history = {"loss": [1.5, 0.9, 0.7], "accuracy": [0.4, 0.6, 0.7],
               "images_per_s": [100.0, 110.0, 120.5], "val_loss": [1.2, None, 0.8],
               "val_accuracy": [0.5, None, 0.75], "skipped_steps": [0, 2, 0]}
    path = hc.write_history_csv(history, tmp_path / "h.csv")
    lines = (tmp_path / "h.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,accuracy,val_loss,val_accuracy,images_per_s,skipped_steps"
    assert lines[2] == "2,0.9,0.6,,,110.0,2"
    back = hc.read_history_csv(path)
    assert back["val_loss"] == [1.2, None, 0.8] and back["skipped_steps"] == [0, 2, 0]
    hc.plot_history(history, tmp_path / "c.png", size=(6.4, 2.5), dpi=50)
    img = Image.open(tmp_path / "c.png")
    assert img.format == "PNG" and img.size == (320, 125)
    assert np.asarray(img.convert("L")).std() > 5  # something is drawn


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(hc.MissingExtraError, match=r"pip install 'heterocnn\[plot\]'"):
        hc.plot_history({"loss": [1.0]}, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_summary(rng):
    c, h, w = 3, int(rng.integers(7, 12)), int(rng.integers(7, 12))
    model = hc.Sequential(hc.Conv2d(c, 4, 3, padding=1), hc.ReLU(), hc.MaxPool2d(2),
                          hc.Flatten(), hc.Linear(4 * (h // 2) * (w // 2), 5))
    s = model.summary((c, h, w), batch_size=8)
    assert [r["output_shape"] for r in s.rows] == [(4, h, w), (4, h, w), (4, h // 2, w // 2),
                                                   (4 * (h // 2) * (w // 2),), (5,)]
    assert s.params == sum(math.prod(shape) for _, shape in model.parameters())
    assert s.rows[0]["flops"] == 4 * h * w * (2 * c * 9 + 1)
    assert s.rows[4]["flops"] == 5 * (2 * 4 * (h // 2) * (w // 2) + 1)
    assert s.rows[1]["output_bytes"] == 4 * 8 * 4 * h * w
    assert s.memory == hc.estimate_memory(model, 8, (c, h, w))
    text = str(s)
    assert "Conv2d" in text and "training step on cpu, batch 8" in text and "cpu" in text
    with pytest.raises(hc.ShapeError):
        model.summary((c, h + 2, w))


def test_models_adapt_and_keep_their_defaults(rng):
    for name, make in hc.models.MODELS.items():
        default = make(seed=3)
        explicit = make(seed=3, input_shape=(1, 28, 28), classes=10)
        assert [repr(a) for a in default.layers] == [repr(b) for b in explicit.layers]
        for a, b in zip(default.state_dict().values(), explicit.state_dict().values()):
            assert np.array_equal(a, b)
        shape = (3, int(rng.integers(12, 20)), int(rng.integers(12, 20)))
        model = make(input_shape=shape, classes=4)
        assert model.output_shape((2,) + shape) == (2, 4)
    assert repr(hc.models.lenet5().layers[7]) == repr(nn.Linear(400, 120))
    with pytest.raises(hc.ShapeError, match="convnet cannot take 1x3x3"):
        hc.models.convnet(input_shape=(1, 3, 3))


def test_digits():
    pytest.importorskip("sklearn")
    data = hc.datasets.digits()
    assert data.images.shape == (1797, 1, 8, 8) and data.images.dtype == np.uint8
    assert data.images.max() == 255 and data.classes == tuple("0123456789")
    assert np.array_equal(np.bincount(data.labels) > 170, np.ones(10, bool))
    train, val = data.split(0.2, seed=1)
    model = hc.models.mlp(input_shape=(1, 8, 8), classes=10)
    hc.fit(model, hc.SGD(model, lr=0.05, momentum=0.9), train, 3, 32, progress=False)
    assert hc.evaluate(model, val) > 0.8
