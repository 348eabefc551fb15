"""Moving models to and from PyTorch. torch is imported only when these are called (the
``test`` and ``bench`` extras install it); heterocnn itself never needs it.

Through files: ``hc.save(model, path)`` writes safetensors that
``torch_model.load_state_dict(safetensors.torch.load_file(path))`` takes as they are; a
training checkpoint (saved with an optimizer) also holds ``"optimizer.*"`` tensors,
and ``"buffers.*"`` tensors (layer buffers outside state_dict, e.g. Dropout's step counter),
which ``torch_state_dict(path)`` leaves out. The other way, a file from
``safetensors.torch.save_file(torch_model.state_dict(), path)`` loads with
``hc.load(path, model=the_equivalent_heterocnn_model)``.
"""

from .checkpoint import BUFFERS, OPTIMIZER
from .registry import kind_of


def to_torch(model):
    """The equivalent torch.nn.Sequential, holding a copy of ``model``'s weights (float32, CPU).
    Same layer indices, so state_dict keys and layouts match."""
    import torch

    seq = torch.nn.Sequential(*(kind_of(layer).to_torch(layer, torch.nn)
                                for layer in model.layers))
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return seq


def torch_loss(model):
    """The torch loss module matching ``model.loss`` (and its label smoothing)."""
    import torch

    if model.loss == "bce":
        return torch.nn.BCEWithLogitsLoss()
    return torch.nn.CrossEntropyLoss(label_smoothing=model.label_smoothing)


def torch_state_dict(path):
    """The model tensors of a heterocnn checkpoint as torch tensors, for
    ``load_state_dict(strict=True)`` of the equivalent torch.nn.Sequential (the optimizer's
    and the "buffers." tensors left out). The file is validated as hc.load does."""
    import torch

    from .checkpoint import read_safetensors

    tensors, _ = read_safetensors(path)
    return {k: torch.from_numpy(v) for k, v in tensors.items()
            if not k.startswith(OPTIMIZER) and not k.startswith(BUFFERS)}
