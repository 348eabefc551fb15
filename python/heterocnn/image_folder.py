"""Image folders: ``root/<class>/<image>`` (the layout of torchvision's ImageFolder and Keras'
``image_dataset_from_directory``) as a Dataset of uint8 (N, C, H, W) images.

Files are decoded by Pillow (``heterocnn[images]``) in forked worker processes, one per core
(on Linux; elsewhere in the calling process), and the decoded arrays are cached (see
``cache_folder``): one .npz per folder and options, which holds the folder's file list with
every file's size and modification time as it was read; a later run whose list, sizes and
times are the same reads that file instead of decoding again, and any change (a file added,
removed, rewritten or touched) decodes again and replaces it.
"""

import contextlib
import hashlib
import json
import mmap
import os
import sys
import threading
import time
import warnings
import zipfile

import numpy as np

from .atomic import write_atomic
from .datasets import Dataset
from .errors import DataFormatError, InvalidValueError
from .preprocess import IMAGE_EXTENSIONS, check_options, decode

CACHE_VERSION = 1
"""Part of every cache key: a new version makes the old cache files unused."""

SERIAL_BELOW = 512
"""Folders with fewer images than this are decoded in this process (a pool costs more)."""

_CHUNK = 500  # images per task sent to a worker
_NAMED = 3    # bad files a warning or error names


def cache_folder():
    """Where decoded folders are cached: $XDG_CACHE_HOME/heterocnn, else ~/.cache/heterocnn."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "heterocnn")


# -- the folder's files ---------------------------------------------------------------------

def _class_folders(root):
    """Sorted names of root's subfolders (hidden ones, e.g. .ipynb_checkpoints, skipped)."""
    if not os.path.isdir(root):
        if os.path.exists(root):
            raise DataFormatError(f"{root}: not a folder; image_folder needs root/<class>/<image>")
        raise FileNotFoundError(2, "no image folder", root)
    with os.scandir(root) as it:
        names = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    if not names:
        raise DataFormatError(f"{root}: no class folders; image_folder needs the layout "
                              "root/<class>/<image> (e.g. root/cat/1.png, root/dog/2.jpg)")
    return names


def _images_in(folder, prefix):
    """Sorted paths relative to root of the image files under ``folder`` (also in subfolders,
    hidden ones skipped), and the count of other files ignored. Nothing is stat'ed."""
    found, ignored = [], 0
    with os.scandir(folder) as it:
        entries = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for e in entries:
        if e.is_dir():
            sub, n = _images_in(e.path, f"{prefix}/{e.name}")
            found += sub
            ignored += n
        elif e.name.lower().endswith(IMAGE_EXTENSIONS):
            found.append(f"{prefix}/{e.name}")
        else:
            ignored += 1
    return found, ignored


def list_images(root):
    """(classes, [path relative to root], labels int64) of an image folder. DataFormatError
    when it has no class folders or a class folder has no image files."""
    root = os.fspath(root)
    classes = _class_folders(root)
    files, labels, empty = [], [], []
    for label, name in enumerate(classes):
        found, ignored = _images_in(os.path.join(root, name), name)
        if not found:
            empty.append(f"{name}/" + (f" ({ignored} other files)" if ignored else ""))
        files += found
        labels += [label] * len(found)
    if empty:
        raise DataFormatError(f"{root}: class folder(s) without image files "
                              f"({', '.join(IMAGE_EXTENSIONS)}): {', '.join(empty)}; add "
                              "images or remove the folder")
    return classes, files, np.array(labels, dtype=np.int64)


def _stats(root, rels):
    """int64 (N, 2): size and mtime_ns of each file (-1, -1 where it cannot be stat'ed)."""
    out = np.full((len(rels), 2), -1, dtype=np.int64)
    for i, rel in enumerate(rels):
        try:
            st = os.stat(os.path.join(root, rel))
        except OSError:
            continue
        out[i] = st.st_size, st.st_mtime_ns
    return out


# -- decoding -------------------------------------------------------------------------------

def _read(path, stat_out):
    """The bytes of the file at ``path``; its size and mtime_ns, as opened, into ``stat_out``
    (as os.stat gives them when it cannot be opened). Raw os calls: a buffered file object
    takes twice as long to open and read a small file (about 9 us against 5)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            stat_out[:] = st.st_size, st.st_mtime_ns
        raise
    try:
        st = os.fstat(fd)
        stat_out[:] = st.st_size, st.st_mtime_ns
        data = os.read(fd, st.st_size + 1)
        if len(data) != st.st_size:  # a short read, or the file grew: read to its end
            parts = [data]
            while chunk := os.read(fd, 1 << 20):
                parts.append(chunk)
            data = b"".join(parts)
        return data
    finally:
        os.close(fd)


def _decode_range(job, start, stop):
    """Decode files ``start:stop`` of ``job`` (root, rels, size, channels, resize and the
    output arrays "images" (N, C, H, W) and "stats" (N, 2): size and mtime_ns as read) in
    place; return [(index, reason)] of the files that are not readable images."""
    root, rels, images, stats = job["root"], job["rels"], job["images"], job["stats"]
    size, channels, resize = job["size"], job["channels"], job["resize"]
    bad = []
    for i in range(start, stop):
        rel = rels[i]
        try:
            images[i] = decode(_read(os.path.join(root, rel), stats[i]), size, channels,
                               resize, rel)
        except (OSError, DataFormatError) as e:
            images[i] = 0
            bad.append((i, str(e).removeprefix(f"{rel}: ") if isinstance(e, DataFormatError)
                        else f"cannot read: {e.strerror or e}"))
    return bad


_FORKED_JOB = {}
"""The job of the parallel decode in progress: set before the workers fork, so that they
inherit it (its output arrays in shared memory) and a task is just (start, stop)."""
_FORK_LOCK = threading.Lock()


def _worker_range(start, stop):
    return _decode_range(_FORKED_JOB, start, stop)


def _can_fork():
    """Worker processes are forked, on Linux only: a fork needs no ``if __name__ ==
    "__main__"`` guard in the caller's script (spawn and forkserver re-run it), and the
    workers touch only Pillow and numpy. Elsewhere decoding runs in this process."""
    import multiprocessing

    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def _shared(shape, dtype):
    """A zeroed array in anonymous shared memory: what a forked worker writes, the parent sees."""
    nbytes = max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize)
    flat = np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype, count=int(np.prod(shape)))
    return flat.reshape(shape)


def _in_workers(job, workers, ranges):
    """Yield (range, bad files) as forked workers finish each range."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with _FORK_LOCK, warnings.catch_warnings():
        # Python >= 3.12 warns of a fork in a threaded process (OpenMP, tqdm's monitor); the
        # workers run only Pillow and numpy
        warnings.filterwarnings("ignore", message=r".*multi-threaded, use of fork",
                                category=DeprecationWarning)
        _FORKED_JOB.update(job)
        try:
            fork = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(workers, mp_context=fork) as pool:
                tasks = {pool.submit(_worker_range, *r): r for r in ranges}
                for task in as_completed(tasks):
                    yield tasks[task], task.result()
        finally:
            _FORKED_JOB.clear()


def _decode_all(root, rels, size, channels, resize, workers, progress):
    """(images uint8 (N, C, H, W), [(index, reason)] sorted, stats int64 (N, 2)) of all
    files, in ``workers`` forked processes (in this one for few files, one worker or no
    fork), with a tqdm bar."""
    from tqdm import tqdm

    n = len(rels)
    parallel = workers > 1 and n >= SERIAL_BELOW and _can_fork()
    alloc = _shared if parallel else (lambda shape, dtype: np.zeros(shape, dtype))
    job = {"root": root, "rels": rels, "size": size, "channels": channels, "resize": resize,
           "images": alloc((n, channels) + tuple(size), np.uint8),
           "stats": alloc((n, 2), np.int64)}
    job["stats"][:] = -1
    ranges = [(s, min(s + _CHUNK, n)) for s in range(0, n, _CHUNK)]
    done = (_in_workers(job, min(workers, len(ranges)), ranges) if parallel
            else ((r, _decode_range(job, *r)) for r in ranges))
    bad = []
    bar = tqdm(total=n, desc="decoding images", unit="img", disable=not progress, leave=False)
    try:
        for (start, stop), b in done:
            bad += b
            bar.update(stop - start)
    finally:
        bar.close()
    return job["images"], sorted(bad), job["stats"]


# -- the cache ------------------------------------------------------------------------------

def _cache_path(folder, root, options):
    """The cache file of ``root`` decoded with ``options``, by Pillow's version."""
    import PIL

    text = json.dumps([CACHE_VERSION, PIL.__version__, os.path.abspath(root), options])
    key = hashlib.sha256(text.encode()).hexdigest()[:32]
    return os.path.join(folder, f"image-folder-{key}.npz")


_CACHED = ("images", "labels", "keep", "skipped", "listed", "stats")
# listed: the relative paths of all image files, joined by newlines (one string: fast to
# compare); keep: which of them were decoded (the others are in skipped, with the reason)


def _read_cache(path, root, rels):
    """The cached arrays when ``path`` holds them for exactly these files with the sizes and
    modification times they have now; else None (missing, stale or unreadable: decode)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["listed"]) != "\n".join(rels):
                return None
            cached = {k: z[k] for k in _CACHED}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if cached["stats"].shape != (len(rels), 2) or not np.array_equal(cached["stats"],
                                                                     _stats(root, rels)):
        return None
    return cached


def _remove_stale_temporaries(folder, age_s=3600):
    """Remove the temporary files (hc.atomic.write_atomic's, ".<name>.<random>.tmp") that
    writers killed over ``age_s`` ago left in the cache folder (a live writer's is younger)."""
    now = time.time()
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(".") and e.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if now - e.stat().st_mtime > age_s:
                        os.remove(e.path)


def _write_cache(path, **arrays):
    """Write the arrays as .npz atomically (hc.atomic.write_atomic); a failure leaves no file
    and warns (the data is still returned)."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, exist_ok=True)
        _remove_stale_temporaries(folder)
        write_atomic(path, lambda f: np.savez(f, **arrays))
    except OSError as e:
        warnings.warn(f"image_folder: could not write the cache {path}: {e}", stacklevel=3)


# -- the data set ---------------------------------------------------------------------------

def _report_skipped(root, skipped, on_error):
    """Warn in one line (or raise, on_error="raise") about the files that are not images."""
    if not len(skipped):
        return
    rel, reason = str(skipped[0]).split("\t", 1)
    if on_error == "raise":
        raise DataFormatError(f"{os.path.join(root, rel)}: {reason}")
    named = ", ".join("{} ({})".format(*str(s).split("\t", 1)) for s in skipped[:_NAMED])
    more = f" and {len(skipped) - _NAMED} more" if len(skipped) > _NAMED else ""
    warnings.warn(f"image_folder {root}: skipped {len(skipped)} file(s) that are not readable "
                  f"images: {named}{more}", stacklevel=3)


def image_folder(root, size=(28, 28), channels=1, resize="stretch", val_split=None, seed=0,
                 cache=True, workers=None, progress=True, on_error="skip"):
    """The images of ``root/<class>/<image>`` as a Dataset: images uint8 (N, channels, H, W)
    (``size`` = (H, W)), labels int64 (N,), classes the sorted subfolder names (as
    torchvision's ImageFolder; hidden folders skipped), ``files`` the paths relative to root.

    Files: .png .jpg .jpeg .bmp .gif .webp in any case, also in subfolders of a class folder;
    other files are ignored. Each image is made into an array by
    ``hc.preprocess.load_image``'s steps: first frame, EXIF orientation, grey (ITU-R 601-2
    luma) or RGB with alpha dropped, then brought to ``size`` by ``resize``: "stretch" (the
    whole image, aspect ratio not kept) or "crop" (the largest centred box of the target's
    aspect ratio), with Pillow's bilinear filter, antialiased when shrinking. So folders of
    mixed sizes and modes load into one array.

    Bad input: a missing root raises FileNotFoundError; a root without class folders, or a
    class folder without image files, DataFormatError naming it. A file that is not a
    readable image (a truncated or corrupt file, a text file named .png, no read permission)
    is skipped, with one warning giving the count and the first few names, or, with
    ``on_error="raise"``, raises DataFormatError naming it.

    ``val_split``: a fraction in (0, 1) returns (train, val) instead, split per class (see
    Dataset.split) with ``seed``. ``cache``: keep the decoded arrays in ``cache_folder()``
    (True), or a folder to keep them in, or False. ``workers``: decoding processes (default:
    the cores this process may use). ``progress``: a tqdm bar while decoding.
    """
    root = os.fspath(root)
    size, channels, resize = check_options(size, channels, resize)
    if on_error not in ("skip", "raise"):
        raise InvalidValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InvalidValueError(f"workers must be a positive integer, got {workers!r}")
    classes, rels, labels = list_images(root)
    options = {"size": list(size), "channels": channels, "resize": resize}
    from .extras import require

    require("PIL.Image", "images", "image_folder")
    cached = path = None
    if cache:
        path = _cache_path(cache_folder() if cache is True else os.fspath(cache), root, options)
        cached = _read_cache(path, root, rels)
    if cached is None:
        images, bad, stats = _decode_all(root, rels, size, channels, resize, workers, progress)
        keep = np.ones(len(rels), dtype=bool)
        keep[[i for i, _ in bad]] = False
        cached = {"images": images if keep.all() else images[keep],
                  "labels": labels if keep.all() else labels[keep], "keep": keep,
                  "skipped": np.array([f"{rels[i]}\t{r}" for i, r in bad], dtype=str),
                  "listed": np.array("\n".join(rels)), "stats": stats}
        if path is not None and (on_error == "skip" or not bad):
            _write_cache(path, **cached)
    _report_skipped(root, cached["skipped"], on_error)
    present = np.bincount(cached["labels"], minlength=len(classes))
    if not present.all():
        lost = [c for c, n in zip(classes, present) if n == 0]
        raise DataFormatError(f"{root}: no readable image left in class folder(s) "
                              f"{', '.join(lost)}")
    data = Dataset(cached["images"], cached["labels"], classes, name=f"image folder {root}",
                   source=f"{root} ({len(classes)} classes, {size[0]}x{size[1]}, "
                          f"{channels} channel{'s' if channels > 1 else ''}, {resize})",
                   preprocessing=options,
                   files=tuple(r for r, k in zip(rels, cached["keep"]) if k))
    return data if val_split is None else data.split(val_split, seed=seed)
