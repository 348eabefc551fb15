"""The data-parallel placement: one replica of the model per device, each taking a share of
every minibatch (the thesis's Algorithm 2, SGD with T workers).

    model.to(hc.DataParallel(["cuda", "cpu"]))            # shares from measured rates
    model.to(hc.DataParallel({"cuda:0": 0.8, "cpu": 0.2}))  # shares given

Shares are fractions of the batch; given ones must be positive and are normalised to sum to 1.
"""

import math

from .errors import DTypeError, InvalidValueError


def canonical_device(device):
    """'cuda' -> 'cuda:0'; 'cpu', 'cuda:N' unchanged; anything else an InvalidValueError."""
    from .nn import parse_device

    kind, index = parse_device(device)
    return "cpu" if kind == 0 else f"cuda:{index}"


class DataParallel:
    """Replicas on ``devices`` (a list of device names) or with given ``shares`` (a dict from
    device name to a positive weight). ``shares`` is None when they are to be measured."""

    def __init__(self, devices):
        if isinstance(devices, dict):
            shares = {}
            for device, w in devices.items():
                if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) \
                        or w <= 0:
                    raise InvalidValueError(f"DataParallel: the share of {device!r} must be a "
                                            f"positive number, got {w!r}")
                shares[canonical_device(device)] = float(w)
            names = list(shares)
        elif isinstance(devices, (list, tuple)):
            names = [canonical_device(d) for d in devices]
            shares = None
        else:
            raise DTypeError("DataParallel takes a list of devices or a dict of shares, got "
                             f"{type(devices).__name__}")
        if not names:
            raise InvalidValueError("DataParallel needs at least one device")
        if len(set(names)) != len(names):
            raise InvalidValueError(f"DataParallel names a device twice: {names}")
        self.devices = tuple(names)
        total = sum(shares.values()) if shares else 0.0
        self.shares = None if shares is None else {d: w / total for d, w in shares.items()}

    def with_shares(self, shares):
        """The same devices with these shares (a dict over exactly self.devices)."""
        if set(shares) != set(self.devices):
            raise InvalidValueError(f"shares {sorted(shares)} do not match the devices "
                                    f"{sorted(self.devices)}")
        return DataParallel({d: shares[d] for d in self.devices})

    def __eq__(self, other):
        return (isinstance(other, DataParallel) and self.devices == other.devices
                and self.shares == other.shares)

    def __repr__(self):
        if self.shares is None:
            return f"DataParallel({list(self.devices)})"
        return "DataParallel({" + ", ".join(f"{d!r}: {s:.3f}" for d, s in self.shares.items()) + "})"
