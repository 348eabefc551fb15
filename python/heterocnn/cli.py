"""The main job: train a network on Fashion-MNIST and print its test accuracy.

    heterocnn-train --model lenet5 --epochs 5        (also: python -m heterocnn, apps/train_mnist.py)
    heterocnn-train --epochs 10 --save ckpt.safetensors --resume ckpt.safetensors
        (a checkpoint after every epoch; rerun the same line to continue an interrupted run)
"""

import argparse
import os
import sys
import time

import numpy as np

from . import datasets
from ._core import set_threads
from .checkpoint import load
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
                   help="write a checkpoint (safetensors: weights, momentum, epoch, RNG state) "
                        "to PATH after every epoch")
    p.add_argument("--resume", metavar="PATH", default=None,
                   help="continue the run checkpointed in PATH (if it exists) up to --epochs; "
                        "model and optimizer settings come from the checkpoint")
    p.add_argument("--on-nan", choices=("raise", "skip"), default="raise",
                   help="on a NaN/inf loss or gradient: stop with an error (default) or skip "
                        "the step")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def build(args):
    """(model, optimizer, resume meta or None): from the --resume checkpoint when it exists,
    else fresh from the arguments."""
    if args.resume and os.path.exists(args.resume):
        model, opt, meta = load(args.resume)
        if opt is None:
            raise SystemExit(f"--resume {args.resume}: the checkpoint has no optimizer state")
        print(f"resuming {args.resume} after epoch {meta.get('epoch')}")
        return model.to(args.device), opt, meta
    model = MODELS[args.model](seed=args.seed).to(args.device)
    opt = SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return model, opt, None


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
        model, opt, resume = build(args)
        print(f"model {args.model if resume is None else 'from checkpoint'} on "
              f"{args.device}: {sum(np.prod(s) for _, s in model.parameters()):,} parameters; "
              f"{args.epochs} epochs, batch {args.batch_size}, {opt}")

        def report(epoch, history):
            print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}  train acc "
                  f"{history['accuracy'][-1]:.4f}  test acc {history['val_accuracy'][-1]:.4f}  "
                  f"{history['images_per_s'][-1]:,.0f} images/s", flush=True)

        start = time.perf_counter()
        history = fit(model, opt, train, args.epochs, args.batch_size, val=test,
                      seed=args.seed, progress=not args.no_progress, on_epoch_end=report,
                      checkpoint=args.save, resume=resume, on_nan=args.on_nan)
        print(f"trained in {time.perf_counter() - start:.1f} s")
        if sum(history["skipped_steps"]):
            print(f"skipped steps (NaN/inf): {history['skipped_steps']}")
        print(f"test accuracy: {evaluate(model, test):.4f}")
        if args.save:
            print(f"checkpoint saved to {args.save}")
    except (HeteroCNNError, FileNotFoundError) as e:
        print(f"heterocnn-train: error: {e}", file=sys.stderr)
        return 2
    return 0
