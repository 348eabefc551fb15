"""Write the Fashion-MNIST sample embedded in heterocnn (python/heterocnn/data/fashion-mnist-sample).

A stratified pick with a fixed seed: 600 images per class from the train set (6000) and 100 per
class from the test set (1000), kept in their original order, written as gzip IDX with mtime 0.
The same full set and seed give the same bytes.

    python tools/make_sample.py [--source /usr/share/datasets/fashion-mnist] [--out DIR] [--seed 0]
"""

import argparse
from pathlib import Path

import numpy as np

from heterocnn.datasets import FASHION_MNIST_DIR, fashion_mnist, save_idx

PER_CLASS = {"train": 600, "test": 100}
FILE_PREFIX = {"train": "train", "test": "t10k"}
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "python/heterocnn/data/fashion-mnist-sample"


def stratified_indices(labels, per_class, rng):
    """Indices of per_class items of every class (labels int (N,)), in increasing order."""
    picks = [rng.choice(np.flatnonzero(labels == c), size=per_class, replace=False)
             for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def make_sample(source, out, seed=0):
    """Read the full set from source, write the sample files into out; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for split, per_class in PER_CLASS.items():
        data = fashion_mnist(split, path=source)
        keep = stratified_indices(data.labels, per_class, rng)
        prefix = FILE_PREFIX[split]
        for name, array in ((f"{prefix}-images-idx3-ubyte.gz", data.images[keep, 0]),
                            (f"{prefix}-labels-idx1-ubyte.gz", data.labels[keep].astype(np.uint8))):
            save_idx(out / name, array, compress=True)
            written.append(out / name)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=FASHION_MNIST_DIR,
                        help="directory with the full Fashion-MNIST (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where to write the sample (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for path in make_sample(args.source, args.out, args.seed):
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
