"""Fuzzing the IDX reader: generated and mutated files, raw and gzipped.

load_idx and read_idx_header may only return an array (header) that a reference parser written
here agrees with, or raise DataFormatError naming the file; never another exception, never a
crash, and never allocate more than the file's data justifies (traced with tracemalloc).
The suite runs about 2000 cases; tools/fuzz_idx.py runs the same checks for as long as asked.
"""

import gzip
import io
import math
import struct
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from heterocnn.datasets import MAX_IDX_BYTES, MAX_IDX_DIMS, load_idx, read_idx_header
from heterocnn.errors import DataFormatError

# type code -> big-endian dtype, written out here independently of the module under test
CODES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

ALLOWANCE_BYTES = 3 * 2**20
"""What the reader may allocate beyond a few times the data: its 1 MiB read chunks."""


# --- the reference: what a file of these bytes holds ------------------------------------

def reference_header(content):
    """(big-endian dtype, shape, header bytes) the content's header declares, or None if invalid."""
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in CODES:
        return None
    ndim = content[3]
    if not 1 <= ndim <= MAX_IDX_DIMS or len(content) < 4 + 4 * ndim:
        return None
    shape = struct.unpack_from(f">{ndim}I", content, 4)
    dtype = np.dtype(CODES[content[2]])
    if 0 in shape or math.prod(shape) * dtype.itemsize > MAX_IDX_BYTES:
        return None
    return dtype, shape, 4 + 4 * ndim


def reference(content):
    """The array an IDX file of these (uncompressed) bytes holds, or None if it is malformed."""
    header = reference_header(content)
    if header is None:
        return None
    dtype, shape, offset = header
    if len(content) != offset + math.prod(shape) * dtype.itemsize:
        return None
    return np.frombuffer(content, dtype, offset=offset).reshape(shape)


def gunzip(data):
    """The bytes the gzip stream data decompresses to, or None if it is corrupt."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
            return f.read()
    except (OSError, EOFError, ValueError, gzip.zlib.error):
        return None


# --- the check every case goes through ----------------------------------------------------

def check_file(path, data):
    """Write data to path, read it with load_idx and read_idx_header, and check both against
    the reference. Returns "accepted" or "rejected"."""
    path.write_bytes(data)
    content = gunzip(data) if data[:2] == b"\x1f\x8b" else data
    expected = None if content is None else reference(content)

    tracemalloc.start()
    try:
        try:
            array = load_idx(path)
        except DataFormatError as e:
            array, message = None, str(e)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Everything the reader keeps or copies is bounded by the data actually there.
    data_bytes = len(data) if content is None else max(len(data), len(content))
    assert peak <= ALLOWANCE_BYTES + 4 * data_bytes, f"peak allocation {peak} for {data_bytes} bytes"

    if expected is None:
        assert array is None, f"accepted a malformed file as {array.dtype} {array.shape}"
        assert path.name in message
    else:
        assert array is not None, f"rejected a valid file: {message}"
        assert array.dtype == expected.dtype.newbyteorder("=") and array.dtype.isnative
        assert array.shape == expected.shape
        assert array.tobytes() == expected.astype(array.dtype).tobytes()

    # The header reader stops after the header: it must agree with the reference on it
    # (where the gzip stream is corrupt further on, it may or may not notice).
    try:
        got = read_idx_header(path)
    except DataFormatError as e:
        assert path.name in str(e)
        got = None
    if content is not None:
        header = reference_header(content)
        assert got == (None if header is None else (header[0].newbyteorder("="), header[1]))
    return "rejected" if array is None else "accepted"


# --- what the fuzzer generates --------------------------------------------------------------

@st.composite
def valid_idx(draw, max_dim=6):
    """Bytes of a valid IDX file: any type code, 1 to 4 small dimensions, random items."""
    code = draw(st.sampled_from(sorted(CODES)))
    shape = draw(st.lists(st.integers(1, max_dim), min_size=1, max_size=MAX_IDX_DIMS))
    nbytes = math.prod(shape) * np.dtype(CODES[code]).itemsize
    payload = draw(st.binary(min_size=nbytes, max_size=nbytes))
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + payload


@st.composite
def mutated(draw, data):
    """data after 1 to 4 byte flips, byte sets, truncations, extensions, insertions or deletions."""
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "extend", "insert", "delete"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF]))
        elif kind == "truncate":
            del data[at:]
        elif kind == "extend":
            data += draw(st.binary(min_size=1, max_size=16))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[at:at + draw(st.integers(1, 8))]
    return bytes(data)


HUGE = st.sampled_from([2**31 - 1, 2**31, 2**32 - 1, 2**16, 2**16 + 1, 2**20, 46341, 65535])
"""Dimensions whose products reach or pass the payload cap and 2**32, 2**64 and more."""


@st.composite
def mutated_header(draw):
    """An IDX file with any type code and 0 to 255 dimensions, small or huge, some of them 0,
    and a payload that is empty, short, exact or long for what the header declares."""
    code = draw(st.one_of(st.sampled_from(sorted(CODES)), st.integers(0, 255)))
    ndim = draw(st.one_of(st.integers(1, MAX_IDX_DIMS), st.integers(0, 255)))
    dims = draw(st.lists(st.one_of(st.integers(0, 8), HUGE, st.integers(0, 2**32 - 1)),
                         min_size=min(ndim, 6), max_size=min(ndim, 6)))
    header = bytes([0, 0, code, ndim]) + struct.pack(f">{len(dims)}I", *dims)
    declared = math.prod(dims) * np.dtype(CODES.get(code, "u1")).itemsize
    size = draw(st.sampled_from(["empty", "short", "exact", "long"]))
    n = {"empty": 0, "short": draw(st.integers(0, 64)),
         "exact": declared if declared <= 4096 else 64, "long": draw(st.integers(0, 64))}[size]
    if size == "long" and declared <= 4096:
        n += declared + 1
    return header + draw(st.binary(min_size=min(n, 64), max_size=min(n, 64))) + bytes(max(n - 64, 0))


def maybe_gzip(draw, data):
    return gzip.compress(data, compresslevel=1, mtime=0) if draw(st.booleans()) else data


@st.composite
def mutated_file(draw):
    """A valid file mutated, then gzipped or not."""
    return maybe_gzip(draw, draw(mutated(draw(valid_idx()))))


@st.composite
def mutated_gzip(draw):
    """A gzipped valid file whose compressed bytes are mutated."""
    return draw(mutated(gzip.compress(draw(valid_idx()), compresslevel=1, mtime=0)))


@st.composite
def header_file(draw):
    """A mutated header, gzipped or not."""
    return maybe_gzip(draw, draw(mutated_header()))


@st.composite
def valid_file(draw):
    return maybe_gzip(draw, draw(valid_idx()))


STRATEGIES = {"valid": valid_file(), "mutated": mutated_file(), "mutated_gzip": mutated_gzip(),
              "header": header_file()}
"""Case kinds, each a strategy for file bytes; tools/fuzz_idx.py runs them at length."""

SUITE_EXAMPLES = {"valid": 300, "mutated": 800, "mutated_gzip": 400, "header": 500}


def fuzz_settings(max_examples):
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def idx_path(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz") / "case.idx"


def _suite_test(kind):
    @fuzz_settings(SUITE_EXAMPLES[kind])
    @given(data=STRATEGIES[kind])
    def test(idx_path, data):
        outcome = check_file(idx_path, data)
        if kind == "valid":
            assert outcome == "accepted"
    test.__name__ = f"test_fuzz_{kind}"
    return test


test_fuzz_valid = _suite_test("valid")
test_fuzz_mutated = _suite_test("mutated")
test_fuzz_mutated_gzip = _suite_test("mutated_gzip")
test_fuzz_header = _suite_test("header")


@pytest.mark.parametrize("dims, code", [
    ((2**32 - 1,) * 4, 0x0E),              # product 2**128: overflows any fixed-width integer
    ((2**16, 2**16, 2**16, 2**16), 0x08),  # exactly 2**64
    ((2**31, 2), 0x08),                    # 2**32
    ((46341, 46341), 0x08),                # just over 2**31
    ((2**31 - 1,), 0x08),                  # just under the cap, 16 bytes there
])
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_overflowing_dimension_products_are_rejected_without_allocating(idx_path, dims, code, gz):
    data = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + bytes(16)
    assert check_file(idx_path, gzip.compress(data, mtime=0) if gz else data) == "rejected"
