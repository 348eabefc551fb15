"""Shares of a minibatch between data-parallel replicas, while training: the integer split of
a batch by shares, and the damped controller that moves the shares toward equal finish times
from each replica's measured step seconds.

    r = Rebalancer({"cuda:0": 0.8, "cpu": 0.2}, batch_size=256)
    sizes = r.sub_batches()                 # {"cuda:0": 205, "cpu": 51}
    for each step:
        ... run the replicas on sizes, time each one ...
        new = r.observe(seconds, sizes)     # {device: seconds}, {device: samples}
        if new is not None:
            sizes = new
    sizes = r.sub_batches(len(last_batch))  # a last partial batch: same shares, fewer samples
"""

import math

from .errors import InvalidValueError


def _positive(value):
    return (not isinstance(value, bool) and isinstance(value, (int, float))
            and math.isfinite(value) and value > 0)


def split_batch(shares, batch_size):
    """Integer sub-batches {device: samples} summing to batch_size, proportional to shares
    (positive weights): the largest remainders get the samples the floors leave over, ties
    to the device listed first. A device with a small share may get 0 on a small batch."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise InvalidValueError(f"batch size must be an integer >= 0, got {batch_size!r}")
    if not shares or not all(_positive(w) for w in shares.values()):
        raise InvalidValueError(f"shares must be positive numbers, got {shares}")
    total = sum(shares.values())
    exact = {d: batch_size * w / total for d, w in shares.items()}
    sizes = {d: int(math.floor(x)) for d, x in exact.items()}
    by_remainder = sorted(exact, key=lambda d: sizes[d] - exact[d])   # stable: ties in order
    for d in by_remainder[:batch_size - sum(sizes.values())]:
        sizes[d] += 1
    return sizes


class Rebalancer:
    """Damped share controller for data-parallel replicas.

    Fed after every step with each replica's measured seconds and samples (observe), it sums
    them over ``period`` full batches, turns them into rates (samples/s, smoothed across
    periods with weight ``smoothing`` on the previous rate), proposes shares proportional to
    the rates (at its fixed point every replica finishes at once, fixed costs included),
    moves the shares ``damping`` of the way there, and ignores proposals that move no share
    by ``threshold`` or more. Deterministic given its inputs. Steps whose samples do not add
    up to ``batch_size`` (a last partial batch) are not counted."""

    def __init__(self, shares, batch_size, period=32, damping=0.5, threshold=0.01,
                 smoothing=0.5):
        if not isinstance(shares, dict) or not shares or \
                not all(_positive(w) for w in shares.values()):
            raise InvalidValueError(f"Rebalancer: shares must be a dict of positive weights, "
                                    f"got {shares!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidValueError(f"Rebalancer: batch_size must be a positive integer, got "
                                    f"{batch_size!r}")
        if isinstance(period, bool) or not isinstance(period, int) or period < 1:
            raise InvalidValueError(f"Rebalancer: period must be a positive integer, got "
                                    f"{period!r}")
        for name, value in (("damping", damping), ("smoothing", smoothing),
                            ("threshold", threshold)):
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise InvalidValueError(f"Rebalancer: {name} must be in [0, 1], got {value!r}")
        if damping == 0:
            raise InvalidValueError("Rebalancer: damping 0 would never move the shares")
        total = sum(shares.values())
        self.shares = {d: w / total for d, w in shares.items()}
        self.batch_size = batch_size
        self.period = period
        self.damping = float(damping)
        self.threshold = float(threshold)
        self.smoothing = float(smoothing)
        self.rates = {}                          # device -> smoothed samples/s
        self._steps = 0
        self._samples = dict.fromkeys(self.shares, 0)
        self._seconds = dict.fromkeys(self.shares, 0.0)

    def sub_batches(self, batch_size=None):
        """The integer split of a batch (default the full batch size) by the current shares."""
        return split_batch(self.shares, self.batch_size if batch_size is None else batch_size)

    def observe(self, step_s, sub_batches):
        """One step's measured seconds and samples per replica ({device: ...} over the
        replicas). Returns the new sub-batches of a full batch when the shares moved enough to
        change them, else None."""
        if set(step_s) != set(self.shares) or set(sub_batches) != set(self.shares):
            raise InvalidValueError(f"Rebalancer: expected timings and samples for "
                                    f"{sorted(self.shares)}, got {sorted(step_s)} and "
                                    f"{sorted(sub_batches)}")
        if sum(sub_batches.values()) != self.batch_size:
            return None
        for d in self.shares:
            if sub_batches[d] > 0 and _positive(step_s[d]):
                self._samples[d] += sub_batches[d]
                self._seconds[d] += step_s[d]
        self._steps += 1
        if self._steps < self.period:
            return None
        self._steps = 0
        for d in self.shares:
            if self._samples[d]:
                rate = self._samples[d] / self._seconds[d]
                old = self.rates.get(d)
                self.rates[d] = rate if old is None else \
                    self.smoothing * old + (1 - self.smoothing) * rate
            self._samples[d], self._seconds[d] = 0, 0.0
        if set(self.rates) != set(self.shares):
            return None
        total = sum(self.rates.values())
        proposal = {d: self.rates[d] / total for d in self.shares}
        if max(abs(proposal[d] - self.shares[d]) for d in self.shares) < self.threshold:
            return None
        before = self.sub_batches()
        self.shares = {d: s + self.damping * (proposal[d] - s) for d, s in self.shares.items()}
        after = self.sub_batches()
        return None if after == before else after
