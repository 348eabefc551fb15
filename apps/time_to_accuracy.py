#!/usr/bin/env python3
"""Time to accuracy with each model's recipe (hc.default_recipe(name)): train lenet5 and
convnet (and bnnet, mlp) on Fashion-MNIST, evaluate the test set after every epoch, and report
the epoch and the wall-clock time (training only, the per-epoch evaluations excluded) at which
each model first reaches its target (lenet5 90.0%, convnet 93.0%, bnnet 94.5%). Writes
everything as JSON.

    python apps/time_to_accuracy.py --device cpu --threads 2 --json tta-cpu.json
    python apps/time_to_accuracy.py --device cuda --data .gpu/data --json tta-gpu.json
"""

import argparse
import json
import os
import platform
import sys
import time

from dataclasses import asdict

import heterocnn as hc
from heterocnn.atomic import write_atomic
from heterocnn.data_checks import as_arrays

TARGETS = {"lenet5": 0.900, "convnet": 0.930, "mlp": 0.880, "bnnet": 0.945}


class _Stop(Exception):
    pass


def run(name, train, test, device, recipe, epochs, seed, stop_at_target, progress):
    """One model's run: a record with per-epoch test accuracy and cumulative training time
    (fit's own per-epoch timing of the steps, evaluation excluded) and wall time (with it)."""
    model = hc.models.MODELS[name](seed=seed, label_smoothing=recipe.label_smoothing).to(device)
    target = TARGETS[name]
    n = len(train[0])
    rec = {"model": name, "target": target, "epochs": [], "test_accuracy": [],
           "train_loss": [], "train_s": [], "wall_s": [], "images_per_s": [], "reached": None}
    total = {"train": 0.0}

    def on_epoch_end(epoch, history):
        now = time.perf_counter() - wall0
        acc = history["val_accuracy"][-1]
        total["train"] += n / history["images_per_s"][-1]
        rec["epochs"].append(epoch + 1)
        rec["test_accuracy"].append(acc)
        rec["train_loss"].append(history["loss"][-1])
        rec["train_s"].append(round(total["train"], 2))
        rec["wall_s"].append(round(now, 2))
        rec["images_per_s"].append(round(history["images_per_s"][-1], 1))
        hit = ""
        if rec["reached"] is None and acc >= target:
            rec["reached"] = {"epoch": epoch + 1, "train_s": round(total["train"], 2),
                              "wall_s": round(now, 2)}
            hit = f"   <- target {target:.1%} reached"
        print(f"{name:8s} epoch {epoch + 1:2d}: loss {history['loss'][-1]:.4f}  test acc "
              f"{acc:.4f}  train {total['train']:7.1f} s  wall {now:7.1f} s  "
              f"{history['images_per_s'][-1]:8,.0f} img/s{hit}", flush=True)
        if stop_at_target and rec["reached"] is not None:
            raise _Stop

    wall0 = time.perf_counter()
    try:
        recipe.fit(model, train, epochs=epochs, val=test, seed=seed, progress=progress,
                   on_epoch_end=on_epoch_end)
    except _Stop:
        pass
    return rec


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="lenet5,convnet")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--data", default=None, help="Fashion-MNIST IDX directory")
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="peak lr (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--train-subset", type=int, default=None, help="first N training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stop-at-target", action="store_true",
                   help="stop a model's run at the epoch that reaches its target")
    p.add_argument("--progress", action="store_true")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    if a.threads:
        hc.set_threads(a.threads)
    def recipe_of(name):
        recipe = hc.default_recipe(name).with_(lr=a.lr, batch_size=a.batch_size,
                                               epochs=a.epochs)
        return recipe.with_(crop_padding=0, flip=0.0) if a.no_augment else recipe

    train = hc.datasets.fashion_mnist("train", path=a.data)
    test = hc.datasets.fashion_mnist("test", path=a.data)
    X, y = as_arrays(train, "train")
    if a.train_subset:
        X, y = X[:a.train_subset], y[:a.train_subset]
    test = as_arrays(test, "test")
    info = hc.build_info()
    out = {"machine": {"host": platform.node(), "cpu": platform.processor() or platform.machine(),
                       "cpus": os.cpu_count(), "python": sys.version.split()[0]},
           "build": {k: v for k, v in info.items() if k != "gpus"}, "gpus": info["gpus"],
           "device": a.device, "train_images": len(X), "results": []}
    print(f"device {a.device}  {len(X)} training images")
    for name in a.models.split(","):
        recipe = recipe_of(name)
        print(f"{name}: {recipe}")
        rec = run(name, (X, y), test, a.device, recipe, recipe.epochs, a.seed,
                  a.stop_at_target, a.progress)
        rec["recipe"] = asdict(recipe)
        r = rec["reached"]
        print(f"{name}: " + (f"reached {rec['target']:.1%} at epoch {r['epoch']} after "
                             f"{r['train_s']:.1f} s of training ({r['wall_s']:.1f} s wall with "
                             f"evaluations)" if r else
                             f"did not reach {rec['target']:.1%} in {len(rec['epochs'])} epochs "
                             f"(best {max(rec['test_accuracy']):.4f})"), flush=True)
        out["results"].append(rec)
        if a.json:
            write_atomic(a.json, json.dumps(out, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
