"""heterocnn: train image classifiers on the CPU (OpenMP) and NVIDIA GPUs (CUDA), with the
API of torch.nn where the two have the same thing."""

from . import datasets, models
from .augment import Augment
from ._core import build_info as _core_build_info, cuda_device, cuda_device_count
from .checkpoint import load, save
from .device_data import DeviceDataset
from .errors import (DataFormatError, DeviceError, DeviceOutOfMemoryError, DTypeError,
                     HeteroCNNError, InvalidValueError, NonFiniteError, ShapeError,
                     StateDictError)
from .memory import check_memory, estimate_memory
from .nn import Conv2d, Flatten, Linear, MaxPool2d, Module, ReLU, Sequential, Sigmoid
from .onnx_export import export_onnx
from .optim import SGD
from .recipe import Recipe, WarmupCosine, default_recipe
from .threads import set_threads
from .training import evaluate, fit, predict

__version__ = _core_build_info()["version"]


def build_info():
    """What this build contains: version, OpenMP (and its thread count), the CPU GEMM kernel,
    whether CUDA was compiled in and is available, and each GPU's name, compute capability
    and memory."""
    info = _core_build_info()
    info["cuda_available"] = cuda_available()
    info["gpus"] = [cuda_device(i) for i in range(cuda_device_count())]
    return info


def cuda_available():
    """True when this build has CUDA and at least one usable GPU is present."""
    return cuda_device_count() > 0


__all__ = [
    "Augment", "Conv2d", "DataFormatError", "DeviceDataset", "DeviceError", "DeviceOutOfMemoryError",
    "DTypeError", "Flatten", "HeteroCNNError", "InvalidValueError", "Linear", "MaxPool2d",
    "Module", "NonFiniteError", "ReLU", "Recipe", "SGD", "Sequential", "ShapeError", "Sigmoid",
    "StateDictError", "build_info", "check_memory", "cuda_available", "cuda_device",
    "cuda_device_count", "datasets", "default_recipe", "estimate_memory", "evaluate", "export_onnx", "fit", "load",
    "models", "predict", "save", "set_threads", "WarmupCosine",
]
