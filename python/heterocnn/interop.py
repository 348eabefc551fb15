"""Moving models to and from PyTorch. torch is imported only when these are called (the
``bench`` extra installs it); heterocnn itself never needs it."""

from .nn import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid


def to_torch(model):
    """The equivalent torch.nn.Sequential, holding a copy of ``model``'s weights (float32, CPU).
    Same layer indices, so state_dict keys and layouts match."""
    import torch

    nn = torch.nn
    layers = []
    for layer in model.layers:
        if isinstance(layer, Conv2d):
            layers.append(nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size,
                                    stride=layer.stride, padding=layer.padding))
        elif isinstance(layer, Linear):
            layers.append(nn.Linear(layer.in_features, layer.out_features))
        elif isinstance(layer, MaxPool2d):
            layers.append(nn.MaxPool2d(layer.kernel_size, stride=layer.stride))
        elif isinstance(layer, Flatten):
            layers.append(nn.Flatten())
        elif isinstance(layer, ReLU):
            layers.append(nn.ReLU())
        elif isinstance(layer, Sigmoid):
            layers.append(nn.Sigmoid())
        else:
            raise TypeError(f"no torch equivalent for {layer!r}")
    seq = nn.Sequential(*layers)
    seq.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return seq


def torch_loss(model):
    """The torch loss module matching ``model.loss``."""
    import torch

    return torch.nn.BCEWithLogitsLoss() if model.loss == "bce" else torch.nn.CrossEntropyLoss()
