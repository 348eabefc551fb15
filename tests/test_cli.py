"""The main job's command line, on the embedded sample."""

import subprocess
import sys

import heterocnn as hc
from heterocnn.cli import main


def test_train_and_save(tmp_path, capsys):
    out = tmp_path / "ckpt.safetensors"
    rc = main(["--model", "mlp", "--epochs", "1", "--sample", "--threads", "2",
               "--save", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "embedded Fashion-MNIST sample" in text
    assert "epoch 1: loss" in text and "test accuracy: 0." in text
    model, _, meta = hc.load(out)
    assert meta["epoch"] == 1
    acc = float(text.split("test accuracy: ")[1].split()[0])
    test = hc.datasets.fashion_mnist("test", sample=True)
    assert abs(hc.evaluate(model, test) - acc) < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]  # no temporary file left


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "nowhere" in capsys.readouterr().err
    assert main(["--device", "tpu", "--sample", "--no-progress"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_module_entry_point_help():
    r = subprocess.run([sys.executable, "-m", "heterocnn", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0
    for flag in ("--model", "--epochs", "--batch-size", "--lr", "--momentum", "--seed", "--data",
                 "--device", "--threads", "--save", "--resume", "--on-nan"):
        assert flag in r.stdout
