import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(scope="module")
def sample():
    """The embedded Fashion-MNIST sample: (train, test) data sets."""
    import heterocnn as hc

    return (hc.datasets.fashion_mnist("train", sample=True),
            hc.datasets.fashion_mnist("test", sample=True))


def rel_err(a, b):
    """||a - b|| / ||b|| (NaN never passes a comparison against it)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Measured cost tables (hc.measure) go to a cache folder of the test session's own, not
    the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.getbasetemp() / "xdg-cache"))


@pytest.fixture
def cache_home(monkeypatch, tmp_path):
    """XDG_CACHE_HOME in a temporary folder: image folder caches go there, never to ~/.cache."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "heterocnn"


def write_image_folder(root, sample, per_class=8, classes=(0, 1, 7), seed=0):
    """A folder root/<class name>/<image> of Fashion-MNIST images from ``sample`` (a Dataset)
    in several formats: grey PNGs at 28x28 (their pixels exact), RGB JPEGs and PNGs of odd
    sizes, a GIF, a BMP and a WebP. Returns {relative path: (label, source uint8 (28, 28))}."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = {c: sample.classes[c].replace("/", "-") for c in classes}
    made = {}
    for label, c in enumerate(sorted(classes, key=lambda c: names[c])):
        folder = root / names[c]
        folder.mkdir(parents=True)
        idx = np.flatnonzero(sample.labels == c)[:per_class]
        for k, i in enumerate(idx):
            img = Image.fromarray(sample.images[i, 0])
            kind = k % 6
            if kind in (0, 1):
                rel = f"{names[c]}/{k:03d}.png"
                img.save(root / rel)
            elif kind == 2:
                rel = f"{names[c]}/{k:03d}.JPG"
                h, w = int(rng.integers(20, 40)), int(rng.integers(20, 40))
                img.convert("RGB").resize((w, h)).save(root / rel, quality=95)
            elif kind == 3:
                rel = f"{names[c]}/{k:03d}.png"
                rgb = np.stack([sample.images[i, 0]] * 3, axis=-1)
                rgb[..., 0] //= 2
                Image.fromarray(rgb).resize((33, 17)).save(root / rel)
            elif kind == 4:
                rel = f"{names[c]}/{k:03d}.gif"
                img.save(root / rel)
            else:
                rel = f"{names[c]}/{k:03d}.{('bmp', 'webp')[(k // 6) % 2]}"
                img.save(root / rel, **({"lossless": True} if rel.endswith("webp") else {}))
            made[rel] = (label, sample.images[i, 0])
    return made


def new_layers_net(seed=0, adaptive=2):
    """A small net with every layer of issue 13's item 4 (input (3, 13, 11), 4 classes):
    convolutions and linear layers with and without bias, GELU, LeakyReLU (default and given
    slope), Tanh, AvgPool2d with padding and without (the second after a ReLU, which it masks
    in backward), AdaptiveAvgPool2d(adaptive) (overlapping windows for 2 on 3x3) and global
    average pooling after a ReLU. ``adaptive=1``: global pooling twice."""
    import heterocnn as hc

    return hc.Sequential(
        hc.Conv2d(3, 6, 3, padding=1, bias=False), hc.GELU(),
        hc.AvgPool2d(3, stride=2, padding=1),                      # 13x11 -> 7x6
        hc.Conv2d(6, 8, 3, padding=1), hc.ReLU(), hc.AvgPool2d(2),  # -> 3x3
        hc.Conv2d(8, 8, 1), hc.LeakyReLU(0.1), hc.AdaptiveAvgPool2d(adaptive), hc.Tanh(),
        hc.Conv2d(8, 8, 1, bias=False), hc.ReLU(), hc.AdaptiveAvgPool2d(1),
        hc.Flatten(), hc.Linear(8, 6, bias=False), hc.LeakyReLU(), hc.Linear(6, 4), seed=seed)
