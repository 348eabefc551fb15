"""Where a forward pass runs for predict and evaluate: the model as placed, or a copy of it
where the planner (mode "infer") or the caller says. The model itself never moves: a copy
is kept per placement on the model and gets the model's current weights at each call."""

from .data_parallel import DataParallel


def _placement_key(placement):
    if isinstance(placement, (list, tuple)):
        return tuple(placement) if len(set(placement)) > 1 else placement[0]
    return placement


def _as_placed(model):
    """The model's own placement as a device or per-layer tuple (a data-parallel model
    infers on its master, the first replica's device)."""
    if isinstance(model.placement, DataParallel):
        return model.placement.devices[0]
    return _placement_key(model.placement)


def _planned(model, batch_size, sample_shape):
    """Where the planner runs a forward pass of batch_size fastest (one device, or a chain
    over devices: an inference plan has no replicas)."""
    from .measure import available_devices
    from .placement import plan

    if len(available_devices()) == 1:
        return _as_placed(model)
    return _placement_key(plan(model, batch_size, tuple(sample_shape), mode="infer").placement)


def inference_model(model, batch_size, sample_shape, device="auto"):
    """A callable x -> logits for batches of ``batch_size``: the model, or a copy of it
    placed as ``device`` says ("auto": by the planner; None: as the model is placed)."""
    from .data_parallel import canonical_device

    if device is None:
        return model
    if device == "auto":
        where = _planned(model, batch_size, sample_shape)
    elif isinstance(device, (list, tuple)):
        where = _placement_key([canonical_device(d) for d in device])
    else:
        where = canonical_device(device)
    if where == _as_placed(model):
        return model
    return model.placed_copy(list(where) if isinstance(where, tuple) else where)
