"""Train/validation splits by class (stratified), seeded."""

import numpy as np

from .errors import InvalidValueError


def stratified_split(labels, fraction, seed=0):
    """(train indices, val indices), each sorted: from every class, round(fraction * its
    count) of its samples (all but one at most), drawn with np.random.default_rng(seed), go
    to val; where that rounds to none at all, one sample of the largest class does.
    InvalidValueError when fraction is not in (0, 1) or there is a single sample."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise InvalidValueError(f"the validation fraction must lie in (0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    counts = [min(int(round(fraction * len(m))), len(m) - 1) for m in classes]
    if not sum(counts) and len(labels) > 1:  # too few to round to one: one from the largest
        counts[int(np.argmax([len(m) for m in classes]))] = 1
    val = [rng.permutation(m)[:n] for m, n in zip(classes, counts)]
    val = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    if not len(val) or not len(train):
        raise InvalidValueError(f"a validation fraction of {fraction} of {len(labels)} samples "
                                f"leaves {len(train)} for training and {len(val)} for "
                                "validation; both need at least one")
    return train, val
