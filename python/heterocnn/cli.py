"""The main job: train a network on Fashion-MNIST and print its test accuracy.

    heterocnn-train --model lenet5 --epochs 5        (also: python -m heterocnn, apps/train_mnist.py)
    heterocnn-train --model convnet                  (the default recipe: 15 epochs, warm-up +
        cosine lr, momentum, weight decay, random crop and flip; see hc.Recipe)
    heterocnn-train --epochs 10 --save ckpt.safetensors --resume ckpt.safetensors
        (a checkpoint after every epoch; rerun the same line to continue an interrupted run)
"""

import argparse
import math
import os
import sys
import time

import numpy as np

from . import datasets
from .atomic import check_writable
from .checkpoint import load
from .errors import HeteroCNNError, InvalidValueError
from .models import MODELS
from .nn import parse_device
from .optim import SGD
from .recipe import default_recipe
from .threads import MAX_THREADS, set_threads
from .training import evaluate, fit

DEFAULTS = {"model": "lenet5", "epochs": 5, "batch_size": 64, "lr": 0.02, "momentum": 0.9,
            "weight_decay": 0.0}
# The recipe a model gets when --recipe is not given: convnet trains with the default recipe;
# mlp and lenet5 keep their plain 5-epoch defaults above (constant lr, no augmentation).
DEFAULT_RECIPE = {"convnet": "default"}


def _int_in(lo, hi):
    """An argparse type: an integer in [lo, hi]."""
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"must be from {lo} to {hi}, got {v}")
        return v
    return parse


def _real(positive=False):
    """An argparse type: a finite number >= 0 (> 0 when ``positive``)."""
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not math.isfinite(v) or v < 0 or (positive and v == 0):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if positive else '>='} 0, got {text!r}")
        return v
    return parse


def _check_paths(p, args):
    """Paths and devices checked before anything runs (argparse's error: message, exit 2)."""
    try:
        parse_device(args.device)
    except HeteroCNNError as e:
        p.error(f"argument --device: {e}")
    if args.resume is not None and os.path.exists(args.resume) \
            and not os.path.isfile(args.resume):
        p.error(f"argument --resume: {args.resume!r} is not a checkpoint file (a folder?)")
    if args.save is not None:
        try:
            check_writable(args.save, "--save")
        except HeteroCNNError as e:
            p.error(f"argument --save: {e}")
    if args.data is not None and not os.path.isdir(args.data):
        p.error(f"argument --data: {args.data!r} is not a folder")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="heterocnn-train", description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=sorted(MODELS), default=DEFAULTS["model"])
    p.add_argument("--recipe", choices=("none", "default"), default=None,
                   help="training recipe: 'default' = warm-up + cosine lr schedule, momentum "
                        "0.9, weight decay 5e-4, random 2-pixel crop and horizontal flip, 15 "
                        "epochs (hc.Recipe); 'none' = constant lr, no augmentation. Default: "
                        "'default' for convnet, 'none' for mlp and lenet5. Options given "
                        "explicitly override the recipe's values (--lr is then the peak lr)")
    p.add_argument("--epochs", type=_int_in(1, 10**9), default=None,
                   help=f"default: {DEFAULTS['epochs']}, or the recipe's")
    p.add_argument("--batch-size", type=_int_in(1, 2**31), default=None,
                   help=f"default: {DEFAULTS['batch_size']}, or the recipe's")
    p.add_argument("--lr", type=_real(positive=True), default=None,
                   help=f"default: {DEFAULTS['lr']}, or the recipe's peak")
    p.add_argument("--momentum", type=_real(), default=None,
                   help=f"default: {DEFAULTS['momentum']}, or the recipe's")
    p.add_argument("--weight-decay", type=_real(), default=None,
                   help=f"default: {DEFAULTS['weight_decay']}, or the recipe's")
    p.add_argument("--seed", type=_int_in(0, 2**64 - 1), default=0)
    p.add_argument("--data", metavar="DIR", default=None,
                   help="directory with the Fashion-MNIST IDX files (default: the Debian "
                        "package's, else the embedded sample)")
    p.add_argument("--sample", action="store_true", help="use the embedded sample")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--threads", type=_int_in(1, MAX_THREADS), default=None,
                   help="CPU threads (default: all)")
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
    args = p.parse_args(argv)
    _check_paths(p, args)
    try:
        return _apply_recipe(args)
    except HeteroCNNError as e:
        p.error(str(e))


def _apply_recipe(args):
    """Fill the options not given from the recipe (args.recipe_obj, None for 'none') or from
    DEFAULTS."""
    if args.recipe is None:
        args.recipe = DEFAULT_RECIPE.get(args.model, "none")
    if args.recipe == "none":
        args.recipe_obj = None
        base = DEFAULTS
    else:
        args.recipe_obj = default_recipe(args.model).with_(
            lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
            batch_size=args.batch_size, epochs=args.epochs)
        r = args.recipe_obj
        base = {"epochs": r.epochs, "batch_size": r.batch_size, "lr": r.lr,
                "momentum": r.momentum, "weight_decay": r.weight_decay}
    for key in ("epochs", "batch_size", "lr", "momentum", "weight_decay"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    return args


def build(args):
    """(model, optimizer, resume meta or None): from the --resume checkpoint when it exists,
    else fresh from the arguments."""
    if args.resume and os.path.exists(args.resume):
        model, opt, meta = load(args.resume)
        if opt is None:
            raise InvalidValueError(f"--resume {args.resume}: the checkpoint has no optimizer "
                                    "state")
        print(f"resuming {args.resume} after epoch {meta.get('epoch')}")
        return model.to(args.device), opt, meta
    model = MODELS[args.model](seed=args.seed).to(args.device)
    opt = SGD(model, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return model, opt, None


def main(argv=None):
    """Run the job; returns the exit code: 0, or 2 with a message for a bad argument (argparse's
    usage line first) or an error heterocnn or the file system raised."""
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2), message printed
        return e.code
    try:
        if args.threads is not None:
            set_threads(args.threads)
        print(datasets.fashion_mnist_source(args.data, sample=args.sample))
        train = datasets.fashion_mnist("train", path=args.data, sample=args.sample)
        test = datasets.fashion_mnist("test", path=args.data, sample=args.sample)
        model, opt, resume = build(args)
        print(f"model {args.model if resume is None else 'from checkpoint'} on "
              f"{args.device}: {sum(np.prod(s) for _, s in model.parameters()):,} parameters; "
              f"{args.epochs} epochs, batch {args.batch_size}, {opt}")
        schedule = transform = None
        if args.recipe_obj is not None:
            steps = -(-len(train) // args.batch_size)
            schedule = args.recipe_obj.schedule(args.epochs * steps, steps)
            transform = args.recipe_obj.transform()
            print(f"recipe {args.recipe}: lr {schedule}, augmentation {transform}")

        def report(epoch, history):
            print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}  train acc "
                  f"{history['accuracy'][-1]:.4f}  test acc {history['val_accuracy'][-1]:.4f}  "
                  f"{history['images_per_s'][-1]:,.0f} images/s", flush=True)

        start = time.perf_counter()
        history = fit(model, opt, train, args.epochs, args.batch_size, val=test,
                      seed=args.seed, progress=not args.no_progress, on_epoch_end=report,
                      checkpoint=args.save, resume=resume, on_nan=args.on_nan,
                      schedule=schedule, transform=transform)
        print(f"trained in {time.perf_counter() - start:.1f} s")
        if sum(history["skipped_steps"]):
            print(f"skipped steps (NaN/inf): {history['skipped_steps']}")
        print(f"test accuracy: {evaluate(model, test):.4f}")
        if args.save:
            print(f"checkpoint saved to {args.save}")
    except (HeteroCNNError, OSError) as e:
        print(f"heterocnn-train: error: {e}", file=sys.stderr)
        return 2
    return 0
