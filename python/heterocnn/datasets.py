"""Image classification data: a strict IDX (MNIST format) reader and writer, and Fashion-MNIST.

IDX files hold one array: two zero bytes, a type code, the number of dimensions, each
dimension as a big-endian uint32, then the items in C order, big-endian. heterocnn reads them
gzipped (detected by the gzip magic bytes, whatever the name) or raw, and checks every header
field against the data before it allocates anything the header does not justify.

Fashion-MNIST comes from, in this order: a directory you name, the Debian package
``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), or the stratified sample
embedded in this package (600 images per class from the train set, 100 from the test set).
"""

import errno
import gzip
import math
import os
import struct
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .errors import DataFormatError, DTypeError, InvalidValueError, ShapeError

IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""IDX type code -> the dtype of the items in the file (big-endian)."""

MAX_IDX_DIMS = 4
"""Most dimensions an IDX file may declare: (N,) labels, (N,H,W) or (N,C,H,W) images."""

MAX_IDX_BYTES = 2**31
"""Largest payload (bytes) a header may declare; larger headers are rejected before reading."""

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package dataset-fashion-mnist installs the full set."""

_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)
_CHUNK_BYTES = 1 << 20
_SPLIT_PREFIXES = {"train": "train", "test": "t10k"}


class Dataset:
    """Labelled images in memory.

    images: (N, C, H, W) array as the file holds it (uint8 for MNIST-format data; the training
    loop scales uint8 to [0, 1]); labels: int64 (N,) in 0..len(classes)-1; classes: tuple of
    class names; name: what the data is ("Fashion-MNIST train"); source: where it came from;
    preprocessing: how image files were made into the images ({"size", "channels", "resize"}
    of hc.datasets.image_folder; None for arrays read as they are), which checkpoints record;
    files: each image's file (image folders), or None.
    """

    def __init__(self, images, labels, classes, name, source, preprocessing=None, files=None):
        if images.ndim != 4 or labels.shape != (len(images),):
            raise ShapeError(f"{name}: images must be (N, C, H, W) and labels (N,); "
                             f"got {images.shape} and {labels.shape}")
        self.images = images
        self.labels = labels.astype(np.int64, copy=False)
        self.classes = tuple(classes)
        self.name = name
        self.source = source
        self.preprocessing = preprocessing
        self.files = files

    @property
    def X(self):
        """The images, (N, C, H, W)."""
        return self.images

    @property
    def y(self):
        """The labels, int64 (N,)."""
        return self.labels

    def __len__(self):
        return len(self.labels)

    def as_tuple(self):
        """(images, labels), the form ``hc.fit`` and ``hc.evaluate`` also accept."""
        return self.images, self.labels

    def subset(self, indices, name=None):
        """The samples at ``indices`` as a Dataset with the same classes and preprocessing."""
        indices = np.asarray(indices, dtype=np.int64)
        files = None if self.files is None else tuple(self.files[i] for i in indices)
        return Dataset(self.images[indices], self.labels[indices], self.classes,
                       name or self.name, self.source, self.preprocessing, files)

    def split(self, fraction, seed=0):
        """(train, val): ``fraction`` of each class in val, drawn with ``seed``
        (hc.splits.stratified_split)."""
        from .splits import stratified_split

        train, val = stratified_split(self.labels, fraction, seed)
        return (self.subset(train, f"{self.name} (train {1 - fraction:g})"),
                self.subset(val, f"{self.name} (val {fraction:g})"))

    def __repr__(self):
        return (f"Dataset({self.name!r}: {len(self)} images {self.images.shape[1:]} "
                f"{self.images.dtype}, {len(self.classes)} classes, from {self.source})")


def _describe(shape, dtype):
    """'60000x28x28 uint8 = 47040000 bytes' for error messages."""
    nbytes = math.prod(shape) * dtype.itemsize
    return f"{'x'.join(map(str, shape))} {dtype.name} = {nbytes} bytes"


def _read_header(stream, path):
    """Read and check an IDX header; return (file dtype, shape, header size in bytes)."""
    head = stream.read(4)
    if len(head) < 4:
        raise DataFormatError(f"{path}: the data ends after {len(head)} bytes, "
                              "before the end of the 4-byte IDX magic")
    if head[:2] != b"\0\0":
        raise DataFormatError(f"{path}: not an IDX file: the magic starts with "
                              f"0x{head[:2].hex()} instead of 0x0000")
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} {d.name}" for c, d in IDX_DTYPES.items())
        raise DataFormatError(f"{path}: unknown IDX type code 0x{code:02X} (known: {known})")
    if not 1 <= ndim <= MAX_IDX_DIMS:
        raise DataFormatError(f"{path}: header declares {ndim} dimensions; "
                              f"heterocnn reads IDX files of 1 to {MAX_IDX_DIMS}")
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataFormatError(f"{path}: header declares {ndim} dimensions but the data ends "
                              f"after {len(dims)} of their {4 * ndim} bytes")
    shape = struct.unpack(f">{ndim}I", dims)
    dtype = IDX_DTYPES[code]
    if 0 in shape:
        raise DataFormatError(f"{path}: header declares {_describe(shape, dtype)}; "
                              "a dimension of 0 holds no data")
    if math.prod(shape) * dtype.itemsize > MAX_IDX_BYTES:
        raise DataFormatError(f"{path}: header declares {_describe(shape, dtype)}, "
                              f"over the limit of {MAX_IDX_BYTES} bytes")
    return dtype, shape, 4 + 4 * ndim


def _read_exactly(stream, nbytes):
    """Read up to nbytes in bounded chunks; fewer only if the stream ends first."""
    buf = bytearray()
    while len(buf) < nbytes:
        chunk = stream.read(min(_CHUNK_BYTES, nbytes - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def _read_array(stream, path, raw_size):
    """Read a whole IDX file from stream; raw_size is the file size, or None if gzipped."""
    dtype, shape, header_bytes = _read_header(stream, path)
    nbytes = math.prod(shape) * dtype.itemsize
    if raw_size is not None and raw_size - header_bytes != nbytes:
        raise DataFormatError(f"{path}: header declares {_describe(shape, dtype)} but the file "
                              f"holds {raw_size - header_bytes} after its {header_bytes}-byte header")
    payload = _read_exactly(stream, nbytes)
    if len(payload) < nbytes:
        raise DataFormatError(f"{path}: header declares {_describe(shape, dtype)} but the "
                              f"data ends after {len(payload)} bytes")
    if stream.read(1):
        raise DataFormatError(f"{path}: trailing bytes after the {_describe(shape, dtype)} "
                              "the header declares")
    array = np.frombuffer(payload, dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _read_idx_file(path, reader):
    """Open path, gzipped or raw (told by its magic bytes), and return reader(stream, path, raw_size)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            f.seek(0)
            return reader(f, path, os.fstat(f.fileno()).st_size)
        f.seek(0)
        try:
            with gzip.GzipFile(fileobj=f, mode="rb") as stream:
                return reader(stream, path, None)
        except _GZIP_ERRORS as e:
            raise DataFormatError(f"{path}: corrupt gzip data: {e}") from e


def load_idx(path):
    """Read one IDX file, gzipped or raw, into a native-endian numpy array.

    Returns an array of the file's shape (1 to 4 dimensions, each > 0) and dtype (uint8, int8,
    int16, int32, float32 or float64). Raises FileNotFoundError if path does not exist and
    DataFormatError (a ValueError) naming the file if it is malformed: bad magic or type code,
    0 or more than 4 dimensions, a zero dimension, a payload over MAX_IDX_BYTES, a short or
    long payload, or corrupt gzip data.
    """
    return _read_idx_file(path, _read_array)


def read_idx_header(path):
    """Read only the header of an IDX file: (native dtype, shape tuple). Checks as load_idx."""
    dtype, shape, _ = _read_idx_file(path, lambda stream, p, _size: _read_header(stream, p))
    return dtype.newbyteorder("="), shape


def save_idx(path, array, compress=None):
    """Write array (1 to 4 dims, each > 0; uint8, int8, int16, int32, float32 or float64) as IDX.

    compress: gzip the file (reproducibly: no name, mtime 0); None means "if path ends in .gz".
    """
    array = np.asarray(array)
    codes = {d.newbyteorder("="): c for c, d in IDX_DTYPES.items()}
    if array.dtype.newbyteorder("=") not in codes:
        raise DTypeError(f"{path}: IDX holds uint8, int8, int16, int32, float32 or float64, "
                         f"not {array.dtype}")
    if not 1 <= array.ndim <= MAX_IDX_DIMS or 0 in array.shape:
        raise ShapeError(f"{path}: IDX arrays have 1 to {MAX_IDX_DIMS} dimensions, each > 0; "
                         f"got shape {array.shape}")
    code = codes[array.dtype.newbyteorder("=")]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    if compress is None:
        compress = os.fspath(path).endswith(".gz")
    if compress:
        data = gzip.compress(data, compresslevel=9, mtime=0)
    write_atomic(path, data)


def _labels_of(labels, labels_path, n_images, images_path, n_classes):
    """Check an IDX labels array against the images; return it as int64 (N,)."""
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataFormatError(f"{labels_path}: labels must be a 1-D integer IDX array, "
                              f"not {labels.dtype.name} of shape {labels.shape}")
    if len(labels) != n_images:
        raise DataFormatError(f"{labels_path} holds {len(labels)} labels but {images_path} "
                              f"holds {n_images} images")
    labels = labels.astype(np.int64)
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or (n_classes is not None and high >= n_classes):
        limit = f"0..{n_classes - 1}" if n_classes is not None else ">= 0"
        raise DataFormatError(f"{labels_path}: labels must be {limit}; found {low}..{high}")
    return labels


def load_idx_pair(images_path, labels_path, classes=None, name=None, source=None):
    """Read MNIST-format data: an images IDX file and its labels IDX file -> Dataset.

    images: (N, H, W) files become (N, 1, H, W); (N, C, H, W) files stay as they are.
    labels: (N,) integers, in 0..len(classes)-1 when classes are given; without classes,
    the classes are named "0", "1", ... up to the largest label.
    """
    images = load_idx(images_path)
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise DataFormatError(f"{images_path}: images must be (N, H, W) or (N, C, H, W), "
                              f"not {images.shape}")
    n_classes = None if classes is None else len(classes)
    labels = _labels_of(load_idx(labels_path), labels_path, len(images), images_path, n_classes)
    if classes is None:
        classes = tuple(str(c) for c in range(int(labels.max()) + 1))
    return Dataset(images, labels, classes,
                   name=name or os.path.basename(os.fspath(images_path)),
                   source=source or f"{os.fspath(images_path)} and {os.fspath(labels_path)}")


def _fashion_mnist_location(path, sample):
    """(directory or package resource, description, hint) of the Fashion-MNIST in use."""
    if sample and path is not None:
        raise InvalidValueError("fashion_mnist: pass either path or sample=True, not both")
    if path is not None:
        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no Fashion-MNIST directory", str(directory))
        return directory, f"Fashion-MNIST from {directory}", ""
    if not sample and FASHION_MNIST_DIR.is_dir():
        return FASHION_MNIST_DIR, f"Fashion-MNIST full set from {FASHION_MNIST_DIR}", ""
    return (resources.files(__package__) / "data" / "fashion-mnist-sample",
            "embedded Fashion-MNIST sample",
            "; install the Debian package dataset-fashion-mnist or pass --data DIR for the full set")


def _split_files(directory, split):
    """The (images, labels) files of a split in directory, each NAME.gz or NAME."""
    if split not in _SPLIT_PREFIXES:
        raise InvalidValueError(f"fashion_mnist: split must be 'train' or 'test', not {split!r}")
    prefix = _SPLIT_PREFIXES[split]
    return tuple(_find_idx(directory, f"{prefix}-{kind}-ubyte")
                 for kind in ("images-idx3", "labels-idx1"))


def _find_idx(directory, name):
    """directory / 'name.gz', else directory / name; FileNotFoundError naming both."""
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(errno.ENOENT, f"no {name}.gz or {name} in {directory}",
                            str(directory / name))


def fashion_mnist(split="train", path=None, sample=False):
    """Fashion-MNIST as a Dataset: images uint8 (N, 1, 28, 28), labels int64 (N,) in 0..9.

    split: "train" or "test". path: a directory with the standard files
    ({train,t10k}-{images-idx3,labels-idx1}-ubyte, gzipped or not). Without path, the full set
    of /usr/share/datasets/fashion-mnist if installed, else the embedded sample;
    sample=True forces the sample.
    """
    directory, description, _ = _fashion_mnist_location(path, sample)
    images, labels = _split_files(directory, split)
    with resources.as_file(images) as images_file, resources.as_file(labels) as labels_file:
        return load_idx_pair(images_file, labels_file, FASHION_MNIST_CLASSES,
                             name=f"Fashion-MNIST {split}", source=description)


def fashion_mnist_source(path=None, sample=False):
    """One line saying which Fashion-MNIST fashion_mnist(path=..., sample=...) would load.

    E.g. "Fashion-MNIST full set from /usr/share/datasets/fashion-mnist: 60000 train / 10000 test".
    Reads only the file headers.
    """
    directory, description, hint = _fashion_mnist_location(path, sample)
    counts = []
    for split in _SPLIT_PREFIXES:
        with resources.as_file(_split_files(directory, split)[0]) as images_file:
            counts.append(read_idx_header(images_file)[1][0])
    return f"{description}: {counts[0]} train / {counts[1]} test{hint}"


from .digits import digits  # noqa: E402,F401  (hc.datasets.digits; both build on Dataset)
from .image_folder import image_folder  # noqa: E402,F401
