"""scikit-learn's 8 x 8 handwritten digits (UCI ML, 1,797 images; no download: the data ships
with scikit-learn, the extra ``heterocnn[digits]``) as a Dataset."""

import numpy as np

from .datasets import Dataset
from .extras import require


def digits():
    """The digits as a Dataset: images uint8 (1797, 1, 8, 8) (the 0..16 grey levels of
    sklearn.datasets.load_digits scaled to 0..255: round(v * 255 / 16)), labels int64 0..9,
    classes "0".."9". ``hc.datasets.digits().split(0.2)`` gives a train and a val set."""
    sk = require("sklearn.datasets", "digits", "hc.datasets.digits()")
    d = sk.load_digits()
    images = np.rint(d.images * (255 / 16)).astype(np.uint8)[:, None]
    return Dataset(images, d.target.astype(np.int64), tuple(str(c) for c in d.target_names),
                   name="digits", source="scikit-learn load_digits (UCI ML hand-written "
                                         "digits, 8x8)")
