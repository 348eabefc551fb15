"""Light data augmentation on host batches, for fit(transform=...): random crop after zero
padding, and random horizontal flip. Each function takes a float32 batch (N, C, H, W) and a
numpy Generator and returns a batch of the same shape (a new array; the input is not changed).
Fashion-MNIST items (shirts, shoes, bags) are close enough to left/right symmetric that a
mirror image is another plausible item of the same class."""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .errors import InvalidValueError


def random_crop(x, rng, padding=2):
    """Pad each image with ``padding`` zeros on every side, then cut a window of the original
    size at a random offset (uniform in [0, 2*padding] on each axis, per image): a shift of up
    to ``padding`` pixels in each direction, the uncovered border zero."""
    if padding == 0:
        return x.copy()
    n, _, h, w = x.shape
    p = int(padding)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
    oy = rng.integers(0, 2 * p + 1, size=n)
    ox = rng.integers(0, 2 * p + 1, size=n)
    return np.ascontiguousarray(windows[np.arange(n), :, oy, ox], dtype=np.float32)


def random_hflip(x, rng, p=0.5):
    """Mirror each image left/right with probability ``p``."""
    out = x.copy()
    flip = rng.random(len(x)) < p
    out[flip] = x[flip][..., ::-1]
    return out


class Augment:
    """A transform for fit: random crop with ``crop_padding`` (0: none), then horizontal flip
    with probability ``flip`` (0: none). ``Augment()(x, rng) -> x``."""

    def __init__(self, crop_padding=2, flip=0.5):
        if isinstance(crop_padding, bool) or not isinstance(crop_padding, (int, np.integer)) \
                or crop_padding < 0:
            raise InvalidValueError(f"crop_padding must be an integer >= 0, got {crop_padding!r}")
        if not 0.0 <= float(flip) <= 1.0:
            raise InvalidValueError(f"flip must be a probability in [0, 1], got {flip!r}")
        self.crop_padding, self.flip = int(crop_padding), float(flip)

    def __call__(self, x, rng):
        if x.ndim != 4:
            raise InvalidValueError(f"augmentation needs image batches (N, C, H, W), got shape "
                                    f"{x.shape}")
        if self.crop_padding:
            x = random_crop(x, rng, self.crop_padding)
        if self.flip:
            x = random_hflip(x, rng, self.flip)
        return x

    def __repr__(self):
        return f"Augment(crop_padding={self.crop_padding}, flip={self.flip})"
