"""Atomic file writes: every file heterocnn writes (checkpoints, ONNX models, IDX files,
benchmark JSON) goes through write_atomic, so a reader sees the old file or the new one,
whole, never a mix, however many writers race and wherever one of them fails or is killed.

The data goes to a temporary file created exclusively (a fresh name, O_EXCL) in the target's
folder, is flushed and fsynced, renamed over the target (os.replace: atomic on POSIX), and the
folder is fsynced so the rename survives a power cut. On every failure path the temporary
file is removed and the target left as it was."""

import os
import tempfile

from .errors import DTypeError, InvalidValueError


def _umask():
    """The process's umask, read without changing it (Linux), else the usual 0o022."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder that cannot be opened (some platforms): nothing to sync
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path, data):
    """Write ``data`` (bytes, or a callable ``data(f)`` writing into the binary file object f)
    to ``path`` atomically; returns ``path``. The new file gets the permissions a plain
    open() would give it (0o666 less the umask). Errors of the write (a full disk, a folder
    that cannot be written) propagate as OSError with the target file untouched."""
    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_folder(folder)
    return path


def check_writable(path, what):
    """Raise InvalidValueError, before any work starts, when ``path`` cannot be written: its
    folder is missing, not a folder, or not writable (tried by creating and removing a
    temporary file there), or ``path`` is itself a folder."""
    try:
        target = os.fsdecode(os.fspath(path))
    except TypeError:
        raise DTypeError(f"{what} must be a path, got {type(path).__name__}") from None
    if not target:
        raise InvalidValueError(f"{what}: empty path")
    folder = os.path.dirname(os.path.abspath(target))
    if os.path.isdir(target):
        raise InvalidValueError(f"{what} {target!r} is a folder, not a file")
    if not os.path.isdir(folder):
        raise InvalidValueError(f"{what} {target!r}: folder {folder!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".probe",
                                   dir=folder)
        os.close(fd)
        os.remove(tmp)
    except OSError as e:
        raise InvalidValueError(f"{what} {target!r}: folder {folder!r} cannot be written "
                                f"({e.strerror or e})") from None
