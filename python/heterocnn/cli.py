"""The main job: train a network on Fashion-MNIST and print its test accuracy.

    heterocnn-train --model lenet5 --epochs 5        (also: python -m heterocnn, apps/train_mnist.py)
"""

import argparse
import os
import sys
import time

import numpy as np

from . import datasets
from ._core import set_threads
from .errors import HeteroCNNError
from .models import MODELS
from .optim import SGD
from .training import evaluate, fit

DEFAULTS = {"model": "lenet5", "epochs": 5, "batch_size": 64, "lr": 0.02, "momentum": 0.9}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="heterocnn-train", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default=DEFAULTS["model"])
    p.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=int, default=DEFAULTS["batch_size"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--momentum", type=float, default=DEFAULTS["momentum"])
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", metavar="DIR", default=None,
                   help="directory with the Fashion-MNIST IDX files (default: the Debian "
                        "package's, else the embedded sample)")
    p.add_argument("--sample", action="store_true", help="use the embedded sample")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--save", metavar="PATH", default=None,
                   help="write the trained weights (state_dict) to PATH as .npz")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def save_weights(model, path):
    """state_dict as an .npz (no pickle), written to a temporary file and renamed over
    ``path``, so an interrupted save never leaves a half-written file."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        path += ".npz"
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **model.state_dict())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise SystemExit(f"--threads must be >= 1, got {args.threads}")
            set_threads(args.threads)
        print(datasets.fashion_mnist_source(args.data, sample=args.sample))
        train = datasets.fashion_mnist("train", path=args.data, sample=args.sample)
        test = datasets.fashion_mnist("test", path=args.data, sample=args.sample)
        model = MODELS[args.model](seed=args.seed).to(args.device)
        opt = SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
        print(f"model {args.model} on {args.device}: {sum(np.prod(s) for _, s in model.parameters()):,} "
              f"parameters; {args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, "
              f"momentum {args.momentum}")

        def report(epoch, history):
            print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}  train acc "
                  f"{history['accuracy'][-1]:.4f}  test acc {history['val_accuracy'][-1]:.4f}  "
                  f"{history['images_per_s'][-1]:,.0f} images/s", flush=True)

        start = time.perf_counter()
        fit(model, opt, train, args.epochs, args.batch_size, val=test, seed=args.seed,
            progress=not args.no_progress, on_epoch_end=report)
        print(f"trained in {time.perf_counter() - start:.1f} s")
        print(f"test accuracy: {evaluate(model, test):.4f}")
        if args.save:
            print(f"weights saved to {save_weights(model, args.save)}")
    except (HeteroCNNError, FileNotFoundError) as e:
        print(f"heterocnn-train: error: {e}", file=sys.stderr)
        return 2
    return 0
