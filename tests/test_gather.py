"""The host gather of training batches (core/src/dataset.cpp, fit's batches on the CPU): the
same values as numpy's indexing to the bit, for uint8 (scaled) and float32 images, odd sample
shapes, repeated and unsorted indices, on 1 and 3 threads; bad arguments raise and write
nothing."""

import numpy as np
import pytest

import heterocnn as hc
from heterocnn import _core
from heterocnn.preprocess import UINT8_SCALE
from heterocnn.training import _batch


def reference(X, idx):
    if X.dtype == np.uint8:
        return np.multiply(X[idx], UINT8_SCALE, dtype=np.float32)
    return X[idx].astype(np.float32)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("sample", [(1, 28, 28), (3, 5, 7), (1,)])
@pytest.mark.parametrize("threads", [1, 3])
def test_matches_numpy_to_the_bit(dtype, sample, threads):
    rng = np.random.default_rng(7)
    N = 1000
    X = (rng.integers(0, 256, (N,) + sample, dtype=np.uint8) if dtype == np.uint8
         else rng.standard_normal((N,) + sample).astype(np.float32))
    before = hc.build_info()["threads"]
    hc.set_threads(threads)
    try:
        for n in (0, 1, 37, 600):  # 600 x 784 floats is above the team's threshold
            idx = rng.integers(0, N, n)
            idx[: n // 3] = idx[: 1]  # repeats
            out = np.full((n,) + sample, np.nan, np.float32)
            got = _core.gather_batch(X, idx.astype(np.int64), out, UINT8_SCALE)
            assert got is out
            assert np.array_equal(out.view(np.uint32), reference(X, idx).view(np.uint32))
    finally:
        hc.set_threads(before)


def test_fit_batch_takes_the_core_gather_and_numpy_alike():
    rng = np.random.default_rng(3)
    X = rng.integers(0, 256, (200, 1, 6, 5), dtype=np.uint8)
    idx = rng.permutation(200)[:50]
    out = np.empty((64, 1, 6, 5), np.float32)
    fast = _batch(X, idx, out).copy()
    strided = np.asfortranarray(X)  # not C-contiguous: numpy's path
    slow = _batch(strided, idx, np.empty((64, 1, 6, 5), np.float32))
    assert np.array_equal(fast.view(np.uint32), slow.view(np.uint32))
    assert np.array_equal(fast, reference(X, idx))


def test_bad_arguments_raise_and_write_nothing():
    X = np.zeros((10, 2, 3), np.uint8)
    out = np.full((3, 2, 3), -1.0, np.float32)
    with pytest.raises(hc.InvalidValueError, match="index 10 at position 2 is outside the 10"):
        _core.gather_batch(X, np.array([0, 9, 10], np.int64), out, UINT8_SCALE)
    with pytest.raises(hc.InvalidValueError, match="index -1"):
        _core.gather_batch(X, np.array([0, -1, 1], np.int64), out, UINT8_SCALE)
    assert (out == -1.0).all()
    with pytest.raises(hc.ShapeError, match="do not fit"):
        _core.gather_batch(X, np.array([0, 1], np.int64), out, UINT8_SCALE)
    with pytest.raises(hc.ShapeError, match="do not fit"):
        _core.gather_batch(X, np.array([0, 1, 2], np.int64), np.empty((3, 3, 2), np.float32),
                           UINT8_SCALE)
    with pytest.raises(hc.DTypeError, match="int64"):
        _core.gather_batch(X, np.array([0, 1, 2], np.int32), out, UINT8_SCALE)
    with pytest.raises(hc.DTypeError, match="uint8 or float32"):
        _core.gather_batch(X.astype(np.int16), np.array([0, 1, 2], np.int64), out, UINT8_SCALE)
    with pytest.raises(hc.DTypeError, match="C-contiguous"):
        _core.gather_batch(np.asfortranarray(X), np.array([0, 1, 2], np.int64), out,
                           UINT8_SCALE)
    with pytest.raises(hc.DTypeError, match="numpy arrays"):
        _core.gather_batch(X, [0, 1, 2], out, UINT8_SCALE)
    assert (out == -1.0).all()
