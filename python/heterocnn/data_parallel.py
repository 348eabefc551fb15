"""The data-parallel placement: one replica of the model per device, each taking a share of
every minibatch (the thesis's Algorithm 2, SGD with T workers).

    model.to(hc.DataParallel(["cuda", "cpu"]))                # shares from measured rates
    model.to(hc.DataParallel({"cuda:0": 0.8, "cpu": 0.2}))    # shares given
    model.to(hc.DataParallel(["cpu", "cpu"], shares=[1, 1], threads=[1, 2]))

Each replica runs the whole model on its device. A step: every replica computes the
gradients of its rows of the batch, weighted by its rows over the batch size; they are summed
into the first replica's (the master's) in replica order; one update; the new weights go to
every replica. The result equals training on the whole batch on one device, to rounding.
Shares are positive weights, normalised to sum to 1; ``threads`` gives each CPU replica its
thread count (0: all of the process's).
"""

import math

from .errors import DTypeError, InvalidValueError


def canonical_device(device):
    """'cuda' -> 'cuda:0'; 'cpu', 'cuda:N' unchanged; anything else an InvalidValueError."""
    from .nn import parse_device

    kind, index = parse_device(device)
    return "cpu" if kind == 0 else f"cuda:{index}"


def _positive(what, w):
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w <= 0:
        raise InvalidValueError(f"DataParallel: {what} must be a positive number, got {w!r}")
    return float(w)


class DataParallel:
    """Replicas on ``devices`` (a list of device names; a device may repeat, e.g. two CPU
    replicas with different thread counts) or a dict {device: share}. ``shares`` (one positive
    weight per device) may also be given beside a list; None means they are to be measured.
    ``threads``: one CPU thread count per device (0: all), or None. ``rebalance``: whether fit
    moves the shares toward equal finish times from the replicas' measured step times (a
    damped controller, heterocnn.rebalance); by default when the shares are measured rather
    than given, so that given shares train reproducibly."""

    def __init__(self, devices, shares=None, threads=None, rebalance=None):
        if isinstance(devices, dict):
            if shares is not None:
                raise InvalidValueError("DataParallel: shares given twice (a dict and shares=)")
            shares = [_positive(f"the share of {d!r}", w) for d, w in devices.items()]
            names = [canonical_device(d) for d in devices]
        elif isinstance(devices, (list, tuple)):
            names = [canonical_device(d) for d in devices]
        else:
            raise DTypeError("DataParallel takes a list of devices or a dict of shares, got "
                             f"{type(devices).__name__}")
        if not names:
            raise InvalidValueError("DataParallel needs at least one device")
        if shares is not None:
            if len(shares) != len(names):
                raise InvalidValueError(f"DataParallel: {len(shares)} shares for "
                                        f"{len(names)} devices")
            shares = [_positive("a share", w) for w in shares]
            total = sum(shares)
            shares = tuple(w / total for w in shares)
        if threads is None:
            threads = (0,) * len(names)
        if len(threads) != len(names) or any(
                isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in threads):
            raise InvalidValueError(f"DataParallel: threads must be one integer >= 0 per device, "
                                    f"got {threads!r}")
        for d, t in zip(names, threads):
            if t and d != "cpu":
                raise InvalidValueError(f"DataParallel: a thread count is for CPU replicas, "
                                        f"not {d}")
        seen = [(d, t) for d, t in zip(names, threads)]
        if len(set(seen)) != len(seen) or len({d for d in names if d != "cpu"}) != \
                len([d for d in names if d != "cpu"]):
            raise InvalidValueError(f"DataParallel names a replica twice: {names} (CPU replicas "
                                    "of one process need different thread counts)")
        self.devices = tuple(names)
        self.shares = shares
        self.threads = tuple(int(t) for t in threads)
        self.rebalance = shares is None if rebalance is None else bool(rebalance)

    def with_shares(self, shares):
        """The same replicas with these shares (one per device, or a dict over the devices)."""
        if isinstance(shares, dict):
            if set(shares) != set(self.devices) or len(set(self.devices)) != len(self.devices):
                raise InvalidValueError(f"shares {sorted(shares)} do not match the devices "
                                        f"{list(self.devices)}")
            shares = [shares[d] for d in self.devices]
        return DataParallel(list(self.devices), shares=list(shares), threads=list(self.threads),
                            rebalance=self.rebalance)

    def sub_batches(self, batch_size):
        """Rows per replica of a batch of ``batch_size`` (equal shares until measured)."""
        from .rebalance import split_batch

        shares = self.shares or (1.0,) * len(self.devices)
        split = split_batch(dict(enumerate(shares)), batch_size)
        return [split[i] for i in range(len(self.devices))]

    def __eq__(self, other):
        return (isinstance(other, DataParallel) and self.devices == other.devices
                and self.shares == other.shares and self.threads == other.threads
                and self.rebalance == other.rebalance)

    def __repr__(self):
        parts = [repr(list(self.devices))]
        if self.shares is not None:
            parts.append("shares=[" + ", ".join(f"{s:.3f}" for s in self.shares) + "]")
        if any(self.threads):
            parts.append(f"threads={list(self.threads)}")
        return f"DataParallel({', '.join(parts)})"
