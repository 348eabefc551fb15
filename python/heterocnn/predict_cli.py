"""heterocnn-predict: classify image files with a trained checkpoint.

    heterocnn-predict model.safetensors cat.jpg dog.png [--top 3] [--json]

Each image is made into the model's input exactly as its training images were (the
checkpoint's meta says how: size, channels, resize mode, scaling; hc.load_image does it),
and the top classes are printed by name with their probabilities.
"""

import argparse
import json
import sys

import numpy as np

from .checkpoint import load
from .errors import HeteroCNNError
from .outputs import class_probabilities
from .preprocess import check_normalisation, image_options, load_image
from .training import predict


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="heterocnn-predict", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a checkpoint written by heterocnn-train --save or hc.save")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    p.add_argument("--top", type=int, default=3, help="classes shown per image (default 3)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: {\"predictions\": [{\"image\", \"top\": "
                        "[{\"class\", \"index\", \"probability\"}]}]}")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error(f"--top must be >= 1, got {args.top}")
    return args


def classify(checkpoint, paths, top=3, device="cpu"):
    """[{"image": path, "top": [{"class", "index", "probability"}, ...]}] for each image
    file, best first, from the model and preprocessing saved in ``checkpoint``."""
    model, _, meta = load(checkpoint)
    model.to(device)
    check_normalisation(meta)
    size, channels, resize = image_options(meta)
    x = np.stack([load_image(p, size, channels, resize) for p in paths])
    probs = class_probabilities(predict(model, x), model.loss)
    classes = meta.get("classes") or [str(c) for c in range(probs.shape[1])]
    out = []
    for path, p in zip(paths, probs):
        best = np.argsort(-p, kind="stable")[:top]
        out.append({"image": str(path), "top": [
            {"class": classes[i], "index": int(i), "probability": float(p[i])} for i in best]})
    return out


def main(argv=None):
    args = parse_args(argv)
    try:
        results = classify(args.checkpoint, args.images, args.top, args.device)
    except (HeteroCNNError, OSError) as e:
        print(f"heterocnn-predict: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "predictions": results}, indent=1))
    else:
        for r in results:
            best = ", ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top"])
            print(f"{r['image']}: {best}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
