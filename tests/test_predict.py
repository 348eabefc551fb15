"""From a folder of images to a prediction: heterocnn-train --data-folder, the checkpoint's
record of the data, heterocnn-predict (text and --json), and the preprocessing of
prediction against that of training."""

import json
import re

import numpy as np
import pytest

pytest.importorskip("PIL")
pytest.importorskip("safetensors")
import heterocnn as hc  # noqa: E402
from heterocnn.cli import main as train_main  # noqa: E402
from heterocnn.predict_cli import classify, main as predict_main  # noqa: E402
from conftest import write_image_folder  # noqa: E402


@pytest.fixture
def trained(tmp_path, sample, cache_home, capsys):
    """A folder of 3 classes x 12 images, and the checkpoint of 1 epoch of lenet5 on it."""
    root = tmp_path / "images"
    made = write_image_folder(root, sample[0], per_class=12)
    ckpt, log, plot = tmp_path / "m.safetensors", tmp_path / "h.csv", tmp_path / "c.png"
    rc = train_main(["--data-folder", str(root), "--size", "16x20", "--channels", "3",
                     "--model", "lenet5", "--epochs", "2", "--batch-size", "8", "--val-split",
                     "0.25", "--save", str(ckpt), "--log", str(log), "--plot", str(plot),
                     "--confusion", "--no-progress", "--threads", "2"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return root, made, ckpt, log, plot, out.out


def test_train_on_a_folder(trained):
    root, made, ckpt, log, plot, text = trained
    # (not the throughput's "... 46,336 images/s")
    assert not re.search(r"(?<![\d,])36 images", text) and "27 train / 9 val images" in text
    # the summary (on the device the planner chose: the CPU, or a GPU where there is one)
    assert "input 3x16x20" in text and re.search(r"training step on (cpu|cuda:\d)", text)
    assert "epoch 2: loss" in text and "val loss" in text and "validation accuracy: " in text
    assert "true \\ predicted" in text and "overall accuracy" in text
    model, _, meta = hc.load(ckpt)
    assert meta["classes"] == sorted(p.name for p in root.iterdir())
    assert meta["input_shape"] == [3, 16, 20] and meta["channels"] == 3
    assert meta["image"] == {"size": [16, 20], "channels": 3, "resize": "stretch"}
    assert meta["normalisation"] == {"input_dtype": "uint8", "scale": float(np.float32(1 / 255))}
    assert model.output_shape((1, 3, 16, 20)) == (1, 3)
    history = hc.read_history_csv(log)
    assert len(history["loss"]) == 2 and history["val_loss"] == pytest.approx(
        meta["history"]["val_loss"])
    from PIL import Image

    assert Image.open(plot).size == (900, 350)


def test_predict_prints_top_classes(trained, capsys):
    root, made, ckpt, *_ = trained
    images = [str(root / rel) for rel in sorted(made)[:3]]
    assert predict_main([str(ckpt)] + images + ["--top", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    classes = hc.load(ckpt)[2]["classes"]
    for line, path in zip(lines, images):
        assert line.startswith(f"{path}: ")
        assert sum(name in line for name in classes) == 2  # two classes by name


def test_predict_json_is_what_training_saw(trained, capsys):
    root, made, ckpt, *_ = trained
    rels = sorted(made)[::5]
    assert predict_main([str(ckpt)] + [str(root / r) for r in rels] + ["--json",
                                                                       "--top", "3"]) == 0
    result = json.loads(capsys.readouterr().out)["predictions"]
    model, _, meta = hc.load(ckpt)
    data = hc.datasets.image_folder(root, size=(16, 20), channels=3, progress=False)
    # the same function made the training images and the images to predict
    for r in rels:
        assert np.array_equal(data.images[data.files.index(r)],
                              hc.load_image(root / r, (16, 20), 3, "stretch"))
    # and the model's input is the same: uint8 through fit's scaling
    x = data.images[[data.files.index(r) for r in rels]]
    expected = hc.predict(model, x, probs=True)
    direct = model((x.astype(np.float32) * np.float32(1 / 255)))
    assert np.allclose(expected, np.exp(direct) / np.exp(direct).sum(1, keepdims=True), atol=1e-6)
    for r, entry, p in zip(rels, result, expected):
        assert entry["image"] == str(root / r)
        assert [t["index"] for t in entry["top"]] == list(np.argsort(-p, kind="stable"))
        for t in entry["top"]:
            assert t["class"] == meta["classes"][t["index"]]
        assert [t["probability"] for t in entry["top"]] == pytest.approx(sorted(p)[::-1], abs=1e-7)


def test_predict_errors(trained, tmp_path, capsys):
    root, made, ckpt, *_ = trained
    (tmp_path / "x.png").write_text("text")
    assert predict_main([str(ckpt), str(tmp_path / "x.png")]) == 2
    assert "x.png: not a readable image" in capsys.readouterr().err
    assert predict_main([str(tmp_path / "none.safetensors"), str(tmp_path / "x.png")]) == 2
    model = hc.models.mlp(input_shape=(1, 4, 4), classes=3)
    hc.save(model, tmp_path / "float.safetensors",
            normalisation={"input_dtype": "float32", "scale": 1.0}, input_shape=[1, 4, 4])
    with pytest.raises(hc.InvalidValueError, match="normalised"):
        classify(tmp_path / "float.safetensors", [str(root / sorted(made)[0])])


def test_save_records_the_data(tmp_path, sample):
    model = hc.models.mlp()
    hc.save(model, tmp_path / "m.safetensors", data=sample[0], epoch=7)
    meta = hc.load(tmp_path / "m.safetensors")[2]
    assert meta["epoch"] == 7 and meta["classes"] == list(sample[0].classes)
    assert meta["input_shape"] == [1, 28, 28] and "image" not in meta


def test_fashion_checkpoint_predicts_from_its_input_shape(tmp_path, sample, capsys):
    from PIL import Image

    ckpt = tmp_path / "f.safetensors"
    assert train_main(["--model", "mlp", "--epochs", "1", "--sample", "--save", str(ckpt),
                       "--no-progress"]) == 0
    capsys.readouterr()
    Image.fromarray(sample[1].images[0, 0]).resize((56, 56)).save(tmp_path / "big.png")
    top = classify(ckpt, [tmp_path / "big.png"], top=1)[0]["top"][0]
    assert top["class"] in hc.datasets.FASHION_MNIST_CLASSES


def test_model_too_small_for_the_size_is_a_clear_error(tmp_path, sample, cache_home, capsys):
    root = tmp_path / "images"
    write_image_folder(root, sample[0], per_class=4, classes=(0, 1))
    assert train_main(["--data-folder", str(root), "--size", "8x8", "--model", "lenet5",
                       "--epochs", "1", "--no-progress"]) == 2
    assert "lenet5 cannot take 1x8x8 images" in capsys.readouterr().err


def test_plot_without_matplotlib_fails_before_training(tmp_path, sample, cache_home, capsys,
                                                       monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert train_main(["--sample", "--model", "mlp", "--plot", str(tmp_path / "c.png"),
                       "--no-progress"]) == 2
    out = capsys.readouterr()
    assert "heterocnn[plot]" in out.err and "epoch 1" not in out.out


def test_patience_and_help(tmp_path, sample, cache_home, capsys):
    root = tmp_path / "images"
    write_image_folder(root, sample[0], per_class=6, classes=(0, 1))
    assert train_main(["--data-folder", str(root), "--model", "mlp", "--epochs", "4",
                       "--patience", "1", "--lr", "1e-30", "--batch-size", "4",
                       "--no-progress"]) == 0
    text = capsys.readouterr().out
    # lr 1e-30 moves no float32 weight: the validation loss never improves after epoch 1, so
    # training stops after epoch 2
    assert "epoch 2: loss" in text and "epoch 3" not in text
    assert "stopped after epoch 2; the model keeps epoch 1's weights" in text
    assert train_main(["--help"]) == 0  # main returns argparse's status, never raises
    help_text = capsys.readouterr().out
    for flag in ("--data-folder", "--size", "--channels", "--val-split", "--resize",
                 "--patience", "--confusion", "--log", "--plot"):
        assert flag in help_text
