"""How fit runs training steps on a model as it is placed. A stepper hides the case:

    stepper = model.stepper((X, y), device_data="auto", host_batches=False)
    results = stepper.start(idx, host_batch, opt)   # [(loss, correct)] finished so far
    results = stepper.finish()                       # the step still running, if any

``idx`` are the batch's sample indices; ``host_batch(rows)`` makes the float32 host batch of
those rows (scaled, transformed) when the stepper needs one. Steps may overlap (on one GPU the
call returns the previous step's result while this one runs); results come back in the order
the steps started. A new way of running a step (replicas, ranks) is a new stepper here, not a
change to fit.
"""


import numpy as np

from .data_parallel import DataParallel
from .device_data import DeviceDataset
from .errors import InvalidValueError
from .rebalance import Rebalancer


def _device_data(device, X, y, device_data):
    """A DeviceDataset of (X, y) on CUDA device ``device`` when asked for ("auto": when it
    takes at most half the device's free memory), else None."""
    if device_data is False or device_data is None:
        return None
    from . import cuda_device

    index = int(device.split(":")[1])
    if device_data == "auto" and X.nbytes + y.nbytes > cuda_device(index)["free_bytes"] // 2:
        return None
    return DeviceDataset((X, y), device)


def _check_device_data(device_data, host_batches):
    if device_data not in (True, False, None, "auto"):
        raise InvalidValueError(f"device_data must be True, False or 'auto', got {device_data!r}")
    if host_batches and device_data is True:
        raise InvalidValueError("device_data=True cannot be combined with a transform, which "
                                "works on host batches")


class SingleSteps:
    """One core call per step on the model's own net: one device, or layers over devices.
    On one GPU the training set goes to the device once (device_data) and each step gathers
    its batch there."""

    def __init__(self, model, train, device_data, host_batches):
        _check_device_data(device_data, host_batches)
        self.model = model
        self.y = None if train is None else train[1]
        placement = set(model.placement)
        on_one_gpu = len(placement) == 1 and model.placement[0].startswith("cuda")
        if device_data is True and not on_one_gpu:
            raise InvalidValueError("device_data=True needs the whole model on one GPU, but it "
                                    f"is placed on {sorted(placement)}")
        self.data = None
        if on_one_gpu and not host_batches and train is not None:
            self.data = _device_data(model.placement[0], train[0], train[1], device_data)

    def start(self, idx, host_batch, opt):
        if self.data is not None:
            return self.model._start_step_on(self.data, idx, opt)
        return self.model._start_step(host_batch(idx), self.y[idx], opt)

    def finish(self):
        return self.model._finish_steps()


class ReplicaSteps:
    """Data-parallel steps (hc.DataParallel): each batch split over the replicas by their
    shares, one core call per step. Where a replica is a GPU and the training set fits there,
    that replica gathers its rows on the device and the others take theirs from the host.
    Shares not given are measured first (hc.measure, heterocnn.placement's
    data_parallel_shares); with the placement's ``rebalance`` they then follow the measured
    step times of the replicas (heterocnn.rebalance.Rebalancer)."""

    def __init__(self, model, train, device_data, host_batches, batch_size=None):
        _check_device_data(device_data, host_batches)
        self.model = model
        self.y = None if train is None else train[1]
        dp = model.placement
        gpus = [i for i, d in enumerate(dp.devices) if d.startswith("cuda")]
        if device_data is True and not gpus:
            raise InvalidValueError("device_data=True needs a replica on a GPU, but the "
                                    f"replicas are on {list(dp.devices)}")
        self.data, self.gpu = None, None
        if gpus and not host_batches and train is not None:
            self.gpu = gpus[0]
            self.data = _device_data(dp.devices[self.gpu], train[0], train[1], device_data)
            if self.data is None:
                self.gpu = None
        if dp.shares is None and batch_size is not None and train is not None:
            model.placement = dp = dp.with_shares(_measured_shares(model, batch_size,
                                                                   train[0].shape[1:]))
        self._counts = {}
        self.rebalance = None
        if dp.rebalance and batch_size is not None and len(dp.devices) > 1:
            self.rebalance = Rebalancer(dict(enumerate(model.placement.shares or
                                                       (1.0,) * len(dp.devices))), batch_size)

    def start(self, idx, host_batch, opt):
        model = self.model
        key = (len(idx), model.placement.shares)
        counts = self._counts.get(key)
        if counts is None:  # the same few splits every step: the host's time is the CPU's
            counts = self._counts[key] = model.placement.sub_batches(len(idx))
        if self.data is None:
            x = host_batch(idx)
            results = model._replica_start(x, self.y[idx], counts, opt)
        else:  # the GPU replica's rows are gathered on the device, the others' on the host
            starts = np.cumsum([0] + counts)
            mine = slice(starts[self.gpu], starts[self.gpu + 1])
            rows = np.concatenate([idx[:mine.start], idx[mine.stop:]])
            x = host_batch(rows) if len(rows) else np.empty((0,) + self.data.sample_shape,
                                                            np.float32)
            results = model._replica_start(x, self.y[rows], counts, opt,
                                           on=(self.data, idx[mine], self.gpu))
        if self.rebalance is not None:
            moved = self.rebalance.observe(dict(enumerate(model._replica_seconds())),
                                           dict(enumerate(counts)))
            if moved is not None:
                shares = self.rebalance.shares
                self._counts.clear()
                model.placement = model.placement.with_shares([shares[i]
                                                               for i in range(len(counts))])
        return results

    def finish(self):
        return self.model._finish_steps()


def _measured_shares(model, batch_size, sample_shape):
    """Shares for the replicas from measured costs: the planner's split of the batch over
    the devices (a device that does not pay gets a token share), a device's share divided
    evenly between its replicas."""
    from .measure import measure
    from .placement import data_parallel_shares

    dp = model.placement
    devices = list(dict.fromkeys(dp.devices))
    table = measure(model, batch_size, tuple(sample_shape), devices=devices)
    samples, _ = data_parallel_shares(table, devices)
    return [max(samples.get(d, 0), 1e-3) / dp.devices.count(d) for d in dp.devices]


def make_stepper(model, train=None, device_data="auto", host_batches=False, batch_size=None):
    """The stepper for ``model`` as placed; ``train`` the (X, y) arrays it trains on and
    ``batch_size`` the size of its batches (both optional: a stepper for train_step)."""
    if isinstance(model.placement, DataParallel):
        return ReplicaSteps(model, train, device_data, host_batches, batch_size)
    return SingleSteps(model, train, device_data, host_batches)
