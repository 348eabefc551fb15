"""Train/validation splits by class (stratified), seeded."""

import numpy as np

from .errors import InvalidValueError


def stratified_split(labels, fraction, seed=0):
    """(train indices, val indices), each sorted: from every class, round(fraction * its
    count) of its samples, drawn with np.random.default_rng(seed), go to val. A class of one
    sample stays in train. InvalidValueError when fraction is not in (0, 1) or either side
    would be empty."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise InvalidValueError(f"the validation fraction must lie in (0, 1), got {fraction!r}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n = int(round(fraction * len(members))) if len(members) > 1 else 0
        val.append(rng.permutation(members)[:min(n, len(members) - 1)])
    val = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train = np.setdiff1d(np.arange(len(labels)), val)
    if not len(val) or not len(train):
        raise InvalidValueError(f"a validation fraction of {fraction} of {len(labels)} samples "
                                f"leaves {len(train)} for training and {len(val)} for "
                                "validation; both need at least one")
    return train, val
