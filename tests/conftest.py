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
