"""heterocnn.datasets: IDX round trips, malformed files, Fashion-MNIST and its embedded sample."""

import gzip
import hashlib
import importlib.util
import struct
import tracemalloc
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from heterocnn.datasets import (FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, MAX_IDX_BYTES, Dataset,
                                fashion_mnist, fashion_mnist_source, load_idx, load_idx_pair,
                                read_idx_header, save_idx)
from heterocnn.errors import DataFormatError, HeteroCNNError, InvalidValueError

# type code -> big-endian dtype, written out here independently of the module under test
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
NATIVE = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.int16, 0x0C: np.int32,
          0x0D: np.float32, 0x0E: np.float64}
FULL_SET = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                              reason="dataset-fashion-mnist is not installed")


def idx_bytes(shape, code=0x08, payload=None, magic=b"\0\0", ndim=None):
    """IDX file bytes; payload defaults to zeros of the size the header declares."""
    ndim = len(shape) if ndim is None else ndim
    header = magic + bytes([code, ndim]) + struct.pack(f">{len(shape)}I", *shape)
    if payload is None:
        payload = bytes(int(np.prod(shape)) * np.dtype(CODES.get(code, "u1")).itemsize)
    return header + payload


def write(tmp_path, name, data, gz=False):
    """Write data (bytes) to tmp_path/name, gzipped if gz; return the path."""
    path = tmp_path / name
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def random_array(code, shape, seed=0):
    rng = np.random.default_rng(seed)
    dtype = np.dtype(NATIVE[code])
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


def assert_bad(path, *fragments):
    """load_idx(path) raises DataFormatError naming the file and containing the fragments."""
    with pytest.raises(DataFormatError) as caught:
        load_idx(path)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, HeteroCNNError)
    message = str(caught.value)
    assert path.name in message
    for fragment in fragments:
        assert fragment in message
    return message


# --- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape", [(7,), (5, 3, 4), (2, 3, 4, 5)], ids=["1d", "3d", "4d"])
@pytest.mark.parametrize("code", sorted(CODES), ids=lambda c: np.dtype(NATIVE[c]).name)
def test_round_trip_every_dtype(tmp_path, code, shape, gz):
    expected = random_array(code, shape)
    path = write(tmp_path, "a.idx", idx_bytes(shape, code, expected.astype(CODES[code]).tobytes()), gz)
    loaded = load_idx(path)
    assert loaded.dtype == NATIVE[code] and loaded.dtype.isnative
    assert loaded.shape == shape
    np.testing.assert_array_equal(loaded, expected)
    assert read_idx_header(path) == (np.dtype(NATIVE[code]), shape)


@pytest.mark.parametrize("code", sorted(CODES), ids=lambda c: np.dtype(NATIVE[c]).name)
def test_save_idx_writes_the_standard_bytes(tmp_path, code):
    array = random_array(code, (4, 3, 2))
    save_idx(tmp_path / "a.idx", array)
    save_idx(tmp_path / "a.idx.gz", array)
    expected = idx_bytes(array.shape, code, array.astype(CODES[code]).tobytes())
    assert (tmp_path / "a.idx").read_bytes() == expected
    assert (tmp_path / "a.idx.gz").read_bytes()[:2] == b"\x1f\x8b"
    np.testing.assert_array_equal(load_idx(tmp_path / "a.idx.gz"), array)


def test_gzip_is_told_by_its_magic_not_its_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw_named_gz = write(tmp_path, "raw.gz", idx_bytes(array.shape, 0x08, array.tobytes()))
    gz_named_raw = write(tmp_path, "packed.idx", idx_bytes(array.shape, 0x08, array.tobytes()), gz=True)
    np.testing.assert_array_equal(load_idx(raw_named_gz), array)
    np.testing.assert_array_equal(load_idx(gz_named_raw), array)


def test_load_idx_pair_makes_a_dataset(tmp_path):
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    save_idx(tmp_path / "img.gz", images)
    save_idx(tmp_path / "lab", np.array([2, 0, 1], np.uint8))
    data = load_idx_pair(tmp_path / "img.gz", tmp_path / "lab")
    assert len(data) == 3 and data.images.shape == (3, 1, 4, 5) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int64 and list(data.labels) == [2, 0, 1]
    assert data.classes == ("0", "1", "2")
    X, y = data.as_tuple()
    assert X is data.X is data.images and y is data.y is data.labels
    assert "img.gz" in data.source


def test_load_idx_pair_keeps_four_dimensional_images(tmp_path):
    save_idx(tmp_path / "img", np.zeros((2, 3, 4, 4), np.float32))
    save_idx(tmp_path / "lab", np.array([0, 1], np.int32))
    assert load_idx_pair(tmp_path / "img", tmp_path / "lab", classes=("a", "b")).images.shape == (2, 3, 4, 4)


# --- malformed files ----------------------------------------------------------------------

@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_wrong_magic(tmp_path, gz):
    assert_bad(write(tmp_path, "bad.idx", idx_bytes((2,), magic=b"\x01\x00"), gz), "magic")


@pytest.mark.parametrize("code", [0x00, 0x0A, 0x0F, 0xFF])
def test_unknown_type_code(tmp_path, code):
    assert_bad(write(tmp_path, "bad.idx", idx_bytes((2,), code, payload=b"\0\0")), f"0x{code:02X}")


@pytest.mark.parametrize("shape", [(), (1, 1, 1, 1, 1), (1,) * 255])
def test_dimension_count_out_of_range(tmp_path, shape):
    assert_bad(write(tmp_path, "bad.idx", idx_bytes(shape)), f"{len(shape)} dimensions")


def test_zero_dimension(tmp_path):
    assert_bad(write(tmp_path, "bad.idx", idx_bytes((3, 0, 2))), "3x0x2")


def test_header_cut_short(tmp_path):
    assert_bad(write(tmp_path, "bad.idx", idx_bytes((5, 6), payload=b"")[:10]), "2 dimensions")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_empty_file(tmp_path, gz):
    assert_bad(write(tmp_path, "empty.idx", b"", gz), "ends after 0 bytes")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_truncated_payload(tmp_path, gz):
    path = write(tmp_path, "short.idx", idx_bytes((10, 28, 28))[:-1], gz)
    message = assert_bad(path, "10x28x28 uint8 = 7840 bytes")
    assert "7839" in message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_trailing_bytes(tmp_path, gz):
    path = write(tmp_path, "long.idx", idx_bytes((4, 2), 0x0B) + b"\0", gz)
    message = assert_bad(path, "4x2 int16 = 16 bytes")
    assert ("trailing" in message) if gz else ("17" in message)


def test_trailing_gzip_member(tmp_path):
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(idx_bytes((3,)), mtime=0) + gzip.compress(b"x", mtime=0))
    assert_bad(path, "trailing")


def test_full_scale_header_in_a_tiny_file(tmp_path):
    message = assert_bad(write(tmp_path, "train-images.gz", idx_bytes((60000, 28, 28), payload=b"\0" * 1000)),
                         "60000x28x28 uint8 = 47040000 bytes", "1000")
    assert "holds" in message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("shape, code, limit", [
    ((2**20, 2**20), 0x08, True),          # 2**40 bytes: over the cap
    ((2**16, 2**16, 2**16, 2**16), 0x0E, True),
    ((2**15, 2**15), 0x08, False),         # 2**30 bytes: under the cap, but the data isn't there
], ids=["2^40", "2^67", "2^30"])
def test_huge_header_fails_fast_without_allocating(tmp_path, shape, code, limit, gz):
    path = write(tmp_path, "huge.idx", idx_bytes(shape, code, payload=b"\0" * 64), gz)
    tracemalloc.start()
    try:
        message = assert_bad(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 2**20, f"peak allocation {peak} bytes"
    assert ("over the limit" in message) == limit
    assert limit == (np.prod(shape, dtype=object) * np.dtype(CODES[code]).itemsize > MAX_IDX_BYTES)


def corrupt_gzip_files():
    """name -> bytes of a gzipped IDX file damaged in some way."""
    good = gzip.compress(idx_bytes((8, 8), payload=bytes(range(64))), mtime=0)
    bad_crc = good[:-8] + bytes([good[-8] ^ 0xFF]) + good[-7:]
    bad_deflate = good[:10] + b"\xff" * 8 + good[18:]
    return {"truncated": good[: len(good) // 2], "bad_crc": bad_crc,
            "bad_deflate": bad_deflate, "bad_method": good[:2] + b"\x07" + good[3:]}


@pytest.mark.parametrize("name", sorted(corrupt_gzip_files()))
def test_corrupt_gzip(tmp_path, name):
    assert_bad(write(tmp_path, f"{name}.gz", corrupt_gzip_files()[name]))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        load_idx(tmp_path / "nope.idx")


# --- image/label pairs --------------------------------------------------------------------

def pair_error(tmp_path, images, labels, classes=None):
    save_idx(tmp_path / "images.idx", images)
    save_idx(tmp_path / "labels.idx", labels)
    with pytest.raises(DataFormatError) as caught:
        load_idx_pair(tmp_path / "images.idx", tmp_path / "labels.idx", classes)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, HeteroCNNError)
    return str(caught.value)


def test_labels_count_mismatch_names_both_files(tmp_path):
    message = pair_error(tmp_path, np.zeros((5, 2, 2), np.uint8), np.zeros(4, np.uint8))
    assert "images.idx" in message and "labels.idx" in message and "4" in message and "5" in message


def test_labels_out_of_range(tmp_path):
    message = pair_error(tmp_path, np.zeros((3, 2, 2), np.uint8), np.array([0, 10, 2], np.uint8),
                         FASHION_MNIST_CLASSES)
    assert "labels.idx" in message and "0..9" in message


def test_negative_labels(tmp_path):
    assert "labels.idx" in pair_error(tmp_path, np.zeros((2, 2, 2), np.uint8), np.array([0, -1], np.int8))


def test_float_labels(tmp_path):
    assert "labels.idx" in pair_error(tmp_path, np.zeros((2, 2, 2), np.uint8), np.zeros(2, np.float32))


def test_images_of_the_wrong_rank(tmp_path):
    assert "images.idx" in pair_error(tmp_path, np.zeros(4, np.uint8), np.zeros(4, np.uint8))


# --- Fashion-MNIST ------------------------------------------------------------------------

@pytest.mark.parametrize("split, per_class", [("train", 600), ("test", 100)])
def test_embedded_sample(split, per_class):
    data = fashion_mnist(split, sample=True)
    assert isinstance(data, Dataset) and len(data) == 10 * per_class
    assert data.images.shape == (10 * per_class, 1, 28, 28) and data.images.dtype == np.uint8
    assert data.labels.shape == (10 * per_class,) and data.labels.dtype == np.int64
    assert np.bincount(data.labels).tolist() == [per_class] * 10
    assert data.classes == FASHION_MNIST_CLASSES
    assert data.source == "embedded Fashion-MNIST sample"


def test_class_names():
    assert FASHION_MNIST_CLASSES == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_source_line_of_the_sample():
    line = fashion_mnist_source(sample=True)
    assert line.startswith("embedded Fashion-MNIST sample: 6000 train / 1000 test")
    assert "dataset-fashion-mnist" in line and "--data DIR" in line


def test_directory_with_raw_files(tmp_path):
    for split, n in (("train", 6), ("t10k", 2)):
        save_idx(tmp_path / f"{split}-images-idx3-ubyte", np.full((n, 28, 28), 7, np.uint8))
        save_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8))
    data = fashion_mnist("test", path=tmp_path)
    assert data.images.shape == (2, 1, 28, 28) and data.labels.tolist() == [0, 1]
    assert fashion_mnist_source(path=tmp_path) == f"Fashion-MNIST from {tmp_path}: 6 train / 2 test"


def test_directory_missing_a_file_names_file_and_directory(tmp_path):
    save_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError) as caught:
        fashion_mnist("train", path=tmp_path)
    assert "train-labels-idx1-ubyte" in str(caught.value) and str(tmp_path) in str(caught.value)


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        fashion_mnist(path=tmp_path / "no-such-dir")


def test_bad_arguments(tmp_path):
    with pytest.raises(InvalidValueError, match="split"):
        fashion_mnist("validation", sample=True)
    with pytest.raises(InvalidValueError):
        fashion_mnist(path=tmp_path, sample=True)


@FULL_SET
def test_full_set_source_line():
    assert fashion_mnist_source() == (f"Fashion-MNIST full set from {FASHION_MNIST_DIR}: "
                                      "60000 train / 10000 test")


@FULL_SET
def test_full_test_split():
    data = fashion_mnist("test")
    assert data.images.shape == (10000, 1, 28, 28) and np.bincount(data.labels).tolist() == [1000] * 10


def load_make_sample():
    path = Path(__file__).resolve().parent.parent / "tools" / "make_sample.py"
    if not path.is_file():
        pytest.skip("tools/make_sample.py is not in this tree")
    spec = importlib.util.spec_from_file_location("make_sample", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@FULL_SET
def test_sample_is_reproducible_and_drawn_in_order_from_the_full_set(tmp_path):
    written = load_make_sample().make_sample(FASHION_MNIST_DIR, tmp_path, seed=0)
    embedded = {path.name: fashion_mnist_sample_bytes(path.name) for path in written}
    assert {path.name: path.read_bytes() for path in written} == embedded
    for split in ("train", "test"):
        full, sample = fashion_mnist(split), fashion_mnist(split, sample=True)
        digests = {hashlib.sha1(image.tobytes()).digest(): i for i, image in enumerate(full.images)}
        where = [digests[hashlib.sha1(image.tobytes()).digest()] for image in sample.images]
        assert where == sorted(where)
        np.testing.assert_array_equal(full.labels[where], sample.labels)


def fashion_mnist_sample_bytes(name):
    return (resources.files("heterocnn") / "data" / "fashion-mnist-sample" / name).read_bytes()


def test_dataset_rejects_mismatched_arrays():
    with pytest.raises(ValueError):
        Dataset(np.zeros((3, 1, 2, 2), np.uint8), np.zeros(2, np.int64), ("a",), "x", "y")



def test_without_the_full_set_the_sample_is_the_default(monkeypatch, tmp_path):
    import heterocnn.datasets
    monkeypatch.setattr(heterocnn.datasets, "FASHION_MNIST_DIR", tmp_path / "absent")
    assert fashion_mnist_source().startswith("embedded Fashion-MNIST sample: 6000 train")
    assert len(fashion_mnist("test")) == 1000
