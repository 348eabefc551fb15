"""The CPU thread count of the core's OpenMP loops, checked before it reaches OpenMP."""

import numpy as np

from . import _core
from .errors import InvalidValueError

# More threads than this is a mistake, not a machine: OpenMP would try to start them all (and
# abort when it cannot), and per-thread workspaces grow with the count.
MAX_THREADS = 1024


def check_threads(n, what="threads"):
    """``n`` as an int in [1, MAX_THREADS], else InvalidValueError naming it."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_THREADS:
        raise InvalidValueError(f"{what} must be an integer from 1 to {MAX_THREADS}, got {n!r}")
    return int(n)


def set_threads(n):
    """Run the core's CPU loops on ``n`` threads (1 to MAX_THREADS)."""
    _core.set_threads(check_threads(n))
