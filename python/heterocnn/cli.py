"""The main job: train a network on Fashion-MNIST and print its test accuracy.

    heterocnn-train --model lenet5 --epochs 5        (also: python -m heterocnn, apps/train_mnist.py)
    heterocnn-train --model convnet                  (the default recipe: 15 epochs, warm-up +
        cosine lr, momentum, weight decay, random crop and flip; see hc.Recipe)
    heterocnn-train --epochs 10 --save ckpt.safetensors --resume ckpt.safetensors
        (a checkpoint after every epoch; rerun the same line to continue an interrupted run)
    heterocnn-train --data-folder photos/ --size 64x64 --channels 3 --save model.safetensors
        (your own images, photos/<class>/<image>; then: heterocnn-predict model.safetensors x.jpg)
"""

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

from . import datasets
from .atomic import check_writable
from .checkpoint import load
from .early_stopping import EarlyStopping
from .errors import HeteroCNNError, InvalidValueError
from .extras import require
from .metrics import confusion_matrix, format_confusion
from .models import MODELS
from .nn import parse_device
from .optim import OPTIMIZERS, make_optimizer
from .placement import plan
from .preprocess import RESIZE_MODES
from .recipe import default_recipe
from .reports import plot_history, write_history_csv
from .threads import MAX_THREADS, set_threads
from .training import evaluate, fit

DEFAULTS = {"model": "lenet5", "epochs": 5, "batch_size": 64, "lr": 0.02, "momentum": 0.9,
            "weight_decay": 0.0, "optimizer": "sgd", "nesterov": False, "label_smoothing": 0.0}
# The learning rate of --optimizer adam / adamw when --lr is not given (torch's default): the
# recipes' and DEFAULTS' rates are SGD's.
ADAM_LR = 1e-3
# The recipe a model gets when --recipe is not given: convnet trains with the default recipe,
# bnnet with its own; mlp and lenet5 keep their plain 5-epoch defaults above (constant lr, no
# augmentation).
DEFAULT_RECIPE = {"convnet": "default", "bnnet": "default"}


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
        if args.device != "auto":
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
                   help="training recipe: 'default' = the model's recipe (hc.default_recipe): "
                        "warm-up + cosine lr schedule, momentum 0.9, weight decay 5e-4, random "
                        "2-pixel crop and horizontal flip, 15 epochs; for bnnet its own (SGD "
                        "with Nesterov momentum, peak lr 0.1, batch 128, label smoothing 0.1, "
                        "20 epochs); 'none' = constant lr, no augmentation. Default: 'default' "
                        "for convnet and bnnet, 'none' for mlp and lenet5. Options given "
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
                   help=f"default: {DEFAULTS['weight_decay']}, or the recipe's (adam: L2 "
                        "added to the gradient; adamw: decoupled decay)")
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=None,
                   help="sgd (momentum, --nesterov), adam or adamw (torch.optim's rules; "
                        f"without --lr their lr is {ADAM_LR}). Default: sgd, or the recipe's")
    p.add_argument("--nesterov", action="store_true", default=None,
                   help="Nesterov momentum (--optimizer sgd, momentum > 0)")
    p.add_argument("--label-smoothing", type=_real(), default=None, metavar="EPS",
                   help="smooth the cross-entropy's target: (1 - EPS) * onehot + EPS / classes "
                        "(from 0 to 1; default 0, or the recipe's)")
    p.add_argument("--seed", type=_int_in(0, 2**64 - 1), default=0)
    p.add_argument("--data", metavar="DIR", default=None,
                   help="directory with the Fashion-MNIST IDX files (default: the Debian "
                        "package's, else the embedded sample)")
    p.add_argument("--sample", action="store_true", help="use the embedded sample")
    p.add_argument("--data-folder", metavar="DIR", default=None,
                   help="train on your own images instead: DIR/<class>/<image> (PNG, JPEG, "
                        "BMP, GIF, WebP; needs heterocnn[images]); a stratified part "
                        "(--val-split) is held out for validation")
    p.add_argument("--size", type=_size, default=(28, 28), metavar="HxW",
                   help="--data-folder: the size images are resized to (default 28x28)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=1,
                   help="--data-folder: 1 = grey, 3 = RGB (default 1)")
    p.add_argument("--resize", choices=RESIZE_MODES, default="stretch",
                   help="--data-folder: 'stretch' the whole image to HxW (default) or 'crop' "
                        "the largest centred HxW-shaped box first")
    p.add_argument("--val-split", type=float, default=0.1, metavar="FRACTION",
                   help="--data-folder: the fraction of each class held out (default 0.1)")
    p.add_argument("--patience", type=int, default=None, metavar="EPOCHS",
                   help="stop when the validation loss has not improved for this many epochs "
                        "and keep the best epoch's weights (default: train all epochs)")
    p.add_argument("--confusion", action="store_true",
                   help="print the confusion matrix and per-class accuracy after training")
    p.add_argument("--log", metavar="CSV", default=None,
                   help="write the history (loss, accuracy, validation loss and accuracy per "
                        "epoch) to this CSV file after every epoch")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="draw the loss and accuracy curves to this PNG after training (needs "
                        "heterocnn[plot])")
    p.add_argument("--distributed", action="store_true",
                   help="data-parallel over the MPI ranks this runs on (mpirun -n 4 "
                        "heterocnn-train --distributed ...; needs heterocnn[mpi]): --batch-size "
                        "is the global batch; each rank on a GPU of its host by local rank, "
                        "else on the CPU with the host's cores split; rank 0 prints")
    p.add_argument("--device", default="auto",
                   help="cpu, cuda, cuda:N, or auto (the default): the placement planner's "
                        "choice from measured costs (hc.plan; the CPU where there is no GPU)")
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


def _size(text):
    """'28x28' -> (28, 28)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 28x28, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return h, w


def load_data(args):
    """(train, validation data, its name: "test" or "val"), printing where they come from."""
    if args.data_folder is None:
        print(datasets.fashion_mnist_source(args.data, sample=args.sample))
        return (datasets.fashion_mnist("train", path=args.data, sample=args.sample),
                datasets.fashion_mnist("test", path=args.data, sample=args.sample), "test")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train, val = datasets.image_folder(
            args.data_folder, size=args.size, channels=args.channels, resize=args.resize,
            val_split=args.val_split, seed=args.seed, progress=not args.no_progress)
    for w in caught:
        print(f"heterocnn-train: warning: {w.message}", file=sys.stderr)
    print(f"{train.source}: {len(train)} train / {len(val)} val images; classes "
          f"{', '.join(train.classes)}")
    return train, val, "val"


def _apply_recipe(args):
    """Fill the options not given from the recipe (args.recipe_obj, None for 'none') or from
    DEFAULTS."""
    if args.recipe is None:
        args.recipe = DEFAULT_RECIPE.get(args.model, "none")
    recipe = None if args.recipe == "none" else default_recipe(args.model)
    kind = args.optimizer or (recipe.optimizer_kind if recipe else DEFAULTS["optimizer"])
    if args.lr is None and kind != "sgd" and (recipe is None or recipe.optimizer_kind == "sgd"):
        args.lr = ADAM_LR
    if recipe is None:
        args.recipe_obj = None
        base = DEFAULTS
    else:
        args.recipe_obj = recipe.with_(
            lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay,
            batch_size=args.batch_size, epochs=args.epochs, optimizer_kind=args.optimizer,
            nesterov=args.nesterov, label_smoothing=args.label_smoothing)
        r = args.recipe_obj
        base = {"epochs": r.epochs, "batch_size": r.batch_size, "lr": r.lr,
                "momentum": r.momentum, "weight_decay": r.weight_decay,
                "optimizer": r.optimizer_kind, "nesterov": r.nesterov,
                "label_smoothing": r.label_smoothing}
    for key in ("epochs", "batch_size", "lr", "momentum", "weight_decay", "optimizer",
                "nesterov", "label_smoothing"):
        if getattr(args, key) is None:
            setattr(args, key, base[key])
    if args.nesterov and args.optimizer != "sgd":
        raise InvalidValueError(f"--nesterov is for --optimizer sgd, not {args.optimizer}")
    if args.label_smoothing > 1:
        raise InvalidValueError(f"--label-smoothing must be from 0 to 1, got "
                                f"{args.label_smoothing}")
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
        return place(model, args, opt), opt, meta
    model = MODELS[args.model](seed=args.seed, input_shape=args.input_shape,
                               classes=args.classes, label_smoothing=args.label_smoothing)
    opt = make_optimizer(args.optimizer, model, args.lr, args.momentum, args.weight_decay,
                         args.nesterov)
    return place(model, args, opt), opt, None


def place(model, args, opt):
    """The model on --device; with auto, where the planner says for this batch size (and
    ``opt``'s buffers: the optimizer's state follows the model where it goes)."""
    if args.device != "auto":
        return model.to(args.device)
    model.to(plan(model, args.batch_size, tuple(model.input_shape or args.input_shape),
                  optimizer_states=len(opt.state_names())))
    p = model.plan_used
    print(f"placement: {p.placement} (planned for batch {args.batch_size}: "
          f"{p.predicted_step_s * 1e3:.2f} ms a step predicted; "
          + ", ".join(f"{name} {s * 1e3:.2f} ms" for name, s in p.alternatives.items()) + ")")
    return model


def _join_ranks(args):
    """This rank's communicator for --distributed; its device and threads chosen from its
    local rank where not given; every rank but 0 quiet."""
    from . import distributed

    comm = distributed.world()
    device, threads = distributed.default_device(comm)
    if args.device == "auto":
        args.device = device
    if args.threads is None and args.device == "cpu":
        args.threads = threads
    if comm.Get_rank() != 0:
        args.no_progress = True
        sys.stdout = open(os.devnull, "w")
    return comm


def main(argv=None):
    """Run the job; returns the exit code: 0, or 2 with a message for a bad argument (argparse's
    usage line first) or an error heterocnn or the file system raised."""
    try:
        args = parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a bad argument (2), message printed
        return e.code
    try:
        comm = None
        if args.distributed:
            comm = _join_ranks(args)
        if args.threads is not None:
            set_threads(args.threads)
        if args.plot:
            require("matplotlib", "plot", "--plot")  # before training, not after it
        train, test, what = load_data(args)
        args.input_shape, args.classes = train.images.shape[1:], len(train.classes)
        model, opt, resume = build(args)
        print(f"model {args.model if resume is None else 'from checkpoint'} on "
              f"{model.placement if args.device == 'auto' else args.device}: "
              f"{sum(np.prod(s) for _, s in model.parameters()):,} parameters; "
              f"{args.epochs} epochs, batch {args.batch_size}, {opt}")
        print(model.summary(train.images.shape[1:], args.batch_size))
        schedule = transform = None
        if args.recipe_obj is not None:
            steps = -(-len(train) // args.batch_size)
            schedule = args.recipe_obj.schedule(args.epochs * steps, steps)
            transform = args.recipe_obj.transform()
            print(f"recipe {args.recipe}: lr {schedule}, augmentation {transform}")

        def report(epoch, history):
            print(f"epoch {epoch + 1}: loss {history['loss'][-1]:.4f}  train acc "
                  f"{history['accuracy'][-1]:.4f}  {what} loss {history['val_loss'][-1]:.4f}  "
                  f"{what} acc {history['val_accuracy'][-1]:.4f}  "
                  f"{history['images_per_s'][-1]:,.0f} images/s", flush=True)
            if args.log:
                write_history_csv(history, args.log)

        stopper = None if args.patience is None else EarlyStopping(args.patience)
        start = time.perf_counter()
        history = fit(model, opt, train, args.epochs, args.batch_size, val=test,
                      seed=args.seed, progress=not args.no_progress, on_epoch_end=report,
                      checkpoint=args.save, resume=resume, on_nan=args.on_nan,
                      schedule=schedule, transform=transform, early_stopping=stopper,
                      comm=comm)
        print(f"trained in {time.perf_counter() - start:.1f} s")
        if stopper is not None and stopper.best_epoch is not None:
            ran = ("ran all epochs" if stopper.stopped_epoch is None
                   else f"stopped after epoch {stopper.stopped_epoch + 1}")
            print(f"early stopping: {ran}; the model keeps epoch {stopper.best_epoch + 1}'s "
                  f"weights ({what} loss {stopper.best:.4f})")
        if sum(history["skipped_steps"]):
            print(f"skipped steps (NaN/inf): {history['skipped_steps']}")
        label = "test" if what == "test" else "validation"
        print(f"{label} accuracy: {evaluate(model, test):.4f}")
        if args.confusion:
            print(format_confusion(confusion_matrix(model, test), train.classes))
        if args.log:
            print(f"history written to {args.log}")
        if args.plot:
            print(f"curves drawn to {plot_history(history, args.plot)}")
        if args.save:
            print(f"checkpoint saved to {args.save}")
    except (HeteroCNNError, OSError) as e:
        print(f"heterocnn-train: error: {e}", file=sys.stderr)
        return 2
    return 0
